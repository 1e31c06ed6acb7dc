//! `edgeslim meta train | eval | adapt`: gradient-based meta-learning (MAML, first-order MAML,
//! iMAML) of a Conv-4 on a few-shot pool, with MetaDOCK's per-kernel gates; each task's model
//! exported with only its active kernels.

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use edgeslim::data::fewshot::{EpisodeSpec, Pool};
use edgeslim::metadock::learner::{Algo, GateConfig, LearnerConfig};
use edgeslim::metadock::run::{self, MetaTrainOptions};
use edgeslim::metadock::Arch;
use edgeslim::onnx::SaveOptions;
use std::path::PathBuf;

/// Meta-learning with MetaDOCK's dynamic kernel selection.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Meta-train on the pool's meta-train classes: each meta-step adapts to --meta-batch
    /// episodes with --inner-steps SGD steps on their support sets and updates the
    /// initialisation from their query losses. With --metadock, one gate per 2-D kernel is
    /// adapted in the same inner loop (a gate step after each weight step, on CE +
    /// w_b·(active − target)² + 1e-6‖ζ‖₁, w_b ramped to 50) and meta-learned. Validation on
    /// meta-val episodes keeps the best meta-model. Writes OUT/meta.onnx, OUT/gates.json,
    /// OUT/meta.json.
    #[command(after_help = "Examples:\n  \
