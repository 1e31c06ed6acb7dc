//! Conv-4 (four blocks of Conv 3×3 + BatchNorm + ReLU + MaxPool 2, then a linear classifier),
//! the network of MAML and MetaDOCK, as ONNX:
//!
//! ```text
//! training graph: x [N, C, s, s], mask.l [out, in, 1, 1] for every block l
//!   block l: conv{l}.weight ⊙ mask.l → Conv (pad 1, no bias) → bn{l} → Relu → MaxPool 2
//!   → Flatten → head (Gemm) → logits [N, ways]
//! task graph:     x [N, C, s, s] → the same blocks without the masks (their kernels baked in)
//! ```
//! The masks are graph inputs so that the gates stay outside the graph: the learner feeds hard
//! masks with a straight-through gradient (gates.rs). Batch norm's momentum is 0, so a forward
//! pass in training mode leaves the running statistics equal to that batch's: after a task's
//! support set has gone through, the graph in evaluation mode is exactly the task's exported
//! model (statistics of its support set, which is all a board has).

use crate::{Error, Result};
use edgeslim_onnx::builder::D;
use edgeslim_onnx::node::{float, ints};
use edgeslim_onnx::OnnxModel;
use edgeslim_train::families::layers::Net;
use onnx_protobuf::tensor_proto::DataType;
use serde::{Deserialize, Serialize};

pub const INPUT: &str = "x";
pub const LOGITS: &str = "logits";

/// The name of block `l`'s mask input.
pub fn mask_input(l: usize) -> String {
    format!("mask.{l}")
}

/// The name of block `l`'s convolution weight.
pub fn conv_weight(l: usize) -> String {
    format!("conv{l}.weight")
}

/// The architectures `edgeslim meta train --arch` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Conv-4 with 32 filters per block (MAML's small CNN).
    Conv4,
    /// Conv-4 with 64 filters per block: four times the kernels, the large CNN that MetaDOCK
    /// prunes back to Conv-4's budget.
    Conv4Wide,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Conv4 => "conv4",
            Arch::Conv4Wide => "conv4-wide",
        }
    }

    pub fn width(self) -> usize {
        match self {
            Arch::Conv4 => 32,
            Arch::Conv4Wide => 64,
        }
    }
}

/// The shape of a Conv-4-style network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    pub in_channels: usize,
    /// Input side (28 for the few-shot pool).
    pub side: usize,
    /// Filters per block.
    pub widths: Vec<usize>,
    pub ways: usize,
    pub seed: u64,
}

impl NetConfig {
    pub fn of_arch(arch: Arch, ways: usize, seed: u64) -> NetConfig {
        NetConfig {
            in_channels: 1,
            side: 28,
            widths: vec![arch.width(); 4],
            ways,
            seed,
        }
    }

    /// Side of the last block's output.
    pub fn final_side(&self) -> usize {
        self.widths.iter().fold(self.side, |s, _| s / 2)
    }

    /// Input channels of each block.
    pub fn in_channels_of(&self, l: usize) -> usize {
        if l == 0 {
            self.in_channels
        } else {
            self.widths[l - 1]
        }
    }

    /// 2-D kernels (gates) of each block: out × in.
    pub fn kernels(&self) -> Vec<usize> {
        (0..self.widths.len())
            .map(|l| self.widths[l] * self.in_channels_of(l))
            .collect()
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Invalid(format!("Conv-4 network: {why}")));
        if self.widths.is_empty() || self.widths.contains(&0) || self.in_channels == 0 {
            return bad(format!(
                "widths {:?} and {} input channels",
                self.widths, self.in_channels
            ));
        }
        if self.ways < 2 {
            return bad(format!("{} ways (need ≥ 2)", self.ways));
        }
        if self.final_side() == 0 {
            return bad(format!(
                "{} blocks halve a {}-pixel input to nothing",
                self.widths.len(),
                self.side
            ));
        }
        Ok(())
    }
}

