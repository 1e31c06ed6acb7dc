//! Facts and measurements compression reports put side by side for the original and the
//! compressed model: parameters, MACs, file size, and tract latency measured by the same loop
//! as `edgeslim bench` (the runtime's), so the numbers are comparable with every other report.

use crate::bench::{host_bench, Backend, HostBenchConfig};
use crate::Result;
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

/// Parameters, MACs and (with `runs` > 0) tract latency of a saved model.
pub fn facts(
    path: &Path,
    input: Option<&ModelInput>,
    runs: usize,
) -> Result<(ModelFacts, Option<BenchReport>)> {
    let model = OnnxModel::load(path)?;
    let info = edgeslim_onnx::inspect::inspect(&model, &shapes(input))?;
    let file_bytes = std::fs::metadata(path)
        .map_err(|e| crate::Error::io(path, e))?
        .len();
    let bench = if runs > 0 {
        Some(bench(path, input, runs)?)
    } else {
        None
    };
    let tract_ops = bench
        .as_ref()
        .and_then(|b| b.profile.as_ref())
        .map(|p| {
            p.tract_op_types
                .iter()
                .map(|o| (o.op.clone(), o.share))
                .collect()
        })
        .unwrap_or_default();
    Ok((
        ModelFacts {
            path: path.display().to_string(),
            file_bytes,
            params: info.total_params,
            macs: info.total_macs,
            latency_p50_ms: bench.as_ref().map(|b| b.latency.p50_ms),
            latency_mean_ms: bench.as_ref().map(|b| b.latency.mean_ms),
            latency_runs: runs,
            tract_ops,
        },
        bench,
    ))
}

/// tract, one thread, the runtime's loop.
pub fn bench(path: &Path, input: Option<&ModelInput>, runs: usize) -> Result<BenchReport> {
    host_bench(
        path,
        &HostBenchConfig {
            backend: Backend::Tract,
            threads: 1,
            warmup: 5.min(runs),
            runs: runs.max(1),
            input_shapes: shapes(input),
            ..HostBenchConfig::default()
        },
    )
}
