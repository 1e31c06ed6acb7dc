use anyhow::Result;
use edgeslim::bench::{bench_side_by_side, host_bench, Backend, HostBenchConfig, BLOCK_RUNS};
use edgeslim_runtime::json_out;
use edgeslim_runtime::stats::paired_ratio;
use edgeslim_runtime::InputShape;
use std::path::PathBuf;

/// Benchmark a model on the host with tract, ONNX Runtime or both (latency ratio and output
/// agreement); writes the same JSON report as `edgeslim-rt bench`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim bench det.onnx --input-shape x=1,3,640,640 --backend both --threads 2 --runs 20 --json det.json\n  edgeslim bench cls.onnx cls-opt.onnx --input-shape x=1,3,48,192 --runs 300   # side by side, interleaved"
)]
pub struct Args {
    /// The ONNX model; several models are timed side by side (interleaved, tract only) and
    /// compared with the first.
    #[arg(required = true, num_args = 1..)]
    models: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Tract)]
    backend: Backend,
    /// Shape of an input, NAME=D0,D1,... Repeatable.
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<InputShape>,
    /// Threads for both engines.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Untimed runs before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Timed runs (per engine).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Seed of the generated input values.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Name in tables and charts (default: the model's file stem).
    #[arg(long)]
    label: Option<String>,
    /// The board profile this run stands for, recorded in the report.
    #[arg(long)]
    target: Option<String>,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
    /// Also time a plain tract loop on the same graph (interleaved) and report our runtime's
    /// overhead over it.
    #[arg(long)]
    vs_raw_tract: bool,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = HostBenchConfig {
        backend: a.backend,
        threads: a.threads.max(1),
        warmup: a.warmup,
        runs: a.runs.max(1),
        seed: a.seed,
        input_shapes: a.input_shapes,
        label: a.label,
        target_profile: a.target,
        vs_raw_tract: a.vs_raw_tract,
        ignore_declared_facts: false,
    };
    if a.models.len() > 1 {
        let paths: Vec<&std::path::Path> = a.models.iter().map(|p| p.as_path()).collect();
        let reports = bench_side_by_side(&paths, &cfg)?;
        if !json_out::emit(&a.json.dest, &reports)? {
            print!("{}", side_by_side_summary(&reports));
            if let Some(path) = json_out::file(&a.json.dest) {
                println!("report: {}", path.display());
            }
        }
        return Ok(());
    }
    let report = host_bench(&a.models[0], &cfg)?;
    // The file first: a closed stdout (piped into `head`) must not lose the report.
    if !json_out::emit(&a.json.dest, &report)? {
        print!("{}", report.text_summary());
        if let Some(path) = json_out::file(&a.json.dest) {
            println!("report: {}", path.display());
        }
    }
    Ok(())
}

/// One line per model with its ratio to the first, after each model's own summary.
pub fn side_by_side_summary(reports: &[edgeslim_runtime::report::BenchReport]) -> String {
    use std::fmt::Write;
    let mut s: String = reports.iter().map(|r| r.text_summary()).collect();
    let Some(first) = reports.first() else {
        return s;
    };
    let _ = writeln!(
        s,
        "side by side ({} interleaved runs each; paired = median over blocks of the ratio of block medians):",
        first.latency.runs
    );
    if let Some(first_ort) = first.comparison.as_ref().map(|c| &c.other_latency) {
        let _ = writeln!(
            s,
            "  each model in tract against the first model in ONNX Runtime (p50 {:.3} ms):",
            first_ort.p50_ms
        );
        for r in reports {
            let _ = writeln!(
                s,
                "    {:<30} tract/ORT(first) p50 {:.3}  paired {:.3}",
                r.label,
                r.latency.p50_ms / first_ort.p50_ms,
                paired_ratio(&first_ort.samples_ms, &r.latency.samples_ms, BLOCK_RUNS)
            );
        }
    }
    for r in reports {
        let _ = writeln!(
            s,
            "  {:<32} p50 {:>9.3} ms  min {:>9.3} ms  ratio to the first: p50 {:.3}  min {:.3}  paired {:.3}",
            r.label,
            r.latency.p50_ms,
            r.latency.min_ms,
            r.latency.p50_ms / first.latency.p50_ms,
            r.latency.min_ms / first.latency.min_ms,
            paired_ratio(&first.latency.samples_ms, &r.latency.samples_ms, BLOCK_RUNS)
        );
    }
    s
}
