//! Standard architectures built in code for the pruning tests, each with the channel
//! coupling it is known for: residual Adds, dense Concats, parallel branches, shuffles with
//! depthwise and grouped convs, Gemm MLPs, multi-head attention.

use edgeslim::onnx::builder::GraphBuilder;
use edgeslim::onnx::node::{float, int, ints};
use edgeslim::onnx::{OnnxModel, Tensor};
use edgeslim_e2e::models::{batchnorm, Weights};

pub struct Net {
    pub b: GraphBuilder,
    pub w: Weights,
    n: usize,
}

impl Net {
    pub fn new(name: &str, opset: i64, seed: u64) -> Net {
        Net {
            b: GraphBuilder::new(name, opset),
            w: Weights::new(seed),
            n: 0,
        }
    }

    fn tag(&mut self, s: &str) -> String {
        self.n += 1;
        format!("{s}{}", self.n)
    }

    /// Conv with bias, given stride and group; "same" padding, except a patchify conv
    /// (stride = kernel) which has none.
    pub fn conv(
        &mut self,
        x: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: i64,
        group: usize,
    ) -> String {
        let t = self.tag("conv");
        let scale = 1.0 / ((cin / group * k * k) as f32).sqrt();
        let w = self.b.init(
            &format!("{t}.w"),
            &self.w.uniform(&[cout, cin / group, k, k], scale),
        );
        let bias = self
            .b
            .init(&format!("{t}.b"), &self.w.uniform(&[cout], 0.1));
        let p = if stride as usize == k {
            0
        } else {
            (k / 2) as i64
        };
        self.b.node(
            "Conv",
            &[x, &w, &bias],
            vec![
                ints("kernel_shape", &[k as i64, k as i64]),
                ints("pads", &[p, p, p, p]),
                ints("strides", &[stride, stride]),
                int("group", group as i64),
            ],
        )
    }

    pub fn bn(&mut self, x: &str, c: usize) -> String {
        let t = self.tag("bn");
        batchnorm(&mut self.b, &mut self.w, x, c, &t)
    }

    pub fn relu(&mut self, x: &str) -> String {
        self.b.node("Relu", &[x], vec![])
    }

    pub fn cbr(&mut self, x: &str, cin: usize, cout: usize, k: usize, stride: i64) -> String {
        let c = self.conv(x, cin, cout, k, stride, 1);
        let n = self.bn(&c, cout);
        self.relu(&n)
    }

    /// GAP → Flatten → Gemm(classes), named output `y`.
    pub fn head(&mut self, x: &str, c: usize, classes: usize) -> OnnxModel {
        let gp = self.b.node("GlobalAveragePool", &[x], vec![]);
        let fl = self.b.node("Flatten", &[&gp], vec![]);
        let w = self.b.init("fc.w", &self.w.uniform(&[classes, c], 0.5));
        let bias = self.b.init("fc.b", &self.w.uniform(&[classes], 0.1));
        self.b.node_named(
            "Gemm",
            "fc",
            &[&fl, &w, &bias],
            &["y"],
            vec![int("transB", 1)],
        );
        self.b.output("y");
        let b = std::mem::replace(&mut self.b, GraphBuilder::new("x", 13));
        b.finish()
    }

    pub fn linear(&mut self, x: &str, din: usize, dout: usize) -> String {
        let t = self.tag("linear");
        let w = self.b.init(
            &format!("{t}.w"),
            &self.w.uniform(&[din, dout], 1.0 / (din as f32).sqrt()),
        );
        let bias = self
            .b
            .init(&format!("{t}.b"), &self.w.uniform(&[dout], 0.1));
        let m = self.b.node("MatMul", &[x, &w], vec![]);
        self.b.node("Add", &[&m, &bias], vec![])
    }

    pub fn shape(&mut self, dims: &[i64]) -> String {
        let t = self.tag("shape");
        self.b.init(
            &t,
            &Tensor::i64(vec![dims.len()], dims.to_vec()).expect("dims"),
        )
    }
}

/// A ResNet-style stack: stem, two identity blocks, a strided block with a 1x1 projection.
pub fn resnet() -> OnnxModel {
    let mut n = Net::new("resnet", 13, 11);
    let x = n.b.input("x", &[1, 3, 16, 16]);
    let mut h = n.cbr(&x, 3, 8, 3, 1);
    for _ in 0..2 {
        let a = n.cbr(&h, 8, 8, 3, 1);
        let c = n.conv(&a, 8, 8, 3, 1, 1);
        let c = n.bn(&c, 8);
        let s = n.b.node("Add", &[&c, &h], vec![]);
        h = n.relu(&s);
    }
    let a = n.cbr(&h, 8, 16, 3, 2);
    let c = n.conv(&a, 16, 16, 3, 1, 1);
    let c = n.bn(&c, 16);
    let p = n.conv(&h, 8, 16, 1, 2, 1);
    let s = n.b.node("Add", &[&c, &p], vec![]);
    let h = n.relu(&s);
    n.head(&h, 16, 10)
}

