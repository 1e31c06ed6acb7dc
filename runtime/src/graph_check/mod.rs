//! Semantic checks of an ONNX graph before tract, or a host pass, sees it.
//!
//! tract trusts the operator rules of ONNX: a zero stride divides by zero, a pad list of the
//! wrong length indexes out of bounds, a `ConstantOfShape` of 80 GB is allocated while the
//! graph is being typed. The host build turns tract's panics into errors, but the board build
//! aborts on a panic, so the rules are checked here first and a broken model is refused with
//! one line naming the node and the rule. Axes are checked against the ranks known before
//! typing ([`ranks`]); checks that need shapes (a pooling window against its input) and
//! axes whose rank only typing reveals run after typing, in [`shapes`].
//!
//! The main graph is checked; the bodies of `If`/`Loop`/`Scan` get the attribute checks only
//! (their constants may come from the outer scope).

mod attributes;
mod budget;
mod ranks;
mod shapes;
mod tensors;

pub use shapes::check_shapes;
pub use tensors::element_size;

use crate::{Result, RuntimeError};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tract_onnx::pb;

/// What the per-node checks can read: the graph's constants and its declared inputs.
pub(crate) struct Scope<'a> {
    pub path: &'a Path,
    /// Bytes any one tensor may take (the loader's `max_tensor_bytes`).
    pub budget: u64,
    /// Initializers and `Constant` node values, by tensor name.
    pub constants: HashMap<&'a str, &'a pb::TensorProto>,
    /// Graph inputs with a declared element type and fixed dims, by name.
    pub inputs: HashMap<&'a str, (i32, Vec<u64>)>,
}

impl Scope<'_> {
    pub fn invalid(&self, node: &str, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::Invalid {
            path: self.path.into(),
            node: node.to_string(),
            reason: reason.into(),
        }
    }

    /// The integer values of a constant input (shape, repeats, steps), if it is one.
    pub fn const_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.constants
            .get(name)
            .and_then(|t| tensors::int_values(t))
    }

    /// Element type and dims of a tensor known without typing: a constant or a declared input.
    pub fn known(&self, name: &str) -> Option<(i32, Vec<u64>)> {
        if let Some(t) = self.constants.get(name) {
            return Some((
                t.data_type,
                t.dims.iter().map(|&d| d.max(0) as u64).collect(),
            ));
        }
        self.inputs.get(name).cloned()
    }
}

/// Check a graph's structure, tensors, attributes and declared allocations. `budget` is the
/// most bytes one tensor may take.
pub fn check_graph(path: &Path, graph: &pb::GraphProto, budget: u64) -> Result<()> {
    let scope = scope_of(path, graph, budget);
    check_structure(&scope, graph)?;
    for t in &graph.initializer {
        tensors::check_tensor(&scope, &format!("initializer '{}'", t.name), t)?;
    }
    for (i, node) in graph.node.iter().enumerate() {
        let label = node_label(node, i);
        for a in &node.attribute {
            if let Some(t) = &a.t {
                tensors::check_tensor(&scope, &label, t)?;
            }
        }
        attributes::check_node(&scope, &label, node)?;
        budget::check_node(&scope, &label, node)?;
        for a in &node.attribute {
            for g in a.g.iter().chain(a.graphs.iter()) {
                check_subgraph_attributes(&scope, g)?;
            }
        }
    }
    ranks::check_axes_before_typing(&scope, graph)
}

/// `node 'conv1' (Conv)`, or the node's index when it has no name.
pub fn node_label(node: &pb::NodeProto, index: usize) -> String {
    format!(
        "node '{}' ({})",
        node_display_name(node, index),
        node.op_type
    )
}

fn scope_of<'a>(path: &'a Path, graph: &'a pb::GraphProto, budget: u64) -> Scope<'a> {
    let mut constants: HashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    for n in &graph.node {
        if n.op_type == "Constant" {
            if let (Some(out), Some(t)) = (
                n.output.first(),
                n.attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref()),
            ) {
                constants.insert(out.as_str(), t);
            }
        }
    }
    let mut inputs = HashMap::new();
    for vi in &graph.input {
        let Some(pb::type_proto::Value::TensorType(tt)) =
            vi.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            continue;
        };
        let Some(shape) = &tt.shape else { continue };
        let dims: Option<Vec<u64>> = shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v >= 0 => {
                    Some(v as u64)
                }
                _ => None,
            })
            .collect();
        if let Some(dims) = dims {
            inputs.insert(vi.name.as_str(), (tt.elem_type, dims));
        }
    }
    Scope {
        path,
        budget,
        constants,
        inputs,
    }
}

/// Outputs exist and are produced; no tensor has two producers.
fn check_structure(scope: &Scope, graph: &pb::GraphProto) -> Result<()> {
    if graph.output.is_empty() {
        return Err(scope.invalid("graph", "declares no outputs: there is nothing to compute"));
    }
    let mut produced: HashSet<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
    produced.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    for (i, node) in graph.node.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            if !produced.insert(out.as_str()) {
                return Err(scope.invalid(
                    &node_label(node, i),
                    format!("output '{out}' is already produced by another node, an input or an initializer"),
                ));
            }
        }
    }
    for out in &graph.output {
        if !produced.contains(out.name.as_str()) {
            return Err(scope.invalid(
                "graph",
                format!(
                    "output '{}' is produced by no node, input or initializer",
                    out.name
                ),
            ));
        }
    }
    Ok(())
}

fn check_subgraph_attributes(scope: &Scope, graph: &pb::GraphProto) -> Result<()> {
    for (i, node) in graph.node.iter().enumerate() {
        attributes::check_node(scope, &node_label(node, i), node)?;
        for a in &node.attribute {
            for g in a.g.iter().chain(a.graphs.iter()) {
                check_subgraph_attributes(scope, g)?;
            }
        }
    }
    Ok(())
}

/// The display name convention shared with tract: name, else first output, else op#index.
pub fn node_display_name(node: &pb::NodeProto, index: usize) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else if let Some(o) = node.output.first().filter(|o| !o.is_empty()) {
        o.clone()
    } else {
        format!("{}#{index}", node.op_type)
    }
}
