//! What pruning bought and cost, measured: per layer channels, parameters and MACs before and
//! after, tract latency of both models timed side by side in one run, and fidelity of the
//! pruned model's outputs against the original on the same (real) inputs.

use crate::Result;
use edgeslim_measure::runner::run_outputs;
use edgeslim_onnx::inspect::inspect;
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::input::random_inputs;
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use edgeslim_runtime::{InputShape, LoadOptions, LoadedModel};
use ndarray::ArrayD;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub name: String,
    pub op: String,
    pub channels_before: Option<usize>,
    pub channels_after: Option<usize>,
    pub params_before: u64,
    pub params_after: u64,
    pub macs_before: Option<u64>,
    pub macs_after: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub engine: String,
    pub threads: usize,
    pub runs: usize,
    pub before_ms: f64,
    pub after_ms: f64,
    pub before_p90_ms: f64,
    pub after_p90_ms: f64,
    /// before / after of the medians.
    pub speedup: f64,
    pub how: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputFidelity {
    pub name: String,
    pub cosine_mean: f64,
    pub cosine_min: f64,
    pub max_abs_diff: f64,
    /// Rows whose arg-max agrees (outputs shaped [N, classes]).
    pub top1_agreement: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fidelity {
    pub samples: usize,
    pub inputs: String,
    pub outputs: Vec<OutputFidelity>,
    /// Top-1 accuracy of the first output against the data's labels (labelled data sets
    /// such as `mnist`), before and after pruning.
    pub accuracy_before: Option<f64>,
    pub accuracy_after: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub params_before: u64,
    pub params_after: u64,
    pub macs_before: u64,
    pub macs_after: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub id: usize,
    pub channels_before: usize,
    pub channels_after: usize,
    pub width: usize,
    pub producers: Vec<String>,
    pub kept_because: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub tool: String,
    pub model: String,
    pub output: Option<String>,
    pub ratio: f64,
    pub criterion: String,
    pub global: bool,
    pub round_to: usize,
    pub min_channels: usize,
    pub exclude: Option<String>,
    pub input_shapes: Vec<String>,
    pub groups_total: usize,
    pub groups_prunable: usize,
    pub groups_pruned: usize,
    pub channels_removed: usize,
    pub totals: Totals,
    pub layers: Vec<LayerRow>,
    pub groups: Vec<GroupRow>,
    pub latency: Option<Latency>,
    pub fidelity: Option<Fidelity>,
    /// Recovery fine-tuning, when `--finetune` ran (fidelity is then of the fine-tuned model).
    pub recovery: Option<super::recovery::RecoveryReport>,
    /// The exactness check, when `--verify-exact` ran (before any fine-tuning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exactness: Option<Exactness>,
    pub notes: Vec<String>,
}

/// The pruned model against the original with the removed channels' consumer weights
/// zeroed: the two compute the same function when the dependency groups are right, so any
/// difference beyond float rounding is a bug in the analysis or the rewrite.
#[derive(Debug, Clone, Serialize)]
pub struct Exactness {
    pub engine: String,
    pub inputs: String,
    pub samples: usize,
    /// Largest |pruned - zeroed reference| over every output element of every sample.
    pub max_abs_diff: f64,
    /// Largest |zeroed reference| over the same elements.
    pub max_abs_output: f64,
    /// max_abs_diff / max_abs_output.
    pub relative: f64,
    pub tolerance: f64,
}

impl Exactness {
    pub fn passed(&self) -> bool {
        self.relative <= self.tolerance
    }
}

/// Relative tolerance of the exactness check: tract sums a pruned layer's products in a
/// different order (fewer, differently blocked terms), which moves the last bits only.
pub const EXACTNESS_TOLERANCE: f64 = 1e-4;

/// At most this many inputs for the exactness check (two full runs each).
const EXACTNESS_SAMPLES: usize = 8;

/// Run the exactness check of an outcome on `inputs` (the first 8) or, without any, on 8
/// seeded random inputs.
pub fn verify_exact(
    outcome: &super::Outcome,
    inputs: &[Vec<TractTensor>],
    input_shapes: &[InputShape],
) -> Result<Exactness> {
    let reference = super::zero_consumers(&outcome.analysis, &outcome.plan)?;
    let (inputs, description) = if inputs.is_empty() {
        (
            seeded_random_inputs(&reference, input_shapes, EXACTNESS_SAMPLES)?,
            format!("{EXACTNESS_SAMPLES} seeded random inputs"),
        )
    } else {
        let n = inputs.len().min(EXACTNESS_SAMPLES);
        (inputs[..n].to_vec(), format!("{n} calibration inputs"))
    };
    let want = run_outputs(&reference, &inputs, input_shapes)?;
    let got = run_outputs(&outcome.model, &inputs, input_shapes)?;
    let (mut diff, mut scale) = (0.0f64, 0.0f64);
    for (w, g) in want.iter().zip(&got) {
        for (x, y) in w.iter().zip(g) {
            if x.shape() != y.shape() {
                return Err(crate::Error::Other(format!(
                    "exactness check: an output of shape {:?} became {:?}",
                    x.shape(),
                    y.shape()
                )));
            }
            for (&p, &q) in x.iter().zip(y.iter()) {
                // A NaN on either side is a difference, never silently skipped.
                let d = (p as f64 - q as f64).abs();
                diff = if d.is_nan() {
                    f64::INFINITY
                } else {
                    diff.max(d)
                };
                scale = scale.max((p as f64).abs());
            }
        }
    }
    Ok(Exactness {
        engine: "tract".into(),
        inputs: description,
        samples: inputs.len(),
        max_abs_diff: diff,
        max_abs_output: scale,
        relative: diff / scale.max(1e-30),
        tolerance: EXACTNESS_TOLERANCE,
    })
}

/// `n` seeded random inputs of the shapes tract infers for `model` (with `input_shapes`).
fn seeded_random_inputs(
    model: &OnnxModel,
    input_shapes: &[InputShape],
    n: usize,
) -> Result<Vec<Vec<TractTensor>>> {
    let specs = LoadedModel::from_bytes(
        model.to_bytes()?,
        &PathBuf::from(model.label()),
        None,
        &LoadOptions {
            input_shapes: input_shapes.to_vec(),
            optimize: false,
            ignore_declared_facts: true,
            ..LoadOptions::default()
        },
    )?
    .inputs;
    Ok((0..n as u64).map(|s| random_inputs(&specs, s)).collect())
}

fn channels_of(op: &str, shape: Option<&Vec<usize>>) -> Option<usize> {
    let s = shape?;
    match op {
        "Conv" | "ConvTranspose" => s.get(1).copied(),
        "Gemm" | "MatMul" => s.last().copied(),
        _ => None,
    }
}

/// Per layer rows (layers with weights or MACs) and totals.
pub fn layer_rows(
    before: &OnnxModel,
    after: &OnnxModel,
    input_shapes: &[InputShape],
) -> Result<(Vec<LayerRow>, Totals)> {
    let a = inspect(before, input_shapes)?;
    let b = inspect(after, input_shapes)?;
    let by_name: HashMap<&str, &edgeslim_onnx::inspect::NodeRow> =
        b.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut rows = Vec::new();
    for n in &a.nodes {
        if n.params == 0 && n.macs.unwrap_or(0) == 0 {
            continue;
        }
        let m = by_name.get(n.name.as_str());
        rows.push(LayerRow {
            name: n.name.clone(),
            op: n.op.clone(),
            channels_before: channels_of(&n.op, n.output_shape.as_ref()),
            channels_after: m.and_then(|m| channels_of(&m.op, m.output_shape.as_ref())),
            params_before: n.params,
            params_after: m.map(|m| m.params).unwrap_or(0),
            macs_before: n.macs,
            macs_after: m.and_then(|m| m.macs),
        });
    }
    Ok((
        rows,
        Totals {
            params_before: a.total_params,
            params_after: b.total_params,
            macs_before: a.total_macs,
            macs_after: b.total_macs,
        },
    ))
}

/// tract latency of both models, measured side by side by the harness every method and
/// `edgeslim bench A B` use (`edgeslim_measure::facts`): one process, warm-ups, timed runs
/// interleaved in blocks, the runtime's loop and percentiles.
pub fn measure_latency(
    before: &OnnxModel,
    after: &OnnxModel,
    input_shapes: &[InputShape],
    runs: usize,
    threads: usize,
) -> Result<Latency> {
    let [b, a] = edgeslim_measure::facts::bench_models_side_by_side(
        before,
        after,
        input_shapes,
        runs,
        threads,
    )?;
    let (lb, la) = (&b.latency, &a.latency);
    Ok(Latency {
        engine: "tract".into(),
        threads,
        runs: lb.runs,
        before_ms: lb.p50_ms,
        after_ms: la.p50_ms,
        before_p90_ms: lb.p90_ms,
        after_p90_ms: la.p90_ms,
        speedup: lb.p50_ms / la.p50_ms,
        how: format!(
            "p50 and p90 of the edgeslim bench harness: both models in one process, {} warm-ups, \
             timed runs interleaved in blocks of {}, the runtime's loop",
            b.latency.warmup,
            edgeslim_measure::bench::BLOCK_RUNS
        ),
    })
}

/// Cosine of two outputs, by the one definition every report uses (`edgeslim_measure::fidelity`).
fn cosine(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    let flat = |x: &ArrayD<f32>| x.iter().copied().collect::<Vec<f32>>();
    edgeslim_measure::fidelity::cosine(&flat(a), &flat(b))
}

/// The arg-max of every row (last axis) of an output.
fn argmax_rows(a: &ArrayD<f32>) -> Vec<usize> {
    let c = *a.shape().last().unwrap_or(&1);
    let flat: Vec<f32> = a.iter().copied().collect();
    flat.chunks(c.max(1))
        .map(edgeslim_measure::fidelity::argmax)
        .collect()
}

/// Top-1 accuracy of output 0 (one row per sample) against `labels`.
fn accuracy(outputs: &[Vec<ArrayD<f32>>], labels: &[usize]) -> Option<f64> {
    if outputs.len() != labels.len() || labels.is_empty() {
        return None;
    }
    let mut hit = 0;
    for (o, &l) in outputs.iter().zip(labels) {
        let rows = argmax_rows(o.first()?);
        if rows.len() != 1 {
            return None;
        }
        hit += usize::from(rows[0] == l);
    }
    Some(hit as f64 / labels.len() as f64)
}

/// Output agreement of `after` with `before` on `inputs` (and accuracy of both when the
/// inputs come with labels).
pub fn fidelity(
    before: &OnnxModel,
    after: &OnnxModel,
    inputs: &[Vec<TractTensor>],
    labels: Option<&[usize]>,
    input_shapes: &[InputShape],
    description: &str,
) -> Result<Fidelity> {
    let a = run_outputs(before, inputs, input_shapes)?;
    let b = run_outputs(after, inputs, input_shapes)?;
    let names: Vec<String> = before
        .graph()
        .output
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let mut outputs = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let (mut cs, mut maxd, mut agree, mut rows) = (Vec::new(), 0.0f64, 0usize, 0usize);
        let mut classifier = false;
        for (sa, sb) in a.iter().zip(&b) {
            let (Some(x), Some(y)) = (sa.get(k), sb.get(k)) else {
                continue;
            };
            cs.push(cosine(x, y));
            for (&p, &q) in x.iter().zip(y.iter()) {
                maxd = maxd.max((p as f64 - q as f64).abs());
            }
            if x.ndim() == 2 && x.shape()[1] > 1 {
                classifier = true;
                let (ra, rb) = (argmax_rows(x), argmax_rows(y));
                agree += ra.iter().zip(&rb).filter(|(p, q)| p == q).count();
                rows += ra.len();
            }
        }
        outputs.push(OutputFidelity {
            name: name.clone(),
            cosine_mean: cs.iter().sum::<f64>() / cs.len().max(1) as f64,
            cosine_min: cs.iter().copied().fold(f64::INFINITY, f64::min),
            max_abs_diff: maxd,
            top1_agreement: classifier.then(|| agree as f64 / rows.max(1) as f64),
        });
    }
    Ok(Fidelity {
        samples: inputs.len(),
        inputs: description.to_string(),
        outputs,
        accuracy_before: labels.and_then(|l| accuracy(&a, l)),
        accuracy_after: labels.and_then(|l| accuracy(&b, l)),
    })
}

