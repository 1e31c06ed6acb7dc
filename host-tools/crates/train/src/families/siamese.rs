//! A SiamFC-style tracker: a shared conv backbone, template and search branches, a depth-wise
//! cross-correlation head and a learned 1×1 adjust layer → one response map.
//!
//! ```text
//! backbone (shared weights, valid convolutions):
//!   conv1 3×3 stride 2 → bn1 → relu1 → pool1 MaxPool 3×3 stride 2
//!   conv2 3×3 → bn2 → relu2 [→ pool2 MaxPool 3×3 stride 2 when stride = 8]
//!   conv3 3×3 → bn3 → relu3
//!   conv4 3×3 → bn4                     (no ReLU: signed features correlate better)
//! head:
//!   xcorr   depth-wise cross-correlation: each template feature channel is a kernel slid
//!           over the same search channel (Conv, group = C) → [N, C, m, m]
//!   adjust  Conv 1×1, C → 1 with bias (SiamFC's learned scale/bias; starts as the mean
//!           correlation, weight 1/(C·h·w)) → response [N, 1, m, m]
//! ```
//! With the defaults (template 63, search 127, total stride 4) the template features are
//! 9×9, the search features 25×25 and the response 17×17; `m = (search − template)/stride + 1`.
//!
//! # Export forms
//! - [`build_train`] — one graph with inputs `template [B,3,T,T]` and `search [B,3,S,S]`,
//!   output `response [B,1,m,m]`: what the engine trains. Each sample correlates with its own
//!   template, so the features are folded into the channel axis (`[1, B·C, ·, ·]`, kernels
//!   `[B·C, 1, h, w]`, group = B·C): **B is fixed** in this graph (the recipe's batch size).
//! - [`build_template`] — `template [1,3,T,T]` → `kernel [C,1,h,w]`, run once per target
//!   (re-)initialisation.
//! - [`build_search`] — `search [N,3,S,S]` and `kernel [C,1,h,w]` → `response [N,1,m,m]`, run
//!   every frame; `N` is symbolic, so several scales of the search region run in one call
//!   against the one template (a plain group = C Conv whose weight is a graph input).
//!
//! All three use the same initializer names (`backbone.conv1.weight`, `backbone.bn1.*`,
//! `head.adjust.*`), so [`export_tracker`] copies trained weights from the training graph into
//! the two runtime graphs by name. tract 0.23 and ONNX Runtime 1.32 both run a Conv whose weight
//! is a graph input or a computed tensor, with group = C (tests/tests/integration/families.rs checks both).

use super::layers::Net;
use crate::{Error, Result};
use edgeslim_onnx::builder::D;
use edgeslim_onnx::node::int;
use edgeslim_onnx::{OnnxModel, Tensor};
use onnx_protobuf::tensor_proto::DataType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiameseConfig {
    /// Output channels of conv1..conv4.
    pub widths: [usize; 4],
    pub template_size: usize,
    pub search_size: usize,
    /// Total stride of the backbone: 4 or 8.
    pub stride: usize,
    pub seed: u64,
    /// A pretrained backbone in place of conv1..conv4: `mobilenetv2` (ImageNet weights from
    /// the asset cache, `edgeslim zoo import`), cut after `pretrained_blocks` inverted-residual
    /// blocks and followed by a trainable 1×1 `neck.conv` to `widths[3]` channels. Its
    /// convolutions are padded: a stride-2 layer maps n to ceil(n/2).
    pub pretrained: Option<String>,
    pub pretrained_blocks: usize,
    /// The pretrained trunk's channel widths after pruning (`edgeslim compress prune` of a
    /// tracker pair): the stem, block 1's output, then each later block's hidden and output
    /// width (`edgeslim_import::mobilenetv2::narrow`). None: the ImageNet widths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrained_widths: Option<Vec<usize>>,
    /// Train the pretrained backbone's weights too (default: frozen, only neck and head train).
    pub train_backbone: bool,
    /// A transformer backbone trained here in place of conv1..conv4 (the transformer row of
    /// the tracker study), followed by the 1×1 `neck.conv` to `widths[3]` channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vit: Option<SiameseVit>,
}

