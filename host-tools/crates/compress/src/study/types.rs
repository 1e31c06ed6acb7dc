//! The study's data: `study.json`, written after every finished row and re-read to resume.

use super::plan::Method;
use super::recover::{Recover, RecoveryFacts};
use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning; a folder from another schema is not resumed.
pub const SCHEMA: u32 = 3;

/// What a row's quality is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Accuracy on the data's labels (labelled data only).
    Accuracy,
    /// Share of held-out samples whose top-1 class is the original's (no labels needed).
    Agreement,
    /// Mean cosine of the first output against the original's, in % (dense outputs, where a
    /// top-1 class means nothing).
    Cosine,
    /// F1 of the text boxes a detection map gives (PP-OCR's DB post-processing) against the
    /// original's boxes, in % (probability maps `[1, 1, H, W]`; no labels needed).
    BoxF1,
    /// OTB success AUC on the benchmark sequences, in % (trackers).
    Auc,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Agreement => "agreement",
            Metric::Cosine => "cosine",
            Metric::BoxF1 => "box-f1",
            Metric::Auc => "auc",
        }
    }
}

/// How close a model's held-out outputs are to the original's (shares in [0, 1]); the
/// figures a kind of model has no meaning for are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub accuracy: Option<f64>,
    /// Classifiers: top-1 agreement with the original. Trackers: the share of frames whose
    /// box overlaps the original tracker's at IoU ≥ 0.5.
    pub agreement: f64,
    /// Mean cosine of the first output against the original's (not for trackers).
    pub cosine: Option<f64>,
    /// Detection maps: F1 of the text boxes against the original's, and the pixel IoU of the
    /// binarised maps ([`edgeslim_measure::detection`]).
    pub box_f1: Option<f64>,
    pub map_iou: Option<f64>,
    /// Trackers: OTB success AUC and precision at 20 px on the benchmark sequences.
    pub auc: Option<f64>,
    pub precision_20px: Option<f64>,
}

impl Quality {
    /// The metric in percent (points), or `None` when it was not measured (accuracy without
    /// labels).
    pub fn points(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Accuracy => self.accuracy.map(|a| 100.0 * a),
            Metric::Agreement => Some(100.0 * self.agreement),
            Metric::Cosine => self.cosine.map(|c| 100.0 * c),
            Metric::BoxF1 => self.box_f1.map(|f| 100.0 * f),
            Metric::Auc => self.auc.map(|a| 100.0 * a),
        }
    }
}

/// The quality figures a page shows, named, in percent.
pub const FIGURES: [&str; 7] = [
    "accuracy %",
    "agreement %",
    "cosine %",
    "box F1 %",
    "map IoU %",
    "AUC %",
    "P@20 %",
];

impl Quality {
    /// [`FIGURES`]' values (`None` where not measured).
    pub fn figures(&self) -> [Option<f64>; 7] {
        let pct = |v: Option<f64>| v.map(|v| 100.0 * v);
        [
            pct(self.accuracy),
            // A map's arg-max pixel is no class: its agreement means nothing.
            self.box_f1.is_none().then_some(100.0 * self.agreement),
            pct(self.cosine),
            pct(self.box_f1),
            pct(self.map_iou),
            pct(self.auc),
            pct(self.precision_20px),
        ]
    }
}

/// tract (or ONNX Runtime) latency of one contestant of the interleaved benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub mean_ms: f64,
    pub runs: usize,
}

/// The original model: the yardstick rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub params: u64,
    pub file_bytes: u64,
    pub macs: u64,
    pub quality: Quality,
    pub tract: Option<Latency>,
    pub ort: Option<Latency>,
    /// ONNX Runtime's version, or why it could not be measured.
    pub ort_note: Option<String>,
    /// Resident memory the loaded model added (tract, one process).
    pub rss_load_bytes: Option<u64>,
}

/// The compressed model on tract and ONNX Runtime, same held-out inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineCheck {
    pub samples: usize,
    /// Largest |tract − ORT| over the first output, relative to its largest |value|.
    pub max_rel_diff: Option<f64>,
    pub error: Option<String>,
}

impl EngineCheck {
    /// The check of `samples` inputs: the worst relative difference, or why ONNX Runtime could
    /// not run them.
    pub fn of(samples: usize, worst: crate::Result<f64>) -> EngineCheck {
        match worst {
            Ok(w) => EngineCheck {
                samples,
                max_rel_diff: Some(w),
                error: None,
            },
            Err(e) => EngineCheck {
                samples: 0,
                max_rel_diff: None,
                error: Some(e.to_string()),
            },
        }
    }
}

