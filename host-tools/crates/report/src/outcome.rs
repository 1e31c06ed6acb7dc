//! The section every method's page opens with: the [`Summary`] figures, in the same table for
//! every method, so two pages read side by side.

use crate::format::{esc, fmt_int, fmt_macs, fmt_ms, fmt_opt_f, fmt_pct, ABSENT};
use edgeslim_compress::pipeline::Summary;

/// An HTML section with the summary's figures (before, after, after/before).
pub fn summary_section(s: &Summary) -> String {
    let share = |b: u64, a: u64| {
        if b == 0 {
            ABSENT.to_string()
        } else {
            fmt_pct(a as f64 / b as f64)
        }
    };
    let ms = |v: Option<f64>| v.map(fmt_ms).unwrap_or_else(|| ABSENT.to_string());
    let pct = |v: Option<f64>| v.map(fmt_pct).unwrap_or_else(|| ABSENT.to_string());
    let rows = [
        (
            "parameters",
            fmt_int(s.params_before),
            fmt_int(s.params_after),
            share(s.params_before, s.params_after),
        ),
        (
            "MACs",
            fmt_macs(s.macs_before),
            fmt_macs(s.macs_after),
            share(s.macs_before, s.macs_after),
        ),
        (
            "tract p50 (side by side)",
            ms(s.latency_p50_ms_before),
            ms(s.latency_p50_ms_after),
            s.speedup
                .map(|x| format!("{}× faster", fmt_opt_f(Some(x), 2)))
                .unwrap_or_else(|| ABSENT.to_string()),
        ),
        (
            "accuracy",
            pct(s.accuracy_before),
            pct(s.accuracy_after),
            String::new(),
        ),
        (
            "top-1 agreement with the original",
            String::new(),
            pct(s.top1_agreement),
            String::new(),
        ),
        (
            "output cosine (mean)",
            String::new(),
            fmt_opt_f(s.cosine_mean, 4),
            String::new(),
        ),
    ];
    let mut h = format!(
        "<section class=\"summary\"><h2>Summary: {} ({})</h2>\n<table><thead><tr><th></th>\
         <th>original</th><th>compressed</th><th>compressed / original</th></tr></thead><tbody>\n",
        esc(&s.method),
        esc(&s.settings)
    );
    for (what, b, a, r) in rows {
        h.push_str(&format!(
            "<tr><td>{what}</td><td>{b}</td><td>{a}</td><td>{r}</td></tr>\n"
        ));
    }
    h.push_str(
        "</tbody></table><p class=\"note\">The same figures, measured the same way, open every \
         method's report (<code>summary</code> in report.json).</p></section>\n",
    );
    h
}
