//! Importance of every channel class, aggregated over all members of its group.
//!
//! - `l1`/`l2`: magnitude of every weight slice the class owns: output rows, the next layers'
//!   input columns, per-channel parameters (Σ|w|, or √Σw²).
//! - `bn`: |γ| of the BatchNorms in the group (network slimming). We score on the model as
//!   given, before any folding, so γ is read from the BatchNormalization node itself; groups
//!   without a BatchNorm (already folded, or none) fall back to `l2`, and the outcome says how
//!   many did.
//! - `activation`: mean |a| over calibration inputs of the activations the group feeds into
//!   its consumers, run with tract exposing those tensors as extra outputs.
//! - `taylor`: |Σ a·∂L/∂a| per channel, averaged over samples; the gradients come from a
//!   [`GradientSource`] (the training engine), which this module only consumes.

use super::graph::Role;
use super::groups::Groups;
use crate::{Error, Result};
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use ndarray::{ArrayD, Axis};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Criterion {
    L1,
    L2,
    Bn,
    Taylor,
    Activation,
}

impl Criterion {
    pub fn as_str(self) -> &'static str {
        match self {
            Criterion::L1 => "l1",
            Criterion::L2 => "l2",
            Criterion::Bn => "bn",
            Criterion::Taylor => "taylor",
            Criterion::Activation => "activation",
        }
    }
}

/// Activations and their gradients for a first-order Taylor score. The training engine
/// implements this (`train::engine`): run the graph forward and backward on calibration
/// data and return, per sample batch, each requested tensor with ∂L/∂tensor.
/// Per tensor name: (activation, ∂L/∂activation), for one batch.
pub type ActivationsAndGradients = HashMap<String, (ArrayD<f32>, ArrayD<f32>)>;

pub trait GradientSource {
    fn activations_and_gradients(
        &mut self,
        model: &OnnxModel,
        tensors: &[String],
    ) -> Result<Vec<ActivationsAndGradients>>;
}

/// Scores per class root, plus notes (fallbacks taken).
pub struct Scores {
    pub by_class: HashMap<usize, f64>,
    pub notes: Vec<String>,
}

pub fn score(
    model: &OnnxModel,
    groups: &Groups,
    criterion: Criterion,
    calib: &[Vec<TractTensor>],
    input_shapes: &[edgeslim_runtime::InputShape],
    grads: Option<&mut dyn GradientSource>,
) -> Result<Scores> {
    let mut notes = Vec::new();
    let by_class = match criterion {
        Criterion::L1 => magnitude(model, groups, false, None)?,
        Criterion::L2 => magnitude(model, groups, true, None)?,
        Criterion::Bn => {
            let (s, fallback) = bn_scale(model, groups)?;
            if fallback > 0 {
                notes.push(format!(
                    "{fallback} prunable groups hold no BatchNormalization (folded or absent): scored by l2"
                ));
            }
            s
        }
        Criterion::Activation => {
            if calib.is_empty() {
                return Err(Error::option(
                    "calib",
                    "the activation criterion needs calibration inputs",
                ));
            }
            activation(model, groups, calib, input_shapes)?
        }
        Criterion::Taylor => {
            let Some(src) = grads else {
                return Err(Error::option(
                    "calib",
                    "the taylor criterion needs gradients of a task loss: labelled calibration data (mnist, ppocr-text)",
                ));
            };
            taylor(model, groups, src)?
        }
    };
    Ok(Scores { by_class, notes })
}

/// Per-position sums of |w| or w² over the hyperplane at each index of `axis`.
fn per_position(values: &[f32], dims: &[usize], axis: usize, squared: bool) -> Vec<f64> {
    let c = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let mut out = vec![0.0f64; c];
    for (i, &v) in values.iter().enumerate() {
        let p = (i / inner) % c;
        out[p] += if squared {
            (v as f64) * (v as f64)
        } else {
            (v as f64).abs()
        };
    }
    out
}

fn magnitude(
    model: &OnnxModel,
    groups: &Groups,
    squared: bool,
    only: Option<&HashSet<usize>>,
) -> Result<HashMap<usize, f64>> {
    let g = &groups.graph;
    let mut acc: HashMap<usize, f64> = HashMap::new();
    let mut cache: HashMap<&str, edgeslim_onnx::Tensor> = HashMap::new();
    for w in &g.weights {
        let root_of = |u: usize| g.units.find(u);
        if let Some(only) = only {
            if !w
                .units
                .iter()
                .any(|&u| only.contains(&groups.class_group[&root_of(u)]))
            {
                continue;
            }
        }
        if !cache.contains_key(w.tensor.as_str()) {
            let t = model
                .constant(&w.tensor)
                .ok_or_else(|| Error::tensor(&w.tensor, "expected a constant weight"))??;
            cache.insert(w.tensor.as_str(), t);
        }
        let t = &cache[w.tensor.as_str()];
        if t.dims.get(w.axis) != Some(&w.units.len()) {
            return Err(Error::tensor(
                &w.tensor,
                format!(
                    "dims {:?} do not have {} channels on axis {}",
                    t.dims,
                    w.units.len(),
                    w.axis
                ),
            ));
        }
        let pp = per_position(&t.to_f32_vec(), &t.dims, w.axis, squared);
        for (p, v) in pp.into_iter().enumerate() {
            *acc.entry(root_of(w.units[p])).or_default() += v;
        }
    }
    if squared {
        for v in acc.values_mut() {
            *v = v.sqrt();
        }
    }
    Ok(acc)
}

