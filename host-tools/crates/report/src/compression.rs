//! HTML pages of the compression commands: `analyze` (spectra and the low-rank ranking),
//! `compress lowrank` and `compress quantize` (what changed, fidelity, speed). Same style and
//! guarantees as the benchmark report: one self-contained file, inline SVG, no scripts.

use super::charts::{bar_chart, css_colour, render_svg, run_colour, Bar, BarChart, BarGroup};
use super::format::{esc, fmt_bytes, fmt_f, fmt_int, fmt_macs, fmt_ms, fmt_pct, ABSENT};
use super::CSS;
use edgeslim_compress::lowrank::analysis::{Analysis, LayerSpectrum};
use edgeslim_compress::lowrank::report::CompressReport;
use edgeslim_measure::facts::ModelFacts;
use edgeslim_measure::fidelity::Fidelity;
use plotters::prelude::*;

const FONT: &str = "sans-serif";

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header><h1>{t}</h1>\
         <p class=\"meta\">rendered by edgeslim {v}</p></header>\n{body}\
         <footer>edgeslim · all numbers from the JSON next to this page.</footer>\n</body>\n</html>\n",
        t = esc(title),
        v = esc(env!("CARGO_PKG_VERSION")),
    )
}

pub(crate) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<div class=\"scroll\"><table><thead><tr>");
    for h in head {
        s.push_str(&format!("<th>{}</th>", esc(h)));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            // First column is a name; the others are numbers unless they say otherwise.
            let class = if i == 0 { "" } else { " class=\"num\"" };
            s.push_str(&format!("<td{class}>{c}</td>"));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>\n");
    s
}

/// A line chart: x linear, y linear or log10 (values ≤ 0 are dropped on a log axis).
pub(crate) struct Line {
    pub label: String,
    pub colour: usize,
    pub points: Vec<(f64, f64)>,
}

pub(crate) fn line_chart(
    lines: &[Line],
    x_desc: &str,
    y_desc: &str,
    log_y: bool,
    size: (u32, u32),
    aria: &str,
) -> Result<String, String> {
    let tf = |y: f64| if log_y { y.log10() } else { y };
    let pts: Vec<Vec<(f64, f64)>> = lines
        .iter()
        .map(|l| {
            l.points
                .iter()
                .filter(|(_, y)| !log_y || *y > 0.0)
                .map(|&(x, y)| (x, tf(y)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let all: Vec<&(f64, f64)> = pts.iter().flatten().collect();
    if all.is_empty() {
        return Err("nothing to plot".into());
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &&(x, y) in &all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    if log_y {
        y0 = y0.floor();
        y1 = y1.ceil();
    }
    render_svg(size, aria, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let yfmt = |v: &f64| {
            if log_y {
                format!("1e{}", v.round() as i64)
            } else {
                format!("{v:.2}")
            }
        };
        chart
            .configure_mesh()
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(TRANSPARENT)
            .x_desc(x_desc)
            .y_desc(if log_y {
                format!("{y_desc} (log)")
            } else {
                y_desc.to_string()
            })
            .y_label_formatter(&yfmt)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 12))
            .draw()?;
        for (l, p) in lines.iter().zip(&pts) {
            let c = run_colour(l.colour);
            chart
                .draw_series(LineSeries::new(p.iter().copied(), c.stroke_width(2)))?
                .label(l.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
        }
        if lines.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.2))
                .label_font((FONT, 12))
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }
        Ok(())
    })
}

fn figure(svg: Result<String, String>, caption: &str) -> String {
    match svg {
        Ok(s) => format!(
            "<figure>{s}<figcaption>{}</figcaption></figure>\n",
            esc(caption)
        ),
        Err(e) => format!("<p class=\"note\">chart not drawn: {}</p>\n", esc(&e)),
    }
}

fn normalised(values: &[f64], square: bool) -> Vec<(f64, f64)> {
    let e: Vec<f64> = values
        .iter()
        .map(|v| if square { v * v } else { *v })
        .collect();
    let total: f64 = e.iter().sum();
    e.iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, if total > 0.0 { v / total } else { 0.0 }))
        .collect()
}