/// A DenseNet-style stack: each layer's output is concatenated onto its input.
pub fn densenet() -> OnnxModel {
    let mut n = Net::new("densenet", 13, 12);
    let x = n.b.input("x", &[1, 3, 16, 16]);
    let mut h = n.cbr(&x, 3, 8, 3, 1);
    let mut c = 8;
    for _ in 0..3 {
        let a = n.bn(&h, c);
        let a = n.relu(&a);
        let y = n.conv(&a, c, 4, 3, 1, 1);
        h = n.b.node("Concat", &[&h, &y], vec![int("axis", 1)]);
        c += 4;
    }
    let t = n.cbr(&h, c, 8, 1, 1);
    n.head(&t, 8, 10)
}

/// An Inception-style block: 1x1, 1x1→3x3, 3x3 max-pool→1x1 in parallel, concatenated.
pub fn inception() -> OnnxModel {
    let mut n = Net::new("inception", 13, 13);
    let x = n.b.input("x", &[1, 3, 16, 16]);
    let h = n.cbr(&x, 3, 8, 3, 1);
    let b1 = n.cbr(&h, 8, 4, 1, 1);
    let b2 = n.cbr(&h, 8, 4, 1, 1);
    let b2 = n.cbr(&b2, 4, 6, 3, 1);
    let mp = n.b.node(
        "MaxPool",
        &[&h],
        vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])],
    );
    let b3 = n.cbr(&mp, 8, 2, 1, 1);
    let cat = n.b.node("Concat", &[&b1, &b2, &b3], vec![int("axis", 1)]);
    let t = n.cbr(&cat, 12, 8, 1, 1);
    n.head(&t, 8, 10)
}

/// ShuffleNet-style: channel shuffle (Reshape/Transpose/Reshape), depthwise convs (one with a
/// channel multiplier), a grouped conv (kept whole), pointwise convs.
pub fn shuffle() -> OnnxModel {
    let mut n = Net::new("shuffle", 13, 14);
    let x = n.b.input("x", &[1, 3, 16, 16]);
    let h = n.cbr(&x, 3, 8, 3, 1);
    let s1 = n.shape(&[1, 2, 4, 16, 16]);
    let r = n.b.node("Reshape", &[&h, &s1], vec![]);
    let t =
        n.b.node("Transpose", &[&r], vec![ints("perm", &[0, 2, 1, 3, 4])]);
    let s2 = n.shape(&[1, 8, 16, 16]);
    let sh = n.b.node("Reshape", &[&t, &s2], vec![]);
    let dw = n.conv(&sh, 8, 8, 3, 1, 8);
    let dw = n.bn(&dw, 8);
    let dw = n.relu(&dw);
    let dm = n.conv(&dw, 8, 16, 3, 1, 8);
    let pw = n.cbr(&dm, 16, 8, 1, 1);
    let gc = n.conv(&pw, 8, 8, 1, 1, 2);
    let gc = n.relu(&gc);
    let out = n.cbr(&gc, 8, 8, 1, 1);
    n.head(&out, 8, 10)
}

/// ResNeXt/RegNet-style blocks: 1x1 → grouped 3x3 (group width 2, then 8) → 1x1, with a
/// residual Add around the first block.
pub fn resnext() -> OnnxModel {
    let mut n = Net::new("resnext", 13, 15);
    let x = n.b.input("x", &[1, 3, 16, 16]);
    let stem = n.cbr(&x, 3, 16, 3, 1);
    // Block 1: group width 2 (16 groups of 2 channels), residual.
    let a = n.cbr(&stem, 16, 32, 1, 1);
    let g1 = n.conv(&a, 32, 32, 3, 1, 16);
    let g1 = n.bn(&g1, 32);
    let g1 = n.relu(&g1);
    let c = n.conv(&g1, 32, 16, 1, 1, 1);
    let c = n.bn(&c, 16);
    let sum = n.b.node("Add", &[&c, &stem], vec![]);
    let r = n.relu(&sum);
    // Block 2: group width 8 (4 groups of 8 channels), widening 32 -> 64.
    let d = n.cbr(&r, 16, 32, 1, 1);
    let g2 = n.conv(&d, 32, 64, 3, 1, 4);
    let g2 = n.relu(&g2);
    let out = n.cbr(&g2, 64, 24, 1, 1);
    n.head(&out, 24, 10)
}