fn bn_scale(model: &OnnxModel, groups: &Groups) -> Result<(HashMap<usize, f64>, usize)> {
    let g = &groups.graph;
    let mut acc: HashMap<usize, f64> = HashMap::new();
    let mut with_bn: HashSet<usize> = HashSet::new();
    for w in g.weights.iter().filter(|w| w.role == Role::Param) {
        let node = &model.graph().node[w.node];
        if node.op_type != "BatchNormalization" || node.input.get(1) != Some(&w.tensor) {
            continue;
        }
        let gamma = model
            .constant(&w.tensor)
            .ok_or_else(|| Error::tensor(&w.tensor, "BatchNorm scale is not constant"))??
            .to_f32_vec();
        for (p, &u) in w.units.iter().enumerate() {
            let r = g.units.find(u);
            with_bn.insert(groups.class_group[&r]);
            *acc.entry(r).or_default() += gamma[p].abs() as f64;
        }
    }
    let missing: HashSet<usize> = groups
        .prunable()
        .map(|x| x.id)
        .filter(|id| !with_bn.contains(id))
        .collect();
    if !missing.is_empty() {
        let l2 = magnitude(model, groups, true, Some(&missing))?;
        for (r, v) in l2 {
            if missing.contains(&groups.class_group[&r]) {
                acc.insert(r, v);
            }
        }
    }
    Ok((acc, missing.len()))
}

/// The activations a criterion looks at: what each group feeds into its consumers (the data
/// input of its `in` members), else the outputs of its producing layers.
fn observed_tensors(model: &OnnxModel, groups: &Groups) -> Vec<String> {
    let g = &groups.graph;
    let mut set: Vec<String> = Vec::new();
    let push = |t: &str, set: &mut Vec<String>| {
        if g.layouts.contains_key(t) && !set.iter().any(|s| s == t) {
            set.push(t.to_string());
        }
    };
    for w in &g.weights {
        let n = &model.graph().node[w.node];
        match w.role {
            Role::In => push(&n.input[0], &mut set),
            Role::Out => push(&n.output[0], &mut set),
            Role::Param => {}
        }
    }
    set
}

/// Mean |a| per position of the tracked axis (over every other axis).
fn channel_means(a: &ArrayD<f32>, axis: usize, f: impl Fn(f32) -> f64) -> Vec<f64> {
    let c = a.shape()[axis];
    let mut out = vec![0.0; c];
    for (p, lane) in a.axis_iter(Axis(axis)).enumerate() {
        let n = lane.len().max(1) as f64;
        out[p] = lane.iter().map(|&v| f(v)).sum::<f64>() / n;
    }
    out
}

fn accumulate(
    groups: &Groups,
    tensor: &str,
    per_pos: &[f64],
    acc: &mut HashMap<usize, (f64, usize)>,
) {
    let g = &groups.graph;
    if let Some(l) = g.layouts.get(tensor) {
        for (p, &u) in l.units.iter().enumerate() {
            let e = acc.entry(g.units.find(u)).or_default();
            e.0 += per_pos.get(p).copied().unwrap_or(0.0);
            e.1 += 1;
        }
    }
}

fn activation(
    model: &OnnxModel,
    groups: &Groups,
    calib: &[Vec<TractTensor>],
    input_shapes: &[edgeslim_runtime::InputShape],
) -> Result<HashMap<usize, f64>> {
    let tensors = observed_tensors(model, groups);
    let mut acc: HashMap<usize, (f64, usize)> = HashMap::new();
    // Reduce each activation as it comes: a detector's feature maps do not all fit in memory.
    edgeslim_measure::runner::run_with_outputs(
        model,
        &tensors,
        calib,
        input_shapes,
        &mut |name, a| {
            if let Some(l) = groups.graph.layouts.get(name) {
                let pp = channel_means(a, l.axis, |v| v.abs() as f64);
                accumulate(groups, name, &pp, &mut acc);
            }
        },
    )?;
    Ok(acc
        .into_iter()
        .map(|(k, (s, n))| (k, s / n.max(1) as f64))
        .collect())
}

fn taylor(
    model: &OnnxModel,
    groups: &Groups,
    src: &mut dyn GradientSource,
) -> Result<HashMap<usize, f64>> {
    let tensors = observed_tensors(model, groups);
    let batches = src.activations_and_gradients(model, &tensors)?;
    let mut acc: HashMap<usize, (f64, usize)> = HashMap::new();
    for batch in &batches {
        for (name, (a, da)) in batch {
            let Some(l) = groups.graph.layouts.get(name) else {
                continue;
            };
            if a.shape() != da.shape() {
                return Err(Error::tensor(name, "activation and gradient shapes differ"));
            }
            let prod = a * da;
            // |Σ a·g| over each channel's positions (first-order change of the loss when the
            // channel is removed), as in Molchanov et al.
            let c = prod.shape()[l.axis];
            let mut pp = vec![0.0; c];
            for (p, lane) in prod.axis_iter(Axis(l.axis)).enumerate() {
                pp[p] = lane.iter().map(|&v| v as f64).sum::<f64>().abs();
            }
            accumulate(groups, name, &pp, &mut acc);
        }
    }
    Ok(acc
        .into_iter()
        .map(|(k, (s, n))| (k, s / n.max(1) as f64))
        .collect())
}
