//! Supervised fine-tuning and knowledge distillation of an ONNX image classifier, and its
//! held-out evaluation: the loop behind `edgeslim finetune`, `edgeslim train` (classifier
//! recipes) and the recovery step other tools call ([`finetune`]).
//!
//! - The model is any ONNX graph the engine runs with one image input `[N, C, H, W]` and a
//!   logits output `[N, classes]` (the first graph input and output unless named).
//! - Each step: a seeded shuffled batch (optionally shifted by a few pixels), forward in
//!   training mode (batch-norm statistics are updated), loss, backward, optional global-norm
//!   clipping, optimiser step with the learning rate of a linear warm-up + cosine schedule.
//! - Loss: cross-entropy (with optional label smoothing); with a teacher,
//!   `alpha · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE`, plus
//!   `feature_weight · Σ MSE(student feature, teacher feature)` over named tensor pairs.
//! - After every epoch the held-out split is evaluated in eval mode; the best epoch (highest
//!   accuracy, then lowest loss; the starting weights count as epoch 0) is kept as an ONNX
//!   model. A stop request (Ctrl-C via [`super::interrupt`], or [`FinetuneOptions::stop`])
//!   ends the run after the current step; a non-finite loss ends it with a message. Either way
//!   the best model so far is returned and `stopped` says why.
//! - Reproducible: the same seed, data and thread count give the same weights (shuffles,
//!   augmentation and dropout are seeded; candle's CPU kernels are deterministic).

use super::engine::loss::{cross_entropy_smoothed, distillation_kl, mse};
use super::engine::{EngineOptions, Freeze, GraphModule, Mode};
use super::optim::{clip_grad_norm, AdamW, AdamWConfig, DecayPolicy, Optimizer, Sgd, SgdConfig};
use super::recipe::OptimizerKind;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use edgeslim_data::augment::random_translate;
use edgeslim_data::{rng, shuffled_indices, ImageSet, SplitData};
use edgeslim_measure::fidelity::argmax;
use edgeslim_onnx::OnnxModel;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Knowledge distillation from a teacher model on the same input.
#[derive(Debug, Clone)]
pub struct Distill {
    pub teacher: OnnxModel,
    /// Softmax temperature T of the logit KL.
    pub temperature: f64,
    /// Weight of the KL term; the label cross-entropy gets `1 − alpha`.
    pub alpha: f64,
    /// (student tensor, teacher tensor) pairs matched with mean squared error.
    pub features: Vec<(String, String)>,
    pub feature_weight: f64,
}

impl Distill {
    /// Logit distillation at T = 4 with alpha = 0.7, no feature terms.
    pub fn new(teacher: OnnxModel) -> Distill {
        Distill {
            teacher,
            temperature: 4.0,
            alpha: 0.7,
            features: Vec::new(),
            feature_weight: 1.0,
        }
    }
}

/// A function run before every training step (see [`FinetuneOptions::before_step`]).
#[derive(Clone)]
pub struct StepHook(pub Arc<StepFn>);

/// The function of a [`StepHook`]: the module being trained and the step's number.
pub type StepFn = dyn Fn(&GraphModule, u64) -> Result<()> + Send + Sync;

impl std::fmt::Debug for StepHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepHook(..)")
    }
}

