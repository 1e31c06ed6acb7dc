//! Latency statistics over repeated runs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencyStats {
    pub runs: usize,
    pub warmup: usize,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub std_ms: f64,
    /// Every timed run, in order, so reports can draw the distribution.
    pub samples_ms: Vec<f64>,
}

/// Percentile with linear interpolation between closest ranks (numpy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl LatencyStats {
    pub fn from_samples(samples_ms: Vec<f64>, warmup: usize) -> LatencyStats {
        let mut sorted = samples_ms.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let n = sorted.len().max(1) as f64;
        let mean = sorted.iter().sum::<f64>() / n;
        let var = sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        LatencyStats {
            runs: samples_ms.len(),
            warmup,
            min_ms: sorted.first().copied().unwrap_or(f64::NAN),
            mean_ms: mean,
            p50_ms: percentile(&sorted, 0.50),
            p90_ms: percentile(&sorted, 0.90),
            p99_ms: percentile(&sorted, 0.99),
            max_ms: sorted.last().copied().unwrap_or(f64::NAN),
            std_ms: var.sqrt(),
            samples_ms,
        }
    }

    pub fn throughput_per_s(&self) -> f64 {
        1e3 / self.mean_ms
    }
}

/// The ratio of two interleaved contestants (b over a) as the median, over the blocks they
/// ran in turn, of the ratio of their block medians. Each block's ratio compares runs made
/// within moments of each other, so drift of a shared machine (other jobs, clocks) cancels;
/// the median over blocks discards the blocks a burst of noise hit.
pub fn paired_ratio(a: &[f64], b: &[f64], block: usize) -> f64 {
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|x, y| x.total_cmp(y));
        percentile(&s, 0.5)
    };
    let ratios: Vec<f64> = a
        .chunks(block.max(1))
        .zip(b.chunks(block.max(1)))
        .map(|(x, y)| median(y) / median(x))
        .collect();
    median(&ratios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy() {
        // numpy.percentile([1,2,3,4,10], [50,90,99]) = [3, 7.6, 9.76]
        let s = LatencyStats::from_samples(vec![10.0, 1.0, 3.0, 2.0, 4.0], 2);
        assert_eq!(s.p50_ms, 3.0);
        assert!((s.p90_ms - 7.6).abs() < 1e-12);
        assert!((s.p99_ms - 9.76).abs() < 1e-12);
        assert_eq!((s.min_ms, s.max_ms, s.mean_ms), (1.0, 10.0, 4.0));
        assert!((s.std_ms - 10f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.samples_ms[0], 10.0, "samples keep run order");
    }

    #[test]
    fn paired_ratio_cancels_drift_between_blocks() {
        // b is 10 % slower than a in every block, while the machine slows down 3x over time.
        let a: Vec<f64> = (0..30).map(|i| 1.0 + (i / 10) as f64).collect();
        let b: Vec<f64> = a.iter().map(|x| x * 1.1).collect();
        assert!((paired_ratio(&a, &b, 10) - 1.1).abs() < 1e-12);
        // One block hit by a burst on b only does not move the median.
        let mut b2 = b.clone();
        for x in &mut b2[10..20] {
            *x *= 5.0;
        }
        assert!((paired_ratio(&a, &b2, 10) - 1.1).abs() < 1e-12);
    }
}