/// One variant, as built and measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub method: Method,
    pub budget: Option<f64>,
    /// Each method step's own setting the budget came to (`prune ratio 0.293`, ...).
    pub settings: Vec<String>,
    /// The model, relative to the study folder.
    pub file: String,
    pub sha256: String,
    pub file_bytes: u64,
    pub params: u64,
    pub macs: u64,
    /// Before recovery (when there was one) and as written.
    pub quality_compressed: Option<Quality>,
    pub quality: Quality,
    pub recovery: Option<RecoveryFacts>,
    pub notes: Vec<String>,
    /// Compression (and recovery) wall time.
    pub seconds: f64,
    pub engines: EngineCheck,
    /// Filled by the interleaved benchmark at the end.
    pub latency: Option<Latency>,
    pub rss_load_bytes: Option<u64>,
    /// Original on tract p50 / this p50, and original on ONNX Runtime p50 / this p50.
    pub speedup_vs_tract: Option<f64>,
    pub speedup_vs_ort: Option<f64>,
    /// Quality lost against the original, in points of the study's metric.
    pub drop_points: Option<f64>,
    pub pareto: bool,
}

/// A variant the study could not build, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

/// `study.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Study {
    pub schema: u32,
    pub tool_version: String,
    pub model: String,
    pub model_sha256: String,
    pub input_shape: Vec<usize>,
    pub data: String,
    pub split: String,
    pub held_out_samples: usize,
    pub labels: bool,
    pub metric: Metric,
    pub recover: Recover,
    pub recover_epochs: usize,
    /// What the budgets are fractions of.
    #[serde(default)]
    pub budget_by: super::budget::BudgetBy,
    pub seed: u64,
    /// The board profile the thread count comes from (`host` for this machine).
    pub target: String,
    pub threads: usize,
    /// Why the thread count differs from the target's cores, when it does.
    pub threads_note: Option<String>,
    pub bench_runs: usize,
    pub reference: Reference,
    pub rows: Vec<Row>,
    /// Variants that could not be built at their budget (below what the method can reach on
    /// this model), with the reason; tried again on resume.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Set once every row is built and the benchmark has run.
    pub complete: bool,
}

impl Study {
    /// The settings a resumed study must share with the folder's (everything that changes a
    /// row's content).
    pub fn same_settings(&self, other: &Study) -> Option<String> {
        let checks: [(&str, String, String); 9] = [
            ("schema", self.schema.to_string(), other.schema.to_string()),
            (
                "model sha256",
                self.model_sha256.clone(),
                other.model_sha256.clone(),
            ),
            (
                "input shape",
                format!("{:?}", self.input_shape),
                format!("{:?}", other.input_shape),
            ),
            ("data", self.data.clone(), other.data.clone()),
            ("labels", self.labels.to_string(), other.labels.to_string()),
            (
                "recovery",
                self.recover.as_str().into(),
                other.recover.as_str().into(),
            ),
            (
                "recovery epochs",
                self.recover_epochs.to_string(),
                other.recover_epochs.to_string(),
            ),
            ("seed", self.seed.to_string(), other.seed.to_string()),
            (
                "budgets' unit",
                self.budget_by.as_str().into(),
                other.budget_by.as_str().into(),
            ),
        ];
        checks
            .into_iter()
            .find(|(_, a, b)| a != b)
            .map(|(what, a, b)| format!("{what} differs ({b} in the folder, {a} now)"))
    }

    /// Quality of the original in the study's metric, in points.
    pub fn reference_points(&self) -> Option<f64> {
        self.reference.quality.points(self.metric)
    }

    /// The fastest measured row losing at most `max_drop` points.
    pub fn fastest_within(&self, max_drop: f64) -> Option<&Row> {
        let base = self.reference_points()?;
        let pts: Vec<(f64, f64)> = self
            .rows
            .iter()
            .map(|r| {
                (
                    r.latency.as_ref().map_or(f64::NAN, |l| l.p50_ms),
                    r.quality.points(self.metric).unwrap_or(f64::NAN),
                )
            })
            .collect();
        super::pareto::fastest_within(&pts, base - max_drop).map(|i| &self.rows[i])
    }
}
