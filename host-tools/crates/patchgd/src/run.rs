//! `edgeslim train-patch`: PatchGD (or plain gradient descent through the same two graphs,
//! the baseline) on an UltraMNIST-style folder, under a memory cap checked after every
//! mini-batch; evaluation on the test split after every epoch; the two graphs exported.

use crate::data::UltraSet;
use crate::grid::Grid;
use crate::nets::{self, PatchNetConfig};
use crate::trainer::PatchGd;
use crate::{Error, Result};
use edgeslim_onnx::OnnxModel;
use edgeslim_train::engine::EngineOptions;
use edgeslim_train::optim::{AdamW, AdamWConfig, CosineSchedule, DecayPolicy, Optimizer};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How the gradient is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// PatchGD: Z filled without gradients, k inner steps on a fraction s of the patches.
    Patchgd,
    /// Plain gradient descent: every patch of the whole image with gradients at once.
    Gd,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainPatchOptions {
    pub method: Method,
    /// Side the images are trained at (resized from the folder's when different).
    pub image_size: usize,
    pub patch: usize,
    pub inner_steps: usize,
    pub fraction: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub lr: f64,
    /// `small` (the conv stack of `widths`) or a CNN of the zoo catalogue (`mobilenetv2`,
    /// `efficientnet-lite0`: pretrained, with a linear layer to `feature_dim`).
    #[serde(default = "small")]
    pub backbone: String,
    pub widths: Vec<usize>,
    /// d of a pretrained backbone (the small one's is its last width).
    #[serde(default = "default_feature_dim")]
    pub feature_dim: usize,
    pub head_width: usize,
    pub seed: u64,
    pub threads: usize,
    /// Stop with an error when the process's peak RSS passes this many bytes.
    pub memory_cap: Option<u64>,
    /// Use at most this many training / test images (quick runs).
    pub max_train: Option<usize>,
    pub max_test: Option<usize>,
    #[serde(skip)]
    pub progress: bool,
}

fn small() -> String {
    SMALL.to_string()
}

fn default_feature_dim() -> usize {
    64
}

/// The built-in backbone's name.
pub const SMALL: &str = "small";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: f64,
    pub test_accuracy: f64,
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainPatchReport {
    pub options: TrainPatchOptions,
    pub net: PatchNetConfig,
    pub grid: Grid,
    pub dim: usize,
    /// Patches recomputed with gradients per inner step and image (m² for plain GD).
    pub sampled: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    pub backbone_params: usize,
    pub head_params: usize,
    pub epochs: Vec<EpochRow>,
    pub test_accuracy: f64,
    pub train_seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    pub stopped: Option<String>,
}

pub struct Trained {
    pub backbone: OnnxModel,
    pub head: OnnxModel,
    pub report: TrainPatchReport,
}

fn take<T>(v: &mut Vec<T>, n: Option<usize>) {
    if let Some(n) = n {
        v.truncate(n.max(1));
    }
}

