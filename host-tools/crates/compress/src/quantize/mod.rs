//! `edgeslim compress quantize`: fp16 weights (storage, or full f16 compute for ARMv8.2+
//! boards) and int8 QDQ with calibrated activation ranges (docs/methods/quantize.md), with a
//! report that
//! says what the engines really do with the result: tract's plan (integer kernels or not), the
//! measured latency next to the f32 model, and tract and ONNX Runtime agreement.
//!
//! One job per file: `fp16`, `int8` (QDQ insertion), `ranges` (activation calibration),
//! `plan` (what tract's optimised plan runs).

pub mod fp16;
pub mod int8;
pub mod plan;
pub mod qop;
pub mod ranges;

use crate::{Error, Result};
use edgeslim_data::calib::{self, CalibSpec, Dataset, ModelInput};
use edgeslim_measure::facts::{facts_pair, ModelFacts};
use edgeslim_measure::fidelity::{argmax, compare, Fidelity};
use edgeslim_measure::runner::{progress_bar, Runner};
use edgeslim_onnx::{OnnxModel, SaveOptions};
use edgeslim_runtime::InputShape;
use ranges::{Range, RangeMethod};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// FLOAT16 weights; `compute` also runs the graph in f16.
    Fp16 { compute: bool },
    /// int8, as QDQ or in the operator form.
    Int8 {
        format: Int8Format,
        per_channel: bool,
        /// 7-bit weights (see `int8`).
        reduce_range: bool,
        method: RangeMethod,
        percentile: f64,
    },
}

/// How int8 is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Int8Format {
    /// QuantizeLinear/DequantizeLinear around float Conv/MatMul/Gemm (ONNX Runtime's default
    /// form; tract runs it in float).
    Qdq,
    /// QLinearConv/QLinearMatMul: tract's integer kernels (see `qop`).
    Qoperator,
}

impl Int8Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Int8Format::Qdq => "QDQ",
            Int8Format::Qoperator => "QOperator (QLinearConv/QLinearMatMul)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct QuantizeJob {
    pub model: PathBuf,
    pub output: PathBuf,
    pub input_shapes: Vec<InputShape>,
    pub precision: Precision,
    pub calib: Option<CalibSpec>,
    pub calib_samples: Option<usize>,
    /// Held-out data for fidelity (default: the calibration spec's held-out split).
    pub eval: Option<CalibSpec>,
    pub bench_runs: usize,
}

