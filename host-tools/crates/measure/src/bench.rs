//! `edgeslim bench MODEL --backend tract|ort|both`: the host benchmark.
//!
//! tract runs through the runtime's own loop (`edgeslim_runtime::bench`), so a host report
//! and a board report of the same model are measured the same way. ONNX Runtime gets the
//! same inputs, thread count and report shape. With `both`, the two engines are timed in
//! interleaved blocks of runs (tract, ORT, ORT, tract, ...) rather than one after the
//! other: on a shared or thermally throttling machine, drift then hits both engines alike
//! instead of skewing the ratio.

use crate::{Error, Result};
use edgeslim_runtime::bench::{
    bench, interleave_observed, set_timings, BenchConfig, RawTract, RuntimeRuns, Timed,
};
use edgeslim_runtime::device::current_rss_bytes;
use edgeslim_runtime::input::{random_inputs, tensor_to_f32_vec};
use edgeslim_runtime::model::TensorSpec;
use edgeslim_runtime::report::{BenchReport, OutputDiff, RawTractComparison, ToolInfo};
use edgeslim_runtime::stats::LatencyStats;
use edgeslim_runtime::tract_onnx::prelude::Tensor;
use edgeslim_runtime::{InputShape, LoadOptions, LoadedModel};
use ndarray::ArrayD;
use std::path::Path;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// tract, the engine that ships to boards (per-node profile included).
    Tract,
    /// ONNX Runtime, loaded from the asset cache or `$ORT_DYLIB_PATH`.
    Ort,
    /// tract's report plus ONNX Runtime on the same inputs: latency ratio and output diffs.
    Both,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::Ort => "ort",
            Backend::Both => "both",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Backend> {
        match s.to_ascii_lowercase().as_str() {
            "tract" => Ok(Backend::Tract),
            "ort" | "onnxruntime" => Ok(Backend::Ort),
            "both" => Ok(Backend::Both),
            _ => Err(Error::Invalid(format!(
                "unknown backend '{s}': expected tract, ort or both"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HostBenchConfig {
    pub backend: Backend,
    pub threads: usize,
    pub warmup: usize,
    pub runs: usize,
    pub seed: u64,
    pub input_shapes: Vec<InputShape>,
    pub label: Option<String>,
    pub target_profile: Option<String>,
    /// Also time a plain tract loop on the same graph, interleaved with ours, and report our
    /// runtime's overhead over it.
    pub vs_raw_tract: bool,
    /// Ignore the models' declared output shapes and value_info (graphs a tool has just
    /// rewritten, whose declarations may be stale).
    pub ignore_declared_facts: bool,
}

impl Default for HostBenchConfig {
    /// The runtime's defaults (`edgeslim-rt bench`), so host and board runs line up.
    fn default() -> Self {
        let rt = BenchConfig::default();
        HostBenchConfig {
            backend: Backend::Tract,
            threads: 1,
            warmup: rt.warmup,
            runs: rt.runs,
            seed: 0,
            input_shapes: Vec::new(),
            label: None,
            target_profile: None,
            vs_raw_tract: false,
            ignore_declared_facts: false,
        }
    }
}

/// Timed runs per contestant per block when interleaving. Ten keeps a block short against
/// drift while the one untimed re-warm run per block stays a small overhead.
pub const BLOCK_RUNS: usize = 10;

/// Benchmark `model` on the chosen backend(s) and return the report (docs/architecture.md).
pub fn host_bench(model: &Path, cfg: &HostBenchConfig) -> Result<BenchReport> {
    match cfg.backend {
        Backend::Tract => bench_tract(model, cfg),
        Backend::Ort => bench_ort(model, cfg),
        Backend::Both => bench_both(model, cfg),
    }
}

fn load_options(cfg: &HostBenchConfig, optimize: bool) -> LoadOptions {
    LoadOptions {
        input_shapes: cfg.input_shapes.clone(),
        optimize,
        threads: cfg.threads.max(1),
        ignore_declared_facts: cfg.ignore_declared_facts,
        ..LoadOptions::default()
    }
}

fn runtime_config(cfg: &HostBenchConfig, warmup: usize, runs: usize) -> BenchConfig {
    BenchConfig {
        warmup,
        runs: runs.max(1),
        label: cfg.label.clone(),
        target_profile: cfg.target_profile.clone(),
    }
}

fn bench_tract(model: &Path, cfg: &HostBenchConfig) -> Result<BenchReport> {
    one_report(bench_side_by_side(&[model], cfg)?)
}

#[cfg(feature = "ort")]
fn bench_both(model: &Path, cfg: &HostBenchConfig) -> Result<BenchReport> {
    one_report(bench_side_by_side(&[model], cfg)?)
}

fn one_report(mut reports: Vec<BenchReport>) -> Result<BenchReport> {
    reports
        .pop()
        .ok_or_else(|| Error::Graph("the benchmark produced no report".into()))
}

/// One model in a side-by-side benchmark, as tract runs it: the runtime's model and inputs
/// (borrowed by the timing loop while the [`Sides`] are timed mutably).
struct Contender {
    loaded: LoadedModel,
    inputs: Vec<Tensor>,
}

/// The rest of a model's contestants and results: its report, tract's outputs, and
/// optionally ONNX Runtime and a plain tract loop on the same inputs.
struct Sides {
    report: BenchReport,
    tract_outputs: Vec<Tensor>,
    #[cfg(feature = "ort")]
    ort: Option<with_ort::OrtSide>,
    raw: Option<RawTract>,
}

impl Contender {
    fn load(path: &Path, cfg: &HostBenchConfig, with_ort: bool) -> Result<(Contender, Sides)> {
        let before = current_rss_bytes();
        let loaded = LoadedModel::load(path, &load_options(cfg, true))?;
        let after = current_rss_bytes();
        let inputs = random_inputs(&loaded.inputs, cfg.seed);
        // The warm-up and one run give the report's skeleton (device facts before, tract-only
        // memory, since ORT is not loaded yet) and tract's outputs; timings come later.
        let (mut report, tract_outputs) = bench(
            &loaded,
            &inputs,
            &runtime_config(cfg, cfg.warmup, 1),
            before,
            after,
        )?;
        report.tool = ToolInfo::this("edgeslim");
        #[cfg(feature = "ort")]
        let ort = if with_ort {
            Some(with_ort::OrtSide::load(path, &loaded, &inputs, cfg)?)
        } else {
            None
        };
        #[cfg(not(feature = "ort"))]
        let _ = with_ort;
        let raw = if cfg.vs_raw_tract {
            let mut raw = RawTract::load(&loaded, &inputs)?;
            raw.block(cfg.warmup, 0, &mut Vec::new())?;
            Some(raw)
        } else {
            None
        };
        Ok((
            Contender { loaded, inputs },
            Sides {
                report,
                tract_outputs,
                #[cfg(feature = "ort")]
                ort,
                raw,
            },
        ))
    }
}

/// Benchmark one or several models side by side in one process: each is loaded and warmed
/// up, then the timed runs of every contestant (each model's tract runs, and with the options
/// its ONNX Runtime and plain-tract runs) are interleaved in blocks ([`edgeslim_runtime::bench::interleave`]), so their
/// ratios hold on a noisy machine. Every report is complete (profile, memory, device facts);
/// the memory figures of later models include the earlier ones, which stay loaded.
pub fn bench_side_by_side(models: &[&Path], cfg: &HostBenchConfig) -> Result<Vec<BenchReport>> {
    let with_ort = vec![cfg.backend == Backend::Both; models.len()];
    bench_side_by_side_ort_for(models, &with_ort, cfg)
}

/// [`bench_side_by_side`] with ONNX Runtime as a contestant only for the models whose
/// `with_ort` is set (a study's reference row), whatever `cfg.backend` says.
pub fn bench_side_by_side_ort_for(
    models: &[&Path],
    with_ort: &[bool],
    cfg: &HostBenchConfig,
) -> Result<Vec<BenchReport>> {
    if cfg.backend == Backend::Ort {
        return Err(Error::option_value(
            "backend",
            "ort",
            "models are benchmarked side by side with tract or both",
        ));
    }
    #[cfg(not(feature = "ort"))]
    if with_ort.iter().any(|&o| o) {
        return Err(no_ort());
    }
    let many = models.len() > 1;
    let mut contenders = Vec::with_capacity(models.len());
    let mut sides = Vec::with_capacity(models.len());
    for (k, path) in models.iter().enumerate() {
        let label_cfg = HostBenchConfig {
            // One label for several models would make their rows indistinguishable.
            label: if many { None } else { cfg.label.clone() },
            ..cfg.clone()
        };
        let ort = with_ort.get(k).copied().unwrap_or(false);
        let (c, s) = Contender::load(path, &label_cfg, ort)?;
        contenders.push(c);
        sides.push(s);
    }
    let mut tract_runs: Vec<RuntimeRuns> = contenders
        .iter()
        .map(|c| RuntimeRuns::new(&c.loaded, &c.inputs))
        .collect();
    // Contestant order: for each model, tract, then ORT, then the plain loop.
    let mut roles: Vec<(usize, Role)> = Vec::new();
    let mut contestants: Vec<&mut dyn Timed> = Vec::new();
    for (i, (runs, side)) in tract_runs.iter_mut().zip(sides.iter_mut()).enumerate() {
        contestants.push(runs);
        roles.push((i, Role::Tract));
        #[cfg(feature = "ort")]
        if let Some(o) = side.ort.as_mut() {
            contestants.push(o);
            roles.push((i, Role::Ort));
        }
        if let Some(r) = side.raw.as_mut() {
            contestants.push(r);
            roles.push((i, Role::Raw));
        }
    }
    let pb = crate::runner::progress_bar(cfg.runs.max(1), "benchmark (interleaved runs)");
    let samples = interleave_observed(&mut contestants, cfg.runs, BLOCK_RUNS, &mut |done| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    drop(contestants);
    let mut per_model: Vec<[Option<Vec<f64>>; 3]> =
        contenders.iter().map(|_| [None, None, None]).collect();
    for ((i, role), s) in roles.into_iter().zip(samples) {
        per_model[i][role as usize] = Some(s);
    }
    let mut reports = Vec::with_capacity(contenders.len());
    for (((c, mut side), runs), [tract, ort, raw]) in
        contenders.iter().zip(sides).zip(&tract_runs).zip(per_model)
    {
        side.report.device.finish();
        set_timings(
            &mut side.report,
            &c.loaded,
            runs,
            tract.unwrap_or_default(),
            cfg.warmup,
        );
        #[cfg(feature = "ort")]
        if let (Some(o), Some(ort)) = (side.ort.as_ref(), ort) {
            side.report.comparison =
                Some(o.comparison(&side.report, &side.tract_outputs, ort, cfg)?);
        }
        #[cfg(not(feature = "ort"))]
        let _ = (ort, &side.tract_outputs);
        if let Some(raw) = raw {
            side.report.raw_tract = Some(raw_comparison(&side.report.latency, raw, cfg.warmup));
        }
        reports.push(side.report);
    }
    Ok(reports)
}

/// Which engine a contestant of [`bench_side_by_side`] is (the index into its samples).
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "ort"), allow(dead_code))]
enum Role {
    Tract = 0,
    Ort = 1,
    Raw = 2,
}

fn raw_comparison(ours: &LatencyStats, raw_samples: Vec<f64>, warmup: usize) -> RawTractComparison {
    let raw_latency = LatencyStats::from_samples(raw_samples, warmup);
    RawTractComparison {
        overhead_ratio_p50: ours.p50_ms / raw_latency.p50_ms,
        overhead_ratio_min: ours.min_ms / raw_latency.min_ms,
        raw_latency,
    }
}

/// The tract tensors as named f32 arrays, the form the ORT session takes.
pub fn as_named_arrays(
    specs: &[TensorSpec],
    tensors: &[Tensor],
) -> Result<Vec<(String, ArrayD<f32>)>> {
    specs
        .iter()
        .zip(tensors)
        .map(|(spec, t)| {
            let data = tensor_to_f32_vec(t)?;
            let array = ArrayD::from_shape_vec(t.shape().to_vec(), data).map_err(|e| {
                Error::tensor(&spec.name, format!("shape does not match data: {e}"))
            })?;
            Ok((spec.name.clone(), array))
        })
        .collect()
}

#[cfg(not(feature = "ort"))]
fn bench_ort(_model: &Path, _cfg: &HostBenchConfig) -> Result<BenchReport> {
    Err(no_ort())
}

#[cfg(not(feature = "ort"))]
fn bench_both(_model: &Path, _cfg: &HostBenchConfig) -> Result<BenchReport> {
    Err(no_ort())
}

#[cfg(not(feature = "ort"))]
fn no_ort() -> Error {
    Error::option(
        "backend",
        "this edgeslim was built without the `ort` feature; only tract is available",
    )
}

/// Per output (in tract's graph order, matched by name): largest |tract − ORT| and largest
/// |ORT|. A NaN on one side only counts as `f64::MAX` (JSON has no infinity); NaN on both
/// sides agrees.
pub fn compare_outputs(
    tract: &[(String, ArrayD<f32>)],
    other: &[(String, ArrayD<f32>)],
) -> Result<Vec<OutputDiff>> {
    tract
        .iter()
        .map(|(name, a)| {
            let (_, b) = other
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| Error::tensor(name, "output missing from ONNX Runtime's results"))?;
            if a.shape() != b.shape() {
                return Err(Error::tensor(
                    name,
                    format!(
                        "tract and ONNX Runtime disagree on the output shape: {:?} vs {:?}",
                        a.shape(),
                        b.shape()
                    ),
                ));
            }
            let mut max_abs_diff = 0.0f64;
            let mut max_abs_reference = 0.0f64;
            for (&x, &y) in a.iter().zip(b.iter()) {
                let d = match (x.is_nan(), y.is_nan()) {
                    (true, true) => 0.0,
                    (false, false) => (x as f64 - y as f64).abs(),
                    _ => f64::MAX,
                };
                max_abs_diff = max_abs_diff.max(d);
                if y.is_finite() {
                    max_abs_reference = max_abs_reference.max((y as f64).abs());
                }
            }
            Ok(OutputDiff {
                name: name.clone(),
                shape: a.shape().to_vec(),
                max_abs_diff,
                max_abs_reference,
            })
        })
        .collect()
}

/// The engines-side of the benchmark, compiled only with ONNX Runtime support.
#[cfg(feature = "ort")]
mod with_ort {
    use super::*;
    use crate::engines::ort::OrtSession;
    use edgeslim_runtime::device::{peak_rss_bytes, DeviceInfo};
    use edgeslim_runtime::model::{LoadTimings, TypedOnnx};
    use edgeslim_runtime::report::{EngineComparison, MemoryInfo, ModelInfo, SCHEMA_VERSION};

    /// ONNX Runtime alone. tract still parses and types the model (without optimising it) to
    /// resolve the input shapes the same way and fill the model facts; it is dropped before
    /// ORT loads so the memory figures are ORT's.
    pub(super) fn bench_ort(model: &Path, cfg: &HostBenchConfig) -> Result<BenchReport> {
        let typed = TypedOnnx::load(model, &load_options(cfg, false))?;
        let info = model_info_from_typed(&typed);
        let (in_specs, mut out_specs) = (typed.inputs.clone(), typed.outputs.clone());
        drop(typed);
        let tensors = random_inputs(&in_specs, cfg.seed);
        let named = as_named_arrays(&in_specs, &tensors)?;
        drop(tensors);

        reset_peak_rss();
        let before = current_rss_bytes();
        crate::engines::ort::environment()?;
        let t_load = std::time::Instant::now();
        let mut session = OrtSession::load(model, cfg.threads)?;
        let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
        let after = current_rss_bytes();
        let prepared = session.prepare(&named)?;

        let mut device = DeviceInfo::probe();
        let (samples, outputs) = session.time_runs(&prepared, cfg.warmup, cfg.runs)?;
        device.finish();
        // ORT's own output shapes: they are what ran, even where tract could not infer them.
        for spec in &mut out_specs {
            if let Some((_, a)) = outputs.iter().find(|(n, _)| *n == spec.name) {
                spec.shape = a.shape().to_vec();
            }
        }
        let latency = LatencyStats::from_samples(samples, cfg.warmup);
        Ok(BenchReport {
            schema_version: SCHEMA_VERSION,
            tool: ToolInfo::this("edgeslim"),
            label: cfg.label.clone().unwrap_or_else(|| default_label(model)),
            created_unix: unix_now(),
            model: info,
            backend: "ort".into(),
            threads: cfg.threads.max(1),
            optimized: true,
            inputs: in_specs,
            outputs: out_specs,
            load: LoadTimings {
                load_ms,
                typing_ms: 0.0,
                optimize_ms: 0.0,
            },
            throughput_per_s: latency.throughput_per_s(),
            latency,
            memory: MemoryInfo {
                rss_before_load_bytes: before,
                rss_after_load_bytes: after,
                peak_rss_bytes: peak_rss_bytes(),
            },
            profile: None,
            device,
            target_profile: cfg.target_profile.clone(),
            comparison: None,
            raw_tract: None,
            pipeline: None,
            tiled: None,
        })
    }

    /// ONNX Runtime beside tract in a side-by-side benchmark: loaded after tract (so the
    /// report's memory figures are tract's), warmed up on the same input values, timed in the
    /// interleaved blocks, and compared with tract's outputs.
    pub(super) struct OrtSide {
        session: OrtSession,
        prepared: crate::engines::ort::OrtInputs,
        outputs: crate::engines::ort::NamedArrays,
    }

    impl OrtSide {
        pub(super) fn load(
            path: &Path,
            loaded: &LoadedModel,
            inputs: &[Tensor],
            cfg: &HostBenchConfig,
        ) -> Result<OrtSide> {
            let named = as_named_arrays(&loaded.inputs, inputs)?;
            let mut session = OrtSession::load(path, cfg.threads)?;
            let prepared = session.prepare(&named)?;
            let (_, outputs) = session.time_runs(&prepared, cfg.warmup.saturating_sub(1), 1)?;
            Ok(OrtSide {
                session,
                prepared,
                outputs,
            })
        }

        pub(super) fn comparison(
            &self,
            report: &BenchReport,
            tract_outputs: &[Tensor],
            samples: Vec<f64>,
            cfg: &HostBenchConfig,
        ) -> Result<EngineComparison> {
            let tract_named = named_outputs(&report.outputs, tract_outputs)?;
            let other_latency = LatencyStats::from_samples(samples, cfg.warmup);
            Ok(EngineComparison {
                other_backend: "onnxruntime".into(),
                other_version: OrtSession::version(),
                latency_ratio_mean: report.latency.mean_ms / other_latency.mean_ms,
                latency_ratio_p50: report.latency.p50_ms / other_latency.p50_ms,
                other_latency,
                outputs: compare_outputs(&tract_named, &self.outputs)?,
            })
        }
    }

    impl Timed for OrtSide {
        fn block(
            &mut self,
            warm: usize,
            k: usize,
            samples: &mut Vec<f64>,
        ) -> edgeslim_runtime::Result<()> {
            let (s, _) = self
                .session
                .time_runs(&self.prepared, warm, k)
                .map_err(|e| edgeslim_runtime::RuntimeError::Other(e.to_string()))?;
            samples.extend(s);
            Ok(())
        }
    }

    fn named_outputs(
        specs: &[TensorSpec],
        tensors: &[Tensor],
    ) -> Result<Vec<(String, ArrayD<f32>)>> {
        if specs.len() != tensors.len() {
            return Err(Error::Graph(format!(
                "tract produced {} outputs for {} graph outputs",
                tensors.len(),
                specs.len()
            )));
        }
        as_named_arrays(specs, tensors)
    }

    fn model_info_from_typed(t: &TypedOnnx) -> ModelInfo {
        let total_macs = t
            .nodes
            .iter()
            .map(|n| edgeslim_runtime::macs::node_macs(n, &t.tensor_shapes).unwrap_or(0))
            .sum();
        ModelInfo {
            path: t.path.display().to_string(),
            sha256: t.sha256.clone(),
            size_bytes: t.size_bytes,
            opset: t.opset,
            producer: t.producer.clone(),
            onnx_nodes: t.nodes.len(),
            // No tract plan is built for an ORT-only run.
            plan_nodes: 0,
            total_macs,
        }
    }

    fn default_label(model: &Path) -> String {
        model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    }

    fn unix_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Reset the kernel's peak-RSS mark (VmHWM) so an ORT-only report's peak is not tract's
    /// parsing peak. Linux ≥ 4.0; elsewhere, or if refused, the peak stays cumulative.
    fn reset_peak_rss() {
        if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
            log::debug!("could not reset the peak RSS mark: {e}");
        }
    }
}

#[cfg(feature = "ort")]
use with_ort::bench_ort;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    fn arr(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
    }

    #[test]
    fn backend_parses_names() {
        assert_eq!("tract".parse::<Backend>().unwrap(), Backend::Tract);
        assert_eq!("ORT".parse::<Backend>().unwrap(), Backend::Ort);
        assert_eq!("onnxruntime".parse::<Backend>().unwrap(), Backend::Ort);
        assert_eq!("both".parse::<Backend>().unwrap(), Backend::Both);
        let e = "tf".parse::<Backend>().unwrap_err().to_string();
        assert!(e.contains("tract, ort or both"), "{e}");
        assert_eq!(Backend::Both.to_string(), "both");
    }

    #[test]
    fn output_diffs_are_per_output_and_by_name() {
        let tract = vec![
            ("a".to_string(), arr(&[2], &[1.0, -2.0])),
            ("b".to_string(), arr(&[1], &[f32::NAN])),
        ];
        let ort = vec![
            ("b".to_string(), arr(&[1], &[f32::NAN])),
            ("a".to_string(), arr(&[2], &[1.5, -3.0])),
        ];
        let d = compare_outputs(&tract, &ort).unwrap();
        assert_eq!(d[0].name, "a");
        assert_eq!(d[0].shape, vec![2]);
        assert_eq!(d[0].max_abs_diff, 1.0);
        assert_eq!(d[0].max_abs_reference, 3.0);
        assert_eq!(d[1].max_abs_diff, 0.0, "NaN on both sides agrees");

        let one_nan = vec![("a".to_string(), arr(&[2], &[f32::NAN, -3.0]))];
        assert_eq!(
            compare_outputs(&tract[..1], &one_nan).unwrap()[0].max_abs_diff,
            f64::MAX
        );

        let wrong_shape = vec![("a".to_string(), arr(&[1, 2], &[1.0, 2.0]))];
        let e = compare_outputs(&tract[..1], &wrong_shape)
            .unwrap_err()
            .to_string();
        assert!(e.contains("disagree on the output shape"), "{e}");
        let e = compare_outputs(&tract, &ort[..1]).unwrap_err().to_string();
        assert!(e.contains("'a'") && e.contains("missing"), "{e}");
    }

    #[test]
    fn tract_tensors_become_named_arrays() {
        let spec = TensorSpec {
            name: "x".into(),
            dtype: "float".into(),
            declared: vec![],
            shape: vec![2, 2],
        };
        let t = random_inputs(std::slice::from_ref(&spec), 3);
        let named = as_named_arrays(std::slice::from_ref(&spec), &t).unwrap();
        assert_eq!(named[0].0, "x");
        assert_eq!(named[0].1.shape(), &[2, 2]);
        assert_eq!(
            named[0].1.iter().copied().collect::<Vec<_>>(),
            tensor_to_f32_vec(&t[0]).unwrap()
        );
    }
}