/// A ViT backbone for the tracker: a stem to tokens at the tracker's stride, a conditional
/// position encoding (CPVT's PEG: a depth-wise 3×3 conv added to the token map, so the
/// features stay translation-equivariant and any input size works; no learnt position table),
/// pre-norm transformer blocks (the `vit` family's), a final LayerNorm, and the tokens laid
/// back out as a feature map.
///
/// ```text
/// stem = "patch":  backbone.patch_embed  Conv k = s = stride, 3 → dim
/// stem = "hybrid": backbone.stem.conv 3×3/2 → stem.bn → ReLU → max-pool 3/2 (the own CNN's
///                  first layer, `stem_channels`), backbone.patch_embed Conv k = s = stride/4
/// backbone.peg    depth-wise Conv 3×3 pad 1, + residual
/// tokens          Reshape [0, 0, -1], Transpose → [N, P, dim]
/// backbone.blocks.{i}  transformer blocks
/// backbone.norm   LayerNorm, Transpose → [N, dim, P]  (the trunk's output; each branch
///                 reshapes it to its own h × w)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiameseVit {
    /// `patch` or `hybrid`.
    pub stem: String,
    pub stem_channels: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp: usize,
    /// Per-block shapes after ViT-Slim slicing; empty: every block `heads` × `dim/heads`,
    /// `mlp` units.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<super::vit::BlockShape>,
}

impl Default for SiameseVit {
    fn default() -> Self {
        SiameseVit {
            stem: "patch".into(),
            stem_channels: 16,
            dim: 64,
            depth: 4,
            heads: 2,
            mlp: 128,
            blocks: Vec::new(),
        }
    }
}

impl SiameseVit {
    /// Every block's shape.
    pub fn block_shapes(&self) -> Vec<super::vit::BlockShape> {
        if self.blocks.is_empty() {
            vec![super::vit::BlockShape::uniform(self.dim, self.heads, self.mlp); self.depth]
        } else {
            self.blocks.clone()
        }
    }

    fn hybrid(&self) -> bool {
        self.stem == "hybrid"
    }
}

impl Default for SiameseConfig {
    fn default() -> Self {
        SiameseConfig {
            widths: [16, 32, 48, 48],
            template_size: 63,
            search_size: 127,
            stride: 4,
            seed: 0,
            pretrained: None,
            pretrained_blocks: 3,
            pretrained_widths: None,
            train_backbone: false,
            vit: None,
        }
    }
}

/// The strides of MobileNetV2's stem and its 17 blocks.
const MOBILENETV2_STRIDES: [usize; 18] = [2, 1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1];

fn conv_out(n: usize, k: usize, s: usize) -> Option<usize> {
    (n >= k).then(|| (n - k) / s + 1)
}

impl SiameseConfig {
    /// The pretrained backbone's total stride (stem and kept blocks).
    pub fn pretrained_stride(&self) -> usize {
        MOBILENETV2_STRIDES
            .iter()
            .take(self.pretrained_blocks + 1)
            .product()
    }

    /// Spatial size of the backbone's output for an input of side `n`.
    pub fn feature_size(&self, n: usize) -> Option<usize> {
        if let Some(v) = &self.vit {
            let n = if v.hybrid() {
                conv_out(conv_out(n, 3, 2)?, 3, 2)? // stem conv, max-pool
            } else {
                n
            };
            let patch = self.vit_patch();
            return conv_out(n, patch, patch);
        }
        if self.pretrained.is_some() {
            // Padded 3×3 convolutions: stride 2 maps n to ceil(n/2).
            let mut n = n;
            for s in MOBILENETV2_STRIDES.iter().take(self.pretrained_blocks + 1) {
                n = n.div_ceil(*s);
            }
            return Some(n);
        }
        let mut n = conv_out(n, 3, 2)?; // conv1
        n = conv_out(n, 3, 2)?; // pool1
        n = conv_out(n, 3, 1)?; // conv2
        if self.stride == 8 {
            n = conv_out(n, 3, 2)?; // pool2
        }
        n = conv_out(n, 3, 1)?; // conv3
        conv_out(n, 3, 1) // conv4
    }

