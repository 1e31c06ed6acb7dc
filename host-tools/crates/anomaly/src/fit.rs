//! Fitting: features of the normal images through the trunk, one Gaussian per level for the
//! pooled (image) features and one for the per-location (map) features, thresholds from χ²
//! quantiles, and the host-side scoring the exported graph must reproduce.

use super::chi2::chi2_isf;
use super::features::{FeatureMap, Prep, Trunk};
use super::gaussian::{Gaussian, Samples, Shrinkage};
use crate::{Error, Result};
use edgeslim_runtime::input::SplitMix64;
use edgeslim_runtime::inspect::meta::{DetectorMeta, LevelMeta, ScoreMeta, FORMAT};
use edgeslim_runtime::io::source::list_images;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FitOptions {
    pub backbone: PathBuf,
    pub layers: Vec<String>,
    pub normal: PathBuf,
    /// Input size (H, W); default: the normal images' own size (they must agree).
    pub size: Option<(usize, usize)>,
    pub prep: Prep,
    pub shrinkage: Shrinkage,
    pub fpr: f64,
    pub maps: bool,
    /// At most this many location vectors per level for the map Gaussians (sampled evenly
    /// over the images with `seed`): the estimate is long converged by then.
    pub map_samples: usize,
    /// One map Gaussian per feature-map position (PaDiM) instead of one shared by all
    /// positions: a texture's statistics differ with position in aligned parts and photos.
    pub per_position: bool,
    /// How the image score is made.
    pub image_score: ImageScore,
    pub seed: u64,
    pub progress: bool,
}

/// The image score: the pooled features' distance (Rippel et al. 2020), or the anomaly map's
/// maximum (PaDiM), which a small defect in a busy texture cannot be averaged away from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageScore {
    Pooled,
    MapMax,
}

/// One level's Gaussians.
#[derive(Debug, Clone)]
pub struct LevelFit {
    pub image: Gaussian,
    pub map: Option<Gaussian>,
    /// Per-position map Gaussians (row-major over the level's grid) and their precisions.
    pub positions: Option<Vec<(Gaussian, Vec<f64>)>>,
    /// Precision matrices (Σ⁻¹) for the host-side scores.
    pub image_precision: Vec<f64>,
    pub map_precision: Option<Vec<f64>>,
}

/// A fitted detector: the trunk, the Gaussians and the metadata to store.
#[derive(Debug, Clone)]
pub struct Detector {
    pub trunk: Trunk,
    pub levels: Vec<LevelFit>,
    pub meta: DetectorMeta,
    /// Things the user should know (shrinkage carrying a singular covariance, ...).
    pub notes: Vec<String>,
    pub image_score: ImageScore,
}

/// The normal images, all of one size unless `size` is given.
pub fn normal_images(
    dir: &Path,
    size: Option<(usize, usize)>,
) -> Result<(Vec<PathBuf>, (usize, usize))> {
    let files = list_images(dir)?;
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no .png/.jpg images",
            dir.display()
        )));
    }
    let mut first: Option<(PathBuf, (u32, u32))> = None;
    for f in &files {
        let dims = image::image_dimensions(f)
            .map_err(|e| Error::Invalid(format!("{}: image does not decode: {e}", f.display())))?;
        match &first {
            None => first = Some((f.clone(), dims)),
            Some((p0, d0)) if *d0 != dims && size.is_none() => {
                return Err(Error::option("size", format!(
                    "mixed image sizes: {} is {}x{}, {} is {}x{}; crop them alike or give one size H,W to resize all",
                    p0.display(),
                    d0.0,
                    d0.1,
                    f.display(),
                    dims.0,
                    dims.1
                )))
            }
            _ => {}
        }
    }
    let (_, (w, h)) = first.expect("at least one file");
    Ok((files, size.unwrap_or((h as usize, w as usize))))
}

