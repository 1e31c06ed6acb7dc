//! Writing a method's report to disk. Every method writes the same layout: `report.json` (the
//! data: the shared `summary`, then the method's report type serialised) and `index.html` (its
//! page, opening with the same summary table) in one folder; the rank analysis writes
//! `analysis.json` beside its page. The methods in `edgeslim-compress` return their reports as
//! data and never render; this is the one place that does.

use crate::{Error, Result};
use edgeslim_compress::lowrank::analysis::Analysis;
use edgeslim_compress::lowrank::report::CompressReport;
use edgeslim_compress::pipeline::{MethodReport, Outcome, Summary};
use edgeslim_compress::prune::report::PruneReport;
use edgeslim_compress::quantize::QuantizeReport;
use edgeslim_runtime::fsutil::write_atomic;
use serde::Serialize;
use std::path::Path;

/// The data file of a method's report, beside [`PAGE`].
pub const DATA: &str = "report.json";
/// The page of a method's report.
pub const PAGE: &str = "index.html";

/// `report.json` and `index.html` of any method's outcome into `dir`.
pub fn outcome(o: &Outcome, dir: &Path) -> Result<()> {
    match &o.report {
        MethodReport::Lowrank(r) => lowrank(r, dir),
        MethodReport::Quantize(r) => quantize(r, dir),
        MethodReport::Prune(r) => prune(r, dir),
    }
}

/// `report.json` and `index.html` of a low-rank compression into `dir`.
pub fn lowrank(report: &CompressReport, dir: &Path) -> Result<()> {
    let page = crate::compression::compress_page(report);
    with_summary(dir, &Summary::of_lowrank(report), report, &page)
}

/// `report.json` and `index.html` of a quantisation into `dir`.
pub fn quantize(report: &QuantizeReport, dir: &Path) -> Result<()> {
    let page = crate::compression::quantize_page(report);
    with_summary(dir, &Summary::of_quantize(report), report, &page)
}

/// `report.json` and `index.html` of a pruning into `dir`.
pub fn prune(report: &PruneReport, dir: &Path) -> Result<()> {
    let page = crate::prune::render_prune_html(report);
    with_summary(dir, &Summary::of_prune(report), report, &page)
}

/// The report as JSON with the summary first, and the page with the summary section after
/// its title.
fn with_summary(dir: &Path, summary: &Summary, report: &impl Serialize, page: &str) -> Result<()> {
    #[derive(Serialize)]
    struct WithSummary<'a, R: Serialize> {
        summary: &'a Summary,
        #[serde(flatten)]
        report: &'a R,
    }
    let section = crate::outcome::summary_section(summary);
    // After the page's header (the compression pages) or its first paragraph (pruning).
    let at = page
        .find("</header>")
        .map(|i| i + "</header>".len())
        .or_else(|| page.find("</p>").map(|i| i + "</p>".len()))
        .unwrap_or(0);
    let page = format!("{}\n{section}{}", &page[..at], &page[at..]);
    write(dir, DATA, &WithSummary { summary, report }, &page)
}

/// `analysis.json` and `index.html` of a rank analysis into `dir`.
pub fn analysis(a: &Analysis, dir: &Path) -> Result<()> {
    write(
        dir,
        "analysis.json",
        a,
        &crate::compression::analysis_page(a),
    )
}

/// The data first, then the page, each written atomically: a reader never sees half a file.
pub(crate) fn write(dir: &Path, data_name: &str, data: &impl Serialize, page: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = serde_json::to_vec_pretty(data)
        .map_err(|e| Error::Other(format!("encoding {}: {e}", dir.join(data_name).display())))?;
    write_atomic(&dir.join(data_name), &json)?;
    write_atomic(&dir.join(PAGE), page.as_bytes())?;
    Ok(())
}
