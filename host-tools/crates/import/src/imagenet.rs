//! ImageNet-1k class names and the usual evaluation preprocessing (resize the short side to
//! size/0.875, centre crop), from the class lists timm ships (`imagenet_synsets.txt` in class
//! order, `imagenet_synset_to_lemma.txt` for names).

use crate::{Error, Result};
use edgeslim_data::assets::{Assets, IMAGENET_LEMMAS, IMAGENET_SYNSETS};
use edgeslim_data::Normalization;
use std::collections::HashMap;
use std::path::Path;

/// The 1000 class names in the order classifier outputs use (e.g. 281 = "tabby, tabby cat").
pub fn labels(assets: &Assets) -> Result<Vec<String>> {
    let read = |rel: &str| {
        let p = assets.file(rel);
        std::fs::read_to_string(&p).map_err(|e| Error::io(p, e))
    };
    let synsets = read(IMAGENET_SYNSETS)?;
    let lemmas = read(IMAGENET_LEMMAS)?;
    let names: HashMap<&str, &str> = lemmas.lines().filter_map(|l| l.split_once('\t')).collect();
    let out: Vec<String> = synsets
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|id| {
            names
                .get(id.trim())
                .map_or(id.to_string(), |n| n.to_string())
        })
        .collect();
    if out.len() != 1000 {
        return Err(Error::Invalid(format!(
            "{}: {} classes, ImageNet-1k has 1000",
            assets.file(IMAGENET_SYNSETS).display(),
            out.len()
        )));
    }
    Ok(out)
}

/// An image file as a [1, 3, size, size] NCHW tensor: short side resized to size/0.875
/// (bilinear), centre crop, pixels scaled to [0, 1] and normalised.
pub fn load_image(path: &Path, size: usize, norm: &Normalization) -> Result<Vec<f32>> {
    let img = edgeslim_runtime::input::open_image(path)?;
    Ok(prepare(&img, size, norm))
}

pub fn prepare(img: &image::DynamicImage, size: usize, norm: &Normalization) -> Vec<f32> {
    let (w, h) = (img.width().max(1), img.height().max(1));
    let short = (size as f64 / 0.875).round() as u32;
    let (nw, nh) = if w < h {
        (
            short,
            ((h as f64 * short as f64 / w as f64).round() as u32).max(short),
        )
    } else {
        (
            ((w as f64 * short as f64 / h as f64).round() as u32).max(short),
            short,
        )
    };
    let resized = img
        .resize_exact(nw, nh, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let (x0, y0) = ((nw - size as u32) / 2, (nh - size as u32) / 2);
    let mut out = vec![0.0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let p = resized.get_pixel(x0 + x as u32, y0 + y as u32);
            for c in 0..3 {
                let v = p[c] as f32 / 255.0;
                out[c * size * size + y * size + x] = (v - norm.mean[c]) / norm.std[c];
            }
        }
    }
    out
}

/// The `k` highest scores, best first: (class index, softmax probability).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    idx.into_iter()
        .take(k)
        .map(|i| (i, (exp[i] / sum) as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_normalises() {
        let t = top_k(&[0.0, 3.0, 1.0, 2.0], 2);
        assert_eq!(t.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!(t[0].1 > t[1].1 && t[0].1 < 1.0);
    }

    #[test]
    fn centre_crop_keeps_the_middle() {
        // A 40×20 image, left half black, right half white: the 14-pixel crop of the
        // 32×16 resize straddles the edge in the middle.
        let img = image::RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let n = Normalization::uniform(3, 0.0, 1.0);
        let t = prepare(&image::DynamicImage::ImageRgb8(img), 14, &n);
        assert_eq!(t.len(), 3 * 14 * 14);
        assert!(t[0] < 0.05 && t[13] > 0.95, "{} {}", t[0], t[13]);
    }
}