fn cumulative(values: &[f64], square: bool) -> Vec<(f64, f64)> {
    let n = values.len().max(1) as f64;
    let c = edgeslim_compress::lowrank::svd::cumulative_energy(
        &values
            .iter()
            .map(|v| if square { v * v } else { *v })
            .collect::<Vec<_>>(),
    );
    std::iter::once((0.0, 0.0))
        .chain(c.iter().enumerate().map(|(i, v)| ((i + 1) as f64 / n, *v)))
        .collect()
}

// ---- analyze ---------------------------------------------------------------------------------

pub fn analysis_page(a: &Analysis) -> String {
    let mut b = String::new();
    b.push_str(&format!(
        "<p>Model <code>{}</code>. Calibration: {}.</p>\n",
        esc(&a.model),
        match (&a.calib, a.calib_samples) {
            (Some(c), Some(n)) => format!(
                "<code>{}</code>, {n} samples ({})",
                esc(c),
                esc(a.split_rule.as_deref().unwrap_or(""))
            ),
            _ => "none (weight space only)".into(),
        }
    ));
    b.push_str(
        "<p class=\"note\">Energy is σ² of the weight's singular values, or the variance of the \
         layer's outputs along each principal direction. r90/r95/r99: the rank holding that \
         share. <b>weights needed</b> = r95/κ, the share of the layer's weights two factors \
         keeping 95% of the energy would need (κ = d_in·d_out/(d_in+d_out)); below 100% the \
         layer compresses.</p>\n",
    );
    b.push_str("<h2 id=\"ranking\">Which layers are low-rank</h2>\n");
    let rank_row = |l: &LayerSpectrum| {
        let f = l.feature_ranks.as_ref();
        vec![
            esc(&l.name),
            esc(&l.kind),
            format!("{}×{}", l.d_out, l.d_in),
            fmt_int(l.params as u64),
            fmt_f(l.kappa, 1),
            format!(
                "{} / {} / {}",
                l.weight_ranks.r90, l.weight_ranks.r95, l.weight_ranks.r99
            ),
            f.map(|f| format!("{} / {} / {}", f.r90, f.r95, f.r99))
                .unwrap_or_else(|| ABSENT.into()),
            format!("{} ({})", fmt_pct(l.weights_needed_95), l.ranking_space),
        ]
    };
    let rows: Vec<Vec<String>> = a.ranking.iter().map(|&i| rank_row(&a.layers[i])).collect();
    b.push_str(&table(
        &[
            "layer",
            "kind",
            "d_out×d_in",
            "params",
            "κ",
            "weight r90/r95/r99",
            "feature r90/r95/r99",
            "weights needed (95%)",
        ],
        &rows,
    ));
    let skipped: Vec<Vec<String>> = a
        .layers
        .iter()
        .filter(|l| !l.decomposable)
        .map(|l| {
            vec![
                esc(&l.name),
                esc(&l.kind),
                format!(
                    "{} / {} / {}",
                    l.weight_ranks.r90, l.weight_ranks.r95, l.weight_ranks.r99
                ),
                esc(l.note.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    if !skipped.is_empty() {
        b.push_str("<details><summary>Layers analysed but not decomposable</summary>\n");
        b.push_str(&table(
            &["layer", "kind", "weight r90/r95/r99", "why"],
            &skipped,
        ));
        b.push_str("</details>\n");
    }
    // Bar chart of the ranking in both spaces.
    let top: Vec<&LayerSpectrum> = a.ranking.iter().map(|&i| &a.layers[i]).collect();
    let groups: Vec<BarGroup> = top
        .iter()
        .map(|l| BarGroup {
            label: l.name.clone(),
            bars: vec![
                Some(Bar {
                    value: 100.0 * l.weight_ranks.r95 as f64 / l.kappa.max(1e-9),
                    text: fmt_pct(l.weight_ranks.r95 as f64 / l.kappa.max(1e-9)),
                }),
                l.feature_ranks.as_ref().map(|f| Bar {
                    value: 100.0 * f.r95 as f64 / l.kappa.max(1e-9),
                    text: fmt_pct(f.r95 as f64 / l.kappa.max(1e-9)),
                }),
            ],
        })
        .collect();
    if !groups.is_empty() {
        b.push_str(&format!(
            "<p class=\"legend\"><span class=\"swatch\" style=\"background:{}\"></span>weight space\
             <span class=\"swatch\" style=\"background:{}\"></span>feature space</p>\n",
            css_colour(0),
            css_colour(1)
        ));
        b.push_str(&figure(
            bar_chart(
                &BarChart {
                    groups,
                    colours: vec![0, 1],
                    x_desc: "weights needed to keep 95% of the energy, % of the layer (r95/κ)"
                        .into(),
                },
                "share of weights needed per layer",
            ),
            "r95/κ per decomposable layer, most low-rank first; above 100% a layer cannot be \
             compressed without losing more than 5% of the energy.",
        ));
    }
    b.push_str("<h2 id=\"energy\">Energy curves</h2>\n");
    let curves = |feature: bool| -> Vec<Line> {
        a.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let pts = if feature {
                    cumulative(l.feature_eigenvalues.as_ref()?, false)
                } else {
                    cumulative(&l.weight_singular_values, true)
                };
                Some(Line {
                    label: l.name.clone(),
                    colour: i,
                    points: pts,
                })
            })
            .collect()
    };
    for (feature, title) in [(false, "weight space"), (true, "feature space")] {
        let lines = curves(feature);
        if lines.is_empty() {
            continue;
        }
        // One legend entry per layer would hide the chart: colours match the spectra below.
        let mut lines = lines;
        let legend_ok = lines.len() <= 8;
        if !legend_ok {
            for l in &mut lines {
                l.label.clear();
            }
        }
        b.push_str(&figure(
            line_chart(
                &lines,
                "rank / full rank",
                "energy kept",
                false,
                (960, 360),
                &format!("cumulative energy, {title}"),
            ),
            &format!("Cumulative energy vs rank share, {title}, every layer (colours as in the spectra below)."),
        ));
    }
    b.push_str("<h2 id=\"spectra\">Spectra per layer</h2>\n<div class=\"grid\">\n");
    for (i, l) in a.layers.iter().enumerate() {
        let mut lines = vec![Line {
            label: "weight σ²".into(),
            colour: 0,
            points: normalised(&l.weight_singular_values, true),
        }];
        if let Some(e) = &l.feature_eigenvalues {
            lines.push(Line {
                label: "output variance".into(),
                colour: 1,
                points: normalised(e, false),
            });
        }
        b.push_str(&format!(
            "<h3 style=\"color:{}\">{}</h3>",
            css_colour(i),
            esc(&format!("{} · {} · {}×{}", l.name, l.kind, l.d_out, l.d_in))
        ));
        b.push_str(&figure(
            line_chart(
                &lines,
                "index",
                "share of energy",
                true,
                (640, 240),
                &format!("spectra of {}", l.name),
            ),
            "",
        ));
    }
    b.push_str("</div>\n");
    page("edgeslim analyze: low-rank structure", &b)
}

// ---- compress lowrank / quantize ---------------------------------------------------------------

fn facts_rows(before: &ModelFacts, after: &ModelFacts) -> String {
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.3}×", a / b)
        } else {
            ABSENT.into()
        }
    };
    let lat = |f: &ModelFacts| {
        f.latency_p50_ms
            .map(fmt_ms)
            .unwrap_or_else(|| ABSENT.into())
    };
    table(
        &["", "original", "compressed", "compressed / original"],
        &[
            vec![
                "parameters".into(),
                fmt_int(before.params),
                fmt_int(after.params),
                ratio(after.params as f64, before.params as f64),
            ],
            vec![
                "MACs".into(),
                fmt_macs(before.macs),
                fmt_macs(after.macs),
                ratio(after.macs as f64, before.macs as f64),
            ],
            vec![
                "file size".into(),
                fmt_bytes(before.file_bytes),
                fmt_bytes(after.file_bytes),
                ratio(after.file_bytes as f64, before.file_bytes as f64),
            ],
            vec![
                format!("tract latency p50 (1 thread, {} runs)", before.latency_runs),
                lat(before),
                lat(after),
                match (after.latency_p50_ms, before.latency_p50_ms) {
                    (Some(a), Some(b)) => ratio(a, b),
                    _ => ABSENT.into(),
                },
            ],
        ],
    )
}

