//! `edgeslim train RECIPE.toml` for classifier families (`cnn`, `vit`): build the model from
//! the recipe, train it with [`super::classify::finetune`], write the best epoch's ONNX and its
//! model card. (The `siamese` family is trained by [`super::tracker`].)
//!
//! Output layout: a recipe `output` ending in `.onnx` names the model file, and the card goes
//! next to it as `<stem>.md` and `<stem>.json` (the zoo: `models/mnist-cnn.onnx`,
//! `models/mnist-cnn.md`, `models/mnist-cnn.json`); any other `output` is a folder receiving
//! `model.onnx`, `card.md` and `card.json`.

use super::card::{CardData, CardFile, CardMachine, CardMetrics, ModelCard};
use super::classify::{finetune, EpochStats, FinetuneOptions};
use super::families::FamilySpec;
use super::recipe::{Recipe, ScheduleKind};
use crate::{Error, Result};
use edgeslim_data::folder::FolderOptions;
use edgeslim_data::{DataSpec, SplitData};
use edgeslim_onnx::{OnnxModel, SaveOptions};
use std::path::{Path, PathBuf};

/// Load a classifier data spec. `image` is the model's (channels, height, width), needed for
/// folder data; every set's images are resized to it (MNIST's 28 × 28 grayscale digits for a
/// 224 × 224 model, say).
pub fn load_data(
    spec: &DataSpec,
    image: Option<(usize, usize, usize)>,
    held_out_fraction: f64,
    seed: u64,
) -> Result<SplitData> {
    match spec {
        DataSpec::Mnist => {
            let a = edgeslim_data::assets::Assets::open();
            if !a.mnist_csv().exists() {
                a.ensure()?;
            }
            fit(edgeslim_data::mnist::load_assets(&a)?, image)
        }
        DataSpec::AnimalMnist => {
            let a = edgeslim_data::assets::Assets::open();
            a.ensure()?;
            fit(edgeslim_data::animal_mnist::load_assets(&a)?, image)
        }
        DataSpec::Folder(dir) => {
            let (c, height, width) = image
                .ok_or_else(|| Error::Invalid("folder data needs the model's input size".into()))?;
            if c != 1 && c != 3 {
                return Err(Error::Invalid(format!(
                    "folder data gives 1 (grayscale) or 3 (RGB) channels; the model takes {c}"
                )));
            }
            edgeslim_data::folder::load(
                dir,
                &FolderOptions {
                    height,
                    width,
                    grayscale: c == 1,
                    held_out_fraction,
                    seed,
                    normalization: None,
                },
            )
        }
        DataSpec::Tracking(_) => Err(Error::Invalid(format!(
            "'{spec}' is tracking data; classifiers train on `mnist` or `folder:PATH`"
        ))),
    }
}

/// A built-in set resized to the model's input, when one is given.
fn fit(mut data: SplitData, image: Option<(usize, usize, usize)>) -> Result<SplitData> {
    if let Some((c, h, w)) = image {
        data.train = data.train.resized(c, h, w)?;
        data.held_out = data.held_out.resized(c, h, w)?;
    }
    Ok(data)
}

/// Where a recipe's files go: (model, card markdown, card json).
pub fn output_paths(output: &Path) -> (PathBuf, PathBuf, PathBuf) {
    if output.extension().is_some_and(|e| e == "onnx") {
        (
            output.to_path_buf(),
            output.with_extension("md"),
            output.with_extension("json"),
        )
    } else {
        (
            output.join("model.onnx"),
            output.join("card.md"),
            output.join("card.json"),
        )
    }
}

/// Parameters and MACs at batch 1 of an image classifier.
pub fn params_and_macs(model: &OnnxModel, input: &str, shape: [usize; 4]) -> Result<(u64, u64)> {
    let s: edgeslim_runtime::shapes::InputShape =
        format!("{input}={},{},{},{}", 1, shape[1], shape[2], shape[3]).parse()?;
    let i = edgeslim_onnx::inspect::inspect(model, &[s])?;
    Ok((i.total_params, i.total_macs))
}