/// How to fine-tune. `Default` is a short AdamW recovery run (3 epochs, lr 1e-3, batch 64).
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    pub warmup_epochs: f64,
    /// Cosine floor as a fraction of `lr`.
    pub min_lr_fraction: f64,
    pub clip_grad_norm: Option<f64>,
    pub label_smoothing: f64,
    /// Random whole-pixel shifts up to this many pixels (0: none).
    pub augment_shift: usize,
    pub freeze: Option<Freeze>,
    /// Weights whose name contains one of these get no weight decay (1-D tensors never do).
    pub no_decay: Vec<String>,
    pub distill: Option<Distill>,
    pub seed: u64,
    /// Engine threads; 0 = all cores.
    pub threads: usize,
    pub progress: bool,
    /// Cut every epoch to this many batches (quick checks).
    pub max_batches_per_epoch: Option<usize>,
    /// Set from another thread to stop after the current step.
    pub stop: Option<Arc<AtomicBool>>,
    /// Also stop on Ctrl-C (needs [`super::interrupt::install`] in the binary).
    pub stop_on_ctrl_c: bool,
    /// Input and output tensor names; `None`: the first graph input / output.
    pub input: Option<String>,
    pub output: Option<String>,
    /// L1 penalties added to the loss (ViT-Slim's mask sparsity terms).
    pub sparsity: Vec<Sparsity>,
    /// Float initializers with these name prefixes are weights even as one-element tensors
    /// (see [`super::engine::EngineOptions::weight_prefixes`]).
    pub weight_prefixes: Vec<String>,
    /// Called before every training step with the step's number (from 0): a supernet samples
    /// its sub-network here.
    pub before_step: Option<StepHook>,
    /// Learning-rate multipliers: weights whose name contains the string learn at `lr ×` the
    /// factor (ViT-Slim's masks).
    pub lr_scale: Vec<(String, f64)>,
    /// Return the last epoch instead of the best held-out one: a mask search is about where
    /// the masks went, and its best-accuracy epoch is usually the first, before any sparsity.
    pub keep_last: bool,
}

/// `weight · Σ|w|` (or `Σ|tanh w|`) over the named weights, added to the training loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Sparsity {
    pub names: Vec<String>,
    pub weight: f64,
    /// Penalise `|tanh w|` (a mask used through `tanh`, as ViT-Slim's token masks).
    pub tanh: bool,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        FinetuneOptions {
            epochs: 3,
            batch_size: 64,
            optimizer: OptimizerKind::Adamw,
            lr: 1e-3,
            weight_decay: 0.01,
            momentum: 0.9,
            warmup_epochs: 0.0,
            min_lr_fraction: 0.0,
            clip_grad_norm: None,
            label_smoothing: 0.0,
            augment_shift: 0,
            freeze: None,
            no_decay: ["bias", "bn", "norm", "cls_token", "pos_embed"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            distill: None,
            seed: 0,
            threads: 0,
            progress: false,
            max_batches_per_epoch: None,
            stop: None,
            stop_on_ctrl_c: false,
            input: None,
            output: None,
            sparsity: Vec::new(),
            lr_scale: Vec::new(),
            keep_last: false,
            weight_prefixes: Vec::new(),
            before_step: None,
        }
    }
}

impl FinetuneOptions {
    /// Learning rate at fractional epoch `t`.
    pub fn lr_at(&self, t: f64) -> f64 {
        if self.warmup_epochs > 0.0 && t < self.warmup_epochs {
            return self.lr * (t / self.warmup_epochs).max(1e-3);
        }
        let span = (self.epochs as f64 - self.warmup_epochs).max(1e-9);
        let p = ((t - self.warmup_epochs) / span).clamp(0.0, 1.0);
        let floor = self.lr * self.min_lr_fraction;
        floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
    }

    fn validate(&self) -> Result<()> {
        let bad = |w: String| Err(Error::Invalid(w));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if let Some(d) = &self.distill {
            if d.temperature.is_nan() || d.temperature <= 0.0 {
                return bad(format!(
                    "distillation temperature must be positive, got {}",
                    d.temperature
                ));
            }
            if !(0.0..=1.0).contains(&d.alpha) {
                return bad(format!(
                    "distillation alpha must be in [0, 1], got {}",
                    d.alpha
                ));
            }
        }
        Ok(())
    }
}

/// Held-out metrics of a classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub samples: usize,
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    pub classes: Vec<String>,
    /// Per class: accuracy (recall) and sample count.
    pub per_class: Vec<ClassStat>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStat {
    pub class: String,
    pub samples: usize,
    pub correct: usize,
    pub accuracy: f64,
}

