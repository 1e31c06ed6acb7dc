//! Tensor ranks known before typing, and the axis rules checked with them.
//!
//! tract's inference rules index shapes with an op's `axis` as soon as the rank is known
//! (`Flatten(axis=65)` on a rank-4 input slices `shape[..65]` and panics), so an axis check
//! after typing comes too late for the board build, which aborts on a panic. Ranks follow from
//! the declared inputs and the constants through the ops below; anything else is unknown and
//! left to the check after typing ([`super::shapes`]).

use super::shapes::check_axes;
use super::{node_label, Scope};
use crate::Result;
use std::collections::HashMap;
use tract_onnx::pb;

/// Propagate ranks through the main graph in node order and check every axis attribute whose
/// input rank is known.
pub fn check_axes_before_typing(scope: &Scope, graph: &pb::GraphProto) -> Result<()> {
    let mut ranks: HashMap<&str, i64> = HashMap::new();
    for vi in &graph.input {
        if let Some(pb::type_proto::Value::TensorType(tt)) =
            vi.r#type.as_ref().and_then(|t| t.value.as_ref())
        {
            if let Some(shape) = &tt.shape {
                ranks.insert(vi.name.as_str(), shape.dim.len() as i64);
            }
        }
    }
    for (&name, t) in &scope.constants {
        ranks.insert(name, t.dims.len() as i64);
    }
    // Lengths of the 1-D integer tensors that feed Reshape (Shape -> Slice -> Concat chains).
    let mut lengths: HashMap<&str, i64> = HashMap::new();
    for (&name, t) in &scope.constants {
        if t.dims.len() == 1 {
            lengths.insert(name, t.dims[0]);
        }
    }
    for (i, node) in graph.node.iter().enumerate() {
        if let Some(len) = output_length(scope, node, &ranks, &lengths) {
            if let Some(out) = node.output.first() {
                lengths.insert(out.as_str(), len);
            }
        }
        let length_of = |k: usize| {
            node.input
                .get(k)
                .filter(|n| !n.is_empty())
                .and_then(|n| lengths.get(n.as_str()).copied())
        };
        let rank_of = |k: usize| {
            node.input
                .get(k)
                .filter(|n| !n.is_empty())
                .and_then(|n| ranks.get(n.as_str()).copied())
        };
        if let Some(r) = rank_of(0) {
            check_axes(node, r).map_err(|reason| scope.invalid(&node_label(node, i), reason))?;
        }
        let reshape_rank = (node.op_type == "Reshape").then(|| length_of(1)).flatten();
        if let Some(r) = reshape_rank.or_else(|| output_rank(scope, node, &rank_of)) {
            // Other outputs (BatchNorm's running statistics, LayerNorm's mean) have ranks of
            // their own; only these ops give every output the same one.
            let outputs = if matches!(node.op_type.as_str(), "Split" | "TopK" | "Dropout") {
                node.output.len()
            } else {
                1
            };
            if (0..=64).contains(&r) {
                for out in node.output.iter().take(outputs).filter(|o| !o.is_empty()) {
                    ranks.insert(out.as_str(), r);
                }
            }
        }
    }
    Ok(())
}

/// The length of a node's 1-D output when it is a shape computation whose length is known:
/// `Shape` (the input's rank), `Cast`/`Identity`, `Concat` (the sum), `Unsqueeze` of a scalar,
/// and `Slice` with constant bounds on one axis.
fn output_length(
    scope: &Scope,
    node: &pb::NodeProto,
    ranks: &HashMap<&str, i64>,
    lengths: &HashMap<&str, i64>,
) -> Option<i64> {
    let name = |k: usize| node.input.get(k).filter(|n| !n.is_empty());
    let len = |k: usize| name(k).and_then(|n| lengths.get(n.as_str()).copied());
    match node.op_type.as_str() {
        // Shape's start/end attributes (opset 15) take part of the shape: left unknown.
        "Shape" if node.attribute.is_empty() => {
            name(0).and_then(|n| ranks.get(n.as_str()).copied())
        }
        "Cast" | "Identity" => len(0),
        "Concat" => node
            .input
            .iter()
            .map(|n| lengths.get(n.as_str()).copied())
            .sum::<Option<i64>>(),
        "Unsqueeze" => name(0)
            .and_then(|n| ranks.get(n.as_str()).copied())
            .filter(|&r| r == 0)
            .map(|_| 1),
        "Slice" => {
            let n = len(0)?;
            let ints = |k: usize| name(k).and_then(|s| scope.const_ints(s));
            let (starts, ends) = (ints(1)?, ints(2)?);
            let step = ints(4).map_or(1, |s| s.first().copied().unwrap_or(1));
            if starts.len() != 1 || ends.len() != 1 || step != 1 {
                return None;
            }
            let clamp = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
            Some((clamp(ends[0]) - clamp(starts[0])).max(0))
        }
        _ => None,
    }
}

