//! Bicubic resampling of a grid of vectors, exactly as ONNX `Resize` does it with
//! `mode=cubic`, `coordinate_transformation_mode=half_pixel`, `cubic_coeff_a=-0.75`,
//! `exclude_outside=0` and output sizes given (scale = out/in), neighbours beyond the edge
//! clamped to it. This is how ViT exports resample a position-embedding grid on the fly; doing
//! it once at import time gives the same numbers with a constant instead of a dynamic graph.

/// Keys's cubic convolution kernel with parameter `a`.
fn kernel(t: f64, a: f64) -> f64 {
    let t = t.abs();
    if t <= 1.0 {
        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    } else {
        0.0
    }
}

/// For each output index: the four source indices (clamped) and their weights.
fn taps(input: usize, output: usize, a: f64) -> Vec<[(usize, f64); 4]> {
    let scale = output as f64 / input as f64;
    (0..output)
        .map(|o| {
            let x = (o as f64 + 0.5) / scale - 0.5;
            let base = x.floor();
            let frac = x - base;
            let mut t = [(0usize, 0.0f64); 4];
            for (k, tap) in t.iter_mut().enumerate() {
                let offset = k as f64 - 1.0;
                let idx = (base + offset).clamp(0.0, (input - 1) as f64) as usize;
                *tap = (idx, kernel(frac - offset, a));
            }
            t
        })
        .collect()
}

/// Resample `grid` ([h][w][c], row-major) to [oh][ow][c].
pub fn resize(grid: &[f32], h: usize, w: usize, c: usize, oh: usize, ow: usize) -> Vec<f32> {
    const A: f64 = -0.75;
    assert_eq!(grid.len(), h * w * c, "grid size");
    let ty = taps(h, oh, A);
    let tx = taps(w, ow, A);
    // Rows first (to [oh][w][c]), then columns, in f64.
    let mut rows = vec![0.0f64; oh * w * c];
    for (oy, t) in ty.iter().enumerate() {
        for &(sy, wy) in t {
            for x in 0..w {
                let src = &grid[(sy * w + x) * c..(sy * w + x + 1) * c];
                let dst = &mut rows[(oy * w + x) * c..(oy * w + x + 1) * c];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d += wy * s as f64;
                }
            }
        }
    }
    let mut out = vec![0.0f64; oh * ow * c];
    for oy in 0..oh {
        for (ox, t) in tx.iter().enumerate() {
            let dst = (oy * ow + ox) * c;
            for &(sx, wx) in t {
                let src = (oy * w + sx) * c;
                for k in 0..c {
                    out[dst + k] += wx * rows[src + k];
                }
            }
        }
    }
    out.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_interpolates() {
        // Weights of one output sum to one, and the kernel is 1 at 0 and 0 at the integers.
        assert_eq!(kernel(0.0, -0.75), 1.0);
        assert!(kernel(1.0, -0.75).abs() < 1e-12 && kernel(2.0, -0.75).abs() < 1e-12);
        for t in taps(37, 16, -0.75) {
            let s: f64 = t.iter().map(|p| p.1).sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn same_size_is_the_identity_and_constants_stay_constant() {
        let g: Vec<f32> = (0..5 * 4 * 2).map(|i| (i as f32 * 0.37).sin()).collect();
        let same = resize(&g, 5, 4, 2, 5, 4);
        for (a, b) in g.iter().zip(&same) {
            assert!((a - b).abs() < 1e-6);
        }
        let flat = vec![3.5f32; 37 * 37];
        for v in resize(&flat, 37, 37, 1, 8, 8) {
            assert!((v - 3.5).abs() < 1e-5);
        }
    }

    #[test]
    fn mirrored_input_gives_mirrored_output() {
        // half_pixel is symmetric about the centre: resampling a reversed row reverses the
        // result (a shifted convention would not).
        let g: Vec<f32> = (0..37).map(|i| ((i * i) as f32 * 0.1).cos()).collect();
        let r: Vec<f32> = g.iter().rev().copied().collect();
        let a = resize(&g, 1, 37, 1, 1, 16);
        let b = resize(&r, 1, 37, 1, 1, 16);
        for (x, y) in a.iter().zip(b.iter().rev()) {
            assert!((x - y).abs() < 1e-5);
        }
    }
}
