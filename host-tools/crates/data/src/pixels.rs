//! Pixel operations the `image` crate's `imageops` lacks, on linear `f32` RGB images with
//! values in [0, 1]: bilinear sampling, compositing a rotated, scaled, motion-blurred sprite
//! with a soft elliptical mask, illumination change, and the SiamFC crop (a square window around
//! a point, resized, padded with the image's mean colour); and the connected components of a
//! binary mask (defect regions, text boxes).

use image::{Rgb, Rgb32FImage};

/// Bilinear sample at pixel-index coordinates (the value of pixel `(i, j)` sits at `(i, j)`),
/// or `None` when `(x, y)` is outside the image. Elsewhere in this module positions are
/// continuous: pixel `(i, j)` covers `[i, i+1) × [j, j+1)`, its centre is at `+0.5`.
pub fn sample(img: &Rgb32FImage, x: f32, y: f32) -> Option<[f32; 3]> {
    let (w, h) = (img.width() as f32, img.height() as f32);
    if !(x >= 0.0 && y >= 0.0 && x <= w - 1.0 && y <= h - 1.0) {
        return None;
    }
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let x1 = (x0 + 1).min(img.width() - 1);
    let y1 = (y0 + 1).min(img.height() - 1);
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |xx, yy| img.get_pixel(xx, yy).0;
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    let mut out = [0.0; 3];
    for k in 0..3 {
        let top = a[k] + (b[k] - a[k]) * fx;
        let bot = c[k] + (d[k] - c[k]) * fx;
        out[k] = top + (bot - top) * fy;
    }
    Some(out)
}

/// A sprite placed in a frame: its centre, scale (frame pixels per sprite pixel), rotation
/// (radians, counter-clockwise on screen), and motion during the exposure (frame pixels; the
/// sprite is smeared along this vector, centred on its position: motion blur).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub cx: f32,
    pub cy: f32,
    pub scale: f32,
    pub angle: f32,
    pub blur: [f32; 2],
}

/// Mask shape of a sprite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// The inscribed ellipse with a soft edge: object-like, and its rotated bounding box is
    /// exact ([`ellipse_box`]).
    Ellipse,
    /// The whole rectangle (occluders).
    Rect,
}

/// Soft coverage of sprite point `(u, v)` (relative to the sprite centre, sprite pixels) for a
/// sprite of half-size `(a, b)`: 1 inside, 0 outside, a 1.5-pixel linear edge.
fn coverage(mask: Mask, u: f32, v: f32, a: f32, b: f32) -> f32 {
    const FEATHER: f32 = 1.5;
    match mask {
        Mask::Ellipse => {
            let r = ((u / a).powi(2) + (v / b).powi(2)).sqrt();
            ((1.0 - r) * a.min(b) / FEATHER + 0.5).clamp(0.0, 1.0)
        }
        Mask::Rect => {
            let du = (a - u.abs()) / FEATHER + 0.5;
            let dv = (b - v.abs()) / FEATHER + 0.5;
            du.min(dv).clamp(0.0, 1.0)
        }
    }
}

/// The axis-aligned half extents of an ellipse with semi-axes `(a, b)` rotated by `angle`.
pub fn ellipse_box(a: f32, b: f32, angle: f32) -> (f32, f32) {
    let (s, c) = angle.sin_cos();
    (
        ((a * c).powi(2) + (b * s).powi(2)).sqrt(),
        ((a * s).powi(2) + (b * c).powi(2)).sqrt(),
    )
}

