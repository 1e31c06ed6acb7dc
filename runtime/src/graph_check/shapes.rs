//! Rules that need the shapes tract inferred: an axis inside its tensor's rank (tract clamps
//! `Softmax(axis=100)` and answers 1.0 everywhere), a permutation that is one, a pooling or
//! convolution window that fits its padded input (tract answers with an output where ONNX
//! Runtime refuses).

use super::node_label;
use crate::{Result, RuntimeError};
use std::collections::HashMap;
use std::path::Path;
use tract_onnx::pb;

/// Check every node against the typed shapes (ONNX tensor name -> dims). Nodes whose input
/// shapes are unknown (symbolic) are left to tract.
pub fn check_shapes(
    path: &Path,
    graph: &pb::GraphProto,
    shapes: &HashMap<String, Vec<usize>>,
) -> Result<()> {
    for (i, node) in graph.node.iter().enumerate() {
        let rank_of = |k: usize| {
            node.input
                .get(k)
                .and_then(|n| shapes.get(n.as_str()))
                .map(|d| d.len() as i64)
        };
        let fail = |reason: String| RuntimeError::Invalid {
            path: path.into(),
            node: node_label(node, i),
            reason,
        };
        if let Some(r) = rank_of(0) {
            check_axes(node, r).map_err(fail)?;
        }
        if node.op_type == "Transpose" {
            // The values were checked before typing; here only the length against the rank.
            if let (Some(perm), Some(r)) =
                (node.attribute.iter().find(|a| a.name == "perm"), rank_of(0))
            {
                if perm.ints.len() as i64 != r {
                    return Err(fail(format!(
                        "perm {:?} has {} entries for an input of rank {r}",
                        perm.ints,
                        perm.ints.len()
                    )));
                }
            }
        }
        if node.op_type == "Conv" {
            check_conv_groups(node, shapes).map_err(fail)?;
        }
        if matches!(
            node.op_type.as_str(),
            "MaxPool" | "AveragePool" | "LpPool" | "Conv"
        ) {
            check_window_fits(node, shapes).map_err(fail)?;
        }
    }
    Ok(())
}

/// Every axis attribute of `node` inside the rank `r` of its input 0 (before typing, from
/// [`super::ranks`], and after).
pub(super) fn check_axes(node: &pb::NodeProto, r: i64) -> std::result::Result<(), String> {
    for a in &node.attribute {
        let Some(extra) = axis_rule(&node.op_type, &a.name) else {
            continue;
        };
        let hi = r - 1 + extra;
        let values: Vec<i64> = if a.name == "axis" {
            vec![a.i]
        } else {
            a.ints.clone()
        };
        // Flatten may split after the last axis (axis = r) but counts from the end like
        // the others (axis = -r is the first).
        if let Some(v) = values.iter().find(|&&v| v < -r || v > hi) {
            return Err(format!(
                "{} = {v} is outside [{}, {hi}] for an input of rank {r}",
                a.name, -r
            ));
        }
    }
    Ok(())
}

/// Attributes that name axes of input 0, and how far past the last axis they may go (Flatten
/// may split after the last axis).
fn axis_rule(op: &str, attr: &str) -> Option<i64> {
    match (op, attr) {
        ("Flatten", "axis") => Some(1),
        (
            "Softmax" | "LogSoftmax" | "Hardmax" | "Concat" | "Gather" | "GatherElements" | "Split"
            | "ArgMax" | "ArgMin" | "LayerNormalization" | "Compress",
            "axis",
        ) => Some(0),
        (
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" | "Squeeze",
            "axes",
        ) => Some(0),
        _ => None,
    }
}

/// The dilated window must fit inside the padded input on every spatial axis (explicit pads
/// only: `auto_pad` SAME pads to fit).
fn check_window_fits(
    node: &pb::NodeProto,
    shapes: &HashMap<String, Vec<usize>>,
) -> std::result::Result<(), String> {
    let attr = |n: &str| node.attribute.iter().find(|a| a.name == n);
    let auto_pad = attr("auto_pad").map(|a| String::from_utf8_lossy(&a.s).to_string());
    if auto_pad.as_deref().is_some_and(|p| p.starts_with("SAME")) {
        return Ok(());
    }
    let Some(input) = node.input.first().and_then(|n| shapes.get(n.as_str())) else {
        return Ok(());
    };
    let kernel: Vec<i64> = match attr("kernel_shape") {
        Some(k) => k.ints.clone(),
        None => match node.input.get(1).and_then(|w| shapes.get(w.as_str())) {
            Some(w) if w.len() > 2 => w[2..].iter().map(|&d| d as i64).collect(),
            _ => return Ok(()),
        },
    };
    let n = kernel.len();
    if input.len() != n + 2 {
        return Err(format!(
            "input of rank {} for a window over {n} spatial axes (rank {} expected)",
            input.len(),
            n + 2
        ));
    }
    let pads = attr("pads").map(|a| a.ints.clone()).unwrap_or_default();
    let dil = attr("dilations")
        .map(|a| a.ints.clone())
        .unwrap_or_default();
    for axis in 0..n {
        let size = input[axis + 2] as i64;
        let padded = size + pads.get(axis).unwrap_or(&0) + pads.get(axis + n).unwrap_or(&0);
        let window = (kernel[axis] - 1) * dil.get(axis).unwrap_or(&1) + 1;
        if window > padded {
            return Err(format!(
                "the window {window} on spatial axis {axis} is larger than the padded input \
                 ({size} + pads = {padded})"
            ));
        }
    }
    Ok(())
}

/// A grouped convolution's weights `[M, C/group, k...]` must divide the input's `C` channels
/// and the `M` outputs into `group` equal parts.
fn check_conv_groups(
    node: &pb::NodeProto,
    shapes: &HashMap<String, Vec<usize>>,
) -> std::result::Result<(), String> {
    let group = node
        .attribute
        .iter()
        .find(|a| a.name == "group")
        .map_or(1, |a| a.i.max(1) as usize);
    let (Some(x), Some(w)) = (
        node.input.first().and_then(|n| shapes.get(n.as_str())),
        node.input.get(1).and_then(|n| shapes.get(n.as_str())),
    ) else {
        return Ok(());
    };
    if x.len() < 2 || w.len() < 2 {
        return Ok(());
    }
    if w[1] * group != x[1] || w[0] % group != 0 {
        return Err(format!(
            "group = {group} does not fit: the input has {} channels, the weights are {w:?}",
            x[1]
        ));
    }
    Ok(())
}
