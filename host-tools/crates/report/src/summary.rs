//! The summary table: one column per run, one row per fact, and (with two or more runs) the
//! ratios of every run against the first one, the baseline.

use super::charts::css_colour;
use super::format::*;
use super::{baseline_of, run_name, ReportInput};
use edgeslim_runtime::device::{ThermalZone, Throttling};
use edgeslim_runtime::model::{format_dims, Dim, TensorSpec};
use edgeslim_runtime::report::BenchReport;

/// How many characters of the sha256 the table shows; the full hash is in the cell's tooltip.
const SHORT_SHA: usize = 12;

pub(crate) fn summary_section(runs: &[ReportInput]) -> String {
    let mut html = String::from("<section id=\"summary\"><h2>Summary</h2>\n");
    html.push_str("<div class=\"scroll\"><table class=\"summary\">\n");
    html.push_str(&head(runs));
    html.push_str("<tbody>\n");
    let mut t = Rows {
        runs,
        html: String::new(),
    };
    model_rows(&mut t);
    run_rows(&mut t);
    device_rows(&mut t);
    timing_rows(&mut t);
    profile_rows(&mut t);
    if runs.len() >= 2 {
        ratio_rows(&mut t);
    }
    html.push_str(&t.html);
    html.push_str("</tbody></table></div></section>\n");
    html
}

fn head(runs: &[ReportInput]) -> String {
    let cols: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let role = if baseline_of(runs, i) == i && runs.len() > 1 {
                " (baseline)"
            } else {
                ""
            };
            format!(
                "<th style=\"border-top: 4px solid {}\">{}{role}</th>",
                css_colour(i),
                esc(&run_name(i, r))
            )
        })
        .collect();
    format!("<thead><tr><th></th>{}</tr></thead>\n", cols.concat())
}

/// Accumulates table rows; every cell function returns HTML (already escaped).
struct Rows<'a> {
    runs: &'a [ReportInput],
    html: String,
}

impl Rows<'_> {
    fn group(&mut self, name: &str) {
        self.html.push_str(&format!(
            "<tr class=\"group\"><th colspan=\"{}\">{}</th></tr>\n",
            self.runs.len() + 1,
            esc(name)
        ));
    }

    fn row(&mut self, name: &str, cell: impl Fn(&BenchReport) -> String) {
        self.row_indexed(name, |_, r| cell(r));
    }

    fn row_indexed(&mut self, name: &str, cell: impl Fn(usize, &BenchReport) -> String) {
        let cells: Vec<String> = self
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| format!("<td>{}</td>", cell(i, &r.report)))
            .collect();
        self.html.push_str(&format!(
            "<tr><th>{}</th>{}</tr>\n",
            esc(name),
            cells.concat()
        ));
    }
}

fn model_rows(t: &mut Rows) {
    t.group("Model");
    t.row("Label", |r| esc(&r.label));
    let sources: Vec<String> = t.runs.iter().map(|r| r.source.clone()).collect();
    t.row_indexed("Report file", |i, _| {
        format!(
            "<code>{}</code>",
            esc_opt(sources.get(i).map(String::as_str))
        )
    });
    t.row("Model file", |r| {
        format!("<code>{}</code>", esc(&r.model.path))
    });
    t.row("sha256", |r| {
        let short: String = r.model.sha256.chars().take(SHORT_SHA).collect();
        if short.is_empty() {
            ABSENT.to_string()
        } else {
            format!(
                "<code title=\"{}\">{}…</code>",
                esc(&r.model.sha256),
                esc(&short)
            )
        }
    });
    t.row("File size", |r| fmt_bytes(r.model.size_bytes));
    t.row("Opset · producer", |r| {
        let producer = Some(r.model.producer.as_str()).filter(|p| !p.is_empty());
        format!("{} · {}", r.model.opset, esc_opt(producer))
    });
    t.row("Nodes: ONNX · tract plan", |r| {
        format!("{} · {}", r.model.onnx_nodes, r.model.plan_nodes)
    });
    t.row("MACs", |r| {
        format!(
            "{} <span class=\"note\">({})</span>",
            fmt_macs(r.model.total_macs),
            fmt_int(r.model.total_macs)
        )
    });
    t.row("Inputs", |r| tensors(&r.inputs));
    t.row("Outputs", |r| tensors(&r.outputs));
}