impl EvalReport {
    /// Metrics from logits rows (`classes` values each) and labels.
    pub fn from_logits(
        classes: &[String],
        logits: &[f32],
        labels: &[usize],
        loss: f64,
    ) -> EvalReport {
        let k = classes.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (row, &y) in logits.chunks(k).zip(labels) {
            let pred = argmax(row);
            if y < k {
                confusion[y][pred] += 1;
            }
        }
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let per_class = (0..k)
            .map(|c| {
                let n: usize = confusion[c].iter().sum();
                ClassStat {
                    class: classes[c].clone(),
                    samples: n,
                    correct: confusion[c][c],
                    accuracy: if n == 0 {
                        0.0
                    } else {
                        confusion[c][c] as f64 / n as f64
                    },
                }
            })
            .collect();
        EvalReport {
            samples: labels.len(),
            accuracy: if labels.is_empty() {
                0.0
            } else {
                correct as f64 / labels.len() as f64
            },
            loss,
            classes: classes.to_vec(),
            per_class,
            confusion,
        }
    }

    /// The report as aligned text: accuracy, per-class accuracy, confusion matrix.
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let correct: usize = self.per_class.iter().map(|c| c.correct).sum();
        let _ = writeln!(
            s,
            "accuracy {:.2}% ({correct}/{}), mean cross-entropy {:.4}",
            self.accuracy * 100.0,
            self.samples,
            self.loss
        );
        let w = self
            .classes
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(1)
            .max(5);
        let _ = writeln!(s, "\nper class:");
        for c in &self.per_class {
            let _ = writeln!(
                s,
                "  {:>w$}  {:>7.2}%  ({}/{})",
                c.class,
                c.accuracy * 100.0,
                c.correct,
                c.samples
            );
        }
        let _ = writeln!(
            s,
            "\nconfusion matrix (rows: true class, columns: predicted):"
        );
        let cw = self
            .confusion
            .iter()
            .flatten()
            .map(|v| v.to_string().len())
            .max()
            .unwrap_or(1)
            .max(self.classes.iter().map(|c| c.len()).max().unwrap_or(1));
        let _ = write!(s, "  {:>w$}", "");
        for c in &self.classes {
            let _ = write!(s, " {c:>cw$}");
        }
        let _ = writeln!(s);
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            let _ = write!(s, "  {c:>w$}");
            for v in row {
                let _ = write!(s, " {v:>cw$}");
            }
            let _ = writeln!(s);
        }
        s
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochStats {
    /// 0 is the starting point (no training).
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub held_out_loss: f64,
    pub held_out_accuracy: f64,
    pub seconds: f64,
    pub samples_per_second: f64,
}

/// What [`finetune`] returns.
#[derive(Debug, Clone)]
pub struct FinetuneResult {
    /// The best checkpoint as an ONNX model (the same graph with new weights).
    pub model: OnnxModel,
    pub best_epoch: usize,
    pub best: EvalReport,
    /// Held-out metrics of the starting weights.
    pub initial: EvalReport,
    pub history: Vec<EpochStats>,
    /// Why the run ended early (interrupted, non-finite loss), or `None` when it finished.
    pub stopped: Option<String>,
    pub seconds: f64,
    /// Training samples per second over the whole run (forward + backward + step).
    pub samples_per_second: f64,
}

