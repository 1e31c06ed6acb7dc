//! `edgeslim anomaly fit|finetune|make-data`: Gaussian anomaly detectors and their data.

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use edgeslim::anomaly::data::{make_data, Defect, MakeDataOptions};
use edgeslim::anomaly::finetune::{finetune, trunk_meta, FinetuneOptions};
use edgeslim::anomaly::fit::normal_images;
use edgeslim::anomaly::{backbones, export, fit, FitOptions, ImageScore, Prep, Shrinkage};
use edgeslim::assets::Assets;
use edgeslim::onnx::SaveOptions;
use std::path::{Path, PathBuf};

/// Gaussian (Mahalanobis) anomaly detection: fit on good parts only, export one ONNX.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit a detector on normal images and write it as one ONNX graph.
    #[command(
        after_help = "Examples:\n  edgeslim anomaly make-data --texture brick --seed 1 -o brick\n  edgeslim anomaly fit --normal brick/train/good -o brick.onnx --maps\n  edgeslim anomaly fit --normal coffee/train/good -o coffee.onnx --maps --per-position --image-score map-max\n  edgeslim anomaly fit --backbone my.onnx --layers layer1.out layer2.out --rgb --normal good/ -o det.onnx\n\nWithout --backbone, EfficientNet-Lite0 (ImageNet, `edgeslim zoo import`) imported at the images'\nsize, layers blocks.0.project_conv.out, blocks.2.add.out, blocks.4.add.out, blocks.7.add.out\n(strides 2-16). --backbone ppocr-det: PP-OCRv4's detector (layers p2o.Add.43/71/147, BGR input);\n--backbone mobilenetv2. docs/results/anomaly-backbones.md compares them."
    )]
    Fit(FitArgs),
    /// Fine-tune the backbone on normal images (Mahalanobis loss), early-stopped on synthetic anomalies.
    #[command(
        after_help = "Example:\n  edgeslim anomaly finetune --normal brick/train/good -o brick-ft.onnx --curves brick-ft.json\n  edgeslim anomaly fit --backbone brick-ft.onnx --normal brick/train/good -o brick.onnx --maps\n\nWrites the fine-tuned trunk (RGB in [0, 1], the chosen layers as outputs); `fit` recognises it\nand needs neither --layers nor normalisation flags. Validation: a share of the normal images\nheld out, and synthetic anomalies made from them (noise, blur, intensity, swapped patches);\ntraining stops when their AUROC stops improving for --patience epochs, keeping the best epoch."
    )]
    Finetune(FinetuneArgs),
    /// Write an MVTec-layout data set from a real texture with synthetic defects and masks.
    #[command(
        after_help = "Example:\n  edgeslim anomaly make-data --texture brick --seed 1 -o data/brick\n\nTextures: brick, grass, gravel; photographs (coffee, astronaut, chelsea, ...) give\njittered patches like MVTec's object categories; or pass any image file."
    )]
    MakeData(MakeDataArgs),
}

