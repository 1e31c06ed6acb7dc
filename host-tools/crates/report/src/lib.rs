//! `edgeslim report`: render one or many benchmark reports (docs/architecture.md) into one HTML
//! page.
//!
//! The page is self-contained and works offline, on a board or from a mail attachment: inline
//! CSS, charts as inline SVG (drawn with plotters), no scripts, no fonts or files fetched from
//! anywhere. Rendering is deterministic (no "generated at" clock), so the same reports give
//! byte-identical pages that diff cleanly.
//!
//! Layout: summary table (one column per run, ratios against the first run), latency
//! distribution, per-op-type time, per-run profile (top nodes), engine comparison, device.

pub mod adapt;
mod charts;
pub mod compression;
mod format;
pub mod growth;
pub mod outcome;
mod peak;
pub mod prune;
mod sections;
pub mod study;
mod summary;
pub mod vitslim;
pub mod write;

pub use edgeslim_onnx::{Error, Result};

use edgeslim_runtime::report::BenchReport;
pub use format::esc;
use std::path::Path;

/// One benchmark report and where it came from.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The file path shown to the reader (as given on the command line).
    pub source: String,
    pub report: BenchReport,
    /// Runs of one group are compared with the group's first run (original vs compressed of
    /// one model); `None` puts a run in the default group.
    pub group: Option<String>,
}

impl ReportInput {
    pub fn new(source: impl Into<String>, report: BenchReport) -> ReportInput {
        ReportInput {
            source: source.into(),
            report,
            group: None,
        }
    }
}

/// Index of the run that `runs[i]` is compared with: the first run of its group.
pub(crate) fn baseline_of(runs: &[ReportInput], i: usize) -> usize {
    runs.iter()
        .position(|r| r.group == runs[i].group)
        .unwrap_or(0)
}

/// The whole page as a string. Never fails: a chart that cannot be drawn becomes a note on
/// the page, and absent values print as "—".
pub fn render_html(runs: &[ReportInput], title: &str) -> String {
    render_html_with(runs, title, "")
}

/// [`render_html`] with `extra` (HTML sections a caller built, e.g. the demo's tracking
/// results) placed before the benchmark sections.
pub fn render_html_with(runs: &[ReportInput], title: &str, extra: &str) -> String {
    let mut body = String::new();
    body.push_str(&header(runs, title));
    body.push_str(extra);
    if runs.is_empty() {
        body.push_str("<p class=\"note\">No benchmark reports were given.</p>\n");
    } else {
        body.push_str(&emulation_warning(runs));
        body.push_str(&contents(runs));
        body.push_str(&summary::summary_section(runs));
        body.push_str(&sections::latency_section(runs));
        body.push_str(&sections::op_types_section(runs));
        body.push_str(&sections::profiles_section(runs));
        body.push_str(&sections::comparison_section(runs));
        body.push_str(&sections::device_section(runs));
    }
    page(title, &body)
}

/// Render and write atomically, so a reader (or a browser auto-reloading the file) never sees
/// half a page.
pub fn write_html(runs: &[ReportInput], title: &str, out: &Path) -> crate::Result<()> {
    write_html_with(runs, title, "", out)
}

/// [`write_html`] with extra sections (see [`render_html_with`]).
pub fn write_html_with(
    runs: &[ReportInput],
    title: &str,
    extra: &str,
    out: &Path,
) -> crate::Result<()> {
    let html = render_html_with(runs, title, extra);
    edgeslim_runtime::fsutil::write_atomic(out, html.as_bytes())?;
    Ok(())
}

/// "1 · yolo-int8": how every table, chart row and heading names a run. The number keeps runs
/// apart when two reports carry the same label (same model on two backends).
fn run_name(index: usize, run: &ReportInput) -> String {
    format!("{} · {}", index + 1, run.report.label)
}

fn header(runs: &[ReportInput], title: &str) -> String {
    let sources: Vec<String> = runs
        .iter()
        .map(|r| format!("<code>{}</code>", esc(&r.source)))
        .collect();
    format!(
        "<header><h1>{}</h1>\n<p class=\"meta\">{} run{} · rendered by edgeslim {} · \
         from {}</p></header>\n",
        esc(title),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        esc(env!("CARGO_PKG_VERSION")),
        if sources.is_empty() {
            format::ABSENT.to_string()
        } else {
            sources.join(", ")
        }
    )
}

/// Timings taken under qemu-user measure the emulator, not the board: say so before anyone
/// reads a number.
fn emulation_warning(runs: &[ReportInput]) -> String {
    let emulated: Vec<String> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.report.device.emulated)
        .map(|(i, r)| esc(&run_name(i, r)))
        .collect();
    if emulated.is_empty() {
        return String::new();
    }
    format!(
        "<p class=\"warn banner\">EMULATED — timings meaningless: {} ran under an emulator \
         (qemu-user); their times say nothing about the board.</p>\n",
        emulated.join(", ")
    )
}

fn contents(runs: &[ReportInput]) -> String {
    let mut links = vec![
        ("summary", "Summary"),
        ("latency", "Latency"),
        ("op-types", "Time per op type"),
        ("profiles", "Top nodes"),
    ];
    if runs.iter().any(|r| r.report.comparison.is_some()) {
        links.push(("comparison", "Engine comparison"));
    }
    links.push(("device", "Device"));
    let items: Vec<String> = links
        .iter()
        .map(|(id, text)| format!("<a href=\"#{id}\">{text}</a>"))
        .collect();
    format!("<nav>{}</nav>\n", items.join(" · "))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\
         <footer>edgeslim report · all data from the benchmark JSON files named above; \
         — marks a value the report does not contain.</footer>\n</body>\n</html>\n",
        esc(title)
    )
}

/// Inline so the page needs nothing else; system fonts only.
pub(crate) const CSS: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1d232a; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 2px solid #dde3ea; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
.meta, footer, .note, figcaption { color: #56606b; font-size: .9rem; }
footer { margin-top: 3rem; border-top: 1px solid #dde3ea; padding-top: .5rem; }
nav { margin: 1rem 0; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .85em;
       overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .88rem; font-variant-numeric: tabular-nums;
        margin: .5rem 0 1rem; }
th, td { border: 1px solid #dde3ea; padding: .25rem .55rem; text-align: left; vertical-align: top; }
thead th { background: #f3f6f9; }
td.num, th.num { text-align: right; }
tr.group th { background: #eef2f6; text-transform: uppercase; font-size: .75rem;
              letter-spacing: .04em; color: #56606b; }
tbody th { font-weight: 600; white-space: nowrap; }
.warn { color: #a40000; font-weight: 700; }
.banner { border: 2px solid #a40000; background: #fff1f0; padding: .6rem .8rem; }
.faster { color: #116329; }
.slower { color: #a40000; }
figure { margin: 1rem 0; }
svg.chart { max-width: 100%; height: auto; border: 1px solid #dde3ea; }
.legend { font-size: .9rem; margin: .3rem 0; }
.swatch { display: inline-block; width: .9rem; height: .9rem; margin: 0 .3rem 0 .9rem;
          vertical-align: -.1rem; border-radius: 2px; }
details { margin: .5rem 0 1rem; }
"#;

#[cfg(test)]
mod tests;
