//! Fine-tuning the backbone for Gaussian anomaly detection (docs/methods/anomaly.md, the
//! transfer-learning
//! follow-up): train the trunk so that normal images move closer to their Gaussian (minimise
//! the image score, Σ_l sqrt(d_l²), of normal images), and stop at the onset of catastrophic
//! forgetting, which a validation set of held-out normal images and *synthetic* anomalies made
//! from them by augmentations (noise, blur, intensity and patch-swap patches) shows as a falling
//! AUROC. No real anomaly is seen.
//!
//! Per epoch: the Gaussians (mean, Ledoit–Wolf precision of the pooled features per level) are
//! re-estimated from the training normals with the current weights and held fixed while the
//! epoch's steps minimise the score of augmented (flipped) training normals. Epoch 0 is the
//! pretrained backbone. The weights of the best validation epoch are written.
//!
//! The output is the fine-tuned *trunk* (RGB in [0, 1], the backbone's normalisation inside,
//! the chosen layers as outputs) with an `edgeslim.anomaly.trunk` metadata entry, which
//! `edgeslim anomaly fit` recognises: it then needs no `--layers` and no normalisation flags.

use super::features::{Prep, Trunk};
use super::fit::{normal_images, open_rgb};
use super::gaussian::{Gaussian, Samples, Shrinkage};
use super::metrics::auroc;
use crate::{Error, Result};
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::input::{tensor_to_f32_vec, SplitMix64};
use edgeslim_train::engine::candle_core;
use edgeslim_train::engine::candle_core::{DType, Device, Tensor};
use edgeslim_train::engine::{EngineOptions, GraphModule, Mode};
use edgeslim_train::optim::{AdamW, AdamWConfig, DecayPolicy, Optimizer};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The metadata key of a fine-tuned trunk.
pub const TRUNK_KEY: &str = "edgeslim.anomaly.trunk";

#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub backbone: PathBuf,
    pub layers: Vec<String>,
    pub normal: PathBuf,
    pub size: Option<(usize, usize)>,
    pub prep: Prep,
    /// Epochs at most (early stopping usually ends sooner).
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    /// Share of the normal images held out for validation.
    pub val_fraction: f64,
    /// Stop after this many epochs without a better validation AUROC.
    pub patience: usize,
    pub threads: usize,
    pub seed: u64,
    pub progress: bool,
}

/// What a fine-tuned trunk says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrunkMeta {
    pub layers: Vec<String>,
    pub height: usize,
    pub width: usize,
    pub base_backbone: String,
    pub base_backbone_sha256: String,
    pub best_epoch: usize,
    pub curves: Vec<EpochRecord>,
}

/// One epoch of the two curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// The objective: mean image score of the training normals (under this epoch's
    /// re-estimated Gaussians, in evaluation mode, no augmentation).
    pub train_score: f64,
    /// Mean image score of the held-out normals.
    pub val_normal_score: f64,
    /// Mean image score of the synthetic anomalies.
    pub val_anomaly_score: f64,
    /// Image AUROC of held-out normals vs synthetic anomalies: the stopping signal.
    pub val_auroc: f64,
    /// Mean training loss over the epoch's steps (augmented batches, Gaussians fixed);
    /// none for epoch 0.
    pub step_loss: Option<f64>,
    pub seconds: f64,
}

pub struct Finetuned {
    pub model: OnnxModel,
    pub meta: TrunkMeta,
    /// Why training ended.
    pub stop: String,
    pub train_images: usize,
    pub val_images: usize,
}

