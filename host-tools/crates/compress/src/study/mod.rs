//! `edgeslim study`: every method at every budget on one model, built by the same code,
//! judged on the same held-out samples against the original, and timed in one interleaved
//! benchmark at the target's thread count, with the original on tract and on ONNX Runtime as
//! reference rows. The study folder holds every variant, `study.json` (rewritten after each
//! finished row: an interrupted study resumes, a half-built row is rebuilt) and the page the
//! report crate renders from it.
//!
//! - [`plan`]: methods × budgets → variants;
//! - [`budget`]: whole-model parameter budgets → each method's own knob;
//! - [`build`]: one variant (architecture steps, recovery, precision step);
//! - [`recover`]: fine-tuning or label-free distillation from the original;
//! - [`measure`]: quality, the two-engine check, the interleaved benchmark;
//! - [`pareto`]: the front and the fastest variant within a drop;
//! - [`tracker`]: the same for a Siamese tracker pair, judged by tracking AUC.

pub mod budget;
pub mod build;
pub mod measure;
pub mod pareto;
pub mod plan;
pub mod recover;
pub mod tracker;
pub mod types;

use crate::{Error, Result};
use edgeslim_data::calib::{self, CalibSpec, ModelInput};
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::fsutil::{sha256_file, write_atomic};
use edgeslim_runtime::InputShape;
use plan::{Method, Variant};
use recover::{RecoverSettings, TeacherOutputs};
use std::path::{Path, PathBuf};
use std::time::Instant;
pub use types::{Metric, Row, Study};

/// The data file of a study folder.
pub const DATA: &str = "study.json";
/// Where the variants go inside the folder.
pub const VARIANTS: &str = "variants";

/// Everything a study needs.
#[derive(Debug, Clone)]
pub struct StudyConfig {
    pub model: PathBuf,
    pub input_shapes: Vec<InputShape>,
    pub data: StudyData,
    /// Judge (and fine-tune) with the data's labels; without, quality is agreement with the
    /// original.
    pub labels: bool,
    /// Default: accuracy with labels, agreement without.
    pub metric: Option<Metric>,
    pub methods: Vec<Method>,
    pub budgets: Vec<f64>,
    /// What the budgets are fractions of.
    pub budget_by: budget::BudgetBy,
    pub recover: RecoverSettings,
    pub calib_samples: Option<usize>,
    pub target: String,
    pub threads: usize,
    pub threads_note: Option<String>,
    pub bench_runs: usize,
    pub out: PathBuf,
    /// Start over instead of resuming the folder's study.
    pub fresh: bool,
}

/// What a study judges its variants on.
#[derive(Debug, Clone, PartialEq)]
pub enum StudyData {
    /// Calibration and held-out samples of a single-input model.
    Samples(CalibSpec),
    /// Benchmark sequences of a tracker pair.
    Sequences(tracker::Sequences),
}

impl std::fmt::Display for StudyData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StudyData::Samples(s) => write!(f, "{s}"),
            StudyData::Sequences(s) => write!(f, "{s}"),
        }
    }
}

/// Say what the study is doing (one line per step; the CLI prints or logs it).
pub type Progress<'a> = &'a dyn Fn(&str);

