//! Small models built in code for the tests, with deterministic weights.

use edgeslim::onnx::builder::GraphBuilder;
use edgeslim::onnx::node::{float, int, ints};
use edgeslim::onnx::{OnnxModel, Tensor};
use edgeslim_runtime::input::SplitMix64;

pub struct Weights(SplitMix64);

impl Weights {
    pub fn new(seed: u64) -> Weights {
        Weights(SplitMix64(seed))
    }

    /// Uniform in [-scale, scale).
    pub fn uniform(&mut self, dims: &[usize], scale: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v = (0..n)
            .map(|_| (self.0.next_f32() * 2.0 - 1.0) * scale)
            .collect();
        Tensor::f32(dims.to_vec(), v).expect("volume matches")
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, dims: &[usize], lo: f32, hi: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v = (0..n).map(|_| lo + self.0.next_f32() * (hi - lo)).collect();
        Tensor::f32(dims.to_vec(), v).expect("volume matches")
    }
}

/// BatchNormalization with random but sane statistics on `x` over `c` channels.
pub fn batchnorm(b: &mut GraphBuilder, w: &mut Weights, x: &str, c: usize, tag: &str) -> String {
    let g = b.init(&format!("{tag}.gamma"), &w.range(&[c], 0.5, 1.5));
    let be = b.init(&format!("{tag}.beta"), &w.uniform(&[c], 0.5));
    let m = b.init(&format!("{tag}.mean"), &w.uniform(&[c], 0.5));
    let v = b.init(&format!("{tag}.var"), &w.range(&[c], 0.2, 2.0));
    b.node(
        "BatchNormalization",
        &[x, &g, &be, &m, &v],
        vec![float("epsilon", 1e-3)],
    )
}

/// A CNN with everything `optimize` must clean: Conv+BN (grouped and plain), Gemm+BN,
/// ConvTranspose+BN, Identity, Dropout, a dead branch and an unused initializer.
pub fn messy_cnn() -> OnnxModel {
    let mut w = Weights::new(1);
    let mut b = GraphBuilder::new("messy_cnn", 13);
    let x = b.input("x", &[1, 3, 16, 16]);
    let w1 = b.init("conv1.w", &w.uniform(&[8, 3, 3, 3], 0.4));
    let b1 = b.init("conv1.b", &w.uniform(&[8], 0.1));
    let c1 = b.node(
        "Conv",
        &[&x, &w1, &b1],
        vec![ints("pads", &[1, 1, 1, 1]), ints("kernel_shape", &[3, 3])],
    );
    let n1 = batchnorm(&mut b, &mut w, &c1, 8, "bn1");
    let r1 = b.node("Relu", &[&n1], vec![]);
    let w2 = b.init("conv2.w", &w.uniform(&[8, 4, 3, 3], 0.3));
    let c2 = b.node(
        "Conv",
        &[&r1, &w2],
        vec![ints("pads", &[1, 1, 1, 1]), int("group", 2)],
    );
    let n2 = batchnorm(&mut b, &mut w, &c2, 8, "bn2");
    let id = b.node("Identity", &[&n2], vec![]);
    let dr = b.node("Dropout", &[&id], vec![]);
    // ConvTranspose (groups of 2) + BN.
    let wt = b.init("deconv.w", &w.uniform(&[8, 3, 2, 2], 0.3));
    let ct = b.node(
        "ConvTranspose",
        &[&dr, &wt],
        vec![ints("strides", &[2, 2]), int("group", 2)],
    );
    let n3 = batchnorm(&mut b, &mut w, &ct, 6, "bn3");
    let gp = b.node("GlobalAveragePool", &[&n3], vec![]);
    let fl = b.node("Flatten", &[&gp], vec![]);
    let wg = b.init("fc.w", &w.uniform(&[5, 6], 0.5));
    let bg = b.init("fc.b", &w.uniform(&[5], 0.1));
    let gm = b.node("Gemm", &[&fl, &wg, &bg], vec![int("transB", 1)]);
    let n4 = batchnorm(&mut b, &mut w, &gm, 5, "bn4");
    let wg2 = b.init("fc2.w", &w.uniform(&[5, 4], 0.5));
    let gm2 = b.node("Gemm", &[&n4, &wg2], vec![]);
    let n5 = batchnorm(&mut b, &mut w, &gm2, 4, "bn5");
    b.node_named("Identity", "final_identity", &[&n5], &["logits"], vec![]);
    b.output("logits");
    // Dead branch and an unused weight.
    let dead_w = b.init("dead.w", &w.uniform(&[4, 8, 1, 1], 0.1));
    b.node("Conv", &[&r1, &dead_w], vec![]);
    b.init("unused.w", &w.uniform(&[10], 1.0));
    b.finish()
}

/// Weights held in `Constant` nodes (paddle2onnx style), including value_floats.
pub fn constant_weights() -> OnnxModel {
    let mut w = Weights::new(2);
    let mut b = GraphBuilder::new("constant_weights", 13);
    let x = b.input("x", &[2, 6]);
    let t = w.uniform(&[6, 3], 0.5);
    b.node_named(
        "Constant",
        "",
        &[],
        &["wconst"],
        vec![edgeslim::onnx::node::tensor("value", &t)],
    );
    b.node_named(
        "Constant",
        "",
        &[],
        &["bconst"],
        vec![edgeslim::onnx::node::floats(
            "value_floats",
            &[0.1, -0.2, 0.3],
        )],
    );
    let mm = b.node("MatMul", &[&x, "wconst"], vec![]);
    b.node_named("Add", "", &[&mm, "bconst"], &["y"], vec![]);
    b.output("y");
    b.finish()
}

