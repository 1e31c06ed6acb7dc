//! The networks of MAML and MetaDOCK as ONNX: Conv-4 (four blocks of Conv 3×3 + BatchNorm +
//! ReLU + MaxPool 2, then a linear classifier) and a small ResNet-12 (four residual stages of
//! three Conv 3×3 + BatchNorm with a 1×1 shortcut, then MaxPool 2):
//!
//! ```text
//! training graph: x [N, C, s, s], mask.j [out, in, 1, 1] for every convolution j
//!   conv4 block l: conv{l}.weight ⊙ mask → Conv (pad 1, no bias) → bn{l} → Relu → MaxPool 2
//!   resnet stage l: res{l}.a → bn → Relu → res{l}.b → bn → Relu → res{l}.c → bn
//!                   + res{l}.skip (1×1) → bn, → Relu → MaxPool 2
//!   → Flatten → head (Gemm) → logits [N, ways]
//! task graph:     x [N, C, s, s] → the same without the masks (their kernels baked in)
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

/// One convolution the gates act on.
#[derive(Debug, Clone, PartialEq)]
pub struct GatedConv {
    /// Node name; the weight is `{name}.weight`.
    pub name: String,
    /// Its batch norm's name.
    pub bn: String,
    pub cin: usize,
    pub cout: usize,
    /// Kernel side (3, or 1 for a shortcut).
    pub k: usize,
    /// Side of its input (and output) map.
    pub side: usize,
    /// The convolution whose output it reads directly (None: a fixed input — the image, or a
    /// residual stage's output).
    pub producer: Option<usize>,
}

impl GatedConv {
    pub fn weight(&self) -> String {
        format!("{}.weight", self.name)
    }
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
    /// ResNet-12 with stages of 16, 32, 64 and 128 filters.
    Resnet12Small,
}

/// How the blocks are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    #[default]
    Conv4,
    Resnet12,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Conv4 => "conv4",
            Arch::Conv4Wide => "conv4-wide",
            Arch::Resnet12Small => "resnet12-small",
        }
    }
}

/// The shape of a Conv-4-style network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    #[serde(default)]
    pub family: Family,
    pub in_channels: usize,
    /// Input side (28 for the few-shot pool).
    pub side: usize,
    /// Filters per block (per residual stage).
    pub widths: Vec<usize>,
    /// ResNet: the filters of each stage's first two convolutions when packed (None: the
    /// stage's width).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_widths: Option<Vec<[usize; 2]>>,
    pub ways: usize,
    pub seed: u64,
}

impl NetConfig {
    pub fn of_arch(arch: Arch, ways: usize, seed: u64) -> NetConfig {
        let (family, widths) = match arch {
            Arch::Conv4 => (Family::Conv4, vec![32; 4]),
            Arch::Conv4Wide => (Family::Conv4, vec![64; 4]),
            Arch::Resnet12Small => (Family::Resnet12, vec![16, 32, 64, 128]),
        };
        NetConfig {
            family,
            in_channels: 1,
            side: 28,
            widths,
            inner_widths: None,
            ways,
            seed,
        }
    }

    /// Conv-4 of the given widths (tests, small studies).
    pub fn conv4(
        in_channels: usize,
        side: usize,
        widths: Vec<usize>,
        ways: usize,
        seed: u64,
    ) -> NetConfig {
        NetConfig {
            family: Family::Conv4,
            in_channels,
            side,
            widths,
            inner_widths: None,
            ways,
            seed,
        }
    }

    /// The filters of stage `l`'s first two convolutions (ResNet).
    fn inner(&self, l: usize) -> [usize; 2] {
        self.inner_widths
            .as_ref()
            .and_then(|v| v.get(l).copied())
            .unwrap_or([self.widths[l]; 2])
    }

    /// Every gated convolution, in mask order.
    pub fn convs(&self) -> Vec<GatedConv> {
        let mut v = Vec::new();
        let mut side = self.side;
        let mut cin = self.in_channels;
        for (l, &w) in self.widths.iter().enumerate() {
            match self.family {
                Family::Conv4 => {
                    v.push(GatedConv {
                        name: format!("conv{l}"),
                        bn: format!("bn{l}"),
                        cin,
                        cout: w,
                        k: 3,
                        side,
                        producer: l.checked_sub(1),
                    });
                }
                Family::Resnet12 => {
                    let [wa, wb] = self.inner(l);
                    let base = v.len();
                    let conv = |n: &str, cin, cout, k, producer| GatedConv {
                        name: format!("res{l}.{n}"),
                        bn: format!("res{l}.bn_{n}"),
                        cin,
                        cout,
                        k,
                        side,
                        producer,
                    };
                    v.push(conv("a", cin, wa, 3, None));
                    v.push(conv("b", wa, wb, 3, Some(base)));
                    v.push(conv("c", wb, w, 3, Some(base + 1)));
                    v.push(conv("skip", cin, w, 1, None));
                }
            }
            cin = w;
            side /= 2;
        }
        v
    }

