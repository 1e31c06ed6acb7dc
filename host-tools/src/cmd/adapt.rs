//! `edgeslim adapt MODEL --data SPEC --method glora|lora|full|linear -o OUT.onnx`: transfer a
//! network to a labelled task; adapters are merged, so the written model has the input's graph.

use anyhow::{bail, Context, Result};
use edgeslim::bench::{bench_side_by_side, HostBenchConfig};
use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim_glora::supernet::SearchOptions;
use edgeslim_glora::{AdaptLatency, AdaptOptions, LayerSupport, Method};
use std::path::PathBuf;

/// Adapt a pretrained network to a labelled task: a linear probe (the head only), full
/// fine-tuning, LoRA, or GLoRA — generalised adapters on the weights and biases of every
/// selected layer (W' = W0 + W0⊙A + B, b' = b0 + b0⊙D + E + W0·C), trained with the network
/// frozen and merged into plain weights. The written model has the input's nodes and shapes,
/// so it runs exactly as fast; its held-out accuracy is measured after the merge.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
edgeslim adapt models/vit-tiny-mnist.onnx --data animal-mnist --method glora -o vit-animals.onnx\n  \
edgeslim adapt models/vit-tiny-mnist.onnx --data animal-mnist --method lora --rank 4 --shots 8 -o vit-8shot.onnx\n  \
edgeslim adapt dino/classifier-animal-mnist.onnx --data animal-mnist --method glora --support A=lora-4,B=lora-4,E=vector -o dino-glora.onnx\n\n\
Layers: every MatMul/Gemm of a transformer (attention and MLP projections) or every Conv of a\n\
CNN, the head excepted (it is trained by every method); --layers REGEX picks others.")]
pub struct Args {
    /// The ONNX classifier ([N, C, H, W] input, logits output; never overwritten).
    model: PathBuf,
    /// Labelled task data: mnist, animal-mnist or folder:PATH (80/20 split, seeded).
    #[arg(long, value_name = "SPEC")]
    data: String,
    #[arg(long, value_enum, default_value = "glora")]
    method: MethodArg,
    /// LoRA rank (LoRA's B; GLoRA's LoRA terms unless --support says otherwise).
    #[arg(long, default_value_t = 4, value_name = "R")]
    rank: usize,
    /// One GLoRA support for every wrapped layer, e.g. A=lora-4,B=vector,C=none,D=scalar,E=vector
    /// (no search). Default: each layer's support searched (supernet + evolution).
    #[arg(long, value_name = "TERMS")]
    support: Option<String>,
    /// Generations of GLoRA's evolutionary search (0: no search, LoRA-R on A, B and C and
    /// vectors on D and E on every layer).
    #[arg(long, default_value_t = 20, value_name = "N")]
    search_generations: usize,
    /// Configurations per generation (half from mutations, half from crossovers; the top
    /// fifth are the parents).
    #[arg(long, default_value_t = 50, value_name = "P")]
    population: usize,
    /// The search's limit: trainable-params=N adapter values at most.
    #[arg(long, value_name = "trainable-params=N")]
    budget: Option<String>,
    /// Samples the search scores configurations on (taken out of the training split; with
    /// --shots, the shots).
    #[arg(long, default_value_t = 500, value_name = "N")]
    search_samples: usize,
    /// Wrap the layers whose node or weight name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    layers: Option<String>,
    /// Few-shot: train on K samples of every class (drawn with --seed).
    #[arg(long, value_name = "K")]
    shots: Option<usize>,
    /// Start the head from random weights (for a head already trained on the task, e.g. a
    /// `zoo import --head` probe, before a few-shot comparison).
    #[arg(long)]
    reset_head: bool,
    #[arg(long, default_value_t = 5, value_name = "N")]
    epochs: usize,
    /// AdamW learning rate (cosine schedule).
    #[arg(long, default_value_t = 1e-3, value_name = "LR")]
    lr: f64,
    #[arg(long, default_value_t = 32, value_name = "N")]
    batch_size: usize,
    /// Cut every epoch to this many batches (quick runs).
    #[arg(long, value_name = "N")]
    max_batches: Option<usize>,
    /// Evaluate on N held-out samples (a fixed random subset of the split) instead of all.
    #[arg(long, value_name = "N")]
    held_out: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the adapted (merged) model.
    #[arg(short, long)]
    output: PathBuf,
    /// Timed tract runs of the input and the written model, interleaved (0: none).
    #[arg(long, default_value_t = 0)]
    runs: usize,
    /// Write report.json and index.html into DIR: accuracy at each stage, the adapter
    /// support and values per layer, the search's generations, the training losses.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    Glora,
    Lora,
    Full,
    Linear,
}

fn parse_budget(s: Option<&str>) -> Result<Option<usize>> {
    let Some(s) = s else { return Ok(None) };
    let n = s
        .strip_prefix("trainable-params=")
        .with_context(|| format!("--budget {s}: write trainable-params=N"))?;
    let n: usize = n
        .trim()
        .parse()
        .with_context(|| format!("--budget {s}: '{n}' is not a count"))?;
    Ok(Some(n))
}

