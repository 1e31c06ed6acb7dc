//! `edgeslim fit MODEL... --target NAME`: does it fit on the board, before deploying? The
//! model's peak RSS is measured on the host by the same runtime the board runs (a short
//! `edgeslim-rt bench` in its own process), compared with the board's RAM less what the OS
//! keeps; the latency is estimated from the MACs and the board's fp32 peak (a lower bound,
//! labelled so). A bench report from the board replaces both estimates by measurements.

use anyhow::{bail, Context, Result};
use edgeslim::boards::profile::{find, Profile};
use edgeslim_runtime::json_out;
use edgeslim_runtime::report::BenchReport;
use edgeslim_runtime::InputShape;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What a board's OS and services keep (Raspberry Pi OS Lite / JetPack idle, rounded up).
const OS_RESERVE_MIB: f64 = 300.0;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim fit models/efficientnet-lite0/model.onnx --target rpi4\n  edgeslim fit det.onnx --input-shape x=1,3,640,640 --target rpi3-armv7 --ram-gb 1\n  edgeslim fit cls.onnx --target rpi4 --board-bench cls.rpi4.json   # measured on the board\n\nPeak RSS is measured on this host by edgeslim-rt (the board's runtime) in its own process;\nthe latency is a lower bound from MACs and the board's fp32 peak. Usable RAM: the smallest RAM\nof the board (or --ram-gb) less 300 MiB for the OS."
)]
pub struct Args {
    /// The ONNX model(s); a tracker folder counts as its template.onnx and search.onnx.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Board profile: a name from `edgeslim targets`, or the path of a profile TOML.
    #[arg(long)]
    target: String,
    /// The board's RAM in GiB (default: the smallest variant the profile lists).
    #[arg(long, value_name = "GIB")]
    ram_gb: Option<f64>,
    /// Shape of an input, NAME=D0,D1,... (repeatable), for models with dynamic shapes.
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<InputShape>,
    /// Threads the board will run with (default: its cores).
    #[arg(long)]
    threads: Option<usize>,
    /// A bench report from the board (`edgeslim-rt bench --json` there): its measured latency
    /// and peak RSS replace the estimates (one model).
    #[arg(long, value_name = "FILE.json")]
    board_bench: Option<PathBuf>,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

#[derive(Serialize)]
struct ModelFit {
    model: String,
    file_bytes: u64,
    macs: u64,
    peak_rss_bytes: u64,
    /// "host edgeslim-rt" or "board bench report".
    rss_source: String,
    latency_ms: f64,
    /// "lower bound from MACs at the fp32 peak" or "measured on the board (p50)".
    latency_source: String,
    fits: bool,
    reason: String,
}

#[derive(Serialize)]
struct FitReport {
    target: String,
    board: String,
    ram_bytes: u64,
    os_reserve_bytes: u64,
    usable_bytes: u64,
    fp32_peak_gflops: Option<f64>,
    threads: usize,
    models: Vec<ModelFit>,
    fits: bool,
}

fn mib(b: f64) -> f64 {
    b / 1048576.0
}

/// The board runtime next to this binary (both are built together).
fn runtime_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating edgeslim")?;
    let rt = exe.with_file_name("edgeslim-rt");
    if !rt.is_file() {
        bail!(
            "{}: not found; fit measures memory with the board runtime (cargo build --release -p edgeslim-runtime)",
            rt.display()
        );
    }
    Ok(rt)
}