fn cerr(what: &str, e: candle_core::Error) -> Error {
    Error::Other(format!(
        "{what}: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

fn io_names(
    model: &OnnxModel,
    m: &GraphModule,
    opts: &FinetuneOptions,
) -> Result<(String, String)> {
    let input = match &opts.input {
        Some(i) => i.clone(),
        None => {
            let ins = m.input_names();
            match ins.as_slice() {
                [one] => one.to_string(),
                _ => {
                    return Err(Error::Invalid(format!(
                        "{}: a classifier needs one image input, the model has {} ({})",
                        model.label(),
                        ins.len(),
                        ins.join(", ")
                    )))
                }
            }
        }
    };
    let output = match &opts.output {
        Some(o) => o.clone(),
        None => m
            .output_names()
            .first()
            .map(|s| s.to_string())
            .ok_or_else(|| Error::Invalid(format!("{}: the model has no output", model.label())))?,
    };
    Ok((input, output))
}

fn batch_tensor(x: Vec<f32>, shape: [usize; 4]) -> Result<Tensor> {
    Tensor::from_vec(x, shape.to_vec(), &Device::Cpu).map_err(|e| cerr("batch", e))
}

/// Class indices as the `[N]` u32 tensor the cross-entropy takes.
pub fn labels_tensor(labels: &[usize]) -> Result<Tensor> {
    let v: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    Tensor::from_vec(v, labels.len(), &Device::Cpu).map_err(|e| cerr("labels", e))
}

fn check_logits(
    logits: &Tensor,
    classes: usize,
    n: usize,
    label: &str,
    output: &str,
) -> Result<()> {
    let d = logits.dims();
    if d != [n, classes] {
        return Err(Error::Invalid(format!(
            "{label}: output '{output}' has shape {d:?}, expected [{n}, {classes}] (one logit per class of the data: {classes} classes)"
        )));
    }
    Ok(())
}

/// Evaluate a compiled module on `set` in eval mode.
pub fn evaluate_module(
    m: &GraphModule,
    set: &ImageSet,
    input: &str,
    output: &str,
    batch_size: usize,
) -> Result<EvalReport> {
    let k = set.num_classes();
    let mut logits_all: Vec<f32> = Vec::with_capacity(set.len() * k);
    let mut loss_sum = 0.0;
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let b = set.batch(chunk);
        let x = batch_tensor(b.x, b.shape)?;
        let out = m.forward_inference(&[(input, x)], &[])?;
        let logits = out
            .get(output)
            .ok_or_else(|| Error::Invalid(format!("the model has no output '{output}'")))?;
        check_logits(logits, k, chunk.len(), "model", output)?;
        let l = cross_entropy_smoothed(logits, &labels_tensor(&b.labels)?, 0.0)?;
        loss_sum += l
            .to_dtype(DType::F64)
            .and_then(|v| v.to_scalar::<f64>())
            .map_err(|e| cerr("loss", e))?
            * chunk.len() as f64;
        logits_all.extend(
            logits
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| cerr("logits", e))?,
        );
    }
    Ok(EvalReport::from_logits(
        &set.classes,
        &logits_all,
        &set.labels,
        loss_sum / set.len().max(1) as f64,
    ))
}

/// Evaluate an ONNX classifier on `set` with the training engine (eval mode).
pub fn evaluate(
    model: &OnnxModel,
    set: &ImageSet,
    batch_size: usize,
    threads: usize,
) -> Result<EvalReport> {
    let m = GraphModule::from_onnx(
        model,
        &EngineOptions {
            threads,
            require_weights: false,
            ..EngineOptions::default()
        },
    )?;
    let (input, output) = io_names(model, &m, &FinetuneOptions::default())?;
    evaluate_module(&m, set, &input, &output, batch_size)
}

/// The image input of a classifier: (name, channels, height, width) from the declared input
/// shape `[N, C, H, W]` (N may be symbolic).
pub fn image_input(model: &OnnxModel) -> Result<(String, usize, usize, usize)> {
    use onnx_protobuf::type_proto::Value;
    let ins = model.true_inputs();
    let [vi] = ins.as_slice() else {
        return Err(Error::Invalid(format!(
            "{}: a classifier needs one image input, the model has {}",
            model.label(),
            ins.len()
        )));
    };
    let dims: Vec<Option<usize>> = match vi.type_.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Value::TensorType(t)) => {
            t.shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(
                                onnx_protobuf::tensor_shape_proto::dimension::Value::DimValue(v),
                            ) if *v > 0 => Some(*v as usize),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    match dims.as_slice() {
        [_, Some(c), Some(h), Some(w)] => Ok((vi.name.clone(), *c, *h, *w)),
        _ => Err(Error::Invalid(format!(
            "{}: input '{}' must be declared [N, C, H, W] with fixed C, H, W (got {dims:?})",
            model.label(),
            vi.name
        ))),
    }
}

/// Evaluate an ONNX classifier file on `set` with tract (the runtime that ships to boards),
/// one image at a time: independent of the training engine.
pub fn evaluate_tract(path: &std::path::Path, set: &ImageSet) -> Result<EvalReport> {
    use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
    let model = OnnxModel::load(path)?;
    let (input, c, h, w) = image_input(&model)?;
    if (c, h, w) != (set.channels, set.height, set.width) {
        return Err(Error::Invalid(format!(
            "{}: the model takes {c}x{h}x{w} images, the data has {}x{}x{}",
            path.display(),
            set.channels,
            set.height,
            set.width
        )));
    }
    let opts = edgeslim_runtime::LoadOptions {
        input_shapes: vec![format!("{input}=1,{c},{h},{w}").parse()?],
        ..Default::default()
    };
    let loaded = edgeslim_runtime::LoadedModel::load(path, &opts)?;
    let k = set.num_classes();
    let mut logits = Vec::with_capacity(set.len() * k);
    let mut loss = 0.0;
    for i in 0..set.len() {
        let x = TractTensor::from_shape::<f32>(&[1, c, h, w], set.image(i))
            .map_err(|e| Error::Other(format!("{}: {e}", set.sources[i])))?;
        let out = loaded.run(vec![x])?;
        let first = out
            .first()
            .ok_or_else(|| Error::Other(format!("{}: no output", path.display())))?;
        let v = edgeslim_runtime::input::tensor_to_f32_vec(first)?;
        if v.len() != k {
            return Err(Error::Invalid(format!(
                "{}: the model has {} outputs but the data has {k} classes",
                path.display(),
                v.len()
            )));
        }
        let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + v.iter().map(|&z| (z as f64 - m).exp()).sum::<f64>().ln();
        loss += lse - v[set.labels[i]] as f64;
        logits.extend_from_slice(&v);
    }
    Ok(EvalReport::from_logits(
        &set.classes,
        &logits,
        &set.labels,
        loss / set.len().max(1) as f64,
    ))
}

fn better(a: &EvalReport, b: &EvalReport) -> bool {
    a.accuracy > b.accuracy || (a.accuracy == b.accuracy && a.loss < b.loss)
}

/// Fine-tune (or distil into) `model` on `data.train`, evaluating on `data.held_out` after every
/// epoch; returns the best checkpoint. Errors are returned before any training starts (bad
/// options, an op the engine lacks, no trainable weight, a class count that differs from the
/// model's outputs); later problems end the run with `stopped` set.
pub fn finetune(
    model: &OnnxModel,
    data: &SplitData,
    opts: &FinetuneOptions,
) -> Result<FinetuneResult> {
    opts.validate()?;
    if data.train.is_empty() || data.held_out.is_empty() {
        return Err(Error::Invalid(format!(
            "training needs samples in both splits ({} train, {} held out)",
            data.train.len(),
            data.held_out.len()
        )));
    }
    let start = Instant::now();
    let eopts = EngineOptions {
        freeze: opts.freeze.clone(),
        threads: opts.threads,
        seed: opts.seed,
        weight_prefixes: opts.weight_prefixes.clone(),
        ..EngineOptions::default()
    };
    let module = GraphModule::from_onnx(model, &eopts)?;
    let params = module.require_trainable()?;
    let (input, output) = io_names(model, &module, opts)?;
    let classes = data.train.num_classes();
    let teacher = match &opts.distill {
        Some(d) => {
            let t = GraphModule::from_onnx(
                &d.teacher,
                &EngineOptions {
                    threads: opts.threads,
                    require_weights: false,
                    ..EngineOptions::default()
                },
            )?;
            let tin = t
                .input_names()
                .first()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let tout = t
                .output_names()
                .first()
                .map(|s| s.to_string())
                .unwrap_or_default();
            Some((t, tin, tout, d))
        }
        None => None,
    };

    // Fail early: shapes of both models on one batch.
    {
        let probe = data.held_out.batch(&[0]);
        let x = batch_tensor(probe.x, probe.shape)?;
        let want: Vec<&str> = opts
            .distill
            .iter()
            .flat_map(|d| d.features.iter().map(|(s, _)| s.as_str()))
            .collect();
        let out = module.forward_inference(&[(&input, x.clone())], &want)?;
        let logits = out
            .get(&output)
            .ok_or_else(|| Error::Invalid(format!("{}: no output '{output}'", model.label())))?;
        check_logits(logits, classes, 1, &model.label(), &output)?;
        if let Some((t, tin, tout, d)) = &teacher {
            let twant: Vec<&str> = d.features.iter().map(|(_, t)| t.as_str()).collect();
            let tout_v = t.forward_inference(&[(tin, x)], &twant)?;
            check_logits(&tout_v[tout], classes, 1, &d.teacher.label(), tout)?;
            for (s, tn) in &d.features {
                if out[s].dims() != tout_v[tn].dims() {
                    return Err(Error::Invalid(format!(
                        "feature pair {s} / {tn}: student shape {:?} differs from teacher shape {:?}",
                        out[s].dims(),
                        tout_v[tn].dims()
                    )));
                }
            }
        }
    }

    let penalties = sparsity_vars(&params, &opts.sparsity, &model.label())?;
    let mut policy = DecayPolicy::default();
    for p in &opts.no_decay {
        policy = policy.exclude_pattern(&regex::escape(p))?;
    }
    let mut opt: Box<dyn Optimizer> = match opts.optimizer {
        OptimizerKind::Sgd => Box::new(Sgd::new(
            params.clone(),
            SgdConfig {
                lr: opts.lr,
                momentum: opts.momentum,
                nesterov: false,
                weight_decay: opts.weight_decay,
            },
            &policy,
        )?),
        OptimizerKind::Adamw => Box::new(AdamW::new(
            params.clone(),
            AdamWConfig {
                lr: opts.lr,
                weight_decay: opts.weight_decay,
                ..AdamWConfig::default()
            },
            &policy,
        )?),
    };

    for (part, factor) in &opts.lr_scale {
        opt.scale_learning_rate_of(&|n: &str| n.contains(part.as_str()), *factor);
    }
    let initial = evaluate_module(&module, &data.held_out, &input, &output, 256)?;
    let mut best = initial.clone();
    let mut best_model = model.clone();
    let mut best_epoch = 0;
    let mut history = vec![EpochStats {
        epoch: 0,
        lr: 0.0,
        train_loss: f64::NAN,
        train_accuracy: f64::NAN,
        held_out_loss: initial.loss,
        held_out_accuracy: initial.accuracy,
        seconds: 0.0,
        samples_per_second: 0.0,
    }];

    let n = data.train.len();
    let bs = opts.batch_size.min(n);
    let mut per_epoch = n / bs; // drop the ragged last batch: batch statistics stay sound
    if let Some(m) = opts.max_batches_per_epoch {
        per_epoch = per_epoch.min(m.max(1));
    }
    let total = (per_epoch * opts.epochs) as u64;
    let pb = if opts.progress {
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
    };
    let norm = &data.normalization;
    let fill: Vec<f32> = norm
        .mean
        .iter()
        .zip(&norm.std)
        .map(|(m, s)| -m / s)
        .collect();
    let mut aug_rng = rng(opts.seed, 0x4155_4721);
    let stop_requested = || {
        opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || (opts.stop_on_ctrl_c && super::interrupt::requested())
    };
    let mut stopped = None;
    let mut trained_samples = 0usize;
    let mut train_seconds = 0.0;

    let mut global_step = 0u64;
    'epochs: for epoch in 1..=opts.epochs {
        let t0 = Instant::now();
        let order = shuffled_indices(n, opts.seed, epoch as u64);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = opts.lr;
        for (step, chunk) in order.chunks_exact(bs).take(per_epoch).enumerate() {
            if stop_requested() {
                stopped = Some(format!("interrupted in epoch {epoch}"));
                break 'epochs;
            }
            lr = opts.lr_at(epoch as f64 - 1.0 + step as f64 / per_epoch as f64);
            opt.set_learning_rate(lr);
            if let Some(hook) = &opts.before_step {
                (hook.0)(&module, global_step)?;
            }
            global_step += 1;
            let mut b = data.train.batch(chunk);
            if opts.augment_shift > 0 {
                random_translate(&mut b, opts.augment_shift, &fill, &mut aug_rng);
            }
            let labels = labels_tensor(&b.labels)?;
            let x = batch_tensor(b.x, b.shape)?;
            let (loss, logits) = step_loss(&module, &teacher, &input, &output, &x, &labels, opts)?;
            let loss = add_penalties(loss, &penalties)?;
            let lv = loss
                .to_dtype(DType::F64)
                .and_then(|v| v.to_scalar::<f64>())
                .map_err(|e| cerr("loss", e))?;
            if !lv.is_finite() {
                stopped = Some(format!(
                    "the loss became {lv} in epoch {epoch}, step {}; kept the best checkpoint (epoch {best_epoch}). Try a lower learning rate or gradient clipping",
                    step + 1
                ));
                break 'epochs;
            }
            let mut grads = module.backward(&loss)?;
            if let Some(c) = opts.clip_grad_norm {
                clip_grad_norm(&mut grads, &params, c)?;
            }
            module.in_pool(|| opt.step(&grads))?;
            let preds = logits
                .argmax(1)
                .and_then(|p| p.to_vec1::<u32>())
                .map_err(|e| cerr("argmax", e))?;
            correct += preds
                .iter()
                .zip(&b.labels)
                .filter(|(p, l)| **p as usize == **l)
                .count();
            seen += chunk.len();
            loss_sum += lv * chunk.len() as f64;
            pb.inc(1);
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!(
                "epoch {epoch}/{} loss {:.4} acc {:.1}% {:.0} samples/s",
                opts.epochs,
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64,
                seen as f64 / secs
            ));
        }
        let train_secs = t0.elapsed().as_secs_f64();
        train_seconds += train_secs;
        trained_samples += seen;
        let ev = evaluate_module(&module, &data.held_out, &input, &output, 256)?;
        let stats = EpochStats {
            epoch,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            held_out_loss: ev.loss,
            held_out_accuracy: ev.accuracy,
            seconds: t0.elapsed().as_secs_f64(),
            samples_per_second: seen as f64 / train_secs.max(1e-9),
        };
        let improved = opts.keep_last || better(&ev, &best);
        if improved {
            best_model = module.export()?;
            best = ev;
            best_epoch = epoch;
        }
        let line = format!(
            "epoch {epoch:>3}/{}: train loss {:.4} acc {:.2}% | held-out loss {:.4} acc {:.2}%{} | lr {:.2e}, {:.0} samples/s, {:.1} s",
            opts.epochs,
            stats.train_loss,
            stats.train_accuracy * 100.0,
            stats.held_out_loss,
            stats.held_out_accuracy * 100.0,
            if improved && !opts.keep_last {
                " (best)"
            } else {
                ""
            },
            stats.lr,
            stats.samples_per_second,
            stats.seconds
        );
        if opts.progress && pb.is_hidden() {
            // No terminal (a log file, CI): the bar is invisible, the epoch lines are not.
            eprintln!("{line}");
        } else if opts.progress {
            pb.println(line);
        } else {
            log::info!("{line}");
        }
        history.push(stats);
    }
    pb.finish_and_clear();
    Ok(FinetuneResult {
        model: best_model,
        best_epoch,
        best,
        initial,
        history,
        stopped,
        seconds: start.elapsed().as_secs_f64(),
        samples_per_second: trained_samples as f64 / train_seconds.max(1e-9),
    })
}