/// The element-wise forms exporters write around convolutions, each of which `optimize`
/// rewrites for tract: learnable scale/shift after a conv and a depthwise conv (scalar and
/// per channel), hard-swish spelled `x·Clip(x+3,0,6)/6` (Paddle), `x·(Clip(x+3,0,6)/6)`
/// (PyTorch) and `x·HardSigmoid(x; 1/6, ½)`, and a squeeze-excite gate with Paddle's
/// HardSigmoid(α = 0.2) that is *not* a hard-swish and must stay. `softmax_axis` 1 is the
/// last axis of the [1, C] head (the model may move to opset 14); 0 is not (it must not).
pub fn exported_activations(opset: i64, softmax_axis: i64) -> OnnxModel {
    let mut w = Weights::new(5);
    let mut b = GraphBuilder::new("exported_activations", opset);
    let c = 8;
    let x = b.input("x", &[1, 3, 12, 12]);
    let scalar = |b: &mut GraphBuilder, name: &str, v: f32| b.init(name, &Tensor::scalar_f32(v));
    let clip = |b: &mut GraphBuilder, x: &str, opset: i64| -> String {
        if opset >= 11 {
            let lo = b.init(&format!("{x}.lo"), &Tensor::scalar_f32(0.0));
            let hi = b.init(&format!("{x}.hi"), &Tensor::scalar_f32(6.0));
            b.node("Clip", &[x, &lo, &hi], vec![])
        } else {
            b.node("Clip", &[x], vec![float("min", 0.0), float("max", 6.0)])
        }
    };
    // conv → ·s (scalar) → +b (per channel) → hard-swish (Paddle order)
    let w1 = b.init("conv1.w", &w.uniform(&[c, 3, 3, 3], 0.4));
    let c1 = b.node("Conv", &[&x, &w1], vec![ints("pads", &[1, 1, 1, 1])]);
    let s1 = scalar(&mut b, "affine1.scale", 1.7);
    let m1 = b.node("Mul", &[&s1, &c1], vec![]);
    let b1 = b.init("affine1.bias", &w.uniform(&[1, c, 1, 1], 0.5));
    let a1 = b.node("Add", &[&m1, &b1], vec![]);
    let three = scalar(&mut b, "three", 3.0);
    let six = scalar(&mut b, "six", 6.0);
    let p1 = b.node("Add", &[&a1, &three], vec![]);
    let r1 = clip(&mut b, &p1, opset);
    let x1 = b.node("Mul", &[&a1, &r1], vec![]);
    let h1 = b.node("Div", &[&x1, &six], vec![]);
    // depthwise conv → ·s (per channel, rank 3) → −b (scalar) → hard-swish (PyTorch order)
    let wd = b.init("dw.w", &w.uniform(&[c, 1, 3, 3], 0.5));
    let d = b.node(
        "Conv",
        &[&h1, &wd],
        vec![ints("pads", &[1, 1, 1, 1]), int("group", c as i64)],
    );
    let s2 = b.init("affine2.scale", &w.range(&[c, 1, 1], 0.5, 1.5));
    let m2 = b.node("Mul", &[&d, &s2], vec![]);
    let b2 = scalar(&mut b, "affine2.bias", 0.25);
    let a2 = b.node("Sub", &[&m2, &b2], vec![]);
    let p2 = b.node("Add", &[&three, &a2], vec![]);
    let r2 = clip(&mut b, &p2, opset);
    let sixth = scalar(&mut b, "sixth", 1.0 / 6.0);
    let q2 = b.node("Mul", &[&r2, &sixth], vec![]);
    let h2 = b.node("Mul", &[&a2, &q2], vec![]);
    // 1×1 conv → hard-swish as x·HardSigmoid(x)
    let w3 = b.init("pw.w", &w.uniform(&[c, c, 1, 1], 0.4));
    let c3 = b.node("Conv", &[&h2, &w3], vec![]);
    let hs = b.node(
        "HardSigmoid",
        &[&c3],
        vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)],
    );
    let h3 = b.node("Mul", &[&c3, &hs], vec![]);
    // squeeze-excite with Paddle's HardSigmoid(0.2, 0.5): a gate, not a hard-swish.
    let gp = b.node("GlobalAveragePool", &[&h3], vec![]);
    let wse = b.init("se.w", &w.uniform(&[c, c, 1, 1], 0.5));
    let se = b.node("Conv", &[&gp, &wse], vec![]);
    let gate = b.node(
        "HardSigmoid",
        &[&se],
        vec![float("alpha", 0.2), float("beta", 0.5)],
    );
    let g = b.node("Mul", &[&h3, &gate], vec![]);
    // head: pooled features → Gemm → ·s → Softmax
    let gp2 = b.node("GlobalAveragePool", &[&g], vec![]);
    let fl = b.node("Flatten", &[&gp2], vec![]);
    let wf = b.init("fc.w", &w.uniform(&[c, 5], 0.5));
    let fc = b.node("Gemm", &[&fl, &wf], vec![]);
    let sf = scalar(&mut b, "fc.scale", 2.0);
    let lf = b.node("Mul", &[&fc, &sf], vec![]);
    b.node_named(
        "Softmax",
        "softmax",
        &[&lf],
        &["probs"],
        vec![int("axis", softmax_axis)],
    );
    b.output("probs");
    b.finish()
}
