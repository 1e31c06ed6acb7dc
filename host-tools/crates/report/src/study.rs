//! The page of `edgeslim study`: the answer first (the fastest variant within one point, and
//! against ONNX Runtime), then the Pareto chart of latency against quality, then every row.

use super::charts::render_svg;
use super::compression::{page, table};
use super::format::{esc, fmt_bytes, fmt_int, fmt_macs, fmt_ms, ABSENT};
use crate::Result;
use edgeslim_compress::study::types::{Quality, Row, Study, FIGURES};
use edgeslim_runtime::fsutil::write_atomic;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "sans-serif";

/// The quality drop the headline quotes (points).
pub const HEADLINE_DROP: f64 = 1.0;

fn pts(v: Option<f64>) -> String {
    v.map_or(ABSENT.to_string(), |v| format!("{v:.2}"))
}

fn times(v: Option<f64>) -> String {
    v.map_or(ABSENT.to_string(), |v| format!("{v:.2}×"))
}

/// One sentence per reference engine: the fastest variant within the drop, or that none is.
pub fn headline(s: &Study) -> String {
    let metric = s.metric.as_str();
    match s.fastest_within(HEADLINE_DROP) {
        Some(r) => format!(
            "Fastest within {HEADLINE_DROP} point of {metric}: {} — {} ms p50 on tract at {} \
             thread(s): {} the original's speed on tract, {} the original's speed on ONNX \
             Runtime; {metric} {} (original {}).",
            r.id,
            r.latency
                .as_ref()
                .map_or(ABSENT.into(), |l| format!("{:.3}", l.p50_ms)),
            s.threads,
            times(r.speedup_vs_tract),
            times(r.speedup_vs_ort),
            pts(r.quality.points(s.metric)),
            pts(s.reference_points()),
        ),
        None => format!(
            "No variant stays within {HEADLINE_DROP} point of the original's {metric} ({}).",
            pts(s.reference_points())
        ),
    }
}

fn chart(s: &Study) -> std::result::Result<String, String> {
    let metric = s.metric;
    let points: Vec<(&Row, f64, f64)> = s
        .rows
        .iter()
        .filter_map(|r| Some((r, r.latency.as_ref()?.p50_ms, r.quality.points(metric)?)))
        .filter(|(_, l, q)| l.is_finite() && q.is_finite())
        .collect();
    let base_q = s.reference_points();
    let refs: Vec<(&str, f64)> = [
        ("original, tract", s.reference.tract.as_ref()),
        ("original, ONNX Runtime", s.reference.ort.as_ref()),
    ]
    .into_iter()
    .filter_map(|(n, l)| Some((n, l?.p50_ms)))
    .collect();
    let xs = points.iter().map(|p| p.1).chain(refs.iter().map(|r| r.1));
    let ys = points.iter().map(|p| p.2).chain(base_q);
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    if x0 > x1 || y0 > y1 {
        return Err("nothing measured to plot".into());
    }
    let xpad = 0.08 * (x1 - x0).max(x1 * 0.1);
    let ypad = 0.08 * (y1 - y0).max(1.0);
    let (x0, x1) = ((x0 - xpad).max(0.0), x1 + xpad);
    let (y0, y1) = (y0 - ypad, y1 + ypad);
    let mut front: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.0.pareto)
        .map(|p| (p.1, p.2))
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    render_svg(
        (760, 440),
        "Pareto chart: tract p50 latency against quality",
        |root| {
            let mut c = ChartBuilder::on(root)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            c.configure_mesh()
                .bold_line_style(BLACK.mix(0.12))
                .light_line_style(TRANSPARENT)
                .x_desc(format!("tract p50 latency, ms ({} threads)", s.threads))
                .y_desc(format!("{} (%)", metric.as_str()))
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 12))
                .draw()?;
            if let Some(q) = base_q {
                let grey = BLACK.mix(0.35);
                c.draw_series(LineSeries::new([(x0, q), (x1, q)], grey.stroke_width(1)))?;
                c.draw_series(LineSeries::new(
                    [(x0, q - HEADLINE_DROP), (x1, q - HEADLINE_DROP)],
                    RED.mix(0.4).stroke_width(1),
                ))?;
                for (name, l) in &refs {
                    c.draw_series(std::iter::once(Cross::new(
                        (*l, q),
                        6,
                        grey.stroke_width(2),
                    )))?;
                    c.draw_series(std::iter::once(Text::new(
                        name.to_string(),
                        (*l, q),
                        (FONT, 11).into_font().color(&grey),
                    )))?;
                }
            }
            c.draw_series(LineSeries::new(
                front.clone(),
                BLUE.mix(0.6).stroke_width(2),
            ))?;
            for (r, l, q) in &points {
                let colour: RGBColor = if r.pareto {
                    BLUE
                } else {
                    RGBColor(120, 120, 120)
                };
                c.draw_series(std::iter::once(Circle::new((*l, *q), 4, colour.filled())))?;
                c.draw_series(std::iter::once(Text::new(
                    r.id.clone(),
                    (*l, *q),
                    (FONT, 10).into_font().color(&colour),
                )))?;
            }
            Ok(())
        },
    )
}

