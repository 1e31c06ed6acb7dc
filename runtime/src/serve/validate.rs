//! The pipelines' checks of action values, run before an action is queued (400 otherwise).

use super::{Action, Validator};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The frame size the tracker's boxes must fit in, updated by the pipeline as frames come
/// (0 × 0 until the first frame: then only the generic bounds apply).
#[derive(Debug, Default)]
pub struct FrameSize(AtomicU64);

impl FrameSize {
    pub fn set(&self, width: u32, height: u32) {
        self.0
            .store(((width as u64) << 32) | height as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> (u32, u32) {
        let v = self.0.load(Ordering::Relaxed);
        ((v >> 32) as u32, v as u32)
    }
}

/// Largest frame side accepted for a box before the first frame is known.
const MAX_SIDE: f64 = 16384.0;

/// `init` boxes `{x, y, w, h}`: finite numbers, at least 2 px wide and high, inside the frame.
pub fn tracker_init(frame: Arc<FrameSize>) -> Validator {
    Arc::new(move |a: &Action| {
        if a.name != "init" {
            return Err("the tracker takes only 'init' actions".into());
        }
        let num = |k: &str| -> Result<f64, String> {
            let v = a
                .body
                .get(k)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| format!("'{k}' must be a number"))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(format!("'{k}' must be finite"))
            }
        };
        let (x, y, w, h) = (num("x")?, num("y")?, num("w")?, num("h")?);
        let (fw, fh) = match frame.get() {
            (0, _) | (_, 0) => (MAX_SIDE, MAX_SIDE),
            (fw, fh) => (fw as f64, fh as f64),
        };
        if w < 2.0 || h < 2.0 {
            return Err(format!("box {w}x{h} is smaller than 2x2 pixels"));
        }
        if x < 0.0 || y < 0.0 || x + w > fw || y + h > fh {
            return Err(format!(
                "box ({x}, {y}, {w}, {h}) is not inside the {fw}x{fh} frame"
            ));
        }
        Ok(())
    })
}

/// `threshold` actions `{value}`: a finite raw score in `[low, high]` (the inspection line
/// declares the range from its detector's calibration).
pub fn threshold_in(low: f64, high: f64) -> Validator {
    Arc::new(move |a: &Action| {
        if a.name != "threshold" {
            return Err("the inspection line takes only 'threshold' actions".into());
        }
        let v = a
            .body
            .get("value")
            .and_then(|v| v.as_f64())
            .ok_or("'value' must be a number")?;
        if !(v.is_finite() && (low..=high).contains(&v)) {
            return Err(format!("threshold {v} is outside [{low}, {high}]"));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn act(name: &str, body: serde_json::Value) -> Action {
        Action {
            name: name.into(),
            body,
        }
    }

    #[test]
    fn boxes_must_fit_the_frame() {
        let frame = Arc::new(FrameSize::default());
        let v = tracker_init(frame.clone());
        assert!(v(&act("init", json!({"x": 10, "y": 10, "w": 40, "h": 30}))).is_ok());
        assert!(v(&act("init", json!({"x": 0, "y": 0, "w": 1e30, "h": 1e30}))).is_err());
        frame.set(320, 240);
        assert!(v(&act("init", json!({"x": 300, "y": 10, "w": 40, "h": 30}))).is_err());
        assert!(v(&act("init", json!({"x": -1, "y": 10, "w": 40, "h": 30}))).is_err());
        assert!(v(&act("init", json!({"x": 1, "y": 1, "w": 1, "h": 30}))).is_err());
        assert!(v(&act("init", json!({"x": 1, "y": 1, "w": "a", "h": 30}))).is_err());
        assert!(v(&act("init", json!(null))).is_err());
        assert!(v(&act("reset", json!({}))).is_err());
        assert!(v(&act("init", json!({"x": 280, "y": 200, "w": 40, "h": 40}))).is_ok());
    }

    #[test]
    fn thresholds_stay_in_their_declared_range() {
        let v = threshold_in(1.0, 300.0);
        assert!(v(&act("threshold", json!({"value": 30.0}))).is_ok());
        for bad in [
            json!({"value": 1e308}),
            json!({"value": -5}),
            json!({}),
            json!({"value": "x"}),
        ] {
            assert!(v(&act("threshold", bad.clone())).is_err(), "{bad}");
        }
    }
}
