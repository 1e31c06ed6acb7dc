//! `ppocr-scenes`: windows over real photographs with text, for a text *detector* (PP-OCR det),
//! whose output is a probability map judged by the boxes it gives.
//!
//! The package photographs with text are scikit-image's `page.png` (a photographed book page,
//! 384×191, seven lines of print) and `text.png` (handwritten formulas on a slanted page,
//! 448×172; PP-OCRv4 det finds text in few of its windows). `logo.png` is not used: its
//! lettering is dark on a transparent background, black on black once flattened, and the
//! detector sees nothing in it. Each region is resized by the factors of [`SCALES`] (print from
//! ~10 to ~40 pixels high) and cut into windows of the model input's size (stride half a
//! window, the last window flush with the edge; a region smaller than the window is padded
//! with 0 after normalisation, i.e. the mean colour), each used upright and rotated by 180°.
//! Preprocessing as PaddleOCR's det: BGR, (x/255 − mean)/std with ImageNet's mean and std in
//! Paddle's channel order.
//!
//! Split by rows, so no pixel is on both sides: the top half of `page.png` and all of
//! `text.png` calibrate (and train a recovery), the bottom half of `page.png` is held out.
//! There are no labels: quality is judged against the original detector's boxes.

use super::ppocr::place_normalized;
use super::{shape_mismatch, CalibData, Dataset, ModelInput};
use crate::assets::Assets;
use crate::Result;
use edgeslim_runtime::input::ImagePrep;
use image::imageops::FilterType;
use image::GenericImageView;

/// A photograph's rows `[from, to)`, as fractions of its height.
type Region = (&'static str, f32, f32);
pub const CALIB_REGIONS: [Region; 2] = [("page.png", 0.0, 0.5), ("text.png", 0.0, 1.0)];
pub const HELD_OUT_REGIONS: [Region; 1] = [("page.png", 0.5, 1.0)];
/// Resize factors of each region.
pub const SCALES: [f32; 4] = [1.0, 1.5, 2.0, 3.0];

/// PaddleOCR's detector normalisation (`NormalizeImage` on a BGR image).
pub fn det_prep() -> ImagePrep {
    ImagePrep {
        scale: 1.0 / 255.0,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        bgr: true,
    }
}

/// Window origins along one side: stride half a window, the last flush with the end.
fn origins(len: u32, win: u32) -> Vec<u32> {
    if len <= win {
        return vec![0];
    }
    let step = (win / 2).max(1);
    let mut v: Vec<u32> = (0..len - win).step_by(step as usize).collect();
    v.push(len - win);
    v
}

fn windows_of(
    regions: &[Region],
    name: &str,
    input: &ModelInput,
    c: usize,
    h: usize,
    w: usize,
) -> Result<Dataset> {
    let assets = Assets::open();
    let prep = det_prep();
    let mut d = Dataset {
        name: name.to_string(),
        shape: input.shape.clone(),
        samples: Vec::new(),
        labels: None,
        sources: Vec::new(),
    };
    for &(photo, from, to) in regions {
        let full = edgeslim_runtime::input::open_image(&assets.image(photo))?;
        let rows = full.height() as f32;
        let (y_from, y_to) = ((from * rows).round() as u32, (to * rows).round() as u32);
        let img = full.crop_imm(0, y_from, full.width(), y_to.saturating_sub(y_from).max(1));
        for s in SCALES {
            let (pw, ph) = img.dimensions();
            let (sw, sh) = (
                ((pw as f32 * s).round() as u32).max(1),
                ((ph as f32 * s).round() as u32).max(1),
            );
            let scaled = img.resize_exact(sw, sh, FilterType::Triangle);
            for y0 in origins(sh, h as u32) {
                for x0 in origins(sw, w as u32) {
                    let crop =
                        scaled.crop_imm(x0, y0, (w as u32).min(sw - x0), (h as u32).min(sh - y0));
                    for (view, tag) in [(crop.clone(), ""), (crop.rotate180(), " rot180")] {
                        d.samples
                            .push(place_normalized(&view.to_rgb8(), c, h, w, &prep));
                        d.sources.push(format!(
                            "{photo} rows {y_from}..{y_to} ×{s} x={x0} y={y0}{tag}"
                        ));
                    }
                }
            }
        }
    }
    Ok(d)
}

pub fn load(input: &ModelInput) -> Result<CalibData> {
    let [1, c @ (1 | 3), h, w] = input.shape.as_slice() else {
        return Err(shape_mismatch("ppocr-scenes", &[3, 320, 320], input));
    };
    let (c, h, w) = (*c, *h, *w);
    Assets::open().ensure()?;
    Ok(CalibData {
        spec: "ppocr-scenes".into(),
        calib: windows_of(
            &CALIB_REGIONS,
            "ppocr-scenes (top of page.png, text.png)",
            input,
            c,
            h,
            w,
        )?,
        held_out: windows_of(
            &HELD_OUT_REGIONS,
            "ppocr-scenes (bottom of page.png, held out)",
            input,
            c,
            h,
            w,
        )?,
        split_rule: format!(
            "{w}×{h} windows (stride half a window) over scikit-image's photographs with text \
             resized ×{SCALES:?}, upright and rotated 180°, PaddleOCR det preprocessing; \
             the top half of page.png and text.png calibrate, the bottom half of page.png is \
             held out"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_photo_and_end_flush() {
        assert_eq!(origins(100, 320), vec![0]);
        assert_eq!(origins(320, 320), vec![0]);
        assert_eq!(origins(700, 320), vec![0, 160, 320, 380]);
    }

    #[test]
    fn a_window_past_the_photo_is_the_mean() {
        let img = image::DynamicImage::new_rgb8(2, 2);
        let t = place_normalized(&img.to_rgb8(), 3, 3, 3, &det_prep());
        // Black pixel, channel 0 (blue): (0 − 0.485)/0.229; outside the photo: 0.
        assert!((t[0] + 0.485 / 0.229).abs() < 1e-6);
        assert_eq!(t[2], 0.0);
        assert_eq!(t[8], 0.0);
    }
}
