//! One `compress lowrank` run end to end: load, prepare, calibrate, compress (or search),
//! save, then measure what the report shows — fidelity and task metric on held-out data,
//! parameters, MACs and tract latency before and after, time and peak memory of the
//! compression itself.

use super::search::{SearchInputs, SearchReport};
use super::{CompressOptions, LayerResult, Method, RankRule};
use crate::{Error, Result};
use edgeslim_data::calib::{self, CalibData, CalibSpec, ModelInput};
use edgeslim_measure::facts::{facts_pair, ModelFacts};
use edgeslim_measure::fidelity::{compare, Fidelity};
use edgeslim_measure::runner::{progress_bar, Runner};
use edgeslim_onnx::{OnnxModel, SaveOptions};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct CompressJob {
    pub model: PathBuf,
    pub output: PathBuf,
    /// The shape calibration, evaluation and the benchmark run at; the output model keeps the
    /// input's declared shape (see `prepare`).
    pub input_shapes: Vec<edgeslim_runtime::InputShape>,
    pub options: CompressOptions,
    pub calib: Option<CalibSpec>,
    /// Cap on calibration samples (first N of the calibration split).
    pub calib_samples: Option<usize>,
    /// Surgical rank search with this tolerance instead of one budget for all layers.
    pub search_tolerance: Option<f64>,
    /// Data for the task metric (search split and held-out report); default: `calib`.
    pub eval: Option<CalibSpec>,
    /// Timed tract runs per model for the latency comparison (0: no benchmark).
    pub bench_runs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompressReport {
    pub tool_version: String,
    pub model: String,
    pub output: String,
    pub method: Method,
    pub rule: RankRule,
    pub layers_pattern: Option<String>,
    pub calib: Option<String>,
    pub calib_split: Option<String>,
    pub calib_samples: Option<usize>,
    pub split_rule: Option<String>,
    pub layers: Vec<LayerResult>,
    /// Weights of the decomposed layers before and after.
    pub layer_params_before: usize,
    pub layer_params_after: usize,
    pub before: ModelFacts,
    pub after: ModelFacts,
    /// Held-out comparison with the original (task metric = accuracy where labelled).
    pub fidelity: Option<Fidelity>,
    pub held_out: Option<String>,
    pub search: Option<SearchReport>,
    pub warnings: Vec<String>,
    /// Wall time of load + calibration + decomposition + save (no evaluation, no benchmark).
    pub compress_seconds: f64,
    /// Peak resident memory of the process when compression finished.
    pub peak_rss_bytes: Option<u64>,
}

fn load_data(spec: &CalibSpec, input: &ModelInput, cap: Option<usize>) -> Result<CalibData> {
    calib::load(spec, input, cap)
}

pub fn run_compress(job: &CompressJob) -> Result<CompressReport> {
    let t0 = Instant::now();
    if let RankRule::Budget(b) = job.options.rule {
        super::budget::check_budget(b)?;
    }
    if let Some(t) = job.search_tolerance {
        if !(t.is_finite() && t >= 0.0) {
            return Err(Error::option_value(
                "tolerance",
                t,
                "a non-negative drop of the task metric (0.01 = one point)",
            ));
        }
    }
    let mut model = OnnxModel::load(&job.model)?;
    super::prepare(&mut model)?;
    let reference = model.clone();
    // Refuse a run with nothing to do before loading any data.
    let chosen = super::selected_layers(&model, job.options.layers.as_ref())?;
    // Data needs the input's shape; without data it still gives MACs and the benchmark a
    // shape when one is known.
    let needs_input = job.calib.is_some() || job.eval.is_some();
    let input = match ModelInput::resolve(&model, &job.input_shapes) {
        Ok(i) => Some(i),
        Err(e) if needs_input || !job.input_shapes.is_empty() => return Err(e),
        Err(_) => None,
    };
    let calib_data = match (&job.calib, &input) {
        (Some(spec), Some(i)) => Some(load_data(spec, i, job.calib_samples)?),
        _ => None,
    };
    let eval_data = match (&job.eval, &input) {
        (Some(spec), Some(i)) => Some(load_data(spec, i, None)?),
        _ => calib_data.clone(),
    };
    let mut warnings = Vec::new();
    let (layers, search) = match job.search_tolerance {
        None => (
            super::compress(
                &mut model,
                &job.options,
                input.as_ref(),
                calib_data.as_ref().map(|d| &d.calib),
                &mut warnings,
            )?,
            None,
        ),
        Some(tolerance) => {
            let (Some(i), Some(eval)) = (&input, &eval_data) else {
                return Err(Error::option(
                    "eval",
                    "the rank search needs data for the task metric (evaluation or calibration data)",
                ));
            };
            let (layers, report) = super::search::search(
                &mut model,
                &chosen,
                job.options.method,
                &SearchInputs {
                    input: i,
                    calib: calib_data.as_ref().map(|d| &d.calib),
                    search: &eval.calib,
                    tolerance,
                },
            )?;
            (layers, Some(report))
        }
    };
    model.set_metadata(
        "edgeslim.lowrank",
        &serde_json::json!({
            "method": job.options.method.as_str(),
            "rule": job.options.rule,
            "calib": job.calib.as_ref().map(|c| c.to_string()),
        })
        .to_string(),
    );
    model.save(&job.output, &SaveOptions::default())?;
    let compress_seconds = t0.elapsed().as_secs_f64();
    let peak_rss_bytes = edgeslim_runtime::device::peak_rss_bytes();

    let fidelity = match (&eval_data, &input) {
        (Some(d), Some(i)) if !d.held_out.is_empty() => {
            Some(held_out_fidelity(&reference, &model, i, &d.held_out)?)
        }
        _ => None,
    };
    let (before, after) = facts_pair(&job.model, &job.output, input.as_ref(), job.bench_runs)?;
    let decomposed = layers.iter().filter(|l| l.rank.is_some());
    let (lb, la) = decomposed.fold((0, 0), |(b, a), l| {
        (b + l.params_before, a + l.params_after)
    });
    Ok(CompressReport {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        model: job.model.display().to_string(),
        output: job.output.display().to_string(),
        method: job.options.method,
        rule: job.options.rule,
        layers_pattern: job.options.layers.as_ref().map(|r| r.to_string()),
        calib: job.calib.as_ref().map(|c| c.to_string()),
        calib_split: calib_data.as_ref().map(|d| d.calib.name.clone()),
        calib_samples: calib_data.as_ref().map(|d| d.calib.len()),
        split_rule: eval_data.as_ref().map(|d| d.split_rule.clone()),
        layers,
        layer_params_before: lb,
        layer_params_after: la,
        before,
        after,
        fidelity,
        held_out: eval_data
            .as_ref()
            .map(|d| format!("{} ({} samples)", d.held_out.name, d.held_out.len())),
        search,
        warnings,
        compress_seconds,
        peak_rss_bytes,
    })
}

/// Outputs of both models on the held-out split, compared.
pub fn held_out_fidelity(
    reference: &OnnxModel,
    candidate: &OnnxModel,
    input: &ModelInput,
    data: &calib::Dataset,
) -> Result<Fidelity> {
    let pb = progress_bar(2 * data.len(), "held-out fidelity");
    let r = Runner::new(reference, input, None)?.first_outputs(data, &pb)?;
    let c = Runner::new(candidate, input, None)?.first_outputs(data, &pb)?;
    pb.finish_and_clear();
    Ok(compare(&r, &c, data.labels.as_deref()))
}
