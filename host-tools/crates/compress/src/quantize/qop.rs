//! int8 that tract runs as int8: ONNX's operator form (`--format qoperator`).
//!
//! tract 0.23 never turns a QDQ pattern (DequantizeLinear → Conv → QuantizeLinear) into an
//! integer op: it dequantizes the weights at load and runs the product in f32, with the
//! activations' Q/DQ pairs as extra passes (`edgeslim-rt plan` shows it). It does map
//! `QLinearConv` and `QLinearMatMul` to its i8×i8→i32 kernels (`avx2_mmm_i32_8x8`,
//! `arm64simd_mmm_i32_8x8[_dot]`), and with per-tensor scales the requantisation fuses into
//! the kernel's epilogue. So this form writes, for every plain (group 1) Conv and every
//! MatMul/Gemm with a constant weight:
//!
//! `x → QuantizeLinear(int8) → QLinearConv | QLinearMatMul (int8 weights, zero point 0,
//! int32 bias) → DequantizeLinear → y`
//!
//! - activations are int8 (asymmetric, zero point from the calibrated range): u8 costs tract
//!   one more pass to shift it to i8;
//! - a Relu after the product is folded into its output range (zero point at −128, so the
//!   requantisation's clamp is the Relu);
//! - where a quantized product feeds another one directly, the DequantizeLinear → Quantize
//!   pair between them (same tensor, same parameters) is dropped and int8 flows through;
//! - depthwise and grouped convolutions stay float: tract runs a quantized grouped conv as
//!   one matrix product per group with one row each, far slower than its float depthwise op.
//!
//! What stays float is everything else, as in the QDQ form.

use super::int8::{quantize_weight, Target};
use super::ranges::Range;
use crate::{Error, Result};
use edgeslim_onnx::node::{self, attr_f, attr_i, display_name};
use edgeslim_onnx::{OnnxModel, Tensor, TensorData};
use onnx_protobuf::NodeProto;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Serialize)]
pub struct QopSummary {
    pub quantized_nodes: Vec<String>,
    /// Products left in float, with the reason.
    pub kept_float: Vec<(String, String)>,
    /// Relu nodes folded into the output range of the product before them.
    pub relus_folded: usize,
    /// Dequantize → Quantize pairs not written because int8 flows from product to product.
    pub int8_links: usize,
    pub per_channel: bool,
    pub reduce_range: bool,
}

/// Scale and zero point of an int8 activation range (asymmetric, 0 exactly representable).
pub fn activation_params_i8(r: Range) -> (f32, i8) {
    let (lo, hi) = (r.min.min(0.0), r.max.max(0.0));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i8;
    (scale, zp)
}

/// Why a product target cannot take the operator form, if it cannot.
fn unsupported(model: &OnnxModel, n: &NodeProto) -> Option<String> {
    match n.op_type.as_str() {
        "Conv" => {
            let g = attr_i(n, "group").unwrap_or(1);
            (g != 1).then(|| format!("grouped convolution (group {g}) stays float"))
        }
        "Gemm" => {
            let a = attr_f(n, "alpha").unwrap_or(1.0);
            let b = attr_f(n, "beta").unwrap_or(1.0);
            (a != 1.0 || b != 1.0 || attr_i(n, "transA").unwrap_or(0) != 0)
                .then(|| "Gemm with alpha, beta or transA stays float".into())
        }
        "MatMul" => {
            let rank = model
                .constant(n.input.get(1)?)
                .and_then(|t| t.ok())
                .map(|t| t.dims.len());
            (rank != Some(2)).then(|| "MatMul weight is not a matrix".into())
        }
        op => Some(format!("{op} has no integer form here")),
    }
}

/// The products that take the operator form, and the ones kept float with the reason.
pub fn split_targets(
    model: &OnnxModel,
    targets: &[Target],
) -> (Vec<Target>, Vec<(String, String)>) {
    let mut ok = Vec::new();
    let mut kept = Vec::new();
    for t in targets {
        match unsupported(model, &model.graph().node[t.node]) {
            None => ok.push(t.clone()),
            Some(why) => kept.push((t.name.clone(), why)),
        }
    }
    (ok, kept)
}

