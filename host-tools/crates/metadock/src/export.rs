//! A task's model with only its active kernels (§6): every convolution weight multiplied by
//! its task's hard mask, then packed to channels where whole channels die, exactly:
//!
//! - a channel none of whose kernels the next block reads is removed (its output is unused);
//! - a channel with no active incoming kernel is a constant map, relu(BN(0)): removed when
//!   that constant is 0 (the next block reads zeros), and, in the last block, folded into the
//!   classifier's bias (the classifier reads a constant);
//! - a channel whose constant is not 0 before another convolution stays (with zero padding,
//!   a constant input is not a constant contribution at the borders).
//!
//! The rules repeat until nothing changes (removing a channel can free the kernels that fed
//! it). A block keeps at least one channel. Kernels that are inactive inside a kept channel
//! pair stay as zeros in the dense weight: the exported graph is a plain Conv-4 with smaller
//! widths, which any runtime runs at dense speed, and the report counts both its stored
//! parameters and its nonzero ones.

use crate::nets::{self, conv_weight, NetConfig};
use crate::params::to_f32;
use crate::{Error, Result};
use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_train::engine::GraphModule;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Size and cost of a task model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskModelStats {
    /// Channels kept per block.
    pub widths: Vec<usize>,
    /// Active kernels per block (of the full network's).
    pub active_kernels: Vec<usize>,
    pub kernels: Vec<usize>,
    /// Parameters stored in the packed graph (convolutions, batch-norm scales and shifts,
    /// classifier), and those of them that are not zero.
    pub params: usize,
    pub nonzero_params: usize,
    /// Multiply-accumulates per image of the packed graph as stored (dense), and of its active
    /// kernels only.
    pub macs: usize,
    pub active_macs: usize,
}

pub struct TaskModel {
    pub model: OnnxModel,
    pub stats: TaskModelStats,
}

/// The module's current weights and statistics by name.
fn values(module: &GraphModule) -> Result<HashMap<String, Vec<f32>>> {
    let mut v = HashMap::new();
    for (name, var) in module.trainable().into_iter().chain(module.running_stats()) {
        v.insert(name, to_f32(var.as_tensor())?);
    }
    Ok(v)
}

fn get<'a>(v: &'a HashMap<String, Vec<f32>>, name: &str) -> Result<&'a [f32]> {
    v.get(name)
        .map(Vec::as_slice)
        .ok_or_else(|| Error::tensor(name, "missing from the meta-model"))
}