    pub fn template_features(&self) -> usize {
        self.feature_size(self.template_size).unwrap_or(0)
    }

    pub fn search_features(&self) -> usize {
        self.feature_size(self.search_size).unwrap_or(0)
    }

    /// Response map side.
    pub fn response_size(&self) -> usize {
        self.search_features() + 1 - self.template_features()
    }

    pub fn channels(&self) -> usize {
        self.widths[3]
    }

    /// The ViT's patch embedding kernel and stride: the tracker's stride, a quarter of it
    /// after the hybrid stem (which reduces by 4).
    pub fn vit_patch(&self) -> usize {
        match &self.vit {
            Some(v) if v.hybrid() => (self.stride / 4).max(1),
            _ => self.stride,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &str, why: String| Err(Error::Invalid(format!("siamese: {field}: {why}")));
        if self.stride != 4 && self.stride != 8 {
            return bad("stride", format!("{} (supported: 4, 8)", self.stride));
        }
        if let Some(p) = &self.pretrained {
            if p != "mobilenetv2" {
                return bad("pretrained", format!("'{p}' (supported: mobilenetv2)"));
            }
            if !(1..=17).contains(&self.pretrained_blocks) {
                return bad(
                    "pretrained_blocks",
                    format!("{} (MobileNetV2 has blocks 1..=17)", self.pretrained_blocks),
                );
            }
            if self.pretrained_stride() != self.stride {
                return bad(
                    "stride",
                    format!(
                        "{}, but MobileNetV2 cut after block {} has stride {}",
                        self.stride,
                        self.pretrained_blocks,
                        self.pretrained_stride()
                    ),
                );
            }
        }
        if let Some(v) = &self.vit {
            if self.pretrained.is_some() {
                return bad("vit", "set together with a pretrained backbone".into());
            }
            if v.stem != "patch" && v.stem != "hybrid" {
                return bad(
                    "vit.stem",
                    format!("'{}' (supported: patch, hybrid)", v.stem),
                );
            }
            if v.dim == 0 || v.depth == 0 || v.heads == 0 || v.mlp == 0 || v.stem_channels == 0 {
                return bad(
                    "vit",
                    "dim, depth, heads, mlp, stem_channels: all positive".into(),
                );
            }
            if !v.dim.is_multiple_of(v.heads) {
                return bad(
                    "vit.heads",
                    format!("{} must divide dim {}", v.heads, v.dim),
                );
            }
            if !v.blocks.is_empty() && v.blocks.len() != v.depth {
                return bad(
                    "vit.blocks",
                    format!("{} shapes for {} blocks", v.blocks.len(), v.depth),
                );
            }
            if v.blocks
                .iter()
                .any(|b| b.heads == 0 || b.head_dim == 0 || b.mlp == 0)
            {
                return bad(
                    "vit.blocks",
                    "every block keeps ≥ 1 head, head size, MLP unit".into(),
                );
            }
        }
        if self.pretrained.is_none() && self.pretrained_widths.is_some() {
            return bad(
                "pretrained_widths",
                "set without a pretrained backbone".to_string(),
            );
        }
        if self.widths.contains(&0) {
            return bad("widths", format!("{:?}: all positive", self.widths));
        }
        let (t, s) = (self.template_size, self.search_size);
        let tf = self.feature_size(t).unwrap_or(0);
        if tf < 3 {
            return bad(
                "template_size",
                format!(
                    "{t} gives {tf}×{tf} template features; need ≥ 3 (stride {})",
                    self.stride
                ),
            );
        }
        let sf = self.feature_size(s).unwrap_or(0);
        if sf <= tf {
            return bad(
                "search_size",
                format!("{s} must give larger features than the template's {t}"),
            );
        }
        // The response cells must sit exactly `stride` search pixels apart and centred: true
        // when both sizes are congruent so the valid convolutions align.
        if (s - t) % self.stride != 0 || sf - tf != (s - t) / self.stride {
            return bad(
                "search_size",
                format!(
                    "{s} − {t} must be a multiple of the stride {} that the backbone maps to \
                     (search − template)/stride more feature cells (try {})",
                    self.stride,
                    t + self.stride * ((s - t) / self.stride)
                ),
            );
        }
        Ok(())
    }
}

/// Add every backbone weight (same names in all three graphs) and return a closure-free
/// builder of the backbone applied to `x` with node prefix `branch`.
struct Backbone {
    widths: [usize; 4],
    stride: usize,
    trunk: Trunk,
    /// Feature map sides of the template and the search branch (a token trunk's output is
    /// laid out as a map per branch).
    sides: (usize, usize),
}

/// What computes the features before the neck.
enum Trunk {
    /// conv1..conv4, built in place.
    Own,
    /// A spliced conv trunk (MobileNetV2 cut after some block, batch norms folded):
    /// `[N, C, h, w]`.
    Conv(OnnxModel),
    /// A spliced ViT trunk ([`vit_trunk`]): `[N, dim, P]` tokens, reshaped per branch.
    Tokens(OnnxModel, usize),
}

impl Backbone {
    fn apply(&self, n: &mut Net, branch: &str, x: &str, first: bool) -> Result<String> {
        let (trunk, cin) = match &self.trunk {
            Trunk::Own => return Ok(self.apply_own(n, branch, x, first)),
            Trunk::Conv(t) => (t, trunk_channels(t)?),
            Trunk::Tokens(t, dim) => (t, *dim),
        };
        let outs = n.b.splice(trunk, x, &format!("{branch}.backbone"), first)?;
        let [f] = outs.as_slice() else {
            return Err(Error::Graph(
                "the pretrained trunk has more than one output".into(),
            ));
        };
        let mut f = f.clone();
        if let Trunk::Tokens(..) = self.trunk {
            let side = if branch == "template" {
                self.sides.0
            } else {
                self.sides.1
            } as i64;
            f = n.reshape(&format!("{branch}.backbone.map"), &f, &[0, 0, side, side]);
        }
        let cout = self.widths[3];
        let (w, b) = ("neck.conv.weight", "neck.conv.bias");
        if first {
            let t = n.init.kaiming_uniform(&[cout, cin, 1, 1]);
            n.b.init(w, &t);
            n.b.init(b, &super::init::Init::zeros(&[cout]));
        }
        Ok(n.node("Conv", &format!("{branch}.neck.conv"), &[&f, w, b], vec![]))
    }

