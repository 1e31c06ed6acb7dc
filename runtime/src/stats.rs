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
}
