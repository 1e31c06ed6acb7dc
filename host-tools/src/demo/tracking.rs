//! The tracking part of `edgeslim demo`: the committed zoo tracker (no training) pruned,
//! both benchmarked with tract side by side, both evaluated on freshly generated OTB-layout
//! sequences, and a strip of annotated frames, all into the demo's report.
//!
//! Steps:
//! 1. write `SEQUENCES` sequences of `FRAMES` frames (seed 7, every generator effect on);
//! 2. prune `template.onnx` and `search.onnx` with the same ratio and criterion (the two
//!    backbones hold the same weights, so they lose the same channels; the 48 kernel channels
//!    between the graphs are kept), timing each graph before and after with tract in
//!    interleaved runs (`report.json`/`index.html` per graph);
//! 3. evaluate original and pruned with the board runtime's tracking loop and the OTB/GOT-10k
//!    metrics, next to a tracker that never moves;
//! 4. draw ground truth, original and pruned boxes into a few frames of one sequence (PNG).

use crate::data::tracking::{write_otb_sequence_with, Photos, SequenceConfig};
use crate::onnx::{OnnxModel, SaveOptions};
use crate::prune::{self, Criterion, PruneOptions};
use crate::report::esc;
use crate::{Error, Result};
use edgeslim_runtime::track::draw::draw_rect;
use edgeslim_runtime::track::otb::{self, EvalReport, OtbSequence};
use edgeslim_runtime::track::{metrics, Rect, TrackMetrics, TrackerParams};
use edgeslim_runtime::InputShape;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Generated sequences and their length (the same seed as `docs/results/pruning-tracker.sh`).
pub const SEQUENCES: usize = 4;
pub const FRAMES: usize = 60;
pub const SEED: u64 = 7;
/// Channels removed from every prunable group, ranked by BatchNorm |γ| (the criterion that
/// holds the tracker's accuracy best without fine-tuning; docs/results/tracking.md).
pub const RATIO: f64 = 0.25;
pub const CRITERION: Criterion = Criterion::Bn;
/// Frames in the annotated strip.
pub const CLIP_FRAMES: usize = 6;

/// One graph of the tracker before and after pruning.
#[derive(Debug, Clone, Serialize)]
pub struct GraphRow {
    pub graph: String,
    /// The shape the graph was analysed and timed at.
    pub input_shape: String,
    pub params_before: u64,
    pub params_after: u64,
    pub macs_before: u64,
    pub macs_after: u64,
    /// tract medians of interleaved runs.
    pub tract_ms_before: f64,
    pub tract_ms_after: f64,
    pub speedup: f64,
    pub runs: usize,
    /// Mean cosine between original and pruned outputs on seeded random inputs.
    pub output_cosine: f64,
}

