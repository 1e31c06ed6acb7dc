//! int8 in the standard QDQ form (docs/methods/quantize.md), as ONNX Runtime's static quantizer
//! writes it:
//! around every Conv, MatMul (constant weight) and Gemm (constant B)
//! - the activation input goes through QuantizeLinear → DequantizeLinear (uint8, asymmetric,
//!   scale and zero point from the calibrated range);
//! - the weight is stored as int8 (symmetric, zero point 0), per output channel or per tensor,
//!   and read through DequantizeLinear;
//! - a constant bias is stored as int32 with scale s_x·s_w (what integer kernels accumulate)
//!   and read through DequantizeLinear.
//!
//! Nothing else is quantized: outputs of the layers stay float, so Softmax, sigmoid heads and
//! every other non-linear op see float values. This is deliberate: tract 0.23 turns a
//! DequantizeLinear → Softmax → QuantizeLinear chain into a lookup table that returns all ones.
//!
//! `--reduce-range` stores weights in 7 bits ([−63, 63]), as ONNX Runtime's quantizer does
//! with `reduce_range`: ORT's u8×s8 kernels on x86 CPUs without VNNI (AVX2, AVX-512F) add
//! pairs of products in saturating 16-bit arithmetic (255·127·2 > 32767), so with full 8-bit
//! weights ORT's optimised model can differ from the QDQ graph's own meaning (we measured
//! 0.5 on the logits of a two-layer MLP). tract is unaffected.
//!
//! Per-channel scales need DequantizeLinear's `axis` (opset 13). An older model is moved to
//! opset 13 only when none of its ops changed meaning between its opset and 13; otherwise
//! weights are quantized per tensor and the report says so.

use super::ranges::Range;
use crate::{Error, Result};
use edgeslim_onnx::node::{self, attr_i, int};
use edgeslim_onnx::{opset, OnnxModel, Tensor, TensorData};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize)]
pub struct QdqSummary {
    pub quantized_nodes: Vec<String>,
    pub activations: usize,
    pub weights: usize,
    pub biases: usize,
    pub per_channel: bool,
    /// Weights in 7 bits ([−63, 63]).
    pub reduce_range: bool,
    pub opset_before: i64,
    pub opset_after: i64,
    pub notes: Vec<String>,
}

/// One op to quantize: its node index, activation input, weight and bias and the weight's
/// output-channel axis.
#[derive(Debug, Clone)]
pub struct Target {
    pub node: usize,
    pub name: String,
    pub activation: String,
    pub weight: String,
    pub bias: Option<String>,
    pub axis: usize,
}

/// The Conv/MatMul/Gemm nodes with a constant float weight, in graph order.
pub fn targets(model: &OnnxModel) -> Vec<Target> {
    let mut out = Vec::new();
    for (i, n) in model.graph().node.iter().enumerate() {
        let (Some(x), Some(w)) = (n.input.first(), n.input.get(1)) else {
            continue;
        };
        let Some(Ok(wt)) = model.constant(w) else {
            continue;
        };
        if !matches!(wt.data, TensorData::F32(_)) {
            continue;
        }
        let axis = match n.op_type.as_str() {
            "Conv" if wt.dims.len() >= 3 => 0,
            "MatMul" if wt.dims.len() == 2 => 1,
            "Gemm" if wt.dims.len() == 2 && attr_i(n, "transA").unwrap_or(0) == 0 => {
                if attr_i(n, "transB").unwrap_or(0) != 0 {
                    0
                } else {
                    1
                }
            }
            _ => continue,
        };
        let bias = n.input.get(2).filter(|b| !b.is_empty()).filter(|b| {
            matches!(model.constant(b), Some(Ok(t)) if matches!(t.data, TensorData::F32(_))
                && t.len() == wt.dims[axis] && t.dims.len() == 1)
        });
        out.push(Target {
            node: i,
            name: edgeslim_onnx::node::display_name(n),
            activation: x.clone(),
            weight: w.clone(),
            bias: bias.cloned(),
            axis,
        });
    }
    out
}

/// uint8 scale and zero point of an activation range.
pub fn activation_params(r: Range) -> (f32, u8) {
    let (lo, hi) = (r.min.min(0.0), r.max.max(0.0));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// Symmetric int8 of a weight: per slice along `axis` or one scale, values in
/// [−qmax, qmax] (127, or 63 for `--reduce-range`). Returns values and scales.
pub fn quantize_weight(
    w: &[f32],
    dims: &[usize],
    axis: Option<usize>,
    qmax: f32,
) -> (Vec<i8>, Vec<f32>) {
    let channels = axis.map_or(1, |a| dims[a]);
    let inner: usize = axis.map_or(1, |a| dims[a + 1..].iter().product());
    let channel_of = |i: usize| axis.map_or(0, |_| (i / inner) % channels);
    let mut amax = vec![0.0f32; channels];
    for (i, &v) in w.iter().enumerate() {
        let c = channel_of(i);
        amax[c] = amax[c].max(v.abs());
    }
    let scales: Vec<f32> = amax
        .iter()
        .map(|&m| if m > 0.0 { m / qmax } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[channel_of(i)]).round().clamp(-qmax, qmax) as i8)
        .collect();
    (q, scales)
}

