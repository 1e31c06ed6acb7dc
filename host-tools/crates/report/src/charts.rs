//! Charts as inline SVG, drawn with plotters' SVG backend.
//!
//! Text: host-tools builds plotters without `ttf`, so plotters uses its "naive" font module. It
//! needs no font files: the SVG backend writes every label as an SVG `<text>` element with a
//! `font-family` attribute (escaped), and the browser picks the font. Only plotters' text width
//! estimate is crude (0.7 em per character), so this module sizes the label area itself from
//! the longest label instead of relying on plotters' auto layout.
//!
//! Both chart kinds are horizontal: one row per run (latency) or per op type / node (bars).
//! Names are long ("p2o.Conv.58", "/backbone/stage2/conv"), and horizontal rows keep them
//! readable without rotated text. Rows use a numeric axis with our own key points at the row
//! centres, so grouped bars can be placed at fractions of a row, which plotters' segmented
//! (categorical) axis cannot do.
//!
//! Scale: runs of different models can differ by 100× (a 250 ms detector next to a 3 ms
//! classifier); on a linear axis the small one becomes invisible. When what is compared spans
//! more than [`LOG_SPAN`]×, the value axis turns logarithmic and says so in its title.

use crate::format::{fmt_ms, truncate};
use edgeslim_runtime::stats::percentile;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::error::Error;
use std::ops::Range;

type DrawResult = Result<(), Box<dyn Error>>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Ticked, Ticked>>;

/// Above this ratio between the largest and smallest compared value, use a log axis.
const LOG_SPAN: f64 = 20.0;
/// Axis labels longer than this are cut (tables next to each chart keep the full names).
const MAX_LABEL_CHARS: usize = 42;
const WIDTH: u32 = 960;
const FONT: &str = "sans-serif";

/// Tableau 10: distinguishable, and still tellable apart for most colour-blind readers.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of run `i`, the same in every chart and in the HTML legends.
pub(crate) fn run_colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

pub(crate) fn css_colour(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("rgb({r},{g},{b})")
}

/// One row of the latency chart: a run, or the other engine of a run's comparison.
pub(crate) struct LatencyRow {
    pub label: String,
    pub colour: usize,
    /// Drawn with open markers: the comparison engine, so it reads as "the same run, other
    /// engine" next to the run's own row.
    pub hollow: bool,
    pub samples_ms: Vec<f64>,
}

/// One bar: its length and the text printed at its end.
pub(crate) struct Bar {
    pub value: f64,
    pub text: String,
}

/// A row of the bar chart: one bar per series, `None` where a series has no value.
pub(crate) struct BarGroup {
    pub label: String,
    pub bars: Vec<Option<Bar>>,
}

pub(crate) struct BarChart {
    pub groups: Vec<BarGroup>,
    /// Colour index of each series (bars[k] is drawn in colours[k]).
    pub colours: Vec<usize>,
    pub x_desc: String,
}

/// A value axis in "plot space": values themselves, or their log10 on a log axis.
struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    /// Decimals of linear tick labels, from the tick step.
    decimals: usize,
}

impl Axis {
    fn linear(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
        let step = nice_step(hi - lo, 6);
        let mut ticks = Vec::new();
        let mut t = (lo / step).ceil() * step;
        while t <= hi + step * 1e-9 && ticks.len() < 50 {
            ticks.push(t);
            t += step;
        }
        let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
        Axis {
            log: false,
            lo,
            hi,
            ticks,
            decimals,
        }
    }

    /// A log axis from decade `floor(log10(min))`, `head` (in decades) of room past `max`.
    fn log(min: f64, max: f64, head: f64) -> Axis {
        let lo = min.log10().floor();
        let top = max.log10();
        let hi = top + head.max(0.0);
        let decades = (hi.ceil() - lo) as i32;
        // 1-2-5 ticks while they fit; only powers of ten on wide axes.
        let mantissas: &[f64] = if decades <= 4 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        let mut ticks = Vec::new();
        for k in (lo as i32)..=(hi.ceil() as i32) {
            for m in mantissas {
                let p = (m * 10f64.powi(k)).log10();
                if p >= lo - 1e-9 && p <= hi + 1e-9 {
                    ticks.push(p);
                }
            }
        }
        Axis {
            log: true,
            lo,
            hi,
            ticks,
            decimals: 0,
        }
    }

