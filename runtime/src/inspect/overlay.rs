//! Drawing the verdict onto the frame without fonts: the heat-map blended in, a red or green
//! border, and a score bar along the top with a tick at the threshold.

use super::meta::ScoreMeta;
use super::Inspection;
use image::{ImageBuffer, Luma, Rgb, RgbImage};

/// A blue → cyan → yellow → red palette for t in [0, 1].
pub fn heat_colour(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let stops: [(f32, [f32; 3]); 4] = [
        (0.0, [0.0, 0.0, 160.0]),
        (0.4, [0.0, 200.0, 255.0]),
        (0.7, [255.0, 230.0, 0.0]),
        (1.0, [230.0, 0.0, 0.0]),
    ];
    for w in stops.windows(2) {
        let (a, ca) = w[0];
        let (b, cb) = w[1];
        if t <= b {
            let u = (t - a) / (b - a);
            return [0, 1, 2].map(|i| (ca[i] + u * (cb[i] - ca[i])) as u8);
        }
    }
    [230, 0, 0]
}

/// The frame with the inspection drawn on it (same size as the frame).
pub fn overlay(frame: &RgbImage, insp: &Inspection, map_meta: Option<&ScoreMeta>) -> RgbImage {
    let (w, h) = frame.dimensions();
    let mut out = frame.clone();
    if let (Some(map), Some(mm)) = (&insp.map, map_meta) {
        let norm: Vec<f32> = map
            .data
            .iter()
            .map(|&v| mm.normalise(v as f64) as f32)
            .collect();
        if let Some(small) =
            ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(map.width as u32, map.height as u32, norm)
        {
            let big = image::imageops::resize(&small, w, h, image::imageops::FilterType::Triangle);
            for (x, y, p) in out.enumerate_pixels_mut() {
                let t = big.get_pixel(x, y)[0];
                // Normal areas stay visible; the colour takes over towards the threshold.
                let a = (0.15 + 0.6 * t).min(0.75);
                let c = heat_colour(t);
                for i in 0..3 {
                    p[i] = ((1.0 - a) * p[i] as f32 + a * c[i] as f32) as u8;
                }
            }
        }
    }
    let border = if insp.fail {
        Rgb([230, 30, 30])
    } else {
        Rgb([40, 200, 60])
    };
    let b = (w.min(h) / 40).max(3);
    for (x, y, p) in out.enumerate_pixels_mut() {
        if x < b || y < b || x >= w - b || y >= h - b {
            *p = border;
        }
    }
    // Score bar: length = normalised score, tick at 0.5 (the threshold).
    let bar_h = b.max(4);
    let filled = (insp.normalised.clamp(0.0, 1.0) * (w - 2 * b) as f64) as u32;
    for y in b..(b + bar_h).min(h) {
        for x in b..w - b {
            let p = out.get_pixel_mut(x, y);
            if x - b < filled {
                *p = border;
            } else {
                *p = Rgb([30, 30, 30]);
            }
            if x == b + (w - 2 * b) / 2 {
                *p = Rgb([255, 255, 255]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Map;

    fn meta() -> ScoreMeta {
        ScoreMeta {
            threshold: 10.0,
            threshold_rule: String::new(),
            norm_lo: 0.0,
            normal_mean: 5.0,
            normal_std: 1.0,
            normal_max: 8.0,
        }
    }

    #[test]
    fn hot_region_turns_red_and_border_shows_the_verdict() {
        let frame = RgbImage::from_pixel(64, 64, Rgb([128, 128, 128]));
        let mut data = vec![0.0f32; 16 * 16];
        for y in 8..16 {
            for x in 8..16 {
                data[y * 16 + x] = 30.0;
            }
        }
        let insp = Inspection {
            score: 20.0,
            normalised: 1.0,
            fail: true,
            map: Some(Map {
                width: 16,
                height: 16,
                data,
            }),
            infer_ms: 0.0,
        };
        let out = overlay(&frame, &insp, Some(&meta()));
        let hot = out.get_pixel(56, 56);
        let cold = out.get_pixel(16, 40);
        assert!(hot[0] > 170 && hot[2] < 90, "hot area is red: {hot:?}");
        assert!(cold[2] > cold[0], "cold area is blue-ish: {cold:?}");
        assert_eq!(*out.get_pixel(0, 32), Rgb([230, 30, 30]), "fail border");
        assert_eq!(heat_colour(0.0), [0, 0, 160]);
        assert_eq!(heat_colour(1.0), [230, 0, 0]);
    }
}
