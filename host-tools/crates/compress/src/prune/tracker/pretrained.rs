//! A tracker on a pretrained trunk (MobileNetV2 cut after a few blocks, then a 1×1 neck):
//! its channels are not four plain layers but inverted-residual blocks with depthwise
//! convolutions and residual additions, so the graph pruner's dependency groups do the
//! analysis. They run on the search branch written as one chain
//! ([`siamese::build_channel_probe`]), where the neck's channels, the correlation's, are
//! prunable too; the pruned widths go into the config (`pretrained_widths`, the neck in
//! `widths[3]`), the family builds both graphs at those widths, and every weight is copied by
//! name from the pruned chain.

use super::{copy_runtime_facts, model_params, TrackerBudget, TrackerPair, TrackerPruneOptions};
use super::{Criterion, TrackerPruneSummary};
use crate::prune::{self, Outcome, PruneOptions};
use crate::{Error, Result};
use edgeslim_onnx::OnnxModel;
use edgeslim_train::families::siamese::{self, SiameseConfig};

/// The pruned chain at `ratio` of every group's channels removed.
fn prune_at(probe: &OnnxModel, ratio: f64, opts: &TrackerPruneOptions) -> Result<Outcome> {
    let o = PruneOptions {
        ratio,
        criterion: opts.criterion,
        round_to: opts.round_to,
        min_channels: opts.min_channels,
        ..PruneOptions::default()
    };
    prune::prune(probe, &o, &[], None)
}

/// The largest ratio the bisection tries: every group down to its floor.
const FLOOR_RATIO: f64 = 0.999_999;

fn plan(probe: &OnnxModel, pair: &TrackerPair, opts: &TrackerPruneOptions) -> Result<Outcome> {
    match opts.budget {
        TrackerBudget::Ratio(r) => {
            if !(0.0..1.0).contains(&r) {
                return Err(Error::option_value("ratio", r, "must be in [0, 1)"));
            }
            prune_at(probe, r, opts)
        }
        TrackerBudget::KeepParams(f) => {
            if !(f > 0.0 && f <= 1.0) {
                return Err(Error::option_value("keep_params", f, "must be in (0, 1]"));
            }
            let limit = (f * model_params(probe) as f64).floor() as u64;
            let floor = prune_at(probe, FLOOR_RATIO, opts)?;
            let floor_params = model_params(&floor.model);
            if floor_params > limit {
                return Err(Error::option_value(
                    "keep_params",
                    f,
                    format!(
                        "{limit} parameters cannot hold the smallest tracker on {} ({floor_params} \
                         parameters: at least {} channels per group, rounded to multiples of {})",
                        pair.dir.display(),
                        opts.min_channels,
                        opts.round_to
                    ),
                ));
            }
            if f == 1.0 {
                return prune_at(probe, 0.0, opts);
            }
            // Bisection on the shared ratio: the smallest removal whose chain fits.
            let (mut lo, mut hi) = (0.0f64, FLOOR_RATIO);
            let mut best = floor;
            for _ in 0..24 {
                let mid = 0.5 * (lo + hi);
                let o = prune_at(probe, mid, opts)?;
                if model_params(&o.model) <= limit {
                    hi = mid;
                    best = o;
                } else {
                    lo = mid;
                }
            }
            Ok(best)
        }
    }
}

fn dims(m: &OnnxModel, name: &str) -> Result<Vec<usize>> {
    let t = m
        .initializer(name)
        .ok_or_else(|| Error::tensor(name, "missing in the pruned trunk"))?;
    edgeslim_onnx::tensor::proto_dims(t)
}

/// The trunk's widths in `edgeslim_import::mobilenetv2::narrow`'s order, read off the
/// weights: the stem, then per block the expansion (where there is one) and the projection.
fn trunk_widths(m: &OnnxModel, blocks: usize) -> Result<Vec<usize>> {
    let out = |name: &str| -> Result<usize> { Ok(dims(m, name)?[0]) };
    let mut w = vec![out("features.0.0.weight")?];
    for i in 1..=blocks {
        let p = format!("features.{i}.conv");
        if m.initializer(&format!("{p}.6.weight")).is_some() {
            w.push(out(&format!("{p}.0.weight"))?);
            w.push(out(&format!("{p}.6.weight"))?);
        } else {
            w.push(out(&format!("{p}.3.weight"))?);
        }
    }
    Ok(w)
}

pub(super) fn prune(
    pair: &TrackerPair,
    opts: &TrackerPruneOptions,
) -> Result<(OnnxModel, OnnxModel, SiameseConfig, TrackerPruneSummary)> {
    if !matches!(opts.criterion, Criterion::L1 | Criterion::L2) {
        return Err(Error::option_value(
            "criterion",
            opts.criterion.as_str(),
            "a tracker on a pretrained trunk is scored with l1 or l2 (its batch norms are folded \
             into the convolutions)",
        ));
    }
    let cfg0 = &pair.config;
    let mut probe = siamese::build_channel_probe(cfg0)?;
    siamese::copy_weights_by_name(
        &mut probe,
        &[&pair.search],
        |_| true,
        &format!("{}/search.onnx", pair.dir.display()),
    )?;
    let before = trunk_widths(&probe, cfg0.pretrained_blocks)?;
    let outcome = plan(&probe, pair, opts)?;
    let pruned = &outcome.model;
    let after = trunk_widths(pruned, cfg0.pretrained_blocks)?;
    let mut widths = cfg0.widths;
    widths[3] = dims(pruned, "neck.conv.weight")?[0];
    let cfg = SiameseConfig {
        widths,
        pretrained_widths: Some(after.clone()),
        ..cfg0.clone()
    };
    let mut template = siamese::build_template(&cfg)?;
    let mut search = siamese::build_search(&cfg)?;
    let note = format!(
        "pruned from {} with {} (dependency groups of the trunk): trunk {before:?} -> {after:?}, \
         correlation channels {} -> {}",
        pair.dir.display(),
        opts.criterion.as_str(),
        cfg0.widths[3],
        widths[3]
    );
    for m in [&mut template, &mut search] {
        siamese::copy_weights_by_name(
            m,
            &[pruned],
            |n| !n.starts_with("kernel."),
            "the pruned trunk",
        )?;
        copy_runtime_facts(m, pair);
        m.set_metadata("edgeslim.pruned", &note);
    }
    let (pb, pa) = (pair.params(), model_params(&search));
    let summary = TrackerPruneSummary {
        criterion: opts.criterion.as_str().into(),
        widths_before: cfg0.widths,
        widths_after: widths,
        params_before: pb,
        params_after: pa,
        params_kept: pa as f64 / pb.max(1) as f64,
        kept: Vec::new(),
        trunk_widths_before: Some(before),
        trunk_widths_after: Some(after),
    };
    Ok((template, search, cfg, summary))
}
