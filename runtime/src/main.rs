//! `edgeslim-rt`: run and benchmark ONNX models on the board.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use edgeslim_runtime::bench::{bench, BenchConfig};
use edgeslim_runtime::device::current_rss_bytes;
use edgeslim_runtime::input::{
    image_to_tensor, open_image, random_inputs, read_npy, tensor_to_f32_vec, write_npy, ImagePrep,
};
use edgeslim_runtime::model::{LoadOptions, LoadedModel};
use edgeslim_runtime::tract_onnx::prelude::*;
use edgeslim_runtime::InputShape;
use std::path::{Path, PathBuf};

mod cmd_inspect;
mod cmd_track;

#[derive(Parser)]
#[command(
    name = "edgeslim-rt",
    version,
    about = "Run and benchmark ONNX models on the board (tract, no Python)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model once on an image or a .npy tensor and print or save the outputs.
    #[command(
        after_help = "Examples:\n  edgeslim-rt run cls.onnx --input-shape x=1,3,48,192 --input word.png --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5\n  edgeslim-rt run model.onnx --input x.npy --output y.npy"
    )]
    Run(RunArgs),
    /// Benchmark a model: latency percentiles, per-node profile, memory, device facts.
    #[command(
        after_help = "Example:\n  edgeslim-rt bench det.onnx --input-shape x=1,3,640,640 --runs 20 --threads 2 --json det.json"
    )]
    Bench(BenchArgs),
    /// Inspection line: score frames with an anomaly detector, pass/fail, heat-map, reject pin.
    #[command(
        after_help = "Examples:\n  edgeslim-rt inspect --detector brick.onnx --source parts/ --serve 8080\n  edgeslim-rt inspect --detector brick.onnx --source parts/ --loop --interval-ms 200 --serve 0.0.0.0:8080 --reject-pin gpiochip0:17 --pulse-ms 150"
    )]
    Inspect(cmd_inspect::InspectArgs),
    /// Follow an object with a Siamese tracker: live (page, pan-tilt) or on OTB-layout data.
    #[command(
        after_help = "Examples:\n  edgeslim-rt track --model models/siamese-tracker --source seqs/seq-000 --serve 8080\n  edgeslim-rt track --model models/siamese-tracker --source clip.mp4 --init 120,80,40,60 --record out/\n  edgeslim-rt track --model models/siamese-tracker --eval seqs/ --json eval.json"
    )]
    Track(cmd_track::TrackArgs),
    /// Show what tract will execute: the optimised plan node by node, with kernel names.
    #[command(
        after_help = "Examples:\n  edgeslim-rt plan cls-int8.onnx --input-shape x=1,3,48,192\n  edgeslim-rt plan det.onnx --input-shape x=1,3,640,640 --json det-plan.json"
    )]
    Plan(PlanArgs),
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Write the plan here as JSON (nodes with op, info and output facts; kernel names).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ModelArgs {
    /// The ONNX model.
    model: PathBuf,
    /// Shape of an input, NAME=D0,D1,... (or D0,D1,... for the first input). Repeatable.
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<InputShape>,
    /// Threads for tract's matrix products.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Skip tract's optimiser (runs the decluttered graph; for debugging).
    #[arg(long)]
    no_optimize: bool,
}

impl ModelArgs {
    fn options(&self) -> LoadOptions {
        LoadOptions {
            input_shapes: self.input_shapes.clone(),
            optimize: !self.no_optimize,
            threads: self.threads.max(1),
            ..Default::default()
        }
    }

    fn load(&self) -> Result<LoadedModel> {
        Ok(LoadedModel::load(&self.model, &self.options())?)
    }
}

