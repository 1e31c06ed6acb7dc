//! Label-free distillation of any single-input model on its outputs: the student (a pruned or
//! decomposed copy) learns to reproduce the original's output tensors on unlabelled inputs.
//! For models whose output is not a class vector — a text detector's probability map, a
//! backbone's feature map — where classifier distillation does not apply.
//!
//! Two losses: mean squared error on the output values, or, for a map that ends in a sigmoid,
//! binary cross-entropy of the student's logits against the teacher's probabilities.
//!
//! The teacher's outputs are given (computed once by the caller, with tract), so the teacher is
//! never run here. After every epoch the held-out score against the teacher's outputs (mean
//! cosine, or the F1 of a text detector's boxes) is measured in eval mode; the best epoch
//! (epoch 0 = the starting weights) is kept.

use super::engine::loss::{bce_with_logits, mse};
use super::engine::{EngineOptions, GraphModule, Mode};
use super::optim::{AdamW, AdamWConfig, DecayPolicy, Optimizer};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use edgeslim_data::shuffled_indices;
use edgeslim_measure::detection;
use edgeslim_measure::fidelity::cosine;
use edgeslim_onnx::OnnxModel;
use serde::Serialize;
use std::time::Instant;

/// Inputs and the teacher's first output for each, one flat vector per sample.
pub struct Pairs<'a> {
    pub inputs: &'a [Vec<f32>],
    pub targets: &'a [Vec<f32>],
}

/// What the student's tensor is matched to the targets with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseLoss {
    /// Squared error between the values.
    Mse,
    /// The tensor is a sigmoid's input (logits) and the targets are probabilities: binary
    /// cross-entropy; scores compare the sigmoid of the tensor with the targets.
    SigmoidBce,
}

/// How the kept epoch is chosen on the held-out split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseScore {
    /// Mean cosine to the targets.
    Cosine,
    /// F1 of the text boxes of `height × width` probability maps against the targets' boxes
    /// (`edgeslim_measure::detection`).
    BoxF1 { width: usize, height: usize },
}

