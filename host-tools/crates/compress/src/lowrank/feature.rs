//! Feature space (docs/methods/lowrank.md, LLM-ROM / SFSD): PCA of a layer's calibrated outputs.
//!
//! With outputs Y (rows are samples; for a Conv, the channel vector at every position of every
//! image), μ = mean(Y) and C = cov(Y), keep the top-r eigenvectors V_r of C. The layer becomes
//! the projection ŷ = μ + V_r V_rᵀ (y − μ), i.e. two layers
//!   W1 = V_rᵀ W (r × d_in, no bias), W2 = V_r (d_out × r), b' = V_r V_rᵀ b + (I − V_r V_rᵀ) μ.
//! The centred bias matters: the reference code leaves it ≈ 0, which throws away the mean of
//! every output direction that is cut.
//!
//! A MatMul's bias usually sits in a following Add. Treating the MatMul alone (b = 0) gives the
//! same model: its outputs' mean is μ − b_add, and μ − b_add + P(y − μ) + b_add is the same
//! projection. So the Add is left where it is.
//!
//! Covariance is accumulated in a stream (sum and Gram matrix in f64), so memory is d² per
//! layer whatever the number of samples. Rows are shifted by the mean of the first batch before
//! summing: E[yyᵀ] − μμᵀ in floating point loses everything when the mean is large against
//! the spread (a post-ReLU channel), the shifted form does not.

use super::layers::LinearLayer;
use super::svd::cumulative_energy;
use super::Factors;
use crate::{Error, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par, Side};

#[derive(Debug, Clone)]
pub struct CovAccumulator {
    d: usize,
    n: u64,
    shift: Option<Vec<f64>>,
    sum: Vec<f64>,
    gram: Mat<f64>,
}

/// Mean and covariance (population, 1/n) of the rows seen.
#[derive(Debug, Clone)]
pub struct Covariance {
    pub samples: u64,
    pub mean: Vec<f64>,
    pub cov: Mat<f64>,
}

/// Eigenvalues (largest first, clamped at 0) and matching unit eigenvectors as columns.
#[derive(Debug, Clone)]
pub struct Spectrum {
    pub values: Vec<f64>,
    pub vectors: Mat<f64>,
}

impl CovAccumulator {
    pub fn new(d: usize) -> CovAccumulator {
        CovAccumulator {
            d,
            n: 0,
            shift: None,
            sum: vec![0.0; d],
            gram: Mat::zeros(d, d),
        }
    }

    pub fn dim(&self) -> usize {
        self.d
    }

    pub fn samples(&self) -> u64 {
        self.n
    }

    /// Add every feature vector of one output tensor: the values along `axis` at each index of
    /// the other axes are one sample.
    pub fn add_tensor(
        &mut self,
        shape: &[usize],
        values: &[f32],
        axis: usize,
        what: &str,
    ) -> Result<()> {
        if shape.get(axis) != Some(&self.d) || values.len() != shape.iter().product::<usize>() {
            return Err(Error::tensor(
                what,
                format!(
                    "has shape {shape:?}; expected {} features on axis {axis}",
                    self.d
                ),
            ));
        }
        let d = self.d;
        let inner: usize = shape[axis + 1..].iter().product();
        let outer: usize = shape[..axis].iter().product();
        let rows = outer * inner;
        if rows == 0 {
            return Ok(());
        }
        let mut y = Mat::<f64>::zeros(rows, d);
        for o in 0..outer {
            for c in 0..d {
                let base = (o * d + c) * inner;
                for i in 0..inner {
                    y[(o * inner + i, c)] = values[base + i] as f64;
                }
            }
        }
        let shift = self.shift.get_or_insert_with(|| {
            (0..d)
                .map(|c| (0..rows).map(|r| y[(r, c)]).sum::<f64>() / rows as f64)
                .collect()
        });
        for c in 0..d {
            let s = shift[c];
            let mut acc = 0.0;
            for r in 0..rows {
                let v = y[(r, c)] - s;
                y[(r, c)] = v;
                acc += v;
            }
            self.sum[c] += acc;
        }
        matmul(
            self.gram.as_mut(),
            Accum::Add,
            y.transpose(),
            y.as_ref(),
            1.0,
            Par::Seq,
        );
        self.n += rows as u64;
        Ok(())
    }

    pub fn finish(&self) -> Covariance {
        let d = self.d;
        let n = self.n.max(1) as f64;
        let m: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let mut cov = Mat::<f64>::zeros(d, d);
        for i in 0..d {
            for j in 0..d {
                // Symmetrise: the Gram update is symmetric up to rounding only.
                let g = 0.5 * (self.gram[(i, j)] + self.gram[(j, i)]);
                cov[(i, j)] = g / n - m[i] * m[j];
            }
        }
        let shift = self.shift.clone().unwrap_or_else(|| vec![0.0; d]);
        Covariance {
            samples: self.n,
            mean: shift.iter().zip(&m).map(|(s, m)| s + m).collect(),
            cov,
        }
    }
}

