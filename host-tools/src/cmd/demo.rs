use anyhow::Result;
use edgeslim::demo::{render_summary, run_demo, DemoOptions};
use std::path::PathBuf;

/// The main job on built-in defaults: fetch real models, inspect, optimise and benchmark
/// PP-OCR cls and det on tract and ONNX Runtime, and write edgeslim-demo/report.html.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write models, JSON reports and report.html.
    #[arg(long, default_value = "edgeslim-demo")]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A tenth of the benchmark runs.
    #[arg(long)]
    quick: bool,
}

pub fn run(a: Args) -> Result<()> {
    let opts = DemoOptions {
        out_dir: a.out,
        threads: a.threads.max(1),
        quick: a.quick,
    };
    let summary = run_demo(&opts, &|step| eprintln!("[demo] {step}"))?;
    print!("{}", render_summary(&summary));
    Ok(())
}