    fn apply_own(&self, n: &mut Net, branch: &str, x: &str, first: bool) -> String {
        let cins = [3, self.widths[0], self.widths[1], self.widths[2]];
        let mut x = x.to_string();
        for (i, (&cin, &cout)) in cins.iter().zip(&self.widths).enumerate() {
            let l = i + 1;
            let stride = if l == 1 { 2 } else { 1 };
            x = self.conv(n, branch, l, &x, cin, cout, stride, first);
            x = self.bn(n, branch, l, &x, cout, first);
            if l < 4 {
                x = n.relu(&format!("{branch}.backbone.relu{l}"), &x);
            }
            if l == 1 || (l == 2 && self.stride == 8) {
                x = n.maxpool(&format!("{branch}.backbone.pool{l}"), &x, 3, 2);
            }
        }
        x
    }

    /// Conv whose weights are `backbone.conv{l}.*`, created on the first use only.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        n: &mut Net,
        branch: &str,
        l: usize,
        x: &str,
        cin: usize,
        cout: usize,
        stride: usize,
        first: bool,
    ) -> String {
        let w = format!("backbone.conv{l}.weight");
        let b = format!("backbone.conv{l}.bias");
        if first {
            let t = n.init.kaiming_uniform(&[cout, cin, 3, 3]);
            n.b.init(&w, &t);
            n.b.init(&b, &super::init::Init::zeros(&[cout]));
        }
        let name = format!("{branch}.backbone.conv{l}");
        let s = stride as i64;
        n.node(
            "Conv",
            &name,
            &[x, &w, &b],
            vec![
                edgeslim_onnx::node::ints("kernel_shape", &[3, 3]),
                edgeslim_onnx::node::ints("strides", &[s, s]),
            ],
        )
    }

