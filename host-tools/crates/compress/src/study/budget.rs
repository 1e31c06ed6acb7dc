//! Whole-model budgets: "keep this fraction of the model's parameters" (or of its MACs),
//! turned into each method's own knob. Pruning's knob is the fraction of channels removed per
//! group, and low-rank's is the fraction of each decomposed layer's weights kept; neither maps
//! linearly to the model's total (a conv loses channels on both sides, some layers are never
//! touched, layers differ in how often they run), so the knob is found by bisection on the
//! count of the model it gives.

use crate::lowrank::{budget as lr_budget, layers::LinearLayer};
use crate::prune::{self, PruneOptions};
use crate::{Error, Result};
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::InputShape;
use serde::{Deserialize, Serialize};

/// What a whole-model budget is a fraction of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetBy {
    /// Parameters (float weights).
    #[default]
    Params,
    /// Multiply-accumulates of one inference at the study's input shape.
    Macs,
}

impl BudgetBy {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetBy::Params => "params",
            BudgetBy::Macs => "MACs",
        }
    }

    /// The model's count.
    pub fn count(self, model: &OnnxModel, input_shapes: &[InputShape]) -> Result<u64> {
        match self {
            BudgetBy::Params => model.float_constant_elements(),
            BudgetBy::Macs => Ok(edgeslim_onnx::inspect::inspect(model, input_shapes)?.total_macs),
        }
    }

    /// What each low-rank candidate layer costs in this count: its weight's elements, or the
    /// MACs of its node at the input shape (0 for a layer the inspection does not see).
    pub fn layer_costs(
        self,
        model: &OnnxModel,
        layers: &[LinearLayer],
        input_shapes: &[InputShape],
    ) -> Result<Vec<u64>> {
        match self {
            BudgetBy::Params => Ok(layers.iter().map(|l| (l.d_in * l.d_out) as u64).collect()),
            BudgetBy::Macs => {
                let facts = edgeslim_onnx::inspect::inspect(model, input_shapes)?;
                Ok(layers
                    .iter()
                    .map(|l| {
                        facts
                            .nodes
                            .iter()
                            .find(|n| n.name == l.name)
                            .and_then(|n| n.macs)
                            .unwrap_or(0)
                    })
                    .collect())
            }
        }
    }
}

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

/// Prune `model` (L1 criterion, per-group ratio) to at most `fraction` of the original's
/// `reference` count (parameters or MACs, `by`). Returns the pruned outcome and the ratio
/// used; an error names the smallest fraction pruning can reach when the budget is below it.
pub fn prune_to(
    model: &OnnxModel,
    base: &PruneOptions,
    by: BudgetBy,
    reference: u64,
    fraction: f64,
) -> Result<(prune::Outcome, f64)> {
    let target = (fraction * reference as f64).floor() as u64;
    let count = |m: &OnnxModel| by.count(m, &base.input_shapes);
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
        let n = count(&o.model)?;
        cache.push((ratio, o));
        Ok(n)
    })?;
    let Some((ratio, _)) = found else {
        let floor = cache
            .iter()
            .find(|(r, _)| *r == MAX_PRUNE_RATIO)
            .map(|(_, o)| count(&o.model))
            .transpose()?
            .unwrap_or(0);
        return Err(Error::option_value(
            "budgets",
            fraction,
            format!(
                "pruning keeps at least {floor} of {reference} {} ({:.1} %) on this model",
                by.as_str(),
                100.0 * floor as f64 / reference.max(1) as f64
            ),
        ));
    };
    let outcome = match cache.into_iter().rev().find(|(r, _)| *r == ratio) {
        Some((_, o)) => o,
        None => run(ratio)?,
    };
    Ok((outcome, ratio))
}

/// The count of a model whose `layers` (each costing `costs[i]` of the count) are decomposed
/// at per-layer budget `b`, from the model's `total` (the rank rule of `lowrank::budget`,
/// without decomposing anything). Two factors of rank r cost r·(d_in + d_out)/(d_in·d_out) of
/// the layer, in parameters and in MACs alike (they run at the layer's positions).
pub fn lowrank_count(total: u64, layers: &[LinearLayer], costs: &[u64], b: f64) -> u64 {
    let mut count = total as f64;
    for (l, &c) in layers.iter().zip(costs) {
        if l.not_decomposable.is_some() {
            continue;
        }
        if let Some(r) = lr_budget::rank_for_budget(l.d_in, l.d_out, b) {
            let share = lr_budget::factor_params(l.d_in, l.d_out, r) as f64
                / (l.d_in * l.d_out).max(1) as f64;
            count -= c as f64 * (1.0 - share);
        }
    }
    count.max(0.0).round() as u64
}