#[derive(ClapArgs)]
struct FitArgs {
    #[command(flatten)]
    backbone: BackboneArgs,
    /// Folder of normal images (searched recursively; all one size unless --size).
    #[arg(long)]
    normal: PathBuf,
    /// Where to write the detector.
    #[arg(short, long)]
    output: PathBuf,
    /// Also output an anomaly map (per-location Gaussians, upsampled to the input size).
    #[arg(long)]
    maps: bool,
    /// Covariance estimate.
    #[arg(long, value_enum, default_value = "ledoit-wolf")]
    shrinkage: Shrinkage,
    /// False-positive rate the χ² thresholds are set for (0.0027: the 3-sigma rate).
    #[arg(long, default_value_t = 0.0027)]
    fpr: f64,
    /// Location vectors per level for the map Gaussians (sampled evenly with --seed).
    #[arg(long, default_value_t = 50_000)]
    map_samples: usize,
    /// One map Gaussian per feature-map position (PaDiM) instead of one per level shared by
    /// every position (needs --maps).
    #[arg(long, requires = "maps")]
    per_position: bool,
    /// The image score: the pooled features' distance, or the anomaly map's maximum (needs
    /// --maps; finds small defects a pooled score averages away).
    #[arg(long, value_enum, default_value = "pooled")]
    image_score: ImageScore,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

#[derive(ClapArgs)]
struct FinetuneArgs {
    #[command(flatten)]
    backbone: BackboneArgs,
    /// Folder of normal images.
    #[arg(long)]
    normal: PathBuf,
    /// Where to write the fine-tuned trunk.
    #[arg(short, long)]
    output: PathBuf,
    /// Write both curves (objective and validation AUROC per epoch) here as JSON.
    #[arg(long, value_name = "FILE")]
    curves: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Share of the normal images held out for validation.
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    /// Epochs without a better validation AUROC before stopping.
    #[arg(long, default_value_t = 2)]
    patience: usize,
    /// Threads for the training engine (0: all cores).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(ClapArgs)]
struct MakeDataArgs {
    /// brick, grass, gravel, a photograph's name (coffee, astronaut, ...) or an image file.
    #[arg(long)]
    texture: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(short, long)]
    output: PathBuf,
    /// Crop size in pixels (square; a multiple of 32 suits most backbones).
    #[arg(long, default_value_t = 192)]
    size: u32,
    #[arg(long, default_value_t = 200)]
    train: usize,
    #[arg(long, default_value_t = 40)]
    test_good: usize,
    /// Test images per defect kind.
    #[arg(long, default_value_t = 20)]
    per_defect: usize,
    /// Defect kinds (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    defects: Vec<Defect>,
    /// Textures: train crops from the left 60 % of the image, test crops from the rest (no
    /// test pixel seen in training; the strip is a place training never covered).
    #[arg(long)]
    disjoint: bool,
}

fn three(v: &[f32], what: &str) -> Result<[f32; 3]> {
    match v {
        [a] => Ok([*a; 3]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => anyhow::bail!(
            "--{what} takes 1 or 3 comma-separated values, got {}",
            v.len()
        ),
    }
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parts: Vec<&str> = s.split(',').collect();
    let num = |p: &str| -> Result<usize> {
        p.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v > 0)
            .with_context(|| format!("--size '{s}': '{p}' is not a positive number"))
    };
    match parts.as_slice() {
        [a] => Ok((num(a)?, num(a)?)),
        [a, b] => Ok((num(a)?, num(b)?)),
        _ => anyhow::bail!("--size '{s}': expected H,W or S"),
    }
}

/// The backbone's flags as given on the command line.
/// The backbone and how its input is prepared: shared by `fit` and `finetune`.
#[derive(ClapArgs)]
struct BackboneArgs {
    /// efficientnet-lite0 (default), mobilenetv2 or ppocr-det (PP-OCRv4's detector), or an
    /// ONNX file with named intermediate tensors (then --layers).
    #[arg(long, value_name = "NAME|FILE")]
    backbone: Option<PathBuf>,
    /// Feature tensors, shallow to deep (default for the named backbones: their stage outputs).
    #[arg(long, num_args = 1..)]
    layers: Vec<String>,
    /// Resize every image to H,W (or S for a square) instead of requiring one size.
    #[arg(long, value_name = "H,W")]
    size: Option<String>,
    /// Per-channel mean of the backbone's input (after scaling to [0, 1]).
    #[arg(long, value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Per-channel standard deviation of the backbone's input.
    #[arg(long, value_delimiter = ',')]
    std: Option<Vec<f32>>,
    /// The backbone takes RGB (default for a user backbone).
    #[arg(long, conflicts_with = "bgr")]
    rgb: bool,
    /// The backbone takes BGR (default for PP-OCR).
    #[arg(long)]
    bgr: bool,
}

/// Backbone path, layers and input preparation: a named backbone (default
/// efficientnet-lite0, imported at the images' size), a fine-tuned trunk from `anomaly
/// finetune` (its layers; the normalisation is inside it), or a user backbone file.
fn resolve_backbone(a: &BackboneArgs, normal: &Path) -> Result<(PathBuf, Vec<String>, Prep)> {
    let spec = a
        .backbone
        .clone()
        .unwrap_or_else(|| PathBuf::from(backbones::DEFAULT));
    let named = if spec.is_file() {
        None
    } else {
        let name = spec.to_string_lossy().into_owned();
        let (h, w) = match a.size.as_deref().map(parse_size).transpose()? {
            Some(s) => s,
            None => normal_images(normal, None)?.1,
        };
        match backbones::named(&name, h, w, &Assets::open())? {
            Some(n) => Some(n),
            None => anyhow::bail!(
                "--backbone {name}: neither an ONNX file nor a backbone name ({})",
                backbones::NAMES.join(", ")
            ),
        }
    };
    let (backbone, trunk) = match &named {
        Some(n) => (n.path.clone(), None),
        None => {
            let m = edgeslim::onnx::OnnxModel::load(&spec)?;
            let t = trunk_meta(&m).with_context(|| spec.display().to_string())?;
            (spec.clone(), t)
        }
    };
    let layers = if !a.layers.is_empty() {
        a.layers.clone()
    } else if let Some(t) = &trunk {
        t.layers.clone()
    } else if let Some(n) = &named {
        n.layers.clone()
    } else {
        anyhow::bail!(
            "--layers: name the feature tensors of {} (list them with `edgeslim inspect`)",
            backbone.display()
        );
    };
    let base = if trunk.is_some() {
        // The fine-tuned trunk already takes RGB in [0, 1].
        Prep {
            mean: [0.0; 3],
            std: [1.0; 3],
            bgr: false,
        }
    } else if let Some(n) = &named {
        n.prep.clone()
    } else {
        Prep {
            bgr: false,
            ..Prep::ppocr()
        }
    };
    let prep = Prep {
        mean: a
            .mean
            .as_deref()
            .map(|m| three(m, "mean"))
            .transpose()?
            .unwrap_or(base.mean),
        std: a
            .std
            .as_deref()
            .map(|m| three(m, "std"))
            .transpose()?
            .unwrap_or(base.std),
        bgr: if a.rgb { false } else { a.bgr || base.bgr },
    };
    if prep.std.contains(&0.0) {
        anyhow::bail!("--std values must be non-zero");
    }
    Ok((backbone, layers, prep))
}

fn run_fit(a: FitArgs) -> Result<()> {
    let (backbone, layers, prep) = resolve_backbone(&a.backbone, &a.normal)?;
    let det = fit(&FitOptions {
        backbone: backbone.clone(),
        layers,
        normal: a.normal.clone(),
        size: a.backbone.size.as_deref().map(parse_size).transpose()?,
        prep,
        shrinkage: a.shrinkage,
        fpr: a.fpr,
        maps: a.maps,
        map_samples: a.map_samples.max(1),
        per_position: a.per_position,
        image_score: a.image_score,
        seed: a.seed,
        progress: true,
    })?;
    for n in &det.notes {
        eprintln!("note: {n}");
    }
    let model = export(&det)?;
    edgeslim_runtime::fsutil::ensure_not_input(&a.output, &[&backbone])?;
    model.save(&a.output, &SaveOptions::default())?;
    if edgeslim_runtime::json_out::emit(&a.json.dest, &det.meta)? {
        return Ok(());
    }
    let m = &det.meta;
    println!(
        "{} -> {}  ({} normal images, input {}x{})",
        a.normal.display(),
        a.output.display(),
        m.normal_images,
        m.width,
        m.height
    );
    for l in &m.levels {
        println!(
            "  {:<16} k={:<4} grid {}x{}  shrinkage image {:.3} map {:.3}  sqrt(chi2) {:.2}",
            l.tensor,
            l.channels,
            l.grid[1],
            l.grid[0],
            l.shrinkage_image,
            l.shrinkage_map,
            l.chi_quantile
        );
    }
    println!(
        "  image threshold {:.3} (fpr {}); normal training scores mean {:.3} ± {:.3}, max {:.3}",
        m.image.threshold, m.fpr, m.image.normal_mean, m.image.normal_std, m.image.normal_max
    );
    if let Some(mm) = &m.map {
        println!(
            "  pixel threshold {:.3}; normal training pixels mean {:.3} ± {:.3}, max {:.3}",
            mm.threshold, mm.normal_mean, mm.normal_std, mm.normal_max
        );
    }
    Ok(())
}

fn run_finetune(a: FinetuneArgs) -> Result<()> {
    let (backbone, layers, prep) = resolve_backbone(&a.backbone, &a.normal)?;
    edgeslim_runtime::fsutil::ensure_not_input(&a.output, &[&backbone])?;
    let r = finetune(&FinetuneOptions {
        backbone: backbone.clone(),
        layers,
        normal: a.normal.clone(),
        size: a.backbone.size.as_deref().map(parse_size).transpose()?,
        prep,
        epochs: a.epochs,
        lr: a.lr,
        batch: a.batch,
        val_fraction: a.val_fraction,
        patience: a.patience,
        threads: a.threads,
        seed: a.seed,
        progress: true,
    })?;
    r.model.save(&a.output, &SaveOptions::default())?;
    if let Some(c) = &a.curves {
        let bytes = serde_json::to_vec_pretty(&r.meta)?;
        edgeslim_runtime::fsutil::write_atomic(c, &bytes)
            .with_context(|| format!("writing {}", c.display()))?;
    }
    println!(
        "{} -> {}  ({} images to train on, {} held out with {} synthetic anomalies)",
        a.normal.display(),
        a.output.display(),
        r.train_images,
        r.val_images,
        2 * r.val_images
    );
    println!("  epoch  step loss  train score  val normal  val anomaly  val AUROC   s");
    for e in &r.meta.curves {
        println!(
            "  {:>5}  {:>9}  {:>11.3}  {:>10.3}  {:>11.3}  {:>8.1}%  {:>3.0}{}",
            e.epoch,
            e.step_loss
                .map(|l| format!("{l:.3}"))
                .unwrap_or_else(|| "-".into()),
            e.train_score,
            e.val_normal_score,
            e.val_anomaly_score,
            100.0 * e.val_auroc,
            e.seconds,
            if e.epoch == r.meta.best_epoch {
                "  <- kept"
            } else {
                ""
            }
        );
    }
    println!("  stopped: {}", r.stop);
    Ok(())
}

fn run_make_data(a: MakeDataArgs) -> Result<()> {
    let assets = Assets::open();
    if std::path::Path::new(&a.texture).is_file() {
        // A user's own image needs no assets.
    } else {
        assets.ensure()?;
    }
    let defects = if a.defects.is_empty() {
        Defect::ALL.to_vec()
    } else {
        a.defects
    };
    let s = make_data(
        &MakeDataOptions {
            texture: a.texture,
            seed: a.seed,
            out: a.output.clone(),
            size: a.size,
            train: a.train,
            test_good: a.test_good,
            per_defect: a.per_defect,
            defects,
            disjoint: a.disjoint,
        },
        &assets,
    )?;
    println!(
        "{} ({}, seed {}): train/good {}, test/good {}, {} -> {}",
        s.source,
        s.mode,
        s.seed,
        s.train_good,
        s.test_good,
        s.defects
            .iter()
            .map(|(d, n)| format!("{d} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        a.output.display()
    );
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        Command::Fit(f) => run_fit(f),
        Command::Finetune(f) => run_finetune(f),
        Command::MakeData(m) => run_make_data(m),
    }
}