/// Composite `sprite` into `frame` at `at` with `mask`, multiplying its colour by `tint`.
/// Returns the sprite's coverage map over the frame's pixels it touched, as
/// `(x0, y0, w, alphas)`, so callers can measure what an occluder hides.
pub fn composite(
    frame: &mut Rgb32FImage,
    sprite: &Rgb32FImage,
    mask: Mask,
    at: &Placement,
    tint: [f32; 3],
) -> Coverage {
    let (sw, sh) = (sprite.width() as f32, sprite.height() as f32);
    let (a, b) = (sw / 2.0, sh / 2.0);
    let (hx, hy) = match mask {
        Mask::Ellipse => ellipse_box(a * at.scale, b * at.scale, at.angle),
        Mask::Rect => {
            let (s, c) = at.angle.sin_cos();
            let (aa, bb) = (a * at.scale, b * at.scale);
            (
                (aa * c).abs() + (bb * s).abs(),
                (aa * s).abs() + (bb * c).abs(),
            )
        }
    };
    let blur_len = (at.blur[0].powi(2) + at.blur[1].powi(2)).sqrt();
    let taps = (blur_len.ceil() as usize + 1).clamp(1, 31);
    let pad_x = at.blur[0].abs() / 2.0 + 2.0;
    let pad_y = at.blur[1].abs() / 2.0 + 2.0;
    let x0 = ((at.cx - hx - pad_x).floor().max(0.0)) as i64;
    let y0 = ((at.cy - hy - pad_y).floor().max(0.0)) as i64;
    let x1 = ((at.cx + hx + pad_x).ceil() as i64).min(frame.width() as i64 - 1);
    let y1 = ((at.cy + hy + pad_y).ceil() as i64).min(frame.height() as i64 - 1);
    let mut cov = Coverage {
        x0: x0.max(0) as u32,
        y0: y0.max(0) as u32,
        w: 0,
        alpha: Vec::new(),
    };
    if x1 < x0 || y1 < y0 {
        return cov;
    }
    cov.w = (x1 - x0 + 1) as u32;
    let (sin, cos) = at.angle.sin_cos();
    for y in y0..=y1 {
        for x in x0..=x1 {
            // Average the premultiplied sprite over the exposure (motion blur).
            let mut acc = [0.0f32; 3];
            let mut alpha = 0.0f32;
            for t in 0..taps {
                let f = if taps == 1 {
                    0.0
                } else {
                    t as f32 / (taps - 1) as f32 - 0.5
                };
                // Pixel (x, y) covers [x, x+1) × [y, y+1): its centre is at +0.5.
                let px = x as f32 + 0.5 - at.cx - at.blur[0] * f;
                let py = y as f32 + 0.5 - at.cy - at.blur[1] * f;
                // Inverse rotation and scale into sprite coordinates (relative to its centre).
                let u = (cos * px + sin * py) / at.scale;
                let v = (-sin * px + cos * py) / at.scale;
                let m = coverage(mask, u, v, a, b);
                if m <= 0.0 {
                    continue;
                }
                if let Some(c) = sample(
                    sprite,
                    (u + a - 0.5).clamp(0.0, sw - 1.0),
                    (v + b - 0.5).clamp(0.0, sh - 1.0),
                ) {
                    for k in 0..3 {
                        acc[k] += m * c[k] * tint[k];
                    }
                    alpha += m;
                }
            }
            let alpha = alpha / taps as f32;
            cov.alpha.push(alpha);
            if alpha <= 0.0 {
                continue;
            }
            let p = frame.get_pixel_mut(x as u32, y as u32);
            for (v, a) in p.0.iter_mut().zip(acc) {
                *v = *v * (1.0 - alpha) + a / taps as f32;
            }
        }
    }
    cov
}

/// Where a composited sprite covered the frame: `alpha[row * w + col]` for the frame window
/// starting at `(x0, y0)`.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    pub x0: u32,
    pub y0: u32,
    pub w: u32,
    pub alpha: Vec<f32>,
}

impl Coverage {
    /// Coverage at frame pixel `(x, y)`.
    pub fn at(&self, x: u32, y: u32) -> f32 {
        if self.w == 0 || x < self.x0 || y < self.y0 || x >= self.x0 + self.w {
            return 0.0;
        }
        let i = ((y - self.y0) * self.w + (x - self.x0)) as usize;
        self.alpha.get(i).copied().unwrap_or(0.0)
    }