    /// Where a value lies on this axis; on a log axis values at or below the axis start sit
    /// at the start (a zero-time op has no logarithm).
    fn pos(&self, v: f64) -> f64 {
        if self.log {
            if v > 0.0 {
                v.log10().max(self.lo)
            } else {
                self.lo
            }
        } else {
            v
        }
    }

    fn label(&self, p: f64) -> String {
        if self.log {
            let v = 10f64.powf(p);
            let decimals = (-(p + 1e-9).floor()).clamp(0.0, 6.0) as usize;
            format!("{v:.decimals$}")
        } else {
            let decimals = self.decimals;
            format!("{p:.decimals$}")
        }
    }

    fn describe(&self, desc: &str) -> String {
        if self.log {
            format!("{desc}, log scale")
        } else {
            desc.to_string()
        }
    }
}

/// A linear coordinate with ticks exactly where we put them: round values on the value axis,
/// row centres on the row axis. (plotters' own `with_key_points` wrapper drops the value
/// formatter that `configure_mesh` needs for f64 axes, so this small `Ranged` replaces it.)
#[derive(Clone)]
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        let fraction = if span > 0.0 {
            (v - self.lo) / span
        } else {
            0.5
        };
        // Clamp: a NaN or far-out value must not become an absurd pixel coordinate.
        let fraction = if fraction.is_finite() {
            fraction.clamp(-1.0, 2.0)
        } else {
            0.0
        };
        limit.0 + (f64::from(limit.1 - limit.0) * fraction).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Only bold lines: light mesh lines between our ticks would be noise.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// A round tick step (1, 2 or 5 × 10^k) giving about `target` ticks over `span`.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Draw into an SVG string and prepare it for inlining in HTML.
pub(crate) fn render_svg(
    size: (u32, u32),
    aria_label: &str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(inline_svg(&buf, aria_label))
}

/// Inline SVG in HTML5 needs no namespace declaration (the parser puts `<svg>` in the SVG
/// namespace); dropping plotters' `xmlns` keeps the page free of any URL. The label makes the
/// chart readable to screen readers.
fn inline_svg(svg: &str, aria_label: &str) -> String {
    let svg = svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1);
    svg.replacen(
        "<svg ",
        &format!(
            r#"<svg class="chart" role="img" aria-label="{}" "#,
            crate::format::esc(aria_label)
        ),
        1,
    )
}

/// Pixels for the row labels: ~6.2 px per character at the 12 px label font (measured in
/// Chromium with DejaVu Sans), plus padding.
fn label_area_px(labels: &[String]) -> u32 {
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    (24.0 + 6.2 * chars as f64).clamp(60.0, 320.0) as u32
}

/// Build the chart frame: value axis along x, one labelled row per entry of `rows` from the
/// top, and the mesh. Row `i` is centred at y = rows − i − ½.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    axis: &Axis,
    rows: &[String],
    x_desc: &str,
) -> Result<Chart<'a, 'b>, Box<dyn Error>> {
    let n = rows.len();
    let centres: Vec<f64> = (0..n).map(|i| i as f64 + 0.5).collect();
    let mut chart = ChartBuilder::on(root)
        .margin_top(10)
        .margin_left(10)
        .margin_right(24)
        .margin_bottom(6)
        .x_label_area_size(52)
        .y_label_area_size(label_area_px(rows))
        .build_cartesian_2d(
            Ticked {
                lo: axis.lo,
                hi: axis.hi,
                ticks: axis.ticks.clone(),
            },
            Ticked {
                lo: 0.0,
                hi: n as f64,
                ticks: centres,
            },
        )?;
    let x_fmt = |p: &f64| axis.label(*p);
    let y_fmt = |p: &f64| {
        let i = n as i64 - 1 - p.floor() as i64;
        usize::try_from(i)
            .ok()
            .and_then(|i| rows.get(i))
            .cloned()
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .bold_line_style(BLACK.mix(0.12))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc(axis.describe(x_desc))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()?;
    Ok(chart)
}

fn row_centre(n: usize, i: usize) -> f64 {
    n as f64 - i as f64 - 0.5
}

/// Box-and-strip plot of latency samples: box from the 25th to the 75th percentile, a thick
/// median line, whiskers to min and max, and every sample as a dot (jittered vertically so
/// repeated values stay visible). Rows are runs, so the chart needs no legend.
pub(crate) fn latency_chart(rows: &[LatencyRow]) -> Result<String, String> {
    let values: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.samples_ms.iter().copied())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .collect();
    let (min, max) = min_max(&values).ok_or("no latency samples to draw")?;
    let axis = if min > 0.0 && max / min > LOG_SPAN {
        Axis::log(min, max, 0.05 * (max / min).log10())
    } else {
        let pad = ((max - min) * 0.05).max(max * 0.01).max(1e-6);
        Axis::linear((min - pad).max(0.0), max + pad)
    };
    let labels: Vec<String> = rows
        .iter()
        .map(|r| truncate(&r.label, MAX_LABEL_CHARS))
        .collect();
    let height = 100 + 64 * rows.len() as u32;
    render_svg((WIDTH, height), "latency distribution per run", |root| {
        let mut chart = frame(root, &axis, &labels, "latency per run (ms)")?;
        for (i, row) in rows.iter().enumerate() {
            draw_latency_row(&mut chart, &axis, row, row_centre(rows.len(), i))?;
        }
        Ok(())
    })
}