edgeslim data fewshot -o data/fewshot\n  \
edgeslim meta train --data data/fewshot --arch conv4 --algo fomaml --shots 1 --episodes 2000 -o meta/conv4-1s\n  \
edgeslim meta train --data data/fewshot --arch conv4-wide --algo maml --metadock --target-active 0.25 --shots 5 -o meta/wide-dock-5s")]
    Train(TrainArgs),
    /// Adapt to meta-test episodes and score their queries: mean accuracy ± 95 % confidence
    /// interval, active kernels, parameters and MACs of the packed task models (JSON with
    /// --json).
    #[command(
        after_help = "Example:\n  edgeslim meta eval meta/conv4-1s --data data/fewshot --tasks 600 --shots 1 --json conv4-1s.json"
    )]
    Eval(EvalArgs),
    /// Adapt on the host to a new task's support set (one sub-folder of images per class,
    /// classes in sorted order) and export the task's model with only its active kernels,
    /// packed to channels; prints its parameters, MACs and tract latency against the dense
    /// meta-model's.
    #[command(
        after_help = "Example:\n  edgeslim meta adapt meta/wide-dock-5s --support my-task/ -o task.onnx"
    )]
    Adapt(AdaptArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ArchArg {
    Conv4,
    Conv4Wide,
    Resnet12Small,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AlgoArg {
    Maml,
    Fomaml,
    Imaml,
}

#[derive(ClapArgs)]
struct TrainArgs {
    /// A few-shot pool (`edgeslim data fewshot`).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "conv4")]
    arch: ArchArg,
    #[arg(long, value_enum, default_value = "fomaml")]
    algo: AlgoArg,
    /// Learn a gate per 2-D kernel in the inner loop (MetaDOCK).
    #[arg(long)]
    metadock: bool,
    /// MetaDOCK's wanted share of active kernels.
    #[arg(long, default_value_t = 0.25, value_name = "F")]
    target_active: f64,
    /// Step size of the inner gate steps.
    #[arg(long, default_value_t = 50.0, value_name = "LR")]
    gate_lr: f64,
    /// Meta-steps.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    episodes: usize,
    /// Tasks per meta-step.
    #[arg(long, default_value_t = 4, value_name = "N")]
    meta_batch: usize,
    #[arg(long, default_value_t = 5)]
    ways: usize,
    #[arg(long, default_value_t = 1)]
    shots: usize,
    #[arg(long, default_value_t = 15)]
    queries: usize,
    /// Inner SGD step size α.
    #[arg(long, default_value_t = 0.1, value_name = "LR")]
    inner_lr: f64,
    /// Inner steps per task in meta-training.
    #[arg(long, default_value_t = 5, value_name = "N")]
    inner_steps: usize,
    /// Inner steps when adapting to a validation or test task.
    #[arg(long, default_value_t = 10, value_name = "N")]
    test_steps: usize,
    /// Adam's step size for the meta-weights and gates.
    #[arg(long, default_value_t = 1e-3, value_name = "LR")]
    outer_lr: f64,
    /// iMAML's proximal λ.
    #[arg(long, default_value_t = 0.5)]
    lambda: f64,
    /// iMAML's conjugate-gradient iterations.
    #[arg(long, default_value_t = 5, value_name = "N")]
    cg_steps: usize,
    /// Validate every N meta-steps on --val-tasks meta-val episodes (0: at the end only).
    #[arg(long, default_value_t = 250, value_name = "N")]
    val_every: usize,
    #[arg(long, default_value_t = 50, value_name = "N")]
    val_tasks: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Engine threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Output folder (must not exist, or be empty).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
}

#[derive(ClapArgs)]
struct EvalArgs {
    /// A meta-model folder (`edgeslim meta train`).
    model: PathBuf,
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    #[arg(long, default_value_t = 600, value_name = "N")]
    tasks: usize,
    /// Shots of the test episodes (default: the meta-model's).
    #[arg(long)]
    shots: Option<usize>,
    #[arg(long, default_value_t = 15)]
    queries: usize,
    /// Inner steps per test task (default: the meta-model's --test-steps).
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Seed of the test episodes (the same tasks for every model).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(ClapArgs)]
struct AdaptArgs {
    /// A meta-model folder (`edgeslim meta train`).
    model: PathBuf,
    /// The task's labelled images: one sub-folder per class.
    #[arg(long, value_name = "DIR")]
    support: PathBuf,
    /// Inner steps (default: the meta-model's --test-steps).
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Benchmark runs of the task model and the dense meta-model, interleaved (0: none).
    #[arg(long, default_value_t = 200, value_name = "N")]
    bench_runs: usize,
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    match a.what {
        What::Train(t) => train(t),
        What::Eval(e) => eval(e),
        What::Adapt(d) => adapt(d),
    }
}

fn read_pool(dir: &std::path::Path) -> Result<Pool> {
    Pool::read(dir).with_context(|| {
        format!(
            "reading the few-shot pool {} (write one with `edgeslim data fewshot -o DIR`)",
            dir.display()
        )
    })
}

fn train(a: TrainArgs) -> Result<()> {
    edgeslim::data::ensure_new_folder(&a.output)?;
    if a.metadock && !(a.target_active > 0.0 && a.target_active <= 1.0) {
        bail!("--target-active {}: must be in (0, 1]", a.target_active);
    }
    let pool = read_pool(&a.data)?;
    let opts = MetaTrainOptions {
        arch: match a.arch {
            ArchArg::Conv4 => Arch::Conv4,
            ArchArg::Conv4Wide => Arch::Conv4Wide,
            ArchArg::Resnet12Small => Arch::Resnet12Small,
        },
        learner: LearnerConfig {
            algo: match a.algo {
                AlgoArg::Maml => Algo::Maml,
                AlgoArg::Fomaml => Algo::Fomaml,
                AlgoArg::Imaml => Algo::Imaml,
            },
            inner_lr: a.inner_lr,
            inner_steps: a.inner_steps,
            lambda: a.lambda,
            cg_steps: a.cg_steps,
            gates: a.metadock.then_some(GateConfig {
                target_active: a.target_active,
                lr: a.gate_lr,
                ..GateConfig::default()
            }),
        },
        episodes: a.episodes,
        meta_batch: a.meta_batch,
        spec: EpisodeSpec {
            ways: a.ways,
            shots: a.shots,
            queries: a.queries,
        },
        outer_lr: a.outer_lr,
        test_steps: a.test_steps,
        val_every: a.val_every,
        val_tasks: a.val_tasks,
        seed: a.seed,
        threads: a.threads,
        progress: !edgeslim_runtime::process::quiet(),
    };
    edgeslim::train::interrupt::install();
    let t = run::train(&pool, &opts)?;
    if t.card.stopped.is_some() && edgeslim::train::interrupt::requested() {
        eprintln!("edgeslim: interrupted; nothing written");
        std::process::exit(130);
    }
    run::save(&a.output, &t)?;
    let last = t.card.history.last();
    println!(
        "meta-trained {} ({}{}) for {} meta-steps in {:.0} s: best meta-val accuracy {:.1} % at step {}{}",
        opts.arch.name(),
        opts.learner.algo.name(),
        if a.metadock { ", MetaDOCK" } else { "" },
        t.card.history.len(),
        t.card.seconds,
        t.card.best_val_accuracy * 100.0,
        t.card.best_step,
        last.map(|h| format!(", active kernels {:.1} %", h.active * 100.0))
            .unwrap_or_default()
    );
    println!("wrote {}", a.output.display());
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    if let Some(path) = &a.json {
        // Refused before the evaluation, not after it.
        edgeslim_runtime::fsutil::ensure_replaceable(path)?;
    }
    let (learner, card) = run::load(&a.model, a.threads)
        .with_context(|| format!("reading the meta-model {}", a.model.display()))?;
    let pool = read_pool(&a.data)?;
    let spec = EpisodeSpec {
        ways: card.options.spec.ways,
        shots: a.shots.unwrap_or(card.options.spec.shots),
        queries: a.queries,
    };
    edgeslim::train::interrupt::install();
    let r = run::evaluate(
        &learner,
        &pool,
        spec,
        a.tasks,
        a.steps.unwrap_or(card.options.test_steps),
        a.seed,
        !edgeslim_runtime::process::quiet(),
    )?;
    println!(
        "{}-way {}-shot, {} meta-test tasks: accuracy {:.2} % ± {:.2} (95 % CI)",
        spec.ways,
        spec.shots,
        r.tasks,
        r.accuracy * 100.0,
        r.ci95 * 100.0
    );
    println!(
        "active kernels {:.1} % (sd {:.1}, {:.1}–{:.1}); task model: {:.0} params ({:.0} nonzero), {:.0} MACs ({:.0} active) against dense {} params, {} MACs; channels per block {:?}",
        r.active.mean * 100.0,
        r.active.std * 100.0,
        r.active.min * 100.0,
        r.active.max * 100.0,
        r.params.mean,
        r.nonzero_params.mean,
        r.macs.mean,
        r.active_macs.mean,
        r.dense.params,
        r.dense.macs,
        r.widths.iter().map(|w| (w * 10.0).round() / 10.0).collect::<Vec<_>>()
    );
    if let Some(path) = &a.json {
        let bytes = serde_json::to_vec_pretty(&r)?;
        edgeslim_runtime::fsutil::write_atomic(path, &bytes)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn adapt(a: AdaptArgs) -> Result<()> {
    if a.output.is_dir() {
        bail!(
            "-o {}: is a folder; name the task model's file",
            a.output.display()
        );
    }
    // The task model is built afresh, so name the meta-model's files as inputs: never
    // written over.
    let inputs: Vec<PathBuf> = [run::META_ONNX, run::GATES_JSON, run::CARD_JSON]
        .iter()
        .map(|f| a.model.join(f))
        .collect();
    let inputs: Vec<&std::path::Path> = inputs.iter().map(PathBuf::as_path).collect();
    edgeslim_runtime::fsutil::ensure_not_input(&a.output, &inputs)?;
    edgeslim_runtime::fsutil::ensure_replaceable(&a.output)?;
    let (learner, card) = run::load(&a.model, 0)
        .with_context(|| format!("reading the meta-model {}", a.model.display()))?;
    let (names, px, labels) = run::read_support(&a.support)?;
    let (task, support_accuracy) = run::adapt_support(
        &learner,
        (px, labels.clone()),
        a.steps.unwrap_or(card.options.test_steps),
    )?;
    let mut model = task.model;
    model.set_metadata("edgeslim.classes", &names.join(","));
    model.save(&a.output, &SaveOptions::default())?;
    let s = &task.stats;
    let kernels: usize = s.kernels.iter().sum();
    println!(
        "adapted to {} classes ({} support images, {:.0} % right after adapting): {} of {} kernels active ({:.1} %)",
        names.len(),
        labels.len(),
        support_accuracy * 100.0,
        s.active_kernels.iter().sum::<usize>(),
        kernels,
        100.0 * s.active_kernels.iter().sum::<usize>() as f64 / kernels.max(1) as f64
    );
    println!(
        "task model {}: channels {:?}, {} params ({} nonzero), {} MACs ({} active)",
        a.output.display(),
        s.widths,
        s.params,
        s.nonzero_params,
        s.macs,
        s.active_macs
    );
    if a.bench_runs > 0 {
        bench_against_dense(&a, &learner)?;
    }
    Ok(())
}

/// tract latency of the task model against the dense meta-model (every kernel), interleaved.
fn bench_against_dense(a: &AdaptArgs, learner: &edgeslim::metadock::Learner) -> Result<()> {
    use edgeslim::bench::{bench_side_by_side, HostBenchConfig};
    let dense = edgeslim::metadock::export::dense_model(&learner.module, &learner.net)?;
    let dir = tempfile::tempdir()?;
    let dense_path = dir.path().join("dense.onnx");
    dense.model.save(&dense_path, &SaveOptions::default())?;
    let cfg = HostBenchConfig {
        runs: a.bench_runs,
        ..HostBenchConfig::default()
    };
    let reports = bench_side_by_side(&[&a.output, &dense_path], &cfg)?;
    if let [task, dense] = reports.as_slice() {
        println!(
            "tract, batch 1, interleaved {} runs: task model p50 {:.3} ms, dense meta-model p50 {:.3} ms ({:.2}×)",
            a.bench_runs,
            task.latency.p50_ms,
            dense.latency.p50_ms,
            dense.latency.p50_ms / task.latency.p50_ms.max(1e-9)
        );
    }
    Ok(())
}
