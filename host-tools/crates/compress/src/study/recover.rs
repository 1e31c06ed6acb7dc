//! Recovery of a compressed classifier inside a study: supervised fine-tuning on the data's
//! labels, or label-free distillation from the original model.
//!
//! Label-free distillation needs no annotation: the study's samples (images from a folder,
//! generated text lines, digits with their labels ignored) are labelled by the original
//! model's top-1 class, and the student is trained on the original's softened logits alone
//! (KL at T = 4, weight 1, so the pseudo-labels only pick the kept epoch: the one whose held-out
//! top-1 agreement with the original is best).

use crate::{Error, Result};
use edgeslim_data::calib::{CalibData, Dataset};
use edgeslim_data::{DataSource, ImageSet, Normalization, SplitData};
use edgeslim_measure::fidelity::argmax;
use edgeslim_onnx::OnnxModel;
use edgeslim_train::{classify, Distill, FinetuneOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Recover {
    /// Keep the compressed weights as they are.
    None,
    /// Fine-tune on the data's labels (labelled data only).
    Finetune,
    /// Distil from the original model's outputs: no labels needed.
    Distill,
}

impl Recover {
    pub fn as_str(self) -> &'static str {
        match self {
            Recover::None => "none",
            Recover::Finetune => "finetune",
            Recover::Distill => "distill",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecoverSettings {
    pub mode: Recover,
    pub epochs: usize,
    pub lr: f64,
    pub seed: u64,
    /// Engine threads (0: all cores).
    pub threads: usize,
    pub progress: bool,
}

/// What a recovery did, for the study's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryFacts {
    pub mode: Recover,
    pub epochs: usize,
    /// The epoch kept (0: the compressed weights were best).
    pub best_epoch: usize,
    /// Held-out score the training selects on (accuracy against the labels it trained on:
    /// the data's for `finetune`, the original's top-1 for `distill`), before and after.
    pub held_out_before: f64,
    pub held_out_after: f64,
    pub seconds: f64,
    pub stopped: Option<String>,
}

/// The original model's outputs on both splits: the targets of label-free distillation and
/// the reference of every quality figure.
pub struct TeacherOutputs {
    pub calib: Vec<Vec<f32>>,
    pub held_out: Vec<Vec<f32>>,
}

/// Why recovery cannot train this model, or `None` when it can: the engine trains image
/// classifiers (one [1, C, H, W] input, one [1, K] output).
pub fn unsupported(data: &CalibData, teacher: &TeacherOutputs) -> Option<String> {
    if data.calib.shape.len() != 4 || data.calib.shape[0] != 1 {
        return Some(format!(
            "recovery trains image classifiers; the input is {:?}, not [1, C, H, W]",
            data.calib.shape
        ));
    }
    let k = teacher.held_out.first().map_or(0, Vec::len);
    if k < 2 {
        return Some("recovery trains classifiers; the output has fewer than 2 values".into());
    }
    None
}

/// Train `student` back toward `teacher` (the original) on `data` as `settings` say.
pub fn recover(
    student: &OnnxModel,
    teacher: &OnnxModel,
    input: &str,
    data: &CalibData,
    outputs: &TeacherOutputs,
    settings: &RecoverSettings,
) -> Result<(OnnxModel, RecoveryFacts)> {
    let labels = |set: &Dataset, teacher: &[Vec<f32>]| -> Result<Vec<usize>> {
        match settings.mode {
            Recover::Distill => Ok(teacher.iter().map(|o| argmax(o)).collect()),
            _ => set.labels.clone().ok_or_else(|| {
                Error::option(
                    "recover",
                    format!(
                        "fine-tuning needs labels and '{}' has none; use --recover distill",
                        data.spec
                    ),
                )
            }),
        }
    };
    let classes = outputs.held_out.first().map_or(0, Vec::len);
    let split = SplitData {
        train: image_set(&data.calib, labels(&data.calib, &outputs.calib)?, classes)?,
        held_out: image_set(
            &data.held_out,
            labels(&data.held_out, &outputs.held_out)?,
            classes,
        )?,
        normalization: Normalization::uniform(data.calib.shape[1], 0.0, 1.0),
        split: data.split_rule.clone(),
        source: DataSource {
            package: data.spec.clone(),
            path: data.spec.clone(),
            sha256: None,
        },
    };
    let opts = FinetuneOptions {
        epochs: settings.epochs,
        lr: settings.lr,
        seed: settings.seed,
        threads: settings.threads,
        progress: settings.progress,
        stop_on_ctrl_c: true,
        input: Some(input.to_string()),
        distill: (settings.mode == Recover::Distill).then(|| Distill {
            alpha: 1.0,
            ..Distill::new(teacher.clone())
        }),
        ..FinetuneOptions::default()
    };
    let r = classify::finetune(student, &split, &opts)?;
    Ok((
        r.model,
        RecoveryFacts {
            mode: settings.mode,
            epochs: settings.epochs,
            best_epoch: r.best_epoch,
            held_out_before: r.initial.accuracy,
            held_out_after: r.best.accuracy,
            seconds: r.seconds,
            stopped: r.stopped,
        },
    ))
}

/// A calibration split as the training engine's image set (samples are already the model's
/// preprocessed inputs, so the normalisation is the identity).
fn image_set(set: &Dataset, labels: Vec<usize>, classes: usize) -> Result<ImageSet> {
    let [_, c, h, w] = set.shape[..] else {
        return Err(Error::Invalid(format!(
            "{}: samples of shape {:?} are not images",
            set.name, set.shape
        )));
    };
    if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
        return Err(Error::Invalid(format!(
            "{}: label {bad} but the model has {classes} outputs",
            set.name
        )));
    }
    Ok(ImageSet {
        classes: (0..classes).map(|k| k.to_string()).collect(),
        channels: c,
        height: h,
        width: w,
        pixels: set.samples.concat(),
        labels,
        sources: set.sources.clone(),
    })
}
