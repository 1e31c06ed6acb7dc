//! One compression pipeline: a [`Job`] names the model, the method and its settings, where to
//! write and how to measure; [`run`] loads, calibrates, compresses, recovers, saves and
//! measures (every method with the same harness, `edgeslim_measure::facts`), and returns an
//! [`Outcome`]: the method's own report and a [`Summary`] with the same fields for every
//! method, so any two rows compare (the study, `edgeslim compress` and the reports all read
//! it). A new method adds a `Job` variant, its report type, and a `Summary::of_*`.

use crate::lowrank::report::{CompressJob, CompressReport};
use crate::lowrank::{Method as LowrankMethod, RankRule};
use crate::prune::job::{MeasureSettings, PruneJob};
use crate::prune::report::PruneReport;
use crate::quantize::{Precision, QuantizeJob, QuantizeReport};
use crate::Result;
use edgeslim_measure::facts::ModelFacts;
use edgeslim_measure::fidelity::Fidelity;
use serde::{Deserialize, Serialize};

/// A compression to run.
#[derive(Debug, Clone)]
pub enum Job {
    Lowrank(CompressJob),
    Quantize(QuantizeJob),
    Prune(PruneJob),
}

/// A method's own report. Made once per job, so the size difference of the variants costs
/// nothing worth a box.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum MethodReport {
    Lowrank(CompressReport),
    Quantize(QuantizeReport),
    Prune(PruneReport),
}

/// What a job did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub summary: Summary,
    pub report: MethodReport,
}

/// The figures every method reports the same way, measured the same way: a row of a study.
/// `None` where the run did not measure it (no benchmark runs, no evaluation data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `lowrank-weight`, `lowrank-feature`, `prune`, `fp16`, `fp16-compute`, `int8-qdq`,
    /// `int8-qop`.
    pub method: String,
    /// The method's settings in words (`budget 0.5`, `ratio 0.3, l1`, `per-channel`).
    pub settings: String,
    pub model: String,
    pub output: String,
    pub params_before: u64,
    pub params_after: u64,
    pub macs_before: u64,
    pub macs_after: u64,
    /// tract p50 latency of the two models, measured side by side.
    pub latency_p50_ms_before: Option<f64>,
    pub latency_p50_ms_after: Option<f64>,
    /// before / after of the p50s.
    pub speedup: Option<f64>,
    /// Share of evaluation samples whose top-1 class (arg-max of the first output) is the
    /// original's.
    pub top1_agreement: Option<f64>,
    /// Mean cosine of the first output against the original's.
    pub cosine_mean: Option<f64>,
    /// Accuracy on labelled evaluation data, of the original and of the compressed model.
    pub accuracy_before: Option<f64>,
    pub accuracy_after: Option<f64>,
}

fn ratio(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if a > 0.0 => Some(b / a),
        _ => None,
    }
}

impl Summary {
    pub fn of_lowrank(r: &CompressReport) -> Summary {
        let method = match r.method {
            LowrankMethod::Weight => "lowrank-weight",
            LowrankMethod::Feature => "lowrank-feature",
        };
        let settings = match (&r.search, &r.rule) {
            (Some(s), _) => format!("rank search, tolerance {}", s.tolerance),
            (None, RankRule::Budget(b)) => format!("budget {b}"),
            (None, RankRule::Fixed(k)) => format!("rank {k}"),
        };
        Summary::of_facts(
            method,
            settings,
            &r.model,
            &r.output,
            [&r.before, &r.after],
            r.fidelity.as_ref(),
        )
    }

