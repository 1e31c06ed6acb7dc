//! `ppocr-text`: real text-line crops for the PP-OCR text-direction classifier.
//!
//! The classifier answers one question about a *text line* cut out by the detector: upright
//! (class `0`) or upside down (class `180`). scikit-image's `page.png` is a photographed book
//! page (384×191, uneven lighting) with seven lines of print. We find the lines ourselves
//! (below), cut windows of 3, 4, 6 and 10 line-heights wide along each line (stride half a
//! line height), and preprocess them as PP-OCR does (rapidocr `TextClassifier.resize_norm_img`:
//! resize to the input height keeping the aspect ratio, at most the input width, pad the rest
//! with 0 after normalisation, BGR, (x/255 − 0.5)/0.5). Every window is used upright (label 0)
//! and rotated by 180° (label 1).
//!
//! Split by line, so no pixel is on both sides: lines 1, 3, 5, 7 (title, code line and two
//! body lines) calibrate, lines 2, 4, 6 are held out.
//!
//! `text.png` (handwritten formulas on a slanted page) is not used: its lines are neither
//! horizontal nor separable by rows, and windows cut from it are classified at chance level by
//! the original model (50–58% in our probe), so they cannot measure how well a compressed
//! model keeps the original's decisions.
//!
//! Line finding: the background is the 17×17 maximum around each pixel (the page is lit
//! unevenly); a pixel is ink when darker than 0.7 × its background; a row belongs to a line
//! when more than 8% of it is ink; runs of at least 6 such rows are lines, grown by one row
//! on each side for ascenders and descenders.

use super::{shape_mismatch, CalibData, Dataset, ModelInput};
use crate::assets::Assets;
use crate::{Error, Result};
use edgeslim_runtime::input::ImagePrep;
use image::{DynamicImage, GenericImageView, GrayImage};

pub const PHOTO: &str = "page.png";
/// Window widths, in line heights.
pub const WIDTHS: [u32; 4] = [3, 4, 6, 10];

/// PP-OCR's classifier normalisation (rapidocr `TextClassifier.resize_norm_img`).
pub fn ppocr_prep() -> ImagePrep {
    ImagePrep {
        scale: 1.0 / 255.0,
        mean: [0.5; 3],
        std: [0.5; 3],
        bgr: true,
    }
}

/// Rows [start, end) of the text lines of a page photo, top to bottom.
pub fn text_lines(gray: &GrayImage) -> Vec<(u32, u32)> {
    let (w, h) = gray.dimensions();
    let r = 8i64;
    let px = |x: i64, y: i64| gray.get_pixel(x as u32, y as u32)[0];
    // Separable 17×17 maximum: along rows, then along columns.
    let mut rows = vec![0u8; (w * h) as usize];
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            let lo = (x - r).max(0);
            let hi = (x + r).min(w as i64 - 1);
            rows[(y * w as i64 + x) as usize] = (lo..=hi).map(|xx| px(xx, y)).max().unwrap_or(0);
        }
    }
    let mut on = Vec::with_capacity(h as usize);
    for y in 0..h as i64 {
        let mut ink = 0usize;
        for x in 0..w as i64 {
            let lo = (y - r).max(0);
            let hi = (y + r).min(h as i64 - 1);
            let bg = (lo..=hi)
                .map(|yy| rows[(yy * w as i64 + x) as usize])
                .max()
                .unwrap_or(0);
            if (px(x, y) as f32) < 0.7 * bg as f32 {
                ink += 1;
            }
        }
        on.push(ink as f32 > 0.08 * w as f32);
    }
    let mut lines = Vec::new();
    let mut y = 0usize;
    while y < on.len() {
        if on[y] {
            let start = y;
            while y < on.len() && on[y] {
                y += 1;
            }
            if y - start >= 6 {
                lines.push((
                    start.saturating_sub(1) as u32,
                    (y + 1).min(h as usize) as u32,
                ));
            }
        } else {
            y += 1;
        }
    }
    lines
}

/// PP-OCR's classifier input from a crop: height `h`, width ⌈h·aspect⌉ capped at `w`,
/// bilinear, padded on the right with 0 (after normalisation).
fn ppocr_tensor(crop: &DynamicImage, c: usize, h: usize, w: usize, prep: &ImagePrep) -> Vec<f32> {
    let (cw, ch) = crop.dimensions();
    let rw = ((h as f64 * cw as f64 / ch.max(1) as f64).ceil() as usize).clamp(1, w);
    let rgb = crop
        .resize_exact(rw as u32, h as u32, image::imageops::FilterType::Triangle)
        .to_rgb8();
    place_normalized(&rgb, c, h, w, prep)
}