pub(crate) fn fidelity_table(f: &Fidelity, held_out: &str) -> String {
    let mut rows = vec![
        vec!["samples".into(), f.samples.to_string()],
        vec![
            "top-1 agreement with the original".into(),
            fmt_pct(f.top1_agreement),
        ],
        vec!["mean cosine of outputs".into(), fmt_f(f.mean_cosine, 5)],
        vec!["min cosine".into(), fmt_f(f.min_cosine, 5)],
        vec!["max |difference|".into(), format!("{:.3e}", f.max_abs_diff)],
    ];
    if let (Some(a0), Some(a1)) = (f.accuracy_reference, f.accuracy) {
        rows.push(vec!["accuracy, original".into(), fmt_pct(a0)]);
        rows.push(vec!["accuracy, compressed".into(), fmt_pct(a1)]);
    }
    format!(
        "<p>On <b>{}</b>:</p>\n{}",
        esc(held_out),
        table(&["", "value"], &rows)
    )
}

pub(crate) fn tract_ops_table(before: &ModelFacts, after: &ModelFacts) -> String {
    let list = |f: &ModelFacts| {
        f.tract_ops
            .iter()
            .take(8)
            .map(|(op, s)| format!("{} {}", esc(op), fmt_pct(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    table(
        &["", "tract plan ops by time share"],
        &[
            vec!["original".into(), list(before)],
            vec!["compressed".into(), list(after)],
        ],
    )
}

pub fn compress_page(r: &CompressReport) -> String {
    let mut b = String::new();
    let rule = match r.rule {
        edgeslim_compress::lowrank::RankRule::Budget(x) => format!("budget {x}"),
        edgeslim_compress::lowrank::RankRule::Fixed(k) => format!("fixed rank {k}"),
    };
    b.push_str(&format!(
        "<p><code>{}</code> → <code>{}</code><br>method <b>{}</b>, {}{}{}; compression took {:.1} s, \
         peak RSS {}.</p>\n",
        esc(&r.model),
        esc(&r.output),
        r.method.as_str(),
        esc(&rule),
        r.layers_pattern
            .as_ref()
            .map(|p| format!(", layers matching <code>{}</code>", esc(p)))
            .unwrap_or_default(),
        r.calib
            .as_ref()
            .map(|c| format!(
                ", calibrated on <code>{}</code> ({} samples)",
                esc(c),
                r.calib_samples.unwrap_or(0)
            ))
            .unwrap_or_default(),
        r.compress_seconds,
        r.peak_rss_bytes.map(fmt_bytes).unwrap_or_else(|| ABSENT.into()),
    ));
    for w in &r.warnings {
        b.push_str(&format!("<p class=\"warn\">{}</p>\n", esc(w)));
    }
    b.push_str("<h2 id=\"model\">Model before and after</h2>\n");
    b.push_str(&facts_rows(&r.before, &r.after));
    b.push_str(&tract_ops_table(&r.before, &r.after));
    b.push_str("<h2 id=\"fidelity\">Fidelity and task metric (held out)</h2>\n");
    match (&r.fidelity, &r.held_out) {
        (Some(f), Some(h)) => b.push_str(&fidelity_table(f, h)),
        _ => b.push_str("<p class=\"note\">No evaluation data: give --calib or --eval.</p>\n"),
    }
    if let Some(s) = &r.search {
        b.push_str("<h2 id=\"search\">Rank search</h2>\n");
        b.push_str(&format!(
            "<p>Metric: {} on {} ({} samples); baseline {}, tolerance {}, after the search {}.</p>\n",
            esc(&s.metric),
            esc(&s.split),
            s.samples,
            fmt_pct(s.baseline),
            s.tolerance,
            fmt_pct(s.final_metric)
        ));
        let rows: Vec<Vec<String>> = s
            .steps
            .iter()
            .map(|st| {
                vec![
                    esc(&st.layer),
                    st.trials
                        .iter()
                        .map(|t| format!("r={} → {}", t.rank, fmt_pct(t.metric)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    st.chosen
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "dense".into()),
                ]
            })
            .collect();
        b.push_str(&table(&["layer (visiting order)", "trials", "kept"], &rows));
    }
    b.push_str("<h2 id=\"layers\">Layers</h2>\n");
    b.push_str(&format!(
        "<p>Decomposed layers: {} → {} weights ({}).</p>\n",
        fmt_int(r.layer_params_before as u64),
        fmt_int(r.layer_params_after as u64),
        if r.layer_params_before > 0 {
            fmt_pct(r.layer_params_after as f64 / r.layer_params_before as f64)
        } else {
            ABSENT.into()
        }
    ));
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| {
            vec![
                esc(&l.name),
                esc(&l.kind),
                format!("{}×{}", l.d_out, l.d_in),
                fmt_f(l.kappa, 1),
                l.rank
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| ABSENT.into()),
                fmt_int(l.params_before as u64),
                fmt_int(l.params_after as u64),
                l.kept_energy.map(fmt_pct).unwrap_or_else(|| ABSENT.into()),
                format!(
                    "{}{}",
                    esc(&l.status),
                    l.note
                        .as_ref()
                        .map(|n| format!(": {}", esc(n)))
                        .unwrap_or_default()
                ),
            ]
        })
        .collect();
    b.push_str(&table(
        &[
            "layer",
            "kind",
            "d_out×d_in",
            "κ",
            "rank",
            "params before",
            "params after",
            "energy kept",
            "status",
        ],
        &rows,
    ));
    let groups: Vec<BarGroup> = r
        .layers
        .iter()
        .filter(|l| l.rank.is_some())
        .map(|l| BarGroup {
            label: l.name.clone(),
            bars: vec![
                Some(Bar {
                    value: l.params_before as f64,
                    text: fmt_int(l.params_before as u64),
                }),
                Some(Bar {
                    value: l.params_after as f64,
                    text: fmt_int(l.params_after as u64),
                }),
            ],
        })
        .collect();
    if !groups.is_empty() {
        b.push_str(&format!(
            "<p class=\"legend\"><span class=\"swatch\" style=\"background:{}\"></span>before\
             <span class=\"swatch\" style=\"background:{}\"></span>after</p>\n",
            css_colour(0),
            css_colour(1)
        ));
        b.push_str(&figure(
            bar_chart(
                &BarChart {
                    groups,
                    colours: vec![0, 1],
                    x_desc: "parameters".into(),
                },
                "parameters per decomposed layer",
            ),
            "Parameters of each decomposed layer before and after.",
        ));
    }
    page("edgeslim compress lowrank", &b)
}

pub fn quantize_page(r: &edgeslim_compress::quantize::QuantizeReport) -> String {
    use edgeslim_compress::quantize::Precision;
    let mut b = String::new();
    let what = match r.precision {
        Precision::Fp16 { compute: false } => "fp16 weights, f32 compute".to_string(),
        Precision::Fp16 { compute: true } => {
            "fp16 weights and compute (ARMv8.2+ boards)".to_string()
        }
        Precision::Int8 {
            format,
            per_channel,
            reduce_range,
            method,
            percentile,
        } => format!(
            "int8 {}, {}{} weights, activation ranges by {}{}",
            format.as_str(),
            if per_channel {
                "per-channel"
            } else {
                "per-tensor"
            },
            if reduce_range { " 7-bit" } else { "" },
            method.as_str(),
            if method == edgeslim_compress::quantize::ranges::RangeMethod::Percentile {
                format!(" ({percentile})")
            } else {
                String::new()
            }
        ),
    };
    b.push_str(&format!(
        "<p><code>{}</code> → <code>{}</code><br>{}{}; took {:.1} s.</p>\n",
        esc(&r.model),
        esc(&r.output),
        esc(&what),
        r.calib
            .as_ref()
            .map(|c| format!(
                ", calibrated on <code>{}</code> ({} samples)",
                esc(c),
                r.calib_samples.unwrap_or(0)
            ))
            .unwrap_or_default(),
        r.quantize_seconds
    ));
    for w in &r.warnings {
        b.push_str(&format!("<p class=\"warn\">{}</p>\n", esc(w)));
    }
    b.push_str("<h2 id=\"kernels\">What tract runs</h2>\n");
    b.push_str(&table(
        &[
            "",
            "verdict",
            "plan nodes",
            "matrix products",
            "integer",
            "f16",
        ],
        &[
            vec![
                "original".into(),
                esc(&r.plan_before.verdict),
                r.plan_before.nodes.to_string(),
                r.plan_before.matmul_nodes.to_string(),
                r.plan_before.integer_matmul_nodes.to_string(),
                r.plan_before.f16_matmul_nodes.to_string(),
            ],
            vec![
                "quantized".into(),
                esc(&r.plan_after.verdict),
                r.plan_after.nodes.to_string(),
                r.plan_after.matmul_nodes.to_string(),
                r.plan_after.integer_matmul_nodes.to_string(),
                r.plan_after.f16_matmul_nodes.to_string(),
            ],
        ],
    ));
    let ops = |p: &edgeslim_compress::quantize::plan::PlanSummary| {
        p.ops
            .iter()
            .map(|(k, v)| format!("{} ×{v}", esc(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sigs = |p: &edgeslim_compress::quantize::plan::PlanSummary| {
        format!(
            "{} <br>(8-bit tensors in the plan: {})",
            p.product_signatures
                .iter()
                .map(|x| esc(x))
                .collect::<Vec<_>>()
                .join("<br>"),
            p.int8_tensors
        )
    };
    b.push_str(&table(
        &[
            "",
            "tract plan ops",
            "matrix products: op(input types) → output types",
        ],
        &[
            vec!["original".into(), ops(&r.plan_before), sigs(&r.plan_before)],
            vec!["quantized".into(), ops(&r.plan_after), sigs(&r.plan_after)],
        ],
    ));
    b.push_str("<h2 id=\"model\">Model before and after</h2>\n");
    b.push_str(&facts_rows(&r.before, &r.after));
    b.push_str(&tract_ops_table(&r.before, &r.after));
    b.push_str("<h2 id=\"fidelity\">Fidelity (held out, tract)</h2>\n");
    match (&r.fidelity, &r.held_out) {
        (Some(f), Some(h)) => b.push_str(&fidelity_table(f, h)),
        _ => b.push_str("<p class=\"note\">No evaluation data: give --calib or --eval.</p>\n"),
    }
    if let Some(e) = &r.engines {
        b.push_str("<h2 id=\"engines\">tract vs ONNX Runtime (quantized model)</h2>\n");
        match &e.ort_error {
            Some(err) => b.push_str(&format!(
                "<p class=\"warn\">ONNX Runtime could not run it: {}</p>\n",
                esc(err)
            )),
            None => b.push_str(&table(
                &["samples", "max |tract − ORT|", "top-1 agreement"],
                &[vec![
                    e.samples.to_string(),
                    format!("{:.3e}", e.max_abs_diff),
                    fmt_pct(e.top1_agreement),
                ]],
            )),
        }
    }
    if let Some(q) = &r.int8 {
        b.push_str(&format!(
            "<h2 id=\"qdq\">QDQ</h2>\n<p>{} nodes quantized; {} activations, {} weights, {} biases; \
             opset {} → {}.</p>\n",
            q.quantized_nodes.len(),
            q.activations,
            q.weights,
            q.biases,
            q.opset_before,
            q.opset_after
        ));
        let rows: Vec<Vec<String>> = r
            .ranges
            .iter()
            .map(|(n, rg)| vec![esc(n), format!("{:.4}", rg.min), format!("{:.4}", rg.max)])
            .collect();
        b.push_str("<details><summary>Activation ranges</summary>\n");
        b.push_str(&table(&["tensor", "min", "max"], &rows));
        b.push_str("</details>\n");
    }
    if let Some(f) = &r.fp16 {
        b.push_str(&format!(
            "<h2 id=\"fp16\">fp16</h2>\n<p>{} tensors ({} values) converted; largest rounding {:.2e} of a \
             tensor's scale.</p>\n",
            f.tensors_converted, f.values_converted, f.max_relative_rounding
        ));
    }
    page("edgeslim compress quantize", &b)
}
