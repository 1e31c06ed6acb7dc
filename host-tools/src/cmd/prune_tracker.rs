//! `edgeslim compress prune TRACKER_DIR ... -o OUT_DIR`: the Siamese tracker pair pruned
//! jointly (`edgeslim::prune::tracker`), optionally fine-tuned on generated tracking pairs
//! with the recipe the tracker was trained with, and a JSON report with measured latency.

use super::prune::PruneArgs;
use anyhow::{bail, Context, Result};
use edgeslim::data::DataSpec;
use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim::prune::tracker::{self, TrackerBudget, TrackerPair, TrackerPruneOptions};
use edgeslim::prune::Criterion;
use edgeslim_runtime::InputShape;
use serde::Serialize;

#[derive(Serialize)]
struct FinetuneSummary {
    data: String,
    epochs: usize,
    lr: f64,
    best_epoch: usize,
    held_out_loss: Vec<f64>,
    peak_within_stride: Vec<f64>,
    seconds: f64,
}

#[derive(Serialize)]
struct TrackerReport {
    source: String,
    output: String,
    #[serde(flatten)]
    prune: tracker::TrackerPruneSummary,
    macs_per_search_scale_before: u64,
    macs_per_search_scale_after: u64,
    template_macs_before: u64,
    template_macs_after: u64,
    /// The search graphs (one scale), tract, side by side.
    latency: Option<edgeslim::prune::report::Latency>,
    finetune: Option<FinetuneSummary>,
}