/// Peak RSS of the runtime loading and running `model` a few times, in its own process.
fn measure_rss(model: &Path, shapes: &[InputShape], threads: usize) -> Result<u64> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let report = dir.path().join("bench.json");
    let mut cmd = std::process::Command::new(runtime_binary()?);
    cmd.arg("-q")
        .arg("bench")
        .arg(model)
        .args([
            "--runs",
            "3",
            "--warmup",
            "1",
            "--threads",
            &threads.to_string(),
        ])
        .arg("--json")
        .arg(&report);
    for s in shapes {
        cmd.arg("--input-shape").arg(s.to_string());
    }
    let out = cmd.output().context("running edgeslim-rt bench")?;
    if !out.status.success() {
        bail!(
            "{}: the board runtime could not run it: {}",
            model.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let r = BenchReport::read(&report)?;
    r.memory
        .peak_rss_bytes
        .with_context(|| format!("{}: the runtime reported no peak RSS", model.display()))
}

/// Tracker folders become their two graphs (the runtime's rule for a tracker pair).
fn expand(models: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for m in models {
        if m.is_dir() {
            let (t, s) = edgeslim_runtime::track::tracker::tracker_files(m)?;
            out.extend([t, s]);
        } else {
            out.push(m.clone());
        }
    }
    Ok(out)
}

fn ram_bytes(profile: &Profile, ram_gb: Option<f64>) -> Result<u64> {
    let gb =
        match ram_gb {
            Some(g) if g > 0.0 && g.is_finite() => g,
            Some(g) => bail!("--ram-gb {g}: must be positive"),
            None => *profile.ram_gb.iter().min().with_context(|| {
                format!("{}: the profile lists no RAM; give --ram-gb", profile.name)
            })? as f64,
        };
    Ok((gb * 1073741824.0) as u64)
}

pub fn run(a: Args) -> Result<()> {
    let profile = find(&a.target)?;
    let ram = ram_bytes(&profile, a.ram_gb)?;
    let reserve = (OS_RESERVE_MIB * 1048576.0) as u64;
    let usable = ram.saturating_sub(reserve);
    let threads = a
        .threads
        .or(profile.cores.map(|c| c as usize))
        .unwrap_or(1)
        .max(1);
    let peak = profile.peak.as_ref().map(|p| p.fp32_gflops);
    let models = expand(&a.models)?;
    let board = match &a.board_bench {
        Some(p) if models.len() == 1 => Some(BenchReport::read(p)?),
        Some(p) => bail!(
            "--board-bench {}: one report describes one model; give one model",
            p.display()
        ),
        None => None,
    };
    let mut rows = Vec::new();
    for m in &models {
        let file_bytes = std::fs::metadata(m)
            .with_context(|| format!("{}: cannot read", m.display()))?
            .len();
        let onnx = edgeslim::onnx::OnnxModel::load(m)?;
        let macs = edgeslim::inspect::inspect(&onnx, &a.input_shapes)?.total_macs;
        let (rss, rss_source, latency_ms, latency_source) = match &board {
            Some(r) => (
                r.memory.peak_rss_bytes.with_context(|| {
                    format!("{}: the board report has no peak RSS", m.display())
                })?,
                "board bench report".to_string(),
                r.latency.p50_ms,
                format!("measured on the board (p50, {} threads)", r.threads),
            ),
            None => {
                let rss = measure_rss(m, &a.input_shapes, threads)?;
                let est = match peak {
                    Some(g) => 2.0 * macs as f64 / (g * 1e9) * 1e3,
                    None => f64::NAN,
                };
                (
                    rss,
                    "host edgeslim-rt (same runtime)".to_string(),
                    est,
                    "lower bound: 2 x MACs at the board's fp32 peak, all cores".to_string(),
                )
            }
        };
        let fits = rss <= usable;
        let reason = if fits {
            format!(
                "peak RSS {:.0} MiB of {:.0} MiB usable",
                mib(rss as f64),
                mib(usable as f64)
            )
        } else {
            format!(
                "peak RSS {:.0} MiB > {:.0} MiB usable ({:.2} GiB RAM less {OS_RESERVE_MIB:.0} MiB for the OS)",
                mib(rss as f64),
                mib(usable as f64),
                ram as f64 / 1073741824.0
            )
        };
        rows.push(ModelFit {
            model: m.display().to_string(),
            file_bytes,
            macs,
            peak_rss_bytes: rss,
            rss_source,
            latency_ms,
            latency_source,
            fits,
            reason,
        });
    }
    let report = FitReport {
        target: profile.name.clone(),
        board: profile.board.clone(),
        ram_bytes: ram,
        os_reserve_bytes: reserve,
        usable_bytes: usable,
        fp32_peak_gflops: peak,
        threads,
        fits: rows.iter().all(|r| r.fits),
        models: rows,
    };
    if json_out::emit(&a.json.dest, &report)? {
        return Ok(());
    }
    println!(
        "{} ({}): {:.2} GiB RAM, {:.0} MiB usable, fp32 peak {}",
        report.target,
        report.board,
        ram as f64 / 1073741824.0,
        mib(usable as f64),
        peak.map_or("unknown".to_string(), |g| format!("{g} GFLOP/s"))
    );
    for r in &report.models {
        println!(
            "  {}: {} — {}; {:.1} MB file, {:.1} M MACs, latency {:.2} ms ({})",
            r.model,
            if r.fits { "fits" } else { "does not fit" },
            r.reason,
            r.file_bytes as f64 / 1e6,
            r.macs as f64 / 1e6,
            r.latency_ms,
            r.latency_source
        );
    }
    Ok(())
}
