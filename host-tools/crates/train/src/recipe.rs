//! Training recipes: the TOML file `edgeslim train RECIPE.toml` reads.
//!
//! ```toml
//! name = "mnist-cnn"
//! seed = 0
//! output = "models/mnist-cnn"        # folder for model.onnx, card.md, card.json
//! batch_size = 64
//! label_smoothing = 0.1              # optional
//!
//! [model]                            # a family and its sizes (see train::families)
//! family = "cnn"
//! widths = [32, 64, 128]
//!
//! [data]
//! spec = "mnist"                     # "mnist" | "folder:PATH" | "tracking:SEED"
//! augment_shift = 2                  # random whole-pixel shifts (classifiers)
//!
//! [optimizer]
//! kind = "adamw"                     # "sgd" | "adamw"
//! lr = 0.002
//! weight_decay = 0.05
//!
//! [schedule]
//! epochs = 12
//! warmup_epochs = 1
//! kind = "cosine"                    # "cosine" | "constant"
//! ```
//! Unknown keys are errors (a typo must not silently fall back to a default). Every semantic
//! error names its field, e.g. `recipe.toml: optimizer.lr: must be positive, got -0.1`.

use crate::families::FamilySpec;
use crate::{Error, Result};
use edgeslim_data::DataSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    /// Output folder (relative paths are relative to the recipe file's folder).
    pub output: PathBuf,
    pub batch_size: usize,
    #[serde(default)]
    pub label_smoothing: Option<f32>,
    pub model: FamilySpec,
    pub data: DataConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub spec: DataSpec,
    /// The side images are resized to (square): needed for folder data; for MNIST and
    /// Animal-MNIST (28 × 28 grayscale) it upsamples them (and repeats their channel when the
    /// model takes RGB), e.g. 224 for DINOv2-sized inputs.
    #[serde(default)]
    pub image_size: Option<usize>,
    /// Folder data: one luma channel instead of RGB.
    #[serde(default)]
    pub grayscale: bool,
    /// Folder data: share of each class held out.
    #[serde(default = "default_held_out")]
    pub held_out_fraction: f64,
    /// Classifiers: random whole-pixel shifts up to this many pixels (0: none).
    #[serde(default)]
    pub augment_shift: usize,
    /// Tracking: training pairs per epoch (pair indices 0.. of the spec's seed).
    #[serde(default = "default_pairs")]
    pub pairs_per_epoch: usize,
    /// Tracking: validation pairs (from the seed [`DataConfig::validation_seed`]).
    #[serde(default = "default_val_pairs")]
    pub val_pairs: usize,
}

fn default_held_out() -> f64 {
    0.2
}
fn default_pairs() -> usize {
    4000
}
fn default_val_pairs() -> usize {
    500
}

