//! `edgeslim inspect`: what a model holds — inputs, outputs, opsets, and per node its op,
//! output shape, parameters and MACs.
//!
//! Parameters are elements of floating-point constant tensors wherever they sit
//! (initializers or `Constant` nodes); each is credited to the first node that reads it.
//! Shapes come from tract's type inference at the given input shapes; MACs from ONNX
//! semantics on those shapes (`edgeslim_runtime::macs`).

use crate::model::constant_node_value;
use crate::node::display_name;
use crate::tensor::{is_float_type, proto_dims, stored_element_count};
use crate::OnnxModel;
use crate::Result;
use edgeslim_runtime::macs::node_macs;
use edgeslim_runtime::model::{dtype_name, format_dims, LoadOptions, OnnxNode, TypedOnnx};
use edgeslim_runtime::InputShape;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize)]
pub struct IoInfo {
    pub name: String,
    pub dtype: String,
    /// As declared in the file, e.g. `[p2o.DynamicDimension.0,3,?,?]`.
    pub declared: String,
    /// As inferred at the inspected input shapes.
    pub shape: Option<Vec<usize>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub op: String,
    pub output_shape: Option<Vec<usize>>,
    pub params: u64,
    pub macs: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub path: String,
    pub ir_version: i64,
    pub producer: String,
    pub opsets: Vec<(String, i64)>,
    pub inputs: Vec<IoInfo>,
    pub outputs: Vec<IoInfo>,
    pub nodes: Vec<NodeRow>,
    pub op_counts: BTreeMap<String, usize>,
    /// Elements of all floating-point constant tensors.
    pub total_params: u64,
    /// Bytes of all constant tensors as stored.
    pub weight_bytes: u64,
    pub total_macs: u64,
    /// Why shapes (and so MACs) are missing, when they are.
    pub shape_note: Option<String>,
    /// The edgeslim commands that wrote the file, oldest first (`edgeslim.provenance`).
    pub provenance: Vec<crate::provenance::Entry>,
}

/// The runtime's view of a node, for MAC counting.
pub fn runtime_node(n: &onnx_protobuf::NodeProto) -> OnnxNode {
    OnnxNode {
        name: display_name(n),
        op_type: n.op_type.clone(),
        domain: n.domain.clone(),
        inputs: n.input.clone(),
        outputs: n.output.clone(),
        int_attrs: n
            .attribute
            .iter()
            .filter(|a| {
                a.type_.enum_value() == Ok(onnx_protobuf::attribute_proto::AttributeType::INT)
            })
            .map(|a| (a.name.clone(), a.i))
            .collect(),
    }
}

/// Float element counts of every constant tensor by name (initializers, Constant outputs).
fn constant_sizes(model: &OnnxModel) -> Result<HashMap<String, (u64, bool)>> {
    let mut m = HashMap::new();
    for t in &model.graph().initializer {
        m.insert(
            t.name.clone(),
            (stored_element_count(t)? as u64, is_float_type(t.data_type)),
        );
    }
    for n in model
        .graph()
        .node
        .iter()
        .filter(|n| n.op_type == "Constant")
    {
        if let (Some(out), Ok(t)) = (n.output.first(), constant_node_value(n)) {
            m.insert(out.clone(), (t.len() as u64, t.is_float()));
        }
    }
    Ok(m)
}

fn weight_bytes(model: &OnnxModel) -> u64 {
    let g = model.graph();
    let mut b: u64 = g.initializer.iter().map(|t| t.raw_data.len() as u64).sum();
    for t in &g.initializer {
        b += (t.float_data.len() * 4 + t.int64_data.len() * 8 + t.int32_data.len() * 4) as u64;
    }
    for n in g.node.iter().filter(|n| n.op_type == "Constant") {
        for a in &n.attribute {
            if let Some(t) = a.t.as_ref() {
                b += t.raw_data.len() as u64 + (t.float_data.len() * 4) as u64;
            }
        }
    }
    b
}