    /// The convolution the classifier reads directly (Conv-4's last; a ResNet's classifier
    /// reads a residual sum).
    pub fn head_conv(&self) -> Option<usize> {
        match self.family {
            Family::Conv4 => self.widths.len().checked_sub(1),
            Family::Resnet12 => None,
        }
    }

    /// This network with each convolution's output channels set to `outs` (the packed
    /// widths; a ResNet stage's output width never changes).
    pub fn with_conv_widths(&self, outs: &[usize]) -> NetConfig {
        match self.family {
            Family::Conv4 => NetConfig {
                widths: outs.to_vec(),
                ..self.clone()
            },
            Family::Resnet12 => NetConfig {
                inner_widths: Some(outs.chunks(4).map(|c| [c[0], c[1]]).collect()),
                ..self.clone()
            },
        }
    }

    /// Side of the last block's output.
    pub fn final_side(&self) -> usize {
        self.widths.iter().fold(self.side, |s, _| s / 2)
    }

    /// 2-D kernels (gates) of each convolution: out × in.
    pub fn kernels(&self) -> Vec<usize> {
        self.convs().iter().map(|c| c.cout * c.cin).collect()
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
    let mut n = Net::new(if gated { "meta-gated" } else { "meta-task" }, cfg.seed);
    let s = cfg.side as i64;
    let mut x = n.b.input_dims(
        INPUT,
        DataType::FLOAT,
        &[D::Sym("N"), D::N(cfg.in_channels as i64), D::N(s), D::N(s)],
    );
    let convs = cfg.convs();
    let mut j = 0;
    for l in 0..cfg.widths.len() {
        match cfg.family {
            Family::Conv4 => {
                let y = conv_bn(&mut n, &convs, j, &x, gated);
                j += 1;
                x = n.relu(&format!("relu{l}"), &y);
            }
            Family::Resnet12 => {
                let a = conv_bn(&mut n, &convs, j, &x, gated);
                let a = n.relu(&format!("res{l}.relu_a"), &a);
                let b = conv_bn(&mut n, &convs, j + 1, &a, gated);
                let b = n.relu(&format!("res{l}.relu_b"), &b);
                let c = conv_bn(&mut n, &convs, j + 2, &b, gated);
                let skip = conv_bn(&mut n, &convs, j + 3, &x, gated);
                let sum = n.add(&format!("res{l}.add"), &c, &skip);
                j += 4;
                x = n.relu(&format!("res{l}.relu"), &sum);
            }
        }
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

/// Convolution `j` (its weight times its mask input when `gated`), then its batch norm.
fn conv_bn(n: &mut Net, convs: &[GatedConv], j: usize, x: &str, gated: bool) -> String {
    let c = &convs[j];
    let weight = n.init.kaiming_uniform(&[c.cout, c.cin, c.k, c.k]);
    let mut weight = n.b.init(&c.weight(), &weight);
    if gated {
        let mask = n.b.input_dims(
            &mask_input(j),
            DataType::FLOAT,
            &[D::N(c.cout as i64), D::N(c.cin as i64), D::N(1), D::N(1)],
        );
        let masked = format!("{}.masked", c.name);
        n.b.node_named("Mul", &masked, &[&weight, &mask], &[&masked], vec![]);
        weight = masked;
    }
    let (k, pad) = (c.k as i64, (c.k / 2) as i64);
    n.b.node_named(
        "Conv",
        &c.name,
        &[x, &weight],
        &[&c.name],
        vec![
            ints("kernel_shape", &[k, k]),
            ints("pads", &[pad, pad, pad, pad]),
            ints("strides", &[1, 1]),
        ],
    );
    batchnorm(n, &c.bn, &c.name, c.cout)
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
        let res = NetConfig::of_arch(Arch::Resnet12Small, 5, 0);
        assert_eq!(res.convs().len(), 16);
        assert_eq!(res.kernels()[..4], [16, 256, 256, 16]);
        assert_eq!(res.final_side(), 1);
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