impl DataConfig {
    /// Tracking validation pairs come from a seed no training run uses: `seed ^ 0x76616c6964`.
    pub fn validation_seed(train_seed: u64) -> u64 {
        train_seed ^ 0x76_616c_6964
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adamw,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// SGD momentum (ignored by AdamW).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// AdamW betas.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// Parameters whose name contains one of these get no weight decay.
    #[serde(default = "default_no_decay")]
    pub no_decay: Vec<String>,
    /// Clip the global gradient norm to this value.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
}

fn default_momentum() -> f64 {
    0.9
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_no_decay() -> Vec<String> {
    [".bias", "bn", "norm", "cls_token", "pos_embed"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Cosine,
    Constant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub epochs: usize,
    #[serde(default)]
    pub warmup_epochs: f64,
    #[serde(default = "default_schedule")]
    pub kind: ScheduleKind,
    /// Cosine floor, as a fraction of `optimizer.lr`.
    #[serde(default)]
    pub min_lr_fraction: f64,
}

fn default_schedule() -> ScheduleKind {
    ScheduleKind::Cosine
}

impl ScheduleConfig {
    /// Learning rate at fractional epoch `t` (linear warm-up, then cosine or constant).
    pub fn lr_at(&self, base: f64, t: f64) -> f64 {
        if self.warmup_epochs > 0.0 && t < self.warmup_epochs {
            return base * (t / self.warmup_epochs);
        }
        match self.kind {
            ScheduleKind::Constant => base,
            ScheduleKind::Cosine => {
                let span = (self.epochs as f64 - self.warmup_epochs).max(1e-9);
                let p = ((t - self.warmup_epochs) / span).clamp(0.0, 1.0);
                let floor = base * self.min_lr_fraction;
                floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

fn field(label: &str, name: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{label}: {name}: {why}"))
}

impl Recipe {
    /// The model to build: the `[model]` table with the recipe's seed.
    pub fn model_spec(&self) -> FamilySpec {
        let mut m = self.model.clone();
        m.set_seed(self.seed);
        m
    }

    /// Read and validate a recipe file; `output` is resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut r = Recipe::parse(&text, &path.display().to_string())?;
        if r.output.is_relative() {
            if let Some(dir) = path.parent() {
                r.output = dir.join(&r.output);
            }
        }
        if let DataSpec::Folder(p) = &r.data.spec {
            if p.is_relative() {
                if let Some(dir) = path.parent() {
                    r.data.spec = DataSpec::Folder(dir.join(p));
                }
            }
        }
        Ok(r)
    }

    /// Parse and validate recipe text; `label` names it in errors.
    pub fn parse(text: &str, label: &str) -> Result<Recipe> {
        let r: Recipe = toml::from_str(text)
            .map_err(|e| Error::Invalid(format!("{label}: {}", toml_error_line(&e, text))))?;
        r.validate(label)?;
        Ok(r)
    }

    pub fn validate(&self, label: &str) -> Result<()> {
        let f = |name: &str, why: String| Err(field(label, name, why));
        if self.name.trim().is_empty() {
            return f("name", "must not be empty".into());
        }
        if self.batch_size == 0 {
            return f("batch_size", "must be at least 1".into());
        }
        if let Some(ls) = self.label_smoothing {
            if !(0.0..1.0).contains(&ls) {
                return f("label_smoothing", format!("must be in [0, 1), got {ls}"));
            }
        }
        self.model
            .validate()
            .map_err(|e| field(label, "model", e.to_string().trim_start_matches("error: ")))?;
        let o = &self.optimizer;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return f("optimizer.lr", format!("must be positive, got {}", o.lr));
        }
        if o.weight_decay.is_nan() || o.weight_decay < 0.0 {
            return f(
                "optimizer.weight_decay",
                format!("must be ≥ 0, got {}", o.weight_decay),
            );
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return f(
                "optimizer.momentum",
                format!("must be in [0, 1), got {}", o.momentum),
            );
        }
        if o.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return f(
                "optimizer.betas",
                format!("each must be in [0, 1), got {:?}", o.betas),
            );
        }
        if let Some(c) = o.clip_grad_norm {
            if c.is_nan() || c <= 0.0 {
                return f(
                    "optimizer.clip_grad_norm",
                    format!("must be positive, got {c}"),
                );
            }
        }
        let s = &self.schedule;
        if s.epochs == 0 {
            return f("schedule.epochs", "must be at least 1".into());
        }
        if !(s.warmup_epochs >= 0.0 && s.warmup_epochs < s.epochs as f64) {
            return f(
                "schedule.warmup_epochs",
                format!(
                    "must be in [0, epochs = {}), got {}",
                    s.epochs, s.warmup_epochs
                ),
            );
        }
        if !(0.0..=1.0).contains(&s.min_lr_fraction) {
            return f(
                "schedule.min_lr_fraction",
                format!("must be in [0, 1], got {}", s.min_lr_fraction),
            );
        }
        let d = &self.data;
        if !(0.0..1.0).contains(&d.held_out_fraction) {
            return f(
                "data.held_out_fraction",
                format!("must be in [0, 1), got {}", d.held_out_fraction),
            );
        }
        let tracker = matches!(self.model, FamilySpec::Siamese(_));
        match (&d.spec, tracker) {
            (DataSpec::Tracking(_), false) => {
                return f(
                    "data.spec",
                    format!(
                        "'{}' is tracking data, but model.family is '{}'",
                        d.spec,
                        self.model.name()
                    ),
                );
            }
            (DataSpec::Mnist | DataSpec::AnimalMnist | DataSpec::Folder(_), true) => {
                return f(
                    "data.spec",
                    format!(
                        "model.family 'siamese' trains on `tracking:SEED`, not '{}'",
                        d.spec
                    ),
                );
            }
            _ => {}
        }
        if let (DataSpec::Mnist | DataSpec::AnimalMnist, Some(c)) = (&d.spec, self.model.classes())
        {
            if c != 10 {
                return f(
                    "model.classes",
                    format!("{} has 10 classes, the model has {c}", d.spec),
                );
            }
        }
        if let DataSpec::Folder(_) = &d.spec {
            let Some(side) = d.image_size else {
                return f(
                    "data.image_size",
                    "folder data needs the side images are resized to".into(),
                );
            };
            if let Some((c, s)) = self.model.image_input() {
                if s != side {
                    return f(
                        "data.image_size",
                        format!("{side}, but the model takes {s}×{s} images (model.image_size)"),
                    );
                }
                let dc = if d.grayscale { 1 } else { 3 };
                if c != dc {
                    return f(
                        "data.grayscale",
                        format!("gives {dc} channel(s), the model takes {c} (model.in_channels)"),
                    );
                }
            }
        }
        if let (DataSpec::Mnist | DataSpec::AnimalMnist, Some((c, s))) =
            (&d.spec, self.model.image_input())
        {
            let side = d.image_size.unwrap_or(28);
            if s != side || !(c == 1 || c == 3) {
                return f(
                    "model",
                    format!(
                        "{} images are 1×{side}×{side}{}, the model takes {c}×{s}×{s}",
                        d.spec,
                        if side == 28 {
                            " (data.image_size resizes them)"
                        } else {
                            " (data.image_size)"
                        }
                    ),
                );
            }
        }
        if tracker && (d.pairs_per_epoch == 0 || d.val_pairs == 0) {
            return f(
                "data.pairs_per_epoch",
                "tracking needs training and validation pairs".into(),
            );
        }
        Ok(())
    }
}

/// A TOML error on one line: toml's message (it names the key) and the line it points at,
/// without the multi-line source excerpt its Display prints.
pub fn toml_error_line(e: &toml::de::Error, text: &str) -> String {
    let at = e
        .span()
        .map(|s| {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        })
        .unwrap_or_default();
    format!("{}{at}", e.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CNN: &str = r#"
name = "mnist-cnn"
seed = 3
output = "out/mnist-cnn"
batch_size = 64
label_smoothing = 0.1

[model]
family = "cnn"
widths = [16, 32, 64]

[data]
spec = "mnist"
augment_shift = 2

[optimizer]
kind = "adamw"
lr = 0.002
weight_decay = 0.05

[schedule]
epochs = 12
warmup_epochs = 1
"#;

    const VIT: &str = r#"
name = "vit-tiny-mnist"
output = "vit"
batch_size = 128
[model]
family = "vit"
dim = 64
depth = 4
heads = 4
patch = 4
mlp_ratio = 2.0
[data]
spec = "mnist"
[optimizer]
kind = "adamw"
lr = 0.001
weight_decay = 0.05
clip_grad_norm = 1.0
[schedule]
epochs = 30
warmup_epochs = 3
kind = "cosine"
min_lr_fraction = 0.01
"#;

    const TRACKER: &str = r#"
name = "siamese-tracker"
output = "siamese"
batch_size = 16
[model]
family = "siamese"
widths = [16, 32, 48, 48]
stride = 4
[data]
spec = "tracking:1"
pairs_per_epoch = 2000
val_pairs = 256
[optimizer]
kind = "sgd"
lr = 0.01
momentum = 0.9
weight_decay = 0.0005
[schedule]
epochs = 10
kind = "constant"
"#;

    #[test]
    fn example_recipes_parse() {
        let r = Recipe::parse(CNN, "cnn.toml").unwrap();
        assert_eq!(r.data.spec, DataSpec::Mnist);
        assert_eq!(r.optimizer.kind, OptimizerKind::Adamw);
        assert_eq!(r.schedule.kind, ScheduleKind::Cosine);
        assert_eq!(r.label_smoothing, Some(0.1));
        match r.model_spec() {
            FamilySpec::Cnn(c) => {
                assert_eq!(c.widths, vec![16, 32, 64]);
                assert_eq!((c.seed, c.classes, c.image_size), (3, 10, 28));
            }
            other => panic!("{other:?}"),
        }
        assert!(r.optimizer.no_decay.iter().any(|s| s == ".bias"));
        let v = Recipe::parse(VIT, "vit.toml").unwrap();
        assert!(matches!(v.model, FamilySpec::Vit(ref c) if c.depth == 4 && c.heads == 4));
        assert_eq!(v.optimizer.clip_grad_norm, Some(1.0));
        let t = Recipe::parse(TRACKER, "t.toml").unwrap();
        assert_eq!(t.data.spec, DataSpec::Tracking(1));
        assert_eq!(t.data.pairs_per_epoch, 2000);
        assert!(matches!(t.model, FamilySpec::Siamese(ref c) if c.template_size == 63));
        // Round trip through TOML.
        let again = Recipe::parse(&toml::to_string(&t).unwrap(), "again").unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("lr = 0.002", "lr = -0.1", "optimizer.lr"),
            ("lr = 0.002", "lrr = 0.002", "lrr"),
            ("epochs = 12", "epochs = 0", "schedule.epochs"),
            (
                "warmup_epochs = 1",
                "warmup_epochs = 20",
                "schedule.warmup_epochs",
            ),
            ("batch_size = 64", "batch_size = 0", "batch_size"),
            ("spec = \"mnist\"", "spec = \"tracking:3\"", "data.spec"),
            ("spec = \"mnist\"", "spec = \"imagenet\"", "imagenet"),
            ("family = \"cnn\"", "family = \"resnet\"", "resnet"),
            ("widths = [16, 32, 64]", "widths = []", "widths"),
            ("kind = \"adamw\"", "kind = \"adam\"", "adam"),
            (
                "label_smoothing = 0.1",
                "label_smoothing = 1.5",
                "label_smoothing",
            ),
        ];
        for (from, to, needle) in cases {
            assert!(CNN.contains(from), "{from}");
            let text = CNN.replace(from, to);
            let e = Recipe::parse(&text, "r.toml").unwrap_err().to_string();
            assert!(e.starts_with("r.toml: ") && e.contains(needle), "{to}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let e = Recipe::parse(&TRACKER.replace("tracking:1", "mnist"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.spec") && e.contains("siamese"), "{e}");
        let folder = CNN.replace("spec = \"mnist\"", "spec = \"folder:imgs\"");
        let e = Recipe::parse(&folder, "f.toml").unwrap_err().to_string();
        assert!(e.contains("data.image_size"), "{e}");
        let folder = folder.replace("augment_shift = 2", "augment_shift = 2\nimage_size = 32");
        let e = Recipe::parse(&folder, "f.toml").unwrap_err().to_string();
        assert!(e.contains("data.image_size") && e.contains("28"), "{e}");
        // MNIST for a 56 × 56 model: upsampled with data.image_size, refused without it.
        let big = CNN.replace(
            "widths = [16, 32, 64]",
            "widths = [16, 32, 64]\nimage_size = 56",
        );
        let e = Recipe::parse(&big, "b.toml").unwrap_err().to_string();
        assert!(
            e.contains("1×28×28") && e.contains("data.image_size"),
            "{e}"
        );
        let big = big.replace("augment_shift = 2", "augment_shift = 2\nimage_size = 56");
        Recipe::parse(&big, "b.toml").unwrap();
        let e = Recipe::parse(
            &big.replace("shift = 2\nimage_size = 56", "shift = 2\nimage_size = 48"),
            "b.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1×48×48") && e.contains("56×56"), "{e}");
    }

    #[test]
    fn load_resolves_paths_next_to_the_recipe() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, CNN).unwrap();
        let r = Recipe::load(&p).unwrap();
        assert_eq!(r.output, dir.path().join("out/mnist-cnn"));
    }

    #[test]
    fn schedule_warms_up_then_follows_the_cosine() {
        let s = Recipe::parse(CNN, "r").unwrap().schedule;
        assert_eq!(s.lr_at(1.0, 0.0), 0.0);
        assert!((s.lr_at(1.0, 0.5) - 0.5).abs() < 1e-12);
        assert!((s.lr_at(1.0, 1.0) - 1.0).abs() < 1e-12);
        assert!(
            (s.lr_at(1.0, 6.5) - 0.5).abs() < 1e-12,
            "half way through the cosine"
        );
        assert!(s.lr_at(1.0, 12.0).abs() < 1e-12);
    }
}
