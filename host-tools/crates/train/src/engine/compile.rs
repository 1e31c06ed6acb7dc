//! Compiling an `OnnxModel` into an execution plan, once.
//!
//! - Every tensor name gets a slot index; running a step reads and writes a `Vec` of slots, no
//!   string maps on the hot path.
//! - Constants become candle tensors once. Float constants that are weights become `Var`s
//!   (see `weight_use` for the rule), batch-norm running statistics become `Var`s updated in
//!   training mode, everything else is a fixed tensor.
//! - Nodes whose inputs are all fixed constants are evaluated here and disappear from the
//!   plan. Nodes that depend only on tensor *shapes* (Shape → Slice → Concat → Reshape) are
//!   marked; the executor evaluates them once per input shape and reuses the result.

use super::convert::{same_kind, to_candle};
use super::ops::{self, BuildCtx, Op, RunCtx};
use super::{EngineOptions, Mode, WeightRole};
use crate::{Error, Result};
use candle_core::{Tensor, Var};
use edgeslim_onnx::model::constant_node_value;
use edgeslim_onnx::node::display_name;
use edgeslim_onnx::{OnnxModel, Tensor as OnnxTensor, TensorData};
use edgeslim_runtime::input::SplitMix64;
use onnx_protobuf::NodeProto;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Where a stored tensor lives in the model, to write it back on export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Initializer,
    ConstantNode,
}

/// A stored float tensor the engine keeps as a `Var`: a weight or a running statistic.
pub(crate) struct Stored {
    pub name: String,
    pub slot: usize,
    pub var: Var,
    pub source: Source,
    /// The element type the model stores it in.
    pub kind: TensorData,
    pub role: WeightRole,
    pub frozen: bool,
}

pub(crate) struct Step {
    pub name: String,
    pub op_type: String,
    pub op: Box<dyn Op>,
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<Option<usize>>,
    /// Depends only on input shapes: evaluated once per input signature.
    pub shape_only: bool,
}

pub(crate) struct Plan {
    pub steps: Vec<Step>,
    /// Fixed tensors (constants and compile-time results) by slot.
    pub base: Vec<Option<Tensor>>,
    pub slot_of: HashMap<String, usize>,
    pub inputs: Vec<(String, usize)>,
    pub outputs: Vec<(String, usize)>,
    /// Index of the last step reading each slot (to free activations in inference).
    pub last_use: Vec<Option<usize>>,
    /// Slots written by shape-only steps.
    pub shape_slots: Vec<usize>,
}

pub(crate) struct Compiled {
    pub plan: Plan,
    pub weights: Vec<Stored>,
    pub stats: Vec<Stored>,
}

/// How a float constant is used at one input slot of one op.
enum Use {
    /// A learned parameter of this op.
    Weight(WeightRole),
    /// A hyper-parameter or statistic, never trained (Clip bounds, Pow exponent, BN stats,
    /// Resize scales, Pad value, ...).
    Fixed,
    /// Data flowing through a generic op (Add, Mul, Concat, Reshape, Gather, ...).
    Neutral,
}

fn weight_use(op: &str, slot: usize) -> Use {
    use WeightRole::*;
    match (op, slot) {
        ("Conv" | "ConvTranspose", 1) => Use::Weight(Kernel),
        ("Conv" | "ConvTranspose", 2) => Use::Weight(Bias),
        ("Gemm", 0 | 1) | ("MatMul", _) => Use::Weight(Kernel),
        ("Gemm", 2) => Use::Weight(Bias),
        ("BatchNormalization" | "LayerNormalization" | "InstanceNormalization", 1) => {
            Use::Weight(NormScale)
        }
        ("BatchNormalization" | "LayerNormalization" | "InstanceNormalization", 2) => {
            Use::Weight(NormBias)
        }
        ("PRelu", 1) => Use::Weight(Other),
        ("BatchNormalization", _) => Use::Fixed,
        (
            "Clip" | "Pow" | "Resize" | "Upsample" | "Pad" | "Dropout" | "ConstantOfShape"
            | "Range",
            s,
        ) if s >= 1 || op == "Range" => Use::Fixed,
        ("Reshape" | "Expand" | "Tile" | "Slice" | "Squeeze" | "Unsqueeze" | "Split", s)
            if s >= 1 =>
        {
            Use::Fixed
        }
        (op, s) if op.starts_with("Reduce") && s >= 1 => Use::Fixed,
        _ => Use::Neutral,
    }
}

