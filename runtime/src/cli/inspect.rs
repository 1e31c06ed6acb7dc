//! `edgeslim-rt inspect`: the inspection line on the board.

use anyhow::Result;
use clap::Args;
use edgeslim_runtime::inspect::{self, InspectConfig, Inspector};
use edgeslim_runtime::io::reject::{parse_pin_spec, RejectWorker};
use edgeslim_runtime::io::source::ImageFiles;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct InspectArgs {
    /// The detector written by `edgeslim anomaly fit` (threshold and normalisation inside).
    #[arg(value_name = "DETECTOR", required_unless_present = "detector_flag")]
    detector_arg: Option<PathBuf>,
    /// Deprecated: the detector is positional now.
    #[arg(
        long = "detector",
        value_name = "M.onnx",
        hide = true,
        conflicts_with = "detector_arg"
    )]
    detector_flag: Option<PathBuf>,
    /// Frames: an image file or a folder of images (searched recursively, sorted by path).
    #[arg(long)]
    source: PathBuf,
    /// Start over at the end of the source (a demo line that keeps running).
    #[arg(long = "loop")]
    looped: bool,
    /// Stop after this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
    /// Wait this long per frame (pace a folder like a conveyor).
    #[arg(long, value_name = "MS")]
    interval_ms: Option<u64>,
    /// Live view: PORT, 127.0.0.1:PORT, or 0.0.0.0:PORT to allow other machines.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// A secret the live view's actions must carry (open the page as /?token=SECRET); use it
    /// whenever --serve binds beyond 127.0.0.1.
    #[arg(long, value_name = "SECRET", requires = "serve")]
    token: Option<String>,
    /// Pulse this GPIO line on every failure: CHIP:LINE, e.g. gpiochip0:17.
    #[arg(long, value_name = "CHIP:LINE")]
    reject_pin: Option<String>,
    /// Length of the reject pulse.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pulse_ms: u32,
    /// The reject line is active low (relay boards that switch on a low level).
    #[arg(long)]
    active_low: bool,
    /// Override the stored threshold (raw score units).
    #[arg(long)]
    threshold: Option<f64>,
    /// Save every overlay as a JPEG into this folder.
    #[arg(long, value_name = "DIR")]
    save_overlays: Option<PathBuf>,
    /// JSON Lines on stdout: one record per frame, then one `{"summary": ...}` record; the
    /// text lines are left out (for other programs to consume without HTTP).
    #[arg(long)]
    jsonl: bool,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
    /// Threads for tract's matrix products.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn reject_worker(a: &InspectArgs) -> Result<Option<RejectWorker>> {
    let Some(spec) = &a.reject_pin else {
        return Ok(None);
    };
    let (chip, line) = parse_pin_spec(spec).map_err(anyhow::Error::msg)?;
    #[cfg(feature = "gpio")]
    {
        let w = edgeslim_runtime::io::gpio::reject_worker(
            &chip,
            line,
            a.pulse_ms.saturating_mul(1000),
            a.active_low,
        )?;
        Ok(Some(w))
    }
    #[cfg(not(feature = "gpio"))]
    {
        let _ = (chip, line);
        anyhow::bail!("--reject-pin needs a build with the `gpio` feature (cargo build -p edgeslim-runtime --features gpio)")
    }
}

#[cfg(feature = "serve")]
fn start_view(
    a: &InspectArgs,
    threshold: f64,
    range: (f64, f64),
) -> Result<Option<edgeslim_runtime::serve::LiveServer>> {
    use edgeslim_runtime::serve::{parse_addr, LiveServer, ServeConfig};
    let Some(spec) = &a.serve else {
        return Ok(None);
    };
    let addr = parse_addr(spec).map_err(anyhow::Error::msg)?;
    let mut cfg = ServeConfig::new(addr, "edgeslim inspect");
    cfg.controls_html = format!(
        r#"<p>threshold <input id="thr" type="number" step="any" value="{threshold}">
<button onclick="postAction('threshold', {{value: parseFloat(document.getElementById('thr').value)}})">set</button></p>"#
    );
    cfg.token = a.token.clone();
    cfg.validate = Some(edgeslim_runtime::serve::validate::threshold_in(
        range.0, range.1,
    ));
    let srv = LiveServer::start(cfg)?;
    eprintln!("live view: http://{}/", srv.local_addr());
    Ok(Some(srv))
}

