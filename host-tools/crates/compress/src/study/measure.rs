//! How a study judges its variants: quality on the held-out split against the original, the
//! same inputs through ONNX Runtime, and one interleaved benchmark of everything.

use super::pareto;
use super::types::{EngineCheck, Latency, Quality, Study};
use crate::{Error, Result};
use edgeslim_data::calib::{Dataset, ModelInput};
use edgeslim_measure::bench::{bench_side_by_side_ort_for, Backend, HostBenchConfig};
use edgeslim_measure::detection;
use edgeslim_measure::fidelity::compare;
use edgeslim_measure::runner::{progress_bar, Runner};
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::report::BenchReport;
use edgeslim_runtime::stats::LatencyStats;
use edgeslim_runtime::InputShape;
use std::path::{Path, PathBuf};

/// The first output of `model` (tract) on every sample of `data`, flattened.
pub fn first_outputs(
    model: &OnnxModel,
    input: &ModelInput,
    data: &Dataset,
) -> Result<Vec<Vec<f32>>> {
    let pb = progress_bar(data.len(), "held-out outputs");
    let out = Runner::new(model, input, None)?.first_outputs(data, &pb);
    pb.finish_and_clear();
    out
}

/// The shape of `model`'s first output on the first sample of `data`.
pub fn first_output_shape(
    model: &OnnxModel,
    input: &ModelInput,
    data: &Dataset,
) -> Result<Vec<usize>> {
    let sample = data
        .samples
        .first()
        .ok_or_else(|| Error::Invalid(format!("{}: no samples", data.name)))?;
    Runner::new(model, input, None)?
        .run(sample)?
        .into_iter()
        .next()
        .map(|o| o.shape)
        .ok_or_else(|| Error::Graph(format!("{}: no output", model.label())))
}

/// A candidate's outputs (of shape `shape`) against the original's on the same samples; a
/// one-channel map (`[1, 1, H, W]`, a text detector's probabilities) is also judged by the
/// boxes it gives.
pub fn quality(
    reference: &[Vec<f32>],
    candidate: &[Vec<f32>],
    data: &Dataset,
    shape: &[usize],
) -> Quality {
    let f = compare(reference, candidate, data.labels.as_deref());
    let boxes = match shape {
        [1, 1, h, w] if *h > 1 && *w > 1 => {
            Some(detection::agreement(reference, candidate, *w, *h))
        }
        _ => None,
    };
    Quality {
        accuracy: f.accuracy,
        agreement: f.top1_agreement,
        cosine: Some(f.mean_cosine),
        box_f1: boxes.as_ref().map(|b| b.f1),
        map_iou: boxes.as_ref().map(|b| b.map_iou),
        ..Quality::default()
    }
}

/// Held-out samples run through ONNX Runtime as well (every model we write must agree on two
/// engines).
const ENGINE_SAMPLES: usize = 8;

/// The written variant on ONNX Runtime against tract's outputs on the first held-out samples:
/// the largest difference relative to the largest |output| (absolute for probabilities).
pub fn engine_check(
    path: &Path,
    input: &ModelInput,
    data: &Dataset,
    tract_outputs: &[Vec<f32>],
) -> EngineCheck {
    let n = ENGINE_SAMPLES.min(data.len());
    let worst = ort_outputs(path, input, &data.samples[..n]).map(|ort| {
        ort.iter()
            .zip(tract_outputs)
            .fold(0.0f64, |w, (a, b)| w.max(relative_diff(a, b)))
    });
    EngineCheck::of(n, worst)
}

/// The largest |ONNX Runtime − tract| over one output, relative to tract's largest |value|, or
/// absolute for probabilities: a nearly empty detection map would otherwise turn a 1e-4
/// difference into tens of %. Infinite when a value is NaN.
pub fn relative_diff(ort: &[f32], tract: &[f32]) -> f64 {
    let scale = if tract.iter().all(|v| (0.0..=1.0).contains(v)) {
        1.0
    } else {
        tract
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs() as f64))
            .max(1e-12)
    };
    let d = ort
        .iter()
        .zip(tract)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    if d.is_nan() {
        f64::INFINITY
    } else {
        d / scale
    }
}