pub fn run(a: Args) -> Result<()> {
    let model = OnnxModel::load(&a.model)?;
    edgeslim_runtime::fsutil::ensure_replaceable(&a.output)?;
    if a.model.canonicalize().ok() == a.output.canonicalize().ok() {
        bail!(
            "-o {}: that is the input model; write elsewhere",
            a.output.display()
        );
    }
    if a.rank == 0 {
        bail!("--rank 0: the rank must be at least 1");
    }
    if let Some(d) = a.report.as_ref().filter(|d| d.exists() && !d.is_dir()) {
        bail!(
            "--report {}: exists and is not a folder (the report is report.json and index.html in a folder)",
            d.display()
        );
    }
    let method = match a.method {
        MethodArg::Linear => Method::Linear,
        MethodArg::Full => Method::Full,
        MethodArg::Lora => Method::Lora(a.rank),
        MethodArg::Glora => match &a.support {
            Some(s) => Method::Glora(LayerSupport::parse(s)?),
            None if a.search_generations == 0 => Method::Glora(LayerSupport::glora_full(a.rank)),
            None => Method::GloraSearch(
                a.rank,
                SearchOptions {
                    population: a.population.max(2),
                    generations: a.search_generations,
                    parents: (a.population / 5).max(1),
                    mutations: a.population.max(2) / 2,
                    crossovers: a.population.max(2) - a.population.max(2) / 2,
                    budget: parse_budget(a.budget.as_deref())?,
                    ..SearchOptions::default()
                },
            ),
        },
    };
    if a.budget.is_some() && !matches!(method, Method::GloraSearch(..)) {
        bail!("--budget: only for GLoRA's search (--method glora without --support)");
    }
    if a.support.is_some() && !matches!(a.method, MethodArg::Glora) {
        bail!("--support: only with --method glora");
    }
    let layers = a
        .layers
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .with_context(|| format!("--layers {}", a.layers.as_deref().unwrap_or("")))?;
    edgeslim::train::interrupt::install();
    let opts = AdaptOptions {
        method,
        data: a.data.clone(),
        layers,
        shots: a.shots,
        epochs: a.epochs,
        lr: a.lr,
        batch_size: a.batch_size,
        max_batches_per_epoch: a.max_batches,
        held_out_cap: a.held_out,
        seed: a.seed,
        progress: !edgeslim_runtime::process::quiet(),
        search_samples: a.search_samples,
        reset_head: a.reset_head,
        ..AdaptOptions::default()
    };
    let mut out = match edgeslim_glora::adapt(&model, &opts) {
        Ok(o) => o,
        Err(e) if edgeslim::train::interrupt::requested() => {
            eprintln!("edgeslim: interrupted ({e}); nothing written");
            std::process::exit(130);
        }
        Err(e) => return Err(e.into()),
    };
    if out.report.stopped.is_some() && edgeslim::train::interrupt::requested() {
        eprintln!("edgeslim: interrupted; nothing written");
        std::process::exit(130);
    }
    out.model.save(&a.output, &SaveOptions::default())?;
    if a.runs > 0 {
        let cfg = HostBenchConfig {
            runs: a.runs,
            threads: 1,
            ..HostBenchConfig::default()
        };
        let b = bench_side_by_side(&[a.model.as_path(), a.output.as_path()], &cfg)?;
        out.report.latency = Some(AdaptLatency {
            runs: a.runs,
            threads: 1,
            original_p50_ms: b[0].latency.p50_ms,
            adapted_p50_ms: b[1].latency.p50_ms,
        });
    }
    if let Some(dir) = &a.report {
        edgeslim::report::adapt::write_adapt(&out.report, &a.model.display().to_string(), dir)?;
    }
    let json = serde_json::to_value(&out.report)?;
    if edgeslim_runtime::json_out::emit(&a.json.dest, &json)? {
        return Ok(());
    }
    let r = &out.report;
    println!(
        "{} -> {} ({})",
        a.model.display(),
        a.output.display(),
        r.method
    );
    println!(
        "  trained {} of {} parameters ({:.2} %); {} layers wrapped; {} training samples{}",
        r.trainable_params,
        r.total_params,
        100.0 * r.trainable_params as f64 / r.total_params.max(1) as f64,
        r.adapters.len(),
        r.train_samples,
        r.shots
            .map(|k| format!(" ({k} per class)"))
            .unwrap_or_default()
    );
    println!(
        "  held-out accuracy ({} samples): before {:.2} %, trained {:.2} %, merged {:.2} % (best epoch {}, {:.0} s)",
        r.held_out_samples,
        100.0 * r.before.accuracy,
        100.0 * r.adapted.accuracy,
        100.0 * r.merged.accuracy,
        r.best_epoch,
        r.train_seconds
    );
    if let Some(s) = &r.search {
        println!(
            "  search: supernet {:.0} s, {} configurations scored on {} samples in {:.0} s; chosen {:.2} % with the shared weights",
            s.supernet_seconds,
            s.evaluations,
            s.search_samples,
            s.search_seconds,
            100.0 * s.fitness
        );
        for ad in &r.adapters {
            println!("    {}: {} ({} values)", ad.node, ad.support, ad.params);
        }
    }
    if let Some(l) = &r.latency {
        println!(
            "  tract p50 {:.3} ms (input) vs {:.3} ms (written), {} interleaved runs",
            l.original_p50_ms, l.adapted_p50_ms, l.runs
        );
    }
    if let Some(d) = &a.report {
        println!("  report: {}", d.join("index.html").display());
    }
    Ok(())
}
