//! The pruning report page (`compress prune --report DIR`): what was removed, what it bought
//! in measured latency, what it cost in fidelity, layer by layer. Self-contained like the
//! benchmark page: inline CSS and SVG, no scripts.

use super::format::{esc, fmt_f, fmt_int, fmt_macs, fmt_ms, fmt_pct, fmt_sci, ABSENT};
use edgeslim_compress::prune::report::PruneReport;
use std::fmt::Write;

fn ratio(after: f64, before: f64) -> String {
    if before > 0.0 {
        fmt_pct(after / before)
    } else {
        ABSENT.into()
    }
}

/// Horizontal bars: channels before (light) and after (dark) for each layer that changed.
fn channel_chart(r: &PruneReport) -> String {
    let rows: Vec<_> = r
        .layers
        .iter()
        .filter_map(|l| Some((l, l.channels_before?, l.channels_after?)))
        .filter(|(_, b, a)| a != b)
        .take(80)
        .collect();
    if rows.is_empty() {
        return "<p class=\"note\">No layer changed its channel count.</p>".into();
    }
    let max = rows.iter().map(|(_, b, _)| *b).max().unwrap_or(1).max(1) as f64;
    let (lw, bw, rh) = (260.0, 420.0, 14.0);
    let h = rows.len() as f64 * rh + 10.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" role=\"img\" aria-label=\"channels before and after per layer\" font-family=\"sans-serif\" font-size=\"10\">",
        lw + bw + 80.0
    );
    for (i, (l, b, a)) in rows.iter().enumerate() {
        let y = 5.0 + i as f64 * rh;
        let name: String = l
            .name
            .chars()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{lw}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"#c8d6e5\"/>\
             <rect x=\"{lw}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"#2e86de\"/>\
             <text x=\"{:.1}\" y=\"{}\">{a}/{b}</text>",
            lw - 4.0,
            y + rh - 4.0,
            esc(&name),
            bw * *b as f64 / max,
            rh - 3.0,
            bw * *a as f64 / max,
            rh - 3.0,
            lw + bw * *b as f64 / max + 4.0,
            y + rh - 4.0
        );
    }
    s.push_str("</svg>");
    s
}