    fn bn(&self, n: &mut Net, branch: &str, l: usize, x: &str, c: usize, first: bool) -> String {
        let p = format!("backbone.bn{l}");
        if first {
            use super::init::Init;
            n.b.init(&format!("{p}.weight"), &Init::constant(&[c], 1.0));
            n.b.init(&format!("{p}.bias"), &Init::zeros(&[c]));
            n.b.init(&format!("{p}.running_mean"), &Init::zeros(&[c]));
            n.b.init(&format!("{p}.running_var"), &Init::constant(&[c], 1.0));
        }
        let ins = [
            x.to_string(),
            format!("{p}.weight"),
            format!("{p}.bias"),
            format!("{p}.running_mean"),
            format!("{p}.running_var"),
        ];
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        n.node(
            "BatchNormalization",
            &format!("{branch}.backbone.bn{l}"),
            &ins,
            vec![
                edgeslim_onnx::node::float("epsilon", 1e-5),
                edgeslim_onnx::node::float("momentum", 0.9),
            ],
        )
    }
}

/// Channels of the trunk's output, from its declared shape.
fn trunk_channels(trunk: &OnnxModel) -> Result<usize> {
    trunk
        .graph()
        .output
        .first()
        .and_then(|o| edgeslim_onnx::optimize::shapes::declared(o).get(1).cloned())
        .and_then(|d| match d {
            edgeslim_runtime::model::Dim::Fixed(c) => Some(c),
            _ => None,
        })
        .ok_or_else(|| Error::Graph("the pretrained trunk declares no output channels".into()))
}

/// The ViT trunk of a tracker with a transformer backbone: input `x [N, 3, S, S]` (any side
/// the stem accepts), output `features [N, dim, P]` (the tokens, channels first), weights
/// named `backbone.*` as in the tracker's graphs. ViT-Slim recognises, masks and slices this
/// graph; the tracker graphs splice it into each branch.
pub fn vit_trunk(cfg: &SiameseConfig) -> Result<OnnxModel> {
    cfg.validate()?;
    let v = cfg
        .vit
        .as_ref()
        .ok_or_else(|| Error::Invalid("siamese: the config has no vit backbone".into()))?;
    let mut n = Net::new("siamese_vit_trunk", cfg.seed);
    let s = cfg.search_size as i64;
    let mut x = n.b.input_dims(
        "x",
        DataType::FLOAT,
        &[D::Sym("N"), D::N(3), D::N(s), D::N(s)],
    );
    let mut cin = 3;
    if v.hybrid() {
        let c = v.stem_channels;
        x = n.conv("backbone.stem.conv", &x, 3, c, 3, 2, 0, true);
        x = n.batchnorm("backbone.stem.bn", &x, c);
        x = n.relu("backbone.stem.relu", &x);
        x = n.maxpool("backbone.stem.pool", &x, 3, 2);
        cin = c;
    }
    let (d, p) = (v.dim, cfg.vit_patch());
    let e = n.conv("backbone.patch_embed", &x, cin, d, p, p, 0, true);
    // PEG: a depth-wise 3×3 conv of the token map added to it, starting near zero.
    let w = n.init.trunc_normal(&[d, 1, 3, 3], 0.02);
    let w = n.b.init("backbone.peg.weight", &w);
    let b =
        n.b.init("backbone.peg.bias", &super::init::Init::zeros(&[d]));
    let pe = n.node(
        "Conv",
        "backbone.peg",
        &[&e, &w, &b],
        vec![
            edgeslim_onnx::node::ints("kernel_shape", &[3, 3]),
            edgeslim_onnx::node::ints("pads", &[1, 1, 1, 1]),
            int("group", d as i64),
        ],
    );
    let e = n.add("backbone.peg.add", &e, &pe);
    let t = n.reshape("backbone.tokens", &e, &[0, 0, -1]);
    let mut t = n.transpose("backbone.tokens.transpose", &t, &[0, 2, 1]);
    for (i, shape) in v.block_shapes().iter().enumerate() {
        t = super::vit::transformer_block(&mut n, &format!("backbone.blocks.{i}"), &t, d, shape);
    }
    let t = n.layer_norm("backbone.norm", &t, d);
    n.b.node_named(
        "Transpose",
        "backbone.features",
        &[&t],
        &["features"],
        vec![edgeslim_onnx::node::ints("perm", &[0, 2, 1])],
    );
    n.b.output_dims("features", &[D::Sym("N"), D::N(d as i64), D::Sym("P")]);
    Ok(n.b.finish())
}