/// The task model of the module's current (adapted) weights and statistics under `masks`
/// (`[out·in]` per block, 0 or 1).
pub fn task_model(module: &GraphModule, net: &NetConfig, masks: &[Vec<f32>]) -> Result<TaskModel> {
    let v = values(module)?;
    let blocks = net.widths.len();
    let kernels = net.kernels();
    if masks.len() != blocks || masks.iter().zip(&kernels).any(|(m, &k)| m.len() != k) {
        return Err(Error::Invalid(format!(
            "task masks of {:?} values for {kernels:?} kernels",
            masks.iter().map(Vec::len).collect::<Vec<_>>()
        )));
    }
    let active = |l: usize, o: usize, i: usize| masks[l][o * net.in_channels_of(l) + i] > 0.0;
    // The constant relu(BN(0)) of each channel, and whether it has an active incoming kernel
    // from a kept input channel.
    let mut constant = Vec::with_capacity(blocks);
    for l in 0..blocks {
        let bn = |s: &str| get(&v, &format!("bn{l}.{s}"));
        let (g, b, m, var) = (
            bn("weight")?,
            bn("bias")?,
            bn("running_mean")?,
            bn("running_var")?,
        );
        constant.push(
            (0..net.widths[l])
                .map(|o| ((0.0 - m[o]) * g[o] / (var[o] + 1e-5).sqrt() + b[o]).max(0.0))
                .collect::<Vec<f32>>(),
        );
    }
    let mut keep: Vec<Vec<bool>> = net.widths.iter().map(|&w| vec![true; w]).collect();
    loop {
        let mut changed = false;
        for l in 0..blocks {
            for o in 0..net.widths[l] {
                if !keep[l][o] {
                    continue;
                }
                let fed = (0..net.in_channels_of(l))
                    .any(|i| (l == 0 || keep[l - 1][i]) && active(l, o, i));
                let read = l + 1 == blocks
                    || (0..net.widths[l + 1]).any(|p| keep[l + 1][p] && active(l + 1, p, o));
                let remove = !read || (!fed && (constant[l][o] == 0.0 || l + 1 == blocks));
                if remove {
                    keep[l][o] = false;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for k in keep.iter_mut() {
        if !k.iter().any(|&x| x) {
            k[0] = true;
        }
    }
    let kept = |l: usize| -> Vec<usize> { (0..keep[l].len()).filter(|&o| keep[l][o]).collect() };
    let packed = NetConfig {
        widths: (0..blocks).map(|l| kept(l).len()).collect(),
        ..net.clone()
    };
    let mut model = nets::graph(&packed, false)?;
    let (mut params, mut nonzero, mut macs, mut active_macs) = (0, 0, 0, 0);
    let mut side = net.side;
    for l in 0..blocks {
        let (outs, ins): (Vec<usize>, Vec<usize>) = (
            kept(l),
            if l == 0 {
                (0..net.in_channels).collect()
            } else {
                kept(l - 1)
            },
        );
        let w = get(&v, &conv_weight(l))?;
        let cin = net.in_channels_of(l);
        let mut packed_w = Vec::with_capacity(outs.len() * ins.len() * 9);
        for &o in &outs {
            for &i in &ins {
                let on = active(l, o, i);
                let base = (o * cin + i) * 9;
                packed_w.extend(w[base..base + 9].iter().map(|&x| if on { x } else { 0.0 }));
                if on {
                    nonzero += 9;
                    active_macs += 9 * side * side;
                }
            }
        }
        params += packed_w.len();
        macs += packed_w.len() * side * side;
        model.set_initializer(
            &conv_weight(l),
            &Tensor::f32(vec![outs.len(), ins.len(), 3, 3], packed_w)?,
        );
        for s in ["weight", "bias", "running_mean", "running_var"] {
            let name = format!("bn{l}.{s}");
            let all = get(&v, &name)?;
            let t: Vec<f32> = outs.iter().map(|&o| all[o]).collect();
            if s == "weight" || s == "bias" {
                params += t.len();
                nonzero += t.len();
            }
            model.set_initializer(&name, &Tensor::f32(vec![outs.len()], t)?);
        }
        side /= 2;
    }
    // The classifier reads the last block's kept channels; a removed one is a constant whose
    // contribution joins the bias.
    let last = blocks - 1;
    let per_channel = side * side;
    let features = net.widths[last] * per_channel;
    let hw = get(&v, "head.weight")?;
    let mut hb = get(&v, "head.bias")?.to_vec();
    let outs = kept(last);
    let mut packed_hw = Vec::with_capacity(net.ways * outs.len() * per_channel);
    for (c, bias) in hb.iter_mut().enumerate() {
        let row = &hw[c * features..(c + 1) * features];
        for o in 0..net.widths[last] {
            let cols = &row[o * per_channel..(o + 1) * per_channel];
            if keep[last][o] {
                packed_hw.extend_from_slice(cols);
            } else {
                *bias += constant[last][o] * cols.iter().sum::<f32>();
            }
        }
    }
    params += packed_hw.len() + hb.len();
    nonzero += packed_hw.len() + hb.len();
    macs += packed_hw.len();
    active_macs += packed_hw.len();
    model.set_initializer(
        "head.weight",
        &Tensor::f32(vec![net.ways, outs.len() * per_channel], packed_hw)?,
    );
    model.set_initializer("head.bias", &Tensor::f32(vec![net.ways], hb)?);
    Ok(TaskModel {
        model,
        stats: TaskModelStats {
            widths: packed.widths.clone(),
            active_kernels: masks
                .iter()
                .map(|m| m.iter().filter(|&&x| x > 0.0).count())
                .collect(),
            kernels,
            params,
            nonzero_params: nonzero,
            macs,
            active_macs,
        },
    })
}
