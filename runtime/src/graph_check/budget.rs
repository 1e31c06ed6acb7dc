//! Sizes a graph declares before anything runs: tract computes constant subgraphs while it
//! types the model, so a `ConstantOfShape` of 80 GB would be allocated during loading, before
//! the loader's per-tensor check on typed facts could refuse it. Each result's size is bounded
//! from below by what is known without typing; above the budget, the model is refused.

use super::tensors::element_size;
use super::Scope;
use crate::Result;
use tract_onnx::pb;

pub(super) fn check_node(scope: &Scope, label: &str, node: &pb::NodeProto) -> Result<()> {
    let input = |i: usize| node.input.get(i).filter(|s| !s.is_empty());
    let (elements, elem_bytes): (u128, u64) = match node.op_type.as_str() {
        "ConstantOfShape" => {
            let Some(shape) = input(0).and_then(|s| scope.const_ints(s)) else {
                return Ok(());
            };
            let elem = node
                .attribute
                .iter()
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_ref())
                .and_then(|t| element_size(t.data_type))
                .unwrap_or(4);
            (volume(scope, label, &shape)?, elem)
        }
        "Expand" => {
            let Some(shape) = input(1).and_then(|s| scope.const_ints(s)) else {
                return Ok(());
            };
            let (elem, in_dims) = known_input(scope, input(0));
            // Broadcasting: each output axis is at least the larger of the two.
            let mut out = shape.iter().map(|&d| d.max(0) as u128).collect::<Vec<_>>();
            for (o, i) in out.iter_mut().rev().zip(in_dims.iter().rev()) {
                *o = (*o).max(*i as u128);
            }
            (out.iter().product(), elem)
        }
        "Tile" => {
            let Some(repeats) = input(1).and_then(|s| scope.const_ints(s)) else {
                return Ok(());
            };
            let (elem, in_dims) = known_input(scope, input(0));
            let reps = volume(scope, label, &repeats)?;
            let base: u128 = in_dims.iter().map(|&d| d as u128).product();
            (reps.saturating_mul(base.max(1)), elem)
        }
        "Resize" | "Upsample" => {
            let (elem, in_dims) = known_input(scope, input(0));
            if let Some(sizes) = input(3).and_then(|s| scope.const_ints(s)) {
                (volume(scope, label, &sizes)?, elem)
            } else if let Some(scales) = resize_scales(scope, node) {
                (scaled_volume(scope, label, &scales, &in_dims)?, elem)
            } else {
                return Ok(());
            }
        }
        _ => return Ok(()),
    };
    let bytes = elements.saturating_mul(elem_bytes as u128);
    if bytes > scope.budget as u128 {
        return Err(scope.invalid(
            label,
            format!(
                "its result holds at least {elements} elements ({bytes} bytes), over the limit \
                 of {} bytes",
                scope.budget
            ),
        ));
    }
    Ok(())
}

/// The constant scales of a Resize (input 2 from opset 11, input 1 in opset 10) or Upsample
/// (input 1, or the opset-7 attribute).
fn resize_scales(scope: &Scope, node: &pb::NodeProto) -> Option<Vec<f32>> {
    let at = if node.op_type == "Resize" && node.input.len() >= 3 {
        2
    } else {
        1
    };
    if let Some(v) = node
        .input
        .get(at)
        .filter(|s| !s.is_empty())
        .and_then(|s| scope.constants.get(s.as_str()))
        .and_then(|t| super::tensors::float_values(t))
    {
        return Some(v);
    }
    node.attribute
        .iter()
        .find(|a| a.name == "scales")
        .map(|a| a.floats.clone())
}

/// The output elements of a resize by `scales`: each output axis is floor(input · scale), at
/// least floor(scale) when the input axis is unknown (every axis holds one element or more).
/// tract computes these sizes in i64: a scale of 4.5e24 wrapped to a negative dimension and
/// tripped an assertion while typing (found by cargo fuzz).
fn scaled_volume(scope: &Scope, label: &str, scales: &[f32], in_dims: &[u64]) -> Result<u128> {
    if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(scope.invalid(
            label,
            format!("scale {s} in {scales:?} is not a positive finite number"),
        ));
    }
    // One axis alone past the budget: tract's i64 size computation can overflow however
    // small the other axes are (a second fuzz find: scales [3e29, 0.95, 2, 2], whose product
    // bound is 0 because floor(0.95) is).
    if let Some(s) = scales.iter().find(|s| **s as f64 > scope.budget as f64) {
        return Err(scope.invalid(
            label,
            format!(
                "scale {s} in {scales:?} makes one axis longer than the limit of {} bytes",
                scope.budget
            ),
        ));
    }
    let known = in_dims.len() == scales.len();
    Ok(scales.iter().enumerate().fold(1u128, |acc, (i, &s)| {
        let base = if known { in_dims[i] as f64 } else { 1.0 };
        acc.saturating_mul((base * s as f64).floor().min(u128::MAX as f64) as u128)
    }))
}

/// The product of a declared shape; a negative entry breaks the operator's rule.
fn volume(scope: &Scope, label: &str, dims: &[i64]) -> Result<u128> {
    if let Some(d) = dims.iter().find(|&&d| d < 0) {
        return Err(scope.invalid(label, format!("declares a negative size {d} in {dims:?}")));
    }
    Ok(dims
        .iter()
        .fold(1u128, |acc, &d| acc.saturating_mul(d as u128)))
}

/// Element size and dims of a data input when they are known before typing (one byte and no
/// dims otherwise, which keeps the bound a lower bound).
fn known_input(scope: &Scope, name: Option<&String>) -> (u64, Vec<u64>) {
    match name.and_then(|n| scope.known(n)) {
        Some((et, dims)) => (element_size(et).unwrap_or(1), dims),
        None => (1, Vec::new()),
    }
}
