use anyhow::{Context, Result};
use edgeslim::bench::{host_bench, Backend, HostBenchConfig};
use edgeslim_runtime::InputShape;
use std::path::PathBuf;

/// Benchmark a model on the host with tract, ONNX Runtime or both (latency ratio and output
/// agreement); writes the same JSON report as `edgeslim-rt bench`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  edgeslim bench det.onnx --input-shape x=1,3,640,640 --backend both --threads 2 --runs 20 --json det.json"
)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
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
    /// Write the report here.
    #[arg(long)]
    json: Option<PathBuf>,
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
    };
    let report = host_bench(&a.model, &cfg)?;
    // The file first: a closed stdout (piped into `head`) must not lose the report.
    if let Some(path) = &a.json {
        report
            .write(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", summary(&report));
    if let Some(path) = &a.json {
        println!("report: {}", path.display());
    }
    Ok(())
}

/// A few lines for the terminal; the JSON and HTML hold the rest.
pub fn summary(r: &edgeslim_runtime::report::BenchReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let l = &r.latency;
    let _ = writeln!(
        s,
        "{}  [{}; {} thread(s); {}]",
        r.label, r.backend, r.threads, r.device.arch
    );
    let _ = writeln!(
        s,
        "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  mean {:.3} ± {:.3}  min {:.3}  ({} runs)",
        l.p50_ms, l.p90_ms, l.p99_ms, l.mean_ms, l.std_ms, l.min_ms, l.runs
    );
    if let Some(c) = &r.comparison {
        let o = &c.other_latency;
        let _ = writeln!(
            s,
            "  {}: p50 {:.3}  mean {:.3} ms   tract/ORT p50 ratio {:.2}",
            c.other_backend, o.p50_ms, o.mean_ms, c.latency_ratio_p50
        );
        for d in &c.outputs {
            let _ = writeln!(
                s,
                "  output {}: max |tract - ORT| {:.3e} (max |value| {:.3e})",
                d.name, d.max_abs_diff, d.max_abs_reference
            );
        }
    }
    if let Some(p) = &r.profile {
        let top: Vec<String> = p
            .op_types
            .iter()
            .take(5)
            .map(|o| format!("{} {:.0}%", o.op, o.share * 100.0))
            .collect();
        let _ = writeln!(s, "  top ops: {}", top.join(", "));
    }
    s
}
