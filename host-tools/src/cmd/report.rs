use anyhow::Result;
use edgeslim::report::{write_html, ReportInput};
use edgeslim_runtime::report::BenchReport;
use std::path::PathBuf;

/// Render one or more bench reports (JSON from `edgeslim bench` or `edgeslim-rt bench`)
/// as one offline HTML page, side by side, with ratios against the first.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  edgeslim report host.json pi4.json -o report.html")]
pub struct Args {
    /// Bench reports (JSON); the first is the baseline for ratios.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Page title.
    #[arg(long, default_value = "edgeslim benchmark report")]
    title: String,
}

pub fn run(a: Args) -> Result<()> {
    let runs = a
        .reports
        .iter()
        .map(|p| {
            Ok(ReportInput::new(
                p.display().to_string(),
                BenchReport::read(p)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    write_html(&runs, &a.title, &a.output)?;
    println!("{} run(s) -> {}", runs.len(), a.output.display());
    Ok(())
}
