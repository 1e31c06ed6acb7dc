//! `edgeslim compress vit-slim MODEL --data SPEC --budget params=F|macs=F -o OUT.onnx`:
//! ViT-Slim's mask search, global threshold, physical slicing and retraining
//! (`edgeslim-vitslim`), then the written model timed next to the original.

use anyhow::{bail, Context, Result};
use edgeslim::bench::{bench_side_by_side, HostBenchConfig};
use edgeslim::compress::study::budget::BudgetBy;
use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim_runtime::InputShape;
use edgeslim_vitslim::{Latency, MaskKind, Selection, VitSlimOptions};
use std::path::PathBuf;

/// Learn soft masks over attention head dimensions (or whole heads) and MLP hidden units
/// jointly with the weights under an l1 penalty, keep the top fraction of every mask type
/// globally so that the model meets the budget, slice the weights into a smaller plain ViT and
/// retrain it. The written ONNX has no mask left.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
edgeslim compress vit-slim models/vit-tiny-mnist.onnx --data mnist --budget params=0.6 -o vit60.onnx --report vit60\n  \
edgeslim compress vit-slim dino-animals.onnx --data animal-mnist --budget macs=0.7 --masks heads,mlp -o dino70.onnx\n  \
edgeslim compress vit-slim models/siamese-vit --data tracking:1 --budget params=0.5 -o svit50 --report svit50-report\n\n\
Recognised: q/k/v as three MatMul(+Add)/Gemm or one fused projection (Split, or timm's\n\
[B, N, 3, H, dh] reshape), MLPs with any element-wise activation (GELU, its Erf/Tanh forms).")]
pub struct VitSlimArgs {
    /// The ONNX vision transformer (a classifier with one [N, C, H, W] input), or a tracker
    /// directory whose backbone is a ViT (template.onnx + search.onnx from `edgeslim train`
    /// with `[model.vit]`; the output is then a directory). Never overwritten.
    model: PathBuf,
    /// Labelled training data: mnist, animal-mnist or folder:PATH; tracking:SEED for a tracker.
    #[arg(long, value_name = "SPEC")]
    data: String,
    /// What the result may keep: params=F or macs=F (a fraction of the original's, in (0, 1]).
    #[arg(long, value_name = "params=F|macs=F")]
    budget: String,
    /// How the kept channels are chosen: learned (ViT-Slim's mask search) or magnitude (the
    /// baseline: l1 norms of the weights, no search; give it the search's epochs as
    /// retraining for a fair comparison).
    #[arg(long, value_enum, default_value = "learned")]
    selection: SelectionArg,
    /// Mask types: head-dims (per head dimension, shared by q, k, v; the paper's) or heads,
    /// mlp, and tokens (per token at every block input, monotone over depth, class token
    /// kept; for classifiers that read the class token).
    #[arg(long, default_value = "head-dims,mlp", value_name = "LIST")]
    masks: String,
    /// Epochs of the joint search of masks and weights.
    #[arg(long, default_value_t = 3, value_name = "N")]
    search_epochs: usize,
    /// Epochs of retraining the sliced model (0: none).
    #[arg(long, default_value_t = 3, value_name = "N")]
    retrain_epochs: usize,
    /// AdamW learning rate of both phases (cosine schedule).
    #[arg(long, default_value_t = 1e-3, value_name = "LR")]
    lr: f64,
    /// The masks' learning rate in the search (default: --lr). A pretrained backbone wants a
    /// small --lr (1e-5..1e-4) and masks that still move (1e-2).
    #[arg(long, value_name = "LR")]
    mask_lr: Option<f64>,
    /// l1 weight of the attention masks (the paper's DeiT-S value by default).
    #[arg(long, default_value_t = edgeslim_vitslim::PAPER_ATTENTION_WEIGHT, value_name = "W")]
    attention_weight: f64,
    /// l1 weight of the MLP masks (the paper's DeiT-S value by default).
    #[arg(long, default_value_t = edgeslim_vitslim::PAPER_MLP_WEIGHT, value_name = "W")]
    mlp_weight: f64,
    /// l1 weight of the token masks, on tanh ζ (the paper's DeiT-S value by default).
    #[arg(long, default_value_t = edgeslim_vitslim::PAPER_TOKEN_WEIGHT, value_name = "W")]
    token_weight: f64,
    /// Distil from this model (logit KL) besides the labels; `original` distils from the
    /// input model. Default: labels only.
    #[arg(long, value_name = "MODEL|original")]
    teacher: Option<String>,
    /// Round kept head sizes and MLP widths up to multiples of N (matrix sizes the CPU's
    /// SIMD kernels fill; the budget still holds).
    #[arg(long, default_value_t = 1, value_name = "N")]
    round_to: usize,
    /// Cut every epoch to this many batches (quick runs).
    #[arg(long, value_name = "N")]
    max_batches: Option<usize>,
    /// Evaluate on N held-out samples (a fixed random subset of the split) instead of all.
    #[arg(long, value_name = "N")]
    held_out: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Input shape NAME=DIMS when the model leaves it open.
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<InputShape>,
    /// Where to write the slimmed model.
    #[arg(short, long)]
    output: PathBuf,
    /// Write DIR/index.html and DIR/report.json.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Timed tract runs per model, interleaved (0: no latency).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// tract threads for the latency.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SelectionArg {
    Learned,
    Magnitude,
}

fn parse_budget(s: &str) -> Result<(BudgetBy, f64)> {
    let (by, f) = s
        .split_once('=')
        .with_context(|| format!("--budget {s}: write params=F or macs=F"))?;
    let by = match by.trim() {
        "params" => BudgetBy::Params,
        "macs" => BudgetBy::Macs,
        other => bail!("--budget {s}: '{other}' is not params or macs"),
    };
    let f: f64 = f
        .trim()
        .parse()
        .with_context(|| format!("--budget {s}: '{f}' is not a number"))?;
    Ok((by, f))
}

pub fn run(a: VitSlimArgs) -> Result<()> {
    let (budget_by, budget) = parse_budget(&a.budget)?;
    let kinds = MaskKind::parse_list(&a.masks)?;
    if edgeslim::prune::tracker::is_tracker_dir(&a.model) {
        return run_tracker(&a, budget_by, budget, kinds);
    }
    let model = OnnxModel::load(&a.model)?;
    edgeslim_runtime::fsutil::ensure_replaceable(&a.output)?;
    let teacher = match a.teacher.as_deref() {
        None => None,
        Some("original") => Some(model.clone()),
        Some(p) => Some(OnnxModel::load(std::path::Path::new(p))?),
    };
    edgeslim::train::interrupt::install();
    let opts = VitSlimOptions {
        selection: match a.selection {
            SelectionArg::Learned => Selection::Learned,
            SelectionArg::Magnitude => Selection::Magnitude,
        },
        data: a.data.clone(),
        kinds,
        budget_by,
        budget,
        search_epochs: a.search_epochs,
        retrain_epochs: a.retrain_epochs,
        lr: a.lr,
        mask_lr: a.mask_lr,
        attention_weight: a.attention_weight,
        mlp_weight: a.mlp_weight,
        token_weight: a.token_weight,
        teacher,
        input_shapes: a.input_shapes.clone(),
        round_to: a.round_to,
        max_batches_per_epoch: a.max_batches,
        held_out_cap: a.held_out,
        seed: a.seed,
        progress: true,
        ..VitSlimOptions::default()
    };
    let mut out = match edgeslim_vitslim::run(&model, &opts) {
        Ok(o) => o,
        // Ctrl-C in the search or the retraining: nothing is written.
        Err(e) if edgeslim::train::interrupt::requested() => {
            eprintln!("edgeslim: interrupted ({e}); nothing written");
            std::process::exit(130);
        }
        Err(e) => return Err(e.into()),
    };
    if out.report.stopped.is_some() && edgeslim::train::interrupt::requested() {
        eprintln!("edgeslim: interrupted while retraining; nothing written");
        std::process::exit(130);
    }
    out.model.save(&a.output, &SaveOptions::default())?;
    if a.runs > 0 {
        let cfg = HostBenchConfig {
            runs: a.runs,
            threads: a.threads,
            input_shapes: a.input_shapes.clone(),
            ..HostBenchConfig::default()
        };
        let r = bench_side_by_side(&[a.model.as_path(), a.output.as_path()], &cfg)?;
        out.report.latency = Some(Latency {
            threads: a.threads,
            runs: a.runs,
            original_p50_ms: r[0].latency.p50_ms,
            slim_p50_ms: r[1].latency.p50_ms,
            original_p90_ms: r[0].latency.p90_ms,
            slim_p90_ms: r[1].latency.p90_ms,
        });
    }
    let r = &out.report;
    if let Some(dir) = &a.report {
        edgeslim::report::vitslim::write_vitslim(r, &a.model.display().to_string(), dir)?;
    }
    if edgeslim_runtime::json_out::emit(&a.json.dest, r)? {
        return Ok(());
    }
    println!("{} -> {}", a.model.display(), a.output.display());
    println!(
        "  params {} -> {} ({:.1} %), MACs {} -> {} ({:.1} %); every mask type keeps its top {:.1} %",
        r.params.0,
        r.params.1,
        100.0 * r.params.1 as f64 / r.params.0.max(1) as f64,
        r.macs.0,
        r.macs.1,
        100.0 * r.macs.1 as f64 / r.macs.0.max(1) as f64,
        100.0 * r.kept_fraction
    );
    let acc = &r.accuracy;
    println!(
        "  held-out accuracy: original {:.2} %, {}sliced {:.2} %, retrained {:.2} % ({} samples)",
        100.0 * acc.original,
        acc.after_search
            .map(|a| format!("after search {:.2} %, ", 100.0 * a))
            .unwrap_or_default(),
        100.0 * acc.sliced,
        100.0 * acc.retrained,
        acc.held_out_samples
    );
    for b in &r.blocks {
        println!(
            "  block {}: tokens {} -> {}, heads {} -> {}, head size {} -> {}{}",
            b.block,
            b.tokens.0,
            b.tokens.1,
            b.heads.0,
            b.heads.1,
            b.head_dim.0,
            b.head_dim.1,
            b.mlp_units
                .map(|(u, k)| format!(", MLP {u} -> {k}"))
                .unwrap_or_default()
        );
    }
    if let Some(l) = &r.latency {
        println!(
            "  tract p50 {:.3} ms -> {:.3} ms ({:.2}x faster; {} threads, {} interleaved runs)",
            l.original_p50_ms,
            l.slim_p50_ms,
            l.original_p50_ms / l.slim_p50_ms.max(1e-12),
            l.threads,
            l.runs
        );
    }
    println!(
        "  search {:.0} s, retraining {:.0} s",
        r.search_seconds, r.retrain_seconds
    );
    if let Some(dir) = &a.report {
        println!("report: {}", dir.join("index.html").display());
    }
    Ok(())
}

/// ViT-Slim on a tracker pair: search on generated tracking pairs, slice, fine-tune; the search
/// graphs timed side by side.
fn run_tracker(
    a: &VitSlimArgs,
    budget_by: BudgetBy,
    budget: f64,
    kinds: Vec<MaskKind>,
) -> Result<()> {
    use edgeslim_vitslim::tracker::{self, TrackerSlimOptions};
    let data_seed = match a.data.parse::<edgeslim::data::DataSpec>() {
        Ok(edgeslim::data::DataSpec::Tracking(s)) => s,
        _ => bail!(
            "--data {}: {} is a tracker; it trains on generated pairs, tracking:SEED",
            a.data,
            a.model.display()
        ),
    };
    if a.teacher.is_some() {
        bail!("--teacher: a tracker trains on its labelled pairs; distillation is for classifiers");
    }
    if a.model.canonicalize().ok() == a.output.canonicalize().ok() {
        bail!(
            "-o {}: that is the input tracker; write elsewhere",
            a.output.display()
        );
    }
    // A file, or a device node such as /dev/null: never written into or replaced.
    if a.output.exists() && !a.output.is_dir() {
        bail!(
            "-o {}: not a folder; a tracker is written as a folder (template.onnx, search.onnx, card)",
            a.output.display()
        );
    }
    let pair = edgeslim::prune::tracker::TrackerPair::load(&a.model)?;
    edgeslim::train::interrupt::install();
    let opts = TrackerSlimOptions {
        selection: match a.selection {
            SelectionArg::Learned => Selection::Learned,
            SelectionArg::Magnitude => Selection::Magnitude,
        },
        kinds,
        budget_by,
        budget,
        search_epochs: a.search_epochs,
        retrain_epochs: a.retrain_epochs,
        lr: a.lr,
        mask_lr: a.mask_lr,
        attention_weight: a.attention_weight,
        mlp_weight: a.mlp_weight,
        round_to: a.round_to,
        data_seed,
        max_batches_per_epoch: a.max_batches,
        val_pairs: a.held_out,
        output: a.output.clone(),
        sliced_output: a.report.as_ref().map(|d| d.join("sliced")),
        threads: 0,
        progress: !edgeslim_runtime::process::quiet(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..TrackerSlimOptions::default()
    };
    let r = match tracker::run(&pair, &opts) {
        Ok(r) => r,
        Err(e) if edgeslim::train::interrupt::requested() => {
            eprintln!("edgeslim: interrupted ({e})");
            std::process::exit(130);
        }
        Err(e) => return Err(e.into()),
    };
    let mut json = serde_json::to_value(&r)?;
    if a.runs > 0 {
        let s = pair.config.search_size;
        let cfg = HostBenchConfig {
            runs: a.runs,
            threads: a.threads,
            input_shapes: vec![format!("search=1,3,{s},{s}").parse()?],
            ..HostBenchConfig::default()
        };
        let files = [a.model.join("search.onnx"), a.output.join("search.onnx")];
        let b = bench_side_by_side(&[files[0].as_path(), files[1].as_path()], &cfg)?;
        let latency = Latency {
            threads: a.threads,
            runs: a.runs,
            original_p50_ms: b[0].latency.p50_ms,
            slim_p50_ms: b[1].latency.p50_ms,
            original_p90_ms: b[0].latency.p90_ms,
            slim_p90_ms: b[1].latency.p90_ms,
        };
        json["latency"] = serde_json::to_value(&latency)?;
    }
    if let Some(dir) = &a.report {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        edgeslim_runtime::fsutil::write_atomic(
            &dir.join("report.json"),
            &serde_json::to_vec_pretty(&json)?,
        )?;
    }
    if edgeslim_runtime::json_out::emit(&a.json.dest, &json)? {
        return Ok(());
    }
    println!("{} -> {}", a.model.display(), a.output.display());
    println!(
        "  search graph: params {} -> {} ({:.1} %), MACs per scale {} -> {} ({:.1} %); every mask type keeps its top {:.1} %",
        r.params.0,
        r.params.1,
        100.0 * r.params.1 as f64 / r.params.0.max(1) as f64,
        r.macs.0,
        r.macs.1,
        100.0 * r.macs.1 as f64 / r.macs.0.max(1) as f64,
        100.0 * r.kept_fraction
    );
    for (what, st) in [
        ("after search", &r.after_search),
        ("fine-tuned", &r.retrained),
    ] {
        if let Some(st) = st {
            println!(
                "  held-out pairs, {what}: loss {:.4}, peak error {:.1} px, within stride {:.1} %",
                st.loss,
                st.peak_error_px,
                100.0 * st.peak_within_stride
            );
        }
    }
    for b in &r.blocks {
        println!(
            "  block {}: heads {} -> {}, head size {} -> {}{}",
            b.block,
            b.heads.0,
            b.heads.1,
            b.head_dim.0,
            b.head_dim.1,
            b.mlp_units
                .map(|(u, k)| format!(", MLP {u} -> {k}"))
                .unwrap_or_default()
        );
    }
    if let Some(l) = json.get("latency") {
        let p = |k: &str| l[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "  search graph, tract p50 {:.3} ms -> {:.3} ms ({:.2}x faster; {} threads, {} interleaved runs)",
            p("original_p50_ms"),
            p("slim_p50_ms"),
            p("original_p50_ms") / p("slim_p50_ms").max(1e-12),
            a.threads,
            a.runs
        );
    }
    println!(
        "  search {:.0} s, fine-tuning {:.0} s",
        r.search_seconds, r.retrain_seconds
    );
    Ok(())
}