    /// Total coverage (in pixels).
    pub fn sum(&self) -> f32 {
        self.alpha.iter().sum()
    }

    /// Coverage left visible where `over` covers it afterwards.
    pub fn visible_under(&self, over: &Coverage) -> f32 {
        let mut s = 0.0;
        for (i, &a) in self.alpha.iter().enumerate() {
            if a > 0.0 {
                let x = self.x0 + i as u32 % self.w;
                let y = self.y0 + i as u32 / self.w;
                s += a * (1.0 - over.at(x, y));
            }
        }
        s
    }
}

/// Illumination: `gain · pixel + bias`, with the gain varying linearly across the frame by
/// `± gradient` along direction `angle` (light from one side), clamped to [0, 1].
pub fn illuminate(frame: &mut Rgb32FImage, gain: f32, bias: f32, gradient: f32, angle: f32) {
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let (s, c) = angle.sin_cos();
    let half_diag = (w * w + h * h).sqrt() / 2.0;
    for (x, y, p) in frame.enumerate_pixels_mut() {
        let t = ((x as f32 - w / 2.0) * c + (y as f32 - h / 2.0) * s) / half_diag;
        let g = gain * (1.0 + gradient * t);
        for k in 0..3 {
            p.0[k] = (p.0[k] * g + bias).clamp(0.0, 1.0);
        }
    }
}

/// Per-channel mean colour.
pub fn mean_colour(img: &Rgb32FImage) -> [f32; 3] {
    let mut m = [0.0f64; 3];
    for p in img.pixels() {
        for (s, v) in m.iter_mut().zip(p.0) {
            *s += v as f64;
        }
    }
    let n = (img.width() as f64 * img.height() as f64).max(1.0);
    [(m[0] / n) as f32, (m[1] / n) as f32, (m[2] / n) as f32]
}

/// The SiamFC crop: the square window of side `side` (frame pixels) centred at `(cx, cy)`,
/// resampled (bilinear) to `out × out`; parts outside the frame take `fill` (SiamFC pads with
/// the frame's mean colour). When the window is much larger than `out`, the frame is first
/// box-filtered by taking the mean of a grid of bilinear samples per output pixel, so downscaled
/// crops do not alias.
pub fn crop_square(
    frame: &Rgb32FImage,
    cx: f32,
    cy: f32,
    side: f32,
    out: u32,
    fill: [f32; 3],
) -> Rgb32FImage {
    let step = side / out as f32;
    let sub = (step.ceil() as usize).clamp(1, 4);
    let mut img = Rgb32FImage::new(out, out);
    let left = cx - side / 2.0;
    let top = cy - side / 2.0;
    for (i, j, p) in img.enumerate_pixels_mut() {
        let mut acc = [0.0f32; 3];
        for sy in 0..sub {
            for sx in 0..sub {
                let fx = left + (i as f32 + (sx as f32 + 0.5) / sub as f32) * step - 0.5;
                let fy = top + (j as f32 + (sy as f32 + 0.5) / sub as f32) * step - 0.5;
                let c = sample(frame, fx, fy).unwrap_or(fill);
                for k in 0..3 {
                    acc[k] += c[k];
                }
            }
        }
        let n = (sub * sub) as f32;
        *p = Rgb([acc[0] / n, acc[1] / n, acc[2] / n]);
    }
    img
}

/// An image as normalised CHW values: `(v − mean[c]) / std[c]`.
pub fn to_chw(img: &Rgb32FImage, norm: &super::Normalization) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0.0f32; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        for k in 0..3 {
            let m = norm.mean.get(k).copied().unwrap_or(0.0);
            let s = norm.std.get(k).copied().unwrap_or(1.0);
            out[k * w * h + y as usize * w + x as usize] = (p.0[k] - m) / s;
        }
    }
    out
}

