//! Reference graphs the engine is checked and measured on (tests, `examples/engine_vit_bench`).
//! Built with the IR's `GraphBuilder` the way exporters write them, with seeded weights.

use edgeslim_onnx::builder::{GraphBuilder, D};
use edgeslim_onnx::node::{float, int, ints};
use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_runtime::input::SplitMix64;
use onnx_protobuf::tensor_proto::DataType;

/// A small ViT on 1x28x28 images with 7x7 patches (16 patches + class token).
#[derive(Debug, Clone)]
pub struct VitConfig {
    pub blocks: usize,
    pub dim: usize,
    pub heads: usize,
    pub mlp: usize,
    pub classes: usize,
    pub seed: u64,
}

impl Default for VitConfig {
    /// The size the benchmark uses: 4 blocks, 2 heads, dim 64, MLP 128, 10 classes.
    fn default() -> Self {
        VitConfig {
            blocks: 4,
            dim: 64,
            heads: 2,
            mlp: 128,
            classes: 10,
            seed: 1,
        }
    }
}

struct Init(SplitMix64);

impl Init {
    fn uniform(&mut self, dims: &[usize], scale: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v = (0..n)
            .map(|_| (self.0.next_f32() * 2.0 - 1.0) * scale)
            .collect();
        Tensor::f32(dims.to_vec(), v).expect("volume matches")
    }

    fn range(&mut self, dims: &[usize], lo: f32, hi: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v = (0..n).map(|_| lo + self.0.next_f32() * (hi - lo)).collect();
        Tensor::f32(dims.to_vec(), v).expect("volume matches")
    }
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::i64(vec![v.len()], v.to_vec()).expect("1-D")
}

fn scalar_i64(v: i64) -> Tensor {
    Tensor::i64(vec![], vec![v]).expect("scalar")
}