    pub fn of_quantize(r: &QuantizeReport) -> Summary {
        let (method, settings) = match &r.precision {
            Precision::Fp16 { compute: false } => ("fp16", "fp16 weights".to_string()),
            Precision::Fp16 { compute: true } => {
                ("fp16-compute", "fp16 weights and compute".into())
            }
            Precision::Int8 {
                format,
                per_channel,
                reduce_range,
                ..
            } => (
                match format {
                    crate::quantize::Int8Format::Qdq => "int8-qdq",
                    crate::quantize::Int8Format::Qoperator => "int8-qop",
                },
                format!(
                    "{}{}",
                    if *per_channel {
                        "per-channel"
                    } else {
                        "per-tensor"
                    },
                    if *reduce_range { ", 7-bit weights" } else { "" }
                ),
            ),
        };
        Summary::of_facts(
            method,
            settings,
            &r.model,
            &r.output,
            [&r.before, &r.after],
            r.fidelity.as_ref(),
        )
    }

    /// The methods that report `ModelFacts` before and after and the measure crate's fidelity.
    fn of_facts(
        method: &str,
        settings: String,
        model: &str,
        output: &str,
        [before, after]: [&ModelFacts; 2],
        f: Option<&Fidelity>,
    ) -> Summary {
        Summary {
            method: method.into(),
            settings,
            model: model.into(),
            output: output.into(),
            params_before: before.params,
            params_after: after.params,
            macs_before: before.macs,
            macs_after: after.macs,
            latency_p50_ms_before: before.latency_p50_ms,
            latency_p50_ms_after: after.latency_p50_ms,
            speedup: ratio(before.latency_p50_ms, after.latency_p50_ms),
            top1_agreement: f.map(|f| f.top1_agreement),
            cosine_mean: f.map(|f| f.mean_cosine),
            accuracy_before: f.and_then(|f| f.accuracy_reference),
            accuracy_after: f.and_then(|f| f.accuracy),
        }
    }

    pub fn of_prune(r: &PruneReport) -> Summary {
        let f = r.fidelity.as_ref();
        let first = f.and_then(|f| f.outputs.first());
        let l = r.latency.as_ref();
        Summary {
            method: "prune".into(),
            settings: format!(
                "ratio {}, {}{}",
                r.ratio,
                r.criterion,
                if r.global { ", global" } else { "" }
            ),
            model: r.model.clone(),
            output: r.output.clone().unwrap_or_default(),
            params_before: r.totals.params_before,
            params_after: r.totals.params_after,
            macs_before: r.totals.macs_before,
            macs_after: r.totals.macs_after,
            latency_p50_ms_before: l.map(|l| l.before_ms),
            latency_p50_ms_after: l.map(|l| l.after_ms),
            speedup: l.map(|l| l.speedup),
            top1_agreement: first.and_then(|o| o.top1_agreement),
            cosine_mean: first.map(|o| o.cosine_mean),
            accuracy_before: f.and_then(|f| f.accuracy_before),
            accuracy_after: f.and_then(|f| f.accuracy_after),
        }
    }

    pub fn of(report: &MethodReport) -> Summary {
        match report {
            MethodReport::Lowrank(r) => Summary::of_lowrank(r),
            MethodReport::Quantize(r) => Summary::of_quantize(r),
            MethodReport::Prune(r) => Summary::of_prune(r),
        }
    }
}

/// Run a job end to end. A pruning job without measure settings is measured with the
/// defaults (20 runs, one thread): an outcome always has its figures.
pub fn run(job: &Job, progress: &dyn Fn(&str)) -> Result<Outcome> {
    let report = match job {
        Job::Lowrank(j) => MethodReport::Lowrank(crate::lowrank::report::run_compress(j)?),
        Job::Quantize(j) => MethodReport::Quantize(crate::quantize::run_quantize(j)?),
        Job::Prune(j) => {
            let mut j = j.clone();
            j.measure.get_or_insert(MeasureSettings {
                runs: 20,
                threads: 1,
            });
            let run = crate::prune::job::run(&j, progress)?;
            match run.report {
                Some(r) => MethodReport::Prune(r),
                None => {
                    return Err(crate::Error::Other(
                        "pruning returned no report although it was asked to measure".into(),
                    ))
                }
            }
        }
    };
    Ok(Outcome {
        summary: Summary::of(&report),
        report,
    })
}
