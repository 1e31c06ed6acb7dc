//! The benchmark loop: warm-up, timed runs with per-node timing, and the report.
//!
//! Every timed run goes through `run_plan_with_eval` with a timing closure around each node,
//! so whole-run latency and per-node times come from the same runs. The closure costs two
//! clock reads per node (tens of nanoseconds), far below the millisecond runs we measure.

use crate::device::{current_rss_bytes, peak_rss_bytes, DeviceInfo};
use crate::error::{Result, RuntimeError};
use crate::model::LoadedModel;
use crate::profile::{attribute, build_profile, total_macs};
use crate::report::{BenchReport, MemoryInfo, ModelInfo, ToolInfo, SCHEMA_VERSION};
use crate::stats::LatencyStats;
use std::time::Instant;
use tract_onnx::prelude::*;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub warmup: usize,
    pub runs: usize,
    pub label: Option<String>,
    pub target_profile: Option<String>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            warmup: 5,
            runs: 50,
            label: None,
            target_profile: None,
        }
    }
}

/// What the timing loop measured, before it becomes a report.
pub struct Timings {
    pub samples_ms: Vec<f64>,
    /// Per plan node, summed over the timed runs.
    pub node_total_ms: Vec<f64>,
    pub outputs: Vec<Tensor>,
}

/// Run `warmup` untimed and `runs` timed inferences.
pub fn time_runs(
    model: &LoadedModel,
    inputs: &[Tensor],
    warmup: usize,
    runs: usize,
) -> Result<Timings> {
    model.check_inputs(inputs)?;
    let err = |e| RuntimeError::tract(&model.path, "running", e);
    let mut state = model.plan.spawn().map_err(err)?;
    let as_values = || {
        inputs
            .iter()
            .map(|t| t.clone().into_tvalue())
            .collect::<TVec<_>>()
    };
    for _ in 0..warmup {
        state.run(as_values()).map_err(err)?;
    }
    let n_nodes = model.plan.model().nodes().len();
    let mut node_total_ms = vec![0.0f64; n_nodes];
    let mut samples_ms = Vec::with_capacity(runs);
    let mut outputs = Vec::new();
    for _ in 0..runs.max(1) {
        let values = as_values();
        let start = Instant::now();
        let out = state
            .run_plan_with_eval(values, |ctx, op_state, node, node_inputs| {
                let t = Instant::now();
                let r = tract_onnx::tract_core::plan::eval(ctx, op_state, node, node_inputs);
                node_total_ms[node.id] += t.elapsed().as_secs_f64() * 1e3;
                r
            })
            .map_err(err)?;
        samples_ms.push(start.elapsed().as_secs_f64() * 1e3);
        outputs = out.into_iter().map(|v| v.into_tensor()).collect();
    }
    Ok(Timings {
        samples_ms,
        node_total_ms,
        outputs,
    })
}

/// Benchmark a loaded model and assemble the full report.
pub fn bench(
    model: &LoadedModel,
    inputs: &[Tensor],
    cfg: &BenchConfig,
    memory_before_load: Option<u64>,
    memory_after_load: Option<u64>,
) -> Result<(BenchReport, Vec<Tensor>)> {
    let mut device = DeviceInfo::probe();
    let timings = time_runs(model, inputs, cfg.warmup, cfg.runs)?;
    device.finish();
    let run_total: f64 = timings.samples_ms.iter().sum();
    let owner = attribute(model);
    let profile = build_profile(
        model,
        &owner,
        &timings.node_total_ms,
        run_total,
        timings.samples_ms.len(),
    );
    let latency = LatencyStats::from_samples(timings.samples_ms, cfg.warmup);
    let label = cfg.label.clone().unwrap_or_else(|| {
        model
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let report = BenchReport {
        schema_version: SCHEMA_VERSION,
        tool: ToolInfo::this("edgeslim-rt"),
        label,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        model: ModelInfo {
            path: model.path.display().to_string(),
            sha256: model.sha256.clone(),
            size_bytes: model.size_bytes,
            opset: model.opset,
            producer: model.producer.clone(),
            onnx_nodes: model.nodes.len(),
            plan_nodes: model.plan_node_count(),
            total_macs: total_macs(model),
        },
        backend: "tract".into(),
        threads: model.threads,
        optimized: model.optimized,
        inputs: model.inputs.clone(),
        outputs: model.outputs.clone(),
        load: model.timings.clone(),
        throughput_per_s: latency.throughput_per_s(),
        latency,
        memory: MemoryInfo {
            rss_before_load_bytes: memory_before_load,
            rss_after_load_bytes: memory_after_load.or_else(current_rss_bytes),
            peak_rss_bytes: peak_rss_bytes(),
        },
        profile: Some(profile),
        device,
        target_profile: cfg.target_profile.clone(),
        comparison: None,
    };
    Ok((report, timings.outputs))
}
