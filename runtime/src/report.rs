//! The benchmark report (docs/architecture.md). Both binaries write it; `edgeslim report` renders
//! it.
//! Field names are a contract: tests check every one, reports from boards are read back.

use crate::device::DeviceInfo;
use crate::model::{LoadTimings, TensorSpec};
use crate::stats::LatencyStats;
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

impl ToolInfo {
    pub fn this(name: &str) -> ToolInfo {
        ToolInfo {
            name: name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub opset: i64,
    pub producer: String,
    pub onnx_nodes: usize,
    /// Nodes in tract's optimised plan.
    pub plan_nodes: usize,
    pub total_macs: u64,
}

/// Time spent in one ONNX node: the sum of the tract plan nodes it became.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeProfile {
    pub name: String,
    pub onnx_op: String,
    /// The tract ops that ran on its behalf (after fusion), e.g. `OptMatMul`.
    pub tract_ops: Vec<String>,
    pub mean_ms: f64,
    /// Share of the summed node time, in [0, 1].
    pub share: f64,
    pub macs: u64,
    pub output_shape: Option<Vec<usize>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpTypeProfile {
    pub op: String,
    pub count: usize,
    pub mean_ms: f64,
    pub share: f64,
    pub macs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Mean wall time of a profiled run, measured around the whole plan execution.
    pub run_mean_ms: f64,
    /// Mean of the per-node times summed over all nodes; ≈ run_mean_ms.
    pub node_sum_mean_ms: f64,
    /// node_sum_mean_ms / run_mean_ms.
    pub coverage: f64,
    /// Achieved multiply-accumulates per second over the run: 2·MACs/time in GFLOP/s.
    pub achieved_gflops: f64,
    /// Sorted by time, largest first.
    pub nodes: Vec<NodeProfile>,
    /// By the ONNX op each node came from.
    pub op_types: Vec<OpTypeProfile>,
    /// By tract's own op kinds in the optimised plan.
    pub tract_op_types: Vec<OpTypeProfile>,
    /// How tract nodes were matched to ONNX nodes, for the reader who wants to check.
    pub attribution_note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryInfo {
    pub rss_before_load_bytes: Option<u64>,
    pub rss_after_load_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputDiff {
    pub name: String,
    pub shape: Vec<usize>,
    pub max_abs_diff: f64,
    /// Largest |value| of the reference output, to read the difference against.
    pub max_abs_reference: f64,
}

/// Filled by `edgeslim bench --backend both`: ONNX Runtime on the same inputs and threads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineComparison {
    pub other_backend: String,
    pub other_version: Option<String>,
    pub other_latency: LatencyStats,
    /// tract mean / other mean (and medians): below 1 means tract is faster.
    pub latency_ratio_mean: f64,
    pub latency_ratio_p50: f64,
    pub outputs: Vec<OutputDiff>,
}

/// Filled by `edgeslim bench --vs-raw-tract`: the same graph loaded and run by a plain tract
/// loop (no per-node timing, no checks), timed in interleaved blocks with our runtime's loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawTractComparison {
    pub raw_latency: LatencyStats,
    /// Our runtime's p50 / the plain loop's p50 (and the same for the minimum, which a
    /// noisy machine disturbs least): 1.03 means 3 % overhead.
    pub overhead_ratio_p50: f64,
    pub overhead_ratio_min: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema_version: u32,
    pub tool: ToolInfo,
    /// A short name for tables and charts (defaults to the model file stem).
    pub label: String,
    pub created_unix: u64,
    pub model: ModelInfo,
    pub backend: String,
    pub threads: usize,
    pub optimized: bool,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub load: LoadTimings,
    pub latency: LatencyStats,
    pub throughput_per_s: f64,
    pub memory: MemoryInfo,
    pub profile: Option<Profile>,
    pub device: DeviceInfo,
    /// The board profile (targets/*.toml) the run was made for, when one was named.
    pub target_profile: Option<String>,
    pub comparison: Option<EngineComparison>,
    /// Our runtime against plain tract on the same graph (absent unless asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_tract: Option<RawTractComparison>,
    /// Frames in flight on several single-threaded workers (`--pipeline N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<crate::stream::PipelineStats>,
    /// The image in strips on several cores (`--tiles N`), checked against the whole image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiled: Option<crate::tile::TiledStats>,
}

impl BenchReport {
    pub fn read(path: &std::path::Path) -> crate::error::Result<BenchReport> {
        let text =
            std::fs::read_to_string(path).map_err(|e| crate::error::RuntimeError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| crate::error::RuntimeError::Data {
            path: path.into(),
            reason: format!("not an edgeslim bench report: {e}"),
        })
    }

    /// The few lines both `edgeslim bench` and `edgeslim-rt bench` print (the JSON and HTML
    /// hold the rest): one summary, so the two tools describe a run the same way.
    pub fn text_summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let r = self;
        let l = &r.latency;
        let _ = writeln!(
            s,
            "{}  [{}; {} thread(s); {}]",
            r.label, r.backend, r.threads, r.device.arch
        );
        if r.device.emulated {
            let _ = writeln!(
                s,
                "  NOTE: running under emulation: timings do not reflect any board"
            );
        }
        let _ = writeln!(
            s,
            "  load {:.1} ms  typing {:.1} ms  optimise {:.1} ms",
            r.load.load_ms, r.load.typing_ms, r.load.optimize_ms
        );
        let _ = writeln!(
        s,
        "  latency ms: min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3} ± {:.3}  ({} runs)",
        l.min_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms, l.std_ms, l.runs
    );
        let _ = writeln!(
            s,
            "  throughput {:.1}/s  peak RSS {:.1} MiB  MACs {:.3} G",
            r.throughput_per_s,
            r.memory.peak_rss_bytes.unwrap_or(0) as f64 / 1048576.0,
            r.model.total_macs as f64 / 1e9
        );
        if let Some(t) = &r.tiled {
            let _ = writeln!(
        s,
            "  in {} strips (window {} rows, halo {}): p50 {:.3} ms ({:.2}x the whole image); max |tiled - whole| {:.3e}",
            t.spec.tiles,
            t.spec.window_rows,
            t.spec.halo_rows,
            t.latency.p50_ms,
            t.latency.p50_ms / l.p50_ms,
            t.max_abs_diff_vs_whole
        );
        }
        if let Some(p) = &r.pipeline {
            let _ = writeln!(
        s,
            "  pipelined on {} workers: {:.1} frames/s; per frame: submitted to handed back p50 {:.3}  p90 {:.3} ms, compute p50 {:.3} ms ({} frames)",
            p.workers,
            p.throughput_per_s,
            p.latency.p50_ms,
            p.latency.p90_ms,
            p.compute.p50_ms,
            p.frames
        );
        }
        if let Some(c) = &r.comparison {
            let o = &c.other_latency;
            let _ = writeln!(
                s,
                "  {}: p50 {:.3}  mean {:.3} ms   tract/ORT p50 ratio {:.2}",
                c.other_backend, o.p50_ms, o.mean_ms, c.latency_ratio_p50
            );
            for d in &c.outputs {
                let _ = writeln!(
                    s,
                    "  output {}: max |tract - ORT| {:.3e} (max |value| {:.3e})",
                    d.name, d.max_abs_diff, d.max_abs_reference
                );
            }
        }
        if let Some(raw) = &r.raw_tract {
            let _ = writeln!(
            s,
            "  plain tract loop: p50 {:.3}  min {:.3} ms   runtime overhead p50 {:+.1} %  min {:+.1} %",
            raw.raw_latency.p50_ms,
            raw.raw_latency.min_ms,
            (raw.overhead_ratio_p50 - 1.0) * 100.0,
            (raw.overhead_ratio_min - 1.0) * 100.0
        );
        }
        if let Some(p) = &r.profile {
            let _ = writeln!(
                s,
                "  per-node sum {:.3} ms = {:.1}% of run time; top ops:",
                p.node_sum_mean_ms,
                p.coverage * 100.0
            );
            for o in p.op_types.iter().take(5) {
                let _ = writeln!(
                    s,
                    "    {:<20} {:>4} nodes  {:>8.3} ms  {:>5.1}%",
                    o.op,
                    o.count,
                    o.mean_ms,
                    o.share * 100.0
                );
            }
        }
        s
    }

    /// Write as pretty JSON through a temporary file, so a reader never sees half a report.
    pub fn write(&self, path: &std::path::Path) -> crate::error::Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| crate::error::RuntimeError::Other(e.to_string()))?;
        crate::fsutil::write_atomic(path, text.as_bytes())
    }
}