/// The backbone of `cfg`; `trunk` replaces the ViT trunk built from the config (a masked or
/// sliced one from ViT-Slim).
fn backbone(cfg: &SiameseConfig, replacement: Option<&OnnxModel>) -> Result<Backbone> {
    if replacement.is_some() && cfg.vit.is_none() {
        return Err(Error::Invalid(
            "siamese: a replacement trunk needs a vit backbone".into(),
        ));
    }
    let trunk = match (&cfg.pretrained, &cfg.vit) {
        (_, Some(v)) => Trunk::Tokens(
            match replacement {
                Some(t) => t.clone(),
                None => vit_trunk(cfg)?,
            },
            v.dim,
        ),
        (Some(_), None) => {
            let assets = edgeslim_data::assets::Assets::open();
            assets.ensure()?;
            let mut sd = edgeslim_import::state::StateDict::read(
                &assets.file(edgeslim_data::assets::MOBILENETV2_PT),
            )?;
            if let Some(w) = &cfg.pretrained_widths {
                sd = edgeslim_import::mobilenetv2::narrow(&sd, cfg.pretrained_blocks, w)?;
            }
            Trunk::Conv(edgeslim_import::mobilenetv2::build(
                &sd,
                "mobilenetv2",
                cfg.template_size,
                edgeslim_import::mobilenetv2::Head::Truncated(cfg.pretrained_blocks),
                edgeslim_import::convnet::BatchNorm::Fold,
            )?)
        }
        (None, None) => Trunk::Own,
    };
    Ok(Backbone {
        widths: cfg.widths,
        stride: cfg.stride,
        trunk,
        sides: (cfg.template_features(), cfg.search_features()),
    })
}

/// `head.adjust`: 1×1 conv C → 1 with bias, weight 1/(C·h·w) (the mean correlation).
fn adjust(n: &mut Net, cfg: &SiameseConfig, x: &str) -> String {
    let c = cfg.channels();
    let tf = cfg.template_features();
    let w = Tensor::f32(vec![1, c, 1, 1], vec![1.0 / (c * tf * tf) as f32; c]).expect("volume");
    let w = n.b.init("head.adjust.weight", &w);
    let b =
        n.b.init("head.adjust.bias", &super::init::Init::zeros(&[1]));
    n.b.node_named("Conv", "head.adjust", &[x, &w, &b], &["response"], vec![]);
    "response".to_string()
}

fn finish(n: Net, cfg: &SiameseConfig, form: &str) -> OnnxModel {
    let mut m = n.b.finish();
    super::describe(&mut m, &format!("siamese-{form}"), cfg);
    m.set_metadata(
        "edgeslim.tracker.response_size",
        &cfg.response_size().to_string(),
    );
    m.set_metadata("edgeslim.tracker.stride", &cfg.stride.to_string());
    m.set_metadata(
        "edgeslim.tracker.template_size",
        &cfg.template_size.to_string(),
    );
    m.set_metadata("edgeslim.tracker.search_size", &cfg.search_size.to_string());
    m.set_metadata("edgeslim.tracker.context", "0.5");
    m
}

/// The training graph: `template [B,3,T,T]`, `search [B,3,S,S]` → `response [B,1,m,m]`,
/// with a fixed batch `B`.
pub fn build_train(cfg: &SiameseConfig, batch: usize) -> Result<OnnxModel> {
    build_train_with(cfg, batch, None)
}

