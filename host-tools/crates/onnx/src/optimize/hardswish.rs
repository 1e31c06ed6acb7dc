//! Write hard-swish as the one op it is: `x·Clip(x+3, 0, 6)/6` (Paddle, older PyTorch and
//! Keras exports, in its several operand orders) and `x·HardSigmoid(x)` with α = 1/6, β = ½
//! become ONNX `HardSwish` (opset 14).
//!
//! Why: tract runs `HardSwish` as one SIMD pass, while the spelled-out form costs three or
//! four passes over the activation (a chain of Add/Max/Min, a Mul by x, a Mul by 1/6) and
//! keeps the producing convolution from fusing anything, since x has two consumers.
//! On PP-OCR these activations are a fifth of tract's run time (docs/results/speed.md).
//!
//! A model below opset 14 is moved to 14 when no op of it changed meaning (see
//! [`crate::opset`]); when that is refused, the Clip forms are rewritten as
//! `Mul(HardSigmoid(x), x)`, valid since opset 6, which tract runs as one chain of binary ops.

use super::PassReport;
use crate::node::{self, attr_f, display_name};
use crate::Result;
use crate::{opset, OnnxModel, TensorData};
use onnx_protobuf::NodeProto;
use std::collections::{HashMap, HashSet};

const ALPHA: f32 = 1.0 / 6.0;

fn near(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

/// A one-element float constant's value.
fn scalar(model: &OnnxModel, name: &str) -> Option<f32> {
    let t = model.constant(name)?.ok()?;
    match &t.data {
        TensorData::F32(v) if v.len() == 1 => Some(v[0]),
        _ => None,
    }
}

/// The graph, indexed for matching.
struct View<'a> {
    model: &'a OnnxModel,
    producers: HashMap<String, usize>,
    consumers: HashMap<String, Vec<(usize, usize)>>,
    outputs: HashSet<String>,
}

impl View<'_> {
    fn node(&self, i: usize) -> &NodeProto {
        &self.model.graph().node[i]
    }

    /// The producer of `t` if it is an `op` node whose output only the pattern reads.
    fn private_producer(&self, t: &str, op: &str) -> Option<usize> {
        let i = *self.producers.get(t)?;
        let ok = self.node(i).op_type == op
            && !self.outputs.contains(t)
            && self.consumers.get(t).map(|c| c.len()) == Some(1);
        ok.then_some(i)
    }

    /// For a binary node with one constant scalar operand: (the other input, the scalar).
    fn with_scalar(&self, i: usize) -> Option<(String, f32)> {
        let n = self.node(i);
        if n.input.len() != 2 {
            return None;
        }
        (0..2).find_map(|k| scalar(self.model, &n.input[1 - k]).map(|v| (n.input[k].clone(), v)))
    }

    /// `t = v/6` written as Div(v, 6) or Mul(v, 1/6): returns v's producer-free name.
    fn over_six(&self, t: &str) -> Option<(String, usize)> {
        if let Some(i) = self.private_producer(t, "Div") {
            let n = self.node(i);
            if n.input.len() == 2 && scalar(self.model, &n.input[1]).is_some_and(|d| near(d, 6.0)) {
                return Some((n.input[0].clone(), i));
            }
        }
        let i = self.private_producer(t, "Mul")?;
        let (v, s) = self.with_scalar(i)?;
        near(s, ALPHA).then_some((v, i))
    }

    /// `t = Clip(x + 3, 0, 6)`: returns x and the two nodes.
    fn relu6_of_x_plus_3(&self, t: &str) -> Option<(String, [usize; 2])> {
        let ci = self.private_producer(t, "Clip")?;
        let clip = self.node(ci);
        let (lo, hi) = if self.model.opset() >= 11 {
            let bound = |k: usize| {
                clip.input
                    .get(k)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| scalar(self.model, s))
            };
            (bound(1)?, bound(2)?)
        } else {
            (attr_f(clip, "min")?, attr_f(clip, "max")?)
        };
        if lo != 0.0 || !near(hi, 6.0) {
            return None;
        }
        let ai = self.private_producer(clip.input.first()?, "Add")?;
        let (x, three) = self.with_scalar(ai)?;
        near(three, 3.0).then_some((x, [ci, ai]))
    }

    /// `y = x·t` in either order: the (x-candidate, t) pairs to try.
    fn products(&self, i: usize) -> Vec<(String, String)> {
        let n = self.node(i);
        if n.op_type != "Mul" || n.input.len() != 2 {
            return Vec::new();
        }
        vec![
            (n.input[0].clone(), n.input[1].clone()),
            (n.input[1].clone(), n.input[0].clone()),
        ]
    }
}

/// A matched hard-swish: its input, the node whose output it replaces, the nodes it removes,
/// and whether it was the HardSigmoid form already.
struct Match {
    x: String,
    last: usize,
    remove: Vec<usize>,
    from_hardsigmoid: bool,
}