/// The ViT as PyTorch exports it: patch embedding (7x7 conv, stride 7), class token expanded
/// to the batch read from the input's shape and concatenated, positional embedding,
/// pre-norm blocks with LayerNormalization, multi-head attention as
/// MatMul/Reshape/Transpose/Gather/MatMul/Softmax, a GELU MLP (the opset-20 `Gelu` op in even
/// blocks, the `Erf` decomposition older exporters write in odd ones), residual adds, a final
/// LayerNormalization, the class token gathered, a Gemm head. Input `x` `[N, 1, 28, 28]`,
/// output `logits` `[N, classes]`.
pub fn vit(cfg: &VitConfig) -> OnnxModel {
    let (dim, heads, mlp, classes) = (cfg.dim, cfg.heads, cfg.mlp, cfg.classes);
    let mut w = Init(SplitMix64(cfg.seed));
    let mut b = GraphBuilder::new("vit", 20);
    let x = b.input_dims(
        "x",
        DataType::FLOAT,
        &[D::Sym("N"), 1.into(), 28.into(), 28.into()],
    );
    let d = dim as i64;
    let dh = dim / heads.max(1);
    let wscale = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
    let wp = b.init("patch.w", &w.uniform(&[dim, 1, 7, 7], wscale(49)));
    let bp = b.init("patch.b", &w.uniform(&[dim], 0.02));
    let pe = b.node("Conv", &[&x, &wp, &bp], vec![ints("strides", &[7, 7])]);
    let s1 = b.init("shape.tokens", &i64s(&[0, d, 16]));
    let tok = b.node("Reshape", &[&pe, &s1], vec![]);
    let tok = b.node("Transpose", &[&tok], vec![ints("perm", &[0, 2, 1])]);
    let cls = b.init("cls_token", &w.uniform(&[1, 1, dim], 0.02));
    let shp = b.node("Shape", &[&x], vec![]);
    let i0 = b.init("idx0", &scalar_i64(0));
    let i1 = b.init("idx1", &scalar_i64(1));
    let i2 = b.init("idx2", &scalar_i64(2));
    let n = b.node("Gather", &[&shp, &i0], vec![int("axis", 0)]);
    let ax0 = b.init("axes0", &i64s(&[0]));
    let n1 = b.node("Unsqueeze", &[&n, &ax0], vec![]);
    let one_d = b.init("one_d", &i64s(&[1, d]));
    let cshape = b.node("Concat", &[&n1, &one_d], vec![int("axis", 0)]);
    let clsb = b.node("Expand", &[&cls, &cshape], vec![]);
    let seq = b.node("Concat", &[&clsb, &tok], vec![int("axis", 1)]);
    let pos = b.init("pos_embed", &w.uniform(&[1, 17, dim], 0.02));
    let mut h = b.node("Add", &[&seq, &pos], vec![]);
    let qkv_shape = b.init("shape.qkv", &i64s(&[0, 17, 3, heads as i64, dh as i64]));
    let merge_shape = b.init("shape.merge", &i64s(&[0, 17, d]));
    let scale = b.init("attn.scale", &Tensor::scalar_f32(1.0 / (dh as f32).sqrt()));
    let sqrt2 = b.init("sqrt2", &Tensor::scalar_f32(std::f32::consts::SQRT_2));
    let half = b.init("half", &Tensor::scalar_f32(0.5));
    let onef = b.init("one", &Tensor::scalar_f32(1.0));
    for k in 0..cfg.blocks {
        let p = |s: &str| format!("blk{k}.{s}");
        let g1 = b.init(&p("ln1.g"), &w.range(&[dim], 0.9, 1.1));
        let b1 = b.init(&p("ln1.b"), &w.uniform(&[dim], 0.02));
        let ln1 = b.node(
            "LayerNormalization",
            &[&h, &g1, &b1],
            vec![int("axis", -1), float("epsilon", 1e-6)],
        );
        let wqkv = b.init(&p("qkv.w"), &w.uniform(&[dim, 3 * dim], wscale(dim)));
        let bqkv = b.init(&p("qkv.b"), &w.uniform(&[3 * dim], 0.02));
        let qkv = b.node("MatMul", &[&ln1, &wqkv], vec![]);
        let qkv = b.node("Add", &[&qkv, &bqkv], vec![]);
        let qkv = b.node("Reshape", &[&qkv, &qkv_shape], vec![]);
        let qkv = b.node("Transpose", &[&qkv], vec![ints("perm", &[2, 0, 3, 1, 4])]);
        let q = b.node("Gather", &[&qkv, &i0], vec![int("axis", 0)]);
        let kk = b.node("Gather", &[&qkv, &i1], vec![int("axis", 0)]);
        let v = b.node("Gather", &[&qkv, &i2], vec![int("axis", 0)]);
        let kt = b.node("Transpose", &[&kk], vec![ints("perm", &[0, 1, 3, 2])]);
        let att = b.node("MatMul", &[&q, &kt], vec![]);
        let att = b.node("Mul", &[&att, &scale], vec![]);
        let att = b.node("Softmax", &[&att], vec![int("axis", -1)]);
        let o = b.node("MatMul", &[&att, &v], vec![]);
        let o = b.node("Transpose", &[&o], vec![ints("perm", &[0, 2, 1, 3])]);
        let o = b.node("Reshape", &[&o, &merge_shape], vec![]);
        let wo = b.init(&p("proj.w"), &w.uniform(&[dim, dim], wscale(dim)));
        let bo = b.init(&p("proj.b"), &w.uniform(&[dim], 0.02));
        let o = b.node("MatMul", &[&o, &wo], vec![]);
        let o = b.node("Add", &[&o, &bo], vec![]);
        h = b.node("Add", &[&h, &o], vec![]);
        let g2 = b.init(&p("ln2.g"), &w.range(&[dim], 0.9, 1.1));
        let b2 = b.init(&p("ln2.b"), &w.uniform(&[dim], 0.02));
        let ln2 = b.node(
            "LayerNormalization",
            &[&h, &g2, &b2],
            vec![int("axis", -1), float("epsilon", 1e-6)],
        );
        let w1 = b.init(&p("fc1.w"), &w.uniform(&[dim, mlp], wscale(dim)));
        let bb1 = b.init(&p("fc1.b"), &w.uniform(&[mlp], 0.02));
        let f = b.node("MatMul", &[&ln2, &w1], vec![]);
        let f = b.node("Add", &[&f, &bb1], vec![]);
        let f = if k % 2 == 0 {
            b.node("Gelu", &[&f], vec![])
        } else {
            let dv = b.node("Div", &[&f, &sqrt2], vec![]);
            let e = b.node("Erf", &[&dv], vec![]);
            let e1 = b.node("Add", &[&e, &onef], vec![]);
            let m = b.node("Mul", &[&f, &e1], vec![]);
            b.node("Mul", &[&m, &half], vec![])
        };
        let w2 = b.init(&p("fc2.w"), &w.uniform(&[mlp, dim], wscale(mlp)));
        let bb2 = b.init(&p("fc2.b"), &w.uniform(&[dim], 0.02));
        let f = b.node("MatMul", &[&f, &w2], vec![]);
        let f = b.node("Add", &[&f, &bb2], vec![]);
        h = b.node("Add", &[&h, &f], vec![]);
    }
    let gf = b.init("norm.g", &w.range(&[dim], 0.9, 1.1));
    let bf = b.init("norm.b", &w.uniform(&[dim], 0.02));
    let hn = b.node(
        "LayerNormalization",
        &[&h, &gf, &bf],
        vec![int("axis", -1), float("epsilon", 1e-6)],
    );
    let c = b.node("Gather", &[&hn, &i0], vec![int("axis", 1)]);
    let wh = b.init("head.w", &w.uniform(&[classes, dim], wscale(dim)));
    let bh = b.init("head.b", &w.uniform(&[classes], 0.02));
    let logits = b.node("Gemm", &[&c, &wh, &bh], vec![int("transB", 1)]);
    b.node_named("Identity", "logits_out", &[&logits], &["logits"], vec![]);
    b.output_dims("logits", &[D::Sym("N"), (classes as i64).into()]);
    b.finish()
}