/// [`build_train`] with `trunk` in place of the config's ViT trunk.
pub fn build_train_with(
    cfg: &SiameseConfig,
    batch: usize,
    trunk: Option<&OnnxModel>,
) -> Result<OnnxModel> {
    cfg.validate()?;
    if batch == 0 {
        return Err(Error::Invalid("siamese: batch must be at least 1".into()));
    }
    let mut n = Net::new("siamese_train", cfg.seed);
    let (t, s, b) = (
        cfg.template_size as i64,
        cfg.search_size as i64,
        batch as i64,
    );
    let z = n.b.input("template", &[b, 3, t, t]);
    let x = n.b.input("search", &[b, 3, s, s]);
    let bb = backbone(cfg, trunk)?;
    let zf = bb.apply(&mut n, "template", &z, true)?;
    let xf = bb.apply(&mut n, "search", &x, false)?;
    let (c, tf, sf, m) = (
        cfg.channels() as i64,
        cfg.template_features() as i64,
        cfg.search_features() as i64,
        cfg.response_size() as i64,
    );
    let k = n.reshape("head.xcorr.kernel", &zf, &[b * c, 1, tf, tf]);
    let xi = n.reshape("head.xcorr.input", &xf, &[1, b * c, sf, sf]);
    let r = n.node("Conv", "head.xcorr", &[&xi, &k], vec![int("group", b * c)]);
    let r = n.reshape("head.xcorr.output", &r, &[b, c, m, m]);
    adjust(&mut n, cfg, &r);
    n.b.output_dims("response", &[D::N(b), D::N(1), D::N(m), D::N(m)]);
    Ok(finish(n, cfg, "train"))
}

/// The template branch: `template [1,3,T,T]` → `kernel [C,1,h,w]`.
pub fn build_template(cfg: &SiameseConfig) -> Result<OnnxModel> {
    build_template_with(cfg, None)
}

/// [`build_template`] with `trunk` in place of the config's ViT trunk.
pub fn build_template_with(cfg: &SiameseConfig, trunk: Option<&OnnxModel>) -> Result<OnnxModel> {
    cfg.validate()?;
    let mut n = Net::new("siamese_template", cfg.seed);
    let t = cfg.template_size as i64;
    let z = n.b.input("template", &[1, 3, t, t]);
    let zf = backbone(cfg, trunk)?.apply(&mut n, "template", &z, true)?;
    let (c, tf) = (cfg.channels() as i64, cfg.template_features() as i64);
    let shape = n.const_i64("kernel.shape", &[c, 1, tf, tf]);
    n.b.node_named("Reshape", "kernel", &[&zf, &shape], &["kernel"], vec![]);
    n.b.output_dims("kernel", &[D::N(c), D::N(1), D::N(tf), D::N(tf)]);
    Ok(finish(n, cfg, "template"))
}

/// The search branch: `search [N,3,S,S]`, `kernel [C,1,h,w]` → `response [N,1,m,m]`.
pub fn build_search(cfg: &SiameseConfig) -> Result<OnnxModel> {
    build_search_with(cfg, None)
}

/// [`build_search`] with `trunk` in place of the config's ViT trunk.
pub fn build_search_with(cfg: &SiameseConfig, trunk: Option<&OnnxModel>) -> Result<OnnxModel> {
    cfg.validate()?;
    let mut n = Net::new("siamese_search", cfg.seed);
    let s = cfg.search_size as i64;
    let x = n.b.input_dims(
        "search",
        DataType::FLOAT,
        &[D::Sym("N"), D::N(3), D::N(s), D::N(s)],
    );
    let (c, tf, m) = (
        cfg.channels() as i64,
        cfg.template_features() as i64,
        cfg.response_size() as i64,
    );
    let k = n.b.input("kernel", &[c, 1, tf, tf]);
    // Consume the backbone's random draws in the same order as the other graphs, so an
    // untrained search graph holds the same weights as the template graph with that seed.
    let xf = backbone(cfg, trunk)?.apply(&mut n, "search", &x, true)?;
    let r = n.node("Conv", "head.xcorr", &[&xf, &k], vec![int("group", c)]);
    adjust(&mut n, cfg, &r);
    n.b.output_dims("response", &[D::Sym("N"), D::N(1), D::N(m), D::N(m)]);
    Ok(finish(n, cfg, "search"))
}

