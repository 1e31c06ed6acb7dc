//! Recovery after pruning: fine-tuning, or distillation from the unpruned model, with the
//! training engine (`train::finetune`). Graph inputs and outputs keep their shapes through
//! pruning, so the same data and losses apply to the pruned model.

use crate::{Error, Result};
use edgeslim_data::DataSpec;
use edgeslim_onnx::OnnxModel;
use edgeslim_train::{classify, zoo, Distill, FinetuneOptions};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    /// Training data: `mnist` or `folder:PATH` (`--finetune SPEC`).
    pub data: String,
    pub epochs: usize,
    /// AdamW learning rate (cosine schedule).
    pub lr: f64,
    /// Distil from the unpruned model (logit KL at T = 4, alpha 0.7) besides the labels.
    pub teacher: bool,
    pub seed: u64,
    /// Engine threads (0: all cores).
    pub threads: usize,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    pub data: String,
    pub epochs: usize,
    pub teacher: bool,
    /// Held-out accuracy of the pruned model before fine-tuning, and of the kept epoch.
    pub accuracy_before: f64,
    pub accuracy_after: f64,
    pub held_out_samples: usize,
    /// The epoch kept (best held-out accuracy; 0 = the pruned weights as they were).
    pub best_epoch: usize,
    /// Training loss per epoch.
    pub train_losses: Vec<f64>,
    pub seconds: f64,
    /// Why the run ended early, if it did.
    pub stopped: Option<String>,
}

/// Fine-tune `pruned` on `opts.data`; `original` is the teacher for `opts.teacher`. Returns the
/// best epoch's model (ONNX, same graph with new weights) and what happened.
pub fn recover(
    pruned: &OnnxModel,
    original: &OnnxModel,
    opts: &RecoveryOptions,
) -> Result<(OnnxModel, RecoveryReport)> {
    let spec: DataSpec = opts
        .data
        .parse()
        .map_err(|e: Error| Error::option("finetune", e.to_string()))?;
    if opts.epochs == 0 {
        return Err(Error::option_value("epochs", 0, "must be at least 1"));
    }
    let (input, c, h, w) = classify::image_input(pruned)?;
    let data = zoo::load_data(&spec, Some((c, h, w)), 0.2, opts.seed)?;
    let fo = FinetuneOptions {
        epochs: opts.epochs,
        lr: opts.lr,
        seed: opts.seed,
        threads: opts.threads,
        progress: opts.progress,
        input: Some(input),
        distill: opts.teacher.then(|| Distill::new(original.clone())),
        ..FinetuneOptions::default()
    };
    let r = classify::finetune(pruned, &data, &fo)?;
    let report = RecoveryReport {
        data: spec.to_string(),
        epochs: opts.epochs,
        teacher: opts.teacher,
        accuracy_before: r.initial.accuracy,
        accuracy_after: r.best.accuracy,
        held_out_samples: r.best.samples,
        best_epoch: r.best_epoch,
        train_losses: r
            .history
            .iter()
            .filter(|e| e.epoch > 0)
            .map(|e| e.train_loss)
            .collect(),
        seconds: r.seconds,
        stopped: r.stopped.clone(),
    };
    Ok((r.model, report))
}
