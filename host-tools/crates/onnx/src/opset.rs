//! Moving a model's default-domain opset up without changing what any of its ops mean.
//!
//! Several rewrites need a newer op than the model's opset offers (per-channel
//! DequantizeLinear needs 13, HardSwish 14). Raising `opset_import` is only safe when none of
//! the model's ops changed signature or meaning between the two versions; otherwise the move
//! is refused with the op that blocks it, and the caller keeps the old opset.

use super::node::{attr_i, display_name};
use super::OnnxModel;
use std::collections::HashMap;

/// The newest opset this module knows the changes up to.
pub const NEWEST_CHECKED: i64 = 14;

/// Ops whose inputs or attributes changed at the given opset (from any earlier one ≥ 10).
const CHANGED_AT: [(i64, &[&str]); 3] = [
    (
        11,
        &["Clip", "Pad", "Resize", "Upsample", "TopK", "Scatter"],
    ),
    // Dropout's ratio moved from an attribute to an input.
    (12, &["Dropout"]),
    (13, &["Squeeze", "Unsqueeze", "ReduceSum", "Split"]),
];

/// Can the model's default opset become `target` (≤ [`NEWEST_CHECKED`]) without changing any
/// op's meaning? `ranks` (tensor → rank, from type inference) is needed only for the
/// Softmax family, whose axis semantics changed at 13.
pub fn can_move_to(
    model: &OnnxModel,
    ranks: Option<&HashMap<String, usize>>,
    target: i64,
) -> Result<(), String> {
    let from = model.opset();
    if from >= target {
        return Ok(());
    }
    if target > NEWEST_CHECKED {
        return Err(format!(
            "moving to opset {target} is not supported (changes known up to {NEWEST_CHECKED})"
        ));
    }
    if from < 10 {
        return Err(format!("opset {from} is older than 10"));
    }
    for n in &model.graph().node {
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            continue;
        }
        let op = n.op_type.as_str();
        if matches!(op, "Softmax" | "LogSoftmax" | "Hardmax") && from < 13 && target >= 13 {
            // Before 13 these flatten to 2-D at `axis` (default 1); from 13 they act on `axis`
            // (default −1). Same result when the axis is the last one.
            // The output has the input's shape, so either name's rank will do.
            let rank = n
                .input
                .first()
                .into_iter()
                .chain(n.output.first())
                .find_map(|x| ranks.and_then(|r| r.get(x)))
                .copied();
            let axis = attr_i(n, "axis").unwrap_or(1);
            if !rank.is_some_and(|r| axis == r as i64 - 1 || axis == -1) {
                return Err(format!(
                    "{op} '{}' does not provably act on the last axis",
                    display_name(n)
                ));
            }
            continue;
        }
        // BatchNormalization 14 only returns running statistics in training mode.
        if op == "BatchNormalization"
            && target >= 14
            && n.output.iter().skip(1).any(|o| !o.is_empty())
        {
            return Err(format!(
                "BatchNormalization '{}' has training outputs",
                display_name(n)
            ));
        }
        for (at, ops) in CHANGED_AT {
            if from < at && target >= at && ops.contains(&op) {
                return Err(format!(
                    "{op} '{}' changed meaning by opset {at}",
                    display_name(n)
                ));
            }
        }
    }
    Ok(())
}

/// Set the default-domain opset (call [`can_move_to`] first).
pub fn set(model: &mut OnnxModel, version: i64) {
    for o in model.proto.opset_import.iter_mut() {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            o.version = version;
        }
    }
}

/// Tensor ranks from tract's type inference at the given input shapes (to check Softmax axes
/// before an opset move).
pub fn tensor_ranks(
    model: &OnnxModel,
    shapes: &[edgeslim_runtime::InputShape],
) -> crate::Result<HashMap<String, usize>> {
    let opts = edgeslim_runtime::LoadOptions {
        input_shapes: shapes.to_vec(),
        ..Default::default()
    };
    let label = model.label();
    let t = edgeslim_runtime::model::TypedOnnx::from_bytes(
        model.to_bytes()?,
        std::path::Path::new(&label),
        None,
        &opts,
        std::time::Instant::now(),
    )?;
    Ok(t.tensor_shapes
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect())
}

/// Ranks the model declares itself (graph inputs, outputs and `value_info` with a shape),
/// symbolic dimensions included: what an opset check can use when tract cannot type the
/// model because its input sizes are dynamic.
pub fn declared_ranks(model: &OnnxModel) -> HashMap<String, usize> {
    let g = model.graph();
    g.input
        .iter()
        .chain(&g.output)
        .chain(&g.value_info)
        .filter_map(|vi| {
            let t = vi.type_.as_ref()?;
            let tensor = t.tensor_type();
            tensor
                .shape
                .as_ref()
                .map(|s| (vi.name.clone(), s.dim.len()))
        })
        .collect()
}