pub fn inspect(model: &OnnxModel, input_shapes: &[InputShape]) -> Result<Inspection> {
    let g = model.graph();
    let opts = LoadOptions {
        input_shapes: input_shapes.to_vec(),
        ..Default::default()
    };
    let label = PathBuf::from(model.label());
    let dir = model
        .path
        .as_ref()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let (mut shapes, shape_note) = match TypedOnnx::from_bytes(
        model.to_bytes()?,
        &label,
        dir.as_deref(),
        &opts,
        std::time::Instant::now(),
    ) {
        Ok(t) => (t.tensor_shapes, None),
        // A broken operator rule is the model's fault, not a missing input shape: refuse.
        Err(e @ edgeslim_runtime::RuntimeError::Invalid { .. }) => return Err(e.into()),
        Err(e) => (HashMap::new(), Some(e.to_string())),
    };
    // Constant shapes are known without inference.
    for t in &g.initializer {
        if let Ok(d) = proto_dims(t) {
            shapes.entry(t.name.clone()).or_insert(d);
        }
    }

    let sizes = constant_sizes(model)?;
    let mut counted: HashSet<&str> = HashSet::new();
    let mut nodes = Vec::new();
    let mut op_counts = BTreeMap::new();
    for n in &g.node {
        *op_counts.entry(n.op_type.clone()).or_insert(0) += 1;
        if n.op_type == "Constant" {
            continue;
        }
        let mut params = 0;
        for i in &n.input {
            if let Some(&(count, true)) = sizes.get(i) {
                if counted.insert(i.as_str()) {
                    params += count;
                }
            }
        }
        let macs = if shape_note.is_none() {
            node_macs(&runtime_node(n), &shapes)
        } else {
            None
        };
        nodes.push(NodeRow {
            name: display_name(n),
            op: n.op_type.clone(),
            output_shape: n.output.first().and_then(|o| shapes.get(o)).cloned(),
            params,
            macs,
        });
    }
    let io = |vi: &onnx_protobuf::ValueInfoProto| {
        let et = match vi.type_.as_ref().and_then(|t| t.value.as_ref()) {
            Some(onnx_protobuf::type_proto::Value::TensorType(t)) => t.elem_type,
            _ => 0,
        };
        IoInfo {
            name: vi.name.clone(),
            dtype: dtype_name(et),
            declared: format_dims(&crate::optimize::shapes::declared(vi)),
            shape: shapes.get(&vi.name).cloned(),
        }
    };
    let provenance = crate::provenance::history(model.metadata(crate::provenance::KEY))
        .map_err(|e| crate::Error::Invalid(format!("{}: {e}", model.label())))?;
    Ok(Inspection {
        provenance,
        path: model.label(),
        ir_version: model.proto.ir_version,
        producer: format!(
            "{} {}",
            model.proto.producer_name, model.proto.producer_version
        )
        .trim()
        .to_string(),
        opsets: model
            .proto
            .opset_import
            .iter()
            .map(|o| {
                let d = if o.domain.is_empty() {
                    "ai.onnx"
                } else {
                    &o.domain
                };
                (d.to_string(), o.version)
            })
            .collect(),
        inputs: model.true_inputs().into_iter().map(io).collect(),
        outputs: g.output.iter().map(io).collect(),
        total_macs: nodes.iter().filter_map(|n| n.macs).sum(),
        total_params: model.float_constant_elements()?,
        weight_bytes: weight_bytes(model),
        nodes,
        op_counts,
        shape_note,
    })
}

fn fmt_count(v: u64) -> String {
    match v {
        v if v >= 1_000_000_000 => format!("{:.3}G", v as f64 / 1e9),
        v if v >= 1_000_000 => format!("{:.3}M", v as f64 / 1e6),
        v if v >= 10_000 => format!("{:.1}K", v as f64 / 1e3),
        v => v.to_string(),
    }
}

/// The human-readable form `inspect` prints.
pub fn render_text(i: &Inspection) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{}", i.path);
    let opsets: Vec<String> = i.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    let _ = writeln!(
        s,
        "  IR {}  opsets: {}  producer: {}",
        i.ir_version,
        opsets.join(", "),
        if i.producer.is_empty() {
            "-"
        } else {
            &i.producer
        }
    );
    for (kind, list) in [("input", &i.inputs), ("output", &i.outputs)] {
        for io in list {
            let shape = io
                .shape
                .as_ref()
                .map(|s| format!(" -> {s:?}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {kind:<6} {} {} {}{shape}",
                io.name, io.dtype, io.declared
            );
        }
    }
    if let Some(note) = &i.shape_note {
        let _ = writeln!(s, "  shapes unknown: {note}");
    }
    for (k, e) in i.provenance.iter().enumerate() {
        let inputs: Vec<String> = e
            .inputs
            .iter()
            .map(|i| {
                format!(
                    "{} (sha256 {})",
                    i.file,
                    &i.sha256[..i.sha256.len().min(12)]
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "  history {}: {} {}{}",
            k + 1,
            e.tool,
            e.command,
            if inputs.is_empty() {
                String::new()
            } else {
                format!("  <- {}", inputs.join(", "))
            }
        );
    }
    let _ = writeln!(
        s,
        "\n  {:<40} {:<20} {:<22} {:>10} {:>10}",
        "node", "op", "output shape", "params", "MACs"
    );
    for n in &i.nodes {
        let shape = n
            .output_shape
            .as_ref()
            .map(|v| format!("{v:?}"))
            .unwrap_or_else(|| "?".into());
        let macs = n.macs.map(fmt_count).unwrap_or_else(|| "?".into());
        let name = if n.name.chars().count() > 40 {
            let tail: String = n
                .name
                .chars()
                .rev()
                .take(39)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        } else {
            n.name.clone()
        };
        let _ = writeln!(
            s,
            "  {:<40} {:<20} {:<22} {:>10} {:>10}",
            name,
            n.op,
            shape,
            fmt_count(n.params),
            macs
        );
    }
    let ops: Vec<String> = i
        .op_counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(s, "\n  ops: {}", ops.join(", "));
    let _ = writeln!(
        s,
        "  total: {} nodes, {} parameters ({:.2} MB of weights), {} MACs",
        i.nodes.len() + i.op_counts.get("Constant").copied().unwrap_or(0),
        fmt_count(i.total_params),
        i.weight_bytes as f64 / 1e6,
        if i.shape_note.is_some() {
            "?".to_string()
        } else {
            fmt_count(i.total_macs)
        }
    );
    s
}