/// Train on the folder `dir`.
pub fn train(dir: &Path, opts: &TrainPatchOptions) -> Result<Trained> {
    let mut set = UltraSet::open(dir, opts.image_size)?;
    take(&mut set.train, opts.max_train);
    take(&mut set.test, opts.max_test);
    let grid = Grid::new(1, opts.image_size, opts.patch)?;
    if opts.batch_size == 0 || opts.epochs == 0 {
        return Err(Error::Invalid(
            "train-patch needs a batch size and epochs of at least 1".into(),
        ));
    }
    let net = PatchNetConfig {
        in_channels: 1,
        patch: opts.patch,
        grid: grid.m(),
        widths: if opts.backbone == SMALL {
            opts.widths.clone()
        } else {
            vec![opts.feature_dim]
        },
        head_width: opts.head_width,
        classes: set.classes(),
        seed: opts.seed,
    };
    let engine = EngineOptions {
        threads: opts.threads,
        seed: opts.seed,
        ..Default::default()
    };
    let backbone = match opts.backbone.as_str() {
        SMALL => nets::backbone(&net)?,
        name => nets::pretrained_backbone(name, &net, &edgeslim_data::assets::Assets::open())?,
    };
    let p = PatchGd::new(&backbone, &nets::head(&net)?, grid, &engine)?;
    let (k, s) = match opts.method {
        Method::Patchgd => (opts.inner_steps, opts.fraction),
        Method::Gd => (1, 1.0),
    };
    let steps_per_epoch = set.train.len().div_ceil(opts.batch_size);
    let schedule = CosineSchedule {
        base_lr: opts.lr,
        min_lr: opts.lr * 0.01,
        warmup_steps: steps_per_epoch.min(20),
        total_steps: steps_per_epoch * opts.epochs,
    };
    let mut opt = AdamW::new(
        p.params(),
        AdamWConfig {
            lr: opts.lr,
            weight_decay: 1e-4,
            ..Default::default()
        },
        &DecayPolicy::all(),
    )?;
    let mut rng = edgeslim_data::rng(opts.seed, 0x9a7c);
    let bar = if opts.progress {
        indicatif::ProgressBar::new((steps_per_epoch * opts.epochs) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let t0 = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut stopped = None;
    let mut step = 0;
    let mut sampled = grid.positions();
    'epochs: for epoch in 1..=opts.epochs {
        let te = std::time::Instant::now();
        let mut order: Vec<usize> = (0..set.train.len()).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(opts.batch_size) {
            let entries: Vec<_> = chunk.iter().map(|&i| &set.train[i]).collect();
            let (x, y) = set.batch(&entries)?;
            let (grads, loss) = match opts.method {
                Method::Patchgd => {
                    let mb = p.minibatch(&x, &y, k, s, &mut rng)?;
                    sampled = mb.sampled;
                    (mb.grads, mb.loss)
                }
                Method::Gd => {
                    let l = p.full_loss(&x, &y)?;
                    let v = l
                        .to_dtype(edgeslim_train::engine::candle_core::DType::F64)
                        .and_then(|t| t.to_scalar::<f64>())
                        .map_err(|e| Error::Other(format!("loss: {e}")))?;
                    (p.backbone.backward(&l)?, v)
                }
            };
            opt.set_learning_rate(schedule.lr(step));
            p.backbone.in_pool(|| opt.step(&grads))?;
            step += 1;
            loss_sum += loss;
            batches += 1;
            bar.inc(1);
            bar.set_message(format!(
                "epoch {epoch} loss {:.3}",
                loss_sum / batches as f64
            ));
            if let (Some(cap), Some(peak)) =
                (opts.memory_cap, edgeslim_runtime::device::peak_rss_bytes())
            {
                if peak > cap {
                    return Err(Error::Invalid(format!(
                        "memory cap exceeded: peak RSS {} MiB > cap {} MiB ({} at {}², batch {}, \
                         {} patches with gradients per image); lower --batch-size, \
                         --sample-fraction or --image-size",
                        peak >> 20,
                        cap >> 20,
                        match opts.method {
                            Method::Patchgd => "PatchGD",
                            Method::Gd => "plain gradient descent",
                        },
                        opts.image_size,
                        opts.batch_size,
                        sampled
                    )));
                }
            }
            if edgeslim_train::interrupt::requested() {
                stopped = Some("interrupted".to_string());
                break 'epochs;
            }
        }
        let acc = evaluate(&p, &set, opts.batch_size)?;
        rows.push(EpochRow {
            epoch,
            train_loss: loss_sum / batches.max(1) as f64,
            test_accuracy: acc,
            seconds: te.elapsed().as_secs_f64(),
            peak_rss_bytes: edgeslim_runtime::device::peak_rss_bytes(),
        });
        bar.println(format!(
            "epoch {epoch:>3}/{}: train loss {:.4} | test accuracy {:.2} % | {:.0} s",
            opts.epochs,
            loss_sum / batches.max(1) as f64,
            100.0 * acc,
            te.elapsed().as_secs_f64()
        ));
    }
    bar.finish_and_clear();
    let test_accuracy = match rows.last() {
        Some(r) => r.test_accuracy,
        None => evaluate(&p, &set, opts.batch_size)?,
    };
    let report = TrainPatchReport {
        options: opts.clone(),
        net,
        grid,
        dim: p.dim,
        sampled,
        train_samples: set.train.len(),
        test_samples: set.test.len(),
        backbone_params: p.backbone.param_count(),
        head_params: p.head.param_count(),
        epochs: rows,
        test_accuracy,
        train_seconds: t0.elapsed().as_secs_f64(),
        peak_rss_bytes: edgeslim_runtime::device::peak_rss_bytes(),
        stopped,
    };
    Ok(Trained {
        backbone: p.backbone.export()?,
        head: p.head.export()?,
        report,
    })
}

/// Test-split accuracy (Z filled patch group by patch group, one head pass per batch).
pub fn evaluate(p: &PatchGd, set: &UltraSet, batch: usize) -> Result<f64> {
    let mut right = 0usize;
    for chunk in set.test.chunks(batch.max(1)) {
        let entries: Vec<_> = chunk.iter().collect();
        let (x, y) = set.batch(&entries)?;
        let pred = p.predict(&x, y.len())?;
        right += pred.iter().zip(&y).filter(|(a, b)| a == b).count();
    }
    Ok(right as f64 / set.test.len().max(1) as f64)
}