/// Run (or resume) a study; returns it complete, with `study.json` written.
pub fn run(cfg: &StudyConfig, progress: Progress) -> Result<Study> {
    let started = Instant::now();
    let study = match &cfg.data {
        StudyData::Samples(spec) => run_samples(cfg, spec, progress)?,
        StudyData::Sequences(seqs) => tracker::run(cfg, seqs, progress)?,
    };
    log::info!("study done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(study)
}

/// The study of a single-input model on calibration and held-out samples.
fn run_samples(cfg: &StudyConfig, spec: &CalibSpec, progress: Progress) -> Result<Study> {
    let original = OnnxModel::load(&cfg.model)?;
    let input = ModelInput::resolve(&original, &cfg.input_shapes)?;
    let input_shapes = vec![InputShape {
        name: Some(input.name.clone()),
        dims: input.shape.clone(),
    }];
    progress(&format!("loading {spec} for {:?}", input.shape));
    let mut data = calib::load(spec, &input, None)?;
    if let Some(n) = cfg.calib_samples {
        data.calib = spread(&data.calib, n);
    }
    if data.held_out.is_empty() {
        data.held_out = data.calib.clone();
        data.split_rule
            .push_str(" (no held-out samples: judged on the calibration split)");
    }
    if !cfg.labels {
        data.calib.labels = None;
        data.held_out.labels = None;
    }
    let metric = cfg.metric.unwrap_or(if cfg.labels {
        Metric::Accuracy
    } else {
        Metric::Agreement
    });
    if metric == Metric::Accuracy && data.held_out.labels.is_none() {
        return Err(Error::option(
            "metric",
            format!(
                "accuracy needs labelled data ('{spec}' with --labels); use agreement or cosine"
            ),
        ));
    }
    let variants = plan::variants(&cfg.methods, &cfg.budgets)?;
    std::fs::create_dir_all(cfg.out.join(VARIANTS)).map_err(|e| Error::io(&cfg.out, e))?;

    progress("running the original on the calibration and held-out splits");
    let teacher = TeacherOutputs {
        calib: measure::first_outputs(&original, &input, &data.calib)?,
        held_out: measure::first_outputs(&original, &input, &data.held_out)?,
        shape: measure::first_output_shape(&original, &input, &data.held_out)?,
    };
    let reference_quality = measure::quality(
        &teacher.held_out,
        &teacher.held_out,
        &data.held_out,
        &teacher.shape,
    );
    if reference_quality.points(metric).is_none() {
        return Err(Error::option(
            "metric",
            format!(
                "{} cannot be measured on {} (first output {:?}): box-f1 needs a one-channel \
                 probability map [1, 1, H, W], auc a tracker folder",
                metric.as_str(),
                cfg.model.display(),
                teacher.shape
            ),
        ));
    }
    let (file_bytes, sha) = sha256_file(&cfg.model).map_err(|e| Error::io(&cfg.model, e))?;
    let facts = edgeslim_onnx::inspect::inspect(&original, &input_shapes)?;
    let mut study = Study::start(
        cfg,
        Subject {
            model_sha256: sha,
            input_shape: input.shape.clone(),
            data: data.spec.clone(),
            split: data.split_rule.clone(),
            held_out_samples: data.held_out.len(),
            labels: cfg.labels,
            metric,
            params: facts.total_params,
            file_bytes,
            macs: facts.total_macs,
            quality: reference_quality,
        },
    );
    let kept = kept_rows(cfg, &study)?;

    let ctx = build::Context {
        original: &original,
        budget_by: cfg.budget_by,
        original_count: match cfg.budget_by {
            budget::BudgetBy::Params => study.reference.params,
            budget::BudgetBy::Macs => study.reference.macs,
        },
        input: &input,
        input_shapes: &input_shapes,
        spec,
        data: &data,
        teacher: &teacher,
        recover: &cfg.recover,
    };
    build_rows(
        &mut study,
        &variants,
        &kept,
        &cfg.out,
        progress,
        |v, done| build_row(v, &ctx, &cfg.out, &data.held_out, done),
    )?;
    finish(&mut study, &cfg.model, &cfg.out, &input_shapes, progress)?;
    Ok(study)
}

/// What a kind of model (one graph, a tracker pair) fills in of a new study; the rest comes
/// from the configuration.
pub(crate) struct Subject {
    pub model_sha256: String,
    pub input_shape: Vec<usize>,
    pub data: String,
    pub split: String,
    pub held_out_samples: usize,
    pub labels: bool,
    pub metric: Metric,
    pub params: u64,
    pub file_bytes: u64,
    pub macs: u64,
    pub quality: types::Quality,
}

impl Study {
    /// A study with no rows yet: the original as the reference, the settings of `cfg`.
    pub(crate) fn start(cfg: &StudyConfig, s: Subject) -> Study {
        Study {
            schema: types::SCHEMA,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            model: cfg.model.display().to_string(),
            model_sha256: s.model_sha256,
            input_shape: s.input_shape,
            data: s.data,
            split: s.split,
            held_out_samples: s.held_out_samples,
            labels: s.labels,
            metric: s.metric,
            recover: cfg.recover.mode,
            recover_epochs: cfg.recover.epochs,
            budget_by: cfg.budget_by,
            seed: cfg.recover.seed,
            target: cfg.target.clone(),
            threads: cfg.threads,
            threads_note: cfg.threads_note.clone(),
            bench_runs: cfg.bench_runs,
            reference: types::Reference {
                params: s.params,
                file_bytes: s.file_bytes,
                macs: s.macs,
                quality: s.quality,
                tract: None,
                ort: None,
                ort_note: None,
                rss_load_bytes: None,
            },
            rows: Vec::new(),
            skipped: Vec::new(),
            complete: false,
        }
    }
}

/// The rows of the folder's earlier study to keep (none with `--fresh`).
pub(crate) fn kept_rows(cfg: &StudyConfig, study: &Study) -> Result<Vec<Row>> {
    if cfg.fresh {
        Ok(Vec::new())
    } else {
        resumable_rows(&cfg.out, study)
    }
}

/// Build every variant not kept from the last run, saving the study after each finished row;
/// a budget below what the method reaches is recorded as not built.
pub(crate) fn build_rows(
    study: &mut Study,
    variants: &[Variant],
    kept: &[Row],
    out: &Path,
    progress: Progress,
    mut build: impl FnMut(&Variant, &[Row]) -> Result<Row>,
) -> Result<()> {
    let total = variants.len();
    for (i, v) in variants.iter().enumerate() {
        if let Some(row) = kept.iter().find(|r| r.id == v.id) {
            progress(&format!(
                "[{}/{total}] {}: kept from the last run",
                i + 1,
                v.id
            ));
            study.rows.push(row.clone());
            continue;
        }
        check_interrupt()?;
        progress(&format!("[{}/{total}] {}: building", i + 1, v.id));
        let row = match build(v, &study.rows) {
            Ok(row) => row,
            // A budget below what the method reaches on this model is a finding, not a
            // failure of the study.
            Err(Error::Option {
                option: "budgets",
                reason,
                ..
            }) => {
                progress(&format!("[{}/{total}] {}: skipped: {reason}", i + 1, v.id));
                study.skipped.push(types::Skipped {
                    id: v.id.clone(),
                    reason,
                });
                continue;
            }
            Err(e) => return Err(Error::Other(format!("variant {}: {e}", v.id))),
        };
        // A recovery cut short by Ctrl-C returns its best epoch so far: not a finished row.
        check_interrupt()?;
        study.rows.push(row);
        save(out, study)?;
    }
    Ok(())
}

/// The interleaved benchmark of the original (`bench_model`) and every row, the ranking, and
/// the final `study.json`.
pub(crate) fn finish(
    study: &mut Study,
    bench_model: &Path,
    out: &Path,
    input_shapes: &[InputShape],
    progress: Progress,
) -> Result<()> {
    progress(&format!(
        "benchmarking the original (tract and ONNX Runtime) and {} variants side by side, \
         {} threads",
        study.rows.len(),
        study.threads
    ));
    measure::bench_all(study, bench_model, out, input_shapes)?;
    measure::rank(study);
    study.complete = true;
    save(out, study)
}

/// The id of the row holding the float part of a chain with a precision step (`prune@0.5`
/// for `prune+int8@0.5`), when the chain has an architecture part.
pub(crate) fn float_prefix(v: &Variant) -> Option<String> {
    v.method.precision()?;
    let steps: Vec<plan::Step> = v.method.steps[..v.method.steps.len() - 1].to_vec();
    if steps.is_empty() {
        return None;
    }
    Some(Variant::new(Method { steps }, v.budget).id)
}

/// At most `n` samples spread evenly over the split: the first `n` of a split stored class by
/// class (MNIST's) would hold only the first classes, and a model fine-tuned on them forgets
/// the others.
pub(crate) fn spread(set: &calib::Dataset, n: usize) -> calib::Dataset {
    if n == 0 || set.len() <= n {
        return set.clone();
    }
    let len = set.len();
    let picked: std::collections::BTreeSet<usize> = (0..n).map(|k| k * len / n).collect();
    set.filter(&set.name, |i| picked.contains(&i))
}

pub(crate) fn check_interrupt() -> Result<()> {
    if edgeslim_train::interrupt::requested() {
        return Err(Error::Other(
            "interrupted: finished rows are kept in study.json; run the same command to resume"
                .into(),
        ));
    }
    Ok(())
}

fn build_row(
    v: &Variant,
    ctx: &build::Context,
    out: &Path,
    held_out: &calib::Dataset,
    done: &[Row],
) -> Result<Row> {
    let t0 = Instant::now();
    let file = format!("{VARIANTS}/{}", v.file_name());
    let path = out.join(&file);
    let prefix = match float_prefix(v).and_then(|id| done.iter().find(|r| r.id == id)) {
        Some(row) => Some(build::Prefix {
            model: OnnxModel::load(&out.join(&row.file))?,
            row,
        }),
        None => None,
    };
    let reused_quality = prefix
        .as_ref()
        .and_then(|p| p.row.quality_compressed.clone());
    let built = build::build(v, ctx, &path, prefix)?;
    let seconds = t0.elapsed().as_secs_f64();
    let model = OnnxModel::load(&path)?;
    let outputs = measure::first_outputs(&model, ctx.input, held_out)?;
    let quality = measure::quality(
        &ctx.teacher.held_out,
        &outputs,
        held_out,
        &ctx.teacher.shape,
    );
    let quality_compressed = match &built.compressed {
        Some(m) => Some(measure::quality(
            &ctx.teacher.held_out,
            &measure::first_outputs(m, ctx.input, held_out)?,
            held_out,
            &ctx.teacher.shape,
        )),
        None => reused_quality,
    };
    let engines = measure::engine_check(&path, ctx.input, held_out, &outputs);
    let facts = edgeslim_onnx::inspect::inspect(&model, ctx.input_shapes)?;
    let (file_bytes, sha256) = sha256_file(&path).map_err(|e| Error::io(&path, e))?;
    Ok(Row {
        id: v.id.clone(),
        method: v.method.clone(),
        budget: v.budget,
        settings: built.settings,
        file,
        sha256,
        file_bytes,
        params: built.params,
        macs: facts.total_macs,
        quality_compressed,
        quality,
        recovery: built.recovery,
        notes: built.notes,
        seconds,
        engines,
        latency: None,
        rss_load_bytes: None,
        speedup_vs_tract: None,
        speedup_vs_ort: None,
        drop_points: None,
        pareto: false,
    })
}

/// Rows of the folder's earlier study that can be kept: same settings, and the variant file
/// still the one the row measured. A folder made with other settings is an error (the user
/// asked for a different study: `--fresh` or another folder).
fn resumable_rows(out: &Path, now: &Study) -> Result<Vec<Row>> {
    let path = out.join(DATA);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let before: Study = serde_json::from_str(&text).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a study this version can resume ({e}); use --fresh to start over",
            path.display()
        ))
    })?;
    if let Some(why) = now.same_settings(&before) {
        return Err(Error::Invalid(format!(
            "{}: the study in this folder was made with other settings: {why}; use --fresh to \
             start over or another -o folder",
            path.display()
        )));
    }
    Ok(before
        .rows
        .into_iter()
        .filter(|r| sha256_file(&out.join(&r.file)).is_ok_and(|(_, sha)| sha == r.sha256))
        .collect())
}