fn cerr(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!(
        "{what}: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

/// Image as [3, H, W] RGB in [0, 1], resized like the board does.
fn to_chw(img: &image::RgbImage, h: usize, w: usize) -> Result<Vec<f32>> {
    Ok(tensor_to_f32_vec(
        &edgeslim_runtime::inspect::frame_tensor(img, h, w),
    )?)
}

/// A synthetic anomaly for validation, made by one of four augmentations on a random patch:
/// Gaussian noise, a box blur, an intensity change, or a patch swapped in from elsewhere in
/// the same image and turned by 90°. Deliberately not the test set's defect generators.
fn synthetic_anomaly(x: &[f32], h: usize, w: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let mut out = x.to_vec();
    let r = |rng: &mut SplitMix64, a: f32, b: f32| a + (b - a) * rng.next_f32();
    let ph = (r(rng, 0.12, 0.3) * h as f32) as usize;
    let pw = (r(rng, 0.12, 0.3) * w as f32) as usize;
    let (ph, pw) = (ph.max(2), pw.max(2));
    let y0 = (rng.next_u64() as usize) % (h - ph + 1);
    let x0 = (rng.next_u64() as usize) % (w - pw + 1);
    let kind = rng.next_u64() % 4;
    let hw = h * w;
    match kind {
        0 => {
            for c in 0..3 {
                for y in y0..y0 + ph {
                    for xx in x0..x0 + pw {
                        // Box–Muller from two uniforms.
                        let u1 = rng.next_f32().max(1e-7);
                        let u2 = rng.next_f32();
                        let g = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
                        let v = &mut out[c * hw + y * w + xx];
                        *v = (*v + 0.15 * g).clamp(0.0, 1.0);
                    }
                }
            }
        }
        1 => {
            let k = 4i64;
            for c in 0..3 {
                for y in y0..y0 + ph {
                    for xx in x0..x0 + pw {
                        let mut s = 0.0;
                        let mut n = 0.0;
                        for dy in -k..=k {
                            for dx in -k..=k {
                                let (yy, xs) = (y as i64 + dy, xx as i64 + dx);
                                if yy >= 0 && xs >= 0 && (yy as usize) < h && (xs as usize) < w {
                                    s += x[c * hw + yy as usize * w + xs as usize];
                                    n += 1.0;
                                }
                            }
                        }
                        out[c * hw + y * w + xx] = s / n;
                    }
                }
            }
        }
        2 => {
            let gain = if rng.next_f32() < 0.5 {
                r(rng, 0.55, 0.75)
            } else {
                r(rng, 1.3, 1.5)
            };
            for c in 0..3 {
                for y in y0..y0 + ph {
                    for xx in x0..x0 + pw {
                        let v = &mut out[c * hw + y * w + xx];
                        *v = (*v * gain).clamp(0.0, 1.0);
                    }
                }
            }
        }
        _ => {
            // A square patch from another place, turned by 90°.
            let s = ph.min(pw);
            let sy = (rng.next_u64() as usize) % (h - s + 1);
            let sx = (rng.next_u64() as usize) % (w - s + 1);
            for c in 0..3 {
                for i in 0..s {
                    for j in 0..s {
                        out[c * hw + (y0 + i) * w + x0 + j] =
                            x[c * hw + (sy + j) * w + sx + s - 1 - i];
                    }
                }
            }
        }
    }
    out
}

fn hflip(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut o = vec![0.0; x.len()];
    for c in 0..3 {
        for y in 0..h {
            for xx in 0..w {
                o[c * h * w + y * w + xx] = x[c * h * w + y * w + (w - 1 - xx)];
            }
        }
    }
    o
}

fn vflip(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut o = vec![0.0; x.len()];
    for c in 0..3 {
        for y in 0..h {
            o[c * h * w + y * w..c * h * w + (y + 1) * w]
                .copy_from_slice(&x[c * h * w + (h - 1 - y) * w..c * h * w + (h - y) * w]);
        }
    }
    o
}

/// The fixed (detached) Gaussian of one level as tensors.
struct LevelGauss {
    mean: Tensor,
    precision: Tensor,
    gauss: Gaussian,
    prec: Vec<f64>,
}

struct Ctx<'a> {
    module: &'a GraphModule,
    input: &'a str,
    layers: &'a [String],
    h: usize,
    w: usize,
}

impl Ctx<'_> {
    fn batch(&self, imgs: &[&[f32]]) -> Result<Tensor> {
        let mut v = Vec::with_capacity(imgs.len() * 3 * self.h * self.w);
        for i in imgs {
            v.extend_from_slice(i);
        }
        Tensor::from_vec(v, (imgs.len(), 3, self.h, self.w), &Device::Cpu)
            .map_err(|e| cerr("input batch", e))
    }

    /// Pooled features [B, C] per level.
    fn pooled(&self, x: Tensor, grad: bool) -> Result<Vec<Tensor>> {
        let outs = if grad {
            self.module.forward(&[(self.input, x)], Mode::Train, &[])?
        } else {
            self.module.forward_inference(&[(self.input, x)], &[])?
        };
        self.layers
            .iter()
            .map(|l| {
                let t = outs
                    .get(l)
                    .ok_or_else(|| Error::Other(format!("the trunk did not output '{l}'")))?;
                t.mean((2, 3)).map_err(|e| cerr("pooling", e))
            })
            .collect()
    }

    /// Pooled features of many images, as f64 rows per level.
    fn pooled_all(&self, imgs: &[Vec<f32>], batch: usize) -> Result<Vec<Vec<f64>>> {
        let mut rows: Vec<Vec<f64>> = vec![Vec::new(); self.layers.len()];
        for chunk in imgs.chunks(batch.max(1)) {
            let refs: Vec<&[f32]> = chunk.iter().map(|v| v.as_slice()).collect();
            let p = self.pooled(self.batch(&refs)?, false)?;
            for (l, t) in p.iter().enumerate() {
                let v: Vec<f32> = t
                    .flatten_all()
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.to_vec1())
                    .map_err(|e| cerr("features", e))?;
                rows[l].extend(v.iter().map(|&x| x as f64));
            }
        }
        Ok(rows)
    }
}