/// How to run a classifier recipe.
#[derive(Debug, Clone, Default)]
pub struct ClassifierRun {
    pub threads: usize,
    /// The command line, for the card.
    pub command: String,
    pub recipe_path: Option<PathBuf>,
    pub progress: bool,
    /// Override `schedule.epochs` (short runs in tests).
    pub epochs: Option<usize>,
    /// Cut epochs to this many batches (tests).
    pub max_batches_per_epoch: Option<usize>,
    /// Write here instead of the recipe's `output`.
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ClassifierOutcome {
    pub model: PathBuf,
    pub card: PathBuf,
    pub card_json: PathBuf,
    pub accuracy: f64,
    pub best_epoch: usize,
    pub history: Vec<EpochStats>,
    pub params: u64,
    pub macs: u64,
    pub training_seconds: f64,
    pub samples_per_second: f64,
    pub stopped: Option<String>,
}

/// The fine-tuning options of a classifier recipe for `epochs` epochs: its optimiser, its
/// warm-up and cosine (or constant) schedule, its augmentation, label smoothing and seed.
pub fn recipe_options(recipe: &Recipe, epochs: usize, run: &ClassifierRun) -> FinetuneOptions {
    let s = &recipe.schedule;
    let o = &recipe.optimizer;
    FinetuneOptions {
        epochs,
        batch_size: recipe.batch_size,
        optimizer: o.kind,
        lr: o.lr,
        weight_decay: o.weight_decay,
        momentum: o.momentum,
        warmup_epochs: s.warmup_epochs.min(epochs as f64 * 0.5),
        min_lr_fraction: match s.kind {
            ScheduleKind::Cosine => s.min_lr_fraction,
            ScheduleKind::Constant => 1.0,
        },
        clip_grad_norm: o.clip_grad_norm,
        label_smoothing: recipe.label_smoothing.unwrap_or(0.0) as f64,
        augment_shift: recipe.data.augment_shift,
        no_decay: o.no_decay.clone(),
        seed: recipe.seed,
        threads: run.threads,
        progress: run.progress,
        max_batches_per_epoch: run.max_batches_per_epoch,
        stop_on_ctrl_c: true,
        ..FinetuneOptions::default()
    }
}

/// Train a `cnn` or `vit` recipe and write the model and its card.
pub fn train_classifier(recipe: &Recipe, run: &ClassifierRun) -> Result<ClassifierOutcome> {
    let spec = recipe.model_spec();
    let image = spec.image_input().ok_or_else(|| {
        Error::Invalid(format!(
            "model.family '{}' is not a classifier",
            recipe.model.name()
        ))
    })?;
    if matches!(spec, FamilySpec::Siamese(_)) {
        return Err(Error::Invalid(
            "the siamese family is trained by the tracker trainer".into(),
        ));
    }
    let data = load_data(
        &recipe.data.spec,
        Some((image.0, image.1, image.1)),
        recipe.data.held_out_fraction,
        recipe.seed,
    )?;
    let model = spec.build_train(recipe.batch_size)?;
    let (s, o) = (&recipe.schedule, &recipe.optimizer);
    let epochs = run.epochs.unwrap_or(s.epochs);
    let opts = recipe_options(recipe, epochs, run);
    let r = finetune(&model, &data, &opts)?;
    let output = run.output.clone().unwrap_or_else(|| recipe.output.clone());
    let (model_path, md, json) = output_paths(&output);
    if let Some(dir) = model_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut best = r.model.clone();
    best.set_metadata("edgeslim.recipe", &recipe.name);
    best.set_metadata(
        "edgeslim.held_out_accuracy",
        &format!("{:.4}", r.best.accuracy),
    );
    best.save(&model_path, &SaveOptions::default())?;
    let input = best
        .true_inputs()
        .first()
        .map(|v| v.name.clone())
        .unwrap_or_else(|| "x".into());
    let shape = data.train.input_shape(1);
    let (params, macs) = params_and_macs(&best, &input, shape)?;
    let threads = if run.threads == 0 {
        rayon::current_num_threads()
    } else {
        run.threads
    };
    let last = r.history.iter().rev().find(|h| h.epoch > 0);
    let card = ModelCard {
        name: recipe.name.clone(),
        family: recipe.model.name().into(),
        description: description(&spec),
        config: serde_json::to_value(&spec).unwrap_or_default(),
        inputs: vec![(
            input,
            vec!["N".into(), shape[1].to_string(), shape[2].to_string(), shape[3].to_string()],
        )],
        outputs: vec![(
            best.graph().output.first().map(|o| o.name.clone()).unwrap_or_default(),
            vec!["N".into(), data.train.num_classes().to_string()],
        )],
        data: CardData {
            spec: recipe.data.spec.to_string(),
            source: data.source.clone(),
            split: data.split.clone(),
            train_samples: data.train.len(),
            held_out_samples: data.held_out.len(),
            normalization: data.normalization.clone(),
        },
        seed: recipe.seed,
        epochs: r.history.len() - 1,
        batch_size: recipe.batch_size,
        optimizer: format!(
            "{:?} lr {} wd {}{}, {:?} schedule, {} warm-up epoch(s), label smoothing {}, shifts ≤ {} px; best epoch {} of {}",
            o.kind,
            o.lr,
            o.weight_decay,
            o.clip_grad_norm.map(|c| format!(", clip {c}")).unwrap_or_default(),
            s.kind,
            opts.warmup_epochs,
            recipe.label_smoothing.unwrap_or(0.0),
            opts.augment_shift,
            r.best_epoch,
            epochs
        )
        .to_lowercase(),
        metrics: CardMetrics {
            accuracy: Some(r.best.accuracy),
            per_class: r
                .best
                .per_class
                .iter()
                .map(|c| (c.class.clone(), c.accuracy, c.samples))
                .collect(),
            train_loss: last.map(|h| h.train_loss),
            held_out_loss: Some(r.best.loss),
            extra: [(
                "training samples/s".to_string(),
                r.samples_per_second.round(),
            )]
            .into_iter()
            .collect(),
        },
        params,
        macs,
        training_seconds: r.seconds,
        machine: CardMachine::this(threads),
        command: run.command.clone(),
        recipe: run.recipe_path.as_ref().map(|p| p.display().to_string()),
        files: vec![CardFile::of(&model_path)?],
        edgeslim_version: env!("CARGO_PKG_VERSION").into(),
        provenance: {
            let mut p = vec![format!(
                "trained from scratch with the edgeslim training engine (candle {}), weights initialised from seed {}",
                "0.9.2", recipe.seed
            )];
            if let Some(why) = &r.stopped {
                p.push(format!("training stopped early: {why}"));
            }
            p
        },
    };
    let text = serde_json::to_vec_pretty(&card)
        .map_err(|e| Error::Other(format!("{}: {e}", json.display())))?;
    edgeslim_runtime::fsutil::write_atomic(&json, &text)?;
    edgeslim_runtime::fsutil::write_atomic(&md, card.to_markdown().as_bytes())?;
    Ok(ClassifierOutcome {
        model: model_path,
        card: md,
        card_json: json,
        accuracy: r.best.accuracy,
        best_epoch: r.best_epoch,
        history: r.history,
        params,
        macs,
        training_seconds: r.seconds,
        samples_per_second: r.samples_per_second,
        stopped: r.stopped,
    })
}

fn description(spec: &FamilySpec) -> String {
    match spec {
        FamilySpec::Cnn(c) => format!(
            "A small CNN classifier: {} stages of 3×3 conv + batch norm + ReLU + 2×2 max-pool (widths {:?}), then a linear head.",
            c.widths.len(),
            c.widths
        ),
        FamilySpec::Vit(c) => format!(
            "A small Vision Transformer: {}×{} patches, width {}, {} pre-norm blocks with {}-head self-attention (LayerNorm, GELU MLP ×{}), class token, linear head.",
            c.patch, c.patch, c.dim, c.depth, c.heads, c.mlp_ratio
        ),
        FamilySpec::Siamese(_) => "A Siamese tracker.".into(),
    }
}
