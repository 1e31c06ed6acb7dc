//! A task's model with only its active kernels (§6): every convolution weight multiplied by
//! its task's hard mask, then packed to channels where whole channels die, exactly. An output
//! channel of a convolution that feeds the next convolution directly (Conv-4's blocks, a
//! ResNet stage's first two convolutions) or the classifier (Conv-4's last block):
//!
//! - is removed when no active kernel of the next convolution reads it (its output is unused);
//! - with no active incoming kernel, is a constant map, relu(BN(0)): removed when that constant
//!   is 0 (the next convolution reads zeros), and, before the classifier, folded into its bias;
//! - stays when that constant is not 0 before another convolution (with zero padding, a
//!   constant input is not a constant contribution at the borders).
//!
//! A ResNet stage's last convolution and shortcut end in the residual sum, whose channels stay.
//! The rules repeat until nothing changes (removing a channel can free the kernels that fed
//! it). A convolution keeps at least one channel. Kernels that are inactive inside a kept channel
//! pair stay as zeros in the dense weight: the exported graph is a plain Conv-4 with smaller
//! widths, which any runtime runs at dense speed, and the report counts both its stored
//! parameters and its nonzero ones.

use crate::nets::{self, NetConfig};
use crate::params::to_f32;
use crate::{Error, Result};
use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_train::engine::GraphModule;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Size and cost of a task model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskModelStats {
    /// Output channels kept per convolution.
    pub widths: Vec<usize>,
    /// Active kernels per convolution (of the full network's).
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

/// The module's current weights as a task model with every kernel (the dense network).
pub fn dense_model(module: &GraphModule, net: &NetConfig) -> Result<TaskModel> {
    let all: Vec<Vec<f32>> = net.kernels().iter().map(|&k| vec![1.0; k]).collect();
    task_model(module, net, &all)
}

/// The task model of the module's current (adapted) weights and statistics under `masks`
/// (`[out·in]` per convolution, 0 or 1).
pub fn task_model(module: &GraphModule, net: &NetConfig, masks: &[Vec<f32>]) -> Result<TaskModel> {
    let v = values(module)?;
    let convs = net.convs();
    let kernels = net.kernels();
    if masks.len() != convs.len() || masks.iter().zip(&kernels).any(|(m, &k)| m.len() != k) {
        return Err(Error::Invalid(format!(
            "task masks of {:?} values for {kernels:?} kernels",
            masks.iter().map(Vec::len).collect::<Vec<_>>()
        )));
    }
    let active = |j: usize, o: usize, i: usize| masks[j][o * convs[j].cin + i] > 0.0;
    let head = net.head_conv();
    let consumers: Vec<Vec<usize>> = (0..convs.len())
        .map(|j| {
            (0..convs.len())
                .filter(|&n| convs[n].producer == Some(j))
                .collect()
        })
        .collect();
    // relu(BN(0)) of each output channel: what it holds when nothing feeds it.
    let mut constant = Vec::with_capacity(convs.len());
    for c in &convs {
        let bn = |s: &str| get(&v, &format!("{}.{s}", c.bn));
        let (g, b, m, var) = (
            bn("weight")?,
            bn("bias")?,
            bn("running_mean")?,
            bn("running_var")?,
        );
        constant.push(
            (0..c.cout)
                .map(|o| ((0.0 - m[o]) * g[o] / (var[o] + 1e-5).sqrt() + b[o]).max(0.0))
                .collect::<Vec<f32>>(),
        );
    }
    let mut keep: Vec<Vec<bool>> = convs.iter().map(|c| vec![true; c.cout]).collect();
    loop {
        let mut changed = false;
        for (j, c) in convs.iter().enumerate() {
            let feeds_head = head == Some(j);
            if consumers[j].is_empty() && !feeds_head {
                continue;
            }
            for o in 0..c.cout {
                if !keep[j][o] {
                    continue;
                }
                let input_kept = |i: usize| c.producer.is_none_or(|p| keep[p][i]);
                let fed = (0..c.cin).any(|i| input_kept(i) && active(j, o, i));
                let read = feeds_head
                    || consumers[j]
                        .iter()
                        .any(|&n| (0..convs[n].cout).any(|q| keep[n][q] && active(n, q, o)));
                if !read || (!fed && (constant[j][o] == 0.0 || feeds_head)) {
                    keep[j][o] = false;
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
    let kept = |j: usize| -> Vec<usize> { (0..keep[j].len()).filter(|&o| keep[j][o]).collect() };
    let packed = net.with_conv_widths(&(0..convs.len()).map(|j| kept(j).len()).collect::<Vec<_>>());
    let mut model = nets::graph(&packed, false)?;
    let (mut params, mut nonzero, mut macs, mut active_macs) = (0, 0, 0, 0);
    for (j, c) in convs.iter().enumerate() {
        let outs = kept(j);
        let ins: Vec<usize> = match c.producer {
            Some(p) => kept(p),
            None => (0..c.cin).collect(),
        };
        let w = get(&v, &c.weight())?;
        let kk = c.k * c.k;
        let mut packed_w = Vec::with_capacity(outs.len() * ins.len() * kk);
        for &o in &outs {
            for &i in &ins {
                let on = active(j, o, i);
                let base = (o * c.cin + i) * kk;
                packed_w.extend(w[base..base + kk].iter().map(|&x| if on { x } else { 0.0 }));
                if on {
                    nonzero += kk;
                    active_macs += kk * c.side * c.side;
                }
            }
        }
        params += packed_w.len();
        macs += packed_w.len() * c.side * c.side;
        model.set_initializer(
            &c.weight(),
            &Tensor::f32(vec![outs.len(), ins.len(), c.k, c.k], packed_w)?,
        );
        for s in ["weight", "bias", "running_mean", "running_var"] {
            let name = format!("{}.{s}", c.bn);
            let all = get(&v, &name)?;
            let t: Vec<f32> = outs.iter().map(|&o| all[o]).collect();
            if s == "weight" || s == "bias" {
                params += t.len();
                nonzero += t.len();
            }
            model.set_initializer(&name, &Tensor::f32(vec![outs.len()], t)?);
        }
    }
    // The classifier; when it reads a convolution directly, a removed channel of it is a
    // constant whose contribution joins the bias.
    let f = net.final_side();
    let per_channel = f * f;
    let last = net.widths.last().copied().unwrap_or(0);
    let features = last * per_channel;
    let hw = get(&v, "head.weight")?;
    let mut hb = get(&v, "head.bias")?.to_vec();
    let kept_last: Vec<bool> = match head {
        Some(h) => keep[h].clone(),
        None => vec![true; last],
    };
    let kept_count = kept_last.iter().filter(|&&k| k).count();
    let mut packed_hw = Vec::with_capacity(net.ways * kept_count * per_channel);
    for (c, bias) in hb.iter_mut().enumerate() {
        let row = &hw[c * features..(c + 1) * features];
        for (o, &k) in kept_last.iter().enumerate() {
            let cols = &row[o * per_channel..(o + 1) * per_channel];
            if k {
                packed_hw.extend_from_slice(cols);
            } else if let Some(h) = head {
                *bias += constant[h][o] * cols.iter().sum::<f32>();
            }
        }
    }
    params += packed_hw.len() + hb.len();
    nonzero += packed_hw.len() + hb.len();
    macs += packed_hw.len();
    active_macs += packed_hw.len();
    model.set_initializer(
        "head.weight",
        &Tensor::f32(vec![net.ways, kept_count * per_channel], packed_hw)?,
    );
    model.set_initializer("head.bias", &Tensor::f32(vec![net.ways], hb)?);
    Ok(TaskModel {
        model,
        stats: TaskModelStats {
            widths: (0..convs.len()).map(|j| kept(j).len()).collect(),
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
