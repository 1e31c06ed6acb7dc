//! Structured pruning of ONNX graphs with channel dependency groups (docs/methods/pruning.md).
//!
//! ```text
//!  model ─ prepare ─ analyze (rules) ─ DepGraph ─ Groups ─ score ─ select ─ Plan ─ apply ─ pruned
//! ```
//! - `prepare`: the canonical form the rules read (constants as initializers, ...).
//! - `rules` + `graph`: per-op channel propagation into a union-find of channel units.
//! - `groups`: classes gathered by the members they touch; printable (`render_groups`).
//! - `importance`, `select`: criteria and global/per-group selection.
//! - `rewrite`: slicing every member and fixing attributes/shape constants.
//! - `report`, `calib`: measured latency, fidelity, per-layer numbers; real inputs.
//! - `recovery`: fine-tuning / distillation of the pruned model with the training engine.
//! - `taylor`: activation gradients for the `taylor` criterion, from the training engine.

pub mod graph;
pub mod groups;
pub mod importance;
pub mod job;
pub mod prepare;
pub mod recovery;
pub mod report;
pub mod rewrite;
pub mod rules;
pub mod select;
pub mod taylor;
pub mod tracker;

pub use groups::{render_groups, summary, Group, Groups, GroupsSummary};
pub use importance::{Criterion, GradientSource};
pub use recovery::{recover, RecoveryOptions, RecoveryReport};
pub use select::{Plan, SelectOptions};

use crate::{Error, Result};
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use edgeslim_runtime::InputShape;
use std::collections::HashSet;

/// A model prepared for pruning and its channel groups.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub model: OnnxModel,
    pub groups: Groups,
    pub input_shapes: Vec<InputShape>,
    /// What `prepare` changed (all output-preserving).
    pub notes: Vec<String>,
}

/// Prepare `model` and build its dependency groups at the given input shapes (declared
/// shapes where none are given; a symbolic batch runs as 1).
pub fn analyze(model: &OnnxModel, input_shapes: &[InputShape]) -> Result<Analysis> {
    analyze_with(model, input_shapes, rules::RuleOptions::default())
}

/// [`analyze`] with the approximate choices of [`rules::RuleOptions`].
pub fn analyze_with(
    model: &OnnxModel,
    input_shapes: &[InputShape],
    rule_opts: rules::RuleOptions,
) -> Result<Analysis> {
    let mut m = model.clone();
    let (shapes, mut notes) = prepare::prepare(&mut m, input_shapes)?;
    if rule_opts.prune_layernorm {
        notes.push(
            "LayerNorm pruning is on: channels a LayerNorm normalises over are pruned too; not exact \
             (fewer channels give new statistics), fine-tune to recover"
                .into(),
        );
    }
    let graph = rules::analyze_with(&m, shapes, rule_opts)?;
    Ok(Analysis {
        model: m,
        groups: Groups::build(graph),
        input_shapes: input_shapes.to_vec(),
        notes,
    })
}

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub ratio: f64,
    pub criterion: Criterion,
    pub global: bool,
    pub round_to: usize,
    pub min_channels: usize,
    pub exclude: Option<String>,
    pub input_shapes: Vec<InputShape>,
    /// See [`rules::RuleOptions::prune_layernorm`].
    pub prune_layernorm: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            ratio: 0.5,
            criterion: Criterion::L1,
            global: false,
            round_to: 1,
            min_channels: 1,
            exclude: None,
            input_shapes: Vec::new(),
            prune_layernorm: false,
        }
    }
}

/// The pruned model and how it came about.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub model: OnnxModel,
    pub analysis: Analysis,
    pub plan: Plan,
    /// Warnings and fallbacks, one line each.
    pub notes: Vec<String>,
}

/// Analyse, score, select and rewrite. `calib` feeds the `activation` criterion; `grads`
/// the `taylor` criterion (from the training engine).
pub fn prune(
    model: &OnnxModel,
    opts: &PruneOptions,
    calib: &[Vec<TractTensor>],
    grads: Option<&mut dyn GradientSource>,
) -> Result<Outcome> {
    select::check_ratio(opts.ratio)?;
    let exclude = opts
        .exclude
        .as_deref()
        .map(|p| regex::Regex::new(p).map_err(|e| Error::option_value("exclude", p, e.to_string())))
        .transpose()?;
    let rule_opts = rules::RuleOptions {
        prune_layernorm: opts.prune_layernorm,
    };
    let analysis = analyze_with(model, &opts.input_shapes, rule_opts)?;
    let groups = &analysis.groups;
    if groups.prunable().next().is_none() {
        return Err(Error::Invalid(format!(
            "{}: nothing to prune: all {} channel groups are kept whole (graph inputs/outputs, or patterns the pruner does not follow); `edgeslim analyze --groups` lists why",
            model.label(),
            groups.groups.len()
        )));
    }
    let scores = importance::score(
        &analysis.model,
        groups,
        opts.criterion,
        calib,
        &opts.input_shapes,
        grads,
    )?;
    let sel = SelectOptions {
        ratio: opts.ratio,
        global: opts.global,
        round_to: opts.round_to.max(1),
        min_channels: opts.min_channels.max(1),
        exclude,
    };
    let plan = select::select(groups, &scores.by_class, &sel)?;
    let pruned = apply(&analysis, &plan)?;
    let mut notes = scores.notes;
    notes.extend(plan.notes.iter().cloned());
    Ok(Outcome {
        model: pruned,
        analysis,
        plan,
        notes,
    })
}

/// Rewrite the analysed model with `plan` and check that the result still types with the
/// same graph output shapes.
pub fn apply(analysis: &Analysis, plan: &Plan) -> Result<OnnxModel> {
    let pruned = rewrite::apply(&analysis.model, &analysis.groups, plan)?;
    let shapes = prepare::infer_shapes(&pruned, &analysis.input_shapes).map_err(|e| {
        Error::Graph(format!(
            "the pruned graph no longer types (a pruner bug): {e}"
        ))
    })?;
    for o in &pruned.graph().output {
        let before = analysis.groups.graph.shapes.get(&o.name);
        let after = shapes.get(&o.name);
        if before != after {
            return Err(Error::Graph(format!(
                "output '{}' changed shape {before:?} -> {after:?} (a pruner bug)",
                o.name
            )));
        }
    }
    Ok(pruned)
}

/// Zero the weights through which the classes of `plan` reach their consumers (every `in`
/// slice), so that removing them changes nothing: the basis of the exactness tests.
pub fn zero_consumers(analysis: &Analysis, plan: &Plan) -> Result<OnnxModel> {
    let g = &analysis.groups.graph;
    let removed: HashSet<usize> = plan.removed.values().flatten().copied().collect();
    let mut m = analysis.model.clone();
    for w in g.weights.iter().filter(|w| w.role == graph::Role::In) {
        let hit: Vec<usize> = w
            .units
            .iter()
            .enumerate()
            .filter(|(_, &u)| removed.contains(&g.units.find(u)))
            .map(|(p, _)| p)
            .collect();
        if hit.is_empty() {
            continue;
        }
        let t = m
            .constant(&w.tensor)
            .ok_or_else(|| Error::tensor(&w.tensor, "expected a constant"))??;
        let mut v = t.to_f32_vec();
        let c = t.dims[w.axis];
        let inner: usize = t.dims[w.axis + 1..].iter().product();
        for (i, x) in v.iter_mut().enumerate() {
            if hit.contains(&((i / inner) % c)) {
                *x = 0.0;
            }
        }
        m.set_initializer(&w.tensor, &edgeslim_onnx::Tensor::f32(t.dims.clone(), v)?);
    }
    Ok(m)
}
