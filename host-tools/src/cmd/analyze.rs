use anyhow::Result;
use edgeslim::data::calib::CalibSpec;
use edgeslim::lowrank::analysis;
use std::path::PathBuf;

/// Rank analysis: for every Linear-like layer (Gemm, MatMul with a constant weight, Conv), the
/// singular values of its weight and the eigen-spectrum of its calibrated outputs, the ranks
/// holding 90/95/99% of the energy, and which layers are intrinsically low-rank.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  edgeslim analyze cls.onnx --input-shape x=1,3,48,192 --calib ppocr-text --report cls-analysis\n\n\
  edgeslim analyze --groups det.onnx --input-shape x=1,3,640,640   (channel groups for pruning)\n\n\
Data SPECs: ppocr-text, mnist, animal-mnist, images:DIR, npy:FILE (see docs/methods/lowrank.md)."
)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Calibration data for the feature-space spectra (weight space only without it).
    #[arg(long, value_name = "SPEC")]
    calib: Option<CalibSpec>,
    /// Use at most this many calibration samples.
    #[arg(long, value_name = "N")]
    calib_samples: Option<usize>,
    /// Only layers whose name or output matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    layers: Option<regex::Regex>,
    /// Shape of the model input, NAME=D0,D1,... (needed when the model leaves it open).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<edgeslim_runtime::InputShape>,
    /// Write DIR/index.html and DIR/analysis.json.
    #[arg(long, value_name = "DIR", required_unless_present = "groups")]
    report: Option<PathBuf>,
    /// Instead: list the channel groups structured pruning sees (what moves together, why
    /// some are kept whole); JSON with --json.
    #[arg(long)]
    groups: bool,
    /// JSON: `--json` prints it on stdout instead of the text, `--json FILE.json` also writes it there.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-", requires = "groups")]
    json: Option<edgeslim_runtime::json_out::JsonDest>,
}

pub fn run(a: Args) -> Result<()> {
    let Some(report) = a.report.clone().filter(|_| !a.groups) else {
        return super::prune::print_groups(&a.model, &a.input_shapes, &a.json);
    };
    let result = analysis::run(
        &a.model,
        a.calib.as_ref(),
        a.calib_samples,
        a.layers.as_ref(),
        &a.input_shapes,
    )?;
    edgeslim::report::write::analysis(&result, &report)?;
    println!(
        "{}: {} layers analysed{}",
        a.model.display(),
        result.layers.len(),
        result
            .calib_samples
            .map(|n| format!(", outputs calibrated on {n} samples"))
            .unwrap_or_default()
    );
    println!(
        "  {:<40} {:<14} {:>10} {:>16} {:>16} {:>9}",
        "most low-rank layers", "kind", "d_out×d_in", "weight r95", "feature r95", "needed"
    );
    for &i in result.ranking.iter().take(12) {
        let l = &result.layers[i];
        println!(
            "  {:<40} {:<14} {:>10} {:>16} {:>16} {:>8.0}%",
            truncate(&l.name, 40),
            l.kind,
            format!("{}×{}", l.d_out, l.d_in),
            format!("{}/{}", l.weight_ranks.r95, l.full_rank),
            l.feature_ranks
                .as_ref()
                .map(|f| format!("{}/{}", f.r95, l.full_rank))
                .unwrap_or_else(|| "-".into()),
            100.0 * l.weights_needed_95
        );
    }
    println!("report: {}", report.join("index.html").display());
    Ok(())
}

/// Keep the end of long names (the distinguishing part of `/blocks.3/attn/qkv/MatMul`).
pub fn truncate(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_string();
    }
    let tail: String = s.chars().skip(count - (n - 1)).collect();
    format!("…{tail}")
}
