//! From trained mask values to what each block keeps: per mask type, all values of the model
//! are ranked together by magnitude and the top fraction is kept (ViT-Slim's global
//! threshold); the fraction is found by bisection so that the sliced model meets a budget.

use crate::masks::{Mask, MaskKind, MaskValues};
use crate::recognize::VitStructure;
use crate::slice::{AttentionKeep, Keep};
use edgeslim_onnx::{Error, Result};

/// `(|value|, block, index)` of every mask of `kind`, largest first (ties by position).
fn ranked(masks: &[Mask], values: &MaskValues, kind: MaskKind) -> Vec<(f32, usize, usize)> {
    let mut pool: Vec<(f32, usize, usize)> = masks
        .iter()
        .filter(|m| m.kind == kind)
        .flat_map(|m| {
            values
                .get(&m.name)
                .into_iter()
                .flatten()
                .enumerate()
                .map(move |(i, v)| (v.abs(), m.block, i))
        })
        .collect();
    pool.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    pool
}

/// Indices of `v` sorted by decreasing magnitude, the first `n`, in index order.
fn top(v: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].abs().total_cmp(&v[a].abs()).then(a.cmp(&b)));
    idx.truncate(n.max(1).min(v.len()));
    idx.sort_unstable();
    idx
}

/// What is kept when the top `fraction` of every mask type's values stays. A block keeps at
/// least one head, one dimension per head and one MLP unit; head dimensions are kept in
/// equal numbers per head (the reshape to heads needs one head size): the block's share of
/// kept values, spread over its heads, each head keeping its own largest. Kept head sizes and
/// MLP widths are rounded up to multiples of `round_to` (SIMD-friendly matrix sizes).
pub fn keep_at(
    s: &VitStructure,
    masks: &[Mask],
    values: &MaskValues,
    fraction: f64,
    round_to: usize,
) -> Keep {
    let step = round_to.max(1);
    let round = |n: usize, max: usize| (n.div_ceil(step) * step).min(max);
    let mut keep = Keep::all(s);
    let f = fraction.clamp(0.0, 1.0);
    let mask_of = |kind: MaskKind, block: usize| {
        masks
            .iter()
            .find(|m| m.kind == kind && m.block == block)
            .and_then(|m| values.get(&m.name))
    };
    for kind in [MaskKind::HeadDims, MaskKind::Heads, MaskKind::Mlp] {
        let pool = ranked(masks, values, kind);
        if pool.is_empty() {
            continue;
        }
        let n = ((pool.len() as f64) * f).round() as usize;
        let blocks = match kind {
            MaskKind::Mlp => s.mlps.len(),
            _ => s.attentions.len(),
        };
        let mut count = vec![0usize; blocks];
        for &(_, b, _) in pool.iter().take(n) {
            count[b] += 1;
        }
        for (b, &c) in count.iter().enumerate() {
            let Some(v) = mask_of(kind, b) else { continue };
            match kind {
                MaskKind::Tokens => {}
                MaskKind::Mlp => keep.mlps[b] = top(v, round(c.max(1), v.len())),
                MaskKind::Heads => {
                    let dh = s.attentions[b].head_dim;
                    keep.attentions[b] = AttentionKeep {
                        heads: top(v, c)
                            .into_iter()
                            .map(|h| (h, (0..dh).collect()))
                            .collect(),
                    };
                }
                MaskKind::HeadDims => {
                    let a = &s.attentions[b];
                    let per_head =
                        ((c as f64 / a.heads as f64).round() as usize).clamp(1, a.head_dim);
                    let per_head = round(per_head, a.head_dim);
                    keep.attentions[b] = AttentionKeep {
                        heads: (0..a.heads)
                            .map(|h| (h, top(&v[h * a.head_dim..(h + 1) * a.head_dim], per_head)))
                            .collect(),
                    };
                }
            }
        }
    }
    keep.tokens = keep_tokens(s, masks, values, f);
    keep
}

/// Token masks: the class token (first) always stays; the top `fraction` of all blocks'
/// other token values is counted per block, and each block keeps its own best of the
/// tokens the previous block kept (monotone over depth: a dropped token never returns).
fn keep_tokens(
    s: &VitStructure,
    masks: &[Mask],
    values: &MaskValues,
    fraction: f64,
) -> Vec<Option<Vec<usize>>> {
    let mut out = vec![None; s.attentions.len()];
    let patch = |m: &Mask| values.get(&m.name).map(|v| &v[1.min(v.len())..]);
    let mut pool: Vec<(f32, usize)> = masks
        .iter()
        .filter(|m| m.kind == MaskKind::Tokens)
        .flat_map(|m| {
            patch(m)
                .into_iter()
                .flatten()
                .map(move |v| (v.abs(), m.block))
        })
        .collect();
    if pool.is_empty() {
        return out;
    }
    pool.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let n = ((pool.len() as f64) * fraction).round() as usize;
    let mut count = vec![0usize; s.attentions.len()];
    for &(_, b) in pool.iter().take(n) {
        count[b] += 1;
    }
    let mut arriving: Option<Vec<usize>> = None;
    for mk in masks.iter().filter(|m| m.kind == MaskKind::Tokens) {
        let Some(v) = values.get(&mk.name) else {
            continue;
        };
        let mut cand: Vec<usize> = arriving.clone().unwrap_or_else(|| (1..v.len()).collect());
        cand.sort_by(|&a, &b| v[b].abs().total_cmp(&v[a].abs()).then(a.cmp(&b)));
        cand.truncate(count[mk.block].clamp(1, cand.len().max(1)));
        cand.sort_unstable();
        let mut kept = vec![0];
        kept.extend(&cand);
        out[mk.block] = Some(kept);
        arriving = Some(cand);
    }
    out
}

/// The largest kept fraction whose sliced model has `measure(keep) ≤ target`, and that
/// keep. `measure` is monotone in the fraction (fewer kept channels never cost more).
pub fn fit(
    s: &VitStructure,
    masks: &[Mask],
    values: &MaskValues,
    target: f64,
    round_to: usize,
    mut measure: impl FnMut(&Keep) -> Result<f64>,
) -> Result<(f64, Keep, f64)> {
    let full = Keep::all(s);
    let whole = measure(&full)?;
    if whole <= target {
        return Ok((1.0, full, whole));
    }
    let floor_keep = keep_at(s, masks, values, 0.0, round_to);
    let floor = measure(&floor_keep)?;
    if floor > target {
        return Err(Error::Invalid(format!(
            "the budget cannot be met by slicing the masked channels: with one head dimension per head and one MLP unit per block the model still has {:.1} % of the original (budget {:.1} %); parts without masks (embeddings, norms, head) stay",
            floor * 100.0,
            target * 100.0
        )));
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut best = (0.0, floor_keep, floor);
    for _ in 0..30 {
        let mid = 0.5 * (lo + hi);
        let k = keep_at(s, masks, values, mid, round_to);
        let v = measure(&k)?;
        if v <= target {
            lo = mid;
            best = (mid, k, v);
        } else {
            hi = mid;
        }
        if hi - lo < 1e-4 {
            break;
        }
    }
    Ok(best)
}