fn progress(n: usize, what: &str, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(n as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}

pub fn open_rgb(path: &Path) -> Result<image::RgbImage> {
    Ok(edgeslim_runtime::input::open_image(path)?.to_rgb8())
}

/// Fit a detector on the normal images.
pub fn fit(o: &FitOptions) -> Result<Detector> {
    if !(o.fpr > 0.0 && o.fpr < 1.0) {
        return Err(Error::option_value(
            "fpr",
            o.fpr,
            "a false-positive rate must be in (0, 1)",
        ));
    }
    let (files, (h, w)) = normal_images(&o.normal, o.size)?;
    let trunk = Trunk::build(&o.backbone, &o.layers, &o.prep, h, w)?;
    let ex = trunk.extractor()?;
    let n = files.len();
    let nl = trunk.layers.len();
    let mut pooled: Vec<Vec<f64>> = vec![Vec::new(); nl];
    let mut located: Vec<Vec<f64>> = vec![Vec::new(); nl];
    if o.image_score == ImageScore::MapMax && !o.maps {
        return Err(Error::option(
            "image_score",
            "map-max scores images by their anomaly map: add --maps",
        ));
    }
    let per_position = o.maps && o.per_position;
    // Per level, every image's vector at every position, laid out [position][image][channel].
    let mut at_position: Vec<Vec<f64>> = if per_position {
        trunk
            .shapes
            .iter()
            .map(|[c, gh, gw]| vec![0.0; gh * gw * n * c])
            .collect()
    } else {
        vec![Vec::new(); nl]
    };
    // Feature maps kept for the map's normal statistics (a bounded number of images).
    let keep_maps = if o.maps { n.min(64) } else { 0 };
    let mut kept: Vec<Vec<FeatureMap>> = Vec::new();
    let mut rng = SplitMix64(o.seed);
    let pb = progress(n, "features", o.progress);
    let mut v = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let feats = ex.extract(&open_rgb(f)?)?;
        for (l, fm) in feats.iter().enumerate() {
            pooled[l].extend(fm.pooled());
            if per_position {
                let c = fm.c;
                for at in 0..fm.h * fm.w {
                    fm.at(at / fm.w, at % fm.w, &mut v);
                    let base = (at * n + i) * c;
                    at_position[l][base..base + c].copy_from_slice(&v);
                }
            } else if o.maps {
                let locs = fm.h * fm.w;
                let per_image = (o.map_samples / n).clamp(1, locs);
                for s in 0..per_image {
                    // All locations when they fit, else a seeded random subset.
                    let at = if per_image == locs {
                        s
                    } else {
                        (rng.next_u64() % locs as u64) as usize
                    };
                    fm.at(at / fm.w, at % fm.w, &mut v);
                    located[l].extend_from_slice(&v);
                }
            }
        }
        if i < keep_maps {
            kept.push(feats);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();

    let mut notes = Vec::new();
    let mut levels = Vec::new();
    let mut level_meta = Vec::new();
    for (l, name) in trunk.layers.iter().enumerate() {
        let [c, gh, gw] = trunk.shapes[l];
        let what = format!("level '{name}' ({c} channels)");
        let image = Gaussian::fit(
            &Samples {
                data: &pooled[l],
                n,
                k: c,
            },
            o.shrinkage,
            &what,
        )?;
        if n <= c {
            notes.push(format!(
                "{what}: {n} normal images for {c}-dimensional features: the sample covariance is \
                 singular; Ledoit–Wolf shrinkage (intensity {:.3}) makes it invertible. More images \
                 give a sharper detector.",
                image.shrinkage
            ));
        }
        let positions = if per_position {
            let pb = progress(
                gh * gw,
                &format!("level {l}: per-position Gaussians"),
                o.progress,
            );
            let all = (0..gh * gw)
                .map(|p| {
                    pb.inc(1);
                    let g = Gaussian::fit(
                        &Samples {
                            data: &at_position[l][p * n * c..(p + 1) * n * c],
                            n,
                            k: c,
                        },
                        o.shrinkage,
                        &format!("{what}, position ({}, {})", p / gw, p % gw),
                    )?;
                    let precision = g.precision();
                    Ok((g, precision))
                })
                .collect::<Result<Vec<_>>>()?;
            pb.finish_and_clear();
            Some(all)
        } else {
            None
        };
        let map = if o.maps && !per_position {
            let m = located[l].len() / c;
            Some(Gaussian::fit(
                &Samples {
                    data: &located[l],
                    n: m,
                    k: c,
                },
                o.shrinkage,
                &format!("{what}, per location"),
            )?)
        } else {
            None
        };
        level_meta.push(LevelMeta {
            tensor: name.clone(),
            channels: c,
            grid: [gh, gw],
            shrinkage_image: image.shrinkage,
            shrinkage_map: match (&map, &positions) {
                (Some(g), _) => g.shrinkage,
                (None, Some(ps)) => {
                    ps.iter().map(|(g, _)| g.shrinkage).sum::<f64>() / ps.len().max(1) as f64
                }
                _ => 0.0,
            },
            // The map's maximum over P positions passes a per-position quantile at fpr / P
            // with probability at most fpr (Bonferroni): the threshold for a map-max score.
            chi_quantile: match o.image_score {
                ImageScore::Pooled => chi2_isf(c, o.fpr).sqrt(),
                ImageScore::MapMax => chi2_isf(c, o.fpr / (gh * gw) as f64).sqrt(),
            },
            samples_image: n,
            samples_map: match (&map, &positions) {
                (Some(g), _) => g.n,
                (None, Some(_)) => n,
                _ => 0,
            },
        });
        levels.push(LevelFit {
            image_precision: image.precision(),
            map_precision: map.as_ref().map(|g| g.precision()),
            image,
            map,
            positions,
        });
    }
    let threshold: f64 = level_meta.iter().map(|l| l.chi_quantile).sum();
    let rule = match o.image_score {
        ImageScore::Pooled => format!(
            "sum over levels of sqrt(chi2_k quantile at 1 - {}) with k = channels per level; exact \
             for Gaussian features whose levels are comonotonic, conservative (fewer false alarms) \
             when they are less dependent",
            o.fpr
        ),
        ImageScore::MapMax => format!(
            "sum over levels of sqrt(chi2_k quantile at 1 - {} / P) with k = channels and P = \
             positions per level: a Bonferroni bound for the maximum of the map",
            o.fpr
        ),
    };
    let mut det = Detector {
        meta: DetectorMeta {
            format: FORMAT,
            input: trunk.input.clone(),
            height: h,
            width: w,
            score_output: "score".into(),
            map_output: o.maps.then(|| "anomaly_map".to_string()),
            levels: level_meta,
            fpr: o.fpr,
            image: ScoreMeta {
                threshold,
                threshold_rule: rule.clone(),
                norm_lo: 0.0,
                normal_mean: 0.0,
                normal_std: 0.0,
                normal_max: 0.0,
            },
            map: None,
            combine: format!(
                "{}; the map sums the per-location distances ({}) after bilinear upsampling to \
                 the input size",
                match o.image_score {
                    ImageScore::Pooled =>
                        "score = sum over levels of the Mahalanobis distance \
                                           sqrt(d^2) of the pooled features",
                    ImageScore::MapMax => "score = the maximum of the anomaly map",
                },
                if per_position {
                    "one Gaussian per position"
                } else {
                    "one Gaussian per level, shared by all positions"
                }
            ),
            backbone: o
                .backbone
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            backbone_sha256: trunk.backbone_sha256.clone(),
            normal_images: n,
        },
        trunk,
        levels,
        notes,
        image_score: ImageScore::Pooled,
    };
    det.image_score = o.image_score;
    // Normal statistics (in-sample) for the normalisation anchor and for the user to judge.
    let scores: Vec<f64> = if o.image_score == ImageScore::MapMax {
        kept.iter().map(|f| det.image_score(f)).collect()
    } else {
        (0..n)
            .map(|i| {
                let f: Vec<Vec<f64>> = (0..nl)
                    .map(|l| {
                        let c = det.trunk.shapes[l][0];
                        pooled[l][i * c..(i + 1) * c].to_vec()
                    })
                    .collect();
                det.image_score_pooled(&f)
            })
            .collect()
    };
    det.meta.image = score_meta(&scores, threshold, &rule);
    if o.maps {
        let mut pixels = Vec::new();
        for feats in &kept {
            pixels.extend(det.map(feats).into_iter().map(|v| v as f64));
        }
        det.meta.map = Some(score_meta(&pixels, threshold, &rule));
    }
    Ok(det)
}

fn score_meta(values: &[f64], threshold: f64, rule: &str) -> ScoreMeta {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    ScoreMeta {
        threshold,
        threshold_rule: rule.to_string(),
        // Anchor 0 at the lowest normal score, unless the threshold sits below it.
        norm_lo: if min.is_finite() && min < threshold {
            min
        } else {
            0.0
        },
        normal_mean: mean,
        normal_std: var.sqrt(),
        normal_max: max,
    }
}

/// Bilinear upsampling with ONNX Resize's `half_pixel` coordinates (edges clamped): the
/// host reference for the graph's Resize.
pub fn upsample_bilinear(src: &[f64], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f64> {
    let mut out = vec![0.0; oh * ow];
    let coord = |o: usize, n_in: usize, n_out: usize| {
        let x = ((o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).clamp(0.0, (n_in - 1) as f64);
        let x0 = x.floor() as usize;
        let x1 = (x0 + 1).min(n_in - 1);
        (x0, x1, x - x0 as f64)
    };
    for y in 0..oh {
        let (y0, y1, fy) = coord(y, h, oh);
        for x in 0..ow {
            let (x0, x1, fx) = coord(x, w, ow);
            let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
            let bot = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
            out[y * ow + x] = top * (1.0 - fy) + bot * fy;
        }
    }
    out
}

impl Detector {
    /// The image score from pooled features per level: Σ_l sqrt(d_l²).
    pub fn image_score_pooled(&self, pooled: &[Vec<f64>]) -> f64 {
        self.levels
            .iter()
            .zip(pooled)
            .map(|(lf, f)| {
                lf.image
                    .mahalanobis2(&lf.image_precision, f)
                    .max(0.0)
                    .sqrt()
            })
            .sum()
    }

    /// The image score of an image's feature maps (host computation, f64).
    pub fn image_score(&self, feats: &[FeatureMap]) -> f64 {
        if self.image_score == ImageScore::MapMax {
            return self
                .map(feats)
                .into_iter()
                .fold(f64::NEG_INFINITY, |m, v| m.max(v as f64));
        }
        let pooled: Vec<Vec<f64>> = feats.iter().map(|f| f.pooled()).collect();
        self.image_score_pooled(&pooled)
    }

    /// The anomaly map at the input size (host computation), or empty without map Gaussians.
    pub fn map(&self, feats: &[FeatureMap]) -> Vec<f32> {
        let (oh, ow) = (self.meta.height, self.meta.width);
        let mut total = vec![0.0f64; oh * ow];
        let mut v = Vec::new();
        for (lf, fm) in self.levels.iter().zip(feats) {
            let mut d = vec![0.0; fm.h * fm.w];
            for y in 0..fm.h {
                for x in 0..fm.w {
                    fm.at(y, x, &mut v);
                    let d2 = match (&lf.positions, &lf.map, &lf.map_precision) {
                        (Some(ps), _, _) => {
                            let (g, p) = &ps[y * fm.w + x];
                            g.mahalanobis2(p, &v)
                        }
                        (None, Some(g), Some(p)) => g.mahalanobis2(p, &v),
                        _ => return Vec::new(),
                    };
                    d[y * fm.w + x] = d2.max(0.0).sqrt();
                }
            }
            for (t, u) in total
                .iter_mut()
                .zip(upsample_bilinear(&d, fm.h, fm.w, oh, ow))
            {
                *t += u;
            }
        }
        total.into_iter().map(|v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_matches_half_pixel_resize() {
        // 2 → 4: half-pixel centres at -0.25, 0.25, 0.75, 1.25 → clamped 0, 0.25, 0.75, 1.
        let out = upsample_bilinear(&[0.0, 4.0], 1, 2, 1, 4);
        assert_eq!(out, vec![0.0, 1.0, 3.0, 4.0]);
    }
}