fn int_attr(node: &pb::NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// The `axes` of Squeeze/Unsqueeze/Reduce*: an attribute (older opsets) or a constant input.
fn axes_count(scope: &Scope, node: &pb::NodeProto) -> Option<i64> {
    if let Some(a) = node.attribute.iter().find(|a| a.name == "axes") {
        return Some(a.ints.len() as i64);
    }
    node.input
        .get(1)
        .filter(|n| !n.is_empty())
        .and_then(|n| scope.const_ints(n))
        .map(|v| v.len() as i64)
}

/// The rank of a node's outputs, when its ONNX rule and the known input ranks fix it.
fn output_rank(
    scope: &Scope,
    node: &pb::NodeProto,
    rank_of: &dyn Fn(usize) -> Option<i64>,
) -> Option<i64> {
    let all_inputs = || -> Option<Vec<i64>> {
        node.input
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .map(|(k, _)| rank_of(k))
            .collect()
    };
    let const_len = |k: usize| {
        node.input
            .get(k)
            .filter(|n| !n.is_empty())
            .and_then(|n| scope.const_ints(n))
            .map(|v| v.len() as i64)
    };
    match node.op_type.as_str() {
        // The rank of input 0.
        "Relu"
        | "Sigmoid"
        | "Tanh"
        | "Exp"
        | "Log"
        | "Neg"
        | "Abs"
        | "Sqrt"
        | "Reciprocal"
        | "HardSigmoid"
        | "HardSwish"
        | "LeakyRelu"
        | "Elu"
        | "Selu"
        | "Softplus"
        | "Softsign"
        | "Clip"
        | "Cast"
        | "Identity"
        | "Dropout"
        | "BatchNormalization"
        | "InstanceNormalization"
        | "LayerNormalization"
        | "Softmax"
        | "LogSoftmax"
        | "Hardmax"
        | "Conv"
        | "ConvTranspose"
        | "MaxPool"
        | "AveragePool"
        | "LpPool"
        | "GlobalAveragePool"
        | "GlobalMaxPool"
        | "LRN"
        | "Erf"
        | "Floor"
        | "Ceil"
        | "Round"
        | "Sign"
        | "Not"
        | "Transpose"
        | "Slice"
        | "Pad"
        | "Resize"
        | "Upsample"
        | "DepthToSpace"
        | "SpaceToDepth"
        | "Concat"
        | "Split"
        | "Tile"
        | "Gelu"
        | "Mish"
        | "Sin"
        | "Cos"
        | "ThresholdedRelu"
        | "Celu"
        | "CumSum"
        | "TopK" => rank_of(0),
        // Broadcasting: the largest rank, when all are known.
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Equal"
        | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "And" | "Or" | "Xor"
        | "Where" | "PRelu" | "Mod" => all_inputs()?.into_iter().max(),
        "MatMul" => match (rank_of(0)?, rank_of(1)?) {
            (1, 1) => Some(0),
            (1, b) => Some(b - 1),
            (a, 1) => Some(a - 1),
            (a, b) => Some(a.max(b)),
        },
        "Gemm" | "Flatten" => Some(2),
        "Shape" => Some(1),
        "Size" => Some(0),
        "Reshape" => const_len(1),
        "ConstantOfShape" => const_len(0),
        "Expand" => Some(rank_of(0)?.max(const_len(1)?)),
        "Unsqueeze" => Some(rank_of(0)? + axes_count(scope, node)?),
        "Squeeze" => Some(rank_of(0)? - axes_count(scope, node)?),
        "Gather" => Some(rank_of(0)? + rank_of(1)? - 1),
        "ArgMax" | "ArgMin" => {
            let r = rank_of(0)?;
            Some(if int_attr(node, "keepdims").unwrap_or(1) != 0 {
                r
            } else {
                r - 1
            })
        }
        op if op.starts_with("Reduce") => {
            let r = rank_of(0)?;
            if int_attr(node, "keepdims").unwrap_or(1) != 0 {
                Some(r)
            } else {
                // No or empty axes: all of them, or none with noop_with_empty_axes; unknown.
                axes_count(scope, node).filter(|&k| k > 0).map(|k| r - k)
            }
        }
        _ => None,
    }
}