/// An `f32` image as 8-bit RGB (rounded, clamped).
pub fn to_rgb8(img: &Rgb32FImage) -> image::RgbImage {
    image::RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        image::Rgb([
            (p[0] * 255.0).round().clamp(0.0, 255.0) as u8,
            (p[1] * 255.0).round().clamp(0.0, 255.0) as u8,
            (p[2] * 255.0).round().clamp(0.0, 255.0) as u8,
        ])
    })
}

/// 8-connected components of a binary mask: labels 1.. per pixel (0 = background).
pub fn components(mask: &[bool], w: usize, h: usize) -> (Vec<u32>, u32) {
    let mut lab = vec![0u32; w * h];
    let mut next = 0u32;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || lab[start] != 0 {
            continue;
        }
        next += 1;
        lab[start] = next;
        stack.push(start);
        while let Some(p) = stack.pop() {
            let (x, y) = ((p % w) as i64, (p / w) as i64);
            for dy in -1..=1i64 {
                for dx in -1..=1i64 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] && lab[q] == 0 {
                        lab[q] = next;
                        stack.push(q);
                    }
                }
            }
        }
    }
    (lab, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_is_exact_on_a_ramp() {
        let img = Rgb32FImage::from_fn(4, 3, |x, y| Rgb([x as f32, y as f32, 1.0]));
        let s = sample(&img, 1.25, 0.5).unwrap();
        assert!((s[0] - 1.25).abs() < 1e-6 && (s[1] - 0.5).abs() < 1e-6);
        assert!(sample(&img, 3.5, 0.0).is_none());
    }

    #[test]
    fn ellipse_box_of_a_quarter_turn_swaps_axes() {
        let (hx, hy) = ellipse_box(10.0, 4.0, std::f32::consts::FRAC_PI_2);
        assert!((hx - 4.0).abs() < 1e-4 && (hy - 10.0).abs() < 1e-4);
    }

    #[test]
    fn composite_places_the_sprite_where_asked() {
        let mut frame = Rgb32FImage::new(64, 48);
        let sprite = Rgb32FImage::from_pixel(10, 6, Rgb([1.0, 0.5, 0.25]));
        let at = Placement {
            cx: 30.0,
            cy: 20.0,
            scale: 2.0,
            angle: 0.0,
            blur: [0.0, 0.0],
        };
        let cov = composite(&mut frame, &sprite, Mask::Rect, &at, [1.0; 3]);
        // A 20×12 rectangle centred at (30, 20): 240 pixels, its colour inside, nothing outside.
        assert!((cov.sum() - 240.0).abs() < 12.0, "{}", cov.sum());
        assert_eq!(frame.get_pixel(30, 20).0, [1.0, 0.5, 0.25]);
        assert_eq!(frame.get_pixel(30, 30).0, [0.0; 3]);
        assert_eq!(frame.get_pixel(23, 20).0, [1.0, 0.5, 0.25]);
        assert_eq!(frame.get_pixel(18, 20).0, [0.0; 3]);
    }

    #[test]
    fn crop_pads_with_fill_and_keeps_content() {
        let frame = Rgb32FImage::from_fn(20, 20, |x, _| Rgb([x as f32 / 19.0, 0.0, 0.0]));
        let c = crop_square(&frame, 0.0, 10.0, 20.0, 10, [0.5, 0.5, 0.5]);
        assert_eq!(c.get_pixel(0, 5).0, [0.5, 0.5, 0.5], "left half is outside");
        assert!(c.get_pixel(9, 5).0[0] > 0.4 && c.get_pixel(9, 5).0[0] < 0.5);
    }

    #[test]
    fn components_are_8_connected() {
        #[rustfmt::skip]
        let m = [
            true,  false, false, false,
            false, true,  false, true,
            false, false, false, true,
        ];
        let (lab, n) = components(&m, 4, 3);
        assert_eq!(
            n, 2,
            "the diagonal pair is one region, the right column another"
        );
        assert_eq!(lab[0], lab[5]);
        assert_ne!(lab[0], lab[7]);
    }
}
