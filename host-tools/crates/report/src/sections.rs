//! The page sections after the summary: latency chart, op-type chart, per-run profiles,
//! engine comparison and device facts. Each returns finished HTML; text from the reports is
//! escaped here, text inside charts is escaped by plotters' SVG backend.

use super::charts::{self, Bar, BarChart, BarGroup, LatencyRow};
use super::format::*;
use super::{run_name, ReportInput};
use edgeslim_runtime::device::{DeviceInfo, ThermalZone, Throttling};
use edgeslim_runtime::report::{BenchReport, EngineComparison, NodeProfile, Profile};
use edgeslim_runtime::stats::LatencyStats;

/// Nodes shown per run in the top-nodes chart and table.
const TOP_NODES: usize = 15;
/// Op types in the grouped chart; the tables below list all of them.
const MAX_OP_TYPES: usize = 20;

/// A table row name and how to read its value from a report part.
type StatField = (&'static str, fn(&LatencyStats) -> f64);
type ThrottlingField = (&'static str, fn(&Throttling) -> String);

/// A chart with its caption, or the reason it could not be drawn.
fn figure(chart: Result<String, String>, caption: &str, legend: &str) -> String {
    match chart {
        Ok(svg) => {
            format!("<figure>\n{legend}{svg}<figcaption>{caption}</figcaption>\n</figure>\n")
        }
        Err(why) => format!("<p class=\"note\">Chart not drawn: {}.</p>\n", esc(&why)),
    }
}

/// Colour swatches naming the runs of a multi-run chart.
fn legend(runs: &[(usize, &ReportInput)]) -> String {
    let items: Vec<String> = runs
        .iter()
        .map(|(i, r)| {
            format!(
                "<span class=\"swatch\" style=\"background: {}\"></span>{}",
                charts::css_colour(*i),
                esc(&run_name(*i, r))
            )
        })
        .collect();
    format!("<div class=\"legend\">{}</div>\n", items.concat())
}

fn table(head: &[&str], numeric_from: usize, rows: &[Vec<String>]) -> String {
    let class = |c: usize| {
        if c >= numeric_from {
            " class=\"num\""
        } else {
            ""
        }
    };
    let th: Vec<String> = head
        .iter()
        .enumerate()
        .map(|(c, h)| format!("<th{}>{}</th>", class(c), esc(h)))
        .collect();
    let body: Vec<String> = rows
        .iter()
        .map(|row| {
            let tds: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| format!("<td{}>{cell}</td>", class(c)))
                .collect();
            format!("<tr>{}</tr>\n", tds.concat())
        })
        .collect();
    format!(
        "<div class=\"scroll\"><table>\n<thead><tr>{}</tr></thead>\n<tbody>\n{}</tbody></table></div>\n",
        th.concat(),
        body.concat()
    )
}

// ---------------------------------------------------------------------------------------------
// Latency

pub(crate) fn latency_section(runs: &[ReportInput]) -> String {
    let mut rows = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let r = &run.report;
        rows.push(LatencyRow {
            label: format!("{} ({})", run_name(i, run), r.backend),
            colour: i,
            hollow: false,
            samples_ms: r.latency.samples_ms.clone(),
        });
        if let Some(c) = &r.comparison {
            rows.push(LatencyRow {
                label: format!("{} ({})", run_name(i, run), c.other_backend),
                colour: i,
                hollow: true,
                samples_ms: c.other_latency.samples_ms.clone(),
            });
        }
    }
    let mut caption = String::from(
        "Every timed run, in ms. Box: 25th–75th percentile; thick line: median; whiskers: \
         min and max; dots: single runs.",
    );
    if rows.iter().any(|r| r.hollow) {
        caption.push_str(" Open dots: the comparison engine of the same report.");
    }
    format!(
        "<section id=\"latency\"><h2>Latency distribution</h2>\n{}</section>\n",
        figure(charts::latency_chart(&rows), &caption, "")
    )
}

