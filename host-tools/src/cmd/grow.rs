//! `edgeslim grow RECIPE.toml --budget params=N -o OUT.onnx`: a ViT recipe trained from half
//! width, growing the MLP neurons and heads whose splitting matrices say growth lowers the loss,
//! under a parameter budget (or, with --uniform, the widest uniformly scaled ViT within it).

use anyhow::{bail, Context, Result};
use edgeslim::growth::run::{grow, GrowOptions, RankBy};
use edgeslim::onnx::SaveOptions;
use edgeslim::report::growth::{widths_svg, Widths};
use edgeslim::train::families::vit::BlockShape;
use edgeslim::train::recipe::Recipe;
use std::path::PathBuf;

/// Train a ViT recipe while growing it neuron by neuron. It starts at --start-width of the
/// recipe's QKV and MLP widths; every --interval epochs it measures the splitting matrix of
/// every MLP neuron and of every head's q·k on --score-images training images and splits the
/// --grow-per-step units with the most negative eigenvalue per added parameter into ± pairs
/// along their eigenvectors (only negative ones; the function is kept to O(ε²)), while the
/// parameters stay within the budget. A QKV unit widens every head of its block by one. The
/// total epochs are the recipe's (or --epochs): growth adds no training iterations. Writes
/// OUT.onnx (a plain ViT with its per-block widths), OUT.json (widths, growth steps,
/// per-epoch history) and OUT.svg (every block's MLP and QKV widths at the start and at the
/// end).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
edgeslim grow models/recipes/vit-tiny-mnist.toml --budget params=60000 --epochs 12 --interval 2 -o grown.onnx\n  \
edgeslim grow models/recipes/vit-tiny-mnist.toml --budget params=60000 --epochs 12 --interval 2 --uniform -o uniform.onnx")]
pub struct Args {
    /// A `vit` recipe (models/recipes/*.toml).
    recipe: PathBuf,
    /// The parameter budget: params=N (N may end in k or M).
    #[arg(long, value_name = "params=N")]
    budget: String,
    /// Epochs between growth steps.
    #[arg(long, default_value_t = 1, value_name = "E")]
    interval: usize,
    /// Units split per growth step (at most): MLP neurons, and QKV units (one more dimension
    /// in every head of a block).
    #[arg(long, default_value_t = 8, value_name = "K")]
    grow_per_step: usize,
    /// Grow the MLPs only; the heads keep their starting width.
    #[arg(long)]
    mlp_only: bool,
    /// Rank units by score per added parameter (what the budget counts) or per added MAC
    /// (what latency follows: at many tokens a QKV unit's attention products cost far more
    /// than its parameters say).
    #[arg(long, value_enum, default_value = "params")]
    rank_by: RankByArg,
    /// Starting share of the recipe's QKV and MLP widths.
    #[arg(long, default_value_t = 0.5, value_name = "F")]
    start_width: f64,
    /// The baseline: the widest uniformly scaled ViT within the budget, same schedule, no
    /// growth.
    #[arg(long)]
    uniform: bool,
    /// Total epochs (default: the recipe's).
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Split size ε relative to a neuron's input-weight norm (for a QKV unit, to the RMS of
    /// the split q and k columns' norms, and to the v column's norm).
    #[arg(long, default_value_t = 1e-3)]
    eps: f64,
    /// Training images the splitting matrices are measured on.
    #[arg(long, default_value_t = 256, value_name = "N")]
    score_images: usize,
    /// Cut every epoch to this many batches (quick runs).
    #[arg(long, value_name = "N")]
    max_batches: Option<usize>,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

/// `params=60000`, `params=60k`, `params=1.5M` → a count.
fn parse_budget(s: &str) -> Result<u64> {
    let Some(v) = s.strip_prefix("params=") else {
        bail!("--budget {s}: expected params=N");
    };
    let (num, mult) = match v.chars().last() {
        Some('k' | 'K') => (&v[..v.len() - 1], 1e3),
        Some('M' | 'm') => (&v[..v.len() - 1], 1e6),
        _ => (v, 1.0),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("--budget {s}: '{num}' is not a number"))?;
    if !n.is_finite() || n <= 0.0 {
        bail!("--budget {s}: must be positive");
    }
    Ok((n * mult).round() as u64)
}

pub fn run(a: Args) -> Result<()> {
    let budget = parse_budget(&a.budget)?;
    if a.output.is_dir() {
        bail!(
            "-o {}: is a folder; name the model file",
            a.output.display()
        );
    }
    let report_path = a.output.with_extension("json");
    // A device, FIFO or folder at any output path is refused before the training, not after.
    for p in [&a.output, &report_path, &a.output.with_extension("svg")] {
        edgeslim_runtime::fsutil::ensure_replaceable(p)?;
    }
    let recipe = Recipe::load(&a.recipe)?;
    let spec = recipe.model_spec();
    let (c, side) = spec
        .image_input()
        .context("the recipe's model is not an image classifier")?;
    let data = edgeslim::train::zoo::load_data(
        &recipe.data.spec,
        Some((c, side, side)),
        recipe.data.held_out_fraction,
        recipe.seed,
    )?;
    let opts = GrowOptions {
        budget_params: budget,
        interval: a.interval,
        grow_per_step: a.grow_per_step,
        mlp_only: a.mlp_only,
        rank_by: match a.rank_by {
            RankByArg::Params => RankBy::Params,
            RankByArg::Macs => RankBy::Macs,
        },
        start_width: a.start_width,
        uniform: a.uniform,
        epochs: a.epochs,
        eps: a.eps,
        score_images: a.score_images,
        threads: a.threads,
        progress: !edgeslim_runtime::process::quiet(),
        max_batches_per_epoch: a.max_batches,
    };
    edgeslim::train::interrupt::install();
    let (model, report) = grow(&recipe, &data, &opts)?;
    model.save(&a.output, &SaveOptions::default())?;
    let json = serde_json::to_vec_pretty(&report)?;
    edgeslim_runtime::fsutil::write_atomic(&report_path, &json)
        .with_context(|| format!("writing {}", report_path.display()))?;
    let mlp = |b: &[BlockShape]| -> Vec<usize> { b.iter().map(|s| s.mlp).collect() };
    let qkv = |b: &[BlockShape]| -> Vec<usize> { b.iter().map(|s| s.width()).collect() };
    let (m0, q0, m1, q1) = (
        mlp(&report.start),
        qkv(&report.start),
        mlp(&report.blocks),
        qkv(&report.blocks),
    );
    let svg = widths_svg(&[
        Widths {
            name: "start",
            mlp: &m0,
            qkv: &q0,
        },
        Widths {
            name: &report.method,
            mlp: &m1,
            qkv: &q1,
        },
    ])?;
    let svg_path = a.output.with_extension("svg");
    edgeslim_runtime::fsutil::write_atomic(&svg_path, svg.as_bytes())
        .with_context(|| format!("writing {}", svg_path.display()))?;
    println!(
        "{} ViT ({} of the recipe's width to start): {} params (budget {budget}), held-out accuracy {:.2} %, {:.0} s",
        report.method,
        (report.width * 1000.0).round() / 1000.0,
        report.params,
        report.held_out_accuracy * 100.0,
        report.seconds
    );
    println!("MLP widths per block: {m1:?} (from {m0:?}); QKV widths {q1:?} (from {q0:?})");
    println!(
        "wrote {}, {} and {}",
        a.output.display(),
        report_path.display(),
        svg_path.display()
    );
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RankByArg {
    Params,
    Macs,
}