/// A Gemm whose bias is added in float after the integer product.
fn gemm_with_bias(model: &OnnxModel, t: &Target) -> bool {
    t.bias.is_some() && model.graph().node[t.node].op_type == "Gemm"
}

/// The tensor whose range a product's output is quantized with: its own output, or the
/// output of the Relu that is its only consumer (the Relu is then folded away; not after a
/// Gemm whose bias is added after the product).
pub fn output_tensor(model: &OnnxModel, t: &Target) -> (String, Option<usize>) {
    let y = model.graph().node[t.node].output[0].clone();
    if gemm_with_bias(model, t) {
        return (y, None);
    }
    let consumers = model.consumers();
    let outputs = model.graph_output_names();
    if let Some([(ci, _)]) = consumers.get(&y).map(|v| v.as_slice()) {
        let c = &model.graph().node[*ci];
        if c.op_type == "Relu" && !outputs.contains(&y) {
            return (c.output[0].clone(), Some(*ci));
        }
    }
    (y, None)
}

/// Rewrite `targets` (from [`split_targets`]) into the operator form. `ranges` must hold the
/// range of every target's activation and of its [`output_tensor`].
pub fn insert_qoperator(
    model: &mut OnnxModel,
    targets: &[Target],
    kept_float: Vec<(String, String)>,
    ranges: &HashMap<String, Range>,
    per_channel: bool,
    reduce_range: bool,
) -> Result<QopSummary> {
    if model.opset() < 10 {
        return Err(Error::Invalid(format!(
            "{}: opset {} has no QLinearConv (needs 10)",
            model.label(),
            model.opset()
        )));
    }
    let qmax = if reduce_range { 63.0 } else { 127.0 };
    let range_of = |name: &str| {
        ranges
            .get(name)
            .copied()
            .ok_or_else(|| Error::tensor(name, "no calibrated range"))
    };
    // Which targets are quantized, by the float tensor they produce (after a folded Relu),
    // so a consumer that is itself quantized can take the int8 tensor directly.
    let mut plans = Vec::new();
    for t in targets {
        let (y, relu) = output_tensor(model, t);
        plans.push((t.clone(), y, relu));
    }
    let produced_int8: HashSet<String> = plans.iter().map(|(_, y, _)| y.clone()).collect();
    let consumers = model.consumers();
    let graph_outputs = model.graph_output_names();
    let quantized_nodes: HashSet<usize> = plans.iter().map(|(t, _, _)| t.node).collect();
    // A float tensor produced by a quantized product is needed as float only if something
    // other than a quantized product reads it.
    let needs_float = |y: &str| {
        graph_outputs.contains(y)
            || consumers.get(y).is_none_or(|c| {
                c.iter()
                    .any(|(ci, slot)| !quantized_nodes.contains(ci) || *slot != 0)
            })
    };

    let mut q_of: HashMap<String, (String, String, String)> = HashMap::new(); // int8, scale, zp
    let mut new_nodes: Vec<NodeProto> = Vec::new();
    let mut replaced: HashMap<usize, Vec<NodeProto>> = HashMap::new();
    let mut removed: HashSet<usize> = HashSet::new();
    let mut summary = QopSummary {
        quantized_nodes: Vec::new(),
        kept_float,
        relus_folded: 0,
        int8_links: 0,
        per_channel,
        reduce_range,
    };
    let params = |model: &mut OnnxModel, name: &str, r: Range| -> Result<(String, String, f32)> {
        let (s, zp) = activation_params_i8(r);
        let sn = model.fresh_name(&format!("{name}.scale"));
        model.set_initializer(&sn, &Tensor::scalar_f32(s));
        let zn = model.fresh_name(&format!("{name}.zero_point"));
        model.set_initializer(&zn, &Tensor::new(vec![], TensorData::I8(vec![zp]))?);
        Ok((sn, zn, s))
    };
    // The int8 form of every target's output first, so inputs can link to them.
    let mut out_params: HashMap<String, (String, String, String, f32)> = HashMap::new();
    for (t, y, _) in &plans {
        let mut r = range_of(y)?;
        if gemm_with_bias(model, t) {
            // The product before the bias: the output's range widened by the largest bias.
            let b = t.bias.as_deref().unwrap_or_default();
            let bmax = model
                .constant(b)
                .and_then(|v| v.ok())
                .map(|v| v.to_f32_vec().iter().fold(0.0f32, |m, x| m.max(x.abs())))
                .unwrap_or(0.0);
            r = Range {
                min: r.min - bmax,
                max: r.max + bmax,
            };
        }
        let (sn, zn, s) = params(model, y, r)?;
        let yq = model.fresh_name(&format!("{y}.int8"));
        out_params.insert(y.clone(), (yq.clone(), sn.clone(), zn.clone(), s));
        q_of.insert(y.clone(), (yq, sn, zn));
    }
    let mut act_scale: HashMap<String, f32> =
        out_params.iter().map(|(k, v)| (k.clone(), v.3)).collect();
    for (t, y, relu) in &plans {
        let n = model.graph().node[t.node].clone();
        let x = &t.activation;
        // Input: linked int8 from a quantized producer, or a QuantizeLinear of the float.
        let (xq, xs, xz) = match q_of.get(x) {
            Some(v) => {
                if produced_int8.contains(x) {
                    summary.int8_links += 1;
                }
                v.clone()
            }
            None => {
                let (sn, zn, s) = params(model, x, range_of(x)?)?;
                let xq = model.fresh_name(&format!("{x}.int8"));
                let qn = model.fresh_name(&format!("{x}.QuantizeLinear"));
                new_nodes.push(node::make(
                    "QuantizeLinear",
                    &[x, &sn, &zn],
                    &[&xq],
                    &qn,
                    vec![],
                ));
                act_scale.insert(x.clone(), s);
                q_of.insert(x.clone(), (xq.clone(), sn.clone(), zn.clone()));
                (xq, sn, zn)
            }
        };
        let s_x = act_scale[x];
        // Weight: int8, zero point 0; a Gemm's is stored [K, N] as QLinearMatMul reads it.
        let wt = model
            .constant(&t.weight)
            .ok_or_else(|| Error::tensor(&t.weight, "weight is no longer constant"))??;
        let (dims, values) = match n.op_type.as_str() {
            "Gemm" if attr_i(&n, "transB").unwrap_or(0) != 0 => {
                let (rows, cols) = (wt.dims[0], wt.dims[1]);
                let v = wt.to_f32_vec();
                let tv = (0..rows * cols)
                    .map(|i| v[(i % rows) * cols + i / rows])
                    .collect();
                (vec![cols, rows], tv)
            }
            _ => (wt.dims.clone(), wt.to_f32_vec()),
        };
        let axis = match n.op_type.as_str() {
            "Conv" => 0,
            _ => 1,
        };
        let (q, w_scales) = quantize_weight(&values, &dims, per_channel.then_some(axis), qmax);
        let w = &t.weight;
        let wq = model.fresh_name(&format!("{w}.int8.{}", t.name));
        model.set_initializer(&wq, &Tensor::new(dims.clone(), TensorData::I8(q))?);
        let sdims = if w_scales.len() > 1 {
            vec![w_scales.len()]
        } else {
            vec![]
        };
        let wsn = model.fresh_name(&format!("{w}.scale.{}", t.name));
        model.set_initializer(&wsn, &Tensor::f32(sdims.clone(), w_scales.clone())?);
        let wzn = model.fresh_name(&format!("{w}.zero_point.{}", t.name));
        model.set_initializer(
            &wzn,
            &Tensor::new(sdims, TensorData::I8(vec![0; w_scales.len()]))?,
        );
        let (yq, ys, yz, _) = out_params[y].clone();
        let name = display_name(&n);
        let mut nodes = Vec::new();
        match n.op_type.as_str() {
            "Conv" => {
                let mut inputs = vec![xq, xs, xz, wq, wsn, wzn, ys.clone(), yz.clone()];
                if let Some(b) = &t.bias {
                    let bv = model
                        .constant(b)
                        .ok_or_else(|| Error::tensor(b, "bias is no longer constant"))??
                        .to_f32_vec();
                    let bq: Vec<i32> = bv
                        .iter()
                        .enumerate()
                        .map(|(c, v)| {
                            let s = s_x * w_scales[if w_scales.len() == 1 { 0 } else { c }];
                            (v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32
                        })
                        .collect();
                    let bn = model.fresh_name(&format!("{b}.int32.{}", t.name));
                    model.set_initializer(&bn, &Tensor::new(vec![bq.len()], TensorData::I32(bq))?);
                    inputs.push(bn);
                }
                let refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
                let attrs = n.attribute.clone();
                nodes.push(node::make("QLinearConv", &refs, &[&yq], &name, attrs));
            }
            _ => {
                // Gemm's bias is added in float after the product (QLinearMatMul has none),
                // so the product's int8 output is quantized with the Gemm's range.
                let bias = t.bias.clone().filter(|_| n.op_type == "Gemm");
                let mm_out = if bias.is_some() {
                    model.fresh_name(&format!("{name}.product.int8"))
                } else {
                    yq.clone()
                };
                let inputs = [&xq, &xs, &xz, &wq, &wsn, &wzn, &ys, &yz];
                let refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
                nodes.push(node::make(
                    "QLinearMatMul",
                    &refs,
                    &[&mm_out],
                    &name,
                    vec![],
                ));
                if let Some(b) = bias {
                    // int8 → float → + bias → the Gemm's float output; no int8 link after it.
                    let f = model.fresh_name(&format!("{name}.product"));
                    let dqn = model.fresh_name(&format!("{name}.DequantizeLinear"));
                    nodes.push(node::make(
                        "DequantizeLinear",
                        &[&mm_out, &ys, &yz],
                        &[&f],
                        &dqn,
                        vec![],
                    ));
                    let addn = model.fresh_name(&format!("{name}.bias"));
                    nodes.push(node::make("Add", &[&f, &b], &[y], &addn, vec![]));
                    q_of.remove(y);
                    replaced.insert(t.node, nodes);
                    summary.quantized_nodes.push(t.name.clone());
                    if let Some(r) = relu {
                        removed.insert(*r);
                        summary.relus_folded += 1;
                    }
                    continue;
                }
            }
        }
        if needs_float(y) {
            let dqn = model.fresh_name(&format!("{y}.DequantizeLinear"));
            nodes.push(node::make(
                "DequantizeLinear",
                &[&yq, &ys, &yz],
                &[y],
                &dqn,
                vec![],
            ));
        }
        replaced.insert(t.node, nodes);
        if let Some(r) = relu {
            removed.insert(*r);
            summary.relus_folded += 1;
        }
        summary.quantized_nodes.push(t.name.clone());
    }
    let g = model.graph_mut();
    let body = std::mem::take(&mut g.node);
    let mut rebuilt = new_nodes;
    for (i, n) in body.into_iter().enumerate() {
        if removed.contains(&i) {
            continue;
        }
        match replaced.remove(&i) {
            Some(nodes) => rebuilt.extend(nodes),
            None => rebuilt.push(n),
        }
    }
    g.node = rebuilt;
    model.topo_sort()?;
    edgeslim_onnx::optimize::dead::remove_dead(model)?;
    model.validate_references()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_activation_params_represent_zero_and_the_range() {
        let (s, zp) = activation_params_i8(Range {
            min: -1.0,
            max: 3.0,
        });
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        // 0.0 maps to an integer exactly, and the range ends map to −128 and 127.
        assert_eq!(zp, -64);
        assert!(((-128 - zp as i32) as f32 * s + 1.0).abs() < s);
        assert!(((127 - zp as i32) as f32 * s - 3.0).abs() < s);
        // A Relu output's range starts at 0: zero point −128, so the clamp is the Relu.
        assert_eq!(activation_params_i8(Range { min: 0.0, max: 2.0 }).1, -128);
    }
}