fn match_at(v: &View, i: usize) -> Option<Match> {
    // (x·relu6(x+3))/6
    if let Some(m) = (|| {
        let n = v.node(i);
        let product = match n.op_type.as_str() {
            "Div"
                if n.input.len() == 2
                    && scalar(v.model, &n.input[1]).is_some_and(|d| near(d, 6.0)) =>
            {
                n.input[0].clone()
            }
            "Mul" => {
                let (p, s) = v.with_scalar(i)?;
                if !near(s, ALPHA) {
                    return None;
                }
                p
            }
            _ => return None,
        };
        let mi = v.private_producer(&product, "Mul")?;
        v.products(mi).into_iter().find_map(|(x, t)| {
            let (x2, [ci, ai]) = v.relu6_of_x_plus_3(&t)?;
            (x2 == x).then(|| Match {
                x,
                last: i,
                remove: vec![mi, ci, ai],
                from_hardsigmoid: false,
            })
        })
    })() {
        return Some(m);
    }
    // x·(relu6(x+3)/6) and x·HardSigmoid(x)
    v.products(i).into_iter().find_map(|(x, t)| {
        if let Some((r, di)) = v.over_six(&t) {
            let (x2, [ci, ai]) = v.relu6_of_x_plus_3(&r)?;
            return (x2 == x).then(|| Match {
                x: x.clone(),
                last: i,
                remove: vec![di, ci, ai],
                from_hardsigmoid: false,
            });
        }
        let hi = v.private_producer(&t, "HardSigmoid")?;
        let h = v.node(hi);
        let alpha = attr_f(h, "alpha").unwrap_or(0.2);
        let beta = attr_f(h, "beta").unwrap_or(0.5);
        let is_swish = h.input.first() == Some(&x) && near(alpha, ALPHA) && near(beta, 0.5);
        is_swish.then(|| Match {
            x: x.clone(),
            last: i,
            remove: vec![hi],
            from_hardsigmoid: true,
        })
    })
}

/// Every hard-swish in the graph (none overlapping).
fn find_all(model: &OnnxModel) -> Vec<Match> {
    let v = View {
        model,
        producers: model.producers(),
        consumers: model.consumers(),
        outputs: model.graph_output_names(),
    };
    let mut taken: HashSet<usize> = HashSet::new();
    let mut out = Vec::new();
    for i in 0..model.graph().node.len() {
        if taken.contains(&i) {
            continue;
        }
        if let Some(m) = match_at(&v, i) {
            if m.remove.iter().any(|r| taken.contains(r)) {
                continue;
            }
            taken.insert(m.last);
            taken.extend(m.remove.iter().copied());
            out.push(m);
        }
    }
    out
}

/// Rewrite every hard-swish. `ranks` (from type inference, when available) lets a model with
/// Softmax move to opset 14.
pub fn fuse_hardswish(
    model: &mut OnnxModel,
    ranks: Option<&HashMap<String, usize>>,
) -> Result<PassReport> {
    let mut report = PassReport::new("hard-swish written as HardSwish");
    let matches = find_all(model);
    if matches.is_empty() {
        return Ok(report);
    }
    let before = model.opset();
    let native = match opset::can_move_to(model, ranks, 14) {
        Ok(()) => {
            if before < 14 {
                opset::set(model, 14);
                report.note(format!("opset {before} → 14 for HardSwish"));
            }
            true
        }
        Err(why) => {
            report.note(format!(
                "opset stays {before} ({why}): hard-swish written as Mul(HardSigmoid(x), x)"
            ));
            false
        }
    };
    let mut remove: Vec<usize> = Vec::new();
    let mut replacements: Vec<(usize, Vec<NodeProto>)> = Vec::new();
    for m in &matches {
        if m.from_hardsigmoid && !native {
            continue;
        }
        let last = model.graph().node[m.last].clone();
        let y = last.output[0].clone();
        let name = display_name(&last);
        let nodes = if native {
            vec![node::make("HardSwish", &[&m.x], &[&y], &name, vec![])]
        } else {
            let h = model.fresh_name(&format!("{name}.hardsigmoid"));
            vec![
                node::make(
                    "HardSigmoid",
                    &[&m.x],
                    &[&h],
                    &h,
                    vec![node::float("alpha", ALPHA), node::float("beta", 0.5)],
                ),
                // The running value first: tract chains binary ops through input 0.
                node::make("Mul", &[&h, &m.x], &[&y], &name, vec![]),
            ]
        };
        report.note(format!(
            "{name} ({} nodes → {})",
            m.remove.len() + 1,
            nodes.len()
        ));
        replacements.push((m.last, nodes));
        remove.extend(m.remove.iter().copied());
    }
    // Replace from the back so earlier indices stay valid, then drop the matched inner nodes.
    let mut edits: Vec<(usize, Option<Vec<NodeProto>>)> = replacements
        .into_iter()
        .map(|(i, n)| (i, Some(n)))
        .chain(remove.into_iter().map(|i| (i, None)))
        .collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (i, nodes) in edits {
        match nodes {
            Some(n) => model.replace_node(i, n),
            None => {
                model.graph_mut().node.remove(i);
            }
        }
    }
    model.topo_sort()?;
    Ok(report)
}