fn draw_latency_row(chart: &mut Chart, axis: &Axis, row: &LatencyRow, y: f64) -> DrawResult {
    let mut sorted: Vec<f64> = row
        .samples_ms
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if sorted.is_empty() {
        return Ok(());
    }
    sorted.sort_by(|a, b| a.total_cmp(b));
    let colour = run_colour(row.colour);
    let q = |f: f64| axis.pos(percentile(&sorted, f));
    let (lo, hi) = (q(0.0), q(1.0));
    let (q1, q2, q3) = (q(0.25), q(0.5), q(0.75));
    let line = colour.stroke_width(2);
    // Whiskers with end caps, then the box over them.
    chart.draw_series([
        PathElement::new(vec![(lo, y), (q1, y)], line),
        PathElement::new(vec![(q3, y), (hi, y)], line),
        PathElement::new(vec![(lo, y - 0.1), (lo, y + 0.1)], line),
        PathElement::new(vec![(hi, y - 0.1), (hi, y + 0.1)], line),
    ])?;
    chart.draw_series([Rectangle::new(
        [(q1, y - 0.18), (q3, y + 0.18)],
        colour.mix(0.18).filled(),
    )])?;
    chart.draw_series([Rectangle::new([(q1, y - 0.18), (q3, y + 0.18)], line)])?;
    chart.draw_series([PathElement::new(
        vec![(q2, y - 0.24), (q2, y + 0.24)],
        colour.stroke_width(4),
    )])?;
    let dot = if row.hollow {
        colour.mix(0.8).stroke_width(1)
    } else {
        colour.mix(0.55).filled()
    };
    let dots = row.samples_ms.iter().enumerate().filter_map(|(j, v)| {
        // Golden-ratio jitter: deterministic (the same report renders to the same page) and
        // evenly spread over the row.
        let jitter = ((j as f64 * 0.618_034).fract() - 0.5) * 0.56;
        v.is_finite()
            .then(|| Circle::new((axis.pos(*v), y + jitter), 3, dot))
    });
    chart.draw_series(dots)?;
    Ok(())
}

/// Horizontal bars, one row per group and one bar per series inside the row, with the value
/// text printed after each bar (so a short bar still reads exactly).
pub(crate) fn bar_chart(spec: &BarChart, aria_label: &str) -> Result<String, String> {
    let series = spec.colours.len().max(1);
    let values: Vec<f64> = spec
        .groups
        .iter()
        .flat_map(|g| g.bars.iter().flatten().map(|b| b.value))
        .filter(|v| v.is_finite() && *v >= 0.0)
        .collect();
    let (_, max) = min_max(&values).ok_or("nothing to draw")?;
    let axis = bar_axis(spec, max);
    let labels: Vec<String> = spec
        .groups
        .iter()
        .map(|g| truncate(&g.label, MAX_LABEL_CHARS))
        .collect();
    let bar_px = if series > 1 { 15 } else { 22 };
    let height = 100 + spec.groups.len() as u32 * (series as u32 * bar_px + 10);
    render_svg((WIDTH, height), aria_label, |root| {
        let mut chart = frame(root, &axis, &labels, &spec.x_desc)?;
        let n = spec.groups.len();
        for (i, group) in spec.groups.iter().enumerate() {
            draw_bar_group(&mut chart, &axis, spec, group, row_centre(n, i) + 0.5)?;
        }
        Ok(())
    })
}