/// The quantized model on tract and on ONNX Runtime, same inputs.
#[derive(Debug, Clone, Serialize)]
pub struct EngineAgreement {
    pub samples: usize,
    pub max_abs_diff: f64,
    pub top1_agreement: f64,
    /// Why ONNX Runtime could not run the model, when it could not.
    pub ort_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuantizeReport {
    pub tool_version: String,
    pub model: String,
    pub output: String,
    pub precision: Precision,
    pub fp16: Option<fp16::Fp16Summary>,
    pub int8: Option<int8::QdqSummary>,
    pub qoperator: Option<qop::QopSummary>,
    /// Calibrated activation ranges, by tensor.
    pub ranges: Vec<(String, Range)>,
    pub calib: Option<String>,
    pub calib_samples: Option<usize>,
    pub before: ModelFacts,
    pub after: ModelFacts,
    pub plan_before: plan::PlanSummary,
    pub plan_after: plan::PlanSummary,
    pub fidelity: Option<Fidelity>,
    pub held_out: Option<String>,
    pub engines: Option<EngineAgreement>,
    pub warnings: Vec<String>,
    pub quantize_seconds: f64,
}

fn input_shapes_of(input: Option<&ModelInput>, given: &[InputShape]) -> Vec<InputShape> {
    match input {
        Some(i) => vec![InputShape {
            name: Some(i.name.clone()),
            dims: i.shape.clone(),
        }],
        None => given.to_vec(),
    }
}

pub fn run_quantize(job: &QuantizeJob) -> Result<QuantizeReport> {
    let t0 = Instant::now();
    let mut model = OnnxModel::load(&job.model)?;
    // Quantized models keep the given input shape fixed (the int8 rewrite types its tensors
    // at that shape); `compress lowrank` leaves a dynamic input dynamic.
    let opts = edgeslim_onnx::optimize::OptimizeOptions {
        input_shapes: job.input_shapes.clone(),
        ..Default::default()
    };
    edgeslim_onnx::optimize::optimize(&mut model, &opts)?;
    let reference = model.clone();
    let is_int8 = matches!(job.precision, Precision::Int8 { .. });
    if is_int8 && job.calib.is_none() {
        return Err(Error::option(
            "calib",
            "int8 needs calibration data for the activation ranges",
        ));
    }
    let input = if job.calib.is_some() || job.eval.is_some() {
        Some(ModelInput::of(&model)?)
    } else {
        None
    };
    let shapes = input_shapes_of(input.as_ref(), &job.input_shapes);
    let calib_data = match (&job.calib, &input) {
        (Some(s), Some(i)) => Some(calib::load(s, i, job.calib_samples)?),
        _ => None,
    };
    let eval_data = match (&job.eval, &input) {
        (Some(s), Some(i)) => Some(calib::load(s, i, None)?),
        _ => calib_data.clone(),
    };
    let mut warnings = Vec::new();
    let mut fp16_summary = None;
    let mut int8_summary = None;
    let mut qop_summary = None;
    let mut range_list = Vec::new();
    match job.precision {
        Precision::Fp16 { compute } => {
            let s = if compute {
                fp16::fp16_compute(&mut model)?
            } else {
                fp16::fp16_storage(&mut model)?
            };
            for k in &s.kept_f32 {
                warnings.push(format!("weight '{k}' exceeds f16's range and stays f32"));
            }
            fp16_summary = Some(s);
        }
        Precision::Int8 {
            format,
            per_channel,
            reduce_range,
            method,
            percentile,
        } => {
            let (Some(input), Some(data)) = (&input, &calib_data) else {
                unreachable!("checked above")
            };
            if !(percentile > 50.0 && percentile <= 100.0) {
                return Err(Error::option_value(
                    "percentile",
                    percentile,
                    "a percentile in (50, 100]",
                ));
            }
            let targets = int8::targets(&model);
            if targets.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: nothing to quantize (no Conv, MatMul or Gemm with a constant float weight)",
                    job.model.display()
                )));
            }
            let (targets, kept_float) = match format {
                Int8Format::Qdq => (targets, Vec::new()),
                Int8Format::Qoperator => qop::split_targets(&model, &targets),
            };
            // The activations to calibrate: every product's input, and in the operator form
            // its output (after a Relu it absorbs).
            let mut acts: Vec<String> = Vec::new();
            for t in &targets {
                let mut names = vec![t.activation.clone()];
                if format == Int8Format::Qoperator {
                    names.push(qop::output_tensor(&model, t).0);
                }
                for n in names {
                    if !acts.contains(&n) {
                        acts.push(n);
                    }
                }
            }
            let r = ranges::calibrate(&model, input, &acts, &data.calib, method, percentile)?;
            let map: HashMap<String, Range> = acts.iter().cloned().zip(r.iter().copied()).collect();
            range_list = acts.into_iter().zip(r).collect();
            match format {
                Int8Format::Qdq => {
                    let ranks = edgeslim_onnx::opset::tensor_ranks(&model, &shapes)?;
                    let s = int8::insert_qdq(
                        &mut model,
                        &targets,
                        &map,
                        per_channel,
                        reduce_range,
                        &ranks,
                    )?;
                    warnings.extend(s.notes.iter().cloned());
                    int8_summary = Some(s);
                }
                Int8Format::Qoperator => {
                    let s = qop::insert_qoperator(
                        &mut model,
                        &targets,
                        kept_float,
                        &map,
                        per_channel,
                        reduce_range,
                    )?;
                    if per_channel {
                        warnings.push(
                            "per-channel scales keep tract from fusing the requantisation into its \
                             integer kernels (a separate pass per product); per-tensor is faster"
                                .into(),
                        );
                    }
                    qop_summary = Some(s);
                }
            }
        }
    }
    model.set_metadata(
        "edgeslim.quantize",
        &serde_json::to_string(&job.precision).unwrap_or_default(),
    );
    model.save(&job.output, &SaveOptions::default())?;
    let quantize_seconds = t0.elapsed().as_secs_f64();

    let (fidelity, engines) = match (&eval_data, &input) {
        (Some(d), Some(i)) if !d.held_out.is_empty() => {
            let (f, e) = evaluate(&reference, &model, &job.output, i, &d.held_out)?;
            (Some(f), Some(e))
        }
        _ => (None, None),
    };
    let plan_before = plan::summarize(&reference, &shapes)?;
    let plan_after = plan::summarize(&model, &shapes)?;
    let (before, after) = facts_pair(&job.model, &job.output, input.as_ref(), job.bench_runs)?;
    if let (Some(a), Some(b)) = (after.latency_p50_ms, before.latency_p50_ms) {
        if a > b {
            warnings.push(format!(
                "the quantized model is SLOWER on tract than the original: p50 {a:.3} ms vs {b:.3} ms ({:.2}×)",
                a / b
            ));
        }
    }
    Ok(QuantizeReport {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        model: job.model.display().to_string(),
        output: job.output.display().to_string(),
        precision: job.precision,
        fp16: fp16_summary,
        int8: int8_summary,
        qoperator: qop_summary,
        ranges: range_list,
        calib: job.calib.as_ref().map(|c| c.to_string()),
        calib_samples: calib_data.as_ref().map(|d| d.calib.len()),
        before,
        after,
        plan_before,
        plan_after,
        fidelity,
        held_out: eval_data
            .as_ref()
            .map(|d| format!("{} ({} samples)", d.held_out.name, d.held_out.len())),
        engines,
        warnings,
        quantize_seconds,
    })
}

