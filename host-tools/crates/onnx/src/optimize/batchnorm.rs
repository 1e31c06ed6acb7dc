//! Fold inference-mode BatchNormalization into the Conv, ConvTranspose or Gemm before it:
//! y = γ·(Wx + b − μ)/√(σ²+ε) + β  =  (s⊙W)x + (b − μ)·s + β  with  s = γ/√(σ²+ε).
//! Arithmetic in f64, stored as f32.

use super::PassReport;
use crate::node::{attr_f, attr_i, display_name};
use crate::Result;
use crate::{OnnxModel, Tensor};
use onnx_protobuf::NodeProto;

/// A per-channel affine map y = scale·x + shift (a BatchNorm, or a Mul/Add by constants).
pub(super) struct ChannelAffine {
    pub scale: Vec<f64>,
    pub shift: Vec<f64>,
}

/// The per-channel affine map of a BN node, when all its statistics are constants.
fn bn_params(model: &OnnxModel, bn: &NodeProto) -> Option<ChannelAffine> {
    if bn.input.len() != 5 || attr_i(bn, "training_mode").unwrap_or(0) != 0 {
        return None;
    }
    // Extra outputs (running stats in training graphs) must be unused.
    if bn.output.iter().skip(1).any(|o| !o.is_empty()) {
        return None;
    }
    let eps = attr_f(bn, "epsilon").unwrap_or(1e-5) as f64;
    let get = |i: usize| -> Option<Vec<f64>> {
        let t = model.constant(&bn.input[i])?.ok()?;
        Some(t.to_f32_vec().into_iter().map(|v| v as f64).collect())
    };
    let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
    let c = gamma.len();
    if [beta.len(), mean.len(), var.len()].iter().any(|&l| l != c) {
        return None;
    }
    let scale: Vec<f64> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let shift: Vec<f64> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
    Some(ChannelAffine { scale, shift })
}

/// The producer's new weight and bias with the affine map folded in, or None if its pattern
/// is not one we fold. A Gemm's output is [M, N], so the channel axis 1 is its N outputs.
pub(super) fn fold_into_producer(
    model: &OnnxModel,
    p: &NodeProto,
    bn: &ChannelAffine,
) -> Option<(Tensor, Tensor)> {
    let w = model.constant(p.input.get(1)?)?.ok()?;
    let wv = w.to_f32_vec();
    let c = bn.scale.len();
    let bias_in = match p.input.get(2).filter(|s| !s.is_empty()) {
        Some(b) => Some(model.constant(b)?.ok()?.to_f32_vec()),
        None => None,
    };
    let mut new_w = wv.clone();
    match p.op_type.as_str() {
        "Conv" => {
            // W [M, C/g, k...]: output channel m is the m-th block.
            if w.dims.first() != Some(&c) {
                return None;
            }
            let block = wv.len() / c;
            for (i, v) in new_w.iter_mut().enumerate() {
                *v = (*v as f64 * bn.scale[i / block]) as f32;
            }
        }
        "ConvTranspose" => {
            // W [C_in, M/g, k...]: output channel of (ci, j) is group(ci)·(M/g) + j.
            let g = attr_i(p, "group").unwrap_or(1).max(1) as usize;
            let (cin, mg) = (*w.dims.first()?, *w.dims.get(1)?);
            if mg * g != c || cin % g != 0 {
                return None;
            }
            let k: usize = w.dims[2..].iter().product();
            for ci in 0..cin {
                for j in 0..mg {
                    let m = (ci / (cin / g)) * mg + j;
                    for kk in 0..k {
                        let i = (ci * mg + j) * k + kk;
                        new_w[i] = (wv[i] as f64 * bn.scale[m]) as f32;
                    }
                }
            }
        }
        "Gemm" => {
            let alpha = attr_f(p, "alpha").unwrap_or(1.0);
            let beta = attr_f(p, "beta").unwrap_or(1.0);
            if alpha != 1.0 || beta != 1.0 || w.dims.len() != 2 {
                return None;
            }
            let trans_b = attr_i(p, "transB").unwrap_or(0) != 0;
            let (rows, cols) = (w.dims[0], w.dims[1]);
            let n_out = if trans_b { rows } else { cols };
            if n_out != c {
                return None;
            }
            for r in 0..rows {
                for col in 0..cols {
                    let m = if trans_b { r } else { col };
                    new_w[r * cols + col] = (wv[r * cols + col] as f64 * bn.scale[m]) as f32;
                }
            }
            // C must be a per-output vector (or scalar) to fold; a full [M,N] C is left alone.
            if let Some(b) = &bias_in {
                if !(b.len() == c || b.len() == 1) {
                    return None;
                }
            }
        }
        _ => return None,
    }
    let bias: Vec<f32> = (0..c)
        .map(|m| {
            let b = bias_in
                .as_ref()
                .map(|b| b[if b.len() == 1 { 0 } else { m }] as f64)
                .unwrap_or(0.0);
            (b * bn.scale[m] + bn.shift[m]) as f32
        })
        .collect();
    let new_w = Tensor::f32(w.dims.clone(), new_w).ok()?;
    let new_b = Tensor::f32(vec![c], bias).ok()?;
    Some((new_w, new_b))
}

pub fn fold_batchnorms(model: &mut OnnxModel) -> Result<PassReport> {
    let mut report = PassReport::new("BatchNormalization folded");
    loop {
        let producers = model.producers();
        let consumers = model.consumers();
        let outputs = model.graph_output_names();
        let g = model.graph();
        let candidate = g.node.iter().enumerate().find_map(|(bi, bn)| {
            if bn.op_type != "BatchNormalization" {
                return None;
            }
            let x = bn.input.first()?;
            let pi = *producers.get(x)?;
            let p = &g.node[pi];
            if !matches!(p.op_type.as_str(), "Conv" | "ConvTranspose" | "Gemm") {
                return None;
            }
            // The producer's output must feed only this BN.
            if outputs.contains(x) || consumers.get(x).map(|c| c.len()) != Some(1) {
                return None;
            }
            let params = bn_params(model, bn)?;
            let (w, b) = fold_into_producer(model, p, &params)?;
            Some((bi, pi, w, b))
        });
        let Some((bi, pi, w, b)) = candidate else {
            break;
        };
        let bn = model.graph().node[bi].clone();
        let p_name = display_name(&model.graph().node[pi]);
        let w_name = model.fresh_name(&format!("{p_name}.weight_bnfold"));
        model.set_initializer(&w_name, &w);
        let b_name = model.fresh_name(&format!("{p_name}.bias_bnfold"));
        model.set_initializer(&b_name, &b);
        {
            let p = &mut model.graph_mut().node[pi];
            p.input[1] = w_name;
            if p.input.len() < 3 {
                p.input.push(b_name);
            } else {
                p.input[2] = b_name;
            }
            p.output[0] = bn.output[0].clone();
        }
        model.graph_mut().node.remove(bi);
        report.note(format!("{} into {p_name}", display_name(&bn)));
    }
    Ok(report)
}
