//! Tracking metrics: OTB's success curve and AUC, precision at 20 px, GOT-10k's average
//! overlap (AO) and success rate at 0.5 (SR0.5).
//!
//! Boxes are `[x, y, w, h]` (left, top, width, height) in pixels. Conventions:
//! - success curve: for each overlap threshold `t` in `0, 0.05, …, 1` (21 values), the share of
//!   frames whose IoU is **greater than** `t` (OTB toolkit); AUC is the mean of the curve;
//! - precision@20: share of frames whose centre error is at most 20 px;
//! - AO: mean IoU; SR0.5: share of frames with IoU > 0.5;
//! - frames where the target is absent (`absence.label`, or a ground-truth box with no area or
//!   NaN) are left out, as GOT-10k does;
//! - over a data set, curves and rates are averaged over sequences (each sequence weighs the
//!   same, as OTB's overall plots do).

use serde::Serialize;

pub type Rect = [f32; 4];

/// Number of overlap thresholds of the success curve.
pub const SUCCESS_STEPS: usize = 21;

pub fn iou(a: &Rect, b: &Rect) -> f32 {
    let (ax2, ay2) = (a[0] + a[2], a[1] + a[3]);
    let (bx2, by2) = (b[0] + b[2], b[1] + b[3]);
    let iw = (ax2.min(bx2) - a[0].max(b[0])).max(0.0);
    let ih = (ay2.min(by2) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = a[2].max(0.0) * a[3].max(0.0) + b[2].max(0.0) * b[3].max(0.0) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

pub fn centre_error(a: &Rect, b: &Rect) -> f32 {
    let dx = (a[0] + a[2] / 2.0) - (b[0] + b[2] / 2.0);
    let dy = (a[1] + a[3] / 2.0) - (b[1] + b[3] / 2.0);
    (dx * dx + dy * dy).sqrt()
}

fn valid(r: &Rect) -> bool {
    r.iter().all(|v| v.is_finite()) && r[2] > 0.0 && r[3] > 0.0
}

/// Metrics of one sequence (or the mean over sequences).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackMetrics {
    /// Frames scored (target present).
    pub frames: usize,
    /// Success rate at thresholds 0, 0.05, …, 1.
    pub success_curve: Vec<f64>,
    pub auc: f64,
    pub precision_20px: f64,
    pub average_overlap: f64,
    pub success_rate_50: f64,
    pub mean_centre_error_px: f64,
}

/// Score predicted boxes against ground truth; `absent[i]` true leaves frame `i` out.
/// The first frame (the initialisation) is scored like any other, as in OTB's OPE.
pub fn score(pred: &[Rect], truth: &[Rect], absent: &[bool]) -> TrackMetrics {
    let mut ious = Vec::new();
    let mut errs = Vec::new();
    for (i, (p, t)) in pred.iter().zip(truth).enumerate() {
        if absent.get(i).copied().unwrap_or(false) || !valid(t) {
            continue;
        }
        if valid(p) {
            ious.push(iou(p, t) as f64);
            errs.push(centre_error(p, t) as f64);
        } else {
            ious.push(0.0);
            errs.push(f64::INFINITY);
        }
    }
    let n = ious.len();
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let success_curve: Vec<f64> = (0..SUCCESS_STEPS)
        .map(|k| {
            let t = k as f64 / (SUCCESS_STEPS - 1) as f64;
            share(ious.iter().filter(|&&v| v > t).count())
        })
        .collect();
    let auc = success_curve.iter().sum::<f64>() / SUCCESS_STEPS as f64;
    let finite: Vec<f64> = errs.iter().copied().filter(|e| e.is_finite()).collect();
    TrackMetrics {
        frames: n,
        auc,
        precision_20px: share(errs.iter().filter(|&&e| e <= 20.0).count()),
        average_overlap: if n == 0 {
            0.0
        } else {
            ious.iter().sum::<f64>() / n as f64
        },
        success_rate_50: share(ious.iter().filter(|&&v| v > 0.5).count()),
        mean_centre_error_px: if finite.is_empty() {
            f64::NAN
        } else {
            finite.iter().sum::<f64>() / finite.len() as f64
        },
        success_curve,
    }
}

/// The per-sequence mean (each sequence weighs the same).
pub fn mean(all: &[TrackMetrics]) -> TrackMetrics {
    let k = all.len().max(1) as f64;
    let avg = |f: fn(&TrackMetrics) -> f64| all.iter().map(f).sum::<f64>() / k;
    TrackMetrics {
        frames: all.iter().map(|m| m.frames).sum(),
        success_curve: (0..SUCCESS_STEPS)
            .map(|i| {
                all.iter()
                    .map(|m| m.success_curve.get(i).copied().unwrap_or(0.0))
                    .sum::<f64>()
                    / k
            })
            .collect(),
        auc: avg(|m| m.auc),
        precision_20px: avg(|m| m.precision_20px),
        average_overlap: avg(|m| m.average_overlap),
        success_rate_50: avg(|m| m.success_rate_50),
        mean_centre_error_px: avg(|m| m.mean_centre_error_px),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_by_hand() {
        // Two 10×10 boxes overlapping in a 5×10 strip: 50 / (100 + 100 − 50) = 1/3.
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 5.0, 5.0]), 0.0);
        assert!((iou(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 4.0]) - 1.0).abs() < 1e-6);
        // 4×4 inside 8×8: 16 / 64.
        assert!((iou(&[0.0, 0.0, 8.0, 8.0], &[2.0, 2.0, 4.0, 4.0]) - 0.25).abs() < 1e-6);
        assert_eq!(
            centre_error(&[0.0, 0.0, 10.0, 10.0], &[3.0, 4.0, 10.0, 10.0]),
            5.0
        );
    }

    #[test]
    fn success_precision_ao_by_hand() {
        let t = [0.0, 0.0, 10.0, 10.0];
        // IoUs 1, 1/3, 0 (and one absent frame that must not count); centre errors 0, 5, 30.
        let pred = [
            t,
            [5.0, 0.0, 10.0, 10.0],
            [30.0, 0.0, 10.0, 10.0],
            [99.0, 99.0, 1.0, 1.0],
        ];
        let truth = [t, t, t, t];
        let m = score(&pred, &truth, &[false, false, false, true]);
        assert_eq!(m.frames, 3);
        // Thresholds 0 … 0.30: IoU 1 and 1/3 pass (2/3); 0.35 … 0.95: only 1 (1/3); 1.0: none.
        // AUC = (7·2/3 + 13·1/3 + 0) / 21 = (14/3 + 13/3) / 21 = 9/21.
        assert!((m.success_curve[0] - 2.0 / 3.0).abs() < 1e-9);
        assert!((m.success_curve[6] - 2.0 / 3.0).abs() < 1e-9);
        assert!((m.success_curve[7] - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.success_curve[20], 0.0);
        assert!((m.auc - 9.0 / 21.0).abs() < 1e-9, "{}", m.auc);
        assert!((m.precision_20px - 2.0 / 3.0).abs() < 1e-9);
        assert!((m.average_overlap - (1.0 + 1.0 / 3.0) / 3.0).abs() < 1e-6);
        assert!((m.success_rate_50 - 1.0 / 3.0).abs() < 1e-9);
        assert!((m.mean_centre_error_px - 35.0 / 3.0).abs() < 1e-5);
        let both = mean(&[m.clone(), score(&[t], &[t], &[])]);
        assert!((both.auc - (9.0 / 21.0 + 20.0 / 21.0) / 2.0).abs() < 1e-9);
        assert_eq!(both.frames, 4);
    }

    #[test]
    fn a_lost_prediction_scores_zero() {
        let t = [0.0, 0.0, 10.0, 10.0];
        let m = score(&[[f32::NAN; 4]], &[t], &[]);
        assert_eq!((m.frames, m.auc, m.precision_20px), (1, 0.0, 0.0));
    }
}
