//! The pages of `edgeslim adapt`: one run (`adapt --report DIR`: accuracy at each stage, the
//! adapter chosen per layer as bars, the search's generations, the training losses) and a
//! comparison of runs (`edgeslim report A.json B.json …` on adapt reports: held-out accuracy
//! against the values each method trained, the transfer table of the GLoRA paper).

use super::charts::{bar_chart, css_colour, render_svg, run_colour, Bar, BarChart, BarGroup};
use super::compression::{page, table};
use super::format::{esc, fmt_f, fmt_int, fmt_ms, fmt_pct, ABSENT};
use crate::Result;
use edgeslim_glora::AdaptReport;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "sans-serif";

fn shots(r: &AdaptReport) -> String {
    r.shots
        .map(|k| format!("{k} per class"))
        .unwrap_or_else(|| "all".into())
}

/// The page of one run.
pub fn adapt_page(r: &AdaptReport, model: &str) -> String {
    let mut body = format!(
        "<section><h2>Result</h2><p><strong>{}: held-out accuracy {} → {} (merged), {} of {} \
         values trained ({})</strong>.</p><p class=\"meta\">Data {}, {} training samples ({}), \
         {} held-out; {} s of training{}{}.</p></section>\n",
        esc(&r.method),
        fmt_pct(r.before.accuracy),
        fmt_pct(r.merged.accuracy),
        fmt_int(r.trainable_params as u64),
        fmt_int(r.total_params),
        fmt_pct(r.trainable_params as f64 / r.total_params.max(1) as f64),
        esc(&r.data),
        r.train_samples,
        shots(r),
        r.held_out_samples,
        fmt_f(r.train_seconds, 0),
        r.latency
            .as_ref()
            .map(|l| format!(
                "; tract p50 {} (input) and {} (written), {} interleaved runs, {} thread",
                fmt_ms(l.original_p50_ms),
                fmt_ms(l.adapted_p50_ms),
                l.runs,
                l.threads
            ))
            .unwrap_or_default(),
        r.stopped
            .as_ref()
            .map(|s| format!("; stopped: {}", esc(s)))
            .unwrap_or_default(),
    );
    let stages = vec![
        vec![
            "before training".into(),
            fmt_pct(r.before.accuracy),
            fmt_f(r.before.loss, 4),
        ],
        vec![
            format!("trained, with adapters (epoch {})", r.best_epoch),
            fmt_pct(r.adapted.accuracy),
            fmt_f(r.adapted.loss, 4),
        ],
        vec![
            "merged (the written model)".into(),
            fmt_pct(r.merged.accuracy),
            fmt_f(r.merged.loss, 4),
        ],
    ];
    body.push_str(&format!(
        "<section><h2>Accuracy</h2>{}</section>\n",
        table(&["stage", "held-out accuracy", "loss"], &stages)
    ));
    if !r.adapters.is_empty() {
        let groups: Vec<BarGroup> = r
            .adapters
            .iter()
            .map(|a| BarGroup {
                label: a.node.clone(),
                bars: vec![Some(Bar {
                    value: a.params as f64,
                    text: a.support.clone(),
                })],
            })
            .collect();
        let chart = bar_chart(
            &BarChart {
                groups,
                colours: vec![0],
                x_desc: "adapter values trained per layer (the support at the bar's end)".into(),
            },
            "adapter values and support per layer",
        );
        let rows: Vec<Vec<String>> = r
            .adapters
            .iter()
            .map(|a| vec![a.node.clone(), a.support.clone(), fmt_int(a.params as u64)])
            .collect();
        body.push_str(&format!(
            "<section><h2>Adapters per layer</h2>{}{}<p class=\"meta\">Head: {} (trained by \
             every method). Merged into the layer's own weights: W' = W0 + W0⊙A + B, b' = b0 + \
             b0⊙D + E + W0·C.</p></section>\n",
            chart.unwrap_or_else(|e| format!("<p class=\"meta\">no chart: {}</p>", esc(&e))),
            table(&["layer", "support (A, B, C, D, E)", "values"], &rows),
            esc(r.head.as_deref().unwrap_or(ABSENT)),
        ));
    }
    if let Some(s) = &r.search {
        let rows: Vec<Vec<String>> = s
            .generations
            .iter()
            .map(|g| {
                vec![
                    g.generation.to_string(),
                    fmt_pct(g.best),
                    fmt_pct(g.mean),
                    fmt_int(g.best_params as u64),
                ]
            })
            .collect();
        body.push_str(&format!(
            "<section><h2>Support search</h2><p>Supernet trained {} s; {} configurations scored \
             on {} samples in {} s (population {}, {} generations, budget {}); the chosen one \
             scored {} with the shared weights.</p>{}</section>\n",
            fmt_f(s.supernet_seconds, 0),
            s.evaluations,
            s.search_samples,
            fmt_f(s.search_seconds, 0),
            s.options.population,
            s.options.generations,
            s.options
                .budget
                .map(|b| format!("{} values", fmt_int(b as u64)))
                .unwrap_or_else(|| "none".into()),
            fmt_pct(s.fitness),
            table(
                &["generation", "best fitness", "mean", "best's values"],
                &rows
            )
        ));
    }
    if !r.epoch_losses.is_empty() {
        let rows: Vec<Vec<String>> = r
            .epoch_losses
            .iter()
            .enumerate()
            .map(|(i, l)| vec![(i + 1).to_string(), fmt_f(*l, 4)])
            .collect();
        body.push_str(&format!(
            "<section><h2>Training</h2>{}</section>\n",
            table(&["epoch", "training loss"], &rows)
        ));
    }
    page(&format!("adapt: {model}"), &body)
}

