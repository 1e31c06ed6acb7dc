//! Which channels go: per group (the same ratio in every group) or global (one ranking over
//! all groups, scores normalised by each group's mean so layers of different scale compete
//! fairly), kept counts rounded up to SIMD-friendly multiples, never below `min_channels`.

use super::groups::Groups;
use crate::{Error, Result};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct SelectOptions {
    /// Fraction of channels to remove, in [0, 1).
    pub ratio: f64,
    pub global: bool,
    /// Round kept channel counts up to a multiple of this (1: no rounding). Ignored for
    /// groups smaller than it (a 4-head attention block keeps whole heads, not 8).
    pub round_to: usize,
    /// Keep at least this many units per group (at least 1: a group is never emptied).
    pub min_channels: usize,
    /// Groups with a member node or tensor matching this are kept whole.
    pub exclude: Option<regex::Regex>,
}

/// The outcome: per group id, the class roots removed.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub removed: HashMap<usize, Vec<usize>>,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn removed_count(&self) -> usize {
        self.removed.values().map(|v| v.len()).sum()
    }
}

fn round_keep(keep: usize, n: usize, opts: &SelectOptions) -> usize {
    let mut k = keep;
    if opts.round_to > 1 && n >= opts.round_to {
        k = k.div_ceil(opts.round_to) * opts.round_to;
    }
    k.max(opts.min_channels.max(1)).min(n)
}

pub fn check_ratio(ratio: f64) -> Result<()> {
    if !(0.0..1.0).contains(&ratio) || ratio.is_nan() {
        return Err(Error::option_value(
            "ratio",
            ratio,
            "the fraction of channels to remove must be in [0, 1)",
        ));
    }
    Ok(())
}

pub fn select(groups: &Groups, scores: &HashMap<usize, f64>, opts: &SelectOptions) -> Result<Plan> {
    check_ratio(opts.ratio)?;
    let mut plan = Plan::default();
    let candidates: Vec<usize> = groups
        .prunable()
        .filter(|g| opts.exclude.as_ref().is_none_or(|re| !g.matches(re)))
        .map(|g| g.id)
        .collect();
    if let Some(re) = &opts.exclude {
        let hit = groups.groups.iter().filter(|g| g.matches(re)).count();
        if hit == 0 {
            plan.notes.push(format!(
                "warning: the exclude pattern '{}' matches no layer or tensor of any group",
                re.as_str()
            ));
        } else {
            plan.notes.push(format!(
                "the exclude pattern '{}' keeps {hit} groups whole",
                re.as_str()
            ));
        }
    }
    let score = |r: &usize| scores.get(r).copied().unwrap_or(0.0);
    // Ascending score, ties by class id: reproducible.
    let ranked = |gid: usize| {
        let mut v = groups.groups[gid].classes.clone();
        v.sort_by(|a, b| score(a).total_cmp(&score(b)).then(a.cmp(b)));
        v
    };
    if !opts.global {
        for gid in candidates {
            let n = groups.groups[gid].channels;
            let remove = (n as f64 * opts.ratio).floor() as usize;
            let keep = round_keep(n - remove, n, opts);
            if keep < n {
                let r = ranked(gid);
                plan.removed.insert(gid, r[..n - keep].to_vec());
            }
        }
        return Ok(plan);
    }
    // Global: one ranking of normalised scores.
    let mut pool: Vec<(f64, usize, usize)> = Vec::new();
    let mut total = 0usize;
    for &gid in &candidates {
        let g = &groups.groups[gid];
        let mean = g.classes.iter().map(&score).sum::<f64>() / g.channels.max(1) as f64;
        let norm = if mean > 0.0 { mean } else { 1.0 };
        total += g.channels;
        for &c in &g.classes {
            pool.push((score(&c) / norm, gid, c));
        }
    }
    pool.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
    let target = (total as f64 * opts.ratio).floor() as usize;
    let mut removed: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut count = 0;
    for (_, gid, c) in pool {
        if count >= target {
            break;
        }
        let n = groups.groups[gid].channels;
        let floor = opts.min_channels.max(1).min(n);
        let e = removed.entry(gid).or_default();
        if n - e.len() > floor {
            e.push(c);
            count += 1;
        }
    }
    // Rounding: give back the best of the removed until the kept count is a multiple.
    for (gid, mut r) in removed {
        let n = groups.groups[gid].channels;
        let keep = round_keep(n - r.len(), n, opts);
        r.truncate(n - keep);
        if !r.is_empty() {
            plan.removed.insert(gid, r);
        }
    }
    Ok(plan)
}
