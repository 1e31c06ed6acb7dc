use anyhow::{bail, Result};
use edgeslim::demo::{classifier, render_summary, run_demo, tracking, DemoOptions};
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    All,
    Ocr,
    Tracking,
    Classifier,
}

/// The main job on built-in defaults: fetch real models, inspect, optimise and benchmark
/// PP-OCR cls and det on tract and ONNX Runtime; prune the zoo Siamese tracker, benchmark and
/// evaluate it against the original on generated sequences; prune the ImageNet
/// EfficientNet-Lite0 and compare it with the original on photographs; write
/// edgeslim-demo/report.html.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim demo\n  edgeslim demo --quick --part tracking -o /tmp/demo\n  edgeslim demo --part classifier --threads 2\n\nNeeds the assets (fetched on first use, ~300 MB); ~30 s with --quick on 2 cores."
)]
pub struct Args {
    /// Where to write models, JSON reports and report.html (default edgeslim-demo).
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Deprecated spelling of -o/--output.
    #[arg(long, value_name = "DIR", hide = true, conflicts_with = "output")]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A tenth of the benchmark runs.
    #[arg(long)]
    quick: bool,
    /// Which part to run.
    #[arg(long, value_enum, default_value = "all")]
    part: Part,
    /// The tracker folder (template.onnx + search.onnx). Default: models/siamese-tracker of
    /// this source tree.
    #[arg(long, value_name = "DIR")]
    tracker: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let tracker = if matches!(a.part, Part::Ocr | Part::Classifier) {
        None
    } else {
        match a.tracker.or_else(tracking::default_tracker) {
            Some(t) if t.join("template.onnx").is_file() && t.join("search.onnx").is_file() => {
                Some(t)
            }
            Some(t) => bail!(
                "--tracker {}: needs template.onnx and search.onnx in that folder",
                t.display()
            ),
            None => bail!(
                "the zoo tracker models/siamese-tracker was not found: run from the source tree, pass --tracker DIR, or --part ocr"
            ),
        }
    };
    let classifier = if matches!(a.part, Part::All | Part::Classifier) {
        match classifier::default_model() {
            Some(m) => Some(m),
            None => bail!(
                "models/efficientnet-lite0/model.onnx was not found: run from the source tree,                  `edgeslim zoo import efficientnet-lite0`, or --part ocr|tracking"
            ),
        }
    } else {
        None
    };
    let opts = DemoOptions {
        out_dir: edgeslim_runtime::process::current_or_deprecated(
            &a.output,
            &a.out,
            "--out DIR",
            "-o/--output DIR",
        )
        .unwrap_or_else(|| PathBuf::from("edgeslim-demo")),
        threads: a.threads.max(1),
        quick: a.quick,
        ocr: matches!(a.part, Part::All | Part::Ocr),
        tracker,
        classifier,
    };
    let summary = run_demo(&opts, &|step| eprintln!("[demo] {step}"))?;
    print!("{}", render_summary(&summary));
    Ok(())
}
