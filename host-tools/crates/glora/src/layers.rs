//! The layers GLoRA can wrap: a `MatMul` by a 2-D weight (with the bias `Add` that follows it,
//! if any), a `Gemm` (alpha = beta = 1) and a `Conv`, each with its weight (and bias) as
//! initializers. The layer that produces the graph's output is the task head: it is trained
//! as it is, never wrapped.

use edgeslim_onnx::node::{attr_f, attr_i};
use edgeslim_onnx::{Error, OnnxModel, Result};
use serde::Serialize;

/// How a layer's weight is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `[in, out]` (`MatMul`, `Gemm` without transB).
    InOut,
    /// `[out, in]` (`Gemm` with transB).
    OutIn,
    /// `[out, in/groups, kh, kw]` (`Conv`).
    Conv,
}

/// One adaptable layer.
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// The MatMul / Gemm / Conv node.
    pub node: String,
    pub op: String,
    pub weight: String,
    pub layout: Layout,
    /// The weight's dims.
    pub dims: Vec<usize>,
    /// The bias initializer, and the node reading it (the layer itself, or the `Add` after a
    /// MatMul) with the input slot.
    pub bias: Option<(String, String, usize)>,
}

impl Layer {
    /// Output units.
    pub fn outputs(&self) -> usize {
        match self.layout {
            Layout::InOut => self.dims[1],
            Layout::OutIn | Layout::Conv => self.dims[0],
        }
    }

    /// Fan-in: the inputs one output unit reads (`in/groups · kh · kw` for a convolution).
    pub fn fan_in(&self) -> usize {
        match self.layout {
            Layout::InOut => self.dims[0],
            Layout::OutIn => self.dims[1],
            Layout::Conv => self.dims[1..].iter().product(),
        }
    }
}

/// The layers of `model`, in graph order, and the name of the head's node (the layer whose
/// output, or whose bias `Add`'s output, is a graph output).
pub fn find(model: &OnnxModel) -> Result<(Vec<Layer>, Option<String>)> {
    let g = model.graph();
    let consumers = model.consumers();
    let outputs: std::collections::HashSet<&str> =
        g.output.iter().map(|o| o.name.as_str()).collect();
    let dims_of = |name: &str| -> Option<Vec<usize>> {
        model
            .initializer(name)
            .map(|t| t.dims.iter().map(|&d| d.max(0) as usize).collect())
    };
    let mut layers = Vec::new();
    let mut head = None;
    for n in &g.node {
        let Some(w) = n.input.get(1) else { continue };
        let Some(dims) = dims_of(w) else { continue };
        let (layout, rank) = match n.op_type.as_str() {
            "MatMul" => (Layout::InOut, 2),
            "Gemm" => {
                let unit = |a: &str| attr_f(n, a).unwrap_or(1.0) == 1.0;
                if !unit("alpha") || !unit("beta") || attr_i(n, "transA").unwrap_or(0) != 0 {
                    continue;
                }
                if attr_i(n, "transB").unwrap_or(0) != 0 {
                    (Layout::OutIn, 2)
                } else {
                    (Layout::InOut, 2)
                }
            }
            "Conv" => (Layout::Conv, 4),
            _ => continue,
        };
        if dims.len() != rank || dims.contains(&0) {
            continue;
        }
        let out_units = if layout == Layout::InOut {
            dims[1]
        } else {
            dims[0]
        };
        let is_bias = |t: &str| dims_of(t).is_some_and(|d| d == [out_units]);
        let mut produced = n.output[0].clone();
        let bias = if n.op_type == "MatMul" {
            // The bias Add reading only this MatMul's output and a [out] initializer.
            let uses = consumers
                .get(&n.output[0])
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            match uses {
                [(i, slot)] if g.node[*i].op_type == "Add" => {
                    let add = &g.node[*i];
                    let other = add.input.get(1 - slot).cloned().unwrap_or_default();
                    if is_bias(&other) {
                        produced = add.output[0].clone();
                        Some((other, add.name.clone(), 1 - slot))
                    } else {
                        None
                    }
                }
                _ => None,
            }
        } else {
            n.input
                .get(2)
                .filter(|b| is_bias(b))
                .map(|b| (b.clone(), n.name.clone(), 2))
        };
        if n.name.is_empty() {
            return Err(Error::Graph(format!(
                "{}: a {} node reading '{w}' has no name; GLoRA names adapters after their node",
                model.label(),
                n.op_type
            )));
        }
        if outputs.contains(produced.as_str()) {
            head = Some(n.name.clone());
        }
        layers.push(Layer {
            node: n.name.clone(),
            op: n.op_type.clone(),
            weight: w.clone(),
            layout,
            dims,
            bias,
        });
    }
    Ok((layers, head))
}

/// Does the model have attention (a `Softmax` node)? Decides the default layer set.
pub fn has_attention(model: &OnnxModel) -> bool {
    model.graph().node.iter().any(|n| n.op_type == "Softmax")
}

/// The layers to wrap: those whose node or weight name `pattern` matches, else by default
/// every linear layer of a transformer (attention and MLP projections, patch embedding
/// excluded as it is a Conv) or every convolution of a CNN; never the head.
pub fn select(
    layers: &[Layer],
    head: Option<&str>,
    pattern: Option<&regex::Regex>,
    transformer: bool,
) -> Vec<Layer> {
    layers
        .iter()
        .filter(|l| Some(l.node.as_str()) != head)
        .filter(|l| match pattern {
            Some(p) => p.is_match(&l.node) || p.is_match(&l.weight),
            None => (l.layout == Layout::Conv) != transformer,
        })
        .cloned()
        .collect()
}
