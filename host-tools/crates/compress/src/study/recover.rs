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
    /// Train GLoRA adapters (all five terms, rank 4) and the head on the data's labels, then
    /// merge them into the compressed weights: the same graph, no extra inference cost.
    Glora,
}

impl Recover {
    pub fn as_str(self) -> &'static str {
        match self {
            Recover::None => "none",
            Recover::Finetune => "finetune",
            Recover::Distill => "distill",
            Recover::Glora => "glora",
        }
    }

    /// Whether the recovery trains on the data's labels.
    pub fn needs_labels(self) -> bool {
        matches!(self, Recover::Finetune | Recover::Glora)
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
    /// What `held_out_*` are: `accuracy` (fine-tuning), `agreement` (classifier
    /// distillation), `cosine` or `box-f1` (distillation of a dense output; box-f1 for a
    /// text detector's map), or a tracker's held-out pairs.
    #[serde(default)]
    pub judged_by: String,
    pub seconds: f64,
    pub stopped: Option<String>,
    /// Values the recovery trained: every weight (fine-tuning, distillation), or GLoRA's
    /// adapters and the head (merged away afterwards). Absent in studies written before.
    #[serde(default)]
    pub trained_values: Option<u64>,
}

/// The original model's outputs on both splits: the targets of label-free distillation and
/// the reference of every quality figure.
pub struct TeacherOutputs {
    pub calib: Vec<Vec<f32>>,
    pub held_out: Vec<Vec<f32>>,
    /// The first output's shape at batch 1.
    pub shape: Vec<usize>,
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
    match teacher.shape[..] {
        [1, k] if k >= 2 => None,
        _ => Some(format!(
            "the classifier trainer needs a [1, classes] output; this one is {:?}",
            teacher.shape
        )),
    }
}

/// What recovering a variant came to. Made once per variant, so the size difference of the
/// variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Recovered {
    Trained(OnnxModel, RecoveryFacts),
    /// Why this model cannot be recovered with these settings.
    NotApplicable(String),
}

/// Recover `student` as `settings` say: the classifier trainer for a `[1, classes]` output,
/// label-free distillation of the output map otherwise (`distill` only).
pub fn recover_variant(
    student: &OnnxModel,
    teacher: &OnnxModel,
    input: &str,
    data: &CalibData,
    outputs: &TeacherOutputs,
    settings: &RecoverSettings,
) -> Result<Recovered> {
    let trained = match unsupported(data, outputs) {
        None => recover(student, teacher, input, data, outputs, settings)?,
        Some(_) if settings.mode == Recover::Distill => {
            recover_dense(student, teacher, input, data, outputs, settings)?
        }
        Some(why) => return Ok(Recovered::NotApplicable(why)),
    };
    Ok(Recovered::Trained(trained.0, trained.1))
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
    if settings.mode == Recover::Glora {
        return recover_glora(student, input, split, settings);
    }
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
            judged_by: if settings.mode == Recover::Distill {
                "agreement".into()
            } else {
                "accuracy".into()
            },
            seconds: r.seconds,
            stopped: r.stopped,
            trained_values: Some(student.float_constant_elements()?),
        },
    ))
}

/// GLoRA recovery: adapters on every layer the transfer default wraps (the linear layers of a
/// transformer, the convolutions of a CNN), trained with the head on the labels, kept at the
/// best held-out epoch (the compressed weights included) and merged into the compressed graph.
fn recover_glora(
    student: &OnnxModel,
    input: &str,
    split: SplitData,
    settings: &RecoverSettings,
) -> Result<(OnnxModel, RecoveryFacts)> {
    use edgeslim_glora::{AdaptOptions, LayerSupport, Method};
    let (found, ..) = edgeslim_train::classify::image_input(student)?;
    if found != input {
        return Err(Error::Invalid(format!(
            "{}: GLoRA recovery reads the image input '{found}', the study's is '{input}'",
            student.label()
        )));
    }
    let data = split.source.package.clone();
    let opts = AdaptOptions {
        method: Method::Glora(LayerSupport::glora_full(4)),
        data,
        epochs: settings.epochs,
        lr: settings.lr,
        seed: settings.seed,
        threads: settings.threads,
        progress: settings.progress,
        keep_last: false,
        ..AdaptOptions::default()
    };
    let out = edgeslim_glora::adapt_split(student, split, &opts)?;
    let r = out.report;
    Ok((
        out.model,
        RecoveryFacts {
            mode: Recover::Glora,
            epochs: settings.epochs,
            best_epoch: r.best_epoch,
            held_out_before: r.before.accuracy,
            held_out_after: r.merged.accuracy,
            judged_by: "accuracy".into(),
            seconds: r.train_seconds,
            stopped: r.stopped,
            trained_values: Some(r.trainable_params as u64),
        },
    ))
}

/// Distil a model whose output is not a class vector (a detection map, a feature map) on
/// the original's outputs, on unlabelled samples: a map made by a sigmoid is matched by binary
/// cross-entropy of the student's logits against the original's probabilities (squared error
/// on logits chases background values far below the threshold, and a saturated sigmoid
/// passes no gradient); any other output by squared error. A one-channel map keeps the epoch
/// whose text boxes agree best with the original's; others the best held-out cosine.
pub fn recover_dense(
    student: &OnnxModel,
    teacher: &OnnxModel,
    input: &str,
    data: &CalibData,
    outputs: &TeacherOutputs,
    settings: &RecoverSettings,
) -> Result<(OnnxModel, RecoveryFacts)> {
    use edgeslim_train::dense::{distill, DenseLoss, DenseOptions, DenseScore, Pairs};
    let logits = pre_sigmoid(teacher);
    let score = match outputs.shape[..] {
        [1, 1, h, w] if h > 1 && w > 1 => DenseScore::BoxF1 {
            width: w,
            height: h,
        },
        _ => DenseScore::Cosine,
    };
    let o = DenseOptions {
        loss: if logits.is_some() {
            DenseLoss::SigmoidBce
        } else {
            DenseLoss::Mse
        },
        tensor: logits,
        score,
        shape: data.calib.shape.clone(),
        input: input.to_string(),
        epochs: settings.epochs,
        batch_size: 4,
        lr: settings.lr,
        weight_decay: 0.0,
        seed: settings.seed,
        threads: settings.threads,
        progress: settings.progress,
        stop_on_ctrl_c: true,
    };
    let r = distill(
        student,
        &Pairs {
            inputs: &data.calib.samples,
            targets: &outputs.calib,
        },
        &Pairs {
            inputs: &data.held_out.samples,
            targets: &outputs.held_out,
        },
        &o,
    )?;
    Ok((
        r.model,
        RecoveryFacts {
            mode: Recover::Distill,
            epochs: settings.epochs,
            best_epoch: r.best_epoch,
            held_out_before: r.score_before,
            held_out_after: r.score_after,
            judged_by: match score {
                DenseScore::BoxF1 { .. } => "box-f1".into(),
                DenseScore::Cosine => "cosine".into(),
            },
            seconds: r.seconds,
            stopped: r.stopped,
            trained_values: Some(student.float_constant_elements()?),
        },
    ))
}

/// The input of the Sigmoid that makes the first graph output, if one does.
fn pre_sigmoid(model: &OnnxModel) -> Option<String> {
    let out = model.graph().output.first()?.name.clone();
    model
        .graph()
        .node
        .iter()
        .find(|n| n.output.contains(&out))
        .filter(|n| n.op_type == "Sigmoid")
        .and_then(|n| n.input.first().cloned())
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
