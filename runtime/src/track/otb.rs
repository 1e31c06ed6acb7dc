//! OTB-layout sequences (`NAME/img/*.jpg`, `NAME/groundtruth_rect.txt`, optional GOT-10k style
//! `NAME/absence.label`) and the evaluation of a tracker over a folder of them.
//!
//! `groundtruth_rect.txt` holds one `x,y,w,h` per frame in OTB's 1-based pixel coordinates
//! (fields separated by commas, tabs or spaces); in memory boxes are 0-based (`x − 1`).

use super::metrics::{self, Rect, TrackMetrics};
use super::tracker::{Tracker, TrackerModel, TrackerParams};
use crate::error::{Result, RuntimeError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn data_err(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Data {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Read `groundtruth_rect.txt` into 0-based boxes. Errors name the file and line.
pub fn read_groundtruth(path: &Path) -> Result<Vec<Rect>> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: Vec<f32> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<f32>()
                    .map_err(|_| data_err(path, format!("line {}: '{s}' is not a number", i + 1)))
            })
            .collect::<Result<_>>()?;
        if v.len() != 4 {
            return Err(data_err(
                path,
                format!("line {}: expected x,y,w,h, found {} fields", i + 1, v.len()),
            ));
        }
        out.push([v[0] - 1.0, v[1] - 1.0, v[2], v[3]]);
    }
    if out.is_empty() {
        return Err(data_err(path, "no boxes"));
    }
    Ok(out)
}

/// One sequence on disk.
#[derive(Debug, Clone)]
pub struct OtbSequence {
    pub name: String,
    pub dir: PathBuf,
    pub frames: Vec<PathBuf>,
    pub truth: Vec<Rect>,
    pub absent: Vec<bool>,
}

impl OtbSequence {
    pub fn open(dir: &Path) -> Result<OtbSequence> {
        let gt = dir.join("groundtruth_rect.txt");
        let truth = read_groundtruth(&gt)?;
        let img = dir.join("img");
        let mut frames: Vec<PathBuf> = std::fs::read_dir(&img)
            .map_err(|e| RuntimeError::io(&img, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
                    .unwrap_or(false)
            })
            .collect();
        frames.sort();
        if frames.is_empty() {
            return Err(data_err(&img, "no .jpg/.png frames"));
        }
        if frames.len() != truth.len() {
            return Err(data_err(
                &gt,
                format!(
                    "{} boxes for {} frames in {}",
                    truth.len(),
                    frames.len(),
                    img.display()
                ),
            ));
        }
        let absent = match std::fs::read_to_string(dir.join("absence.label")) {
            Ok(t) => t.lines().map(|l| l.trim() == "1").collect(),
            Err(_) => vec![false; truth.len()],
        };
        Ok(OtbSequence {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
            dir: dir.to_path_buf(),
            frames,
            truth,
            absent,
        })
    }
}

