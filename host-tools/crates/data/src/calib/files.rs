//! Calibration inputs from image and `.npy` files and folders, preprocessed and optionally
//! cut into windows (`edgeslim compress prune --calib PATH`).

use crate::{Error, Result};
use edgeslim_runtime::input::{image_to_tensor, open_image, read_npy, ImagePrep};
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use std::path::{Path, PathBuf};

/// Where calibration inputs come from.
#[derive(Debug, Clone)]
pub struct CalibFiles {
    /// Image files, `.npy` files, or directories of them.
    pub paths: Vec<PathBuf>,
    /// Windows cut from each image at the input's aspect ratio (0: the whole image, resized).
    /// Text-line classifiers need crops of a page, not the page squeezed to 48×192.
    pub crops: usize,
    pub prep: ImagePrep,
    /// At most this many inputs.
    pub limit: usize,
}

impl CalibFiles {
    pub fn new(paths: Vec<PathBuf>) -> CalibFiles {
        CalibFiles {
            paths,
            crops: 0,
            prep: ImagePrep::default(),
            limit: 64,
        }
    }
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()),
        Some(e) if e == "png" || e == "jpg" || e == "jpeg"
    )
}

fn files(spec: &CalibFiles) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in &spec.paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| is_image(f) || f.extension().is_some_and(|e| e == "npy"))
                .collect();
            v.sort();
            out.extend(v);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "calibration input not found"),
            ));
        }
    }
    if out.is_empty() {
        return Err(Error::option("calib", "no .png, .jpg or .npy files found"));
    }
    Ok(out)
}

/// Windows of aspect `w/h` over an image: `n` of them, on a grid of bands, in reading order.
fn crops(img: &image::DynamicImage, h: usize, w: usize, n: usize) -> Vec<image::DynamicImage> {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let mut out = Vec::new();
    // Band heights from a sixth of the image down, so crops hold a line or two of text.
    for bands in [6usize, 4, 8, 3] {
        let ch = (ih / bands).max(1);
        let cw = ((ch * w) / h.max(1)).clamp(1, iw);
        let cols = (iw / cw).max(1);
        for r in 0..bands {
            for c in 0..cols {
                if out.len() >= n {
                    return out;
                }
                let x = (c * cw) as u32;
                let y = (r * ch) as u32;
                out.push(img.crop_imm(x, y, cw as u32, ch as u32));
            }
        }
    }
    out
}

/// Load calibration inputs for a single-input model whose input has `shape`.
pub fn load_inputs(spec: &CalibFiles, shape: &[usize]) -> Result<Vec<Vec<TractTensor>>> {
    let mut out = Vec::new();
    for f in files(spec)? {
        if out.len() >= spec.limit {
            break;
        }
        if f.extension().is_some_and(|e| e == "npy") {
            let t = read_npy(&f)?;
            if t.shape() != shape {
                return Err(Error::tensor(
                    f.display().to_string(),
                    format!("shape {:?}, the model takes {shape:?}", t.shape()),
                ));
            }
            out.push(vec![t]);
            continue;
        }
        let img = open_image(&f)?;
        let pieces = if spec.crops > 0 && shape.len() == 4 {
            crops(&img, shape[2], shape[3], spec.crops)
        } else {
            vec![img]
        };
        for p in pieces {
            if out.len() >= spec.limit {
                break;
            }
            let t = image_to_tensor(&p, shape, &spec.prep)
                .map_err(|e| Error::Invalid(format!("{}: {e}", f.display())))?;
            out.push(vec![t]);
        }
    }
    Ok(out)
}