/// Options of the graph pruner that mean nothing for a tracker pair: refuse them rather than
/// silently ignore them.
fn check_options(a: &PruneArgs) -> Result<()> {
    let unsupported = [
        (a.global, "--global"),
        (a.exclude.is_some(), "--exclude"),
        (!a.calib.is_empty(), "--calib"),
        (a.teacher, "--teacher"),
        (!a.input_shapes.is_empty(), "--input-shape"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(on, _)| *on) {
        bail!(
            "{}: {flag} is not supported when pruning a tracker pair (options: --ratio or \
             --keep-params, --criterion l1|l2|bn, --min-channels, --round-to, --finetune tracking:SEED \
             --epochs --lr, --report, --runs, --threads)",
            a.model.display()
        );
    }
    if !matches!(a.criterion, Criterion::L1 | Criterion::L2 | Criterion::Bn) {
        bail!(
            "--criterion {}: a tracker pair is scored with l1, l2 or bn",
            a.criterion.as_str()
        );
    }
    Ok(())
}

fn macs(m: &OnnxModel, search: usize) -> Result<u64> {
    let shapes = if m.graph().input.iter().any(|i| i.name == "search") {
        vec![InputShape {
            name: Some("search".into()),
            dims: vec![1, 3, search, search],
        }]
    } else {
        Vec::new()
    };
    Ok(edgeslim::inspect::inspect(m, &shapes)?.total_macs)
}

pub fn run(a: &PruneArgs) -> Result<()> {
    check_options(a)?;
    let budget = match (a.ratio, a.keep_params) {
        (_, Some(f)) => TrackerBudget::KeepParams(f),
        (Some(r), None) => TrackerBudget::Ratio(r),
        (None, None) => bail!("give --ratio R or --keep-params F"),
    };
    let finetune_seed = match &a.finetune {
        None => None,
        Some(spec) => match spec.parse::<DataSpec>().context("--finetune")? {
            DataSpec::Tracking(seed) => Some(seed),
            other => bail!("--finetune {other}: a tracker fine-tunes on tracking:SEED pairs"),
        },
    };
    if a.output.exists() && !a.output.is_dir() {
        bail!(
            "{}: -o for a tracker pair is a directory",
            a.output.display()
        );
    }
    edgeslim_runtime::fsutil::ensure_not_input(&a.output, &[&a.model])?;
    let pair = TrackerPair::load(&a.model)?;
    let opts = TrackerPruneOptions {
        criterion: a.criterion,
        budget,
        min_channels: a.min_channels,
        round_to: a.round_to,
    };
    let (template, search, cfg, summary) = tracker::prune_pair(&pair, &opts)?;
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    // The pair record goes first and comes back last: a reader never trusts half a rewrite.
    edgeslim_runtime::track::pair_manifest::begin_write(&a.output)?;
    template.save(&a.output.join("template.onnx"), &SaveOptions::default())?;
    search.save(&a.output.join("search.onnx"), &SaveOptions::default())?;
    edgeslim_runtime::track::pair_manifest::finish_write(&a.output)?;

    let finetune = match finetune_seed {
        None => None,
        Some(seed) => {
            let epochs = a.epochs.unwrap_or(3);
            let o = tracker::finetune(&tracker::Finetune {
                source: &a.model,
                template: &template,
                search: &search,
                config: &cfg,
                output: &a.output,
                seed,
                epochs,
                lr: a.lr,
                command: super::train::command_line(),
                provenance: vec![format!(
                    "pruned from {} ({} criterion, channels {:?} -> {:?}, {} -> {} parameters), then fine-tuned",
                    a.model.display(),
                    summary.criterion,
                    summary.widths_before,
                    summary.widths_after,
                    summary.params_before,
                    summary.params_after
                )],
                progress: true,
            })?;
            Some(FinetuneSummary {
                data: format!("tracking:{seed}"),
                epochs,
                lr: a.lr,
                best_epoch: o.best_epoch,
                held_out_loss: o.history.iter().map(|e| e.val_loss).collect(),
                peak_within_stride: o.history.iter().map(|e| e.val_peak_within_stride).collect(),
                seconds: o.training_seconds,
            })
        }
    };

    println!(
        "{} -> {}: channels {:?} -> {:?}, params {} -> {} ({:.2}%)",
        a.model.display(),
        a.output.display(),
        summary.widths_before,
        summary.widths_after,
        summary.params_before,
        summary.params_after,
        100.0 * summary.params_kept
    );
    if let (Some(b), Some(a)) = (&summary.trunk_widths_before, &summary.trunk_widths_after) {
        println!("  pretrained trunk widths (stem, block outputs and expansions) {b:?} -> {a:?}");
    }
    if let Some(f) = &finetune {
        println!(
            "  fine-tuned {} epochs on {}: held-out pairs within one stride {:.1}% (best epoch {}, {:.0} s)",
            f.epochs,
            f.data,
            100.0 * f.peak_within_stride.get(f.best_epoch.saturating_sub(1)).copied().unwrap_or(f64::NAN),
            f.best_epoch,
            f.seconds
        );
    }
    if let Some(dir) = &a.report {
        // The written files, so the report describes what was saved (fine-tuned or not).
        let (t_after, s_after) = (
            OnnxModel::load(&a.output.join("template.onnx"))?,
            OnnxModel::load(&a.output.join("search.onnx"))?,
        );
        let s = cfg.search_size;
        let shape = [InputShape {
            name: Some("search".into()),
            dims: vec![1, 3, s, s],
        }];
        let latency = (a.runs > 0)
            .then(|| {
                edgeslim::prune::report::measure_latency(
                    &pair.search,
                    &s_after,
                    &shape,
                    a.runs,
                    a.threads,
                )
            })
            .transpose()?;
        let report = TrackerReport {
            source: a.model.display().to_string(),
            output: a.output.display().to_string(),
            prune: summary,
            macs_per_search_scale_before: macs(&pair.search, s)?,
            macs_per_search_scale_after: macs(&s_after, s)?,
            template_macs_before: macs(&pair.template, s)?,
            template_macs_after: macs(&t_after, s)?,
            latency,
            finetune,
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("report.json");
        edgeslim_runtime::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&report)?)?;
        if let Some(l) = &report.latency {
            println!(
                "  search graph, tract: {:.2} ms -> {:.2} ms: {:.2}x ({} thread(s), median of {} interleaved runs)",
                l.before_ms, l.after_ms, l.speedup, l.threads, l.runs
            );
        }
        println!(
            "  MACs per search scale {} -> {}; report: {}",
            report.macs_per_search_scale_before,
            report.macs_per_search_scale_after,
            path.display()
        );
    }
    Ok(())
}