/// A `[c, h, w]` tensor holding `rgb` at its top-left corner, normalised as `prep` says (one
/// channel: luma); the rest is 0 after normalisation, i.e. the mean colour. Pixels beyond
/// `h × w` are cut.
pub(crate) fn place_normalized(
    rgb: &image::RgbImage,
    c: usize,
    h: usize,
    w: usize,
    prep: &ImagePrep,
) -> Vec<f32> {
    let mut out = vec![0.0f32; c * h * w];
    for (x, y, p) in rgb.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        if x >= w || y >= h {
            continue;
        }
        for ch in 0..c {
            let v = if c == 1 {
                0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
            } else {
                p[if prep.bgr { 2 - ch } else { ch }] as f32
            };
            out[(ch * h + y) * w + x] = (v * prep.scale - prep.mean[ch]) / prep.std[ch];
        }
    }
    out
}

pub fn load(input: &ModelInput) -> Result<CalibData> {
    let [1, c @ (1 | 3), h, w] = input.shape.as_slice() else {
        return Err(shape_mismatch("ppocr-text", &[3, 48, 192], input));
    };
    let (c, h, w) = (*c, *h, *w);
    let assets = Assets::open();
    assets.ensure()?;
    let prep = ppocr_prep();
    let path = assets.image(PHOTO);
    let img = edgeslim_runtime::input::open_image(&path)?;
    let lines = text_lines(&img.to_luma8());
    if lines.len() < 2 {
        return Err(Error::Other(format!(
            "ppocr-text: found {} text lines in {} (expected the 7 lines of the page)",
            lines.len(),
            path.display()
        )));
    }
    let (pw, _) = img.dimensions();
    let mut sets: [Vec<(Vec<f32>, usize, String)>; 2] = [Vec::new(), Vec::new()];
    for (i, &(y0, y1)) in lines.iter().enumerate() {
        let lh = y1 - y0;
        for k in WIDTHS {
            let ww = k * lh;
            let mut x = 0;
            while x + ww <= pw {
                let crop = img.crop_imm(x, y0, ww, lh);
                for (label, view) in [(0usize, crop.clone()), (1, crop.rotate180())] {
                    sets[i % 2].push((
                        ppocr_tensor(&view, c, h, w, &prep),
                        label,
                        format!(
                            "{PHOTO} line {} x={x} y={y0} {ww}x{lh}{}",
                            i + 1,
                            if label == 1 { " rot180" } else { "" }
                        ),
                    ));
                }
                x += (lh / 2).max(1);
            }
        }
    }
    let [calib, held_out] = sets;
    let dataset = |name: &str, items: Vec<(Vec<f32>, usize, String)>| {
        let mut d = Dataset {
            name: name.to_string(),
            shape: input.shape.clone(),
            samples: Vec::with_capacity(items.len()),
            labels: Some(Vec::with_capacity(items.len())),
            sources: Vec::with_capacity(items.len()),
        };
        for (s, l, src) in items {
            d.samples.push(s);
            if let Some(ls) = &mut d.labels {
                ls.push(l);
            }
            d.sources.push(src);
        }
        d
    };
    Ok(CalibData {
        spec: "ppocr-text".into(),
        calib: dataset("ppocr-text (lines 1, 3, 5, 7)", calib),
        held_out: dataset("ppocr-text (lines 2, 4, 6, held out)", held_out),
        split_rule: format!(
            "windows {WIDTHS:?} line heights wide along the {} text lines of {PHOTO} (stride \
             half a line height), upright and rotated 180°, PP-OCR resize-and-pad; odd lines \
             calibrate, even lines are held out",
            lines.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_on_a_drawn_page() {
        // Light page, darker at the bottom, two "lines" of dark strokes.
        let mut g = GrayImage::from_fn(120, 60, |_, y| image::Luma([230 - y as u8]));
        for (y0, y1) in [(10u32, 20u32), (35, 47)] {
            for y in y0..y1 {
                for x in (5..115).step_by(3) {
                    g.put_pixel(x, y, image::Luma([20]));
                }
            }
        }
        assert_eq!(text_lines(&g), vec![(9, 21), (34, 48)]);
    }
}