/// How to measure a pruning outcome.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    /// Timed runs per model (0: skip latency).
    pub runs: usize,
    pub threads: usize,
    /// Inputs for fidelity (real images preferred); empty: seeded random inputs.
    pub inputs: Vec<Vec<TractTensor>>,
    /// Class labels of `inputs`, when the data set has them.
    pub labels: Option<Vec<usize>>,
    pub inputs_description: String,
}

/// Assemble the full report of an outcome: layers, groups, latency, fidelity.
pub fn build(
    outcome: &super::Outcome,
    opts: &super::PruneOptions,
    output: Option<&str>,
    measure: &MeasureOptions,
    progress: &dyn Fn(&str),
) -> Result<PruneReport> {
    let a = &outcome.analysis;
    let before = &a.model;
    let after = &outcome.model;
    let shapes = &opts.input_shapes;
    progress("counting parameters and MACs");
    let (layers, totals) = layer_rows(before, after, shapes)?;
    let latency = if measure.runs > 0 {
        progress("timing both models with tract");
        Some(measure_latency(
            before,
            after,
            shapes,
            measure.runs,
            measure.threads,
        )?)
    } else {
        None
    };
    progress("comparing outputs");
    let (inputs, desc, labels) = if measure.inputs.is_empty() {
        (
            seeded_random_inputs(before, shapes, 8)?,
            "8 seeded random inputs (no --calib given)".to_string(),
            None,
        )
    } else {
        (
            measure.inputs.clone(),
            measure.inputs_description.clone(),
            measure.labels.as_deref(),
        )
    };
    let fid = fidelity(before, after, &inputs, labels, shapes, &desc)?;
    let groups = a
        .groups
        .groups
        .iter()
        .map(|g| GroupRow {
            id: g.id,
            channels_before: g.channels,
            channels_after: g.channels - outcome.plan.removed.get(&g.id).map_or(0, |v| v.len()),
            width: g.width,
            producers: g
                .members
                .iter()
                .filter(|m| m.role == super::graph::Role::Out)
                .map(|m| m.node.clone())
                .collect(),
            kept_because: g.excluded.clone(),
        })
        .collect();
    let mut notes = a.notes.clone();
    notes.extend(outcome.notes.iter().cloned());
    Ok(PruneReport {
        tool: format!("edgeslim {}", env!("CARGO_PKG_VERSION")),
        model: outcome
            .analysis
            .model
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| before.label()),
        output: output.map(str::to_string),
        ratio: opts.ratio,
        criterion: opts.criterion.as_str().into(),
        global: opts.global,
        round_to: opts.round_to,
        min_channels: opts.min_channels,
        exclude: opts.exclude.clone(),
        input_shapes: shapes
            .iter()
            .map(|s| {
                let d: Vec<String> = s.dims.iter().map(|x| x.to_string()).collect();
                format!("{}={}", s.name.clone().unwrap_or_default(), d.join(","))
            })
            .collect(),
        groups_total: a.groups.groups.len(),
        groups_prunable: a.groups.prunable().count(),
        groups_pruned: outcome.plan.removed.len(),
        channels_removed: outcome.plan.removed_count(),
        totals,
        layers,
        groups,
        latency,
        fidelity: Some(fid),
        recovery: None,
        exactness: None,
        notes,
    })
}
