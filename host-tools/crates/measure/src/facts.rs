//! Facts and measurements compression reports put side by side for the original and the
//! compressed model: parameters, MACs, file size, and tract latency. Every method measures
//! latency the same way, with the harness of `edgeslim bench A B` ([`bench_side_by_side`]):
//! both models loaded in one process, warmed up, their timed runs interleaved in blocks, the
//! runtime's loop and percentiles; so rows of different methods compare, and a ratio holds on a
//! shared, noisy machine.

use crate::bench::{bench_side_by_side, Backend, HostBenchConfig};
use crate::{Error, Result};
use edgeslim_data::calib::ModelInput;
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::report::BenchReport;
use edgeslim_runtime::InputShape;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct ModelFacts {
    pub path: String,
    pub file_bytes: u64,
    pub params: u64,
    pub macs: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_mean_ms: Option<f64>,
    pub latency_runs: usize,
    /// tract's plan op kinds with their time shares, largest first (from the bench profile).
    pub tract_ops: Vec<(String, f64)>,
}

fn shapes(input: Option<&ModelInput>) -> Vec<InputShape> {
    input
        .map(|i| {
            vec![InputShape {
                name: Some(i.name.clone()),
                dims: i.shape.clone(),
            }]
        })
        .unwrap_or_default()
}

/// Parameters, MACs and (with `runs` > 0) tract latency of an original model and its
/// compressed version, both saved; the latency of the two is measured side by side.
pub fn facts_pair(
    before: &Path,
    after: &Path,
    input: Option<&ModelInput>,
    runs: usize,
) -> Result<(ModelFacts, ModelFacts)> {
    let mut benches = if runs > 0 {
        let cfg = HostBenchConfig {
            backend: Backend::Tract,
            threads: 1,
            warmup: 5.min(runs),
            runs,
            input_shapes: shapes(input),
            ..HostBenchConfig::default()
        };
        bench_side_by_side(&[before, after], &cfg)?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None, None]
    };
    let after_bench = benches.pop().flatten();
    let before_bench = benches.pop().flatten();
    Ok((
        facts_of(before, input, before_bench.as_ref(), runs)?,
        facts_of(after, input, after_bench.as_ref(), runs)?,
    ))
}

/// Two in-memory models (an original and a compressed version) benchmarked side by side on
/// tract with `threads` threads: one report each, from one interleaved run.
pub fn bench_models_side_by_side(
    before: &OnnxModel,
    after: &OnnxModel,
    input_shapes: &[InputShape],
    runs: usize,
    threads: usize,
) -> Result<[BenchReport; 2]> {
    // The harness loads files (ONNX Runtime needs one); a private folder holds the two.
    let dir = tempfile::tempdir()
        .map_err(|e| Error::Other(format!("a temporary folder for the benchmark: {e}")))?;
    let mut paths = Vec::new();
    for (name, m) in [("before.onnx", before), ("after.onnx", after)] {
        let p = dir.path().join(name);
        std::fs::write(&p, m.to_bytes()?).map_err(|e| Error::io(&p, e))?;
        paths.push(p);
    }
    let cfg = HostBenchConfig {
        backend: Backend::Tract,
        threads,
        warmup: 3,
        runs: runs.max(2),
        input_shapes: input_shapes.to_vec(),
        ignore_declared_facts: true,
        ..HostBenchConfig::default()
    };
    let mut r = bench_side_by_side(&[&paths[0], &paths[1]], &cfg)?;
    let after = r.pop();
    let before = r.pop();
    match (before, after) {
        (Some(b), Some(a)) => Ok([b, a]),
        _ => Err(Error::Other(
            "the side-by-side benchmark returned no reports".into(),
        )),
    }
}

/// A saved model's facts, with the latency of `bench` when it was measured.
fn facts_of(
    path: &Path,
    input: Option<&ModelInput>,
    bench: Option<&BenchReport>,
    runs: usize,
) -> Result<ModelFacts> {
    let model = OnnxModel::load(path)?;
    let info = edgeslim_onnx::inspect::inspect(&model, &shapes(input))?;
    let file_bytes = std::fs::metadata(path)
        .map_err(|e| crate::Error::io(path, e))?
        .len();
    let tract_ops = bench
        .and_then(|b| b.profile.as_ref())
        .map(|p| {
            p.tract_op_types
                .iter()
                .map(|o| (o.op.clone(), o.share))
                .collect()
        })
        .unwrap_or_default();
    Ok(ModelFacts {
        path: path.display().to_string(),
        file_bytes,
        params: info.total_params,
        macs: info.total_macs,
        latency_p50_ms: bench.map(|b| b.latency.p50_ms),
        latency_mean_ms: bench.map(|b| b.latency.mean_ms),
        latency_runs: if bench.is_some() { runs } else { 0 },
        tract_ops,
    })
}
