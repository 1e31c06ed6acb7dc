//! A small Vision Transformer (ViT) classifier.
//!
//! ```text
//! x [N, C, H, W]
//! patch_embed.proj        Conv k=p stride=p → [N, D, H/p, W/p]
//! patch_embed.flatten     Reshape [0, 0, -1], patch_embed.transpose → [N, P, D]
//! cls_token.expand        the learned cls_token [1, 1, D] broadcast to [N, 1, D]
//! tokens.concat           Concat(cls, patches) on axis 1 → [N, T = P + 1, D]
//! pos_embed.add           + learned pos_embed [1, T, D]
//! blocks.{i}              pre-norm transformer blocks, i < depth:
//!   .norm1                  LayerNormalization
//!   .attn.q/.k/.v           MatMul + Add (weights [D, D])
//!   .attn.{q,k,v}.heads     Reshape [0, 0, H, -1] (+ Transpose) → per head
//!   .attn.scores, .scale    Q·Kᵀ, · 1/√(D/H)
//!   .attn.softmax           Softmax on the last axis
//!   .attn.context, .merge   A·V, heads merged back to [N, T, D]
//!   .attn.proj              MatMul + Add
//!   .add1                   residual
//!   .norm2                  LayerNormalization
//!   .mlp.fc1, .mlp.gelu, .mlp.fc2   MatMul + Add, exact GELU (Erf form), MatMul + Add
//!   .add2                   residual
//! norm                    final LayerNormalization
//! cls.gather              Gather index 0 on the token axis → [N, D]
//! head                    Gemm → logits [N, classes]
//! ```
//! The class token is broadcast to the batch without `Shape`/`Expand`: `cls_token.expand` is
//! `Slice(patches, token 0) · 0 + cls_token` (`cls_token.slice`, `cls_token.zero`), which
//! uses only ops the training engine differentiates, keeps the batch symbolic and holds no
//! constant that names `D` (so pruning the embedding width needs no shape rewrite). The
//! `Reshape`s use `0` (copy) and `-1` for the same reason; only the head count is written
//! into `.heads` shapes.
//!
//! GELU: tract 0.23 and ONNX Runtime 1.32 both run the opset-20 `Gelu` op, but the family
//! stays at opset 17 with the exact Erf form so every tool on the path (engine, optimiser,
//! older runtimes) reads it.

use super::layers::Net;
use crate::{Error, Result};
use edgeslim_onnx::builder::D;
use edgeslim_onnx::node::int;
use edgeslim_onnx::{OnnxModel, Tensor};
use onnx_protobuf::tensor_proto::DataType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VitConfig {
    pub in_channels: usize,
    pub image_size: usize,
    pub patch: usize,
    /// Embedding width D.
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    /// MLP hidden width = round(dim · mlp_ratio).
    pub mlp_ratio: f32,
    pub classes: usize,
    pub seed: u64,
    /// Per-block shapes (a grown or sliced ViT: heterogeneous head sizes and MLP widths);
    /// None: every block is `heads` heads of `dim / heads` and an MLP of `mlp_hidden()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<BlockShape>>,
}

impl Default for VitConfig {
    fn default() -> Self {
        VitConfig {
            in_channels: 1,
            image_size: 28,
            patch: 4,
            dim: 64,
            depth: 4,
            heads: 4,
            mlp_ratio: 2.0,
            classes: 10,
            seed: 0,
            blocks: None,
        }
    }
}

impl VitConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| Err(Error::Invalid(format!("vit: {field}: {why}")));
        if self.patch == 0 || !self.image_size.is_multiple_of(self.patch) {
            return bad(
                "patch",
                format!("{} must divide image_size {}", self.patch, self.image_size),
            );
        }
        if self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            return bad(
                "heads",
                format!("{} must divide dim {}", self.heads, self.dim),
            );
        }
        if self.depth == 0 || self.in_channels == 0 || self.classes < 2 {
            return bad(
                "depth/in_channels/classes",
                "need ≥ 1 block, ≥ 1 channel, ≥ 2 classes".into(),
            );
        }
        if let Some(b) = &self.blocks {
            if b.len() != self.depth || b.iter().any(|s| s.width() == 0 || s.mlp == 0) {
                return bad(
                    "blocks",
                    format!(
                        "{} block shapes for depth {} (each needs heads, a head size and an MLP)",
                        b.len(),
                        self.depth
                    ),
                );
            }
        }
        if self.mlp_ratio.is_nan() || self.mlp_ratio <= 0.0 || self.mlp_hidden() == 0 {
            return bad(
                "mlp_ratio",
                format!("{} gives no hidden units", self.mlp_ratio),
            );
        }
        Ok(())
    }

    pub fn mlp_hidden(&self) -> usize {
        (self.dim as f32 * self.mlp_ratio).round() as usize
    }

    /// The shape of every block.
    pub fn block_shapes(&self) -> Vec<BlockShape> {
        self.blocks.clone().unwrap_or_else(|| {
            vec![BlockShape::uniform(self.dim, self.heads, self.mlp_hidden()); self.depth]
        })
    }

    pub fn patches(&self) -> usize {
        (self.image_size / self.patch).pow(2)
    }

    /// Tokens including the class token.
    pub fn tokens(&self) -> usize {
        self.patches() + 1
    }
}

/// The shape of one transformer block: the same for every block of [`VitConfig`]; per block
/// after ViT-Slim slicing (fewer heads, smaller heads, narrower MLP, the original softmax
/// scale kept).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockShape {
    pub heads: usize,
    pub head_dim: usize,
    pub mlp: usize,
    /// The attention scale (1/√head_dim as trained; slicing keeps the original's).
    pub scale: f32,
}