fn fit_levels(rows: &[Vec<f64>], n: usize, dtype: DType) -> Result<Vec<LevelGauss>> {
    rows.iter()
        .enumerate()
        .map(|(l, data)| {
            let k = data.len() / n;
            let gauss = Gaussian::fit(
                &Samples { data, n, k },
                Shrinkage::LedoitWolf,
                &format!("level {l}"),
            )?;
            let prec = gauss.precision();
            let mean = Tensor::from_vec(gauss.mean.clone(), (1, k), &Device::Cpu)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(|e| cerr("mean", e))?;
            let precision = Tensor::from_vec(prec.clone(), (k, k), &Device::Cpu)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(|e| cerr("precision", e))?;
            Ok(LevelGauss {
                mean,
                precision,
                gauss,
                prec,
            })
        })
        .collect()
}

/// Image scores of rows (per level, n rows each) under the Gaussians.
fn scores(rows: &[Vec<f64>], n: usize, g: &[LevelGauss]) -> Vec<f64> {
    (0..n)
        .map(|i| {
            g.iter()
                .zip(rows)
                .map(|(lg, r)| {
                    let k = lg.gauss.k;
                    lg.gauss
                        .mahalanobis2(&lg.prec, &r[i * k..(i + 1) * k])
                        .max(0.0)
                        .sqrt()
                })
                .sum()
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Fine-tune the trunk of `o.backbone`.
pub fn finetune(o: &FinetuneOptions) -> Result<Finetuned> {
    if !(o.val_fraction > 0.0 && o.val_fraction < 1.0) {
        return Err(Error::option_value(
            "val_fraction",
            o.val_fraction,
            "the held-out fraction must be in (0, 1)",
        ));
    }
    if o.batch < 2 {
        return Err(Error::option_value(
            "batch",
            o.batch,
            "a batch needs at least 2 images",
        ));
    }
    if !(o.lr > 0.0 && o.lr.is_finite()) {
        return Err(Error::option_value(
            "lr",
            o.lr,
            "the learning rate must be positive",
        ));
    }
    let (files, (h, w)) = normal_images(&o.normal, o.size)?;
    let n_val = ((files.len() as f64 * o.val_fraction).round() as usize).max(4);
    if files.len() < n_val + 8 {
        return Err(Error::Invalid(format!(
            "{}: {} normal images; fine-tuning needs at least {} ({} held out for validation, 8 to train on)",
            o.normal.display(),
            files.len(),
            n_val + 8,
            n_val
        )));
    }
    let trunk = Trunk::build(&o.backbone, &o.layers, &o.prep, h, w)?;
    let mut module = GraphModule::from_onnx(
        &trunk.model,
        &EngineOptions {
            threads: o.threads,
            seed: o.seed,
            ..EngineOptions::default()
        },
    )?;
    // The preprocessing constants are not weights to learn.
    module.set_freeze(Some(&edgeslim_train::engine::Freeze::pattern("^prep\\.")?));
    let ctx = Ctx {
        module: &module,
        input: &trunk.input,
        layers: &trunk.layers,
        h,
        w,
    };

    // Load, shuffle (seeded), split.
    let mut rng = SplitMix64(o.seed ^ 0x5eed_f17e);
    let mut order: Vec<usize> = (0..files.len()).collect();
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut imgs = Vec::with_capacity(files.len());
    for &i in &order {
        imgs.push(to_chw(&open_rgb(&files[i])?, h, w)?);
    }
    let val: Vec<Vec<f32>> = imgs.split_off(imgs.len() - n_val);
    let train = imgs;
    let val_anom: Vec<Vec<f32>> = val
        .iter()
        .flat_map(|x| {
            (0..2)
                .map(|_| synthetic_anomaly(x, h, w, &mut rng))
                .collect::<Vec<_>>()
        })
        .collect();

    let eval_batch = 8;
    let evaluate = |epoch: usize,
                    step_loss: Option<f64>,
                    t0: std::time::Instant|
     -> Result<(EpochRecord, Vec<LevelGauss>)> {
        let tr = ctx.pooled_all(&train, eval_batch)?;
        let g = fit_levels(&tr, train.len(), module.dtype())?;
        let s_tr = scores(&tr, train.len(), &g);
        let vn = ctx.pooled_all(&val, eval_batch)?;
        let va = ctx.pooled_all(&val_anom, eval_batch)?;
        let s_vn = scores(&vn, val.len(), &g);
        let s_va = scores(&va, val_anom.len(), &g);
        let mut all = s_vn.clone();
        all.extend(&s_va);
        let labels: Vec<bool> = (0..all.len()).map(|i| i >= s_vn.len()).collect();
        let a = auroc(&all, &labels).unwrap_or(0.5);
        for v in [&s_tr, &s_vn, &s_va] {
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::Other(format!(
                    "epoch {epoch}: scores are not finite (the features diverged); lower the learning rate"
                )));
            }
        }
        Ok((
            EpochRecord {
                epoch,
                train_score: mean(&s_tr),
                val_normal_score: mean(&s_vn),
                val_anomaly_score: mean(&s_va),
                val_auroc: a,
                step_loss,
                seconds: t0.elapsed().as_secs_f64(),
            },
            g,
        ))
    };

    let steps_per_epoch = train.len().div_ceil(o.batch);
    let pb = if o.progress {
        let pb = indicatif::ProgressBar::new((o.epochs * steps_per_epoch) as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "finetune [{bar:30}] {pos}/{len} steps {elapsed}/{eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };

    let (rec0, mut gauss) = evaluate(0, None, std::time::Instant::now())?;
    if o.progress {
        eprintln!(
            "epoch 0 (pretrained): train score {:.3}, val AUROC {:.4} ({:.0} s)",
            rec0.train_score, rec0.val_auroc, rec0.seconds
        );
    }
    pb.set_message(format!("epoch 0 val AUROC {:.3}", rec0.val_auroc));
    let mut curves = vec![rec0];
    let mut best = (0usize, curves[0].val_auroc, module.export()?);
    let mut opt = AdamW::new(
        module.require_trainable()?,
        AdamWConfig {
            lr: o.lr,
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
        &DecayPolicy::all(),
    )?;
    let mut stop = format!("reached the last epoch ({})", o.epochs);
    for epoch in 1..=o.epochs {
        let t0 = std::time::Instant::now();
        let mut perm: Vec<usize> = (0..train.len()).collect();
        for i in (1..perm.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            perm.swap(i, j);
        }
        let mut losses = Vec::new();
        for chunk in perm.chunks(o.batch) {
            if chunk.len() < 2 {
                continue;
            }
            let aug: Vec<Vec<f32>> = chunk
                .iter()
                .map(|&i| {
                    let mut x = train[i].clone();
                    if rng.next_f32() < 0.5 {
                        x = hflip(&x, h, w);
                    }
                    if rng.next_f32() < 0.5 {
                        x = vflip(&x, h, w);
                    }
                    x
                })
                .collect();
            let refs: Vec<&[f32]> = aug.iter().map(|v| v.as_slice()).collect();
            let x = ctx.batch(&refs)?;
            let pooled = ctx.pooled(x, true)?;
            let loss = module.in_pool(|| -> candle_core::Result<Tensor> {
                let mut total: Option<Tensor> = None;
                for (p, g) in pooled.iter().zip(&gauss) {
                    let d = p.broadcast_sub(&g.mean)?;
                    let d2 = (d.matmul(&g.precision)? * &d)?.sum(1)?;
                    let s = (d2.relu()? + 1e-6)?.sqrt()?;
                    total = Some(match total {
                        Some(t) => (t + s)?,
                        None => s,
                    });
                }
                total.expect("at least one level").mean_all()
            });
            let loss = loss.map_err(|e| cerr("Mahalanobis loss", e))?;
            let lv = loss
                .to_dtype(DType::F64)
                .and_then(|t| t.to_scalar::<f64>())
                .map_err(|e| cerr("loss", e))?;
            if !lv.is_finite() {
                return Err(Error::Other(format!(
                    "epoch {epoch}: the loss is {lv}; lower the learning rate"
                )));
            }
            losses.push(lv);
            let grads = module.backward(&loss)?;
            module.in_pool(|| opt.step(&grads))?;
            pb.inc(1);
        }
        let (rec, g) = evaluate(epoch, Some(mean(&losses)), t0)?;
        gauss = g;
        pb.set_message(format!(
            "epoch {epoch} val AUROC {:.3} (best {:.3} at {})",
            rec.val_auroc, best.1, best.0
        ));
        let a = rec.val_auroc;
        if o.progress {
            pb.suspend(|| {
                eprintln!(
                    "epoch {epoch}: step loss {:.3}, train score {:.3}, val AUROC {:.4} ({:.0} s)",
                    rec.step_loss.unwrap_or(f64::NAN),
                    rec.train_score,
                    rec.val_auroc,
                    rec.seconds
                )
            });
        }
        curves.push(rec);
        if a > best.1 + 1e-9 {
            best = (epoch, a, module.export()?);
        } else if epoch - best.0 >= o.patience {
            stop = format!(
                "validation AUROC fell from {:.4} (epoch {}) and did not recover for {} epoch(s): the onset of forgetting",
                best.1, best.0, o.patience
            );
            break;
        }
    }
    pb.finish_and_clear();
    let (best_epoch, _, mut model) = best;
    let meta = TrunkMeta {
        layers: trunk.layers.clone(),
        height: h,
        width: w,
        base_backbone: o
            .backbone
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        base_backbone_sha256: trunk.backbone_sha256.clone(),
        best_epoch,
        curves,
    };
    model.set_metadata(
        TRUNK_KEY,
        &serde_json::to_string(&meta).map_err(|e| Error::Other(e.to_string()))?,
    );
    Ok(Finetuned {
        model,
        meta,
        stop,
        train_images: train.len(),
        val_images: val.len(),
    })
}

/// The trunk metadata of a model file, if it is a fine-tuned trunk.
pub fn trunk_meta(model: &OnnxModel) -> Result<Option<TrunkMeta>> {
    match model.metadata(TRUNK_KEY) {
        None => Ok(None),
        Some(j) => serde_json::from_str(j)
            .map(Some)
            .map_err(|e| Error::Invalid(format!("metadata '{TRUNK_KEY}' does not parse: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_anomalies_change_one_patch_only() {
        let (h, w) = (32, 40);
        let x: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 37) % 255) as f32 / 255.0)
            .collect();
        let mut rng = SplitMix64(3);
        for _ in 0..16 {
            let a = synthetic_anomaly(&x, h, w, &mut rng);
            assert_eq!(a.len(), x.len());
            let changed = a.iter().zip(&x).filter(|(p, q)| p != q).count();
            assert!(changed > 0, "an anomaly changes pixels");
            assert!(
                changed <= 3 * (h * 3 / 10 + 1) * (w * 3 / 10 + 1),
                "{changed}"
            );
            assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        assert_eq!(hflip(&hflip(&x, h, w), h, w), x);
        assert_eq!(vflip(&vflip(&x, h, w), h, w), x);
    }
}
