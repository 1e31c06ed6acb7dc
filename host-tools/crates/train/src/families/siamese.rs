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
    /// The pretrained trunk (MobileNetV2 cut after some block, batch norms folded).
    pretrained: Option<OnnxModel>,
}

impl Backbone {
    fn apply(&self, n: &mut Net, branch: &str, x: &str, first: bool) -> Result<String> {
        let Some(trunk) = &self.pretrained else {
            return Ok(self.apply_own(n, branch, x, first));
        };
        let outs = n.b.splice(trunk, x, &format!("{branch}.backbone"), first)?;
        let [f] = outs.as_slice() else {
            return Err(Error::Graph(
                "the pretrained trunk has more than one output".into(),
            ));
        };
        let cin = trunk_channels(trunk)?;
        let cout = self.widths[3];
        let (w, b) = ("neck.conv.weight", "neck.conv.bias");
        if first {
            let t = n.init.kaiming_uniform(&[cout, cin, 1, 1]);
            n.b.init(w, &t);
            n.b.init(b, &super::init::Init::zeros(&[cout]));
        }
        Ok(n.node("Conv", &format!("{branch}.neck.conv"), &[f, w, b], vec![]))
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

fn backbone(cfg: &SiameseConfig) -> Result<Backbone> {
    let pretrained = match &cfg.pretrained {
        Some(_) => {
            let assets = edgeslim_data::assets::Assets::open();
            assets.ensure()?;
            let mut sd = edgeslim_import::state::StateDict::read(
                &assets.file(edgeslim_data::assets::MOBILENETV2_PT),
            )?;
            if let Some(w) = &cfg.pretrained_widths {
                sd = edgeslim_import::mobilenetv2::narrow(&sd, cfg.pretrained_blocks, w)?;
            }
            Some(edgeslim_import::mobilenetv2::build(
                &sd,
                "mobilenetv2",
                cfg.template_size,
                edgeslim_import::mobilenetv2::Head::Truncated(cfg.pretrained_blocks),
                edgeslim_import::convnet::BatchNorm::Fold,
            )?)
        }
        None => None,
    };
    Ok(Backbone {
        widths: cfg.widths,
        stride: cfg.stride,
        pretrained,
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
    let bb = backbone(cfg)?;
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
    cfg.validate()?;
    let mut n = Net::new("siamese_template", cfg.seed);
    let t = cfg.template_size as i64;
    let z = n.b.input("template", &[1, 3, t, t]);
    let zf = backbone(cfg)?.apply(&mut n, "template", &z, true)?;
    let (c, tf) = (cfg.channels() as i64, cfg.template_features() as i64);
    let shape = n.const_i64("kernel.shape", &[c, 1, tf, tf]);
    n.b.node_named("Reshape", "kernel", &[&zf, &shape], &["kernel"], vec![]);
    n.b.output_dims("kernel", &[D::N(c), D::N(1), D::N(tf), D::N(tf)]);
    Ok(finish(n, cfg, "template"))
}

/// The search branch: `search [N,3,S,S]`, `kernel [C,1,h,w]` → `response [N,1,m,m]`.
pub fn build_search(cfg: &SiameseConfig) -> Result<OnnxModel> {
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
    let xf = backbone(cfg)?.apply(&mut n, "search", &x, true)?;
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
    let xf = backbone(cfg)?.apply(&mut n, "search", &x, true)?;
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
    let mut template = build_template(cfg)?;
    let mut search = build_search(cfg)?;
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