#[derive(Debug, Clone)]
pub struct DenseOptions {
    /// The tensor matched to the teacher's (default: the first graph output). A sigmoid's
    /// input rather than its output: a saturated sigmoid passes almost no gradient.
    pub tensor: Option<String>,
    pub loss: DenseLoss,
    pub score: DenseScore,
    /// The input's batch-1 shape (`[1, C, H, W]`, or any rank with a leading 1).
    pub shape: Vec<usize>,
    pub input: String,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Engine threads (0: all cores).
    pub threads: usize,
    pub progress: bool,
    pub stop_on_ctrl_c: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DenseResult {
    #[serde(skip)]
    pub model: OnnxModel,
    pub best_epoch: usize,
    /// Held-out score against the teacher ([`DenseScore`]): starting weights, and the kept
    /// epoch.
    pub score_before: f64,
    pub score_after: f64,
    /// Mean training loss per epoch.
    pub train_losses: Vec<f64>,
    pub seconds: f64,
    pub stopped: Option<String>,
}

fn cerr(what: &str, e: candle_core::Error) -> Error {
    Error::Other(format!(
        "{what}: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

fn batch(samples: &[&Vec<f32>], shape: &[usize]) -> Result<Tensor> {
    let mut dims = shape.to_vec();
    dims[0] = samples.len();
    let flat: Vec<f32> = samples.iter().flat_map(|s| s.iter().copied()).collect();
    Tensor::from_vec(flat, dims, &Device::Cpu).map_err(|e| cerr("batch", e))
}

/// The held-out score of the module's `out` tensor against the targets, one sample at a time.
fn held_out_score(m: &GraphModule, o: &DenseOptions, out: &str, set: &Pairs) -> Result<f64> {
    let mut outputs = Vec::with_capacity(set.inputs.len());
    for x in set.inputs {
        let y = m.forward_inference(&[(&o.input, batch(&[x], &o.shape)?)], &[out])?;
        let mut v: Vec<f32> = y[out]
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| cerr("held-out output", e))?;
        if o.loss == DenseLoss::SigmoidBce {
            v.iter_mut().for_each(|z| *z = 1.0 / (1.0 + (-*z).exp()));
        }
        outputs.push(v);
    }
    Ok(match o.score {
        DenseScore::Cosine => {
            outputs
                .iter()
                .zip(set.targets)
                .map(|(v, t)| cosine(v, t))
                .sum::<f64>()
                / outputs.len().max(1) as f64
        }
        DenseScore::BoxF1 { width, height } => {
            detection::agreement(set.targets, &outputs, width, height).f1
        }
    })
}

/// Distil `student` toward the targets of `train`; judged on `held_out`.
pub fn distill(
    student: &OnnxModel,
    train: &Pairs,
    held_out: &Pairs,
    o: &DenseOptions,
) -> Result<DenseResult> {
    if train.inputs.is_empty() || held_out.inputs.is_empty() {
        return Err(Error::Invalid(
            "distillation needs samples in both splits".into(),
        ));
    }
    if o.epochs == 0 || o.batch_size == 0 {
        return Err(Error::Invalid(
            "epochs and batch size must be at least 1".into(),
        ));
    }
    let start = Instant::now();
    let module = GraphModule::from_onnx(
        student,
        &EngineOptions {
            threads: o.threads,
            seed: o.seed,
            ..EngineOptions::default()
        },
    )?;
    let params = module.require_trainable()?;
    let out = match &o.tensor {
        Some(t) => t.clone(),
        None => module
            .output_names()
            .first()
            .map(|s| s.to_string())
            .ok_or_else(|| Error::Invalid(format!("{}: no output", student.label())))?,
    };
    let policy = ["bias", "bn", "norm"]
        .iter()
        .try_fold(DecayPolicy::default(), |p, s| p.exclude_pattern(s))?;
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            lr: o.lr,
            weight_decay: o.weight_decay,
            ..AdamWConfig::default()
        },
        &policy,
    )?;
    let score_before = held_out_score(&module, o, &out, held_out)?;
    let (mut best, mut best_epoch, mut best_model) = (score_before, 0, student.clone());
    let n = train.inputs.len();
    let bs = o.batch_size.min(n);
    let per_epoch = n / bs;
    let pb = if o.progress && !edgeslim_runtime::process::quiet() {
        indicatif::ProgressBar::new((per_epoch * o.epochs) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut losses = Vec::new();
    let mut stopped = None;
    'epochs: for epoch in 1..=o.epochs {
        let order = shuffled_indices(n, o.seed, epoch as u64);
        let mut sum = 0.0;
        for (step, chunk) in order.chunks_exact(bs).take(per_epoch).enumerate() {
            if o.stop_on_ctrl_c && super::interrupt::requested() {
                stopped = Some(format!("interrupted in epoch {epoch}"));
                break 'epochs;
            }
            // Cosine schedule over the whole run.
            let t = ((epoch - 1) * per_epoch + step) as f64 / (per_epoch * o.epochs) as f64;
            opt.set_learning_rate(o.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()));
            let xs: Vec<&Vec<f32>> = chunk.iter().map(|&i| &train.inputs[i]).collect();
            let ts: Vec<&Vec<f32>> = chunk.iter().map(|&i| &train.targets[i]).collect();
            let x = batch(&xs, &o.shape)?;
            // Batch-norm in eval mode: its running statistics stay the teacher's. Batches of
            // a few large images would drag them around, and the held-out score with them.
            let y = module.forward(&[(&o.input, x)], Mode::Eval, &[out.as_str()])?;
            let pred = &y[&out];
            let mut tdims = pred.dims().to_vec();
            tdims[0] = chunk.len();
            let target = Tensor::from_vec(
                ts.iter()
                    .flat_map(|t| t.iter().copied())
                    .collect::<Vec<f32>>(),
                tdims,
                &Device::Cpu,
            )
            .map_err(|e| cerr("targets", e))?;
            let loss = match o.loss {
                DenseLoss::Mse => mse(pred, &target)?,
                DenseLoss::SigmoidBce => bce_with_logits(pred, &target)?,
            };
            let lv = loss.to_scalar::<f32>().map_err(|e| cerr("loss", e))? as f64;
            if !lv.is_finite() {
                stopped = Some(format!("the loss became {lv} in epoch {epoch}"));
                break 'epochs;
            }
            let grads = module.backward(&loss)?;
            module.in_pool(|| opt.step(&grads))?;
            sum += lv;
            pb.inc(1);
            pb.set_message(format!(
                "epoch {epoch}/{} loss {:.5}",
                o.epochs,
                sum / (step + 1) as f64
            ));
        }
        losses.push(sum / per_epoch.max(1) as f64);
        let c = held_out_score(&module, o, &out, held_out)?;
        log::info!(
            "distillation epoch {epoch}: train loss {:.5}, held-out score {c:.5}",
            losses.last().copied().unwrap_or(f64::NAN)
        );
        if c > best {
            best = c;
            best_epoch = epoch;
            best_model = module.export()?;
        }
    }
    pb.finish_and_clear();
    Ok(DenseResult {
        model: best_model,
        best_epoch,
        score_before,
        score_after: best,
        train_losses: losses,
        seconds: start.elapsed().as_secs_f64(),
        stopped,
    })
}
