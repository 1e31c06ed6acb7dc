//! fp16 (docs/methods/quantize.md).
//!
//! Storage (default): every float32 weight of at least [`MIN_ELEMENTS`] values is stored as a
//! FLOAT16 initializer followed by `Cast(to = FLOAT)` writing the original name, so every
//! consumer and all arithmetic stay f32. Halves the file; engines fold the Cast at load. This
//! is the right choice on x86 and on Cortex-A53/A72 boards, where f16 arithmetic is emulated.
//!
//! Compute (`--fp16-compute`, ARMv8.2+ boards such as Cortex-A55/A76, Jetson Orin): the whole
//! graph runs in f16. Float initializers become FLOAT16, graph inputs are cast to f16 on entry
//! and outputs back to f32 on exit (callers keep feeding f32), `Cast(to = FLOAT)` nodes inside
//! the graph cast to f16 instead, Gemm becomes MatMul (+ Add) (tract cannot type an f16 Gemm).
//! Inputs that ONNX requires to stay f32 whatever the data type
//! (Resize's `roi`/`scales`) are left alone.

use crate::{Error, Result};
use edgeslim_onnx::node::{self, attr_i, int};
use edgeslim_onnx::{OnnxModel, Tensor, TensorData};
use half::f16;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::type_proto::Value as TypeValue;
use protobuf::Enum;
use std::collections::HashSet;

/// Smaller float tensors (scalars, Clip bounds, shape-like constants) gain nothing from f16.
pub const MIN_ELEMENTS: usize = 16;

/// What a pass changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Fp16Summary {
    pub tensors_converted: usize,
    pub values_converted: usize,
    /// Largest |w − f16(w)| / max|w| over the converted tensors.
    pub max_relative_rounding: f64,
    /// Weights that overflow f16 (|w| > 65504) and were left in f32.
    pub kept_f32: Vec<String>,
}

fn to_f16(name: &str, t: &Tensor, summary: &mut Fp16Summary) -> Option<Tensor> {
    let v = t.to_f32_vec();
    if v.iter()
        .any(|x| x.is_finite() && x.abs() > f16::MAX.to_f32())
    {
        summary.kept_f32.push(name.to_string());
        return None;
    }
    let scale = v
        .iter()
        .fold(0.0f32, |m, x| m.max(x.abs()))
        .max(f32::MIN_POSITIVE);
    let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    for (x, y) in v.iter().zip(&h) {
        let r = ((x - y.to_f32()).abs() / scale) as f64;
        summary.max_relative_rounding = summary.max_relative_rounding.max(r);
    }
    summary.tensors_converted += 1;
    summary.values_converted += v.len();
    Some(Tensor {
        dims: t.dims.clone(),
        data: TensorData::F16(h),
    })
}

/// Initializers that are real weights: float32, not overridable graph inputs.
fn float_initializers(model: &OnnxModel) -> Vec<String> {
    let inputs = model.graph_input_names();
    model
        .graph()
        .initializer
        .iter()
        .filter(|t| t.data_type == DataType::FLOAT.value() && !inputs.contains(&t.name))
        .map(|t| t.name.clone())
        .collect()
}

/// Store weights as FLOAT16 with a Cast back to float (compute stays f32).
pub fn fp16_storage(model: &mut OnnxModel) -> Result<Fp16Summary> {
    let mut summary = Fp16Summary::default();
    let mut casts = Vec::new();
    for name in float_initializers(model) {
        let t = match model.constant(&name) {
            Some(t) => t?,
            None => continue,
        };
        if t.len() < MIN_ELEMENTS {
            continue;
        }
        let Some(h) = to_f16(&name, &t, &mut summary) else {
            continue;
        };
        let stored = model.fresh_name(&format!("{name}.fp16"));
        model.graph_mut().initializer.retain(|x| x.name != name);
        model.set_initializer(&stored, &h);
        let cast_name = model.fresh_name(&format!("{name}.cast"));
        casts.push(node::make(
            "Cast",
            &[&stored],
            &[&name],
            &cast_name,
            vec![int("to", DataType::FLOAT.value() as i64)],
        ));
    }
    // The Casts read only initializers: first in the graph keeps it topologically sorted.
    let g = model.graph_mut();
    let rest = std::mem::take(&mut g.node);
    g.node = casts.into_iter().chain(rest).collect();
    model.validate_references()?;
    Ok(summary)
}

/// Inputs (op, slot) that must stay float32 in any graph.
fn must_stay_f32(op: &str, slot: usize) -> bool {
    matches!((op, slot), ("Resize", 1) | ("Resize", 2) | ("Upsample", 1))
}

