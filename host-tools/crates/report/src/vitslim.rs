//! The page of `edgeslim compress vit-slim`: what the search kept per block (the searched
//! shape, as bars), the model before and after, accuracy at each stage, measured latency.

use super::charts::{bar_chart, Bar, BarChart, BarGroup};
use super::compression::{page, table};
use super::format::{esc, fmt_bytes, fmt_f, fmt_int, fmt_macs, fmt_ms, fmt_pct, ABSENT};
use crate::Result;
use edgeslim_vitslim::VitSlimReport;
use std::path::Path;

fn ratio(a: u64, b: u64) -> String {
    if a == 0 {
        ABSENT.into()
    } else {
        fmt_pct(b as f64 / a as f64)
    }
}

/// A mask magnitude for the table, or the absent mark.
fn mask_cell(v: Option<&f32>) -> String {
    v.map(|m| fmt_f(*m as f64, 3))
        .unwrap_or_else(|| ABSENT.into())
}

pub fn vitslim_page(r: &VitSlimReport, model: &str) -> String {
    let mut body = String::new();
    let acc = &r.accuracy;
    body.push_str(&format!(
        "<section><h2>Result</h2><p><strong>{} of the parameters and {} of the MACs, held-out accuracy {} → {}</strong>{}.</p>\
         <p class=\"meta\">Selection: {}; masks: {}; budget {} of the {}; every mask type keeps its top {} of values (global threshold); \
         search {} s, retraining {} s{}.</p></section>\n",
        ratio(r.params.0, r.params.1),
        ratio(r.macs.0, r.macs.1),
        fmt_pct(acc.original),
        fmt_pct(acc.retrained),
        r.latency
            .as_ref()
            .map(|l| format!(
                ", tract p50 {} → {} ({:.2}× faster, {} threads, {} interleaved runs)",
                fmt_ms(l.original_p50_ms),
                fmt_ms(l.slim_p50_ms),
                l.original_p50_ms / l.slim_p50_ms.max(1e-12),
                l.threads,
                l.runs
            ))
            .unwrap_or_default(),
        esc(r.selection.as_str()),
        esc(&r.masks.iter().map(|k| k.key()).collect::<Vec<_>>().join(", ")),
        fmt_pct(r.budget),
        esc(&r.budget_by),
        fmt_pct(r.kept_fraction),
        fmt_f(r.search_seconds, 0),
        fmt_f(r.retrain_seconds, 0),
        r.peak_rss_bytes
            .map(|b| format!(", peak RSS {}", fmt_bytes(b)))
            .unwrap_or_default(),
    ));
    let rows = vec![
        vec![
            "parameters".into(),
            fmt_int(r.params.0),
            fmt_int(r.params.1),
            ratio(r.params.0, r.params.1),
        ],
        vec![
            "MACs".into(),
            fmt_macs(r.macs.0),
            fmt_macs(r.macs.1),
            ratio(r.macs.0, r.macs.1),
        ],
    ];
    body.push_str(&format!(
        "<section><h2>Size</h2>{}</section>\n",
        table(&["", "original", "slim", "share"], &rows)
    ));
    let mut stages = vec![vec!["original".into(), fmt_pct(acc.original)]];
    if let Some(a) = acc.after_search {
        stages.push(vec!["masked, after the search".into(), fmt_pct(a)]);
    }
    stages.extend([
        vec!["sliced, before retraining".into(), fmt_pct(acc.sliced)],
        vec![
            format!("retrained (epoch {} kept)", r.retrain_best_epoch),
            fmt_pct(acc.retrained),
        ],
    ]);
    body.push_str(&format!(
        "<section><h2>Accuracy</h2>{}<p class=\"meta\">{} held-out samples.</p></section>\n",
        table(&["stage", "held-out accuracy"], &stages),
        acc.held_out_samples
    ));
    let groups: Vec<BarGroup> = r
        .blocks
        .iter()
        .map(|b| {
            let attn = (b.heads.1 * b.head_dim.1) as f64 / (b.heads.0 * b.head_dim.0).max(1) as f64;
            let mlp = b.mlp_units.map(|(a, k)| k as f64 / a.max(1) as f64);
            BarGroup {
                label: format!("block {}", b.block),
                bars: vec![
                    Some(Bar {
                        value: 100.0 * attn,
                        text: format!("{}×{}", b.heads.1, b.head_dim.1),
                    }),
                    mlp.map(|m| Bar {
                        value: 100.0 * m,
                        text: format!("{} units", b.mlp_units.map(|u| u.1).unwrap_or(0)),
                    }),
                ],
            }
        })
        .collect();
    let chart = bar_chart(
        &BarChart {
            groups,
            colours: vec![0, 1],
            x_desc: "% kept (first bar: attention heads × head size, second: MLP units)".into(),
        },
        "kept attention channels and MLP units per block",
    );
    let block_rows: Vec<Vec<String>> = r
        .blocks
        .iter()
        .map(|b| {
            vec![
                format!("block {}", b.block),
                format!("{} → {}", b.tokens.0, b.tokens.1),
                format!("{} → {}", b.heads.0, b.heads.1),
                format!("{} → {}", b.head_dim.0, b.head_dim.1),
                b.mlp_units
                    .map(|(a, k)| format!("{a} → {k}"))
                    .unwrap_or_else(|| ABSENT.into()),
                mask_cell(b.attention_mask.first()),
                mask_cell(b.attention_mask.last()),
                mask_cell(b.mlp_mask.first()),
                mask_cell(b.mlp_mask.last()),
            ]
        })
        .collect();
    body.push_str(&format!(
        "<section><h2>The searched shape</h2>{}{}</section>\n",
        chart.unwrap_or_else(|e| format!("<p class=\"meta\">no chart: {}</p>", esc(&e))),
        table(
            &[
                "block",
                "tokens",
                "heads",
                "head size",
                "MLP units",
                "attention mask max",
                "min",
                "MLP mask max",
                "min"
            ],
            &block_rows
        )
    ));
    if !r.notes.is_empty() {
        body.push_str("<section><h2>Notes</h2><ul>");
        for n in &r.notes {
            body.push_str(&format!("<li>{}</li>", esc(n)));
        }
        body.push_str("</ul></section>\n");
    }
    page(&format!("ViT-Slim: {model}"), &body)
}

/// `report.json` and `index.html` into `dir`.
pub fn write_vitslim(r: &VitSlimReport, model: &str, dir: &Path) -> Result<()> {
    crate::write::write(dir, crate::write::DATA, r, &vitslim_page(r, model))
}
