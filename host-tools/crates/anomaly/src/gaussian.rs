//! One multivariate Gaussian per feature level: mean, Ledoit–Wolf shrunk covariance, and the
//! whitening matrix the exported graph multiplies by.
//!
//! All arithmetic is f64; the graph stores f32. The covariance is symmetric positive definite
//! after shrinkage with intensity > 0, or when the samples span the space, so a Cholesky
//! factorisation Σ = L·Lᵀ exists and Σ⁻¹ = L⁻ᵀ·L⁻¹. For a row vector d = f − μ,
//! d·Σ⁻¹·dᵀ = ‖d·W‖² with W = L⁻ᵀ: one MatMul, a square and a sum in the graph.

use crate::{Error, Result};

/// How the covariance is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shrinkage {
    /// Ledoit & Wolf (2004): the optimal convex combination of the sample covariance and a
    /// scaled identity; works with fewer samples than dimensions.
    LedoitWolf,
    /// The plain sample covariance: needs more samples than dimensions.
    None,
}

/// Samples as rows of a row-major n×k matrix.
pub struct Samples<'a> {
    pub data: &'a [f64],
    pub n: usize,
    pub k: usize,
}

#[derive(Debug, Clone)]
pub struct Gaussian {
    pub mean: Vec<f64>,
    /// The (shrunk) covariance, k×k row-major.
    pub cov: Vec<f64>,
    /// W = L⁻ᵀ with Σ = L·Lᵀ, k×k row-major: ‖(f − μ)·W‖² is the squared Mahalanobis distance.
    pub whitening: Vec<f64>,
    pub shrinkage: f64,
    pub k: usize,
    pub n: usize,
}

/// The sample mean, the sample covariance S (1/n) and the Ledoit–Wolf shrinkage intensity.
///
/// With x the centred samples, S = XᵀX/n, m = tr(S)/k:
/// d² = ‖S − m·I‖²_F / k, b̄² = (Σᵢ‖xᵢ‖⁴/n − ‖S‖²_F) / (k·n) (which is
/// (1/n²)·Σᵢ‖xᵢxᵢᵀ − S‖²_F / k expanded), b² = min(b̄², d²), shrinkage = b²/d²,
/// Σ = (1 − shrinkage)·S + shrinkage·m·I. Same estimator as scikit-learn's `ledoit_wolf`.
pub fn ledoit_wolf(x: &Samples) -> (Vec<f64>, Vec<f64>, f64) {
    let (mean, mut s, shrinkage) = sample_stats(x);
    let k = x.k;
    shrink(&mut s, k, shrinkage);
    (mean, s, shrinkage)
}

/// Σ ← (1 − a)·Σ + a·(tr Σ / k)·I, in place.
fn shrink(s: &mut [f64], k: usize, a: f64) {
    let m = (0..k).map(|i| s[i * k + i]).sum::<f64>() / k as f64;
    for v in s.iter_mut() {
        *v *= 1.0 - a;
    }
    for i in 0..k {
        s[i * k + i] += a * m;
    }
}

/// Mean, sample covariance and the Ledoit–Wolf intensity (see [`ledoit_wolf`]).
pub fn sample_stats(x: &Samples) -> (Vec<f64>, Vec<f64>, f64) {
    let (n, k) = (x.n, x.k);
    let mut mean = vec![0.0; k];
    for row in x.data.chunks_exact(k) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    for m in mean.iter_mut() {
        *m /= n as f64;
    }
    let mut s = vec![0.0; k * k];
    let mut sum_norm4 = 0.0;
    let mut c = vec![0.0; k];
    for row in x.data.chunks_exact(k) {
        let mut norm2 = 0.0;
        for i in 0..k {
            c[i] = row[i] - mean[i];
            norm2 += c[i] * c[i];
        }
        sum_norm4 += norm2 * norm2;
        // Upper triangle only; mirrored below.
        for i in 0..k {
            let ci = c[i];
            let srow = &mut s[i * k..(i + 1) * k];
            for j in i..k {
                srow[j] += ci * c[j];
            }
        }
    }
    for i in 0..k {
        for j in i..k {
            let v = s[i * k + j] / n as f64;
            s[i * k + j] = v;
            s[j * k + i] = v;
        }
    }
    let trace: f64 = (0..k).map(|i| s[i * k + i]).sum();
    let m = trace / k as f64;
    let frob2: f64 = s.iter().map(|v| v * v).sum();
    let d2 = (frob2 - 2.0 * m * trace + k as f64 * m * m) / k as f64;
    let b2_bar = (sum_norm4 / n as f64 - frob2) / (k as f64 * n as f64);
    let b2 = b2_bar.min(d2);
    let shrinkage = if d2 <= 0.0 {
        0.0
    } else {
        (b2 / d2).clamp(0.0, 1.0)
    };
    (mean, s, shrinkage)
}

/// Lower-triangular L with A = L·Lᵀ, or None when A is not positive definite.
pub fn cholesky(a: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let mut sum = a[i * k + j];
            for p in 0..j {
                sum -= l[i * k + p] * l[j * k + p];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[i * k + i] = sum.sqrt();
            } else {
                l[i * k + j] = sum / l[j * k + j];
            }
        }
    }
    Some(l)
}

/// L⁻¹ of a lower-triangular L (forward substitution, column by column).
fn invert_lower(l: &[f64], k: usize) -> Vec<f64> {
    let mut inv = vec![0.0; k * k];
    for col in 0..k {
        for i in col..k {
            let mut sum = if i == col { 1.0 } else { 0.0 };
            for p in col..i {
                sum -= l[i * k + p] * inv[p * k + col];
            }
            inv[i * k + col] = sum / l[i * k + i];
        }
    }
    inv
}