/// The whole graph in f16; inputs and outputs keep their f32 interface.
pub fn fp16_compute(model: &mut OnnxModel) -> Result<Fp16Summary> {
    let mut summary = Fp16Summary::default();
    let consumers = model.consumers();
    let nodes = model.graph().node.clone();
    let keep: HashSet<String> = consumers
        .iter()
        .filter(|(_, uses)| {
            uses.iter().any(|&(i, slot)| {
                nodes
                    .get(i)
                    .is_some_and(|n| must_stay_f32(&n.op_type, slot))
            })
        })
        .map(|(n, _)| n.clone())
        .collect();
    for name in float_initializers(model) {
        if keep.contains(&name) {
            continue;
        }
        let t = match model.constant(&name) {
            Some(t) => t?,
            None => continue,
        };
        match to_f16(&name, &t, &mut summary) {
            Some(h) => model.set_initializer(&name, &h),
            None => {
                return Err(Error::tensor(
                    &name,
                    "holds values beyond f16's range (65504): full fp16 compute is not possible; store fp16 weights with fp32 compute instead",
                ))
            }
        }
    }
    gemm_to_matmul(model)?;
    let float = DataType::FLOAT.value() as i64;
    let half = DataType::FLOAT16.value() as i64;
    for n in model.graph_mut().node.iter_mut() {
        if n.op_type == "Cast" && attr_i(n, "to") == Some(float) {
            node::set_attr(n, int("to", half));
        }
        if n.op_type == "Constant" {
            return Err(Error::node(
                n,
                "constants must be initializers for fp16 compute (the optimize passes do that)",
            ));
        }
        if n.op_type == "ConstantOfShape" {
            return Err(Error::node(
                n,
                "makes float32 values of its own; fp16 compute cannot retype it",
            ));
        }
    }
    // Graph inputs: cast to f16 on entry.
    let float_inputs: Vec<String> = model
        .true_inputs()
        .iter()
        .filter(|vi| elem_type(vi) == Some(DataType::FLOAT.value()))
        .map(|vi| vi.name.clone())
        .collect();
    let mut entry = Vec::new();
    for name in float_inputs {
        let h = model.fresh_name(&format!("{name}.fp16"));
        model.replace_uses(&name, &h);
        let cast = model.fresh_name(&format!("{name}.to_fp16"));
        entry.push(node::make(
            "Cast",
            &[&name],
            &[&h],
            &cast,
            vec![int("to", half)],
        ));
    }
    // Graph outputs: produced in f16 under a new name, cast back to f32 under the old one.
    let outputs: Vec<String> = model
        .graph()
        .output
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let mut exit = Vec::new();
    for name in outputs {
        let h = model.fresh_name(&format!("{name}.fp16"));
        model.rename_tensor(&name, &h);
        // rename_tensor renamed the graph output too: restore the public name.
        for o in model.graph_mut().output.iter_mut() {
            if o.name == h {
                o.name = name.clone();
            }
        }
        let cast = model.fresh_name(&format!("{name}.to_fp32"));
        exit.push(node::make(
            "Cast",
            &[&h],
            &[&name],
            &cast,
            vec![int("to", float)],
        ));
    }
    let g = model.graph_mut();
    let body = std::mem::take(&mut g.node);
    g.node = entry.into_iter().chain(body).chain(exit).collect();
    // Intermediate types changed: let engines infer them again.
    g.value_info.clear();
    model.topo_sort()?;
    model.validate_references()?;
    Ok(summary)
}

/// tract 0.23 cannot type a Gemm in f16 (its expansion yields f32: "Output mismatch after
/// rewiring expansion ... expected F16 got F32"), so for f16 compute every Gemm becomes the
/// equivalent MatMul (+ Transpose of B with transB) (+ Add of C). alpha/beta other than 1
/// are refused rather than scaled silently.
fn gemm_to_matmul(model: &mut OnnxModel) -> Result<()> {
    let mut i = 0;
    while i < model.graph().node.len() {
        let n = model.graph().node[i].clone();
        if n.op_type != "Gemm" {
            i += 1;
            continue;
        }
        let alpha = node::attr_f(&n, "alpha").unwrap_or(1.0);
        let beta = node::attr_f(&n, "beta").unwrap_or(1.0);
        if alpha != 1.0 || beta != 1.0 || attr_i(&n, "transA").unwrap_or(0) != 0 {
            return Err(Error::node(
                &n,
                "Gemm with alpha/beta ≠ 1 or transA: fp16 compute rewrites Gemm as MatMul and handles only the plain form",
            ));
        }
        let (Some(a), Some(b), Some(y)) = (n.input.first(), n.input.get(1), n.output.first())
        else {
            return Err(Error::node(&n, "Gemm needs inputs A, B and an output"));
        };
        let base = node::display_name(&n);
        let mut nodes = Vec::new();
        let mut b_in = b.clone();
        if attr_i(&n, "transB").unwrap_or(0) != 0 {
            b_in = model.fresh_name(&format!("{b}.T"));
            let tn = model.fresh_name(&format!("{base}.transpose_b"));
            nodes.push(node::make(
                "Transpose",
                &[b],
                &[&b_in],
                &tn,
                vec![node::ints("perm", &[1, 0])],
            ));
        }
        let mm = model.fresh_name(&format!("{base}.matmul"));
        match n.input.get(2).filter(|c| !c.is_empty()) {
            None => nodes.push(node::make("MatMul", &[a, &b_in], &[y], &mm, vec![])),
            Some(c) => {
                let prod = model.fresh_name(&format!("{y}.product"));
                let add = model.fresh_name(&format!("{base}.bias"));
                nodes.push(node::make("MatMul", &[a, &b_in], &[&prod], &mm, vec![]));
                nodes.push(node::make("Add", &[&prod, c], &[y], &add, vec![]));
            }
        }
        let k = nodes.len();
        model.replace_node(i, nodes);
        i += k;
    }
    Ok(())
}

fn elem_type(vi: &onnx_protobuf::ValueInfoProto) -> Option<i32> {
    match vi.type_.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => Some(t.elem_type),
        _ => None,
    }
}
