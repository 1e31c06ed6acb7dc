//! EfficientNet-Lite (Tan & Le 2019, the "Lite" variants for mobile accelerators: no
//! squeeze-excitation, ReLU6, fixed 32-channel stem and 1280-channel head) from a state dict
//! in the `efficientnet_pytorch` key layout (`_conv_stem`, `_blocks.N._expand_conv`, ...),
//! with TensorFlow "SAME" padding and batch-norm ε = 1e-3 as the TF checkpoints were trained.

use crate::convnet::{
    inverted_residual, stage_layout, Act, BatchNorm, BlockKeys, ConvNet, Padding,
};
use crate::state::StateDict;
use crate::Result;
use edgeslim_onnx::OnnxModel;

pub const BN_EPS: f32 = 1e-3;
pub const INPUT: &str = "image";
pub const OUTPUT: &str = "logits";

fn block_keys(i: usize, sd: &StateDict) -> BlockKeys {
    let p = format!("_blocks.{i}");
    let expand = sd
        .contains(&format!("{p}._expand_conv.weight"))
        .then(|| (format!("{p}._expand_conv"), format!("{p}._bn0")));
    BlockKeys {
        expand,
        depthwise: (format!("{p}._depthwise_conv"), format!("{p}._bn1")),
        project: (format!("{p}._project_conv"), format!("{p}._bn2")),
        name: p,
    }
}

/// The classifier: [1, 3, size, size] → ImageNet logits [1, classes].
pub fn build(sd: &StateDict, name: &str, size: usize, batch_norm: BatchNorm) -> Result<OnnxModel> {
    let blocks: Vec<BlockKeys> = (0..)
        .take_while(|i| sd.contains(&format!("_blocks.{i}._project_conv.weight")))
        .map(|i| block_keys(i, sd))
        .collect();
    let widths = blocks
        .iter()
        .map(|k| Ok(sd.float(&format!("{}.weight", k.project.0), &[None; 4])?.0[0]))
        .collect::<Result<Vec<usize>>>()?;
    let layout = stage_layout(&widths)?;
    let (mut net, x) = ConvNet::new(name, sd, Padding::TfSame, BN_EPS, INPUT, size);
    net.batch_norm = batch_norm;
    let mut y = net.conv_bn(&x, "_conv_stem", "_bn0", 2, Act::Relu6)?;
    for (keys, layout) in blocks.iter().zip(layout) {
        y = inverted_residual(&mut net, &y, keys, layout)?;
    }
    y = net.conv_bn(&y, "_conv_head", "_bn1", 1, Act::Relu6)?;
    let pooled = net.pool(&y);
    let logits = net.linear(&pooled, "_fc", "fc.out")?;
    net.finish(&logits, OUTPUT, true)
}