// ---------------------------------------------------------------------------------------------
// Op types (all runs in one chart)

pub(crate) fn op_types_section(runs: &[ReportInput]) -> String {
    let profiled: Vec<(usize, &ReportInput, &Profile)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.report.profile.as_ref().map(|p| (i, r, p)))
        .collect();
    let mut html = String::from("<section id=\"op-types\"><h2>Time per ONNX op type</h2>\n");
    if profiled.is_empty() {
        html.push_str("<p class=\"note\">No report has a per-node profile.</p>\n</section>\n");
        return html;
    }
    let ops = ranked_op_types(&profiled);
    let groups: Vec<BarGroup> = ops
        .iter()
        .take(MAX_OP_TYPES)
        .map(|op| BarGroup {
            label: op.clone(),
            bars: profiled
                .iter()
                .map(|(_, _, p)| {
                    p.op_types.iter().find(|t| &t.op == op).map(|t| Bar {
                        value: t.mean_ms,
                        text: charts::bar_text(t.mean_ms, Some(t.share)),
                    })
                })
                .collect(),
        })
        .collect();
    let spec = BarChart {
        groups,
        colours: profiled.iter().map(|(i, _, _)| *i).collect(),
        x_desc: "mean time per inference (ms)".into(),
    };
    let runs_shown: Vec<(usize, &ReportInput)> =
        profiled.iter().map(|(i, r, _)| (*i, *r)).collect();
    let more = ops.len().saturating_sub(MAX_OP_TYPES);
    let caption = format!(
        "Mean time per inference summed over the nodes of each ONNX op type, with its share \
         of the node time. Runs without a profile are not shown.{}",
        if more > 0 {
            format!(" {more} smaller op types are listed only in the tables below.")
        } else {
            String::new()
        }
    );
    html.push_str(&figure(
        charts::bar_chart(&spec, "mean time per ONNX op type"),
        &esc(&caption),
        &legend(&runs_shown),
    ));
    html.push_str("</section>\n");
    html
}

/// Op types of all profiled runs, the most expensive (in any run) first.
fn ranked_op_types(profiled: &[(usize, &ReportInput, &Profile)]) -> Vec<String> {
    let mut worst: Vec<(String, f64)> = Vec::new();
    for (_, _, p) in profiled {
        for t in &p.op_types {
            match worst.iter_mut().find(|(op, _)| *op == t.op) {
                Some((_, ms)) => *ms = ms.max(t.mean_ms),
                None => worst.push((t.op.clone(), t.mean_ms)),
            }
        }
    }
    worst.sort_by(|a, b| b.1.total_cmp(&a.1));
    worst.into_iter().map(|(op, _)| op).collect()
}

// ---------------------------------------------------------------------------------------------
// Per-run profiles

pub(crate) fn profiles_section(runs: &[ReportInput]) -> String {
    let mut html = String::from("<section id=\"profiles\"><h2>Per-run profile</h2>\n");
    for (i, run) in runs.iter().enumerate() {
        html.push_str(&format!("<h3>{}</h3>\n", esc(&run_name(i, run))));
        match &run.report.profile {
            Some(p) => html.push_str(&profile_html(i, p)),
            None => html.push_str(&format!(
                "<p class=\"note\">No per-node profile in this report (backend {}).</p>\n",
                esc(&run.report.backend)
            )),
        }
    }
    html.push_str("</section>\n");
    html
}