/// Linear from zero, unless series are compared whose largest bars differ by more than
/// [`LOG_SPAN`]×. Within one series a linear axis is right even when values span decades:
/// the point of the chart is which op dominates, and a log axis would flatten exactly that.
fn bar_axis(spec: &BarChart, max: f64) -> Axis {
    let series_max: Vec<f64> = (0..spec.colours.len())
        .filter_map(|k| {
            let vals = spec
                .groups
                .iter()
                .filter_map(|g| g.bars.get(k).and_then(|b| b.as_ref()))
                .map(|b| b.value)
                .filter(|v| v.is_finite() && *v > 0.0);
            vals.reduce(f64::max)
        })
        .collect();
    let (smallest, largest) = min_max(&series_max).unwrap_or((max, max));
    if smallest > 0.0 && largest / smallest > LOG_SPAN {
        // Don't let sub-microsecond ops stretch the axis over ten decades.
        let floor = values_floor(spec).max(largest * 1e-4);
        let span = (largest / floor).log10();
        Axis::log(floor, largest, (0.3 * span).max(0.4))
    } else {
        // 30% headroom for the value text after the longest bar.
        Axis::linear(0.0, max.max(1e-9) * 1.3)
    }
}

fn values_floor(spec: &BarChart) -> f64 {
    spec.groups
        .iter()
        .flat_map(|g| g.bars.iter().flatten().map(|b| b.value))
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(f64::INFINITY, f64::min)
}

/// `top` is the upper edge of the group's row; series `k` takes the k-th slice of 80% of it.
fn draw_bar_group(
    chart: &mut Chart,
    axis: &Axis,
    spec: &BarChart,
    group: &BarGroup,
    top: f64,
) -> DrawResult {
    let series = spec.colours.len().max(1);
    let h = 0.8 / series as f64;
    let start = if axis.log { axis.lo } else { 0.0 };
    let text_size = 14;
    let grey = BLACK.mix(0.8);
    let text_style = TextStyle::from((FONT, text_size).into_font())
        .color(&grey)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (k, bar) in group.bars.iter().enumerate() {
        let Some(bar) = bar else { continue };
        let colour = run_colour(spec.colours.get(k).copied().unwrap_or(k));
        let y1 = top - 0.1 - h * k as f64;
        let y0 = y1 - h * 0.92;
        let end = axis.pos(bar.value).max(start);
        chart.draw_series([Rectangle::new([(start, y0), (end, y1)], colour.filled())])?;
        let text = EmptyElement::at((end, (y0 + y1) / 2.0))
            + Text::new(bar.text.clone(), (5, 0), text_style.clone());
        chart.draw_series([text])?;
    }
    Ok(())
}

fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let mut it = values.iter().copied().filter(|v| v.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
}

/// The text after a bar: `35.91 ms · 14.5%`.
pub(crate) fn bar_text(ms: f64, share: Option<f64>) -> String {
    match share {
        Some(s) if s.is_finite() => format!("{} ms · {:.1}%", fmt_ms(ms), s * 100.0),
        _ => format!("{} ms", fmt_ms(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round() {
        let a = Axis::linear(0.0, 12.0);
        assert_eq!(a.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        assert_eq!(a.label(4.0), "4");
        let b = Axis::linear(2.0, 2.35);
        assert!(b.ticks.iter().all(|t| *t >= 2.0 && *t <= 2.35));
        assert_eq!(b.ticks.len(), 4, "0.1 steps: {:?}", b.ticks);
        assert_eq!(b.label(b.ticks[1]), "2.1");
    }

    #[test]
    fn log_ticks_cover_the_decades() {
        let a = Axis::log(2.0, 300.0, 0.1);
        let labels: Vec<String> = a.ticks.iter().map(|p| a.label(*p)).collect();
        assert_eq!(labels, ["1", "2", "5", "10", "20", "50", "100", "200"]);
        assert_eq!(a.pos(0.0), a.lo, "zero sits at the axis start");
    }

    #[test]
    fn svg_is_inlined_without_namespace_url() {
        let svg = inline_svg(
            r#"<svg width="1" height="1" xmlns="http://www.w3.org/2000/svg"></svg>"#,
            "a<b",
        );
        assert!(!svg.contains("http"));
        assert!(svg.starts_with(r#"<svg class="chart" role="img" aria-label="a&lt;b" "#));
    }

    #[test]
    fn empty_charts_are_errors_not_panics() {
        assert!(latency_chart(&[]).is_err());
        let spec = BarChart {
            groups: vec![],
            colours: vec![0],
            x_desc: "ms".into(),
        };
        assert!(bar_chart(&spec, "x").is_err());
    }
}
