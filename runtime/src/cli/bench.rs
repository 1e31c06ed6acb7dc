//! `edgeslim-rt bench`: latency percentiles, per-node profile, memory, device facts.

use super::ModelArgs;
use anyhow::{bail, Result};
use clap::Args;
use edgeslim_runtime::bench::{bench, BenchConfig};
use edgeslim_runtime::device::current_rss_bytes;
use edgeslim_runtime::input::random_inputs;
use edgeslim_runtime::model::{LoadOptions, LoadedModel};

#[derive(Args)]
pub struct BenchArgs {
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
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
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

pub fn run(a: &BenchArgs) -> Result<()> {
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
    if !edgeslim_runtime::json_out::emit(&a.json.dest, &report)? {
        print!("{}", report.text_summary());
        if let Some(path) = edgeslim_runtime::json_out::file(&a.json.dest) {
            println!("report: {}", path.display());
        }
    }
    Ok(())
}
