//! Training-time augmentation of normalised NCHW batches (seeded).

use super::{Batch, Rng};
use rand::RngExt;

/// Shift every image of `batch` by a random whole-pixel offset in `[-max_shift, max_shift]` on
/// each axis, filling uncovered pixels with `fill` per channel (the normalised value of a
/// black pixel, e.g. `−mean/std`). Small shifts are the classic MNIST augmentation.
pub fn random_translate(batch: &mut Batch, max_shift: usize, fill: &[f32], rng: &mut Rng) {
    let [n, c, h, w] = batch.shape;
    let m = max_shift as i64;
    let plane = h * w;
    let mut out = vec![0.0f32; plane];
    for i in 0..n {
        let dx = rng.random_range(-m..=m);
        let dy = rng.random_range(-m..=m);
        if dx == 0 && dy == 0 {
            continue;
        }
        for ch in 0..c {
            let f = fill.get(ch).or(fill.first()).copied().unwrap_or(0.0);
            let start = (i * c + ch) * plane;
            let src = &batch.x[start..start + plane];
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    let (sx, sy) = (x - dx, y - dy);
                    out[(y * w as i64 + x) as usize] =
                        if sx >= 0 && sy >= 0 && sx < w as i64 && sy < h as i64 {
                            src[(sy * w as i64 + sx) as usize]
                        } else {
                            f
                        };
                }
            }
            batch.x[start..start + plane].copy_from_slice(&out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_moves_pixels_and_fills() {
        let mut x = vec![0.0f32; 25];
        x[12] = 1.0; // centre of 5×5
        let mut b = Batch {
            x,
            shape: [1, 1, 5, 5],
            labels: vec![0],
        };
        let mut r = super::super::rng(3, 0);
        random_translate(&mut b, 2, &[-1.0], &mut r);
        let ones: Vec<usize> = (0..25).filter(|&i| b.x[i] == 1.0).collect();
        assert_eq!(
            ones.len(),
            1,
            "the bright pixel stays inside a 5×5 with shifts ≤ 2"
        );
        let fills = b.x.iter().filter(|&&v| v == -1.0).count();
        let (r_, c_) = (ones[0] / 5, ones[0] % 5);
        let (dy, dx) = (r_ as i64 - 2, c_ as i64 - 2);
        let expected_fill =
            25 - (5 - dx.unsigned_abs() as usize) * (5 - dy.unsigned_abs() as usize);
        assert_eq!(fills, expected_fill);
    }
}