/// `report.json` and `index.html` into `dir`.
pub fn write_adapt(r: &AdaptReport, model: &str, dir: &Path) -> Result<()> {
    crate::write::write(dir, crate::write::DATA, r, &adapt_page(r, model))
}

/// Method names in order of first appearance: one colour each.
fn methods(runs: &[(String, AdaptReport)]) -> Vec<String> {
    let mut m: Vec<String> = Vec::new();
    for (_, r) in runs {
        let key = method_key(&r.method);
        if !m.contains(&key) {
            m.push(key);
        }
    }
    m
}

/// "GLoRA A=…" and "LoRA r=4" are families: colour by the family, label with the detail.
fn method_key(method: &str) -> String {
    method
        .split([' ', ','])
        .next()
        .unwrap_or(method)
        .to_string()
}

/// 1000 → "1k", 2.5e6 → "2.5M": the log axis' labels.
fn compact_count(v: f64) -> String {
    let (x, unit) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let x = (x * 10.0).round() / 10.0;
    format!("{x}{unit}")
}

/// Accuracy against trained values (log axis), one point per run, coloured by method.
fn transfer_chart(runs: &[(String, AdaptReport)]) -> std::result::Result<String, String> {
    let families = methods(runs);
    let pts: Vec<(f64, f64, usize, String)> = runs
        .iter()
        .filter(|(_, r)| r.trainable_params > 0)
        .map(|(_, r)| {
            let fam = families
                .iter()
                .position(|f| *f == method_key(&r.method))
                .unwrap_or(0);
            (
                (r.trainable_params as f64).log10(),
                100.0 * r.merged.accuracy,
                fam,
                r.shots
                    .map(|k| format!("{k}-shot"))
                    .unwrap_or_else(|| "all".into()),
            )
        })
        .collect();
    if pts.is_empty() {
        return Err("no run to plot".into());
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (x0, x1) = ((x0 - 0.2).floor(), (x1 + 0.2).ceil());
    render_svg(
        (760, 440),
        "held-out accuracy against trained values",
        |root| {
            let mut c = ChartBuilder::on(root)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, 0.0..100.0)?;
            c.configure_mesh()
                .bold_line_style(BLACK.mix(0.12))
                .light_line_style(TRANSPARENT)
                .x_desc("values trained (log scale)")
                .y_desc("held-out accuracy of the written model (%)")
                .x_labels((x1 - x0) as usize + 1)
                .x_label_formatter(&|v| compact_count(10f64.powf(*v)))
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 12))
                .draw()?;
            for (x, y, fam, label) in &pts {
                let colour = run_colour(*fam);
                // The label beside the point, not under it.
                let mark = EmptyElement::at((*x, *y))
                    + Circle::new((0, 0), 4, colour.filled())
                    + Text::new(
                        label.clone(),
                        (7, -5),
                        (FONT, 10).into_font().color(&colour),
                    );
                c.draw_series(std::iter::once(mark))?;
            }
            Ok(())
        },
    )
}

/// The comparison page of several runs (`sources[i]` is where run i was read from).
pub fn transfer_page(runs: &[(String, AdaptReport)], title: &str) -> String {
    let families = methods(runs);
    let legend: String = families
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                "<span style=\"color:{}\">● {}</span> ",
                css_colour(i),
                esc(f)
            )
        })
        .collect();
    let mut body = String::new();
    match transfer_chart(runs) {
        Ok(svg) => body.push_str(&format!(
            "<section><h2>Accuracy against trained values</h2>{svg}<p class=\"meta\">{legend}\
             — each point is one run, labelled with its shots per class (all: the whole training split).</p></section>\n"
        )),
        Err(e) => body.push_str(&format!("<p>(no chart: {})</p>", esc(&e))),
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|(src, r)| {
            vec![
                src.clone(),
                r.data.clone(),
                shots(r),
                r.method.clone(),
                fmt_int(r.trainable_params as u64),
                fmt_pct(r.merged.accuracy),
                fmt_f(r.train_seconds, 0),
                r.search
                    .as_ref()
                    .map(|s| fmt_f(s.supernet_seconds + s.search_seconds, 0))
                    .unwrap_or_else(|| ABSENT.into()),
                r.held_out_samples.to_string(),
            ]
        })
        .collect();
    body.push_str(&format!(
        "<section><h2>Runs</h2>{}<p class=\"meta\">Accuracy of the written (merged) model on \
         the held-out split; training seconds exclude the support search, shown apart.</p>\
         </section>\n",
        table(
            &[
                "report",
                "data",
                "shots",
                "method",
                "values trained",
                "held-out accuracy",
                "training s",
                "search s",
                "held-out samples"
            ],
            &rows
        )
    ));
    page(title, &body)
}