pub fn run(a: &InspectArgs) -> Result<()> {
    #[cfg(not(feature = "serve"))]
    if a.serve.is_some() {
        anyhow::bail!("--serve needs a build with the `serve` feature (on by default)");
    }
    if a.jsonl && edgeslim_runtime::json_out::to_stdout(&a.json.dest) {
        anyhow::bail!("--jsonl and a bare --json both write to stdout: give --json FILE.json");
    }
    let detector = edgeslim_runtime::process::current_or_deprecated(
        &a.detector_arg,
        &a.detector_flag,
        "--detector M.onnx",
        "the positional DETECTOR",
    )
    .ok_or_else(|| anyhow::anyhow!("no detector given"))?;
    let inspector = Inspector::load(&detector, a.threads)?;
    let mut source = ImageFiles::open(&a.source, a.looped)?;
    let reject = reject_worker(a)?;
    let threshold = a.threshold.unwrap_or(inspector.meta.image.threshold);
    let cfg = InspectConfig {
        threshold: a.threshold,
        interval: a.interval_ms.map(Duration::from_millis),
        max_frames: a.max_frames,
        save_overlays: a.save_overlays.clone(),
        ..Default::default()
    };
    #[cfg(feature = "serve")]
    let server = {
        // Thresholds the live view accepts: from the detector's lower normalisation anchor
        // (below it every part fails) to 100 times the stored threshold.
        let m = &inspector.meta.image;
        let low = m.norm_lo.min(m.threshold);
        start_view(
            a,
            threshold,
            (low, 100.0 * m.threshold.abs().max(threshold.abs())),
        )?
    };
    #[cfg(feature = "serve")]
    let view: Option<&dyn edgeslim_runtime::view::View> = server
        .as_ref()
        .map(|s| s as &dyn edgeslim_runtime::view::View);
    #[cfg(not(feature = "serve"))]
    let view: Option<&dyn edgeslim_runtime::view::View> = None;
    if !quiet_lines(a) {
        println!(
            "{}: {}x{} input, threshold {threshold:.4} ({})",
            detector.display(),
            inspector.meta.width,
            inspector.meta.height,
            if a.threshold.is_some() {
                "given"
            } else {
                "stored"
            }
        );
    }
    let quiet = quiet_lines(a);
    let mut summary = inspect::run(&inspector, &mut source, &cfg, view, reject.as_ref(), |r| {
        if a.jsonl {
            let rec = serde_json::json!({
                "frame": r.index,
                "label": r.label,
                "score": r.score,
                "normalised": r.normalised,
                "verdict": r.verdict.to_string(),
                "infer_ms": r.infer_ms,
            });
            println!("{rec}");
        } else if !quiet {
            println!(
                "{:>5}  {:<40} score {:>10.4}  norm {:.3}  {}  {:.1} ms",
                r.index, r.label, r.score, r.normalised, r.verdict, r.infer_ms
            );
        }
    })?;
    // What the folder walk left out is reported next to the frames that did not decode.
    let listed = source
        .skipped
        .iter()
        .map(|(p, why)| format!("{}: {why}", p.display()));
    let room =
        edgeslim_runtime::inspect::MAX_UNREADABLE_LISTED.saturating_sub(summary.unreadable.len());
    summary.unreadable.extend(listed.take(room));
    // Let queued pulses finish before counting them.
    if let Some(w) = reject {
        let counts = w.counts.clone();
        drop(w);
        summary.rejects_pulsed = counts.pulsed.load(std::sync::atomic::Ordering::SeqCst);
        summary.rejects_dropped = counts.dropped.load(std::sync::atomic::Ordering::SeqCst);
    }
    if edgeslim_runtime::json_out::emit(&a.json.dest, &summary)? {
        return Ok(());
    }
    if a.jsonl {
        println!("{}", serde_json::json!({ "summary": &summary }));
        return Ok(());
    }
    println!(
        "{} frames: {} pass, {} fail, {} unreadable, {} left out of the folder; inference p50 {:.1} ms, p90 {:.1} ms{}",
        summary.frames,
        summary.passed,
        summary.failed,
        summary.bad_frames,
        source.skipped.len(),
        summary.infer_ms_p50,
        summary.infer_ms_p90,
        if a.reject_pin.is_some() {
            format!("; reject pulses {}", summary.rejects_pulsed)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// No per-frame lines with -q, nor when the JSON goes to stdout.
fn quiet_lines(a: &InspectArgs) -> bool {
    edgeslim_runtime::process::quiet()
        || a.jsonl
        || edgeslim_runtime::json_out::to_stdout(&a.json.dest)
}