/// The study page.
pub fn study_page(s: &Study) -> String {
    let metric = s.metric;
    let mut body = String::new();
    body.push_str(&format!(
        "<section><h2>Answer</h2><p><strong>{}</strong></p><p class=\"meta\">{} on {} \
         held-out samples of {} ({}); metric: {}{}; recovery: {}{}; {} timed runs per model, \
         interleaved, {} thread(s) ({}){}.</p></section>\n",
        esc(&headline(s)),
        esc(&s.model),
        s.held_out_samples,
        esc(&s.data),
        esc(&s.split),
        metric.as_str(),
        if s.labels {
            " (labels used)"
        } else {
            " (no labels: against the original)"
        },
        s.recover.as_str(),
        if s.recover_epochs > 0 && s.recover.as_str() != "none" {
            format!(", {} epochs", s.recover_epochs)
        } else {
            String::new()
        },
        s.bench_runs,
        s.threads,
        esc(&s.target),
        s.threads_note
            .as_ref()
            .map(|n| format!("; {}", esc(n)))
            .unwrap_or_default(),
    ));
    match chart(s) {
        Ok(svg) => body.push_str(&format!(
            "<section><h2>Latency against quality</h2>{svg}<p class=\"meta\">Blue: the Pareto \
             front (no other variant is both faster and better). Grey line: the original's \
             {m}; red: one point below it. Crosses: the original on tract and on ONNX Runtime.\
             </p></section>\n",
            m = metric.as_str()
        )),
        Err(e) => body.push_str(&format!("<p>(no chart: {})</p>", esc(&e))),
    }
    // The quality figures this kind of model has (the original's, measured against itself).
    let shown: Vec<usize> = (0..FIGURES.len())
        .filter(|&i| s.reference.quality.figures()[i].is_some())
        .collect();
    let mut head = vec![
        "variant", "settings", "params", "file", "MACs", "p50 ms", "p90 ms", "vs tract", "vs ORT",
        "load RSS",
    ];
    head.extend(shown.iter().map(|&i| FIGURES[i]));
    head.extend(["drop (pts)", "recovery", "tract vs ORT", "Pareto"]);
    let figures = |q: &Quality| -> Vec<String> {
        let f = q.figures();
        shown.iter().map(|&i| pts(f[i])).collect()
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let r0 = &s.reference;
    for (name, lat) in [
        ("original (tract)", r0.tract.as_ref()),
        ("original (ONNX Runtime)", r0.ort.as_ref()),
    ] {
        let mut row = vec![
            format!("<em>{name}</em>"),
            if name.contains("Runtime") {
                esc(r0.ort_note.as_deref().unwrap_or(""))
            } else {
                String::new()
            },
            fmt_int(r0.params),
            fmt_bytes(r0.file_bytes),
            fmt_macs(r0.macs),
            lat.map_or(ABSENT.into(), |l| fmt_ms(l.p50_ms)),
            lat.map_or(ABSENT.into(), |l| fmt_ms(l.p90_ms)),
            String::new(),
            String::new(),
            if name.contains("Runtime") {
                String::new()
            } else {
                r0.rss_load_bytes.map_or(ABSENT.into(), fmt_bytes)
            },
        ];
        row.extend(figures(&r0.quality));
        row.extend([String::new(), String::new(), String::new(), String::new()]);
        rows.push(row);
    }
    for r in &s.rows {
        let rec = match (&r.recovery, &r.quality_compressed) {
            (Some(f), Some(q)) => format!(
                "{} {} → {} ({} ep, {:.0} s)",
                f.mode.as_str(),
                pts(q.points(metric)),
                pts(r.quality.points(metric)),
                f.epochs,
                f.seconds
            ),
            _ => r
                .notes
                .iter()
                .find(|n| n.starts_with("not recovered"))
                .cloned()
                .unwrap_or_default(),
        };
        let mut row = vec![
            format!("<a href=\"{}\">{}</a>", esc(&r.file), esc(&r.id)),
            esc(&r.settings.join("; ")),
            fmt_int(r.params),
            fmt_bytes(r.file_bytes),
            fmt_macs(r.macs),
            r.latency
                .as_ref()
                .map_or(ABSENT.into(), |l| fmt_ms(l.p50_ms)),
            r.latency
                .as_ref()
                .map_or(ABSENT.into(), |l| fmt_ms(l.p90_ms)),
            times(r.speedup_vs_tract),
            times(r.speedup_vs_ort),
            r.rss_load_bytes.map_or(ABSENT.into(), fmt_bytes),
        ];
        row.extend(figures(&r.quality));
        row.extend([
            pts(r.drop_points),
            esc(&rec),
            match (&r.engines.max_rel_diff, &r.engines.error) {
                (Some(d), _) => format!("{d:.1e}"),
                (None, Some(e)) => format!("<span title=\"{}\">failed</span>", esc(e)),
                _ => ABSENT.into(),
            },
            if r.pareto {
                "●".into()
            } else {
                String::new()
            },
        ]);
        rows.push(row);
    }
    body.push_str("<section><h2>Every variant</h2>");
    body.push_str(&table(&head, &rows));
    for k in &s.skipped {
        body.push_str(&format!(
            "<p>Not built: <strong>{}</strong>: {}</p>",
            esc(&k.id),
            esc(&k.reason)
        ));
    }
    body.push_str(&format!(
        "<p class=\"meta\">Budgets are fractions of the original's {by}; each method's own \
         setting was found by bisection on the {by} of the model it gives. Speed-ups are the \
         original's p50 over the variant's, all timed in one process in interleaved blocks. \
         Load RSS: resident memory the loaded model added. tract vs ORT: largest output \
         difference relative to the largest output on the first held-out samples.</p></section>",
        by = s.budget_by.as_str()
    ));
    page(&format!("study: {}", s.model), &body)
}

/// `study.json` is written by the study itself; this writes `index.html` beside it.
pub fn write_study_page(s: &Study, dir: &Path) -> Result<()> {
    write_atomic(&dir.join("index.html"), study_page(s).as_bytes())?;
    Ok(())
}