#[derive(Args)]
struct PrepArgs {
    /// Pixel scale before normalisation.
    #[arg(long, default_value_t = 1.0 / 255.0)]
    scale: f32,
    /// Per-channel mean subtracted after scaling (default: ImageNet).
    #[arg(long, value_delimiter = ',', default_values_t = [0.485f32, 0.456, 0.406])]
    mean: Vec<f32>,
    /// Per-channel standard deviation (default: ImageNet).
    #[arg(long, value_delimiter = ',', default_values_t = [0.229f32, 0.224, 0.225])]
    std: Vec<f32>,
    /// Feed channels as BGR (models trained with OpenCV, e.g. PP-OCR).
    #[arg(long)]
    bgr: bool,
}

impl PrepArgs {
    fn prep(&self) -> Result<ImagePrep> {
        let three = |v: &[f32], what: &str| -> Result<[f32; 3]> {
            match v {
                [a] => Ok([*a; 3]),
                [a, b, c] => Ok([*a, *b, *c]),
                _ => bail!(
                    "--{what} takes 1 or 3 comma-separated values, got {}",
                    v.len()
                ),
            }
        };
        let std = three(&self.std, "std")?;
        if std.contains(&0.0) {
            bail!("--std values must be non-zero");
        }
        Ok(ImagePrep {
            scale: self.scale,
            mean: three(&self.mean, "mean")?,
            std,
            bgr: self.bgr,
        })
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An image (png, jpeg) or a .npy tensor for the first input.
    #[arg(long)]
    input: PathBuf,
    /// Save outputs as .npy (several outputs: OUT.0.npy, OUT.1.npy, ...).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Also save the preprocessed input tensor as .npy (to feed the same bytes elsewhere).
    #[arg(long)]
    save_input: Option<PathBuf>,
    /// How many of the largest values to print per output.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[command(flatten)]
    prep: PrepArgs,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Untimed runs before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Seed of the generated input values.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the report here (JSON, docs/architecture.md).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Name in tables and charts (default: the model's file stem).
    #[arg(long)]
    label: Option<String>,
    /// The board profile this run stands for (targets/NAME.toml), recorded in the report.
    #[arg(long)]
    target: Option<String>,
    /// Also stream --runs frames through N single-threaded workers at once (independent
    /// frames, order kept) and report throughput and per-frame latency.
    #[arg(long, value_name = "N")]
    pipeline: Option<usize>,
    /// Also run the image in N horizontal strips on N cores (fully convolutional models
    /// only; exact: checked against the whole image) and report their latency.
    #[arg(long, value_name = "N")]
    tiles: Option<usize>,
}

fn is_npy(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

fn cmd_run(a: &RunArgs) -> Result<()> {
    // An image decides a dynamic H×W itself when the user gave no shape.
    let mut model_args_shapes = a.model.input_shapes.clone();
    let image = if is_npy(&a.input) {
        None
    } else {
        Some(open_image(&a.input)?)
    };
    let model = match (a.model.load(), &image) {
        (Ok(m), _) => m,
        (Err(e), Some(img))
            if model_args_shapes.is_empty() && e.to_string().contains("is not fixed") =>
        {
            model_args_shapes.push(InputShape {
                name: None,
                dims: vec![1, 3, img.height() as usize, img.width() as usize],
            });
            let opts = LoadOptions {
                input_shapes: model_args_shapes,
                optimize: !a.model.no_optimize,
                threads: a.model.threads.max(1),
                ..Default::default()
            };
            log::info!("dynamic input: running at the image's own size");
            LoadedModel::load(&a.model.model, &opts)?
        }
        (Err(e), _) => return Err(e),
    };
    if model.inputs.len() != 1 {
        bail!(
            "{}: the model has {} inputs; `run` feeds one (use bench for generated inputs)",
            a.model.model.display(),
            model.inputs.len()
        );
    }
    let spec = &model.inputs[0];
    let tensor = match &image {
        None => read_npy(&a.input)?,
        Some(img) => image_to_tensor(img, &spec.shape, &a.prep.prep()?).map_err(|reason| {
            anyhow::anyhow!("{}: input '{}': {reason}", a.input.display(), spec.name)
        })?,
    };
    if let Some(p) = &a.save_input {
        write_npy(p, &tensor)?;
    }
    let outputs = model.run(vec![tensor])?;
    for (i, (t, spec)) in outputs.iter().zip(&model.outputs).enumerate() {
        print_output(&spec.name, t, a.top);
        if let Some(out) = &a.output {
            let path = if outputs.len() == 1 {
                out.clone()
            } else {
                out.with_extension(format!("{i}.npy"))
            };
            write_npy(&path, t)?;
            println!("  saved {}", path.display());
        }
    }
    Ok(())
}

fn print_output(name: &str, t: &Tensor, top: usize) {
    let Ok(v) = tensor_to_f32_vec(t) else {
        println!("{name}: {:?} {:?}", t.datum_type(), t.shape());
        return;
    };
    let (mn, mx) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
    println!(
        "{name}: shape {:?}  min {mn:.6}  max {mx:.6}  mean {mean:.6}",
        t.shape()
    );
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    for &i in idx.iter().take(top) {
        println!("  [{i}] {:.6}", v[i]);
    }
}

fn cmd_bench(a: &BenchArgs) -> Result<()> {
    let before = current_rss_bytes();
    let model = a.model.load()?;
    let after = current_rss_bytes();
    let inputs = random_inputs(&model.inputs, a.seed);
    let cfg = BenchConfig {
        warmup: a.warmup,
        runs: a.runs.max(1),
        label: a.label.clone(),
        target_profile: a.target.clone(),
    };
    let (mut report, whole_outputs) = bench(&model, &inputs, &cfg, before, after)?;
    if let Some(n) = a.tiles {
        let tiled =
            edgeslim_runtime::tile::TiledModel::load(&a.model.model, &a.model.options(), n)?;
        let [input] = inputs.as_slice() else {
            bail!("--tiles: strips are cut from a single image input");
        };
        report.tiled = Some(edgeslim_runtime::tile::bench_tiled(
            &tiled,
            input,
            &whole_outputs,
            cfg.warmup,
            cfg.runs,
        )?);
    }
    if let Some(workers) = a.pipeline {
        // Each worker runs single-threaded: the parallelism is across frames.
        let single = LoadedModel::load(
            &a.model.model,
            &LoadOptions {
                threads: 1,
                ..a.model.options()
            },
        )?;
        let frames = (0..cfg.runs).map(|_| inputs.clone());
        report.pipeline = Some(edgeslim_runtime::stream::run_stream(
            &single,
            workers,
            frames,
            |_, _| Ok(()),
        )?);
    }
    if let Some(path) = &a.json {
        report
            .write(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", report.text_summary());
    if let Some(path) = &a.json {
        println!("report: {}", path.display());
    }
    Ok(())
}

fn cmd_plan(a: &PlanArgs) -> Result<()> {
    use edgeslim_runtime::plan::{kernel_names, plan_nodes};
    let model = a.model.load()?;
    let nodes = plan_nodes(&model);
    let kernels = kernel_names(&nodes);
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "model": model.path.display().to_string(),
            "sha256": model.sha256,
            "optimized": model.optimized,
            "kernels": kernels,
            "nodes": nodes,
        });
        let bytes = serde_json::to_vec_pretty(&doc)?;
        edgeslim_runtime::fsutil::write_atomic(path, &bytes)?;
    }
    for n in &nodes {
        println!("{:>5} {:<22} {}", n.id, n.op, n.name);
        for line in &n.info {
            println!("        {line}");
        }
    }
    println!(
        "{} plan nodes; matrix kernels: {}",
        nodes.len(),
        if kernels.is_empty() {
            "none".to_string()
        } else {
            kernels.join(", ")
        }
    );
    Ok(())
}

fn main() {
    edgeslim_runtime::process::init_cli();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => cmd_run(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Inspect(a) => cmd_inspect::run(a),
        Command::Track(a) => cmd_track::run(a),
        Command::Plan(a) => cmd_plan(a),
    };
    if let Err(e) = result {
        eprintln!(
            "edgeslim-rt: error: {}",
            edgeslim_runtime::error::one_line(&e)
        );
        std::process::exit(1);
    }
}
