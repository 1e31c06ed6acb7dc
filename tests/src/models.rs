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
