//! How close a compressed model's outputs stay to the original's on the same samples: cosine
//! of the output vectors, top-1 agreement, largest difference, and accuracy where the data
//! has labels. Top-1 is the arg-max over a sample's whole (flattened) first output, i.e. a
//! classifier's class.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Fidelity {
    pub samples: usize,
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// Share of samples whose top-1 class is the original's.
    pub top1_agreement: f64,
    pub max_abs_diff: f64,
    /// Accuracy of the original and of the candidate against the data's labels.
    pub accuracy_reference: Option<f64>,
    pub accuracy: Option<f64>,
}

pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        // NaN never wins, so a broken output does not look like class 0 by accident.
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 && bb == 0.0 {
        1.0
    } else if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Accuracy of per-sample outputs against labels.
pub fn accuracy(outputs: &[Vec<f32>], labels: &[usize]) -> f64 {
    if outputs.is_empty() {
        return 0.0;
    }
    let hits = outputs
        .iter()
        .zip(labels)
        .filter(|(o, &l)| argmax(o) == l)
        .count();
    hits as f64 / outputs.len() as f64
}

pub fn compare(
    reference: &[Vec<f32>],
    candidate: &[Vec<f32>],
    labels: Option<&[usize]>,
) -> Fidelity {
    let n = reference.len().min(candidate.len());
    let mut sum_cos = 0.0;
    let mut min_cos = f64::INFINITY;
    let mut agree = 0usize;
    let mut max_abs = 0.0f64;
    for (r, c) in reference.iter().zip(candidate) {
        let cs = cosine(r, c);
        sum_cos += cs;
        min_cos = min_cos.min(cs);
        if argmax(r) == argmax(c) {
            agree += 1;
        }
        for (&x, &y) in r.iter().zip(c) {
            let d = (x as f64 - y as f64).abs();
            max_abs = if d.is_nan() { f64::MAX } else { max_abs.max(d) };
        }
    }
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Fidelity {
        samples: n,
        mean_cosine: if n == 0 { 0.0 } else { sum_cos / n as f64 },
        min_cosine: if n == 0 { 0.0 } else { min_cos },
        top1_agreement: share(agree),
        max_abs_diff: max_abs,
        accuracy_reference: labels.map(|l| accuracy(reference, l)),
        accuracy: labels.map(|l| accuracy(candidate, l)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_and_cosine() {
        let r = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let c = vec![vec![2.0, 0.0], vec![1.0, 0.5]];
        let f = compare(&r, &c, Some(&[0, 1]));
        assert_eq!(f.top1_agreement, 0.5);
        assert!((f.mean_cosine - (1.0 + 0.5 / 1.25f64.sqrt()) / 2.0).abs() < 1e-12);
        assert_eq!(f.accuracy_reference, Some(1.0));
        assert_eq!(f.accuracy, Some(0.5));
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }
}