fn profile_html(index: usize, p: &Profile) -> String {
    let mut html = format!(
        "<p>Profiled run: {} ms; nodes sum to {} ms (coverage {}); achieved {} GFLOP/s.</p>\n",
        fmt_ms(p.run_mean_ms),
        fmt_ms(p.node_sum_mean_ms),
        fmt_pct(p.coverage),
        fmt_f(p.achieved_gflops, 2)
    );
    let top = top_nodes(&p.nodes);
    if top.is_empty() {
        html.push_str("<p class=\"note\">The profile lists no nodes.</p>\n");
    } else {
        html.push_str(&top_nodes_chart(index, &top));
        html.push_str(&top_nodes_table(&top));
    }
    html.push_str("<h4>By ONNX op type</h4>\n");
    html.push_str(&op_type_table(&p.op_types));
    html.push_str(&format!(
        "<details><summary>By tract op (after fusion)</summary>\n{}</details>\n",
        op_type_table(&p.tract_op_types)
    ));
    html.push_str(&format!(
        "<p class=\"note\">Attribution: {}</p>\n",
        esc(&p.attribution_note)
    ));
    html
}

/// The report promises nodes sorted by time, but sort again: a hand-edited or older report
/// must not show the wrong "top" nodes.
fn top_nodes(nodes: &[NodeProfile]) -> Vec<&NodeProfile> {
    let mut sorted: Vec<&NodeProfile> = nodes.iter().collect();
    sorted.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));
    sorted.truncate(TOP_NODES);
    sorted
}

fn top_nodes_chart(index: usize, top: &[&NodeProfile]) -> String {
    let spec = BarChart {
        groups: top
            .iter()
            .map(|n| BarGroup {
                label: format!("{} ({})", n.name, n.onnx_op),
                bars: vec![Some(Bar {
                    value: n.mean_ms,
                    text: charts::bar_text(n.mean_ms, Some(n.share)),
                })],
            })
            .collect(),
        colours: vec![index],
        x_desc: "mean time per inference (ms)".into(),
    };
    let caption = format!(
        "The {} slowest ONNX nodes (each the sum of the tract ops it became), with their share \
         of the node time.",
        top.len()
    );
    figure(
        charts::bar_chart(&spec, "slowest nodes"),
        &esc(&caption),
        "",
    )
}

fn top_nodes_table(top: &[&NodeProfile]) -> String {
    let rows: Vec<Vec<String>> = top
        .iter()
        .enumerate()
        .map(|(rank, n)| {
            vec![
                (rank + 1).to_string(),
                format!("<code>{}</code>", esc(&n.name)),
                esc(&n.onnx_op),
                esc(&n.tract_ops.join(", ")),
                n.output_shape
                    .as_deref()
                    .map(fmt_shape)
                    .unwrap_or_else(|| ABSENT.to_string()),
                fmt_ms(n.mean_ms),
                fmt_pct(n.share),
                fmt_macs(n.macs),
            ]
        })
        .collect();
    table(
        &[
            "#",
            "node",
            "ONNX op",
            "tract ops",
            "output",
            "mean ms",
            "share",
            "MACs",
        ],
        5,
        &rows,
    )
}

fn op_type_table(types: &[edgeslim_runtime::report::OpTypeProfile]) -> String {
    if types.is_empty() {
        return "<p class=\"note\">None recorded.</p>\n".to_string();
    }
    let rows: Vec<Vec<String>> = types
        .iter()
        .map(|t| {
            vec![
                esc(&t.op),
                t.count.to_string(),
                fmt_ms(t.mean_ms),
                fmt_pct(t.share),
                fmt_macs(t.macs),
            ]
        })
        .collect();
    table(&["op", "nodes", "mean ms", "share", "MACs"], 1, &rows)
}

// ---------------------------------------------------------------------------------------------
// Engine comparison

pub(crate) fn comparison_section(runs: &[ReportInput]) -> String {
    let compared: Vec<(usize, &ReportInput, &EngineComparison)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.report.comparison.as_ref().map(|c| (i, r, c)))
        .collect();
    if compared.is_empty() {
        return String::new();
    }
    let mut html = String::from("<section id=\"comparison\"><h2>Engine comparison</h2>\n");
    for (i, run, c) in compared {
        html.push_str(&comparison_html(i, run, c));
    }
    html.push_str("</section>\n");
    html
}

