//! The picture of a grown ViT: each block's MLP and QKV widths at the start and after growth
//! (and, when given, a uniformly scaled baseline's), as bars.

use super::charts::{bar_chart, Bar, BarChart, BarGroup};
use crate::{Error, Result};

/// One model's widths per block.
pub struct Widths<'a> {
    pub name: &'a str,
    /// MLP neurons per block.
    pub mlp: &'a [usize],
    /// Q/K/V width (heads × head width) per block.
    pub qkv: &'a [usize],
}

/// An SVG bar chart of the MLP and QKV widths per block, one colour per model.
pub fn widths_svg(series: &[Widths]) -> Result<String> {
    let blocks = series.iter().map(|w| w.mlp.len()).max().unwrap_or(0);
    let groups = (0..blocks)
        .flat_map(|b| {
            [("MLP", 0), ("QKV", 1)].map(|(what, i)| BarGroup {
                label: format!("block {b} {what}"),
                bars: series
                    .iter()
                    .map(|w| {
                        [w.mlp, w.qkv][i].get(b).map(|&v| Bar {
                            value: v as f64,
                            text: format!("{v} ({})", w.name),
                        })
                    })
                    .collect(),
            })
        })
        .collect();
    let spec = BarChart {
        groups,
        colours: (0..series.len()).collect(),
        x_desc: "width (neurons)".into(),
    };
    let names: Vec<&str> = series.iter().map(|w| w.name).collect();
    bar_chart(
        &spec,
        &format!("MLP and QKV widths per block: {}", names.join(", ")),
    )
    .map_err(|e| Error::Other(format!("drawing the widths chart: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn widths_chart_names_every_block_and_value() {
        use super::Widths;
        let svg = super::widths_svg(&[
            Widths {
                name: "start",
                mlp: &[64, 64],
                qkv: &[32, 32],
            },
            Widths {
                name: "grown",
                mlp: &[121, 70],
                qkv: &[48, 36],
            },
        ])
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        for text in [
            "block 0 MLP",
            "block 1 QKV",
            "121 (grown)",
            "64 (start)",
            "36 (grown)",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
