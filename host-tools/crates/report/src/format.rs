//! Text helpers for the HTML report: escaping and number formatting.
//!
//! Every value that came from a JSON report passes through [`esc`] before it reaches the page:
//! model paths, node and tensor names are free text and may hold `<`, `&` or quotes.
//! Missing values (JSON null, no samples, NaN) print as [`ABSENT`], never as an invented number.

/// What the page shows for a value the report does not have.
pub(crate) const ABSENT: &str = "—";

/// Escape text for HTML element content and for quoted attribute values (the demo's sections
/// use it too).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Escaped text, or [`ABSENT`] when the report has no value.
pub(crate) fn esc_opt(text: Option<&str>) -> String {
    text.map(esc).unwrap_or_else(|| ABSENT.to_string())
}

/// Shorten a label for a chart axis (the tables keep the full text). Counts characters, not
/// bytes, so names with non-ASCII characters are never cut inside a character.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let keep: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{keep}…")
}

/// Milliseconds with about four significant digits: 247.8, 35.91, 3.102, 0.1403.
pub(crate) fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return ABSENT.to_string();
    }
    let a = ms.abs();
    if a >= 100.0 {
        format!("{ms:.1}")
    } else if a >= 10.0 {
        format!("{ms:.2}")
    } else if a >= 1.0 {
        format!("{ms:.3}")
    } else {
        format!("{ms:.4}")
    }
}

/// A plain float with a fixed number of decimals, or [`ABSENT`] when it is not a number.
pub(crate) fn fmt_f(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        ABSENT.to_string()
    }
}

pub(crate) fn fmt_opt_f(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| fmt_f(v, decimals))
        .unwrap_or_else(|| ABSENT.to_string())
}

/// A fraction in [0, 1] as a percentage.
pub(crate) fn fmt_pct(fraction: f64) -> String {
    if fraction.is_finite() {
        format!("{:.1}%", fraction * 100.0)
    } else {
        ABSENT.to_string()
    }
}

/// Differences between engines span many orders of magnitude; scientific notation keeps
/// 1e-7 and 3.2 readable in one column.
pub(crate) fn fmt_sci(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3e}")
    } else {
        ABSENT.to_string()
    }
}

/// An integer with thin grouping: 2 301 935 744 (thin spaces read in every locale).
pub(crate) fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

/// Multiply-accumulates with a unit prefix: 2.30 G, 16.3 M.
pub(crate) fn fmt_macs(macs: u64) -> String {
    let m = macs as f64;
    if m >= 1e9 {
        format!("{:.2} G", m / 1e9)
    } else if m >= 1e6 {
        format!("{:.2} M", m / 1e6)
    } else if m >= 1e3 {
        format!("{:.1} k", m / 1e3)
    } else {
        macs.to_string()
    }
}

/// Bytes in binary units, as `ps` and `free` show memory.
pub(crate) fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    const KIB: f64 = 1024.0;
    if b >= KIB * KIB * KIB {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

pub(crate) fn fmt_opt_bytes(bytes: Option<u64>) -> String {
    bytes.map(fmt_bytes).unwrap_or_else(|| ABSENT.to_string())
}

pub(crate) fn fmt_opt_bool(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".to_string(),
        Some(false) => "no".to_string(),
        None => ABSENT.to_string(),
    }
}

/// `[1,3,640,640]`
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// Seconds since the Unix epoch as a UTC date and time. Computed here (Howard Hinnant's
/// days-to-civil algorithm) because host-tools has no date library and needs none otherwise.
pub(crate) fn fmt_unix_utc(secs: u64) -> String {
    if secs == 0 {
        return ABSENT.to_string();
    }
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// A ratio as a number of times, with two significant digits or more: 2.50, 81.5, 0.0126.
/// Fixed two decimals would print a 80× speed-up as "0.01".
pub(crate) fn fmt_times(r: f64) -> String {
    if !r.is_finite() {
        return ABSENT.to_string();
    }
    let a = r.abs();
    let decimals = if a >= 10.0 {
        1
    } else if a >= 0.1 || a == 0.0 {
        2
    } else {
        (2.0 - a.log10().floor()).min(8.0) as usize
    };
    format!("{r:.decimals$}")
}

/// Which way a ratio `run / baseline` goes, in words for the reader.
#[derive(Clone, Copy)]
pub(crate) enum Better {
    /// Smaller is better: latency. Words: faster / slower.
    LowerIsFaster,
    /// Larger is better: throughput. Words: faster / slower.
    HigherIsFaster,
    /// Memory: less / more memory.
    Memory,
    /// Work: fewer / more MACs.
    Macs,
}

/// `2.50× baseline (slower)`: the ratio run / baseline with the direction spelled out, so
/// nobody has to remember which way round a ratio was taken. Ratios that print as 1.00 say
/// "about the same" rather than claiming a winner the reader cannot see.
pub(crate) fn fmt_ratio(run: f64, baseline: f64, better: Better) -> String {
    if !(run.is_finite() && baseline.is_finite()) || baseline == 0.0 {
        return ABSENT.to_string();
    }
    let r = run / baseline;
    let shown = fmt_times(r);
    let word = if shown == "1.00" {
        "about the same"
    } else {
        let up = r > 1.0;
        match (better, up) {
            (Better::LowerIsFaster, true) | (Better::HigherIsFaster, false) => "slower",
            (Better::LowerIsFaster, false) | (Better::HigherIsFaster, true) => "faster",
            (Better::Memory, true) => "more memory",
            (Better::Memory, false) => "less memory",
            (Better::Macs, true) => "more MACs",
            (Better::Macs, false) => "fewer MACs",
        }
    };
    format!("{shown}× baseline ({word})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc_opt(None), ABSENT);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_ms(247.846), "247.8");
        assert_eq!(fmt_ms(3.10218), "3.102");
        assert_eq!(fmt_ms(f64::NAN), ABSENT);
        assert_eq!(fmt_int(2_301_935_744), "2\u{2009}301\u{2009}935\u{2009}744");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_macs(2_301_935_744), "2.30 G");
        assert_eq!(fmt_bytes(107_315_200), "102.3 MiB");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn unix_time_is_utc_calendar_date() {
        // date -u -d @1795787449 → Fri Nov 27 13:50:49 UTC 2026
        assert_eq!(fmt_unix_utc(1_795_787_449), "2026-11-27 13:50 UTC");
        assert_eq!(fmt_unix_utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn ratios_name_the_winner() {
        assert_eq!(
            fmt_ratio(25.0, 10.0, Better::LowerIsFaster),
            "2.50× baseline (slower)"
        );
        assert_eq!(
            fmt_ratio(2.0, 1.0, Better::HigherIsFaster),
            "2.00× baseline (faster)"
        );
        assert_eq!(
            fmt_ratio(1.0, 1.001, Better::Macs),
            "1.00× baseline (about the same)"
        );
        assert_eq!(fmt_ratio(1.0, 0.0, Better::Memory), ABSENT);
        assert_eq!(
            fmt_ratio(3.102, 246.7, Better::LowerIsFaster),
            "0.0126× baseline (faster)"
        );
        assert_eq!(fmt_times(81.47), "81.5");
    }
}
