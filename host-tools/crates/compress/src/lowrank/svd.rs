//! Weight space: truncated SVD of W (docs/methods/lowrank.md). W ≈ U_r S_r V_rᵀ becomes two layers,
//! W1 = S_r V_rᵀ (r × d_in) and W2 = U_r (d_out × r); the bias stays on the second. No data.
//!
//! faer's thin SVD in f64 (LAPACK-class accuracy). Our layers are at most a few thousand wide,
//! where a full thin SVD takes well under a second; a randomized SVD would only pay off far
//! beyond that, so there is none.

use super::layers::LinearLayer;
use super::Factors;
use crate::{Error, Result};
use faer::MatRef;

/// Singular values of a row-major rows × cols matrix, largest first.
pub fn singular_values(w: &[f64], rows: usize, cols: usize, what: &str) -> Result<Vec<f64>> {
    let m = MatRef::from_row_major_slice(w, rows, cols);
    m.singular_values()
        .map_err(|e| Error::Other(format!("{what}: the SVD did not converge ({e:?})")))
}

/// Energy share of each prefix: `out[k]` = Σ_{i ≤ k} v_i / Σ v_i (v = σ² or eigenvalues).
pub fn cumulative_energy(values: &[f64]) -> Vec<f64> {
    let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
    let mut acc = 0.0;
    values
        .iter()
        .map(|v| {
            acc += v.max(0.0);
            if total > 0.0 {
                acc / total
            } else {
                1.0
            }
        })
        .collect()
}

/// The smallest rank whose prefix holds at least `share` of the energy.
pub fn rank_for_energy(cumulative: &[f64], share: f64) -> usize {
    cumulative
        .iter()
        .position(|&c| c >= share - 1e-12)
        .map_or(cumulative.len(), |i| i + 1)
}

/// Rank-r factors of a layer's weight by truncated SVD.
pub fn weight_factors(layer: &LinearLayer, r: usize) -> Result<Factors> {
    let (d_out, d_in) = (layer.d_out, layer.d_in);
    let m = MatRef::from_row_major_slice(&layer.weight, d_out, d_in);
    let svd = m.thin_svd().map_err(|e| {
        Error::Other(format!(
            "layer '{}': the SVD did not converge ({e:?})",
            layer.name
        ))
    })?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let r = r.min(d_in.min(d_out));
    let mut w1 = vec![0.0; r * d_in];
    for k in 0..r {
        for j in 0..d_in {
            w1[k * d_in + j] = s[k] * v[(j, k)];
        }
    }
    let mut w2 = vec![0.0; d_out * r];
    for i in 0..d_out {
        for k in 0..r {
            w2[i * r + k] = u[(i, k)];
        }
    }
    let sq: Vec<f64> = s.iter().map(|x| x * x).collect();
    let kept = cumulative_energy(&sq)
        .get(r.saturating_sub(1))
        .copied()
        .unwrap_or(1.0);
    Ok(Factors {
        rank: r,
        w1,
        w2,
        bias: layer.bias.clone(),
        kept_energy: kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_ranks() {
        let c = cumulative_energy(&[9.0, 0.9, 0.1]);
        assert_eq!(rank_for_energy(&c, 0.9), 1);
        assert_eq!(rank_for_energy(&c, 0.99), 2);
        assert_eq!(rank_for_energy(&c, 1.0), 3);
    }

    #[test]
    fn singular_values_of_a_known_matrix() {
        // diag(3, 2) rotated: singular values 3 and 2.
        let (c, s) = (0.6f64, 0.8f64);
        let w = [3.0 * c, -2.0 * s, 3.0 * s, 2.0 * c];
        let sv = singular_values(&w, 2, 2, "test").unwrap();
        assert!(
            (sv[0] - 3.0).abs() < 1e-12 && (sv[1] - 2.0).abs() < 1e-12,
            "{sv:?}"
        );
    }
}