fn comparison_html(index: usize, run: &ReportInput, c: &EngineComparison) -> String {
    let r = &run.report;
    let other = match &c.other_version {
        Some(v) => format!("{} {}", c.other_backend, v),
        None => c.other_backend.clone(),
    };
    let mut html = format!(
        "<h3>{}: {} vs {}</h3>\n",
        esc(&run_name(index, run)),
        esc(&r.backend),
        esc(&other)
    );
    html.push_str(&format!(
        "<p>Reported ratios {b} ÷ {o}: mean {}, p50 {} (same inputs and threads).</p>\n",
        engine_ratio(c.latency_ratio_mean, &r.backend, &c.other_backend),
        engine_ratio(c.latency_ratio_p50, &r.backend, &c.other_backend),
        b = esc(&r.backend),
        o = esc(&c.other_backend),
    ));
    html.push_str(&latency_side_by_side(r, c));
    html.push_str(&output_diffs(c));
    html
}

/// `0.85× (tract faster)`: a ratio this-engine ÷ other-engine of latencies.
fn engine_ratio(ratio: f64, this: &str, other: &str) -> String {
    if !ratio.is_finite() {
        return ABSENT.to_string();
    }
    let shown = fmt_times(ratio);
    let verdict = if shown == "1.00" {
        "about the same".to_string()
    } else if ratio < 1.0 {
        format!("{this} faster")
    } else {
        format!("{other} faster")
    };
    format!("{shown}× ({})", esc(&verdict))
}

fn latency_side_by_side(r: &BenchReport, c: &EngineComparison) -> String {
    let stats: [StatField; 7] = [
        ("min", |s| s.min_ms),
        ("mean", |s| s.mean_ms),
        ("p50", |s| s.p50_ms),
        ("p90", |s| s.p90_ms),
        ("p99", |s| s.p99_ms),
        ("max", |s| s.max_ms),
        ("std", |s| s.std_ms),
    ];
    let mut rows = vec![vec![
        "timed runs".to_string(),
        r.latency.runs.to_string(),
        c.other_latency.runs.to_string(),
        String::new(),
    ]];
    for (name, get) in stats {
        let (a, b) = (get(&r.latency), get(&c.other_latency));
        let ratio = if b != 0.0 && (a / b).is_finite() {
            format!("{}×", fmt_times(a / b))
        } else {
            ABSENT.to_string()
        };
        rows.push(vec![format!("{name} (ms)"), fmt_ms(a), fmt_ms(b), ratio]);
    }
    let ratio_head = format!("{} ÷ {}", r.backend, c.other_backend);
    table(
        &["latency", &r.backend, &c.other_backend, &ratio_head],
        1,
        &rows,
    )
}

fn output_diffs(c: &EngineComparison) -> String {
    if c.outputs.is_empty() {
        return "<p class=\"note\">No outputs were compared.</p>\n".to_string();
    }
    let rows: Vec<Vec<String>> = c
        .outputs
        .iter()
        .map(|o| {
            let relative = if o.max_abs_reference > 0.0 {
                fmt_sci(o.max_abs_diff / o.max_abs_reference)
            } else {
                ABSENT.to_string()
            };
            vec![
                format!("<code>{}</code>", esc(&o.name)),
                fmt_shape(&o.shape),
                fmt_sci(o.max_abs_diff),
                fmt_sci(o.max_abs_reference),
                relative,
            ]
        })
        .collect();
    table(
        &[
            "output",
            "shape",
            "max |diff|",
            "max |reference|",
            "max |diff| ÷ max |reference|",
        ],
        2,
        &rows,
    )
}

// ---------------------------------------------------------------------------------------------
// Device

pub(crate) fn device_section(runs: &[ReportInput]) -> String {
    let mut html = String::from("<section id=\"device\"><h2>Device</h2>\n");
    for (i, run) in runs.iter().enumerate() {
        html.push_str(&format!("<h3>{}</h3>\n", esc(&run_name(i, run))));
        html.push_str(&device_html(&run.report.device));
    }
    html.push_str("</section>\n");
    html
}