/// `x float [1,3,640,640]`, plus the declared shape when the run fixed symbolic dimensions.
fn tensors(specs: &[TensorSpec]) -> String {
    if specs.is_empty() {
        return ABSENT.to_string();
    }
    let lines: Vec<String> = specs
        .iter()
        .map(|s| {
            let declared = declared_if_different(&s.declared, &s.shape)
                .map(|d| format!(" <span class=\"note\">(declared {})</span>", esc(&d)))
                .unwrap_or_default();
            format!(
                "<code>{}</code> {} {}{declared}",
                esc(&s.name),
                esc(&s.dtype),
                fmt_shape(&s.shape)
            )
        })
        .collect();
    lines.join("<br>")
}

fn declared_if_different(declared: &[Dim], shape: &[usize]) -> Option<String> {
    let same = declared.len() == shape.len()
        && declared
            .iter()
            .zip(shape)
            .all(|(d, s)| matches!(d, Dim::Fixed(v) if v == s));
    (!same && !declared.is_empty()).then(|| format_dims(declared))
}

fn run_rows(t: &mut Rows) {
    t.group("Run");
    t.row("Tool", |r| {
        format!("{} {}", esc(&r.tool.name), esc(&r.tool.version))
    });
    t.row("Created", |r| fmt_unix_utc(r.created_unix));
    t.row("Backend", |r| {
        let opt = if r.optimized { "" } else { " (not optimised)" };
        format!("{}{opt}", esc(&r.backend))
    });
    t.row("Threads", |r| r.threads.to_string());
    t.row("Target profile", |r| esc_opt(r.target_profile.as_deref()));
    t.row("Timed runs · warm-up", |r| {
        format!("{} · {}", r.latency.runs, r.latency.warmup)
    });
}

fn device_rows(t: &mut Rows) {
    t.group("Device");
    t.row("Emulated", |r| {
        if r.device.emulated {
            "<span class=\"warn\">EMULATED — timings meaningless</span>".to_string()
        } else {
            "no".to_string()
        }
    });
    t.row("Arch · OS", |r| {
        format!("{} · {}", esc(&r.device.arch), esc(&r.device.os))
    });
    t.row("CPU model", |r| esc_opt(r.device.cpu_model.as_deref()));
    t.row("Board", |r| esc_opt(r.device.board_model.as_deref()));
    t.row("Cores", |r| r.device.cores.to_string());
    t.row("Memory", |r| fmt_opt_bytes(r.device.mem_total_bytes));
    t.row("Governor", |r| esc_opt(r.device.governor.as_deref()));
    t.row("Max frequency (MHz)", |r| {
        fmt_opt_f(r.device.max_freq_mhz, 0)
    });
    t.row("Hottest zone before → after (°C)", |r| {
        hottest(&r.device.thermal_before, &r.device.thermal_after)
    });
    t.row("Throttling after run", |r| {
        throttling_summary(r.device.throttling_after.as_ref())
    });
}

/// The hottest thermal zone before and after the run: the one number that tells whether the
/// board heated up. Each side is "—" when the board exposes no zones.
fn hottest(before: &[ThermalZone], after: &[ThermalZone]) -> String {
    let max = |zones: &[ThermalZone]| {
        zones
            .iter()
            .map(|z| z.temp_c)
            .filter(|t| t.is_finite())
            .reduce(f64::max)
    };
    let (b, a) = (max(before), max(after));
    if b.is_none() && a.is_none() {
        return ABSENT.to_string();
    }
    format!("{} → {}", fmt_opt_f(b, 1), fmt_opt_f(a, 1))
}

/// Only the flags the board actually reported; "—" when it reports none.
fn throttling_summary(t: Option<&Throttling>) -> String {
    let Some(t) = t else {
        return ABSENT.to_string();
    };
    let mut parts = Vec::new();
    let flag =
        |name: &str, v: Option<bool>| v.map(|v| format!("{name}: {}", fmt_opt_bool(Some(v))));
    parts.extend(flag("throttled now", t.throttled_now));
    parts.extend(flag("since boot", t.throttled_since_boot));
    parts.extend(flag("under-voltage", t.under_voltage_now));
    parts.extend(flag("freq capped", t.freq_capped_now));
    parts.extend(t.throttle_events.map(|n| format!("throttle events: {n}")));
    let any_set = [
        t.throttled_now,
        t.throttled_since_boot,
        t.under_voltage_now,
        t.freq_capped_now,
    ]
    .contains(&Some(true));
    match (parts.is_empty(), any_set) {
        (true, _) => ABSENT.to_string(),
        (false, true) => format!("<span class=\"warn\">{}</span>", parts.join("; ")),
        (false, false) => parts.join("; "),
    }
}

