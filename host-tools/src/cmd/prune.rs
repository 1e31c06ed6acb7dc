//! `edgeslim compress prune` (and the listing behind `edgeslim analyze --groups`): structured
//! pruning with channel dependency groups (`edgeslim::prune`).

use anyhow::{bail, Result};
use edgeslim::onnx::OnnxModel;
use edgeslim::prune::job::{MeasureSettings, PruneJob, PruneRun};
use edgeslim::prune::{self, Criterion, PruneOptions};
use edgeslim_runtime::input::ImagePrep;
use edgeslim_runtime::InputShape;
use std::path::PathBuf;

fn parse_triple(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| x.trim().parse::<f32>().map_err(|e| format!("'{x}': {e}")))
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [x] => Ok([*x; 3]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => Err("give one value or three (R,G,B)".into()),
    }
}

/// Structured pruning with channel dependency groups: removes the least important channels
/// of every group (a Conv's outputs together with its BatchNorm, activations, residual
/// partners, concat slots and the next layers' inputs), rewrites every member's weights and
/// keeps the graph's input and output shapes.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    edgeslim compress prune det.onnx --ratio 0.5 --input-shape x=1,3,640,640 -o det-p50.onnx --report det-p50\n  \
    edgeslim compress prune cls.onnx --ratio 0.3 --criterion activation --calib ppocr-text --round-to 8 \\\n      \
    -o cls-p30.onnx --report cls-p30\n  \
    edgeslim compress prune det.onnx --ratio 0.5 --input-shape x=1,3,640,640 --calib page.png --bgr -o d.onnx\n\n\
    --calib takes a data SPEC (ppocr-text, mnist, animal-mnist, images:DIR, npy:FILE: calibration and held-out\n\
    splits) or image/.npy paths (preprocessed with --mean/--std/--bgr, cut into --crops windows).\n\
    `edgeslim analyze --groups MODEL` lists the channel groups and why some are kept whole.")]
pub struct PruneArgs {
    /// The ONNX model (never overwritten), or a tracker directory (template.onnx +
    /// search.onnx of the siamese family), pruned as a pair into the directory -o names.
    pub(super) model: PathBuf,
    /// Fraction of channels to remove from each group (or overall with --global), in [0, 1).
    #[arg(
        long,
        allow_negative_numbers = true,
        required_unless_present = "keep_params"
    )]
    pub(super) ratio: Option<f64>,
    /// Tracker directories: keep at most this fraction of the parameters (every layer keeps
    /// the same share of its channels: layer-wise thresholds), instead of --ratio.
    #[arg(long, value_name = "F", conflicts_with = "ratio")]
    pub(super) keep_params: Option<f64>,
    /// How channels are ranked (taylor: |Σ a·∂L/∂a| on labelled --calib data, by the
    /// training engine).
    #[arg(long, value_enum, default_value = "l1")]
    pub(super) criterion: Criterion,
    /// One ranking over all groups instead of the same ratio in each.
    #[arg(long)]
    pub(super) global: bool,
    /// Round kept channel counts up to a multiple of N (SIMD-friendly: 4 or 8).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(super) round_to: usize,
    /// Keep at least N channels in every group.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(super) min_channels: usize,
    /// Keep whole every group with a layer or tensor name matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub(super) exclude: Option<String>,
    /// Also prune channels a LayerNorm normalises over (ConvNeXt's channels-last LayerNorm,
    /// a ViT's residual stream), as Torch-Pruning does. Not exact: the kept channels are
    /// normalised with new statistics; check the report's fidelity and use --finetune.
    #[arg(long)]
    pub(super) prune_layernorm: bool,
    /// Prove the rewrite on this model before writing it: run the pruned model and the
    /// original with the removed channels' consumer weights zeroed (which must agree) in
    /// tract on up to 8 inputs, refuse to write if they differ beyond float rounding, and
    /// record the figures in the report. Not with --prune-layernorm (not exact by design).
    #[arg(long, conflicts_with = "prune_layernorm")]
    pub(super) verify_exact: bool,
    /// Calibration data: a SPEC (ppocr-text, mnist, animal-mnist, images:DIR, npy:FILE) or image/.npy
    /// files and directories (repeatable). Used by --criterion activation and for fidelity.
    #[arg(long, value_name = "SPEC")]
    pub(super) calib: Vec<String>,
    /// At most this many calibration samples.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub(super) calib_samples: usize,
    /// For image paths: cut N windows of the input's aspect ratio from each image.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(super) crops: usize,
    /// For image paths: per-channel mean after scaling pixels to [0, 1] (one value or R,G,B).
    #[arg(long, value_parser = parse_triple, default_value = "0.485,0.456,0.406")]
    pub(super) mean: [f32; 3],
    /// For image paths: per-channel std (one value or R,G,B).
    #[arg(long, value_parser = parse_triple, default_value = "0.229,0.224,0.225")]
    pub(super) std: [f32; 3],
    /// For image paths: feed BGR (OpenCV-trained models such as PP-OCR).
    #[arg(long)]
    pub(super) bgr: bool,
    /// Fix an input's shape for the analysis, NAME=D0,D1,... (needed for symbolic inputs).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    pub(super) input_shapes: Vec<InputShape>,
    /// Recovery fine-tuning of the pruned model with the training engine on labelled data:
    /// `mnist`, `animal-mnist` or `folder:PATH` (classifiers with one [N, C, H, W] input).
    #[arg(long, value_name = "SPEC")]
    pub(super) finetune: Option<String>,
    /// Fine-tuning epochs (default 3).
    #[arg(long, requires = "finetune")]
    pub(super) epochs: Option<usize>,
    /// Fine-tuning learning rate (AdamW, cosine schedule).
    #[arg(long, requires = "finetune", default_value_t = 1e-3, value_name = "LR")]
    pub(super) lr: f64,
    /// Distil from the unpruned model while fine-tuning.
    #[arg(long, requires = "finetune")]
    pub(super) teacher: bool,
    /// Where to write the pruned model.
    #[arg(short, long)]
    pub(super) output: PathBuf,
    /// Write report.json and index.html (measured latency, fidelity, per layer) into DIR.
    #[arg(long, value_name = "DIR")]
    pub(super) report: Option<PathBuf>,
    /// Timed tract runs per model for the report (0: no latency).
    #[arg(long, default_value_t = 20)]
    pub(super) runs: usize,
    /// tract threads for the report's latency.
    #[arg(long, default_value_t = 1)]
    pub(super) threads: usize,
}

