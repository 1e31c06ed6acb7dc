//! Channel-axis propagation, one rule per op: how a node's output channels relate to its
//! inputs' channels, which weights it slices, which attributes or shape constants change.
//!
//! Rules walk the graph in topological order. An op without a rule, or a rule's case the
//! pruner cannot prove safe, pins the channels it touches (with a reason naming the node), so
//! the worst an unknown pattern can do is keep channels.

use super::graph::{DepGraph, Fixup, Layout, Role, WeightSlice};
use crate::Result;
use edgeslim_onnx::node::{attr_i, attr_ints, display_name};
use edgeslim_onnx::OnnxModel;
use onnx_protobuf::NodeProto;
use std::collections::HashMap;

/// Ops that act on each element alone: output channels are input 0's channels.
const UNARY: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softplus",
    "Softsign",
    "Clip",
    "Identity",
    "Dropout",
    "Neg",
    "Abs",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Erf",
    "Gelu",
    "Mish",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "ThresholdedRelu",
    "Not",
    "IsNaN",
];

/// Element-wise ops over several inputs, with broadcasting.
const ELEMENTWISE: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where", "Equal",
    "Greater", "Less", "And", "Or",
];

/// Spatial pooling: channels pass through (NCHW axis 1).
const POOLS: &[&str] = &[
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "GlobalLpPool",
];

fn prod(d: &[usize]) -> usize {
    d.iter().product()
}

fn norm_axis(a: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    (0..r).contains(&v).then_some(v as usize)
}

/// A convolution's tensors: input, output, weight, optional bias, the weight's and the
/// input's shapes, and the group count.
struct ConvOperands {
    x: String,
    y: String,
    w: String,
    b: Option<String>,
    wd: Vec<usize>,
    xs: Vec<usize>,
    g: usize,
}

struct Ctx<'a> {
    m: &'a OnnxModel,
    g: DepGraph,
    /// Initializers that are true constants (not overridable graph inputs): their dims.
    consts: HashMap<String, Vec<usize>>,
    opts: RuleOptions,
}

/// Choices that trade exactness for size.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleOptions {
    /// Prune channels a LayerNormalization normalises over (its scale and bias follow).
    /// Not exact: the remaining channels are normalised with the statistics of fewer
    /// channels. Torch-Pruning does this by default (ConvNeXt's channels-last LayerNorm).
    pub prune_layernorm: bool,
}

/// Build the dependency graph of a prepared model (constants as initializers, topologically
/// sorted) from the tensor shapes inferred at fixed input shapes.
pub fn analyze(model: &OnnxModel, shapes: HashMap<String, Vec<usize>>) -> Result<DepGraph> {
    analyze_with(model, shapes, RuleOptions::default())
}

/// [`analyze`] with the choices of [`RuleOptions`].
pub fn analyze_with(
    model: &OnnxModel,
    shapes: HashMap<String, Vec<usize>>,
    opts: RuleOptions,
) -> Result<DepGraph> {
    let inputs = model.graph_input_names();
    let mut consts = HashMap::new();
    for t in &model.graph().initializer {
        if !inputs.contains(&t.name) {
            consts.insert(t.name.clone(), edgeslim_onnx::tensor::proto_dims(t)?);
        }
    }
    let mut ctx = Ctx {
        m: model,
        g: DepGraph {
            shapes,
            ..Default::default()
        },
        consts,
        opts,
    };
    for (i, n) in model.graph().node.iter().enumerate() {
        ctx.g.nodes.push((display_name(n), n.op_type.clone()));
        for o in &n.output {
            ctx.g.producer.insert(o.clone(), i);
        }
    }
    for vi in model.true_inputs() {
        let Some(dims) = ctx.g.shapes.get(&vi.name).cloned() else {
            continue;
        };
        if dims.is_empty() {
            continue;
        }
        let axis = default_axis(dims.len());
        let units = ctx.g.units.fresh(dims[axis]);
        ctx.g.units.pin_all(
            &units,
            &format!("graph input '{}' keeps its shape", vi.name),
        );
        ctx.g
            .layouts
            .insert(vi.name.clone(), Layout { axis, units });
    }
    for (i, n) in model.graph().node.iter().enumerate() {
        ctx.node(i, n)?;
    }
    for o in &model.graph().output {
        if let Some(l) = ctx.g.layouts.get(&o.name).cloned() {
            ctx.g.units.pin_all(
                &l.units,
                &format!("graph output '{}' keeps its shape", o.name),
            );
        }
    }
    Ok(ctx.g)
}

/// The tracked axis of a tensor nothing else decides for: channels of NCHW, else features.
fn default_axis(rank: usize) -> usize {
    if rank >= 4 {
        1
    } else {
        rank.saturating_sub(1)
    }
}

impl<'a> Ctx<'a> {
    fn shape(&self, t: &str) -> Option<Vec<usize>> {
        if let Some(d) = self.consts.get(t) {
            return Some(d.clone());
        }
        self.g.shapes.get(t).cloned()
    }