/// The per-layer low-rank budget that brings a model whose count is `total` (its eligible
/// `layers`, costing `costs`) to at most `fraction` of the original's `reference`; an error
/// names the smallest fraction low rank reaches.
pub fn lowrank_budget_for(
    total: u64,
    layers: &[LinearLayer],
    costs: &[u64],
    by: BudgetBy,
    reference: u64,
    fraction: f64,
) -> Result<f64> {
    let target = (fraction * reference as f64).floor() as u64;
    // The knob grows with the count; bisect on its complement.
    let found = bisect(0.0, 1.0 - 1e-6, target, |k| {
        Ok(lowrank_count(total, layers, costs, 1.0 - k))
    })?;
    match found {
        Some((k, _)) => Ok(1.0 - k),
        None => {
            let floor = lowrank_count(total, layers, costs, 1e-6);
            Err(Error::option_value(
                "budgets",
                fraction,
                format!(
                    "low rank keeps at least {floor} of {reference} {} ({:.1} %) on this model \
                     (rank ≥ {} per layer; layers it cannot decompose stay)",
                    by.as_str(),
                    100.0 * floor as f64 / reference.max(1) as f64,
                    lr_budget::MIN_RANK
                ),
            ))
        }
    }
}

/// The share of its weights each layer keeps when low rank goes to the last layers only
/// (LLM-ROM decomposes its last blocks at ~46 %).
pub const LATE_LAYER_BUDGET: f64 = 0.5;

/// How many of the last `layers` (graph order) to decompose at [`LATE_LAYER_BUDGET`] to reach
/// `fraction` of the original's `reference` count, and at what per-layer budget: the fewest
/// that reach it, or every layer at a lower budget when even all of them at half do not.
pub fn late_layers_for(
    total: u64,
    layers: &[LinearLayer],
    costs: &[u64],
    by: BudgetBy,
    reference: u64,
    fraction: f64,
) -> Result<(usize, f64)> {
    let target = (fraction * reference as f64).floor() as u64;
    let n = layers.len();
    for k in 1..=n {
        let from = n - k;
        if lowrank_count(total, &layers[from..], &costs[from..], LATE_LAYER_BUDGET) <= target {
            return Ok((k, LATE_LAYER_BUDGET));
        }
    }
    let b = lowrank_budget_for(total, layers, costs, by, reference, fraction)?;
    Ok((n, b))
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

    fn layer(d_in: usize, d_out: usize) -> LinearLayer {
        LinearLayer {
            name: format!("l{d_in}x{d_out}"),
            op: "MatMul".into(),
            kind: crate::lowrank::layers::LayerKind::MatMul,
            input: "x".into(),
            output: "y".into(),
            d_in,
            d_out,
            weight: Vec::new(),
            bias: None,
            not_decomposable: None,
        }
    }

    #[test]
    fn a_layer_saves_its_share_of_params_or_of_macs() {
        // κ = 50: budget 0.5 gives rank 25, two factors of 25·200 = half the 100×100 weight.
        let layers = [layer(100, 100)];
        assert_eq!(lowrank_count(12_000, &layers, &[10_000], 0.5), 7_000);
        // The same layer run at 49 positions: half of its 490 000 MACs saved.
        assert_eq!(lowrank_count(1_000_000, &layers, &[490_000], 0.5), 755_000);
        // A budget at or above κ keeps the layer dense.
        assert_eq!(lowrank_count(12_000, &layers, &[10_000], 1.0), 12_000);
        let b = lowrank_budget_for(
            1_000_000,
            &layers,
            &[490_000],
            BudgetBy::Macs,
            1_000_000,
            0.8,
        )
        .unwrap();
        let c = lowrank_count(1_000_000, &layers, &[490_000], b);
        assert!((780_000..=800_000).contains(&c), "{b} -> {c}");
        let e = lowrank_budget_for(
            1_000_000,
            &layers,
            &[490_000],
            BudgetBy::Macs,
            1_000_000,
            0.3,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("MACs"), "{e}");
    }

    #[test]
    fn late_layers_are_added_from_the_end_until_the_budget_holds() {
        let layers = [layer(100, 100), layer(100, 100), layer(100, 100)];
        let costs = [10_000u64; 3];
        // Each layer at half saves 5 000 of 30 000: 0.75 needs the last two.
        let (k, b) =
            late_layers_for(30_000, &layers, &costs, BudgetBy::Params, 30_000, 0.75).unwrap();
        assert_eq!((k, b), (2, LATE_LAYER_BUDGET));
        // 0.4 is below all three at half (0.5): every layer, at a smaller share.
        let (k, b) =
            late_layers_for(30_000, &layers, &costs, BudgetBy::Params, 30_000, 0.4).unwrap();
        assert_eq!(k, 3);
        assert!(b < LATE_LAYER_BUDGET, "{b}");
        assert!(lowrank_count(30_000, &layers, &costs, b) <= 12_000);
    }
}
