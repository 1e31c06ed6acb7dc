//! `edgeslim-rt patch --model DIR --input IMAGE|DIR`: PatchGD inference in bounded memory.

use anyhow::{bail, Result};
use clap::Args;
use edgeslim_runtime::patch::{PatchModel, PatchOutput};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct PatchArgs {
    /// The folder `edgeslim train-patch` wrote (backbone.onnx, head.onnx, card.json).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// An image (PNG rows are streamed; other formats are decoded once to gray bytes) or a
    /// folder of images.
    #[arg(long, value_name = "IMAGE|DIR")]
    input: PathBuf,
    /// Threads filling Z (patch groups shared out over them).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Patches per backbone pass.
    #[arg(long, default_value_t = 8)]
    group: usize,
    /// Runs per image (the first included); the JSON keeps every run's times.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

#[derive(serde::Serialize)]
struct Report {
    model: String,
    threads: usize,
    group: usize,
    images: Vec<ImageReport>,
    peak_rss_bytes: Option<u64>,
}

#[derive(serde::Serialize)]
struct ImageReport {
    result: PatchOutput,
    fill_ms: Vec<f64>,
    head_ms: Vec<f64>,
}

fn images(input: &Path) -> Result<Vec<PathBuf>> {
    if !input.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(input)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| {
                let e = e.to_ascii_lowercase();
                e == "png" || e == "jpg" || e == "jpeg"
            })
        })
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("{}: no .png or .jpg images", input.display());
    }
    Ok(v)
}

/// The contribution map as characters, darkest to brightest, for grids up to 64 columns.
fn text_map(o: &PatchOutput) -> Option<String> {
    let (mh, mw) = o.grid;
    if mw > 64 {
        return None;
    }
    const RAMP: &[u8] = b" .:-=+*#%@";
    let (lo, hi) = o
        .contribution
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = (hi - lo).max(1e-12);
    let mut s = String::new();
    for r in 0..mh {
        s.push_str("    ");
        for c in 0..mw {
            let v = (o.contribution[r * mw + c] - lo) / span;
            s.push(
                RAMP[((v * (RAMP.len() - 1) as f32).round() as usize).min(RAMP.len() - 1)] as char,
            );
        }
        s.push('\n');
    }
    Some(s)
}

pub fn run(a: &PatchArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let model = PatchModel::load(&a.model, a.group, a.threads)?;
    let mut reports = Vec::new();
    for path in images(&a.input)? {
        let mut fill = Vec::new();
        let mut head = Vec::new();
        let mut last = None;
        for _ in 0..a.runs {
            let o = model.infer(&path)?;
            fill.push(o.fill_ms);
            head.push(o.head_ms);
            last = Some(o);
        }
        let Some(o) = last else { continue };
        if a.json.dest.is_none() {
            println!(
                "{}: {}×{}, grid {}×{} of {} px: class {} ({:.1} %), Z filled in {:.1} ms, head {:.1} ms",
                path.display(),
                o.width,
                o.height,
                o.grid.0,
                o.grid.1,
                model.patch,
                o.class,
                100.0 * o.probability,
                o.fill_ms,
                o.head_ms
            );
            if let Some(m) = text_map(&o) {
                print!("  contribution of each patch to class {}:\n{m}", o.class);
            }
        }
        reports.push(ImageReport {
            result: o,
            fill_ms: fill,
            head_ms: head,
        });
    }
    let report = Report {
        model: a.model.display().to_string(),
        threads: a.threads,
        group: a.group,
        images: reports,
        peak_rss_bytes: edgeslim_runtime::device::peak_rss_bytes(),
    };
    if !edgeslim_runtime::json_out::emit(&a.json.dest, &report)? {
        println!("peak RSS {} MiB", report.peak_rss_bytes.unwrap_or(0) >> 20);
    }
    Ok(())
}
