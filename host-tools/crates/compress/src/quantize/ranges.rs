//! Calibrated activation ranges for int8 (docs/methods/quantize.md): MinMax, Percentile, Entropy.
//!
//! The tensors are run over the calibration split with tract (one sample at a time, every
//! tensor exposed as an output). MinMax needs one pass; Percentile and Entropy a second one
//! that fills a 2048-bin histogram between the first pass's bounds.
//! - Percentile: the range between the (100 − p) and p percentiles (p = 99.99 by default).
//! - Entropy (TensorRT's KL calibration): on the histogram of |x|, the clipping threshold
//!   whose 128-level (signed) or 256-level (non-negative) quantisation loses the least
//!   information, measured by KL(P‖Q).
//!
//! Every range is widened to include 0, so that 0 is exactly representable (padding, ReLU).

use crate::Result;
use edgeslim_data::calib::{Dataset, ModelInput};
use edgeslim_measure::runner::{progress_bar, Runner};
use edgeslim_onnx::OnnxModel;
use serde::Serialize;

pub const BINS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RangeMethod {
    Minmax,
    Percentile,
    Entropy,
}

impl RangeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            RangeMethod::Minmax => "minmax",
            RangeMethod::Percentile => "percentile",
            RangeMethod::Entropy => "entropy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

/// Ranges of `tensors` of `model` on `data`.
pub fn calibrate(
    model: &OnnxModel,
    input: &ModelInput,
    tensors: &[String],
    data: &Dataset,
    method: RangeMethod,
    percentile: f64,
) -> Result<Vec<Range>> {
    let runner = Runner::new(model, input, Some(tensors))?;
    let mut ranges = vec![
        Range {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY
        };
        tensors.len()
    ];
    let pb = progress_bar(data.len(), "activation ranges");
    runner.for_each(data, &pb, |_, outs| {
        for (r, o) in ranges.iter_mut().zip(&outs) {
            for &v in o.values.iter().filter(|v| v.is_finite()) {
                r.min = r.min.min(v);
                r.max = r.max.max(v);
            }
        }
        Ok(())
    })?;
    pb.finish_and_clear();
    for r in ranges.iter_mut() {
        if !r.min.is_finite() {
            *r = Range { min: 0.0, max: 0.0 };
        }
    }
    if method == RangeMethod::Minmax {
        return Ok(ranges.into_iter().map(with_zero).collect());
    }
    // Second pass: histograms. Percentile over [min, max]; entropy over [0, max|x|].
    let bounds: Vec<(f32, f32)> = ranges
        .iter()
        .map(|r| match method {
            RangeMethod::Entropy => (0.0, r.min.abs().max(r.max.abs())),
            _ => (r.min, r.max),
        })
        .collect();
    let mut hists = vec![vec![0u64; BINS]; tensors.len()];
    let pb = progress_bar(data.len(), "activation histograms");
    runner.for_each(data, &pb, |_, outs| {
        for ((h, &(lo, hi)), o) in hists.iter_mut().zip(&bounds).zip(&outs) {
            let width = (hi - lo).max(f32::MIN_POSITIVE);
            for &v in o.values.iter().filter(|v| v.is_finite()) {
                let x = if method == RangeMethod::Entropy {
                    v.abs()
                } else {
                    v
                };
                let b = (((x - lo) / width) * BINS as f32) as usize;
                h[b.min(BINS - 1)] += 1;
            }
        }
        Ok(())
    })?;
    pb.finish_and_clear();
    Ok(ranges
        .iter()
        .zip(&hists)
        .zip(&bounds)
        .map(|((r, h), &(lo, hi))| {
            let bin = (hi - lo) / BINS as f32;
            match method {
                RangeMethod::Percentile => {
                    let (a, b) = percentile_bins(h, percentile);
                    with_zero(Range {
                        min: lo + a as f32 * bin,
                        max: lo + (b + 1) as f32 * bin,
                    })
                }
                _ => {
                    let levels = if r.min >= 0.0 { 256 } else { 128 };
                    let t = (entropy_threshold_bin(h, levels) + 1) as f32 * bin;
                    with_zero(Range {
                        min: r.min.max(-t),
                        max: r.max.min(t),
                    })
                }
            }
        })
        .collect())
}

fn with_zero(r: Range) -> Range {
    Range {
        min: r.min.min(0.0),
        max: r.max.max(0.0),
    }
}

/// First and last bins inside the central `p` percent of the mass.
pub fn percentile_bins(h: &[u64], p: f64) -> (usize, usize) {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return (0, h.len() - 1);
    }
    let tail = (total as f64 * (1.0 - p / 100.0)).floor() as u64;
    let mut acc = 0;
    let mut lo = 0;
    for (i, &c) in h.iter().enumerate() {
        acc += c;
        if acc > tail {
            lo = i;
            break;
        }
    }
    acc = 0;
    let mut hi = h.len() - 1;
    for (i, &c) in h.iter().enumerate().rev() {
        acc += c;
        if acc > tail {
            hi = i;
            break;
        }
    }
    (lo, hi.max(lo))
}

/// TensorRT's entropy calibration on a histogram of |x|: the last bin to keep.
pub fn entropy_threshold_bin(h: &[u64], levels: usize) -> usize {
    let n = h.len();
    if h.iter().all(|&c| c == 0) || n <= levels {
        return n - 1;
    }
    let mut best = (f64::INFINITY, n - 1);
    for i in levels..=n {
        // Reference: the first i bins, everything beyond folded into the last one.
        let mut p: Vec<f64> = h[..i].iter().map(|&c| c as f64).collect();
        p[i - 1] += h[i..].iter().map(|&c| c as f64).sum::<f64>();
        // Candidate: the first i bins merged into `levels` groups, each group's mass spread
        // evenly over its non-empty bins.
        let mut q = vec![0.0f64; i];
        for g in 0..levels {
            let start = g * i / levels;
            let end = ((g + 1) * i / levels).max(start + 1);
            let mass: f64 = h[start..end].iter().map(|&c| c as f64).sum();
            let nonzero = h[start..end].iter().filter(|&&c| c > 0).count();
            if nonzero > 0 {
                for (k, qk) in q[start..end].iter_mut().enumerate() {
                    if h[start + k] > 0 {
                        *qk = mass / nonzero as f64;
                    }
                }
            }
        }
        let kl = kl_divergence(&p, &q);
        if kl < best.0 {
            best = (kl, i - 1);
        }
    }
    best.1
}

fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    let mut kl = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        if a > 0.0 {
            let (a, b) = (a / sp, b / sq);
            // Mass the candidate lost entirely is heavily penalised rather than infinite, so
            // one stray bin does not rule a threshold out.
            kl += a * (a / b.max(1e-12)).ln();
        }
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_trims_tails() {
        let mut h = vec![0u64; 100];
        h[0] = 1;
        h[50] = 9998;
        h[99] = 1;
        assert_eq!(percentile_bins(&h, 99.99), (50, 50));
        assert_eq!(percentile_bins(&h, 100.0), (0, 99));
    }

    #[test]
    fn entropy_clips_a_long_tail() {
        // Mass in the first quarter and a thin tail to the end: the threshold lands well
        // before the end of the histogram, at or after the mass.
        let mut h = vec![0u64; BINS];
        for (i, c) in h.iter_mut().enumerate().take(BINS / 4) {
            *c = 1000 + (i % 7) as u64;
        }
        h[BINS - 1] = 1;
        let t = entropy_threshold_bin(&h, 128);
        assert!((BINS / 4 - 1..BINS - 1).contains(&t), "{t}");
    }
}
