//! `edgeslim compress prune` (and the listing behind `edgeslim analyze --groups`): structured
//! pruning with channel dependency groups (`edgeslim::prune`).

use anyhow::{bail, Context, Result};
use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim::prune::{self, calib::CalibSpec as Files, Criterion, PruneOptions};
use edgeslim_runtime::input::ImagePrep;
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
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
    --calib takes a data SPEC (ppocr-text, mnist, images:DIR, npy:FILE: calibration and held-out\n\
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
    /// Calibration data: a SPEC (ppocr-text, mnist, images:DIR, npy:FILE) or image/.npy
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
    /// `mnist` or `folder:PATH` (classifiers with one [N, C, H, W] input).
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

struct Inputs {
    calib: Vec<Vec<TractTensor>>,
    /// Labels of `calib`, when every source has them (the `taylor` criterion's loss).
    calib_labels: Option<Vec<usize>>,
    /// The model's input name and shape.
    input: Option<(String, Vec<usize>)>,
    eval: Vec<Vec<TractTensor>>,
    /// Labels of `eval`, when every source has them.
    labels: Option<Vec<usize>>,
    description: String,
}

fn tensors(shape: &[usize], samples: &[Vec<f32>]) -> Result<Vec<Vec<TractTensor>>> {
    samples
        .iter()
        .map(|s| Ok(vec![TractTensor::from_shape(shape, s)?]))
        .collect()
}

/// Calibration (for scores) and evaluation (for fidelity) inputs from `--calib`.
fn load_inputs(a: &PruneArgs, model: &OnnxModel) -> Result<Inputs> {
    let mut out = Inputs {
        calib: Vec::new(),
        calib_labels: Some(Vec::new()),
        input: None,
        eval: Vec::new(),
        labels: Some(Vec::new()),
        description: String::new(),
    };
    if a.calib.is_empty() {
        return Ok(out);
    }
    let inputs = model.true_inputs();
    let [vi] = inputs.as_slice() else {
        bail!(
            "--calib: calibration data fills one input; this model has {}",
            inputs.len()
        );
    };
    let name = vi.name.clone();
    let shapes = prune::prepare::infer_shapes(model, &a.input_shapes)?;
    let shape = shapes
        .get(&name)
        .cloned()
        .with_context(|| format!("input '{name}': shape unknown; pass --input-shape"))?;
    let mut files = Vec::new();
    let mut said = Vec::new();
    for c in &a.calib {
        match c.parse::<edgeslim::data::calib::CalibSpec>() {
            Ok(spec) => {
                let input = edgeslim::data::calib::ModelInput {
                    name: name.clone(),
                    shape: shape.clone(),
                };
                let data = edgeslim::data::calib::load(&spec, &input, Some(a.calib_samples))?;
                out.calib.extend(tensors(&shape, &data.calib.samples)?);
                match (&mut out.calib_labels, &data.calib.labels) {
                    (Some(all), Some(l)) => all.extend(l.iter().copied()),
                    _ => out.calib_labels = None,
                }
                // Held-out samples judge fidelity; without any, the calibration ones do.
                let judged = if data.held_out.is_empty() {
                    &data.calib
                } else {
                    &data.held_out
                };
                out.eval.extend(tensors(&shape, &judged.samples)?);
                match (&mut out.labels, &judged.labels) {
                    (Some(all), Some(l)) => all.extend(l.iter().copied()),
                    _ => out.labels = None,
                }
                said.push(format!(
                    "{} ({} calibration, {} held out: {})",
                    data.spec,
                    data.calib.len(),
                    data.held_out.len(),
                    data.split_rule
                ));
            }
            Err(_) => files.push(PathBuf::from(c)),
        }
    }
    if !files.is_empty() {
        let mut spec = Files::new(files.clone());
        spec.crops = a.crops;
        spec.limit = a.calib_samples;
        spec.prep = ImagePrep {
            scale: 1.0 / 255.0,
            mean: a.mean,
            std: a.std,
            bgr: a.bgr,
        };
        let t = prune::calib::load_inputs(&spec, &shape)?;
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        said.push(format!(
            "{} inputs from {}{}",
            t.len(),
            names.join(", "),
            if a.crops > 0 {
                format!(" ({} crops per image)", a.crops)
            } else {
                String::new()
            }
        ));
        out.calib.extend(t.iter().cloned());
        out.eval.extend(t);
        out.labels = None;
        out.calib_labels = None;
    }
    out.input = Some((name, shape));
    if out
        .labels
        .as_ref()
        .is_some_and(|l| l.len() != out.eval.len())
    {
        out.labels = None;
    }
    out.description = said.join("; ");
    Ok(out)
}

pub fn run(a: PruneArgs) -> Result<()> {
    if prune::tracker::is_tracker_dir(&a.model) {
        return super::prune_tracker::run(&a);
    }
    let Some(ratio) = a.ratio else {
        bail!(
            "{}: --keep-params is for tracker directories (template.onnx + search.onnx); give --ratio for a single graph",
            a.model.display()
        );
    };
    prune::select::check_ratio(ratio)?;
    edgeslim_runtime::fsutil::ensure_not_input(&a.output, &[&a.model])?;
    if let Some(spec) = &a.finetune {
        spec.parse::<edgeslim::data::DataSpec>()
            .with_context(|| "--finetune")?;
    }
    let model = OnnxModel::load(&a.model)?;
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    let step = |m: &str| progress.set_message(m.to_string());
    step("loading calibration inputs");
    let inputs = load_inputs(&a, &model)?;
    let opts = PruneOptions {
        ratio,
        criterion: a.criterion,
        global: a.global,
        round_to: a.round_to,
        min_channels: a.min_channels,
        exclude: a.exclude.clone(),
        prune_layernorm: a.prune_layernorm,
        input_shapes: a.input_shapes.clone(),
    };
    let mut taylor = None;
    if a.criterion == Criterion::Taylor {
        let (Some((input, shape)), Some(labels)) = (&inputs.input, &inputs.calib_labels) else {
            bail!(
                "--criterion taylor needs labelled calibration data for its loss: --calib mnist, ppocr-text (image files carry no labels)"
            );
        };
        let samples = inputs
            .calib
            .iter()
            .map(|s| Ok(edgeslim_runtime::input::tensor_to_f32_vec(&s[0])?))
            .collect::<Result<Vec<_>>>()?;
        taylor = Some(prune::taylor::EngineGradients {
            input: input.clone(),
            shape: shape.clone(),
            samples,
            labels: labels.clone(),
        });
        step("gradients of the task loss with the training engine");
    } else {
        step("analysing channel groups and pruning");
    }
    let grads = taylor.as_mut().map(|t| t as &mut dyn prune::GradientSource);
    let mut outcome = prune::prune(&model, &opts, &inputs.calib, grads)?;
    let exactness = if a.verify_exact {
        step("verifying: pruned model vs the original with the removed channels zeroed");
        let e = prune::report::verify_exact(&outcome, &inputs.eval, &opts.input_shapes)?;
        if !e.passed() {
            bail!(
                "{}: pruning is not exact on this model: the pruned model differs from the original with the removed channels zeroed by {:.3e} ({:.3e} of the largest output, tolerance {:.0e}); nothing written. Please report this model.",
                a.model.display(),
                e.max_abs_diff,
                e.relative,
                e.tolerance
            );
        }
        Some(e)
    } else {
        None
    };
    let recovery = match &a.finetune {
        Some(data) => {
            let epochs = a.epochs.unwrap_or(3);
            step(&format!(
                "fine-tuning the pruned model: {epochs} epochs on {data}"
            ));
            let ro = prune::RecoveryOptions {
                data: data.clone(),
                epochs,
                lr: a.lr,
                teacher: a.teacher,
                seed: 0,
                threads: 0,
                progress: false,
            };
            let (tuned, r) = prune::recover(&outcome.model, &outcome.analysis.model, &ro)?;
            outcome.model = tuned;
            Some(r)
        }
        None => None,
    };
    // The preparation stored one copy of each shared constant per use (so each use could be
    // sliced on its own); the written model stores identical constants once again.
    let shared = outcome.model.share_identical_initializers();
    if shared > 0 {
        outcome
            .notes
            .push(format!("{shared} identical constants stored once"));
    }
    outcome.model.save(&a.output, &SaveOptions::default())?;
    let report = match &a.report {
        Some(dir) => {
            let measure = prune::report::MeasureOptions {
                runs: a.runs,
                threads: a.threads,
                inputs: inputs.eval,
                labels: inputs.labels,
                inputs_description: inputs.description,
            };
            let out = a.output.display().to_string();
            let mut r = prune::report::build(&outcome, &opts, Some(&out), &measure, &step)?;
            r.recovery = recovery.clone();
            r.exactness = exactness.clone();
            edgeslim::report::write::prune(&r, dir)?;
            Some(r)
        }
        None => None,
    };
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
    json: bool,
) -> Result<()> {
    let model = OnnxModel::load(model)?;
    let analysis = prune::analyze(&model, input_shapes)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&prune::summary(&analysis.groups))?
        );
    } else {
        print!("{}", prune::render_groups(&analysis.groups));
    }
    Ok(())
}