fn timing_rows(t: &mut Rows) {
    t.group("Load (ms)");
    t.row("Load (decode + translate)", |r| fmt_ms(r.load.load_ms));
    t.row("Typing (shape inference)", |r| fmt_ms(r.load.typing_ms));
    t.row("Optimise + plan", |r| fmt_ms(r.load.optimize_ms));

    t.group("Latency (ms)");
    t.row("min", |r| fmt_ms(r.latency.min_ms));
    t.row("mean", |r| fmt_ms(r.latency.mean_ms));
    t.row("p50", |r| fmt_ms(r.latency.p50_ms));
    t.row("p90", |r| fmt_ms(r.latency.p90_ms));
    t.row("p99", |r| fmt_ms(r.latency.p99_ms));
    t.row("max", |r| fmt_ms(r.latency.max_ms));
    t.row("std", |r| fmt_ms(r.latency.std_ms));
    t.row("Throughput (inferences/s)", |r| {
        fmt_f(r.throughput_per_s, 2)
    });

    t.group("Memory");
    t.row("RSS before load", |r| {
        fmt_opt_bytes(r.memory.rss_before_load_bytes)
    });
    t.row("RSS after load", |r| {
        fmt_opt_bytes(r.memory.rss_after_load_bytes)
    });
    t.row("Peak RSS", |r| fmt_opt_bytes(r.memory.peak_rss_bytes));
}

fn profile_rows(t: &mut Rows) {
    t.group("Profile");
    t.row("Per-node coverage", |r| {
        r.profile
            .as_ref()
            .map(|p| fmt_pct(p.coverage))
            .unwrap_or_else(|| ABSENT.to_string())
    });
    t.row("Profiled run mean (ms)", |r| {
        r.profile
            .as_ref()
            .map(|p| fmt_ms(p.run_mean_ms))
            .unwrap_or_else(|| ABSENT.to_string())
    });
    t.row("Achieved GFLOP/s", |r| {
        r.profile
            .as_ref()
            .map(|p| fmt_f(p.achieved_gflops, 2))
            .unwrap_or_else(|| ABSENT.to_string())
    });
    t.row("Share of the board's fp32 peak", super::peak::share_cell);
}

/// Each run against run 1. Cells say which way the ratio goes ("slower", "less memory"), so
/// nobody has to remember whether it was run/baseline or baseline/run.
fn ratio_rows(t: &mut Rows) {
    let runs = t.runs;
    let base = |i: usize| &runs[baseline_of(runs, i)].report;
    t.group("Against the baseline (first run of its group), run ÷ baseline");
    let ratio = |i: usize, cell: String| {
        if baseline_of(runs, i) == i {
            "baseline".to_string()
        } else {
            tint(cell)
        }
    };
    t.row_indexed("p50 latency", |i, r| {
        ratio(
            i,
            fmt_ratio(
                r.latency.p50_ms,
                base(i).latency.p50_ms,
                Better::LowerIsFaster,
            ),
        )
    });
    t.row_indexed("mean latency", |i, r| {
        ratio(
            i,
            fmt_ratio(
                r.latency.mean_ms,
                base(i).latency.mean_ms,
                Better::LowerIsFaster,
            ),
        )
    });
    t.row_indexed("throughput", |i, r| {
        ratio(
            i,
            fmt_ratio(
                r.throughput_per_s,
                base(i).throughput_per_s,
                Better::HigherIsFaster,
            ),
        )
    });
    t.row_indexed("peak RSS", |i, r| {
        let cell = match (r.memory.peak_rss_bytes, base(i).memory.peak_rss_bytes) {
            (Some(a), Some(b)) => fmt_ratio(a as f64, b as f64, Better::Memory),
            _ => ABSENT.to_string(),
        };
        ratio(i, cell)
    });
    t.row_indexed("MACs", |i, r| {
        let cell = fmt_ratio(
            r.model.total_macs as f64,
            base(i).model.total_macs as f64,
            Better::Macs,
        );
        ratio(i, cell)
    });
}

/// Colour a ratio cell green when the run is better than the baseline, red when worse.
fn tint(cell: String) -> String {
    let class = if ["(faster)", "(less memory)", "(fewer MACs)"]
        .iter()
        .any(|w| cell.ends_with(w))
    {
        "faster"
    } else if ["(slower)", "(more memory)", "(more MACs)"]
        .iter()
        .any(|w| cell.ends_with(w))
    {
        "slower"
    } else {
        return cell;
    };
    format!("<span class=\"{class}\">{cell}</span>")
}