/// The gated training graph (`gated`: a mask input per block) or the plain graph of the same
/// shape. Weights are Kaiming-uniform from the seed, batch norms at γ 1, β 0.
pub fn graph(cfg: &NetConfig, gated: bool) -> Result<OnnxModel> {
    cfg.validate()?;
    let mut n = Net::new(if gated { "conv4-gated" } else { "conv4" }, cfg.seed);
    let s = cfg.side as i64;
    let mut x = n.b.input_dims(
        INPUT,
        DataType::FLOAT,
        &[D::Sym("N"), D::N(cfg.in_channels as i64), D::N(s), D::N(s)],
    );
    for (l, &w) in cfg.widths.iter().enumerate() {
        let cin = cfg.in_channels_of(l);
        let weight = n.init.kaiming_uniform(&[w, cin, 3, 3]);
        let mut weight = n.b.init(&conv_weight(l), &weight);
        if gated {
            let mask = n.b.input_dims(
                &mask_input(l),
                DataType::FLOAT,
                &[D::N(w as i64), D::N(cin as i64), D::N(1), D::N(1)],
            );
            let masked = format!("conv{l}.masked");
            n.b.node_named("Mul", &masked, &[&weight, &mask], &[&masked], vec![]);
            weight = masked;
        }
        let conv = format!("conv{l}");
        n.b.node_named(
            "Conv",
            &conv,
            &[&x, &weight],
            &[&conv],
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("pads", &[1, 1, 1, 1]),
                ints("strides", &[1, 1]),
            ],
        );
        x = batchnorm(&mut n, &format!("bn{l}"), &conv, w);
        x = n.relu(&format!("relu{l}"), &x);
        x = n.maxpool(&format!("pool{l}"), &x, 2, 2);
    }
    let flat = n.flatten("flatten", &x);
    let f = cfg.final_side();
    let features = cfg.widths.last().copied().unwrap_or(0) * f * f;
    let w = n.init.kaiming_uniform(&[cfg.ways, features]);
    n.gemm("head", LOGITS, &flat, &w, cfg.ways);
    n.b.output_dims(LOGITS, &[D::Sym("N"), D::N(cfg.ways as i64)]);
    Ok(n.b.finish())
}

/// BatchNormalization with momentum 0: the running statistics become the last training
/// batch's (the task's support set).
fn batchnorm(n: &mut Net, name: &str, x: &str, c: usize) -> String {
    use edgeslim_train::families::init::Init;
    let g =
        n.b.init(&format!("{name}.weight"), &Init::constant(&[c], 1.0));
    let be = n.b.init(&format!("{name}.bias"), &Init::zeros(&[c]));
    let m =
        n.b.init(&format!("{name}.running_mean"), &Init::zeros(&[c]));
    let v =
        n.b.init(&format!("{name}.running_var"), &Init::constant(&[c], 1.0));
    n.b.node_named(
        "BatchNormalization",
        name,
        &[x, &g, &be, &m, &v],
        &[name],
        vec![float("epsilon", 1e-5), float("momentum", 0.0)],
    );
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv4_shapes_and_kernel_counts() {
        let small = NetConfig::of_arch(Arch::Conv4, 5, 0);
        let wide = NetConfig::of_arch(Arch::Conv4Wide, 5, 0);
        assert_eq!(small.final_side(), 1);
        assert_eq!(small.kernels(), vec![32, 1024, 1024, 1024]);
        let (ks, kw): (usize, usize) = (small.kernels().iter().sum(), wide.kernels().iter().sum());
        // The wide net at a quarter of its kernels is the small net's budget (within 1 %).
        assert!(
            (kw as f64 * 0.25 - ks as f64).abs() / (ks as f64) < 0.01,
            "{ks} {kw}"
        );
        let g = graph(&small, true).unwrap();
        assert!(g.initializer("conv3.weight").is_some());
        let inputs: Vec<_> = g.graph().input.iter().map(|i| i.name.clone()).collect();
        assert_eq!(inputs, vec!["x", "mask.0", "mask.1", "mask.2", "mask.3"]);
        assert!(NetConfig { side: 8, ..small }.validate().is_err());
    }
}