fn save(out: &Path, study: &Study) -> Result<()> {
    let text = serde_json::to_string_pretty(study)
        .map_err(|e| Error::Other(format!("encoding the study: {e}")))?;
    write_atomic(&out.join(DATA), text.as_bytes())?;
    Ok(())
}

/// Read a study folder's `study.json`.
pub fn load(dir: &Path) -> Result<Study> {
    let path = dir.join(DATA);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: not a study file: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_the_row_of_its_float_part() {
        let v = |m: &str, b| Variant::new(m.parse().unwrap(), b);
        assert_eq!(
            float_prefix(&v("prune+int8", Some(0.5))).as_deref(),
            Some("prune@0.5")
        );
        assert_eq!(
            float_prefix(&v("lowrank-search+fp16", None)).as_deref(),
            Some("lowrank-search")
        );
        assert_eq!(float_prefix(&v("int8", None)), None);
        assert_eq!(float_prefix(&v("prune", Some(0.5))), None);
    }

    #[test]
    fn a_capped_split_is_spread_over_every_class() {
        // 10 classes stored class by class, 10 samples each.
        let set = calib::Dataset {
            name: "d".into(),
            shape: vec![1],
            samples: (0..100).map(|i| vec![i as f32]).collect(),
            labels: Some((0..100).map(|i| i / 10).collect()),
            sources: (0..100).map(|i| i.to_string()).collect(),
        };
        let s = spread(&set, 20);
        assert_eq!(s.len(), 20);
        let mut classes = s.labels.clone().unwrap();
        classes.dedup();
        assert_eq!(classes, (0..10).collect::<Vec<_>>());
        assert_eq!(spread(&set, 500).len(), 100);
    }
}