/// Is this float constant a weight, and with which role? A weight is used where a layer
/// reads its parameters, or is a multi-element tensor flowing through generic ops (class
/// tokens, positional embeddings, biases added after a MatMul); scalars in generic ops (the
/// 6 of HardSwish, the √2 of an exported GELU) and anything used as a hyper-parameter are not.
fn classify(value: &OnnxTensor, uses: &[(&str, usize)]) -> Option<WeightRole> {
    let mut strong = None;
    let mut neutral_add = false;
    let mut neutral = false;
    for &(op, slot) in uses {
        match weight_use(op, slot) {
            Use::Fixed => return None,
            Use::Weight(r) => strong = strong.or(Some(r)),
            Use::Neutral => {
                neutral = true;
                neutral_add |= op == "Add";
            }
        }
    }
    if strong.is_some() {
        return strong;
    }
    if neutral && value.len() > 1 {
        return Some(if value.dims.len() <= 1 && neutral_add {
            WeightRole::Bias
        } else {
            WeightRole::Other
        });
    }
    None
}

fn node_error(node: &NodeProto, reason: impl Into<String>) -> Error {
    Error::node(node, reason)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Static,
    ShapeOnly,
    Dynamic,
}

pub(crate) fn compile(model: &OnnxModel, opts: &EngineOptions) -> Result<Compiled> {
    let mut m = model.clone();
    m.topo_sort()?;
    let opset = m.opset();
    let g = m.graph();
    let float = opts.dtype;

    let inputs: Vec<String> = m.true_inputs().iter().map(|v| v.name.clone()).collect();
    let input_set: HashSet<&str> = inputs.iter().map(|s| s.as_str()).collect();

    // Constants: initializers (unless a graph input overrides them) and Constant nodes.
    let mut consts: Vec<(String, OnnxTensor, Source)> = Vec::new();
    for t in &g.initializer {
        if input_set.contains(t.name.as_str()) {
            continue;
        }
        consts.push((
            t.name.clone(),
            OnnxTensor::from_proto(t)?,
            Source::Initializer,
        ));
    }
    for n in g.node.iter().filter(|n| n.op_type == "Constant") {
        let out = n
            .output
            .first()
            .ok_or_else(|| node_error(n, "Constant without an output"))?;
        consts.push((out.clone(), constant_node_value(n)?, Source::ConstantNode));
    }

    let mut uses: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
    for n in g.node.iter().filter(|n| n.op_type != "Constant") {
        for (k, i) in n.input.iter().enumerate().filter(|(_, i)| !i.is_empty()) {
            uses.entry(i.as_str())
                .or_default()
                .push((n.op_type.as_str(), k));
        }
    }

    // Slots.
    let mut slot_of: HashMap<String, usize> = HashMap::new();
    let slot = |name: &str, slot_of: &mut HashMap<String, usize>| -> usize {
        let n = slot_of.len();
        *slot_of.entry(name.to_string()).or_insert(n)
    };
    for i in &inputs {
        slot(i, &mut slot_of);
    }
    for (name, _, _) in &consts {
        slot(name, &mut slot_of);
    }
    for n in g.node.iter().filter(|n| n.op_type != "Constant") {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            slot(o, &mut slot_of);
        }
    }
    let n_slots = slot_of.len();
    let mut base: Vec<Option<Tensor>> = vec![None; n_slots];
    let mut class: Vec<Class> = vec![Class::Dynamic; n_slots];

    let bn_stats: HashSet<&str> = g
        .node
        .iter()
        .filter(|n| n.op_type == "BatchNormalization")
        .flat_map(|n| n.input.iter().skip(3).take(2).map(|s| s.as_str()))
        .collect();

    let mut weights = Vec::new();
    let mut stats = Vec::new();
    let mut stat_vars: HashMap<String, Var> = HashMap::new();
    for (name, value, source) in &consts {
        let s = slot_of[name];
        let t = to_candle(name, value, float)?;
        let no_uses = Vec::new();
        let u = uses.get(name.as_str()).unwrap_or(&no_uses);
        let stored = |role| -> Result<Stored> {
            Ok(Stored {
                name: name.clone(),
                slot: s,
                var: Var::from_tensor(&t).map_err(|e| Error::tensor(name, e.to_string()))?,
                source: *source,
                kind: same_kind(&value.data),
                role,
                frozen: false,
            })
        };
        if value.is_float() && bn_stats.contains(name.as_str()) {
            let st = stored(WeightRole::Other)?;
            stat_vars.insert(name.clone(), st.var.clone());
            stats.push(st);
        } else if let Some(role) = value
            .is_float()
            .then(|| {
                let named = *source == Source::Initializer
                    && opts
                        .weight_prefixes
                        .iter()
                        .any(|p| name.starts_with(p.as_str()));
                classify(value, u).or(named.then_some(WeightRole::Other))
            })
            .flatten()
        {
            let mut w = stored(role)?;
            w.frozen = opts.freeze.as_ref().is_some_and(|f| f.matches(name));
            weights.push(w);
        } else {
            base[s] = Some(t);
            class[s] = Class::Static;
        }
    }
    if opts.require_weights && weights.is_empty() {
        return Err(Error::Graph(format!(
            "{}: the model has no float weight to train (no initializer or Constant feeds a Conv, Gemm, MatMul, normalisation or a multi-element Add/Mul)",
            model.label()
        )));
    }

    // Steps, folding what is constant.
    let bctx = BuildCtx {
        opset,
        stats: &stat_vars,
    };
    let rng = Mutex::new(SplitMix64(0));
    let fold_ctx = RunCtx {
        mode: Mode::Eval,
        dtype: float,
        rng: &rng,
    };
    let mut steps = Vec::new();
    for n in g.node.iter().filter(|n| n.op_type != "Constant") {
        let op = ops::build(n, &bctx).map_err(|e| node_error(n, e.0))?;
        let ins: Vec<Option<usize>> = n
            .input
            .iter()
            .map(|i| {
                if i.is_empty() {
                    Ok(None)
                } else {
                    slot_of.get(i).copied().map(Some).ok_or_else(|| {
                        node_error(n, format!("reads tensor '{i}' which nothing produces"))
                    })
                }
            })
            .collect::<Result<_>>()?;
        let outs: Vec<Option<usize>> = n
            .output
            .iter()
            .map(|o| (!o.is_empty()).then(|| slot_of[o]))
            .collect();
        let in_class = ins
            .iter()
            .flatten()
            .map(|&s| class[s])
            .max()
            .unwrap_or(Class::Static);
        let c = if op.stateful() {
            Class::Dynamic
        } else if matches!(n.op_type.as_str(), "Shape" | "Size") {
            // A shape is known once the input's shape is, whatever its values.
            if in_class == Class::Static {
                Class::Static
            } else {
                Class::ShapeOnly
            }
        } else {
            in_class
        };
        if c == Class::Static {
            let vals: Vec<Option<Tensor>> = ins
                .iter()
                .map(|s| s.and_then(|s| base[s].clone()))
                .collect();
            let res = op.run(&fold_ctx, &vals).map_err(|e| node_error(n, e.0))?;
            for (k, o) in outs.iter().enumerate() {
                if let (Some(o), Some(t)) = (o, res.get(k)) {
                    base[*o] = Some(t.clone());
                    class[*o] = Class::Static;
                }
            }
            continue;
        }
        for o in outs.iter().flatten() {
            class[*o] = c;
        }
        steps.push(Step {
            name: display_name(n),
            op_type: n.op_type.clone(),
            op,
            inputs: ins,
            outputs: outs,
            shape_only: c == Class::ShapeOnly,
        });
    }

    let mut outputs = Vec::new();
    for o in &g.output {
        let s = *slot_of
            .get(&o.name)
            .ok_or_else(|| Error::Graph(format!("graph output '{}' is never produced", o.name)))?;
        outputs.push((o.name.clone(), s));
    }
    let mut last_use = vec![None; n_slots];
    for (k, st) in steps.iter().enumerate() {
        for s in st.inputs.iter().flatten() {
            last_use[*s] = Some(k);
        }
    }
    let shape_slots = steps
        .iter()
        .filter(|s| s.shape_only)
        .flat_map(|s| s.outputs.iter().flatten().copied())
        .collect();
    let inputs = inputs
        .into_iter()
        .map(|n| {
            let s = slot_of[&n];
            (n, s)
        })
        .collect();
    Ok(Compiled {
        plan: Plan {
            steps,
            base,
            slot_of,
            inputs,
            outputs,
            last_use,
            shape_slots,
        },
        weights,
        stats,
    })
}
