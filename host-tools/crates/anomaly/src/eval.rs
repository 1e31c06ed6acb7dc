//! Evaluation of an exported detector on an MVTec-layout folder, run by tract exactly as the
//! board runs it (the same `Inspector`), with the threshold stored in the model.

use super::metrics::{auroc, PixelSet};
use crate::{Error, Result};
use edgeslim_runtime::inspect::Inspector;
use edgeslim_runtime::io::source::list_images;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One test image and its ground truth.
#[derive(Debug, Clone)]
pub struct TestItem {
    pub path: PathBuf,
    /// `good` or the defect folder's name.
    pub defect: String,
    pub mask: Option<PathBuf>,
}

const LAYOUT: &str =
    "MVTec layout: train/good/, test/good/, test/<defect>/, ground_truth/<defect>/<name>_mask.png";

/// The test images of an MVTec-layout folder. Masks must exist for every defective image
/// unless `image_only`.
pub fn read_mvtec(dir: &Path, image_only: bool) -> Result<Vec<TestItem>> {
    let test = dir.join("test");
    if !test.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: no test/ folder ({LAYOUT})",
            dir.display()
        )));
    }
    let mut items = Vec::new();
    let mut missing = Vec::new();
    for p in list_images(&test)? {
        let defect = p
            .parent()
            .and_then(|d| d.file_name())
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mask = if defect == "good" {
            None
        } else {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let m = dir
                .join("ground_truth")
                .join(&defect)
                .join(format!("{stem}_mask.png"));
            if m.is_file() {
                Some(m)
            } else {
                missing.push(m);
                None
            }
        };
        items.push(TestItem {
            path: p,
            defect,
            mask,
        });
    }
    if !missing.is_empty() && !image_only {
        return Err(Error::option(
            "image_only",
            format!(
            "masks missing: {} of the defective test images have no mask, e.g. {}; pixel AUROC and \
             PRO need them (or score images alone)",
            missing.len(),
            missing[0].display()
        ),
        ));
    }
    if !items.iter().any(|i| i.defect == "good") || !items.iter().any(|i| i.defect != "good") {
        return Err(Error::Invalid(format!(
            "{}: AUROC needs both test/good and at least one test/<defect> folder with images ({LAYOUT})",
            test.display()
        )));
    }
    Ok(items)
}

#[derive(Debug, Clone, Serialize)]
pub struct DefectResult {
    pub defect: String,
    pub images: usize,
    /// AUROC of this defect's images against test/good.
    pub image_auroc: f64,
    /// Fraction flagged at the stored threshold.
    pub detected_at_threshold: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub task: &'static str,
    pub detector: String,
    pub data: String,
    pub engine: &'static str,
    pub good_images: usize,
    pub defective_images: usize,
    pub image_auroc: f64,
    pub pixel_auroc: Option<f64>,
    /// PRO integrated to FPR 0.3, normalised.
    pub pro: Option<f64>,
    pub threshold: f64,
    /// Good test images above the stored threshold (the observed false-positive rate).
    pub false_positive_rate: f64,
    /// Defective test images above it.
    pub true_positive_rate: f64,
    pub per_defect: Vec<DefectResult>,
    pub mean_infer_ms: f64,
}

fn read_mask(p: &Path, w: usize, h: usize) -> Result<Vec<bool>> {
    let img = edgeslim_runtime::input::open_image(p)?.to_luma8();
    let img = if img.dimensions() != (w as u32, h as u32) {
        image::imageops::resize(
            &img,
            w as u32,
            h as u32,
            image::imageops::FilterType::Nearest,
        )
    } else {
        img
    };
    Ok(img.pixels().map(|p| p[0] > 127).collect())
}

pub fn evaluate(
    detector: &Path,
    data: &Path,
    image_only: bool,
    progress: bool,
) -> Result<EvalReport> {
    let items = read_mvtec(data, image_only)?;
    let insp = Inspector::load(detector, 1)?;
    let threshold = insp.meta.image.threshold;
    let with_maps = insp.meta.map_output.is_some() && !image_only;
    let (w, h) = (insp.meta.width, insp.meta.height);
    let pb = if progress {
        indicatif::ProgressBar::new(items.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut scores = Vec::new();
    let mut pixels = PixelSet::default();
    let mut ms = 0.0;
    for it in &items {
        let img = edgeslim_runtime::input::open_image(&it.path)?.to_rgb8();
        let r = insp.inspect(&img, threshold)?;
        ms += r.infer_ms;
        scores.push(r.score);
        if with_maps {
            if let Some(map) = &r.map {
                let mask = match &it.mask {
                    Some(m) => read_mask(m, w, h)?,
                    None => vec![false; w * h],
                };
                pixels.add(&map.data, &mask, w, h);
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let labels: Vec<bool> = items.iter().map(|i| i.defect != "good").collect();
    let image_auroc =
        auroc(&scores, &labels).ok_or_else(|| Error::Other("AUROC needs both classes".into()))?;
    let mut defects: Vec<String> = items
        .iter()
        .filter(|i| i.defect != "good")
        .map(|i| i.defect.clone())
        .collect();
    defects.sort();
    defects.dedup();
    let good: Vec<f64> = items
        .iter()
        .zip(&scores)
        .filter(|(i, _)| i.defect == "good")
        .map(|(_, &s)| s)
        .collect();
    let mut per_defect = Vec::new();
    for d in &defects {
        let bad: Vec<f64> = items
            .iter()
            .zip(&scores)
            .filter(|(i, _)| &i.defect == d)
            .map(|(_, &s)| s)
            .collect();
        let s: Vec<f64> = good.iter().chain(&bad).copied().collect();
        let l: Vec<bool> = good
            .iter()
            .map(|_| false)
            .chain(bad.iter().map(|_| true))
            .collect();
        per_defect.push(DefectResult {
            defect: d.clone(),
            images: bad.len(),
            image_auroc: auroc(&s, &l).unwrap_or(f64::NAN),
            detected_at_threshold: bad.iter().filter(|&&v| v > threshold).count() as f64
                / bad.len().max(1) as f64,
        });
    }
    let n_bad = labels.iter().filter(|&&l| l).count();
    let above = |want: bool| {
        scores
            .iter()
            .zip(&labels)
            .filter(|(&s, &l)| l == want && s > threshold)
            .count() as f64
    };
    Ok(EvalReport {
        task: "anomaly",
        detector: detector.display().to_string(),
        data: data.display().to_string(),
        engine: "tract",
        good_images: good.len(),
        defective_images: n_bad,
        image_auroc,
        pixel_auroc: if with_maps { pixels.auroc() } else { None },
        pro: if with_maps { pixels.pro(0.3) } else { None },
        threshold,
        false_positive_rate: above(false) / good.len().max(1) as f64,
        true_positive_rate: above(true) / n_bad.max(1) as f64,
        per_defect,
        mean_infer_ms: ms / items.len().max(1) as f64,
    })
}