/// The variables of each sparsity term, by name among the trainable weights.
pub(crate) fn sparsity_vars(
    params: &[(String, candle_core::Var)],
    terms: &[Sparsity],
    label: &str,
) -> Result<Vec<Penalty>> {
    terms
        .iter()
        .map(|t| {
            let vars = t
                .names
                .iter()
                .map(|n| {
                    params
                        .iter()
                        .find(|(p, _)| p == n)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| {
                            Error::Invalid(format!(
                                "{label}: the sparsity term names '{n}', which is not a trainable weight"
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((vars, t.weight, t.tanh))
        })
        .collect()
}

/// The variables of one sparsity term, its weight, and whether it is taken through tanh.
pub(crate) type Penalty = (Vec<candle_core::Var>, f64, bool);

/// `loss + Σ weight · Σ|w|` (`|tanh w|` where asked).
pub(crate) fn add_penalties(loss: Tensor, penalties: &[Penalty]) -> Result<Tensor> {
    let mut total = loss;
    for (vars, weight, tanh) in penalties {
        for v in vars {
            let t = if *tanh {
                v.as_tensor().tanh().map_err(|e| cerr("sparsity", e))?
            } else {
                v.as_tensor().clone()
            };
            let l1 = t
                .abs()
                .and_then(|a| a.sum_all())
                .and_then(|a| a.to_dtype(total.dtype()))
                .and_then(|a| a.affine(*weight, 0.0))
                .map_err(|e| cerr("sparsity", e))?;
            total = (total + l1).map_err(|e| cerr("sparsity", e))?;
        }
    }
    Ok(total)
}

type TeacherRef<'a> = Option<(GraphModule, String, String, &'a Distill)>;

fn step_loss(
    module: &GraphModule,
    teacher: &TeacherRef,
    input: &str,
    output: &str,
    x: &Tensor,
    labels: &Tensor,
    opts: &FinetuneOptions,
) -> Result<(Tensor, Tensor)> {
    let want: Vec<&str> = teacher
        .iter()
        .flat_map(|(_, _, _, d)| d.features.iter().map(|(s, _)| s.as_str()))
        .collect();
    let out = module.forward(&[(input, x.clone())], Mode::Train, &want)?;
    let logits = out[output].clone();
    let ce = cross_entropy_smoothed(&logits, labels, opts.label_smoothing)?;
    let loss = match teacher {
        None => ce,
        Some((t, tin, tout, d)) => {
            let twant: Vec<&str> = d.features.iter().map(|(_, t)| t.as_str()).collect();
            let to = t.forward_inference(&[(tin.as_str(), x.clone())], &twant)?;
            let kl = distillation_kl(&logits, &to[tout.as_str()], d.temperature)?;
            let mut l = (kl.affine(d.alpha, 0.0).map_err(|e| cerr("loss", e))?
                + ce.affine(1.0 - d.alpha, 0.0).map_err(|e| cerr("loss", e))?)
            .map_err(|e| cerr("loss", e))?;
            for (s, tn) in &d.features {
                let m = mse(&out[s.as_str()], &to[tn.as_str()].detach())?;
                l = (l + m
                    .affine(d.feature_weight, 0.0)
                    .map_err(|e| cerr("loss", e))?)
                .map_err(|e| cerr("loss", e))?;
            }
            l
        }
    };
    Ok((loss, logits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts_confusion_and_per_class() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // predictions: 0, 1, 1, 2 ; labels 0, 1, 2, 2
        let logits = [1., 0., 0., 0., 1., 0., 0., 1., 0., 0., 0., 1.];
        let r = EvalReport::from_logits(&classes, &logits, &[0, 1, 2, 2], 0.5);
        assert_eq!(
            r.confusion,
            vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]
        );
        assert!((r.accuracy - 0.75).abs() < 1e-12);
        assert_eq!(r.per_class[2].samples, 2);
        assert!((r.per_class[2].accuracy - 0.5).abs() < 1e-12);
        let t = r.render_text();
        assert!(t.contains("accuracy 75.00% (3/4)"), "{t}");
    }

    #[test]
    fn schedule_warms_up_and_decays() {
        let o = FinetuneOptions {
            epochs: 10,
            warmup_epochs: 1.0,
            lr: 1.0,
            min_lr_fraction: 0.1,
            ..Default::default()
        };
        assert!((o.lr_at(0.5) - 0.5).abs() < 1e-12);
        assert!((o.lr_at(1.0) - 1.0).abs() < 1e-12);
        assert!((o.lr_at(10.0) - 0.1).abs() < 1e-12);
    }
}