#[cfg(feature = "ort")]
fn ort_outputs(path: &Path, input: &ModelInput, samples: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    let mut session = edgeslim_measure::engines::ort::OrtSession::load(path, 1)?;
    samples
        .iter()
        .map(|s| {
            let x = ndarray::ArrayD::from_shape_vec(input.shape.clone(), s.clone())
                .map_err(|e| Error::tensor(&input.name, e.to_string()))?;
            let out = session.run(&[(input.name.clone(), x)])?;
            out.into_iter()
                .next()
                .map(|(_, a)| a.iter().copied().collect())
                .ok_or_else(|| Error::Graph("ONNX Runtime returned no output".into()))
        })
        .collect()
}

#[cfg(not(feature = "ort"))]
fn ort_outputs(_: &Path, _: &ModelInput, _: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    Err(Error::Other(
        "built without ONNX Runtime (feature `ort`)".into(),
    ))
}

fn latency(s: &LatencyStats) -> Latency {
    Latency {
        p50_ms: s.p50_ms,
        p90_ms: s.p90_ms,
        mean_ms: s.mean_ms,
        runs: s.runs,
    }
}

fn rss_load(r: &BenchReport) -> Option<u64> {
    match (
        r.memory.rss_before_load_bytes,
        r.memory.rss_after_load_bytes,
    ) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    }
}

/// The original (tract and ONNX Runtime) and every row, loaded in one process and timed in
/// interleaved blocks at the study's thread count.
pub fn bench_all(
    study: &mut Study,
    original: &Path,
    out: &Path,
    input_shapes: &[InputShape],
) -> Result<()> {
    let mut paths: Vec<PathBuf> = vec![original.to_path_buf()];
    paths.extend(study.rows.iter().map(|r| out.join(&r.file)));
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let cfg = HostBenchConfig {
        backend: Backend::Tract,
        threads: study.threads.max(1),
        warmup: 5,
        runs: study.bench_runs.max(2),
        input_shapes: input_shapes.to_vec(),
        ignore_declared_facts: true,
        ..HostBenchConfig::default()
    };
    let ort_for: Vec<bool> = (0..refs.len())
        .map(|i| i == 0 && cfg!(feature = "ort"))
        .collect();
    let reports = match bench_side_by_side_ort_for(&refs, &ort_for, &cfg) {
        Ok(r) => r,
        // ONNX Runtime missing (not fetched): tract rows still compare; the note says why.
        Err(e) if ort_for[0] => {
            study.reference.ort_note = Some(format!("ONNX Runtime not measured: {e}"));
            bench_side_by_side_ort_for(&refs, &vec![false; refs.len()], &cfg)?
        }
        Err(e) => return Err(e),
    };
    let mut reports = reports.into_iter();
    let first = reports
        .next()
        .ok_or_else(|| Error::Other("the benchmark returned no report".into()))?;
    study.reference.tract = Some(latency(&first.latency));
    study.reference.rss_load_bytes = rss_load(&first);
    if let Some(c) = &first.comparison {
        study.reference.ort = Some(latency(&c.other_latency));
        study.reference.ort_note = c
            .other_version
            .as_ref()
            .map(|v| format!("ONNX Runtime {v}"));
    }
    for (row, r) in study.rows.iter_mut().zip(reports) {
        row.latency = Some(latency(&r.latency));
        row.rss_load_bytes = rss_load(&r);
    }
    Ok(())
}

/// Speed-ups against both reference rows, quality drops, and the Pareto front.
pub fn rank(study: &mut Study) {
    let base = study.reference_points();
    let tract = study.reference.tract.as_ref().map(|l| l.p50_ms);
    let ort = study.reference.ort.as_ref().map(|l| l.p50_ms);
    let metric = study.metric;
    for row in &mut study.rows {
        let p50 = row.latency.as_ref().map(|l| l.p50_ms);
        let ratio = |r: Option<f64>| match (r, p50) {
            (Some(r), Some(p)) if p > 0.0 => Some(r / p),
            _ => None,
        };
        row.speedup_vs_tract = ratio(tract);
        row.speedup_vs_ort = ratio(ort);
        row.drop_points = match (base, row.quality.points(metric)) {
            (Some(b), Some(q)) => Some(b - q),
            _ => None,
        };
    }
    let pts: Vec<(f64, f64)> = study
        .rows
        .iter()
        .map(|r| {
            (
                r.latency.as_ref().map_or(f64::NAN, |l| l.p50_ms),
                r.quality.points(metric).unwrap_or(f64::NAN),
            )
        })
        .collect();
    for (row, on) in study.rows.iter_mut().zip(pareto::front(&pts)) {
        row.pareto = on;
    }
}
