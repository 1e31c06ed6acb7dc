use anyhow::{bail, Context, Result};
use edgeslim::report::{write_html, ReportInput};
use edgeslim_glora::AdaptReport;
use edgeslim_runtime::report::BenchReport;
use std::path::PathBuf;

/// Render one or more bench reports (JSON from `edgeslim bench` or `edgeslim-rt bench`)
/// as one offline HTML page, side by side, with ratios against the first; or `edgeslim adapt`
/// reports (its --json) as one transfer comparison: accuracy against values trained.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim report host.json pi4.json -o report.html\n  \
edgeslim report glora/*.json -o transfer.html   (adapt --json reports)"
)]
pub struct Args {
    /// Bench reports (JSON); the first is the baseline for ratios.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Page title.
    #[arg(long, default_value = DEFAULT_TITLE)]
    title: String,
}

const DEFAULT_TITLE: &str = "edgeslim benchmark report";

/// The reports as `edgeslim adapt` reports (JSON with `trainable_params` and `merged`), or
/// `None` when they are bench reports; a mix is an error naming the odd file.
fn adapt_reports(paths: &[PathBuf]) -> Result<Option<Vec<(String, AdaptReport)>>> {
    let mut adapt = Vec::new();
    let mut bench = None;
    for p in paths {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", p.display()))?;
        if v.get("trainable_params").is_some() && v.get("merged").is_some() {
            let r: AdaptReport = serde_json::from_value(v)
                .with_context(|| format!("{}: not a complete adapt report", p.display()))?;
            adapt.push((p.display().to_string(), r));
        } else {
            bench.get_or_insert(p);
        }
        if let (Some(b), false) = (bench, adapt.is_empty()) {
            bail!(
                "{} is a bench report and {} an adapt report: render one kind per page",
                b.display(),
                adapt[0].0
            );
        }
    }
    Ok((!adapt.is_empty()).then_some(adapt))
}

pub fn run(a: Args) -> Result<()> {
    if let Some(runs) = adapt_reports(&a.reports)? {
        let title = if a.title == DEFAULT_TITLE {
            "edgeslim transfer comparison"
        } else {
            &a.title
        };
        let page = edgeslim::report::adapt::transfer_page(&runs, title);
        edgeslim_runtime::fsutil::write_atomic(&a.output, page.as_bytes())?;
        println!("{} adapt run(s) -> {}", runs.len(), a.output.display());
        return Ok(());
    }
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