fn device_html(d: &DeviceInfo) -> String {
    let freqs: Vec<String> = d.cur_freq_mhz.iter().map(|f| fmt_opt_f(*f, 0)).collect();
    let mut html = format!(
        "<p>Host {}, kernel {}; current frequency per core (MHz): {}.</p>\n",
        esc_opt(d.hostname.as_deref()),
        esc_opt(d.kernel.as_deref()),
        if freqs.is_empty() {
            ABSENT.to_string()
        } else {
            freqs.join(", ")
        }
    );
    if d.emulated {
        html.push_str("<p class=\"warn\">EMULATED — timings meaningless.</p>\n");
    }
    html.push_str(&thermal_table(&d.thermal_before, &d.thermal_after));
    html.push_str(&throttling_table(
        d.throttling_before.as_ref(),
        d.throttling_after.as_ref(),
    ));
    html
}

/// Zones matched by name between the before and after readings; a zone read only once shows
/// "—" on the other side.
fn thermal_table(before: &[ThermalZone], after: &[ThermalZone]) -> String {
    if before.is_empty() && after.is_empty() {
        return "<p class=\"note\">Thermal zones: — (the machine exposes none).</p>\n".to_string();
    }
    let mut zones: Vec<&str> = before.iter().map(|z| z.zone.as_str()).collect();
    for z in after {
        if !zones.contains(&z.zone.as_str()) {
            zones.push(&z.zone);
        }
    }
    let find = |list: &[ThermalZone], zone: &str| list.iter().find(|z| z.zone == zone).cloned();
    let rows: Vec<Vec<String>> = zones
        .iter()
        .map(|zone| {
            let (b, a) = (find(before, zone), find(after, zone));
            let kind = b.as_ref().or(a.as_ref()).and_then(|z| z.kind.clone());
            let (tb, ta) = (b.map(|z| z.temp_c), a.map(|z| z.temp_c));
            let delta = match (tb, ta) {
                (Some(x), Some(y)) => format!("{:+.1}", y - x),
                _ => ABSENT.to_string(),
            };
            vec![
                esc(zone),
                esc_opt(kind.as_deref()),
                fmt_opt_f(tb, 1),
                fmt_opt_f(ta, 1),
                delta,
            ]
        })
        .collect();
    table(
        &["thermal zone", "type", "before °C", "after °C", "change °C"],
        2,
        &rows,
    )
}

fn throttling_table(before: Option<&Throttling>, after: Option<&Throttling>) -> String {
    if before.is_none() && after.is_none() {
        return "<p class=\"note\">Throttling: — (the machine exposes no throttling flags).</p>\n"
            .to_string();
    }
    let fields: [ThrottlingField; 7] = [
        ("source", |t| format!("<code>{}</code>", esc(&t.source))),
        ("raw flags", |t| esc_opt(t.raw.as_deref())),
        ("throttled now", |t| fmt_opt_bool(t.throttled_now)),
        ("throttled since boot", |t| {
            fmt_opt_bool(t.throttled_since_boot)
        }),
        ("under-voltage now", |t| fmt_opt_bool(t.under_voltage_now)),
        ("frequency capped now", |t| fmt_opt_bool(t.freq_capped_now)),
        ("throttle events", |t| {
            t.throttle_events
                .map(|n| n.to_string())
                .unwrap_or_else(|| ABSENT.to_string())
        }),
    ];
    let cell = |t: Option<&Throttling>, f: fn(&Throttling) -> String| {
        t.map(f).unwrap_or_else(|| ABSENT.to_string())
    };
    let rows: Vec<Vec<String>> = fields
        .iter()
        .map(|(name, f)| vec![esc(name), cell(before, *f), cell(after, *f)])
        .collect();
    table(&["throttling", "before", "after"], 3, &rows)
}