/// Insert QDQ for `targets` with calibrated `ranges` of their activation inputs.
pub fn insert_qdq(
    model: &mut OnnxModel,
    targets: &[Target],
    ranges: &HashMap<String, Range>,
    per_channel_wanted: bool,
    reduce_range: bool,
    ranks: &HashMap<String, usize>,
) -> Result<QdqSummary> {
    let qmax = if reduce_range { 63.0 } else { 127.0 };
    let opset_before = model.opset();
    let mut notes = Vec::new();
    let mut per_channel = per_channel_wanted;
    if per_channel && opset_before < 13 {
        match opset::can_move_to(model, Some(ranks), 13) {
            Ok(()) => {
                opset::set(model, 13);
                notes.push(format!(
                    "opset {opset_before} → 13 for per-channel DequantizeLinear (no op of this model changed meaning)"
                ));
            }
            Err(why) => {
                per_channel = false;
                notes.push(format!(
                    "weights quantized per tensor: per-channel needs opset 13 and {why}"
                ));
            }
        }
    }
    if model.opset() < 10 {
        return Err(Error::Invalid(format!(
            "{}: opset {} has no QuantizeLinear (needs 10)",
            model.label(),
            model.opset()
        )));
    }
    let mut new_nodes: Vec<onnx_protobuf::NodeProto> = Vec::new();
    let mut act_dq: HashMap<String, (String, f32)> = HashMap::new();
    let mut w_dq: HashMap<String, (String, Vec<f32>)> = HashMap::new();
    let mut rewires: Vec<(usize, usize, String)> = Vec::new();
    let (mut n_act, mut n_w, mut n_b) = (0, 0, 0);
    let mut quantized_nodes = Vec::new();
    for t in targets {
        let Some(&range) = ranges.get(&t.activation) else {
            continue;
        };
        // Activation: one Q/DQ pair per tensor, shared by all quantized consumers.
        let (x_dq, s_x) = match act_dq.get(&t.activation) {
            Some(v) => v.clone(),
            None => {
                let (s, zp) = activation_params(range);
                let a = &t.activation;
                let sn = model.fresh_name(&format!("{a}.scale"));
                model.set_initializer(&sn, &Tensor::scalar_f32(s));
                let zn = model.fresh_name(&format!("{a}.zero_point"));
                model.set_initializer(&zn, &Tensor::new(vec![], TensorData::U8(vec![zp]))?);
                let q = model.fresh_name(&format!("{a}.quantized"));
                let dq = model.fresh_name(&format!("{a}.dequantized"));
                let qn = model.fresh_name(&format!("{a}.QuantizeLinear"));
                let dqn = model.fresh_name(&format!("{a}.DequantizeLinear"));
                new_nodes.push(node::make(
                    "QuantizeLinear",
                    &[a, &sn, &zn],
                    &[&q],
                    &qn,
                    vec![],
                ));
                new_nodes.push(node::make(
                    "DequantizeLinear",
                    &[&q, &sn, &zn],
                    &[&dq],
                    &dqn,
                    vec![],
                ));
                n_act += 1;
                act_dq.insert(a.clone(), (dq.clone(), s));
                (dq, s)
            }
        };
        rewires.push((t.node, 0, x_dq));
        // Weight.
        let (w_name, s_w) = match w_dq.get(&t.weight) {
            Some(v) => v.clone(),
            None => {
                let wt = model
                    .constant(&t.weight)
                    .ok_or_else(|| Error::tensor(&t.weight, "weight is no longer constant"))??;
                let axis = per_channel.then_some(t.axis);
                let (q, scales) = quantize_weight(&wt.to_f32_vec(), &wt.dims, axis, qmax);
                let w = &t.weight;
                let qn = model.fresh_name(&format!("{w}.int8"));
                model.set_initializer(&qn, &Tensor::new(wt.dims.clone(), TensorData::I8(q))?);
                let sdims = if per_channel {
                    vec![scales.len()]
                } else {
                    vec![]
                };
                let sn = model.fresh_name(&format!("{w}.scale"));
                model.set_initializer(&sn, &Tensor::f32(sdims.clone(), scales.clone())?);
                let zn = model.fresh_name(&format!("{w}.zero_point"));
                let zeros = vec![0i8; scales.len()];
                model.set_initializer(&zn, &Tensor::new(sdims, TensorData::I8(zeros))?);
                let dq = model.fresh_name(&format!("{w}.dequantized"));
                let dqn = model.fresh_name(&format!("{w}.DequantizeLinear"));
                let attrs = if per_channel {
                    vec![int("axis", t.axis as i64)]
                } else {
                    vec![]
                };
                new_nodes.push(node::make(
                    "DequantizeLinear",
                    &[&qn, &sn, &zn],
                    &[&dq],
                    &dqn,
                    attrs,
                ));
                n_w += 1;
                w_dq.insert(w.clone(), (dq.clone(), scales.clone()));
                (dq, scales)
            }
        };
        rewires.push((t.node, 1, w_name));
        // Bias: int32 at the accumulator's scale.
        if let Some(b) = &t.bias {
            let bt = model
                .constant(b)
                .ok_or_else(|| Error::tensor(b, "bias is no longer constant"))??;
            let bv = bt.to_f32_vec();
            let scales: Vec<f32> = (0..bv.len())
                .map(|c| s_x * s_w[if s_w.len() == 1 { 0 } else { c }])
                .collect();
            let fits = bv
                .iter()
                .zip(&scales)
                .all(|(v, s)| (v / s).abs() < i32::MAX as f32 / 2.0);
            if fits {
                let q: Vec<i32> = bv
                    .iter()
                    .zip(&scales)
                    .map(|(v, s)| (v / s).round() as i32)
                    .collect();
                let bq = model.fresh_name(&format!("{b}.int32.{}", t.name));
                model.set_initializer(&bq, &Tensor::new(bt.dims.clone(), TensorData::I32(q))?);
                let per = per_channel && scales.len() > 1;
                let sn = model.fresh_name(&format!("{b}.scale.{}", t.name));
                let (sdims, svals) = if per {
                    (vec![scales.len()], scales.clone())
                } else {
                    (vec![], vec![scales[0]])
                };
                model.set_initializer(&sn, &Tensor::f32(sdims, svals)?);
                let dq = model.fresh_name(&format!("{b}.dequantized.{}", t.name));
                let dqn = model.fresh_name(&format!("{b}.DequantizeLinear.{}", t.name));
                let attrs = if per { vec![int("axis", 0)] } else { vec![] };
                // Per-tensor weight scale gives one bias scale for all channels.
                if per || s_w.len() == 1 {
                    new_nodes.push(node::make(
                        "DequantizeLinear",
                        &[&bq, &sn],
                        &[&dq],
                        &dqn,
                        attrs,
                    ));
                    rewires.push((t.node, 2, dq));
                    n_b += 1;
                }
            }
        }
        quantized_nodes.push(t.name.clone());
    }
    for (node_ix, slot, name) in rewires {
        model.graph_mut().node[node_ix].input[slot] = name;
    }
    let g = model.graph_mut();
    let body = std::mem::take(&mut g.node);
    g.node = new_nodes.into_iter().chain(body).collect();
    model.topo_sort()?;
    edgeslim_onnx::optimize::dead::remove_dead(model)?;
    model.validate_references()?;
    Ok(QdqSummary {
        quantized_nodes,
        activations: n_act,
        weights: n_w,
        biases: n_b,
        per_channel,
        reduce_range,
        opset_before,
        opset_after: model.opset(),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_quantization_per_channel_round_trips() {
        // Two output channels of 3 values with very different scales.
        let w = [0.5f32, -1.0, 0.25, 100.0, -50.0, 25.0];
        let (q, s) = quantize_weight(&w, &[2, 3], Some(0), 127.0);
        assert_eq!(s.len(), 2);
        for (i, (&qi, &wi)) in q.iter().zip(&w).enumerate() {
            let back = qi as f32 * s[i / 3];
            assert!((back - wi).abs() <= s[i / 3] / 2.0 + 1e-6, "{i}");
        }
        assert_eq!(q[1], -127);
        let (q1, s1) = quantize_weight(&w, &[2, 3], None, 127.0);
        assert_eq!(s1.len(), 1);
        assert_eq!(q1[3], 127);
    }

    #[test]
    fn activation_zero_point_represents_zero() {
        let (s, zp) = activation_params(Range {
            min: -1.0,
            max: 3.0,
        });
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert!(((0.0 - zp as f32) * s).abs() < 1e-6 || zp == 64);
        assert_eq!(activation_params(Range { min: 0.5, max: 2.0 }).1, 0);
    }
}