impl Gaussian {
    /// Fit on samples. `what` names the level in messages.
    pub fn fit(x: &Samples, shrinkage: Shrinkage, what: &str) -> Result<Gaussian> {
        let (n, k) = (x.n, x.k);
        if n < 2 {
            return Err(Error::Invalid(format!(
                "{what}: {n} normal sample(s); at least 2 are needed to estimate a covariance"
            )));
        }
        if shrinkage == Shrinkage::None && n <= k {
            return Err(Error::option_value(
                "shrinkage",
                "none",
                format!(
                "{what}: {n} normal samples for {k}-dimensional features: the sample covariance \
                 is singular; ledoit-wolf shrinkage works with fewer samples than dimensions \
                 (or add images)"
            ),
            ));
        }
        let (mean, mut cov, lw) = sample_stats(x);
        let intensity = match shrinkage {
            Shrinkage::LedoitWolf => lw,
            Shrinkage::None => 0.0,
        };
        shrink(&mut cov, k, intensity);
        let l = cholesky(&cov, k).ok_or_else(|| {
            Error::Invalid(format!(
                "{what}: the covariance of the normal features is not positive definite (constant \
                 features?); Ledoit–Wolf shrinkage is {intensity:.3}"
            ))
        })?;
        let linv = invert_lower(&l, k);
        let mut whitening = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                whitening[i * k + j] = linv[j * k + i];
            }
        }
        Ok(Gaussian {
            mean,
            cov,
            whitening,
            shrinkage: intensity,
            k,
            n,
        })
    }

    /// The precision matrix Σ⁻¹ = W·Wᵀ (k×k).
    pub fn precision(&self) -> Vec<f64> {
        let k = self.k;
        let w = &self.whitening;
        let mut p = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                p[i * k + j] = (0..k).map(|q| w[i * k + q] * w[j * k + q]).sum();
            }
        }
        p
    }

    /// Squared Mahalanobis distance of `f` through the precision matrix `p` (from
    /// [`Gaussian::precision`]): dᵀ·P·d, computed the direct way.
    pub fn mahalanobis2(&self, p: &[f64], f: &[f64]) -> f64 {
        let k = self.k;
        let d: Vec<f64> = f.iter().zip(&self.mean).map(|(a, b)| a - b).collect();
        let mut total = 0.0;
        for i in 0..k {
            let row = &p[i * k..(i + 1) * k];
            let pd: f64 = row.iter().zip(&d).map(|(a, b)| a * b).sum();
            total += d[i] * pd;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    #[test]
    fn whitening_inverts_the_covariance() {
        let mut s = 7u64;
        let (n, k) = (40, 6);
        let data: Vec<f64> = (0..n * k)
            .map(|i| lcg(&mut s) * (1 + i % k) as f64)
            .collect();
        let g = Gaussian::fit(&Samples { data: &data, n, k }, Shrinkage::LedoitWolf, "t").unwrap();
        let p = g.precision();
        for i in 0..k {
            for j in 0..k {
                let v: f64 = (0..k).map(|q| g.cov[i * k + q] * p[q * k + j]).sum();
                assert!(
                    (v - (i == j) as u8 as f64).abs() < 1e-9,
                    "Σ·Σ⁻¹ [{i},{j}] = {v}"
                );
            }
        }
        // ‖d·W‖² equals dᵀ·P·d.
        let f: Vec<f64> = (0..k).map(|i| i as f64 * 0.3).collect();
        let d: Vec<f64> = f.iter().zip(&g.mean).map(|(a, b)| a - b).collect();
        let z2: f64 = (0..k)
            .map(|j| {
                (0..k)
                    .map(|i| d[i] * g.whitening[i * k + j])
                    .sum::<f64>()
                    .powi(2)
            })
            .sum();
        assert!((z2 - g.mahalanobis2(&p, &f)).abs() < 1e-9 * z2.max(1.0));
    }

    #[test]
    fn fewer_samples_than_dimensions_need_shrinkage() {
        let mut s = 3u64;
        let (n, k) = (5, 12);
        let data: Vec<f64> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let x = Samples { data: &data, n, k };
        let g = Gaussian::fit(&x, Shrinkage::LedoitWolf, "level").unwrap();
        assert!(g.shrinkage > 0.0 && g.shrinkage <= 1.0);
        let e = Gaussian::fit(&x, Shrinkage::None, "level")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("5 normal samples for 12-dimensional") && e.contains("ledoit-wolf"),
            "{e}"
        );
    }

    #[test]
    fn no_shrinkage_is_the_sample_covariance() {
        let mut s = 5u64;
        let (n, k) = (50, 3);
        let data: Vec<f64> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let g = Gaussian::fit(&Samples { data: &data, n, k }, Shrinkage::None, "t").unwrap();
        let mean: Vec<f64> = (0..k)
            .map(|j| (0..n).map(|i| data[i * k + j]).sum::<f64>() / n as f64)
            .collect();
        let c01: f64 = (0..n)
            .map(|i| (data[i * k] - mean[0]) * (data[i * k + 1] - mean[1]))
            .sum::<f64>()
            / n as f64;
        assert!((g.cov[1] - c01).abs() < 1e-12);
        assert_eq!(g.shrinkage, 0.0);
    }
}