/// Fidelity of the quantized model against the original (both on tract), and the quantized
/// model on tract against ONNX Runtime.
fn evaluate(
    reference: &OnnxModel,
    quantized: &OnnxModel,
    saved: &Path,
    input: &ModelInput,
    data: &Dataset,
) -> Result<(Fidelity, EngineAgreement)> {
    let pb = progress_bar(2 * data.len(), "held-out fidelity");
    let r = Runner::new(reference, input, None)?.first_outputs(data, &pb)?;
    let q = Runner::new(quantized, input, None)?.first_outputs(data, &pb)?;
    pb.finish_and_clear();
    let fidelity = compare(&r, &q, data.labels.as_deref());
    let engines = match ort_outputs(saved, input, data) {
        Ok(o) => {
            let f = compare(&q, &o, None);
            EngineAgreement {
                samples: f.samples,
                max_abs_diff: f.max_abs_diff,
                top1_agreement: f.top1_agreement,
                ort_error: None,
            }
        }
        Err(e) => EngineAgreement {
            samples: 0,
            max_abs_diff: f64::NAN,
            top1_agreement: f64::NAN,
            ort_error: Some(e.to_string()),
        },
    };
    Ok((fidelity, engines))
}

#[cfg(feature = "ort")]
fn ort_outputs(path: &Path, input: &ModelInput, data: &Dataset) -> Result<Vec<Vec<f32>>> {
    let mut s = edgeslim_measure::engines::ort::OrtSession::load(path, 1)?;
    let mut out = Vec::with_capacity(data.len());
    for sample in &data.samples {
        let a = ndarray::ArrayD::from_shape_vec(input.shape.clone(), sample.clone())
            .map_err(|e| Error::tensor(&input.name, e.to_string()))?;
        let mut o = s.run(&[(input.name.clone(), a)])?;
        if o.is_empty() {
            return Err(Error::Ort("no output".into()));
        }
        out.push(o.swap_remove(0).1.iter().copied().collect());
    }
    Ok(out)
}

#[cfg(not(feature = "ort"))]
fn ort_outputs(_: &Path, _: &ModelInput, _: &Dataset) -> Result<Vec<Vec<f32>>> {
    Err(Error::Invalid("built without the `ort` feature".into()))
}

/// Top-1 agreement of two output lists (used by tests and docs scripts).
pub fn top1_agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let same = a
        .iter()
        .zip(b)
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count();
    same as f64 / a.len().max(1) as f64
}