    fn is_const(&self, t: &str) -> bool {
        self.consts.contains_key(t)
    }

    fn layout(&self, t: &str) -> Option<Layout> {
        self.g.layouts.get(t).cloned()
    }

    fn set(&mut self, t: &str, l: Layout) {
        if !t.is_empty() {
            self.g.layouts.insert(t.to_string(), l);
        }
    }

    fn pin_tensor(&mut self, t: &str, reason: &str) {
        if let Some(l) = self.g.layouts.get(t) {
            let units = l.units.clone();
            self.g.units.pin_all(&units, reason);
        }
    }

    fn pin_inputs(&mut self, n: &NodeProto, reason: &str) {
        for i in &n.input {
            self.pin_tensor(i, reason);
        }
    }

    fn weight(&mut self, node: usize, tensor: &str, axis: usize, units: &[usize], role: Role) {
        self.g.weights.push(WeightSlice {
            node,
            tensor: tensor.to_string(),
            axis,
            units: units.to_vec(),
            role,
        });
    }

    fn const_i64(&self, t: &str) -> Option<Vec<i64>> {
        self.m.constant(t)?.ok()?.to_i64_vec()
    }

    fn const_f32(&self, t: &str) -> Option<Vec<f32>> {
        Some(self.m.constant(t)?.ok()?.to_f32_vec())
    }

