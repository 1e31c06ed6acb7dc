//! The `edgeslim-rt` command line: one file per subcommand; the work is in the library.

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use edgeslim_runtime::input::ImagePrep;
use edgeslim_runtime::model::{LoadOptions, LoadedModel};
use edgeslim_runtime::InputShape;
use std::path::PathBuf;

mod bench;
mod inspect;
mod patch;
mod plan;
mod run;
mod track;

#[derive(Parser)]
#[command(
    name = "edgeslim-rt",
    version,
    about = "Run and benchmark ONNX models on the board (tract, no Python)",
    after_help = edgeslim_runtime::process::EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    pub verbosity: edgeslim_runtime::process::Verbosity,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model once on an image or a .npy tensor and print or save the outputs.
    #[command(
        after_help = "Examples:\n  edgeslim-rt run cls.onnx --input-shape x=1,3,48,192 --input word.png --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5\n  edgeslim-rt run model.onnx --input x.npy --output y.npy"
    )]
    Run(run::RunArgs),
    /// Benchmark a model: latency percentiles, per-node profile, memory, device facts.
    #[command(
        after_help = "Example:\n  edgeslim-rt bench det.onnx --input-shape x=1,3,640,640 --runs 20 --threads 2 --json det.json"
    )]
    Bench(bench::BenchArgs),
    /// Inspection line: score frames with an anomaly detector, pass/fail, heat-map, reject pin.
    #[command(
        after_help = "Examples:\n  edgeslim-rt inspect brick.onnx --source parts/ --serve 8080\n  edgeslim-rt inspect brick.onnx --source parts/ --loop --interval-ms 200 --serve 0.0.0.0:8080 --reject-pin gpiochip0:17 --pulse-ms 150"
    )]
    Inspect(inspect::InspectArgs),
    /// Follow an object with a Siamese tracker: live (page, pan-tilt) or on OTB-layout data.
    #[command(
        after_help = "Examples:\n  edgeslim-rt track models/siamese-tracker --source seqs/seq-000 --serve 8080\n  edgeslim-rt track models/siamese-tracker --source clip.mp4 --init 120,80,40,60 --record out/\n  edgeslim-rt track models/siamese-tracker --eval seqs/ --json eval.json"
    )]
    Track(track::TrackArgs),
    /// Show what tract will execute: the optimised plan node by node, with kernel names.
    #[command(
        after_help = "Examples:\n  edgeslim-rt plan cls-int8.onnx --input-shape x=1,3,48,192\n  edgeslim-rt plan det.onnx --input-shape x=1,3,640,640 --json det-plan.json"
    )]
    Plan(plan::PlanArgs),
    /// Classify a very large image with a PatchGD model in bounded memory: rows streamed,
    /// the latent map filled patch group by patch group, one head pass; per-patch contributions.
    #[command(
        after_help = "Examples:\n  edgeslim-rt patch --model pgd512/ --input scan.png --threads 4\n  edgeslim-rt patch --model pgd512/ --input scans/ --runs 5 --json patch.json"
    )]
    Patch(patch::PatchArgs),
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

/// Run the parsed command.
pub fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Run(a) => run::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Track(a) => track::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Patch(a) => patch::run(a),
    }
}