/// A single graph (tracker directories go to `prune_tracker`; `compress::run` dispatches).
pub fn run(a: PruneArgs) -> Result<()> {
    let Some(ratio) = a.ratio else {
        bail!(
            "{}: --keep-params is for tracker directories (template.onnx + search.onnx); give --ratio for a single graph",
            a.model.display()
        );
    };
    let job = PruneJob {
        model: a.model.clone(),
        output: a.output.clone(),
        options: PruneOptions {
            ratio,
            criterion: a.criterion,
            global: a.global,
            round_to: a.round_to,
            min_channels: a.min_channels,
            exclude: a.exclude.clone(),
            prune_layernorm: a.prune_layernorm,
            input_shapes: a.input_shapes.clone(),
        },
        calib: a.calib.clone(),
        calib_samples: a.calib_samples,
        crops: a.crops,
        prep: ImagePrep {
            scale: 1.0 / 255.0,
            mean: a.mean,
            std: a.std,
            bgr: a.bgr,
        },
        verify_exact: a.verify_exact,
        recovery: a.finetune.as_ref().map(|data| prune::RecoveryOptions {
            data: data.clone(),
            epochs: a.epochs.unwrap_or(3),
            lr: a.lr,
            teacher: a.teacher,
            seed: 0,
            threads: 0,
            progress: false,
        }),
        measure: a.report.as_ref().map(|_| MeasureSettings {
            runs: a.runs,
            threads: a.threads,
        }),
    };
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    let step = |m: &str| progress.set_message(m.to_string());
    let PruneRun {
        outcome,
        recovery,
        exactness,
        report,
    } = prune::job::run(&job, &step)?;
    if let (Some(dir), Some(r)) = (&a.report, &report) {
        edgeslim::report::write::prune(r, dir)?;
    }
    progress.finish_and_clear();
    for n in &outcome.notes {
        eprintln!("edgeslim: {n}");
    }
    let g = &outcome.analysis.groups;
    println!("{} -> {}", a.model.display(), a.output.display());
    if let Some(r) = &recovery {
        println!(
            "  fine-tuned {} epochs on {}{}: held-out accuracy {:.2}% -> {:.2}% (epoch {} kept, {:.0} s)",
            r.epochs,
            r.data,
            if r.teacher { " with the unpruned teacher" } else { "" },
            100.0 * r.accuracy_before,
            100.0 * r.accuracy_after,
            r.best_epoch,
            r.seconds
        );
    }
    println!(
        "  groups: {} ({} prunable, {} pruned), {} units removed",
        g.groups.len(),
        g.prunable().count(),
        outcome.plan.removed.len(),
        outcome.plan.removed_count()
    );
    if let Some(e) = &exactness {
        println!(
            "  exact: pruned == original with the removed channels zeroed, max |diff| {:.3e} ({:.3e} of the largest output, tolerance {:.0e}) on {}",
            e.max_abs_diff, e.relative, e.tolerance, e.inputs
        );
    }
    if let Some(r) = report {
        let t = &r.totals;
        println!(
            "  params {} -> {} ({:.1}%), MACs {} -> {} ({:.1}%)",
            t.params_before,
            t.params_after,
            100.0 * t.params_after as f64 / t.params_before.max(1) as f64,
            t.macs_before,
            t.macs_after,
            100.0 * t.macs_after as f64 / t.macs_before.max(1) as f64
        );
        if let Some(l) = &r.latency {
            println!(
                "  tract latency {:.2} ms -> {:.2} ms: {:.2}x ({} thread(s), median of {} interleaved runs)",
                l.before_ms, l.after_ms, l.speedup, l.threads, l.runs
            );
        }
        if let Some(f) = &r.fidelity {
            for o in &f.outputs {
                let top1 = o
                    .top1_agreement
                    .map(|v| format!(", top-1 agreement {:.1}%", v * 100.0))
                    .unwrap_or_default();
                println!(
                    "  fidelity {}: cosine mean {:.4} (min {:.4}){top1} on {} inputs",
                    o.name, o.cosine_mean, o.cosine_min, f.samples
                );
            }
            if let (Some(b), Some(a)) = (f.accuracy_before, f.accuracy_after) {
                println!(
                    "  accuracy {:.2}% -> {:.2}% on {} labelled inputs",
                    100.0 * b,
                    100.0 * a,
                    f.samples
                );
            }
        }
        if let Some(dir) = &a.report {
            println!("  report: {}/index.html", dir.display());
        }
    }
    Ok(())
}

/// The groups listing of `edgeslim analyze --groups`.
pub fn print_groups(
    model: &std::path::Path,
    input_shapes: &[InputShape],
    json: &Option<edgeslim_runtime::json_out::JsonDest>,
) -> Result<()> {
    let model = OnnxModel::load(model)?;
    let analysis = prune::analyze(&model, input_shapes)?;
    if !edgeslim_runtime::json_out::emit(json, &prune::summary(&analysis.groups))? {
        print!("{}", prune::render_groups(&analysis.groups));
    }
    Ok(())
}