pub fn render_prune_html(r: &PruneReport) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>pruning: {}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
         .note{{color:#555}}h2{{margin-top:1.5em}}</style></head><body>",
        esc(&r.model)
    );
    let _ = write!(
        b,
        "<h1>Structured pruning</h1><p>{} → {}<br>ratio {} · criterion {} · {} · round to {} · min {} channels{}<br>inputs {}</p>",
        esc(&r.model),
        esc(r.output.as_deref().unwrap_or(ABSENT)),
        fmt_f(r.ratio, 3),
        esc(&r.criterion),
        if r.global { "global" } else { "per group" },
        r.round_to,
        r.min_channels,
        r.exclude
            .as_ref()
            .map(|e| format!(" · exclude <code>{}</code>", esc(e)))
            .unwrap_or_default(),
        esc(&r.input_shapes.join(" "))
    );
    let t = &r.totals;
    let _ = write!(
        b,
        "<h2>Summary</h2><table><tr><th></th><th>before</th><th>after</th><th>after/before</th></tr>\
         <tr><td>parameters</td><td>{}</td><td>{}</td><td>{}</td></tr>\
         <tr><td>MACs</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        fmt_int(t.params_before),
        fmt_int(t.params_after),
        ratio(t.params_after as f64, t.params_before as f64),
        fmt_macs(t.macs_before),
        fmt_macs(t.macs_after),
        ratio(t.macs_after as f64, t.macs_before as f64),
    );
    if let Some(l) = &r.latency {
        let _ = write!(
            b,
            "<tr><td>latency, {} {} thread(s), median ms</td><td>{}</td><td>{}</td><td>{}</td></tr>\
             <tr><td>latency p90 ms</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.engine),
            l.threads,
            fmt_ms(l.before_ms),
            fmt_ms(l.after_ms),
            ratio(l.after_ms, l.before_ms),
            fmt_ms(l.before_p90_ms),
            fmt_ms(l.after_p90_ms),
            ratio(l.after_p90_ms, l.before_p90_ms),
        );
    }
    b.push_str("</table>");
    if let Some(l) = &r.latency {
        let _ = write!(
            b,
            "<p><b>Measured speed-up: {}×</b> ({} runs each; {}).</p>",
            fmt_f(l.speedup, 2),
            l.runs,
            esc(&l.how)
        );
    }
    let _ = write!(
        b,
        "<p>{} channel groups, {} prunable, {} pruned; {} units removed.</p>",
        r.groups_total, r.groups_prunable, r.groups_pruned, r.channels_removed
    );
    if let Some(f) = &r.fidelity {
        let _ = write!(
            b,
            "<h2>Fidelity</h2><p>{} inputs: {}</p><table><tr><th>output</th><th>cosine mean</th><th>cosine min</th><th>max |Δ|</th><th>top-1 agreement</th></tr>",
            f.samples,
            esc(&f.inputs)
        );
        for o in &f.outputs {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&o.name),
                fmt_f(o.cosine_mean, 5),
                fmt_f(o.cosine_min, 5),
                fmt_sci(o.max_abs_diff),
                o.top1_agreement
                    .map(fmt_pct)
                    .unwrap_or_else(|| ABSENT.into())
            );
        }
        b.push_str("</table>");
        if let (Some(x), Some(y)) = (f.accuracy_before, f.accuracy_after) {
            let _ = write!(
                b,
                "<p>Top-1 accuracy on the labelled inputs: {} → {}.</p>",
                fmt_pct(x),
                fmt_pct(y)
            );
        }
    }
    if let Some(e) = &r.exactness {
        let _ = write!(
            b,
            "<h2>Exactness</h2><p>The pruned model against the original with the removed channels' consumer weights zeroed ({}, {}): max |Δ| {} = {} of the largest output (tolerance {}).</p>",
            esc(&e.engine),
            esc(&e.inputs),
            fmt_sci(e.max_abs_diff),
            fmt_sci(e.relative),
            fmt_sci(e.tolerance)
        );
    }
    if let Some(r) = &r.recovery {
        let losses: Vec<String> = r.train_losses.iter().map(|l| fmt_f(*l, 4)).collect();
        let _ = write!(
            b,
            "<h2>Recovery fine-tuning</h2><p>{} epochs on <code>{}</code>{}: held-out accuracy of the pruned model {} → {} ({} samples; epoch {} kept), {} s. Training loss per epoch: {}.{}</p>",
            r.epochs,
            esc(&r.data),
            if r.teacher { ", distilled from the unpruned model" } else { "" },
            fmt_pct(r.accuracy_before),
            fmt_pct(r.accuracy_after),
            r.held_out_samples,
            r.best_epoch,
            fmt_f(r.seconds, 1),
            losses.join(", "),
            r.stopped
                .as_ref()
                .map(|s| format!(" Stopped early: {}.", esc(s)))
                .unwrap_or_default()
        );
    }
    b.push_str("<h2>Channels per layer</h2>");
    b.push_str(&channel_chart(r));
    b.push_str("<h2>Layers</h2><table><tr><th>layer</th><th>op</th><th>channels</th><th>params</th><th>MACs</th></tr>");
    for l in &r.layers {
        let ch = match (l.channels_before, l.channels_after) {
            (Some(x), Some(y)) => format!("{x} → {y}"),
            _ => ABSENT.into(),
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{ch}</td><td>{} → {}</td><td>{} → {}</td></tr>",
            esc(&l.name),
            esc(&l.op),
            fmt_int(l.params_before),
            fmt_int(l.params_after),
            l.macs_before.map(fmt_macs).unwrap_or_else(|| ABSENT.into()),
            l.macs_after.map(fmt_macs).unwrap_or_else(|| ABSENT.into()),
        );
    }
    b.push_str("</table><h2>Groups</h2><table><tr><th>#</th><th>channels</th><th>produced by</th><th>kept because</th></tr>");
    for g in &r.groups {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{} → {}{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            g.id,
            g.channels_before,
            g.channels_after,
            if g.width > 1 {
                format!(" (×{})", g.width)
            } else {
                String::new()
            },
            esc(&g.producers.join(", ")),
            esc(&g.kept_because.join("; "))
        );
    }
    b.push_str("</table>");
    if !r.notes.is_empty() {
        b.push_str("<h2>Notes</h2><ul>");
        for n in &r.notes {
            let _ = write!(b, "<li>{}</li>", esc(n));
        }
        b.push_str("</ul>");
    }
    b.push_str("</body></html>\n");
    b
}