/// A ConvNeXt block as PyTorch exports it (opset 17): patchify conv, depthwise 7x7, permute
/// to NHWC, LayerNormalization over channels, MLP 16 -> 64 -> 16 with SiLU (x * Sigmoid(x)),
/// permute back, residual Add.
pub fn convnext() -> OnnxModel {
    let mut n = Net::new("convnext", 17, 16);
    let x = n.b.input("x", &[1, 3, 16, 16]);
    let stem = n.conv(&x, 3, 16, 2, 2, 1);
    let dw = n.conv(&stem, 16, 16, 7, 1, 16);
    let nhwc =
        n.b.node("Transpose", &[&dw], vec![ints("perm", &[0, 2, 3, 1])]);
    let scale = n.b.init("ln.scale", &n.w.uniform(&[16], 1.0));
    let shift = n.b.init("ln.bias", &n.w.uniform(&[16], 0.1));
    let ln = n.b.node(
        "LayerNormalization",
        &[&nhwc, &scale, &shift],
        vec![int("axis", -1), float("epsilon", 1e-6)],
    );
    let h = n.linear(&ln, 16, 64);
    let gate = n.b.node("Sigmoid", &[&h], vec![]);
    let h = n.b.node("Mul", &[&h, &gate], vec![]);
    let h = n.linear(&h, 64, 16);
    let nchw =
        n.b.node("Transpose", &[&h], vec![ints("perm", &[0, 3, 1, 2])]);
    let sum = n.b.node("Add", &[&nchw, &stem], vec![]);
    n.head(&sum, 16, 10)
}

/// An MLP: Gemm (transB) → BN → Relu → Gemm → Relu → MatMul + bias.
pub fn mlp() -> OnnxModel {
    let mut n = Net::new("mlp", 13, 15);
    let x = n.b.input("x", &[2, 16]);
    let w1 = n.b.init("fc1.w", &n.w.uniform(&[32, 16], 0.25));
    let b1 = n.b.init("fc1.b", &n.w.uniform(&[32], 0.1));
    let h = n.b.node("Gemm", &[&x, &w1, &b1], vec![int("transB", 1)]);
    let h = n.bn(&h, 32);
    let h = n.relu(&h);
    let w2 = n.b.init("fc2.w", &n.w.uniform(&[32, 24], 0.2));
    let b2 = n.b.init("fc2.b", &n.w.uniform(&[24], 0.1));
    let h = n.b.node("Gemm", &[&h, &w2, &b2], vec![]);
    let h = n.relu(&h);
    let w3 = n.b.init("fc3.w", &n.w.uniform(&[24, 10], 0.2));
    let m = n.b.node("MatMul", &[&h, &w3], vec![]);
    let b3 = n.b.init("fc3.b", &n.w.uniform(&[10], 0.1));
    n.b.node_named("Add", "out", &[&m, &b3], &["y"], vec![]);
    n.b.output("y");
    n.b.finish()
}

fn layernorm(n: &mut Net, x: &str, d: usize) -> String {
    let t = n.tag("ln");
    let g = n.b.init(&format!("{t}.g"), &n.w.range(&[d], 0.5, 1.5));
    let b = n.b.init(&format!("{t}.b"), &n.w.uniform(&[d], 0.1));
    n.b.node(
        "LayerNormalization",
        &[x, &g, &b],
        vec![int("axis", -1), float("epsilon", 1e-5)],
    )
}

/// A ViT-style block: patch embedding, pre-norm multi-head attention (4 heads of 4) with a
/// residual, pre-norm MLP (GELU written with Erf) with a residual, token mean, classifier.
pub fn vit() -> OnnxModel {
    vit_with(false)
}

/// The same block with q, k and v from one fused projection `d -> 3d` and a Split, as
/// exporters of packed `in_proj` weights write it.
pub fn vit_fused_qkv() -> OnnxModel {
    vit_with(true)
}