/// The search branch's weights as one chain for channel analysis: `search [1,3,S,S]` →
/// backbone → `head.adjust` applied to the features → `probe [1,1,s,s]`. Same weight names
/// as the search graph; the correlation with the template (channel j times channel j) is left
/// out, it removes the same channels from both sides. A graph pruner sees every channel of
/// the backbone and the correlation as prunable here, which it cannot in the search graph
/// (where the kernel is a graph input).
pub fn build_channel_probe(cfg: &SiameseConfig) -> Result<OnnxModel> {
    cfg.validate()?;
    let mut n = Net::new("siamese_probe", cfg.seed);
    let s = cfg.search_size as i64;
    let x = n.b.input("search", &[1, 3, s, s]);
    let xf = backbone(cfg, None)?.apply(&mut n, "search", &x, true)?;
    let r = adjust(&mut n, cfg, &xf);
    let sf = cfg.search_features() as i64;
    n.b.output_dims(&r, &[D::N(1), D::N(1), D::N(sf), D::N(sf)]);
    Ok(n.b.finish())
}

/// Copy the initializers of `dst` that `wanted` accepts from the first of `sources` holding
/// one of that name, checking shapes (all three siamese graphs share weight names). `what`
/// names the sources in errors, which name the missing or mismatched tensor.
pub fn copy_weights_by_name(
    dst: &mut OnnxModel,
    sources: &[&OnnxModel],
    wanted: impl Fn(&str) -> bool,
    what: &str,
) -> Result<()> {
    let names: Vec<String> = dst
        .graph()
        .initializer
        .iter()
        .filter(|t| wanted(&t.name))
        .map(|t| t.name.clone())
        .collect();
    for name in names {
        let src = sources
            .iter()
            .find_map(|m| m.initializer(&name))
            .ok_or_else(|| Error::tensor(&name, format!("{what} have no such weight")))?;
        let t = Tensor::from_proto(src)?;
        let want = dst
            .initializer(&name)
            .map(edgeslim_onnx::tensor::proto_dims)
            .transpose()?;
        if want.as_deref() != Some(t.dims.as_slice()) {
            return Err(Error::tensor(
                &name,
                format!("{what} hold shape {:?}, the graph wants {:?}", t.dims, want),
            ));
        }
        dst.set_initializer(&name, &t);
    }
    Ok(())
}

/// The runtime pair (template, search) holding the weights of a trained training graph:
/// every initializer of the two graphs is copied by name from `trained`, with its shape
/// checked. Errors name the missing or mismatched tensor.
pub fn export_tracker(trained: &OnnxModel, cfg: &SiameseConfig) -> Result<(OnnxModel, OnnxModel)> {
    export_tracker_with(trained, cfg, None)
}

/// [`export_tracker`] with `trunk` in place of the config's ViT trunk (its initializers, the
/// masks of a ViT-Slim search among them, are copied from `trained` too).
pub fn export_tracker_with(
    trained: &OnnxModel,
    cfg: &SiameseConfig,
    trunk: Option<&OnnxModel>,
) -> Result<(OnnxModel, OnnxModel)> {
    let mut template = build_template_with(cfg, trunk)?;
    let mut search = build_search_with(cfg, trunk)?;
    for m in [&mut template, &mut search] {
        copy_weights_by_name(
            m,
            &[trained],
            |_| true,
            "the trained weights (a siamese training graph with the same config?)",
        )?;
        if let Some(v) = trained.metadata("edgeslim.seed") {
            let v = v.to_string();
            m.set_metadata("edgeslim.seed", &v);
        }
    }
    Ok((template, search))
}