impl Covariance {
    pub fn spectrum(&self, what: &str) -> Result<Spectrum> {
        let evd = self.cov.self_adjoint_eigen(Side::Lower).map_err(|e| {
            Error::Other(format!(
                "{what}: the eigen-decomposition did not converge ({e:?})"
            ))
        })?;
        let d = self.cov.nrows();
        let s = evd.S().column_vector();
        let u = evd.U();
        // faer sorts ascending; we want largest first.
        let order: Vec<usize> = (0..d).rev().collect();
        let values = order.iter().map(|&i| s[i].max(0.0)).collect();
        let vectors = Mat::from_fn(d, d, |r, c| u[(r, order[c])]);
        Ok(Spectrum { values, vectors })
    }
}

/// Rank-r factors of a layer from the spectrum of its outputs, with the centred bias.
pub fn feature_factors(
    layer: &LinearLayer,
    cov: &Covariance,
    spec: &Spectrum,
    r: usize,
) -> Factors {
    let (d_out, d_in) = (layer.d_out, layer.d_in);
    let r = r.min(d_out);
    let v = &spec.vectors;
    // W1 = V_rᵀ W.
    let mut w1 = vec![0.0; r * d_in];
    for k in 0..r {
        for i in 0..d_out {
            let vik = v[(i, k)];
            if vik == 0.0 {
                continue;
            }
            let row = &layer.weight[i * d_in..(i + 1) * d_in];
            let dst = &mut w1[k * d_in..(k + 1) * d_in];
            for (d, w) in dst.iter_mut().zip(row) {
                *d += vik * w;
            }
        }
    }
    let mut w2 = vec![0.0; d_out * r];
    for i in 0..d_out {
        for k in 0..r {
            w2[i * r + k] = v[(i, k)];
        }
    }
    // b' = μ + V_r V_rᵀ (b − μ).
    let mu = &cov.mean;
    let b: Vec<f64> = layer.bias.clone().unwrap_or_else(|| vec![0.0; d_out]);
    let delta: Vec<f64> = b.iter().zip(mu).map(|(b, m)| b - m).collect();
    let mut bias = mu.clone();
    for k in 0..r {
        let coef: f64 = (0..d_out).map(|i| v[(i, k)] * delta[i]).sum();
        for (i, out) in bias.iter_mut().enumerate() {
            *out += v[(i, k)] * coef;
        }
    }
    let kept = cumulative_energy(&spec.values)
        .get(r.saturating_sub(1))
        .copied()
        .unwrap_or(1.0);
    Factors {
        rank: r,
        w1,
        w2,
        bias: Some(bias),
        kept_energy: kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_covariance_matches_two_pass() {
        // Rows with a large mean and a small spread: the naive E[yyᵀ] − μμᵀ loses it.
        let rows: Vec<[f32; 2]> = (0..100)
            .map(|i| {
                let t = i as f32 / 100.0;
                [1000.0 + t, 2000.0 - 2.0 * t + (i % 3) as f32 * 0.01]
            })
            .collect();
        let mut acc = CovAccumulator::new(2);
        for chunk in rows.chunks(7) {
            let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
            acc.add_tensor(&[chunk.len(), 2], &flat, 1, "y").unwrap();
        }
        let c = acc.finish();
        let n = rows.len() as f64;
        let mean: Vec<f64> = (0..2)
            .map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / n)
            .collect();
        for i in 0..2 {
            assert!((c.mean[i] - mean[i]).abs() < 1e-9);
            for j in 0..2 {
                let two_pass = rows
                    .iter()
                    .map(|r| (r[i] as f64 - mean[i]) * (r[j] as f64 - mean[j]))
                    .sum::<f64>()
                    / n;
                assert!((c.cov[(i, j)] - two_pass).abs() < 1e-9, "{i}{j}");
            }
        }
        assert_eq!(c.samples, 100);
    }

    #[test]
    fn conv_outputs_are_channel_vectors_per_position() {
        // [1, C=2, 2 positions]: samples (1, 10) and (2, 20).
        let mut acc = CovAccumulator::new(2);
        acc.add_tensor(&[1, 2, 2], &[1.0, 2.0, 10.0, 20.0], 1, "y")
            .unwrap();
        let c = acc.finish();
        assert_eq!(c.samples, 2);
        assert!((c.mean[0] - 1.5).abs() < 1e-12 && (c.mean[1] - 15.0).abs() < 1e-12);
        assert!(acc.add_tensor(&[1, 3, 2], &[0.0; 6], 1, "y").is_err());
    }
}
