//! Building ONNX graphs in code: test models, and the zoo's architectures at export time.

use super::model::OnnxModel;
use super::node;
use super::tensor::Tensor;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::Dimension;
use onnx_protobuf::type_proto::{Tensor as TypeTensor, Value as TypeValue};
use onnx_protobuf::{
    AttributeProto, GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use protobuf::{Enum, MessageField};

/// A dimension in a declared shape.
#[derive(Debug, Clone)]
pub enum D {
    N(i64),
    Sym(&'static str),
}

impl From<i64> for D {
    fn from(v: i64) -> D {
        D::N(v)
    }
}

/// A value_info of the given element type and (optional) shape.
pub fn value_info(name: &str, elem_type: DataType, dims: Option<&[D]>) -> ValueInfoProto {
    let mut tt = TypeTensor::new();
    tt.elem_type = elem_type.value();
    if let Some(dims) = dims {
        let mut shape = TensorShapeProto::new();
        for d in dims {
            let mut dim = Dimension::new();
            match d {
                D::N(v) => dim.set_dim_value(*v),
                D::Sym(s) => dim.set_dim_param(s.to_string()),
            }
            shape.dim.push(dim);
        }
        tt.shape = MessageField::some(shape);
    }
    let mut tp = TypeProto::new();
    tp.value = Some(TypeValue::TensorType(tt));
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi.type_ = MessageField::some(tp);
    vi
}

pub struct GraphBuilder {
    graph: GraphProto,
    opset: i64,
    counter: usize,
}

impl GraphBuilder {
    pub fn new(name: &str, opset: i64) -> GraphBuilder {
        let mut graph = GraphProto::new();
        graph.name = name.into();
        GraphBuilder {
            graph,
            opset,
            counter: 0,
        }
    }

    /// Declare a float input with a fixed shape.
    pub fn input(&mut self, name: &str, dims: &[i64]) -> String {
        let dims: Vec<D> = dims.iter().map(|&d| D::N(d)).collect();
        self.input_dims(name, DataType::FLOAT, &dims)
    }

    pub fn input_dims(&mut self, name: &str, dt: DataType, dims: &[D]) -> String {
        self.graph.input.push(value_info(name, dt, Some(dims)));
        name.to_string()
    }

    /// Declare a float graph output (shape left to inference).
    pub fn output(&mut self, name: &str) {
        self.graph
            .output
            .push(value_info(name, DataType::FLOAT, None));
    }

    pub fn output_dims(&mut self, name: &str, dims: &[D]) {
        self.graph
            .output
            .push(value_info(name, DataType::FLOAT, Some(dims)));
    }

    pub fn init(&mut self, name: &str, t: &Tensor) -> String {
        self.graph.initializer.push(t.to_proto(name));
        name.to_string()
    }

    /// Add a node with one output; returns the output's name (`<op>_<k>`).
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.counter += 1;
        let out = format!("{}_{}", op.to_lowercase(), self.counter);
        let name = format!("{op}_{}", self.counter);
        self.graph
            .node
            .push(node::make(op, inputs, &[&out], &name, attrs));
        out
    }

    /// Add a node with explicit output names.
    pub fn node_named(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        self.graph
            .node
            .push(node::make(op, inputs, outputs, name, attrs));
    }

    /// Append another model's graph, fed by `input` (this graph's tensor) in place of its one
    /// graph input: its node names and inner tensor names get `prefix.`, its initializers keep
    /// their names and are added when `with_initializers` (shared weights: the first use adds
    /// them, later uses refer to them). Returns this graph's names of its outputs.
    pub fn splice(
        &mut self,
        model: &OnnxModel,
        input: &str,
        prefix: &str,
        with_initializers: bool,
    ) -> crate::Result<Vec<String>> {
        let g = model.graph();
        let inits: std::collections::HashSet<&str> =
            g.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&str> = g
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|n| !inits.contains(n))
            .collect();
        let [source] = inputs.as_slice() else {
            return Err(crate::Error::Graph(format!(
                "{}: splicing needs one graph input, it has {}",
                model.label(),
                inputs.len()
            )));
        };
        let rename = |t: &str| -> String {
            if t.is_empty() || inits.contains(t) {
                t.to_string()
            } else if t == *source {
                input.to_string()
            } else {
                format!("{prefix}.{t}")
            }
        };
        if with_initializers {
            self.graph.initializer.extend(g.initializer.iter().cloned());
        }
        for n in &g.node {
            let mut n = n.clone();
            n.name = format!("{prefix}.{}", n.name);
            for t in n.input.iter_mut().chain(n.output.iter_mut()) {
                *t = rename(t);
            }
            self.graph.node.push(n);
        }
        Ok(g.output.iter().map(|o| rename(&o.name)).collect())
    }

    pub fn finish(self) -> OnnxModel {
        let mut m = ModelProto::new();
        m.ir_version = 8;
        m.producer_name = "edgeslim".into();
        m.producer_version = env!("CARGO_PKG_VERSION").into();
        let mut op = OperatorSetIdProto::new();
        op.version = self.opset;
        m.opset_import.push(op);
        m.graph = MessageField::some(self.graph);
        let mut model = OnnxModel::new(m);
        fill_output_shapes(&mut model);
        model
    }
}

/// Outputs declared without a shape get the one tract infers: onnx.checker's full check
/// requires a shape on every graph output. Left alone if inference is not possible.
fn fill_output_shapes(model: &mut OnnxModel) {
    let missing = |vi: &ValueInfoProto| match vi.type_.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => t.shape.is_none(),
        _ => false,
    };
    if !model.graph().output.iter().any(missing) {
        return;
    }
    let Ok(bytes) = model.to_bytes() else { return };
    let opts = edgeslim_runtime::LoadOptions::default();
    let Ok(typed) = edgeslim_runtime::model::TypedOnnx::from_bytes(
        bytes,
        std::path::Path::new("(builder)"),
        None,
        &opts,
        std::time::Instant::now(),
    ) else {
        return;
    };
    for vi in model.graph_mut().output.iter_mut().filter(|v| missing(v)) {
        if let Some(dims) = typed.tensor_shapes.get(&vi.name) {
            let d: Vec<D> = dims.iter().map(|&x| D::N(x as i64)).collect();
            let et = match vi.type_.as_ref().and_then(|t| t.value.as_ref()) {
                Some(TypeValue::TensorType(t)) => t.elem_type,
                _ => DataType::FLOAT.value(),
            };
            let dt = DataType::from_i32(et).unwrap_or(DataType::FLOAT);
            *vi = value_info(&vi.name, dt, Some(&d));
        }
    }
}
