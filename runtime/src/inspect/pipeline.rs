//! The loop: frames in, verdicts out, to the terminal, the live view and the reject pin.

use super::{overlay, Inspector};
use crate::error::Result;
use crate::io::reject::RejectWorker;
use crate::io::source::FrameSource;
use crate::stats::percentile;
use serde::Serialize;
use std::time::{Duration, Instant};

pub use crate::view::View;

#[derive(Debug, Clone)]
pub struct InspectConfig {
    /// Raw-score threshold replacing the stored one.
    pub threshold: Option<f64>,
    /// Wait between frames (pace a folder like a conveyor).
    pub interval: Option<Duration>,
    /// Stop after this many frames (a looped source runs forever otherwise).
    pub max_frames: Option<u64>,
    /// Save each overlay here as `<index>.jpg`.
    pub save_overlays: Option<std::path::PathBuf>,
    pub jpeg_quality: u8,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig {
            threshold: None,
            interval: None,
            max_frames: None,
            save_overlays: None,
            jpeg_quality: 80,
        }
    }
}

/// One frame's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub index: u64,
    pub label: String,
    pub score: f64,
    pub normalised: f64,
    pub verdict: &'static str,
    pub infer_ms: f64,
}

/// A looped line over a folder of broken files would otherwise grow this list forever.
pub const MAX_UNREADABLE_LISTED: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct InspectSummary {
    pub detector: String,
    pub source: String,
    pub threshold: f64,
    pub frames: u64,
    pub failed: u64,
    pub passed: u64,
    /// Frames that could not be read or decoded (skipped).
    pub bad_frames: u64,
    /// Why, one line per file (the first 1,000): unreadable, truncated, too large, or left
    /// out of the folder walk (not a regular file, folder not readable).
    pub unreadable: Vec<String>,
    pub infer_ms_p50: f64,
    pub infer_ms_p90: f64,
    pub rejects_pulsed: u64,
    pub rejects_dropped: u64,
    pub records: Vec<Record>,
}

/// Run the line until the source ends (or `max_frames`). `on_record` sees each verdict as it
/// happens (the binary prints it).
pub fn run(
    inspector: &Inspector,
    source: &mut dyn FrameSource,
    cfg: &InspectConfig,
    view: Option<&dyn View>,
    reject: Option<&RejectWorker>,
    mut on_record: impl FnMut(&Record),
) -> Result<InspectSummary> {
    let mut threshold = cfg.threshold.unwrap_or(inspector.meta.image.threshold);
    let mut records = Vec::new();
    let mut bad = 0u64;
    let mut unreadable = Vec::new();
    let mut times = Vec::new();
    let started = Instant::now();
    if let Some(dir) = &cfg.save_overlays {
        std::fs::create_dir_all(dir).map_err(|e| crate::RuntimeError::io(dir, e))?;
    }
    loop {
        if cfg
            .max_frames
            .is_some_and(|m| records.len() as u64 + bad >= m)
        {
            break;
        }
        if let Some(v) = view {
            while let Some((name, body)) = v.next_action() {
                match (name.as_str(), body.get("value").and_then(|x| x.as_f64())) {
                    ("threshold", Some(t)) if t.is_finite() => {
                        log::info!("threshold set to {t} from the live view");
                        threshold = t;
                    }
                    _ => log::warn!("live view: ignored action '{name}' {body}"),
                }
            }
        }
        let t_frame = Instant::now();
        let frame = match source.next_frame() {
            None => break,
            Some(Err(e)) => {
                log::warn!("skipping a frame: {e}");
                bad += 1;
                if unreadable.len() < MAX_UNREADABLE_LISTED {
                    unreadable.push(e.to_string());
                }
                continue;
            }
            Some(Ok(f)) => f,
        };
        let insp = inspector.inspect(&frame.image, threshold)?;
        times.push(insp.infer_ms);
        if insp.fail {
            if let Some(r) = reject {
                r.reject();
            }
        }
        let rec = Record {
            index: frame.index,
            label: frame.label.clone(),
            score: insp.score,
            normalised: inspector.meta.image.normalise(insp.score),
            verdict: if insp.fail { "FAIL" } else { "PASS" },
            infer_ms: insp.infer_ms,
        };
        on_record(&rec);
        let failed = records
            .iter()
            .filter(|r: &&Record| r.verdict == "FAIL")
            .count()
            + insp.fail as usize;
        // The state first: a viewer that sees the frame can read what it shows.
        if let Some(v) = view {
            v.set_state(serde_json::json!({
                "frame": rec.index,
                "image": rec.label,
                "verdict": rec.verdict,
                "score": rec.score,
                "normalised": rec.normalised,
                "threshold": threshold,
                "infer_ms": rec.infer_ms,
                "fps": (records.len() + 1) as f64 / started.elapsed().as_secs_f64().max(1e-9),
                "failed": failed,
                "inspected": records.len() + 1,
                "bad_frames": bad,
                "rejects": reject.map(|r| r.counts.pulsed.load(std::sync::atomic::Ordering::Relaxed)),
            }));
        }
        let wants_view = view.is_some_and(|v| v.has_viewers());
        if wants_view || cfg.save_overlays.is_some() {
            let img = overlay(&frame.image, &insp, inspector.meta.map.as_ref());
            if let Ok(jpeg) = crate::view::encode_jpeg(&img, cfg.jpeg_quality) {
                if let Some(dir) = &cfg.save_overlays {
                    let p = dir.join(format!("{:06}.jpg", frame.index));
                    crate::fsutil::write_atomic(&p, &jpeg)?;
                }
                if wants_view {
                    if let Some(v) = view {
                        v.publish_jpeg(jpeg);
                    }
                }
            }
        }
        records.push(rec);
        if let Some(iv) = cfg.interval {
            let spent = t_frame.elapsed();
            if spent < iv {
                std::thread::sleep(iv - spent);
            }
        }
    }
    let failed = records.iter().filter(|r| r.verdict == "FAIL").count() as u64;
    let (pulsed, dropped) = reject
        .map(|r| {
            use std::sync::atomic::Ordering::Relaxed;
            (
                r.counts.pulsed.load(Relaxed),
                r.counts.dropped.load(Relaxed),
            )
        })
        .unwrap_or((0, 0));
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    Ok(InspectSummary {
        detector: inspector.model.path.display().to_string(),
        source: source.describe(),
        threshold,
        frames: records.len() as u64,
        failed,
        passed: records.len() as u64 - failed,
        bad_frames: bad,
        unreadable,
        infer_ms_p50: percentile(&sorted, 0.5),
        infer_ms_p90: percentile(&sorted, 0.9),
        rejects_pulsed: pulsed,
        rejects_dropped: dropped,
        records,
    })
}