    fn node(&mut self, i: usize, n: &NodeProto) -> Result<()> {
        let op = n.op_type.as_str();
        let why = |s: &str| format!("{op} '{}': {s}", display_name(n));
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            self.pin_inputs(n, &why("custom-domain op"));
            return Ok(());
        }
        let x = n.input.first().map(String::as_str).unwrap_or("");
        let y = n.output.first().map(String::as_str).unwrap_or("");
        match op {
            "Constant" => {}
            "Cast" => {
                let to = attr_i(n, "to").unwrap_or(0);
                // FLOAT, FLOAT16, DOUBLE, BFLOAT16: values keep their channel meaning.
                if matches!(to, 1 | 10 | 11 | 16) {
                    if let Some(l) = self.layout(x) {
                        self.set(y, l);
                    }
                } else {
                    self.pin_inputs(n, &why("casts channels to a non-float type"));
                }
            }
            _ if UNARY.contains(&op) => {
                if let Some(l) = self.layout(x) {
                    self.set(y, l);
                }
            }
            _ if ELEMENTWISE.contains(&op) => self.elementwise(i, n, &n.input.clone(), None)?,
            "BatchNormalization" | "InstanceNormalization" => {
                let Some(l) = self.layout(x) else {
                    return Ok(());
                };
                let params = if op == "BatchNormalization" {
                    1..5
                } else {
                    1..3
                };
                let all_const = params.clone().all(|k| {
                    n.input.get(k).is_some_and(|t| {
                        self.is_const(t) && self.shape(t) == Some(vec![l.units.len()])
                    })
                });
                if l.axis != 1 || !all_const {
                    self.pin_tensor(x, &why("per-channel parameters not constant along axis 1"));
                } else {
                    for k in params {
                        self.weight(i, &n.input[k], 0, &l.units, Role::Param);
                    }
                }
                self.set(y, l);
            }
            "Conv" => self.conv(i, n, &why)?,
            "ConvTranspose" => self.conv_transpose(i, n, &why)?,
            "Gemm" => self.gemm(i, n, &why)?,
            "MatMul" => self.matmul(i, n, &why)?,
            "Concat" => self.concat(i, n, &why)?,
            "Split" => self.split(i, n, &why)?,
            "Slice" => self.slice(i, n, &why)?,
            "Transpose" => {
                let Some(l) = self.layout(x) else {
                    return Ok(());
                };
                let rank = self.shape(x).map(|s| s.len()).unwrap_or(0);
                let perm = attr_ints(n, "perm")
                    .unwrap_or_else(|| (0..rank as i64).rev().collect::<Vec<_>>());
                match perm.iter().position(|&p| p == l.axis as i64) {
                    Some(axis) => self.set(y, Layout { axis, ..l }),
                    None => self.pin_tensor(x, &why("permutation does not cover the axis")),
                }
            }
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => self.reshape(i, n, &why)?,
            _ if POOLS.contains(&op) => {
                if let Some(l) = self.layout(x) {
                    if l.axis == 1 {
                        self.set(y, l);
                    } else {
                        self.pin_tensor(x, &why("pools over the tracked axis"));
                    }
                }
            }
            "Resize" | "Upsample" => {
                let Some(l) = self.layout(x) else {
                    return Ok(());
                };
                let scales_slot = if op == "Upsample" || self.m.opset() < 11 {
                    1
                } else {
                    2
                };
                let sizes = n.input.get(3).filter(|s| !s.is_empty());
                let scale_ok = match n.input.get(scales_slot).filter(|s| !s.is_empty()) {
                    Some(s) => self
                        .const_f32(s)
                        .is_some_and(|v| v.is_empty() || v.get(l.axis) == Some(&1.0)),
                    None => true,
                };
                if sizes.is_some() || !scale_ok {
                    self.pin_tensor(x, &why("resizes the channel axis or uses `sizes`"));
                }
                self.set(y, l);
            }
            "Pad" => {
                let Some(l) = self.layout(x) else {
                    return Ok(());
                };
                let rank = self.shape(x).map(|s| s.len()).unwrap_or(0);
                let pads = match n.input.get(1).filter(|s| !s.is_empty()) {
                    Some(p) => self.const_i64(p),
                    None => attr_ints(n, "pads"),
                };
                let ok = pads.is_some_and(|p| {
                    p.len() == 2 * rank && p[l.axis] == 0 && p[l.axis + rank] == 0
                }) && n.input.get(3).is_none_or(|a| a.is_empty());
                if !ok {
                    self.pin_tensor(x, &why("pads the channel axis (or pads not constant)"));
                }
                self.set(y, l);
            }
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSumExp" => {
                let Some(l) = self.layout(x) else {
                    return Ok(());
                };
                let rank = self.shape(x).map(|s| s.len()).unwrap_or(0);
                let axes = match n.input.get(1).filter(|s| !s.is_empty()) {
                    Some(a) => self.const_i64(a),
                    None => Some(attr_ints(n, "axes").unwrap_or_default()),
                };
                let axes: Option<Vec<usize>> =
                    axes.and_then(|a| a.iter().map(|&v| norm_axis(v, rank)).collect());
                match axes {
                    Some(a) if !a.is_empty() && !a.contains(&l.axis) => {
                        let keep = attr_i(n, "keepdims").unwrap_or(1) != 0;
                        let axis = if keep {
                            l.axis
                        } else {
                            l.axis - a.iter().filter(|&&v| v < l.axis).count()
                        };
                        self.set(y, Layout { axis, ..l });
                    }
                    _ => self.pin_tensor(x, &why("reduces over the tracked axis")),
                }
            }
            "Softmax" | "LogSoftmax" | "Hardmax" => {
                let Some(l) = self.layout(x) else {
                    return Ok(());
                };
                let rank = self.shape(x).map(|s| s.len()).unwrap_or(0);
                let default = if self.m.opset() >= 13 { -1 } else { 1 };
                let axis = norm_axis(attr_i(n, "axis").unwrap_or(default), rank).unwrap_or(0);
                // Before opset 13 the op normalises over every axis from `axis` on.
                let mixes = if self.m.opset() >= 13 {
                    l.axis == axis
                } else {
                    l.axis >= axis
                };
                if mixes {
                    self.pin_tensor(x, &why("normalises over the tracked axis"));
                }
                self.set(y, l);
            }
            "LayerNormalization" => {
                let Some(l) = self.layout(x) else {
                    return Ok(());
                };
                let rank = self.shape(x).map(|s| s.len()).unwrap_or(0);
                let axis = norm_axis(attr_i(n, "axis").unwrap_or(-1), rank).unwrap_or(0);
                let per_channel = |t: Option<&String>| {
                    t.filter(|t| !t.is_empty())
                        .is_none_or(|t| self.consts.get(t) == Some(&vec![l.units.len()]))
                };
                let approximate = self.opts.prune_layernorm
                    && l.axis == axis
                    && axis + 1 == rank
                    && n.input.get(1).is_some_and(|t| !t.is_empty())
                    && per_channel(n.input.get(1))
                    && per_channel(n.input.get(2));
                if approximate {
                    for t in n.input.iter().skip(1).filter(|t| !t.is_empty()) {
                        self.weight(i, t, 0, &l.units, Role::Param);
                    }
                } else if l.axis >= axis {
                    self.pin_tensor(x, &why("normalises over the tracked axis"));
                }
                self.set(y, l);
            }
            "Gather" => {
                let Some(l) = self.layout(x) else {
                    return Ok(());
                };
                let rank = self.shape(x).map(|s| s.len()).unwrap_or(0);
                let axis = norm_axis(attr_i(n, "axis").unwrap_or(0), rank).unwrap_or(0);
                let idx_rank = n.input.get(1).and_then(|t| self.shape(t)).map(|s| s.len());
                match idx_rank {
                    Some(ir) if axis != l.axis => {
                        let a = if l.axis < axis {
                            l.axis
                        } else {
                            l.axis - 1 + ir
                        };
                        self.set(y, Layout { axis: a, ..l });
                    }
                    _ => self.pin_tensor(x, &why("gathers along the tracked axis")),
                }
            }
            _ => {
                self.pin_inputs(
                    n,
                    &why("the pruner has no channel rule for this op; its channels are kept"),
                );
            }
        }
        Ok(())
    }

    /// Broadcasting element-wise ops (and Concat along another axis): every non-constant
    /// input with the output's channel axis is the same channel; per-channel constants are
    /// sliced along it.
    fn elementwise(
        &mut self,
        i: usize,
        n: &NodeProto,
        inputs: &[String],
        skip_axis: Option<usize>,
    ) -> Result<()> {
        let y = n.output.first().cloned().unwrap_or_default();
        let why = format!("{} '{}'", n.op_type, display_name(n));
        let Some(out_shape) = self.shape(&y) else {
            self.pin_inputs(n, &format!("{why}: output shape unknown"));
            return Ok(());
        };
        let r = out_shape.len();
        // Each input's tracked axis in output coordinates.
        let aligned = |ctx: &Self, t: &str| -> Option<(usize, Layout)> {
            let l = ctx.layout(t)?;
            let rank = ctx.shape(t)?.len();
            Some((l.axis + r.checked_sub(rank)?, l))
        };
        let chosen = inputs.iter().filter(|t| !t.is_empty()).find_map(|t| {
            let (a, l) = aligned(self, t)?;
            (Some(a) != skip_axis && out_shape.get(a) == Some(&l.units.len()) && l.units.len() > 1)
                .then_some((a, l))
        });
        let Some((axis, out)) = chosen else {
            // No input carries channels into the output: tracked inputs must not be
            // removed (their channels are mixed with fixed ones or broadcast).
            for t in inputs {
                if let Some((_, l)) = aligned(self, t) {
                    if l.units.len() > 1 {
                        self.g
                            .units
                            .pin_all(&l.units, &format!("{why}: channels meet untracked data"));
                    }
                }
            }
            return Ok(());
        };
        let c = out.units.len();
        for t in inputs.iter().filter(|t| !t.is_empty()) {
            let Some(shape) = self.shape(t) else { continue };
            let off = r.saturating_sub(shape.len());
            let dim = if axis >= off { shape[axis - off] } else { 1 };
            if self.is_const(t) {
                if dim == c && c > 1 {
                    self.weight(i, t, axis - off, &out.units, Role::Param);
                }
                continue;
            }
            match aligned(self, t) {
                Some((a, l)) if a == axis && l.units.len() == c => {
                    for (&u, &v) in out.units.iter().zip(&l.units) {
                        self.g.units.union(u, v);
                    }
                }
                other => {
                    if let Some((_, l)) = other {
                        if l.units.len() > 1 {
                            self.g.units.pin_all(
                                &l.units,
                                &format!("{why}: tracked on a different axis than its partner"),
                            );
                        }
                    }
                    if dim > 1 {
                        self.g.units.pin_all(
                            &out.units,
                            &format!(
                                "{why}: combined with a tensor whose channels are not tracked"
                            ),
                        );
                    }
                }
            }
        }
        self.set(&y, out);
        Ok(())
    }

    /// The operands of a Conv or ConvTranspose whose weights (and bias) are constant and whose
    /// ranks are as expected; otherwise its inputs are pinned with the reason and None returned.
    fn conv_operands(
        &mut self,
        n: &NodeProto,
        why: &dyn Fn(&str) -> String,
    ) -> Option<ConvOperands> {
        let x = n.input[0].clone();
        let y = n.output.first().cloned().unwrap_or_default();
        let w = n.input.get(1).cloned().unwrap_or_default();
        let b = n.input.get(2).filter(|s| !s.is_empty()).cloned();
        let (Some(wd), Some(xs)) = (self.consts.get(&w).cloned(), self.shape(&x)) else {
            self.pin_inputs(n, &why("weights are not constant"));
            return None;
        };
        if wd.len() < 3 || xs.len() < 3 || b.as_ref().is_some_and(|b| !self.is_const(b)) {
            self.pin_inputs(n, &why("unexpected weight or input rank"));
            return None;
        }
        let g = attr_i(n, "group").unwrap_or(1).max(1) as usize;
        Some(ConvOperands {
            x,
            y,
            w,
            b,
            wd,
            xs,
            g,
        })
    }

    fn conv(&mut self, i: usize, n: &NodeProto, why: &dyn Fn(&str) -> String) -> Result<()> {
        let Some(ConvOperands {
            x,
            y,
            w,
            b,
            wd,
            xs,
            g,
        }) = self.conv_operands(n, why)
        else {
            return Ok(());
        };
        let x = &x;
        let (m, cin) = (wd[0], xs[1]);
        let mut l = self.layout(x);
        if l.as_ref().is_some_and(|l| l.axis != 1) {
            self.pin_tensor(x, &why("input channels are not the tracked axis"));
            l = None;
        }
        if g == 1 && wd[1] != cin {
            self.pin_inputs(n, &why("weight input channels do not match the input"));
            return Ok(());
        }
        let out = if g == 1 {
            if let Some(l) = &l {
                self.weight(i, &w, 1, &l.units, Role::In);
            }
            self.g.units.fresh(m)
        } else if g == cin && wd[1] == 1 && m % cin == 0 {
            // Depthwise (channel multiplier k = M / C): output c·k + j belongs to input c.
            let k = m / cin;
            match &l {
                Some(l) => {
                    let units: Vec<usize> = (0..m).map(|p| l.units[p / k]).collect();
                    self.g.fixups.push(Fixup::Group {
                        node: i,
                        tensor: x.clone(),
                    });
                    units
                }
                None => {
                    let u = self.g.units.fresh(m);
                    self.g
                        .units
                        .pin_all(&u, &why("depthwise over untracked channels"));
                    u
                }
            }
        } else if cin % g == 0 && m % g == 0 && wd[1] * g == cin {
            // Grouped (ResNeXt, RegNet): channels go consistently inside every group, so the
            // group count stays and each group keeps the same width. Input position j of
            // every group is one unit (weight axis 1 holds the per-group positions), and
            // output position j of every group is one unit.
            let (per_in, per_out) = (cin / g, m / g);
            if let Some(l) = &l {
                for j in 0..per_in {
                    for grp in 1..g {
                        self.g.units.union(l.units[j], l.units[grp * per_in + j]);
                    }
                }
                self.weight(i, &w, 1, &l.units[..per_in], Role::In);
            }
            let base = self.g.units.fresh(per_out);
            (0..m).map(|o| base[o % per_out]).collect()
        } else {
            let reason = why(&format!(
                "grouped convolution (group={g}) whose weights do not divide its channels; its channels are kept"
            ));
            self.pin_tensor(x, &reason);
            let u = self.g.units.fresh(m);
            self.g.units.pin_all(&u, &reason);
            u
        };
        let depthwise = g > 1 && g == cin && wd[1] == 1;
        let role = if depthwise { Role::Param } else { Role::Out };
        self.weight(i, &w, 0, &out, role);
        if let Some(b) = b {
            self.weight(i, &b, 0, &out, role);
        }
        self.set(
            &y,
            Layout {
                axis: 1,
                units: out,
            },
        );
        Ok(())
    }

    fn conv_transpose(
        &mut self,
        i: usize,
        n: &NodeProto,
        why: &dyn Fn(&str) -> String,
    ) -> Result<()> {
        let Some(ConvOperands {
            x,
            y,
            w,
            b,
            wd,
            xs,
            g,
        }) = self.conv_operands(n, why)
        else {
            return Ok(());
        };
        let x = &x;
        let cin = xs[1];
        let m = wd[1] * g;
        let mut l = self.layout(x);
        if l.as_ref().is_some_and(|l| l.axis != 1) {
            self.pin_tensor(x, &why("input channels are not the tracked axis"));
            l = None;
        }
        // W is [C_in, M/g, k...]: input channels on axis 0, output channels on axis 1.
        let out = if g == 1 {
            if let Some(l) = &l {
                self.weight(i, &w, 0, &l.units, Role::In);
            }
            let out = self.g.units.fresh(m);
            self.weight(i, &w, 1, &out, Role::Out);
            out
        } else if g == cin && wd[1] == 1 {
            let out = match &l {
                Some(l) => {
                    self.g.fixups.push(Fixup::Group {
                        node: i,
                        tensor: x.clone(),
                    });
                    l.units.clone()
                }
                None => {
                    let u = self.g.units.fresh(m);
                    self.g
                        .units
                        .pin_all(&u, &why("depthwise over untracked channels"));
                    u
                }
            };
            self.weight(i, &w, 0, &out, Role::Param);
            out
        } else {
            let reason = why(&format!(
                "grouped transposed convolution (group={g}); channels kept"
            ));
            self.pin_tensor(x, &reason);
            let u = self.g.units.fresh(m);
            self.g.units.pin_all(&u, &reason);
            u
        };
        if let Some(b) = b {
            self.weight(i, &b, 0, &out, Role::Out);
        }
        self.set(
            &y,
            Layout {
                axis: 1,
                units: out,
            },
        );
        Ok(())
    }

    fn gemm(&mut self, i: usize, n: &NodeProto, why: &dyn Fn(&str) -> String) -> Result<()> {
        let a = &n.input[0];
        let y = n.output.first().cloned().unwrap_or_default();
        let b = n.input.get(1).cloned().unwrap_or_default();
        let c = n.input.get(2).filter(|s| !s.is_empty()).cloned();
        let Some(bd) = self.consts.get(&b).cloned().filter(|d| d.len() == 2) else {
            self.pin_inputs(n, &why("B is not a constant matrix"));
            return Ok(());
        };
        if attr_i(n, "transA").unwrap_or(0) != 0 || c.as_ref().is_some_and(|c| !self.is_const(c)) {
            self.pin_inputs(n, &why("transA or a non-constant C"));
            return Ok(());
        }
        let trans_b = attr_i(n, "transB").unwrap_or(0) != 0;
        let (k_axis, n_axis) = if trans_b { (1, 0) } else { (0, 1) };
        if let Some(l) = self.layout(a) {
            if l.axis == 1 && l.units.len() == bd[k_axis] {
                self.weight(i, &b, k_axis, &l.units, Role::In);
            } else {
                self.pin_tensor(a, &why("input features are not the tracked axis"));
            }
        }
        let out = self.g.units.fresh(bd[n_axis]);
        self.weight(i, &b, n_axis, &out, Role::Out);
        if let Some(c) = c {
            let cd = self.consts.get(&c).cloned().unwrap_or_default();
            if cd.last() == Some(&out.len()) && out.len() > 1 {
                self.weight(i, &c, cd.len() - 1, &out, Role::Out);
            } else if cd.len() == 2 && cd[0] > 1 {
                // C broadcast over rows only: [M, 1] keeps no feature axis.
            }
        }
        self.set(
            &y,
            Layout {
                axis: 1,
                units: out,
            },
        );
        Ok(())
    }

    fn matmul(&mut self, i: usize, n: &NodeProto, why: &dyn Fn(&str) -> String) -> Result<()> {
        let (a, b) = (&n.input[0], &n.input[1]);
        let y = n.output.first().cloned().unwrap_or_default();
        let (Some(sa), Some(sb), Some(so)) = (self.shape(a), self.shape(b), self.shape(&y)) else {
            self.pin_inputs(n, &why("shapes unknown"));
            return Ok(());
        };
        let r = so.len();
        if sa.len() < 2 || sb.len() < 2 {
            self.pin_inputs(n, &why("vector operands"));
            return Ok(());
        }
        if self.is_const(a) {
            self.pin_inputs(n, &why("constant left operand"));
            return Ok(());
        }
        if self.is_const(b) && sb.len() == 2 {
            // A linear layer: x [.., K] · W [K, N].
            let la = self.layout(a);
            match la {
                Some(l) if l.axis == sa.len() - 1 => {
                    self.weight(i, b, 0, &l.units, Role::In);
                }
                Some(l) => {
                    // Channels tracked on a batch/row axis pass through; K and N stay fixed.
                    let axis = l.axis + (r - sa.len());
                    self.set(&y, Layout { axis, ..l });
                    return Ok(());
                }
                None => {}
            }
            let out = self.g.units.fresh(sb[1]);
            self.weight(i, b, 1, &out, Role::Out);
            self.set(
                &y,
                Layout {
                    axis: r - 1,
                    units: out,
                },
            );
            return Ok(());
        }
        if self.is_const(b) {
            self.pin_inputs(n, &why("batched constant right operand"));
            return Ok(());
        }
        // Two activations (attention): batch axes tie, the contracted axes tie.
        #[derive(PartialEq)]
        enum Ax {
            Batch(usize),
            Row,
            K,
            Col,
        }
        let role_a = |l: &Layout| {
            if l.axis == sa.len() - 1 {
                Ax::K
            } else if l.axis == sa.len() - 2 {
                Ax::Row
            } else {
                Ax::Batch(l.axis + r - sa.len())
            }
        };
        let role_b = |l: &Layout| {
            if l.axis == sb.len() - 2 {
                Ax::K
            } else if l.axis == sb.len() - 1 {
                Ax::Col
            } else {
                Ax::Batch(l.axis + r - sb.len())
            }
        };
        let la = self.layout(a);
        let lb = self.layout(b);
        let ra = la.as_ref().map(role_a);
        let rb = lb.as_ref().map(role_b);
        let mut out: Option<Layout> = None;
        let pin = |ctx: &mut Self, l: &Option<Layout>, s: &str| {
            if let Some(l) = l {
                ctx.g.units.pin_all(&l.units, &why(s));
            }
        };
        match (&ra, &rb) {
            (Some(Ax::K), Some(Ax::K)) => {
                if let (Some(x), Some(z)) = (&la, &lb) {
                    for (&u, &v) in x.units.iter().zip(&z.units) {
                        self.g.units.union(u, v);
                    }
                }
            }
            (Some(Ax::Batch(p)), Some(Ax::Batch(q))) if p == q => {
                if let (Some(x), Some(z)) = (&la, &lb) {
                    if x.units.len() == z.units.len() {
                        for (&u, &v) in x.units.iter().zip(&z.units) {
                            self.g.units.union(u, v);
                        }
                        out = Some(Layout {
                            axis: *p,
                            units: x.units.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
        if out.is_none() && !matches!((&ra, &rb), (Some(Ax::K), Some(Ax::K))) {
            // Each side on its own.
            for (side, role, other_shape) in [(&la, &ra, &sb), (&lb, &rb, &sa)] {
                let (Some(l), Some(role)) = (side, role) else {
                    continue;
                };
                match role {
                    Ax::K => pin(self, side, "contracted with an untracked axis"),
                    Ax::Batch(p) => {
                        let off = r - other_shape.len();
                        let other_dim = if *p >= off && *p < r - 2 {
                            other_shape[*p - off]
                        } else {
                            1
                        };
                        if other_dim > 1 || out.is_some() {
                            pin(self, side, "batch axis meets untracked data");
                        } else {
                            out = Some(Layout {
                                axis: *p,
                                units: l.units.clone(),
                            });
                        }
                    }
                    Ax::Row | Ax::Col => {
                        if out.is_some() {
                            pin(self, side, "two tracked axes meet");
                        } else {
                            let axis = if *role == Ax::Row { r - 2 } else { r - 1 };
                            out = Some(Layout {
                                axis,
                                units: l.units.clone(),
                            });
                        }
                    }
                }
            }
        }
        if let Some(o) = out {
            self.set(&y, o);
        }
        Ok(())
    }

    fn concat(&mut self, i: usize, n: &NodeProto, why: &dyn Fn(&str) -> String) -> Result<()> {
        let y = n.output.first().cloned().unwrap_or_default();
        let Some(so) = self.shape(&y) else {
            self.pin_inputs(n, &why("output shape unknown"));
            return Ok(());
        };
        let Some(axis) = norm_axis(attr_i(n, "axis").unwrap_or(0), so.len()) else {
            self.pin_inputs(n, &why("bad axis"));
            return Ok(());
        };
        let on_axis = n
            .input
            .iter()
            .any(|t| self.layout(t).is_some_and(|l| l.axis == axis));
        if !on_axis {
            return self.elementwise(i, n, &n.input.clone(), Some(axis));
        }
        // Channel concat: the output's channels are the inputs' channels at offsets.
        let mut units = Vec::new();
        for t in &n.input {
            let dim = self
                .shape(t)
                .and_then(|s| s.get(axis).copied())
                .unwrap_or(0);
            match self.layout(t) {
                Some(l) if l.axis == axis && !self.is_const(t) => units.extend(l.units),
                other => {
                    if let Some(l) = other {
                        self.g
                            .units
                            .pin_all(&l.units, &why("input tracked on another axis"));
                    }
                    let u = self.g.units.fresh(dim);
                    self.g
                        .units
                        .pin_all(&u, &why(&format!("input '{t}' has untracked channels")));
                    units.extend(u);
                }
            }
        }
        self.set(&y, Layout { axis, units });
        Ok(())
    }

    fn split(&mut self, i: usize, n: &NodeProto, why: &dyn Fn(&str) -> String) -> Result<()> {
        let x = &n.input[0];
        let Some(l) = self.layout(x) else {
            return Ok(());
        };
        let rank = self.shape(x).map(|s| s.len()).unwrap_or(0);
        let axis = norm_axis(attr_i(n, "axis").unwrap_or(0), rank).unwrap_or(0);
        if axis != l.axis {
            for o in &n.output {
                self.set(o, l.clone());
            }
            return Ok(());
        }
        let c = l.units.len();
        let sizes: Option<Vec<usize>> = match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(s) => self
                .const_i64(s)
                .map(|v| v.iter().map(|&x| x.max(0) as usize).collect()),
            None => match attr_ints(n, "split") {
                Some(v) => Some(v.iter().map(|&x| x.max(0) as usize).collect()),
                None => {
                    let k = n.output.len().max(1);
                    (c % k == 0).then(|| vec![c / k; k])
                }
            },
        };
        let Some(sizes) =
            sizes.filter(|s| s.iter().sum::<usize>() == c && s.len() == n.output.len())
        else {
            self.pin_tensor(x, &why("split sizes not constant"));
            return Ok(());
        };
        let mut off = 0;
        for (o, &s) in n.output.iter().zip(&sizes) {
            self.set(
                o,
                Layout {
                    axis,
                    units: l.units[off..off + s].to_vec(),
                },
            );
            off += s;
        }
        self.g.fixups.push(Fixup::SplitSizes {
            node: i,
            tensor: x.clone(),
            sizes,
        });
        Ok(())
    }

    fn slice(&mut self, i: usize, n: &NodeProto, why: &dyn Fn(&str) -> String) -> Result<()> {
        let x = &n.input[0];
        let y = n.output.first().cloned().unwrap_or_default();
        let Some(l) = self.layout(x) else {
            return Ok(());
        };
        let rank = self.shape(x).map(|s| s.len()).unwrap_or(0);
        let get = |ctx: &Self, slot: usize, attr: &str| -> Option<Option<Vec<i64>>> {
            if n.input.len() > 1 {
                match n.input.get(slot).filter(|s| !s.is_empty()) {
                    Some(t) => ctx.const_i64(t).map(Some),
                    None => Some(None),
                }
            } else {
                Some(attr_ints(n, attr))
            }
        };
        let (Some(Some(starts)), Some(Some(ends)), Some(axes), Some(steps)) = (
            get(self, 1, "starts"),
            get(self, 2, "ends"),
            get(self, 3, "axes"),
            get(self, 4, ""),
        ) else {
            self.pin_tensor(x, &why("bounds not constant"));
            return Ok(());
        };
        let axes: Vec<i64> = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let k = axes
            .iter()
            .position(|&a| norm_axis(a, rank) == Some(l.axis));
        let Some(k) = k else {
            self.set(&y, l);
            return Ok(());
        };
        let c = l.units.len() as i64;
        let step = steps.as_ref().and_then(|s| s.get(k).copied()).unwrap_or(1);
        let clamp = |v: i64| -> usize {
            let v = if v < 0 { v + c } else { v };
            v.clamp(0, c) as usize
        };
        let (Some(&s), Some(&e)) = (starts.get(k), ends.get(k)) else {
            self.pin_tensor(x, &why("bounds shorter than axes"));
            return Ok(());
        };
        let (s, e) = (clamp(s), clamp(e));
        if step != 1 || s >= e {
            self.pin_tensor(x, &why("strided or empty slice of the tracked axis"));
            return Ok(());
        }
        self.set(
            &y,
            Layout {
                axis: l.axis,
                units: l.units[s..e].to_vec(),
            },
        );
        self.g.fixups.push(Fixup::SliceBounds {
            node: i,
            tensor: x.clone(),
            index: k,
            start: s,
            end: e,
        });
        Ok(())
    }

    fn reshape(&mut self, i: usize, n: &NodeProto, why: &dyn Fn(&str) -> String) -> Result<()> {
        let x = &n.input[0];
        let y = n.output.first().cloned().unwrap_or_default();
        let Some(l) = self.layout(x) else {
            return Ok(());
        };
        let (Some(si), Some(so)) = (self.shape(x), self.shape(&y)) else {
            self.pin_tensor(x, &why("shapes unknown"));
            return Ok(());
        };
        let Some((axis, units)) = reshape_units(&mut self.g.units, &l.units, &si, l.axis, &so)
        else {
            self.pin_tensor(
                x,
                &why(&format!(
                    "reshape {si:?} -> {so:?} mixes the tracked axis {} with others in a way the pruner does not follow",
                    l.axis
                )),
            );
            return Ok(());
        };
        if n.op_type == "Reshape" {
            let shape_t = n.input.get(1).cloned().unwrap_or_default();
            let Some(spec) = self.const_i64(&shape_t).filter(|s| s.len() == so.len()) else {
                self.pin_tensor(x, &why("target shape is not a constant"));
                return Ok(());
            };
            // A 0 entry copies the input's dimension at the same index: fine for the channel
            // entry when it is the same axis, wrong anywhere else that reads the channel axis.
            let zero_reads_channels = spec
                .iter()
                .enumerate()
                .any(|(j, &v)| v == 0 && j == l.axis && j != axis);
            if zero_reads_channels || (spec[axis] == 0 && axis != l.axis) {
                self.pin_tensor(x, &why("target shape copies the channel count with 0"));
                return Ok(());
            }
            if spec[axis] > 0 {
                self.g.fixups.push(Fixup::ReshapeDim {
                    node: i,
                    shape: shape_t,
                    axis,
                    tensor: y.clone(),
                });
            }
        }
        self.set(&y, Layout { axis, units });
        Ok(())
    }
}

/// Follow the tracked axis `t` of shape `si` (units per position) through a reshape to `so`.
/// Returns the output's tracked axis and its units, joining units when one axis splits into
/// several (the outermost part stays tracked: whole attention heads, whole shuffle groups).
pub fn reshape_units(
    uf: &mut super::graph::Units,
    units: &[usize],
    si: &[usize],
    t: usize,
    so: &[usize],
) -> Option<(usize, Vec<usize>)> {
    let pre = prod(&si[..t]);
    let c = si[t];
    let prefix: Vec<usize> = (0..=so.len()).map(|j| prod(&so[..j])).collect();
    // Same axis, perhaps renumbered.
    if let Some(j) = (0..so.len()).find(|&j| prefix[j] == pre && so[j] == c) {
        return Some((j, units.to_vec()));
    }
    // Merged with the following axes (Flatten): position p belongs to channel p / k.
    for j in (0..so.len()).filter(|&j| prefix[j] == pre && so[j] > c && so[j].is_multiple_of(c)) {
        let k = so[j] / c;
        if (t + 1..=si.len()).any(|e| prod(&si[t + 1..e]) == k) {
            return Some((j, (0..so[j]).map(|p| units[p / k]).collect()));
        }
    }
    // Split into several axes: keep the outermost non-trivial one, join its inner blocks.
    for j in (0..so.len())
        .filter(|&j| prefix[j] == pre && so[j] > 1 && so[j] < c && c.is_multiple_of(so[j]))
    {
        if (j + 1..=so.len()).any(|e| prod(&so[j..e]) == c) {
            let b = c / so[j];
            for h in 0..so[j] {
                for k in 1..b {
                    uf.union(units[h * b], units[h * b + k]);
                }
            }
            return Some((j, (0..so[j]).map(|h| units[h * b]).collect()));
        }
    }
    // Merged with the preceding axes: position p belongs to channel p % c.
    for j in 0..so.len() {
        if so[j] <= c || !so[j].is_multiple_of(c) {
            continue;
        }
        let q = so[j] / c;
        if prefix[j] * q == pre && (0..t).any(|s| prod(&si[s..t]) == q) {
            return Some((j, (0..so[j]).map(|p| units[p % c]).collect()));
        }
    }
    None
}
