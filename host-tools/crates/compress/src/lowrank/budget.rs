//! Ranks from a parameter budget (docs/methods/lowrank.md).
//!
//! Two factors of rank r cost r·(d_in + d_out) weights against d_in·d_out for W, so they break
//! even at κ = d_in·d_out/(d_in + d_out). A budget F (the fraction of the layer's weights kept)
//! gives r = ⌊κ·F⌋; a layer is only decomposed when r < κ, otherwise it stays dense.

use crate::{Error, Result};

pub fn kappa(d_in: usize, d_out: usize) -> f64 {
    if d_in + d_out == 0 {
        return 0.0;
    }
    (d_in as f64 * d_out as f64) / (d_in + d_out) as f64
}

/// Check a budget from the command line: a fraction in (0, 1].
pub fn check_budget(budget: f64) -> Result<f64> {
    if budget.is_finite() && budget > 0.0 && budget <= 1.0 {
        Ok(budget)
    } else {
        Err(Error::option_value(
            "budget",
            budget,
            "the budget is the fraction of each layer's weights kept, a number in (0, 1]",
        ))
    }
}

/// The smallest rank written. Rank 1 would be the mathematical floor, but tract 0.23's
/// optimiser fails on a rank-1 Gemm pair at batch 1 ("MergeConsecutiveSameRoleAxes ... Trying to
/// substitute a ,F32 by 1,F32" on the [1, 1] middle tensor), and every model we write must run
/// in tract; a rank-1 layer is also rarely worth keeping.
pub const MIN_RANK: usize = 2;

/// The rank a budget gives, or `None` when the layer should stay dense (r ≥ κ). Ranks below
/// [`MIN_RANK`] are raised to it.
pub fn rank_for_budget(d_in: usize, d_out: usize, budget: f64) -> Option<usize> {
    let k = kappa(d_in, d_out);
    let r = ((k * budget).floor() as usize).max(MIN_RANK);
    ((r as f64) < k).then_some(r)
}

/// Parameters of the two factors (biases not counted: the layer keeps one bias either way).
pub fn factor_params(d_in: usize, d_out: usize, r: usize) -> usize {
    r * (d_in + d_out)
}

/// Candidate ranks of the surgical search: {[`MIN_RANK`], 0.1κ, 0.2κ, …, 1.0κ}, floored, distinct,
/// ascending, and all below κ (a rank at κ saves nothing; the search then keeps the layer
/// dense).
pub fn search_candidates(d_in: usize, d_out: usize) -> Vec<usize> {
    let k = kappa(d_in, d_out);
    let mut c: Vec<usize> = std::iter::once(MIN_RANK)
        .chain((1..=10).map(|i| (k * i as f64 / 10.0).floor() as usize))
        .filter(|&r| r >= MIN_RANK && (r as f64) < k)
        .collect();
    c.sort_unstable();
    c.dedup();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_is_the_break_even_rank() {
        assert_eq!(kappa(100, 100), 50.0);
        let (di, dout) = (64, 10);
        let k = kappa(di, dout);
        assert!((k * (di + dout) as f64 - (di * dout) as f64).abs() < 1e-9);
    }

    #[test]
    fn budget_rank_and_dense_rule() {
        assert_eq!(rank_for_budget(100, 100, 0.5), Some(25));
        // κ = 50 exactly: a full budget would reach κ, so the layer stays dense.
        assert_eq!(rank_for_budget(100, 100, 1.0), None);
        // κ = 8.65: r = 8 < κ.
        assert_eq!(rank_for_budget(64, 10, 1.0), Some(8));
        assert_eq!(rank_for_budget(60, 15, 1.0), None);
        // κ = 2: the floor rank 2 saves nothing, so the layer stays dense; κ = 4: floor 2.
        assert_eq!(rank_for_budget(4, 4, 0.01), None);
        assert_eq!(rank_for_budget(8, 8, 0.01), Some(2));
        assert!(check_budget(0.0).is_err() && check_budget(1.5).is_err());
        assert!(check_budget(f64::NAN).is_err() && check_budget(1.0).is_ok());
    }

    #[test]
    fn candidates_are_distinct_and_below_kappa() {
        let c = search_candidates(100, 100);
        assert_eq!(c, vec![2, 5, 10, 15, 20, 25, 30, 35, 40, 45]);
        assert_eq!(search_candidates(2, 2), Vec::<usize>::new());
    }
}