fn vit_with(fused: bool) -> OnnxModel {
    let (d, heads, hd, t, hidden) = (16usize, 4usize, 4usize, 16usize, 32usize);
    let mut n = Net::new("vit", 17, 16);
    let x = n.b.input("x", &[1, 3, 16, 16]);
    let pe = n.conv(&x, 3, d, 4, 4, 1);
    let s = n.shape(&[1, d as i64, t as i64]);
    let tok = n.b.node("Reshape", &[&pe, &s], vec![]);
    let tok =
        n.b.node("Transpose", &[&tok], vec![ints("perm", &[0, 2, 1])]);
    let pos = n.b.init("pos", &n.w.uniform(&[1, t, d], 0.1));
    let h = n.b.node("Add", &[&tok, &pos], vec![]);
    // Attention.
    let a = layernorm(&mut n, &h, d);
    let heads_of = |n: &mut Net, y: &str| {
        let s = n.shape(&[1, t as i64, heads as i64, hd as i64]);
        let r = n.b.node("Reshape", &[y, &s], vec![]);
        n.b.node("Transpose", &[&r], vec![ints("perm", &[0, 2, 1, 3])])
    };
    let (q, k, v) = if fused {
        let qkv = n.linear(&a, d, 3 * d);
        let sizes = n.shape(&[d as i64, d as i64, d as i64]);
        n.b.node_named(
            "Split",
            "qkv_split",
            &[&qkv, &sizes],
            &["q_flat", "k_flat", "v_flat"],
            vec![int("axis", -1)],
        );
        (
            heads_of(&mut n, "q_flat"),
            heads_of(&mut n, "k_flat"),
            heads_of(&mut n, "v_flat"),
        )
    } else {
        let q = n.linear(&a, d, d);
        let k = n.linear(&a, d, d);
        let v = n.linear(&a, d, d);
        (
            heads_of(&mut n, &q),
            heads_of(&mut n, &k),
            heads_of(&mut n, &v),
        )
    };
    let kt =
        n.b.node("Transpose", &[&k], vec![ints("perm", &[0, 1, 3, 2])]);
    let sc = n.b.node("MatMul", &[&q, &kt], vec![]);
    let scale =
        n.b.init("scale", &Tensor::scalar_f32(1.0 / (hd as f32).sqrt()));
    let sc = n.b.node("Mul", &[&sc, &scale], vec![]);
    let p = n.b.node("Softmax", &[&sc], vec![int("axis", -1)]);
    let o = n.b.node("MatMul", &[&p, &v], vec![]);
    let o =
        n.b.node("Transpose", &[&o], vec![ints("perm", &[0, 2, 1, 3])]);
    let s = n.shape(&[1, t as i64, d as i64]);
    let o = n.b.node("Reshape", &[&o, &s], vec![]);
    let o = n.linear(&o, d, d);
    let h = n.b.node("Add", &[&h, &o], vec![]);
    // MLP with GELU = x·½·(1 + erf(x/√2)).
    let m = layernorm(&mut n, &h, d);
    let f = n.linear(&m, d, hidden);
    let inv = n.b.init(
        "inv_sqrt2",
        &Tensor::scalar_f32(std::f32::consts::FRAC_1_SQRT_2),
    );
    let half = n.b.init("half", &Tensor::scalar_f32(0.5));
    let one = n.b.init("one", &Tensor::scalar_f32(1.0));
    let e = n.b.node("Mul", &[&f, &inv], vec![]);
    let e = n.b.node("Erf", &[&e], vec![]);
    let e = n.b.node("Add", &[&e, &one], vec![]);
    let e = n.b.node("Mul", &[&e, &half], vec![]);
    let g = n.b.node("Mul", &[&f, &e], vec![]);
    let f2 = n.linear(&g, hidden, d);
    let h = n.b.node("Add", &[&h, &f2], vec![]);
    let pooled = n.b.node(
        "ReduceMean",
        &[&h],
        vec![ints("axes", &[1]), int("keepdims", 0)],
    );
    let w = n.b.init("cls.w", &n.w.uniform(&[10, d], 0.5));
    let bias = n.b.init("cls.b", &n.w.uniform(&[10], 0.1));
    n.b.node_named(
        "Gemm",
        "cls",
        &[&pooled, &w, &bias],
        &["y"],
        vec![int("transB", 1)],
    );
    n.b.output("y");
    n.b.finish()
}

/// A small MNIST-shaped CNN ([N, 1, 28, 28] → 10 logits), untrained: the recovery test
/// prunes it and fine-tunes the result.
pub fn mnist_cnn() -> OnnxModel {
    let mut n = Net::new("mnist-cnn-small", 13, 17);
    let x = n.b.input("x", &[1, 1, 28, 28]);
    let h = n.cbr(&x, 1, 16, 3, 2);
    let h = n.cbr(&h, 16, 32, 3, 2);
    n.head(&h, 32, 10)
}