impl BlockShape {
    pub fn uniform(dim: usize, heads: usize, mlp: usize) -> BlockShape {
        let head_dim = dim / heads.max(1);
        BlockShape {
            heads,
            head_dim,
            mlp,
            scale: 1.0 / (head_dim.max(1) as f32).sqrt(),
        }
    }

    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// A pre-norm transformer block on tokens `x [N, T, dim]` named `{p}.norm1`, `{p}.attn.*`,
/// `{p}.mlp.*` (the layout in the module docs); the q/k/v width is `heads · head_dim`.
pub(super) fn transformer_block(
    n: &mut Net,
    p: &str,
    x: &str,
    dim: usize,
    shape: &BlockShape,
) -> String {
    let (d, w, h) = (dim, shape.width(), shape.heads as i64);
    let hn = n.layer_norm(&format!("{p}.norm1"), x, d);
    let q = n.linear(&format!("{p}.attn.q"), &hn, d, w);
    let k = n.linear(&format!("{p}.attn.k"), &hn, d, w);
    let v = n.linear(&format!("{p}.attn.v"), &hn, d, w);
    let split = |n: &mut Net, t: &str, which: &str, perm: &[i64]| {
        let r = n.reshape(&format!("{p}.attn.{which}.heads"), t, &[0, 0, h, -1]);
        n.transpose(&format!("{p}.attn.{which}.transpose"), &r, perm)
    };
    let q = split(n, &q, "q", &[0, 2, 1, 3]); // [N, H, T, dh]
    let k = split(n, &k, "k", &[0, 2, 3, 1]); // [N, H, dh, T]
    let v = split(n, &v, "v", &[0, 2, 1, 3]); // [N, H, T, dh]
    let s = n.matmul(&format!("{p}.attn.scores"), &q, &k);
    let scale = n.const_scalar(&format!("{p}.attn.scale.value"), shape.scale);
    let s = n.mul(&format!("{p}.attn.scale"), &s, &scale);
    let a = n.softmax(&format!("{p}.attn.softmax"), &s, -1);
    let c = n.matmul(&format!("{p}.attn.context"), &a, &v);
    let c = n.transpose(&format!("{p}.attn.merge.transpose"), &c, &[0, 2, 1, 3]);
    let c = n.reshape(&format!("{p}.attn.merge"), &c, &[0, 0, -1]);
    let o = n.linear(&format!("{p}.attn.proj"), &c, w, d);
    let x = n.add(&format!("{p}.add1"), x, &o);
    let hn = n.layer_norm(&format!("{p}.norm2"), &x, d);
    let f = n.linear(&format!("{p}.mlp.fc1"), &hn, d, shape.mlp);
    let g = n.gelu(&format!("{p}.mlp.gelu"), &f);
    let f = n.linear(&format!("{p}.mlp.fc2"), &g, shape.mlp, d);
    n.add(&format!("{p}.add2"), &x, &f)
}

/// Build the ViT: input `x [N, C, H, W]`, output `logits [N, classes]`.
pub fn build(cfg: &VitConfig) -> Result<OnnxModel> {
    cfg.validate()?;
    let mut n = Net::new("vit", cfg.seed);
    let (s, d) = (cfg.image_size as i64, cfg.dim);
    let x = n.b.input_dims(
        "x",
        DataType::FLOAT,
        &[D::Sym("N"), D::N(cfg.in_channels as i64), D::N(s), D::N(s)],
    );
    let e = n.conv(
        "patch_embed.proj",
        &x,
        cfg.in_channels,
        d,
        cfg.patch,
        cfg.patch,
        0,
        true,
    );
    let e = n.reshape("patch_embed.flatten", &e, &[0, 0, -1]);
    let e = n.transpose("patch_embed.transpose", &e, &[0, 2, 1]);

    let cls = n.init.trunc_normal(&[1, 1, d], 0.02);
    let cls = n.b.init("cls_token", &cls);
    let starts = n.const_i64("cls_token.slice.starts", &[0]);
    let ends = n.const_i64("cls_token.slice.ends", &[1]);
    let axes = n.const_i64("cls_token.slice.axes", &[1]);
    let first = n.node(
        "Slice",
        "cls_token.slice",
        &[&e, &starts, &ends, &axes],
        vec![],
    );
    let zero = n.const_scalar("cls_token.zero.value", 0.0);
    let zeros = n.mul("cls_token.zero", &first, &zero);
    let cls = n.add("cls_token.expand", &zeros, &cls);
    let t = n.node("Concat", "tokens.concat", &[&cls, &e], vec![int("axis", 1)]);
    let pos = n.init.trunc_normal(&[1, cfg.tokens(), d], 0.02);
    let pos = n.b.init("pos_embed", &pos);
    let mut t = n.add("pos_embed.add", &t, &pos);

    for (i, shape) in cfg.block_shapes().iter().enumerate() {
        t = transformer_block(&mut n, &format!("blocks.{i}"), &t, d, shape);
    }
    let t = n.layer_norm("norm", &t, d);
    let idx = n.constant("cls.index", &Tensor::i64(vec![], vec![0]).expect("scalar"));
    let c = n.node("Gather", "cls.gather", &[&t, &idx], vec![int("axis", 1)]);
    let w = n.init.trunc_normal(&[cfg.classes, d], 0.02);
    n.gemm("head", "logits", &c, &w, cfg.classes);
    n.b.output_dims("logits", &[D::Sym("N"), D::N(cfg.classes as i64)]);
    let mut m = n.b.finish();
    super::describe(&mut m, "vit", cfg);
    Ok(m)
}
