//! Fold element-wise scale and shift by constants into the Conv, ConvTranspose or Gemm that
//! produces their input: `Mul(conv, s)`, `Add(conv, b)`, `Sub(conv, b)`, `Div(conv, d)` with a
//! scalar or per-output-channel constant become the producer's own weight and bias.
//!
//! Why: exporters write learnable affine layers (PP-LCNet's scale/bias after every conv, a
//! BatchNorm exported as Mul+Add) as separate ops. tract folds a per-channel `[1,C,1,1]`
//! operand into a plain convolution itself, but not a scalar, and not after a depthwise or
//! grouped convolution, so each of these is one more pass over the activation on the board.
//! The arithmetic is the BatchNorm fold's (f64, stored as f32).

use super::batchnorm::{fold_into_producer, ChannelAffine};
use super::PassReport;
use crate::node::display_name;
use crate::Result;
use crate::{OnnxModel, TensorData};
use onnx_protobuf::NodeProto;

/// The rank of the producer's output and its channel count (axis 1), from its weight.
fn producer_shape(model: &OnnxModel, p: &NodeProto) -> Option<(usize, usize)> {
    let w = model.constant(p.input.get(1)?)?.ok()?;
    match p.op_type.as_str() {
        "Conv" => Some((w.dims.len(), *w.dims.first()?)),
        "ConvTranspose" => {
            let g = crate::node::attr_i(p, "group").unwrap_or(1).max(1) as usize;
            Some((w.dims.len(), *w.dims.get(1)? * g))
        }
        "Gemm" => {
            let trans_b = crate::node::attr_i(p, "transB").unwrap_or(0) != 0;
            (w.dims.len() == 2).then(|| (2, if trans_b { w.dims[0] } else { w.dims[1] }))
        }
        _ => None,
    }
}

/// The constant operand as per-channel values (length `channels`), if its shape broadcasts
/// as a scalar or along axis 1 only of a rank-`rank` tensor.
fn per_channel(dims: &[usize], values: &[f32], rank: usize, channels: usize) -> Option<Vec<f64>> {
    if dims.len() > rank {
        return None;
    }
    let mut padded = vec![1usize; rank - dims.len()];
    padded.extend_from_slice(dims);
    if padded.iter().all(|&d| d == 1) {
        return Some(vec![values[0] as f64; channels]);
    }
    let along_channels =
        padded
            .iter()
            .enumerate()
            .all(|(axis, &d)| if axis == 1 { d == channels } else { d == 1 });
    along_channels.then(|| values.iter().map(|&v| v as f64).collect())
}

/// What one Mul/Add/Sub/Div node does to its non-constant input, as a channel affine map.
fn affine_of(
    model: &OnnxModel,
    node: &NodeProto,
    x_slot: usize,
    rank: usize,
    channels: usize,
) -> Option<ChannelAffine> {
    let c_name = node.input.get(1 - x_slot)?;
    let c = model.constant(c_name)?.ok()?;
    let TensorData::F32(values) = &c.data else {
        return None;
    };
    if values.is_empty() {
        return None;
    }
    let v = per_channel(&c.dims, values, rank, channels)?;
    let ones = vec![1.0; channels];
    let zeros = vec![0.0; channels];
    let affine = match (node.op_type.as_str(), x_slot) {
        ("Mul", _) => ChannelAffine {
            scale: v,
            shift: zeros,
        },
        ("Add", _) => ChannelAffine {
            scale: ones,
            shift: v,
        },
        ("Sub", 0) => ChannelAffine {
            scale: ones,
            shift: v.iter().map(|b| -b).collect(),
        },
        ("Sub", _) => ChannelAffine {
            scale: vec![-1.0; channels],
            shift: v,
        },
        ("Div", 0) if v.iter().all(|&d| d != 0.0 && d.is_finite()) => ChannelAffine {
            scale: v.iter().map(|d| 1.0 / d).collect(),
            shift: zeros,
        },
        _ => return None,
    };
    affine
        .scale
        .iter()
        .chain(&affine.shift)
        .all(|x| x.is_finite())
        .then_some(affine)
}

pub fn fold_channel_affine(model: &mut OnnxModel) -> Result<PassReport> {
    let mut report = PassReport::new("scale/shift by constants folded into Conv/Gemm");
    loop {
        let producers = model.producers();
        let consumers = model.consumers();
        let outputs = model.graph_output_names();
        let g = model.graph();
        let candidate = g.node.iter().enumerate().find_map(|(ni, n)| {
            if !matches!(n.op_type.as_str(), "Mul" | "Add" | "Sub" | "Div") || n.input.len() != 2 {
                return None;
            }
            (0..2).find_map(|x_slot| {
                let x = &n.input[x_slot];
                let pi = *producers.get(x)?;
                let p = &g.node[pi];
                if !matches!(p.op_type.as_str(), "Conv" | "ConvTranspose" | "Gemm")
                    || outputs.contains(x)
                    || consumers.get(x).map(|c| c.len()) != Some(1)
                {
                    return None;
                }
                let (rank, channels) = producer_shape(model, p)?;
                let affine = affine_of(model, n, x_slot, rank, channels)?;
                let (w, b) = fold_into_producer(model, p, &affine)?;
                Some((ni, pi, w, b))
            })
        });
        let Some((ni, pi, w, b)) = candidate else {
            break;
        };
        let node = model.graph().node[ni].clone();
        let p_name = display_name(&model.graph().node[pi]);
        let w_name = model.fresh_name(&format!("{p_name}.weight_affine"));
        model.set_initializer(&w_name, &w);
        let b_name = model.fresh_name(&format!("{p_name}.bias_affine"));
        model.set_initializer(&b_name, &b);
        {
            let p = &mut model.graph_mut().node[pi];
            p.input[1] = w_name;
            if p.input.len() < 3 {
                p.input.push(b_name);
            } else {
                p.input[2] = b_name;
            }
            p.output[0] = node.output[0].clone();
        }
        model.graph_mut().node.remove(ni);
        report.note(format!(
            "{} {} into {p_name}",
            node.op_type,
            display_name(&node)
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::per_channel;

    #[test]
    fn scalar_and_channel_operands_broadcast_per_channel() {
        assert_eq!(per_channel(&[], &[2.0], 4, 3), Some(vec![2.0; 3]));
        assert_eq!(per_channel(&[1, 1, 1, 1], &[2.0], 4, 3), Some(vec![2.0; 3]));
        assert_eq!(
            per_channel(&[1, 3, 1, 1], &[1.0, 2.0, 3.0], 4, 3),
            Some(vec![1.0, 2.0, 3.0])
        );
        assert_eq!(
            per_channel(&[3, 1, 1], &[1.0, 2.0, 3.0], 4, 3),
            Some(vec![1.0, 2.0, 3.0])
        );
        // Along the last axis of a conv output is not per channel.
        assert_eq!(per_channel(&[3], &[1.0, 2.0, 3.0], 4, 3), None);
        // Gemm [M, N]: a row vector of N is per output.
        assert_eq!(
            per_channel(&[3], &[1.0, 2.0, 3.0], 2, 3),
            Some(vec![1.0, 2.0, 3.0])
        );
        // A constant of higher rank would broadcast the output up: not foldable.
        assert_eq!(per_channel(&[1, 1, 1, 1, 1], &[2.0], 4, 3), None);
    }
}
