//! The benchmark loop: warm-up, timed runs with per-node timing, and the report.
//!
//! Every timed run goes through `run_plan_with_eval` with a timing closure around each node,
//! so whole-run latency and per-node times come from the same runs. The closure costs two
//! clock reads per node (tens of nanoseconds), far below the millisecond runs we measure.

use crate::device::{current_rss_bytes, peak_rss_bytes, DeviceInfo};
use crate::error::{Result, RuntimeError};
use crate::model::LoadedModel;
use crate::profile::{attribute, build_profile, total_macs};
use crate::progress::Progress;
use crate::report::{BenchReport, MemoryInfo, ModelInfo, Profile, ToolInfo, SCHEMA_VERSION};
use crate::stats::LatencyStats;
use std::sync::Arc;
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

/// Something whose inferences can be timed in blocks, so that several of them (two models,
/// our loop and tract's own, tract and ONNX Runtime) can be measured side by side.
pub trait Timed {
    /// Run `warm` untimed and then `k` timed inferences, appending the k latencies (ms).
    fn block(&mut self, warm: usize, k: usize, samples: &mut Vec<f64>) -> Result<()>;
}

/// Pause before each block of a side-by-side run: ONNX Runtime's worker threads keep spinning
/// for a while after a run, and with the cyclic order the contestant after it paid for that in
/// every round (measured: the tracker's search graph after ONNX Runtime read 0.83× its own
/// speed against a copy timed elsewhere in the order).
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(10);

/// Time several contestants in interleaved blocks of at most `block` runs each, rotating the
/// order every round (A B, B A, A B, ... for two), each block after a [`SETTLE`] pause and one
/// untimed run to settle caches after the switch. On a shared or throttling machine, drift
/// then hits every contestant alike instead of skewing their ratio. Returns each contestant's
/// `runs` samples.
pub fn interleave(
    contestants: &mut [&mut dyn Timed],
    runs: usize,
    block: usize,
) -> Result<Vec<Vec<f64>>> {
    interleave_observed(contestants, runs, block, &mut |_| {})
}

/// [`interleave`], telling `progress` how many runs per contestant are done after each round
/// (for a progress bar: the runtime itself draws none).
pub fn interleave_observed(
    contestants: &mut [&mut dyn Timed],
    runs: usize,
    block: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<f64>>> {
    let n = contestants.len();
    let mut samples: Vec<Vec<f64>> = (0..n).map(|_| Vec::with_capacity(runs)).collect();
    let block = block.max(1);
    let mut done = 0;
    let mut round = 0;
    while done < runs.max(1) {
        let k = block.min(runs.max(1) - done);
        for turn in 0..n {
            let i = (turn + round) % n;
            if n > 1 {
                std::thread::sleep(SETTLE);
            }
            contestants[i].block(1, k, &mut samples[i])?;
        }
        done += k;
        round += 1;
        progress(done);
    }
    Ok(samples)
}

/// Timed runs through the runtime's own loop ([`time_runs`]: per-node timing included),
/// accumulating the per-node times over all blocks.
pub struct RuntimeRuns<'a> {
    pub model: &'a LoadedModel,
    pub inputs: &'a [Tensor],
    pub node_total_ms: Vec<f64>,
    pub outputs: Vec<Tensor>,
}

impl<'a> RuntimeRuns<'a> {
    pub fn new(model: &'a LoadedModel, inputs: &'a [Tensor]) -> RuntimeRuns<'a> {
        RuntimeRuns {
            model,
            inputs,
            node_total_ms: vec![0.0; model.plan.model().nodes().len()],
            outputs: Vec::new(),
        }
    }
}

impl Timed for RuntimeRuns<'_> {
    fn block(&mut self, warm: usize, k: usize, samples: &mut Vec<f64>) -> Result<()> {
        let t = time_runs(self.model, self.inputs, warm, k)?;
        samples.extend(t.samples_ms);
        for (acc, ms) in self.node_total_ms.iter_mut().zip(&t.node_total_ms) {
            *acc += ms;
        }
        self.outputs = t.outputs;
        Ok(())
    }
}

/// The same model loaded and run the way a plain tract user would write it: tract's ONNX
/// loader with the input facts set, `into_optimized`, `into_runnable`, and a loop calling
/// `run` on one reused state, with nothing around it. The yardstick for our runtime's
/// overhead (loading options, input checks, per-node timing).
pub struct RawTract {
    plan: Arc<TypedRunnableModel>,
    inputs: TVec<TValue>,
}