/// The tracking metrics of one tracker.
#[derive(Debug, Clone, Serialize)]
pub struct TrackerRow {
    pub name: String,
    pub model: String,
    pub overall: TrackMetrics,
    /// Whole tracking loop (crops, both graphs, post-processing), frames per second.
    pub fps: f64,
    pub mean_search_ms: f64,
    pub mean_template_ms: f64,
    pub per_sequence_auc: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackingDemo {
    pub sequences: usize,
    pub frames: usize,
    pub seed: u64,
    pub ratio: f64,
    pub criterion: String,
    pub threads: usize,
    pub graphs: Vec<GraphRow>,
    pub original: TrackerRow,
    pub pruned: TrackerRow,
    pub never_move: TrackMetrics,
    /// The annotated frames, relative to the demo folder.
    pub clip: Vec<ClipFrame>,
    pub clip_sequence: String,
    #[serde(skip)]
    pub dir: PathBuf,
    /// Where the pruned tracker was written.
    pub pruned_dir: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClipFrame {
    pub file: String,
    pub frame: usize,
    pub iou_original: f64,
    pub iou_pruned: f64,
    /// The target is (nearly) out of view in this frame (`absence.label`; not scored).
    pub absent: bool,
}

/// The zoo tracker: `models/siamese-tracker` under the current folder, else in the source
/// tree this binary was built from.
pub fn default_tracker() -> Option<PathBuf> {
    [
        PathBuf::from("models/siamese-tracker"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/siamese-tracker"),
    ]
    .into_iter()
    .find(|p| p.join("template.onnx").is_file() && p.join("search.onnx").is_file())
}

fn prune_graph(
    src: &Path,
    dst: &Path,
    shape: Option<&str>,
    runs: usize,
    threads: usize,
    report_dir: &Path,
) -> Result<GraphRow> {
    let model = OnnxModel::load(src)?;
    let input_shapes: Vec<InputShape> = shape.map(|s| s.parse()).transpose()?.into_iter().collect();
    let opts = PruneOptions {
        ratio: RATIO,
        criterion: CRITERION,
        input_shapes,
        ..PruneOptions::default()
    };
    let outcome = prune::prune(&model, &opts, &[], None)?;
    outcome.model.save(dst, &SaveOptions::default())?;
    let measure = prune::report::MeasureOptions {
        runs,
        threads,
        inputs: Vec::new(),
        labels: None,
        inputs_description: String::new(),
    };
    let out = dst.display().to_string();
    let r = prune::report::build(&outcome, &opts, Some(&out), &measure, &|_| {})?;
    crate::report::write::prune(&r, report_dir)?;
    let lat = r
        .latency
        .as_ref()
        .ok_or_else(|| Error::Other("prune report without latency".into()))?;
    let cosine = r
        .fidelity
        .as_ref()
        .and_then(|f| f.outputs.first())
        .map(|o| o.cosine_mean)
        .unwrap_or(f64::NAN);
    Ok(GraphRow {
        graph: src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        input_shape: r.input_shapes.join(" "),
        params_before: r.totals.params_before,
        params_after: r.totals.params_after,
        macs_before: r.totals.macs_before,
        macs_after: r.totals.macs_after,
        tract_ms_before: lat.before_ms,
        tract_ms_after: lat.after_ms,
        speedup: lat.speedup,
        runs: lat.runs,
        output_cosine: cosine,
    })
}

fn row(name: &str, r: &EvalReport) -> TrackerRow {
    TrackerRow {
        name: name.into(),
        model: r.model.clone(),
        overall: r.overall.clone(),
        fps: r.fps,
        mean_search_ms: r.mean_search_ms,
        mean_template_ms: r.mean_template_ms,
        per_sequence_auc: r.sequences.iter().map(|s| s.metrics.auc).collect(),
    }
}

pub const COLOUR_TRUTH: [u8; 3] = [255, 255, 255];
pub const COLOUR_ORIGINAL: [u8; 3] = [0, 220, 0];
pub const COLOUR_PRUNED: [u8; 3] = [255, 0, 220];

/// Annotate `CLIP_FRAMES` evenly spaced frames of the sequence where original and pruned
/// differ most (the interesting one), as PNG files under `dir`.
fn clip(
    out_dir: &Path,
    dir: &Path,
    seqs: &[PathBuf],
    orig: &EvalReport,
    pruned: &EvalReport,
) -> Result<(String, Vec<ClipFrame>)> {
    let k = (0..seqs.len())
        .max_by(|&a, &b| {
            let d =
                |i: usize| (orig.sequences[i].metrics.auc - pruned.sequences[i].metrics.auc).abs();
            d(a).total_cmp(&d(b))
        })
        .unwrap_or(0);
    let seq = OtbSequence::open(&seqs[k])?;
    let (ob, pb) = (&orig.sequences[k].boxes, &pruned.sequences[k].boxes);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let n = seq.frames.len();
    let mut out = Vec::new();
    for j in 0..CLIP_FRAMES {
        let i = (j * (n - 1)) / (CLIP_FRAMES - 1).max(1);
        let mut img = edgeslim_runtime::input::open_image(&seq.frames[i])?.to_rgb8();
        draw_rect(&mut img, &seq.truth[i], COLOUR_TRUTH);
        let (o, p) = (ob.get(i).copied(), pb.get(i).copied());
        if let Some(p) = p {
            draw_rect(&mut img, &p, COLOUR_PRUNED);
        }
        if let Some(o) = o {
            draw_rect(&mut img, &o, COLOUR_ORIGINAL);
        }
        let path = dir.join(format!("{:04}.png", i + 1));
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Other(format!("{}: PNG encoding: {e}", path.display())))?;
        edgeslim_runtime::fsutil::write_atomic(&path, &bytes)?;
        let iou = |b: Option<Rect>| {
            b.filter(|b| b.iter().all(|v| v.is_finite()))
                .map(|b| metrics::iou(&b, &seq.truth[i]) as f64)
                .unwrap_or(0.0)
        };
        out.push(ClipFrame {
            file: path
                .strip_prefix(out_dir)
                .unwrap_or(&path)
                .display()
                .to_string(),
            frame: i + 1,
            iou_original: iou(o),
            iou_pruned: iou(p),
            absent: seq.absent.get(i).copied().unwrap_or(false),
        });
    }
    Ok((seq.name, out))
}

/// Run the tracking part into `out_dir/tracking/`.
pub fn run(
    tracker: &Path,
    out_dir: &Path,
    threads: usize,
    quick: bool,
    progress: &dyn Fn(&str),
) -> Result<TrackingDemo> {
    let dir = out_dir.join("tracking");
    let data = dir.join("sequences");
    std::fs::create_dir_all(&data).map_err(|e| Error::io(&data, e))?;
    progress(&format!(
        "siamese-tracker: generate {SEQUENCES} sequences × {FRAMES} frames (seed {SEED})"
    ));
    let photos = Photos::open(&crate::assets::Assets::open())?;
    let cfg = SequenceConfig::new(320, 240, FRAMES);
    for k in 0..SEQUENCES {
        let seed = SEED.wrapping_mul(1000).wrapping_add(k as u64);
        write_otb_sequence_with(&photos, &data, &format!("seq-{k:03}"), seed, &cfg)?;
    }
    progress(&format!(
        "siamese-tracker: prune both graphs ({} channels of every group by {}), time with tract",
        RATIO,
        CRITERION.as_str()
    ));
    let pruned_dir = dir.join("pruned");
    std::fs::create_dir_all(&pruned_dir).map_err(|e| Error::io(&pruned_dir, e))?;
    let runs = if quick { 10 } else { 40 };
    let template = prune_graph(
        &tracker.join("template.onnx"),
        &pruned_dir.join("template.onnx"),
        None,
        runs,
        threads,
        &dir.join("prune-template"),
    )?;
    let search = prune_graph(
        &tracker.join("search.onnx"),
        &pruned_dir.join("search.onnx"),
        Some("search=3,3,127,127"),
        runs,
        threads,
        &dir.join("prune-search"),
    )?;
    let params = TrackerParams::default();
    progress("siamese-tracker: evaluate original and pruned on the sequences");
    let orig = otb::evaluate(tracker, &data, &params, threads, false)?;
    let prn = otb::evaluate(&pruned_dir, &data, &params, threads, false)?;
    for (name, r) in [("original", &orig), ("pruned", &prn)] {
        let j = dir.join(format!("eval-{name}.json"));
        let bytes = serde_json::to_vec_pretty(r)
            .map_err(|e| Error::Other(format!("encoding {}: {e}", j.display())))?;
        edgeslim_runtime::fsutil::write_atomic(&j, &bytes)?;
    }
    let seqs = otb::list_sequences(&data)?;
    let mut still = Vec::new();
    for s in &seqs {
        let s = OtbSequence::open(s)?;
        still.push(metrics::score(
            &vec![s.truth[0]; s.truth.len()],
            &s.truth,
            &s.absent,
        ));
    }
    progress("siamese-tracker: annotate a strip of frames");
    let (clip_sequence, frames) = clip(out_dir, &dir.join("clip"), &seqs, &orig, &prn)?;
    let demo = TrackingDemo {
        sequences: SEQUENCES,
        frames: FRAMES,
        seed: SEED,
        ratio: RATIO,
        criterion: CRITERION.as_str().into(),
        threads,
        graphs: vec![template, search],
        original: row("original", &orig),
        pruned: row("pruned", &prn),
        never_move: metrics::mean(&still),
        clip: frames,
        clip_sequence,
        dir: dir.clone(),
        pruned_dir: pruned_dir.display().to_string(),
    };
    let j = dir.join("tracking.json");
    let bytes = serde_json::to_vec_pretty(&demo)
        .map_err(|e| Error::Other(format!("encoding {}: {e}", j.display())))?;
    edgeslim_runtime::fsutil::write_atomic(&j, &bytes)?;
    Ok(demo)
}

/// Standard base64 (for the frames embedded in the page, which stays one self-contained file).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn swatch(c: [u8; 3]) -> String {
    format!(
        "<span class=\"swatch\" style=\"background:rgb({},{},{});border:1px solid #888\"></span>",
        c[0], c[1], c[2]
    )
}

/// The report section: tables, the frames (embedded) and how to reproduce.
pub fn section(t: &TrackingDemo, out_dir: &Path) -> String {
    let mut h = String::from(
        "<h2 id=\"tracking\">Object tracking: zoo Siamese tracker, original vs pruned</h2>\n",
    );
    h += &format!(
        "<p>The committed tracker <code>models/siamese-tracker</code> (no training here) and the \
         same tracker with {} of the channels of every prunable group removed (criterion \
         <code>{}</code>, no fine-tuning) in both graphs; written to <code>{}</code>. \
         Evaluated with the board runtime's tracking loop on {} generated OTB-layout sequences × {} \
         frames (seed {}, 320×240, every effect on), {} thread(s).</p>\n",
        t.ratio,
        esc(&t.criterion),
        esc(&t.pruned_dir),
        t.sequences,
        t.frames,
        t.seed,
        t.threads
    );
    h += "<div class=\"scroll\"><table><thead><tr><th>tracker</th><th class=\"num\">AUC</th>\
          <th class=\"num\">P@20 px</th><th class=\"num\">AO</th><th class=\"num\">SR0.5</th>\
          <th class=\"num\">fps (loop)</th><th class=\"num\">search ms/frame</th>\
          <th class=\"num\">template ms</th><th>AUC per sequence</th></tr></thead><tbody>\n";
    for r in [&t.original, &t.pruned] {
        let per: Vec<String> = r
            .per_sequence_auc
            .iter()
            .map(|v| format!("{v:.3}"))
            .collect();
        h += &format!(
            "<tr><th>{}</th><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td>\
             <td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.1}</td>\
             <td class=\"num\">{:.2}</td><td class=\"num\">{:.2}</td><td>{}</td></tr>\n",
            esc(&r.name),
            r.overall.auc,
            r.overall.precision_20px,
            r.overall.average_overlap,
            r.overall.success_rate_50,
            r.fps,
            r.mean_search_ms,
            r.mean_template_ms,
            per.join(" ")
        );
    }
    let n = &t.never_move;
    h += &format!(
        "<tr><th>never moves (first box)</th><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td>\
         <td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">—</td>\
         <td class=\"num\">—</td><td class=\"num\">—</td><td></td></tr>\n</tbody></table></div>\n",
        n.auc, n.precision_20px, n.average_overlap, n.success_rate_50
    );
    h += "<h3>The two graphs, tract side by side</h3>\n<div class=\"scroll\"><table><thead><tr>\
          <th>graph</th><th>timed at</th><th class=\"num\">params</th><th class=\"num\">MACs</th>\
          <th class=\"num\">tract ms (median)</th><th class=\"num\">speed-up</th>\
          <th class=\"num\">output cosine</th></tr></thead><tbody>\n";
    for g in &t.graphs {
        h += &format!(
            "<tr><th>{}</th><td><code>{}</code></td><td class=\"num\">{} → {} ({:.1}%)</td>\
             <td class=\"num\">{:.2}M → {:.2}M ({:.1}%)</td><td class=\"num\">{:.2} → {:.2}</td>\
             <td class=\"num\">{:.2}×</td><td class=\"num\">{:.4}</td></tr>\n",
            esc(&g.graph),
            esc(if g.input_shape.is_empty() {
                "declared shapes"
            } else {
                &g.input_shape
            }),
            g.params_before,
            g.params_after,
            100.0 * g.params_after as f64 / g.params_before.max(1) as f64,
            g.macs_before as f64 / 1e6,
            g.macs_after as f64 / 1e6,
            100.0 * g.macs_after as f64 / g.macs_before.max(1) as f64,
            g.tract_ms_before,
            g.tract_ms_after,
            g.speedup,
            g.output_cosine
        );
    }
    h += &format!(
        "</tbody></table></div>\n<p class=\"note\">Medians of {} interleaved tract runs per graph \
         (original and pruned alternate, so machine load hits both alike); the search graph \
         runs the 3 scales of a frame in one call. Output cosine: pruned vs original on 8 seeded \
         random inputs. Per-layer detail: <code>tracking/prune-template/index.html</code>, \
         <code>tracking/prune-search/index.html</code>.</p>\n",
        t.graphs.first().map_or(0, |g| g.runs)
    );
    h += &format!(
        "<h3>Frames of <code>{}</code></h3>\n<p class=\"legend\">{}ground truth {}original {}pruned</p>\n<div>",
        esc(&t.clip_sequence),
        swatch(COLOUR_TRUTH),
        swatch(COLOUR_ORIGINAL),
        swatch(COLOUR_PRUNED)
    );
    for f in &t.clip {
        let src = match std::fs::read(out_dir.join(&f.file)) {
            Ok(b) => format!("data:image/png;base64,{}", base64(&b)),
            Err(_) => esc(&f.file),
        };
        let caption = if f.absent {
            format!("frame {} · target out of view (not scored)", f.frame)
        } else {
            format!(
                "frame {} · IoU original {:.2}, pruned {:.2}",
                f.frame, f.iou_original, f.iou_pruned
            )
        };
        h += &format!(
            "<figure style=\"display:inline-block;margin:.3rem\"><img src=\"{src}\" width=\"320\" \
             height=\"240\" alt=\"frame {}\"><figcaption>{caption}</figcaption></figure>\n",
            f.frame
        );
    }
    h += "</div>\n<p class=\"note\">Reproduce: <code>edgeslim data tracking -o seqs --sequences 4 \
          --frames 60 --seed 7</code>; <code>edgeslim compress prune models/siamese-tracker/search.onnx \
          --ratio 0.25 --criterion bn --input-shape search=3,3,127,127 -o p/search.onnx</code> (and \
          <code>template.onnx</code>); <code>edgeslim-rt track p --eval seqs --json e.json</code>. \
          Without fine-tuning the pruned tracker loses accuracy; docs/results/tracking.md has the \
          other ratios.</p>\n";
    h
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
