//! `edgeslim eval MODEL --task ...`: task metrics on a data folder. Each task is one enum
//! variant and one function; add yours next to `anomaly`.

use anyhow::Result;
use clap::{Args as ClapArgs, ValueEnum};
use edgeslim_runtime::json_out;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Task {
    /// Image AUROC, pixel AUROC and PRO of an anomaly detector on an MVTec-layout folder.
    Anomaly,
    /// OTB success AUC, precision@20 px, AO, SR0.5 and FPS of a tracker (a folder with
    /// template.onnx and search.onnx) on a folder of OTB-layout sequences.
    Track,
    /// Accuracy, per-class accuracy and confusion matrix of an image classifier on the held-out
    /// split of `--data mnist` or `--data folder:DIR` (run in tract).
    Classify,
}

/// Evaluate a model on a task's data.
#[derive(ClapArgs)]
#[command(
    after_help = "Example:\n  edgeslim eval brick.onnx --task anomaly --data data/brick --json brick-eval.json"
)]
pub struct Args {
    /// The model (for anomaly: a detector from `edgeslim anomaly fit`).
    model: PathBuf,
    #[arg(long, value_enum)]
    task: Task,
    /// The data folder (anomaly: MVTec layout).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
    /// Anomaly: score images only (no masks needed).
    #[arg(long)]
    image_only: bool,
}

fn anomaly(a: &Args) -> Result<()> {
    let r = edgeslim::anomaly::eval::evaluate(&a.model, &a.data, a.image_only, true)?;
    if json_out::emit(&a.json.dest, &r)? {
        return Ok(());
    }
    let pct = |v: Option<f64>| {
        v.map(|x| format!("{:.1}%", 100.0 * x))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{} on {}: {} good, {} defective test images",
        r.detector, r.data, r.good_images, r.defective_images
    );
    println!(
        "  image AUROC {}  pixel AUROC {}  PRO {}",
        pct(Some(r.image_auroc)),
        pct(r.pixel_auroc),
        pct(r.pro)
    );
    println!(
        "  at the stored threshold {:.3}: {} of good images flagged, {} of defective",
        r.threshold,
        pct(Some(r.false_positive_rate)),
        pct(Some(r.true_positive_rate))
    );
    for d in &r.per_defect {
        println!(
            "    {:<14} {:>3} images  AUROC {}  detected {}",
            d.defect,
            d.images,
            pct(Some(d.image_auroc)),
            pct(Some(d.detected_at_threshold))
        );
    }
    Ok(())
}

/// Tracking metrics with the board runtime's tracking loop (single thread, tract).
fn track(a: &Args) -> Result<()> {
    use edgeslim_runtime::track::{otb, TrackerParams};
    let r = otb::evaluate(&a.model, &a.data, &TrackerParams::default(), 1, true)?;
    if !json_out::emit(&a.json.dest, &r)? {
        print!("{}", otb::render(&r));
    }
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    match a.task {
        Task::Anomaly => anomaly(&a),
        Task::Track => track(&a),
        Task::Classify => super::eval_classify::run(&a.model, &a.data, &a.json.dest, 0),
    }
}