impl RawTract {
    pub fn load(model: &LoadedModel, inputs: &[Tensor]) -> Result<RawTract> {
        let path = model.path.as_path();
        let err = |stage| move |e| RuntimeError::tract(path, stage, e);
        let mut m = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .model_for_path(path)
            .map_err(err("loading with plain tract"))?;
        for (ix, t) in inputs.iter().enumerate() {
            m.set_input_fact(ix, InferenceFact::dt_shape(t.datum_type(), t.shape()))
                .map_err(err("setting input facts"))?;
        }
        for ix in 0..m.outputs.len() {
            m.set_output_fact(ix, InferenceFact::default())
                .map_err(err("clearing output facts"))?;
        }
        let options = tract_onnx::tract_core::runtime::RunOptions {
            executor: Some(crate::model::executor_for(model.threads)),
            ..Default::default()
        };
        let plan = m
            .into_optimized()
            .map_err(err("optimising with plain tract"))?
            .into_runnable_with_options(&options)
            .map_err(err("planning with plain tract"))?;
        Ok(RawTract {
            plan,
            inputs: inputs.iter().map(|t| t.clone().into_tvalue()).collect(),
        })
    }
}

impl Timed for RawTract {
    fn block(&mut self, warm: usize, k: usize, samples: &mut Vec<f64>) -> Result<()> {
        let err = |e| RuntimeError::Other(format!("plain tract run: {e}"));
        let mut state = self.plan.spawn().map_err(err)?;
        for _ in 0..warm {
            state.run(self.inputs.clone()).map_err(err)?;
        }
        for _ in 0..k {
            let values = self.inputs.clone();
            let start = Instant::now();
            state.run(values).map_err(err)?;
            samples.push(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok(())
    }
}

/// Run `warmup` untimed and `runs` timed inferences.
pub fn time_runs(
    model: &LoadedModel,
    inputs: &[Tensor],
    warmup: usize,
    runs: usize,
) -> Result<Timings> {
    time_runs_with_progress(model, inputs, warmup, runs, &mut Progress::hidden())
}

/// [`time_runs`], counting finished runs (warm-up included) on `progress` between runs.
pub fn time_runs_with_progress(
    model: &LoadedModel,
    inputs: &[Tensor],
    warmup: usize,
    runs: usize,
    progress: &mut Progress,
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
    for i in 0..warmup {
        state.run(as_values()).map_err(err)?;
        progress.set(i + 1);
    }
    let n_nodes = model.plan.model().nodes().len();
    let mut node_total_ms = vec![0.0f64; n_nodes];
    let mut samples_ms = Vec::with_capacity(runs);
    let mut outputs = Vec::new();
    for i in 0..runs.max(1) {
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
        progress.set(warmup + i + 1);
    }
    progress.finish();
    Ok(Timings {
        samples_ms,
        node_total_ms,
        outputs,
    })
}

/// The per-node profile of timed runs: `node_total_ms` summed over the runs of `samples_ms`.
pub fn profile_of(model: &LoadedModel, node_total_ms: &[f64], samples_ms: &[f64]) -> Profile {
    let run_total: f64 = samples_ms.iter().sum();
    build_profile(
        model,
        &attribute(model),
        node_total_ms,
        run_total,
        samples_ms.len(),
    )
}

/// Replace a report's latency and profile by those of runs timed elsewhere (interleaved
/// with other contestants), keeping its model, memory and device facts.
pub fn set_timings(
    report: &mut BenchReport,
    model: &LoadedModel,
    runs: &RuntimeRuns,
    samples_ms: Vec<f64>,
    warmup: usize,
) {
    report.profile = Some(profile_of(model, &runs.node_total_ms, &samples_ms));
    report.latency = LatencyStats::from_samples(samples_ms, warmup);
    report.throughput_per_s = report.latency.throughput_per_s();
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
    let total = cfg.warmup + cfg.runs.max(1);
    let mut progress = Progress::on_terminal("bench: runs", total);
    let timings = time_runs_with_progress(model, inputs, cfg.warmup, cfg.runs, &mut progress)?;
    device.finish();
    let profile = profile_of(model, &timings.node_total_ms, &timings.samples_ms);
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
        raw_tract: None,
        pipeline: None,
        tiled: None,
    };
    Ok((report, timings.outputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Records the order in which blocks ran, and times each run as its contestant's id.
    struct Probe {
        id: usize,
        log: Rc<RefCell<Vec<(usize, usize)>>>,
    }

    impl Timed for Probe {
        fn block(&mut self, warm: usize, k: usize, samples: &mut Vec<f64>) -> Result<()> {
            assert_eq!(warm, 1, "every block re-warms once");
            self.log.borrow_mut().push((self.id, k));
            samples.extend(std::iter::repeat_n(self.id as f64, k));
            Ok(())
        }
    }

    #[test]
    fn interleaving_rotates_the_order_and_covers_every_run() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut a = Probe {
            id: 0,
            log: log.clone(),
        };
        let mut b = Probe {
            id: 1,
            log: log.clone(),
        };
        let s = interleave(&mut [&mut a, &mut b], 25, 10).unwrap();
        assert_eq!(s[0], vec![0.0; 25]);
        assert_eq!(s[1], vec![1.0; 25]);
        assert_eq!(
            *log.borrow(),
            vec![(0, 10), (1, 10), (1, 10), (0, 10), (0, 5), (1, 5)]
        );
    }
}