/// The sequences of a data set folder: the folder itself when it is one sequence, else every
/// sub-folder holding a `groundtruth_rect.txt`, sorted by name.
pub fn list_sequences(root: &Path) -> Result<Vec<PathBuf>> {
    if root.join("groundtruth_rect.txt").is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| RuntimeError::io(root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("groundtruth_rect.txt").is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(data_err(
            root,
            "no OTB sequences here (folders with img/ and groundtruth_rect.txt)",
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct SequenceResult {
    pub name: String,
    pub frames: usize,
    #[serde(flatten)]
    pub metrics: TrackMetrics,
    /// Frames per second of the tracking loop (crop + template/search + post-processing;
    /// decoding the JPEG files not included).
    pub fps: f64,
    pub mean_search_ms: f64,
    pub template_ms: f64,
    /// Frames the tracker spent in the lost state.
    pub lost_frames: usize,
    pub corrupt_frames: usize,
    /// The predicted boxes (0-based `[x, y, w, h]`).
    #[serde(skip)]
    pub boxes: Vec<Rect>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub dataset: String,
    pub threads: usize,
    pub params: TrackerParams,
    pub sequences: Vec<SequenceResult>,
    pub overall: TrackMetrics,
    /// Loop frames per second over all frames.
    pub fps: f64,
    pub mean_search_ms: f64,
    pub mean_template_ms: f64,
}

/// Track one sequence from its first box.
pub fn run_sequence(
    model: &TrackerModel,
    params: &TrackerParams,
    seq: &OtbSequence,
) -> Result<SequenceResult> {
    let mut tracker = Tracker::new(model, params.clone());
    let mut boxes = Vec::with_capacity(seq.frames.len());
    let (mut loop_s, mut search_ms, mut template_ms) = (0.0, 0.0, 0.0);
    let (mut lost, mut corrupt, mut tracked) = (0, 0, 0usize);
    for (i, f) in seq.frames.iter().enumerate() {
        let img = match crate::input::open_image(f) {
            Ok(i) => i.to_rgb8(),
            Err(e) => {
                if i == 0 {
                    return Err(e);
                }
                corrupt += 1;
                log::warn!("{}: skipped ({e})", f.display());
                boxes.push(boxes.last().copied().unwrap_or([f32::NAN; 4]));
                continue;
            }
        };
        let t0 = Instant::now();
        let r = if i == 0 {
            tracker.init(&img, seq.truth[0]).map_err(|e| {
                data_err(
                    &seq.dir.join("groundtruth_rect.txt"),
                    format!("line 1: {e}"),
                )
            })?
        } else {
            tracker.update(&img)?
        };
        loop_s += t0.elapsed().as_secs_f64();
        if i == 0 {
            template_ms = r.template_ms;
        } else {
            search_ms += r.search_ms;
            tracked += 1;
        }
        if r.state == super::tracker::TrackState::Lost {
            lost += 1;
        }
        boxes.push(r.rect);
    }
    let metrics = metrics::score(&boxes, &seq.truth, &seq.absent);
    Ok(SequenceResult {
        name: seq.name.clone(),
        frames: seq.frames.len(),
        metrics,
        fps: boxes.len() as f64 / loop_s.max(1e-9),
        mean_search_ms: search_ms / tracked.max(1) as f64,
        template_ms,
        lost_frames: lost,
        corrupt_frames: corrupt,
        boxes,
    })
}

/// Evaluate a tracker on every sequence under `root`.
pub fn evaluate(
    model_path: &Path,
    root: &Path,
    params: &TrackerParams,
    threads: usize,
    progress: bool,
) -> Result<EvalReport> {
    let model = TrackerModel::load(model_path, params.scales.max(1), threads)?;
    let dirs = list_sequences(root)?;
    let mut sequences = Vec::new();
    for (k, d) in dirs.iter().enumerate() {
        let seq = OtbSequence::open(d)?;
        let r = run_sequence(&model, params, &seq)?;
        if progress {
            eprintln!(
                "[{}/{}] {:<24} {:>4} frames  AUC {:.3}  P@20 {:.3}  {:.1} fps",
                k + 1,
                dirs.len(),
                r.name,
                r.frames,
                r.metrics.auc,
                r.metrics.precision_20px,
                r.fps
            );
        }
        sequences.push(r);
    }
    let overall = metrics::mean(
        &sequences
            .iter()
            .map(|s| s.metrics.clone())
            .collect::<Vec<_>>(),
    );
    let frames: usize = sequences.iter().map(|s| s.frames).sum();
    let secs: f64 = sequences.iter().map(|s| s.frames as f64 / s.fps).sum();
    let n = sequences.len().max(1) as f64;
    Ok(EvalReport {
        model: model_path.display().to_string(),
        dataset: root.display().to_string(),
        threads,
        params: params.clone(),
        overall,
        fps: frames as f64 / secs.max(1e-9),
        mean_search_ms: sequences.iter().map(|s| s.mean_search_ms).sum::<f64>() / n,
        mean_template_ms: sequences.iter().map(|s| s.template_ms).sum::<f64>() / n,
        sequences,
    })
}

/// The report as a text table.
pub fn render(r: &EvalReport) -> String {
    let mut s = format!(
        "{} on {} ({} threads)\n{:<24} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9}\n",
        r.model,
        r.dataset,
        r.threads,
        "sequence",
        "frames",
        "AUC",
        "P@20",
        "AO",
        "SR0.5",
        "fps",
        "search ms"
    );
    for q in &r.sequences {
        s += &format!(
            "{:<24} {:>6} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>7.1} {:>9.2}\n",
            q.name,
            q.frames,
            q.metrics.auc,
            q.metrics.precision_20px,
            q.metrics.average_overlap,
            q.metrics.success_rate_50,
            q.fps,
            q.mean_search_ms
        );
    }
    s += &format!(
        "{:<24} {:>6} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>7.1} {:>9.2}\n",
        "overall",
        r.overall.frames,
        r.overall.auc,
        r.overall.precision_20px,
        r.overall.average_overlap,
        r.overall.success_rate_50,
        r.fps,
        r.mean_search_ms
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groundtruth_is_one_based_and_errors_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("groundtruth_rect.txt");
        std::fs::write(&p, "11,21,30,40\n5\t6\t7\t8\n").unwrap();
        assert_eq!(
            read_groundtruth(&p).unwrap(),
            vec![[10.0, 20.0, 30.0, 40.0], [4.0, 5.0, 7.0, 8.0]]
        );
        std::fs::write(&p, "1,2,3,4\n1,2,x,4\n").unwrap();
        let e = read_groundtruth(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("'x'"), "{e}");
    }
}
