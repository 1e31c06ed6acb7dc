//! The picture of a grown ViT: each block's MLP width at the start and after growth (and,
//! when given, a uniformly scaled baseline's), as bars.

use super::charts::{bar_chart, Bar, BarChart, BarGroup};
use crate::{Error, Result};

/// An SVG bar chart of MLP widths per block: one series per (name, widths) pair.
pub fn widths_svg(series: &[(&str, &[usize])]) -> Result<String> {
    let blocks = series.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
    let groups = (0..blocks)
        .map(|b| BarGroup {
            label: format!("block {b}"),
            bars: series
                .iter()
                .map(|(name, w)| {
                    w.get(b).map(|&v| Bar {
                        value: v as f64,
                        text: format!("{v} ({name})"),
                    })
                })
                .collect(),
        })
        .collect();
    let spec = BarChart {
        groups,
        colours: (0..series.len()).collect(),
        x_desc: "MLP width (neurons)".into(),
    };
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    bar_chart(&spec, &format!("MLP width per block: {}", names.join(", ")))
        .map_err(|e| Error::Other(format!("drawing the widths chart: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn widths_chart_names_every_block_and_value() {
        let svg = super::widths_svg(&[("start", &[64, 64]), ("grown", &[121, 70])]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        for text in ["block 0", "block 1", "121 (grown)", "64 (start)"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
