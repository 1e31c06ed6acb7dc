//! Achieved GFLOP/s as a share of the board's theoretical fp32 peak (targets/*.toml): the
//! number that says how much of the chip a model uses, comparable across boards.

use super::format::{esc, fmt_pct, ABSENT};
use edgeslim_boards::profile::builtin_named;
use edgeslim_runtime::report::BenchReport;

/// The summary-table cell for one run (HTML, escaped).
pub(crate) fn share_cell(r: &BenchReport) -> String {
    let note = |text: &str| format!("{ABSENT} <span class=\"note\">({})</span>", esc(text));
    let Some(name) = r.target_profile.as_deref() else {
        return ABSENT.to_string();
    };
    let Some(achieved) = r.profile.as_ref().map(|p| p.achieved_gflops) else {
        return ABSENT.to_string();
    };
    if r.device.emulated {
        return note("emulated: no share of a board's peak");
    }
    let Some(profile) = builtin_named(name) else {
        return note(&format!("no built-in profile '{name}'"));
    };
    let Some(peak) = profile.peak_gflops().filter(|p| *p > 0.0) else {
        return note(&format!("{name} states no peak"));
    };
    let mut cell = format!(
        "{} <span class=\"note\">of {} GFLOP/s ({})",
        fmt_pct(achieved / peak),
        fmt_num(peak),
        esc(name)
    );
    // One thread can reach at most 1/cores of a peak counted over all cores.
    if let Some(cores) = profile.cores.filter(|c| (r.threads as u32) < *c) {
        cell.push_str(&format!("; {} of {cores} cores ran", r.threads));
    }
    cell.push_str("</span>");
    cell
}

/// 48 -> "48", 153.6 -> "153.6".
fn fmt_num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_short() {
        assert_eq!(fmt_num(48.0), "48");
        assert_eq!(fmt_num(153.6), "153.6");
        assert_eq!(fmt_num(45.76), "45.76");
    }
}
