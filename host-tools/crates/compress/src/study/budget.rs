//! Whole-model parameter budgets: "keep this fraction of the model's parameters", turned into
//! each method's own knob. Pruning's knob is the fraction of channels removed per group, and
//! low-rank's is the fraction of each decomposed layer's weights kept; neither maps linearly to
//! the model's total (a conv loses channels on both sides, some layers are never touched), so
//! the knob is found by bisection on the parameter count of the model it gives.

use crate::lowrank::{budget as lr_budget, layers::LinearLayer};
use crate::prune::{self, PruneOptions};
use crate::{Error, Result};
use edgeslim_onnx::OnnxModel;

/// Bisection steps: 2⁻¹² of the knob's range, far finer than one channel or one rank.
const STEPS: usize = 12;

/// The knob in `[lo, hi]` whose count is the largest not above `target`, for a count that
/// falls as the knob grows. `None` when even `hi` stays above the target.
fn bisect(
    lo: f64,
    hi: f64,
    target: u64,
    mut count: impl FnMut(f64) -> Result<u64>,
) -> Result<Option<(f64, u64)>> {
    let at_hi = count(hi)?;
    if at_hi > target {
        return Ok(None);
    }
    let at_lo = count(lo)?;
    if at_lo <= target {
        return Ok(Some((lo, at_lo)));
    }
    let (mut lo, mut hi, mut best) = (lo, hi, (hi, at_hi));
    for _ in 0..STEPS {
        let mid = 0.5 * (lo + hi);
        let c = count(mid)?;
        if c <= target {
            best = (mid, c);
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(best))
}

/// The largest channel ratio that pruning may remove: one channel of a group always stays.
const MAX_PRUNE_RATIO: f64 = 0.98;

/// Prune `model` (L1 criterion, per-group ratio) to at most `fraction` of `reference_params`
/// parameters. Returns the pruned outcome and the ratio used; an error names the smallest
/// fraction pruning can reach when the budget is below it.
pub fn prune_to(
    model: &OnnxModel,
    base: &PruneOptions,
    reference_params: u64,
    fraction: f64,
) -> Result<(prune::Outcome, f64)> {
    let target = (fraction * reference_params as f64).floor() as u64;
    let run = |ratio: f64| {
        let opts = PruneOptions {
            ratio,
            ..base.clone()
        };
        prune::prune(model, &opts, &[], None)
    };
    let mut cache: Vec<(f64, prune::Outcome)> = Vec::new();
    let found = bisect(0.0, MAX_PRUNE_RATIO, target, |ratio| {
        let o = run(ratio)?;
        let n = o.model.float_constant_elements()?;
        cache.push((ratio, o));
        Ok(n)
    })?;
    let Some((ratio, _)) = found else {
        let floor = cache
            .iter()
            .find(|(r, _)| *r == MAX_PRUNE_RATIO)
            .map(|(_, o)| o.model.float_constant_elements())
            .transpose()?
            .unwrap_or(0);
        return Err(Error::option_value(
            "budgets",
            fraction,
            format!(
                "pruning keeps at least {floor} of {reference_params} parameters ({:.1} %) on \
                 this model",
                100.0 * floor as f64 / reference_params.max(1) as f64
            ),
        ));
    };
    let outcome = match cache.into_iter().rev().find(|(r, _)| *r == ratio) {
        Some((_, o)) => o,
        None => run(ratio)?,
    };
    Ok((outcome, ratio))
}

/// Parameters of a model whose `layers` are decomposed at per-layer budget `b`, from the
/// model's `total` (the rank rule of `lowrank::budget`, without decomposing anything).
pub fn lowrank_params(total: u64, layers: &[LinearLayer], b: f64) -> u64 {
    let mut params = total as i64;
    for l in layers.iter().filter(|l| l.not_decomposable.is_none()) {
        if let Some(r) = lr_budget::rank_for_budget(l.d_in, l.d_out, b) {
            params -= (l.d_in * l.d_out) as i64;
            params += lr_budget::factor_params(l.d_in, l.d_out, r) as i64;
        }
    }
    params.max(0) as u64
}

/// The per-layer low-rank budget that brings a model of `total` parameters (its eligible
/// `layers`) to at most `fraction` of `reference_params`; an error names the smallest
/// fraction low rank reaches.
pub fn lowrank_budget_for(
    total: u64,
    layers: &[LinearLayer],
    reference_params: u64,
    fraction: f64,
) -> Result<f64> {
    let target = (fraction * reference_params as f64).floor() as u64;
    // The knob grows with the parameter count; bisect on its complement.
    let found = bisect(0.0, 1.0 - 1e-6, target, |k| {
        Ok(lowrank_params(total, layers, 1.0 - k))
    })?;
    match found {
        Some((k, _)) => Ok(1.0 - k),
        None => {
            let floor = lowrank_params(total, layers, 1e-6);
            Err(Error::option_value(
                "budgets",
                fraction,
                format!(
                    "low rank keeps at least {floor} of {reference_params} parameters ({:.1} %) \
                     on this model (rank ≥ {} per layer; layers it cannot decompose stay)",
                    100.0 * floor as f64 / reference_params.max(1) as f64,
                    lr_budget::MIN_RANK
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_finds_the_largest_count_within_the_target() {
        // count(k) = 1000 − 10·⌊100 k⌋ falls in steps of 10.
        let f = |k: f64| Ok(1000 - 10 * (100.0 * k).floor() as u64);
        let (k, c) = bisect(0.0, 0.98, 455, f).unwrap().unwrap();
        assert_eq!(c, 450, "the first count not above 455");
        assert!((0.55..0.56).contains(&k), "{k}");
        assert!(bisect(0.0, 0.5, 100, f).unwrap().is_none(), "out of reach");
        assert_eq!(bisect(0.0, 0.5, 2000, f).unwrap().unwrap().1, 1000);
    }
}
