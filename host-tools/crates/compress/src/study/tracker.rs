//! The study of a Siamese tracker pair (a folder with `template.onnx` and `search.onnx`):
//! the same plan, resume, interleaved benchmark and page as a single-graph study, with what a
//! tracker is judged by.
//!
//! - Quality: the board runtime's tracking loop (`edgeslim eval --task track`, 3 scales,
//!   1 thread) on OTB-layout sequences — generated ones (`tracking:SEED`: 6 sequences × 100
//!   frames, the benchmark set of docs/results/tracking.md at seed 7) or a folder of
//!   them — scored by OTB success AUC and precision at 20 px against the ground truth, and by
//!   agreement with the original tracker (the share of frames whose box overlaps the
//!   original's at IoU ≥ 0.5; no ground truth needed).
//! - Methods: `optimize`, `prune` (the pair pruner, both graphs at once, |γ| criterion,
//!   budget = the share of the search graph's parameters kept), `fp16`, and chains of them.
//! - Recovery: fine-tuning on generated tracking pairs (`tracking:1`) with the recipe the
//!   tracker was trained with; the generator's labels come free, so it needs no annotation.
//! - Latency: the search graph at one scale (what runs every frame, three times with three
//!   scales); the template graph runs once per (re-)initialisation.

use super::budget::BudgetBy;
use super::plan::{Method, Step, Variant};
use super::recover::{Recover, RecoveryFacts};
use super::types::{self, EngineCheck, Quality, Row, Study};
use super::{Progress, StudyConfig, Subject, VARIANTS};
use crate::prune::tracker::{self as pair_pruner, TrackerBudget, TrackerPair, TrackerPruneOptions};
use crate::prune::Criterion;
use crate::quantize::fp16::fp16_storage;
use crate::{Error, Result};
use edgeslim_data::tracking::{write_otb_sequence_with, Photos, SequenceConfig};
use edgeslim_onnx::{OnnxModel, SaveOptions};
use edgeslim_runtime::fsutil::{sha256_file, write_atomic};
use edgeslim_runtime::track::otb::{self, EvalReport};
use edgeslim_runtime::track::{pair_manifest, TrackerParams};
use edgeslim_runtime::InputShape;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// Generated benchmark: sequences × frames (320 × 240), as docs/results/tracking.md.
pub const SEQUENCES: usize = 6;
pub const FRAMES: usize = 100;
/// The tracking pairs a pruned pair is fine-tuned on (the zoo recipe's seed).
pub const FINETUNE_PAIRS_SEED: u64 = 1;
/// What a tracker study runs when `--methods` is not given.
pub const DEFAULT_METHODS: &str = "optimize,prune,fp16,prune+fp16";

/// The benchmark sequences of a tracker study.
#[derive(Debug, Clone, PartialEq)]
pub enum Sequences {
    /// `tracking:SEED`: generated into the study folder.
    Generated(u64),
    /// A folder of OTB-layout sequences.
    Folder(PathBuf),
}

impl FromStr for Sequences {
    type Err = Error;

    fn from_str(s: &str) -> Result<Sequences> {
        if let Some(seed) = s.strip_prefix("tracking:") {
            return seed.parse().map(Sequences::Generated).map_err(|_| {
                Error::option_value("data", s, "the seed is not a non-negative integer")
            });
        }
        let p = PathBuf::from(s);
        if p.is_dir() {
            Ok(Sequences::Folder(p))
        } else {
            Err(Error::option_value(
                "data",
                s,
                "a tracker is judged on tracking:SEED (generated sequences) or a folder of \
                 OTB-layout sequences",
            ))
        }
    }
}

impl std::fmt::Display for Sequences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sequences::Generated(s) => write!(f, "tracking:{s}"),
            Sequences::Folder(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Generate the sequences into `out/sequences` once (a marker file says they are complete).
fn sequences_dir(seqs: &Sequences, out: &Path, progress: Progress) -> Result<PathBuf> {
    let seed = match seqs {
        Sequences::Folder(p) => return Ok(p.clone()),
        Sequences::Generated(seed) => *seed,
    };
    let dir = out.join("sequences");
    let marker = dir.join(".complete");
    let stamp = format!("tracking:{seed} {SEQUENCES}x{FRAMES}\n");
    if std::fs::read_to_string(&marker).is_ok_and(|t| t == stamp) {
        return Ok(dir);
    }
    progress(&format!(
        "generating {SEQUENCES} benchmark sequences of {FRAMES} frames (seed {seed})"
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let photos = Photos::open(&edgeslim_data::assets::Assets::open())?;
    let cfg = SequenceConfig::new(320, 240, FRAMES);
    for k in 0..SEQUENCES {
        // The seeds `edgeslim data tracking --seed SEED` uses.
        let s = seed.wrapping_mul(1000).wrapping_add(k as u64);
        write_otb_sequence_with(&photos, &dir, &format!("seq-{k:03}"), s, &cfg)?;
    }
    write_atomic(&marker, stamp.as_bytes())?;
    Ok(dir)
}

/// Track every sequence (1 thread: quality does not depend on it).
fn evaluate(dir: &Path, seqs: &Path) -> Result<EvalReport> {
    Ok(otb::evaluate(
        dir,
        seqs,
        &TrackerParams::default(),
        1,
        false,
    )?)
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f64 {
    let w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    let inter = (w.max(0.0) * h.max(0.0)) as f64;
    let union = (a[2] * a[3] + b[2] * b[3]) as f64 - inter;
    if union > 0.0 && inter.is_finite() {
        inter / union
    } else {
        0.0
    }
}

/// A tracker's figures: AUC and P@20 against the ground truth, agreement with the original's
/// boxes.
fn quality(r: &EvalReport, original: &EvalReport) -> Quality {
    let (mut agree, mut frames) = (0usize, 0usize);
    for (a, b) in r.sequences.iter().zip(&original.sequences) {
        for (x, y) in a.boxes.iter().zip(&b.boxes) {
            frames += 1;
            agree += (iou(x, y) >= 0.5) as usize;
        }
    }
    Quality {
        agreement: agree as f64 / frames.max(1) as f64,
        auc: Some(r.overall.auc),
        precision_20px: Some(r.overall.precision_20px),
        ..Quality::default()
    }
}

fn search_shape(pair: &TrackerPair) -> Vec<InputShape> {
    let s = pair.config.search_size;
    vec![InputShape {
        name: Some("search".into()),
        dims: vec![1, 3, s, s],
    }]
}

fn pair_bytes(dir: &Path) -> Result<(u64, String)> {
    let (t, _) = sha256_file(&dir.join("template.onnx")).map_err(|e| Error::io(dir, e))?;
    let path = dir.join("search.onnx");
    let (s, sha) = sha256_file(&path).map_err(|e| Error::io(&path, e))?;
    Ok((t + s, sha))
}

/// Write both graphs with the pair record last (a reader never trusts half a rewrite).
fn save_pair(dir: &Path, template: &OnnxModel, search: &OnnxModel) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    pair_manifest::begin_write(dir)?;
    template.save(&dir.join("template.onnx"), &SaveOptions::default())?;
    search.save(&dir.join("search.onnx"), &SaveOptions::default())?;
    pair_manifest::finish_write(dir)?;
    Ok(())
}

/// Steps a tracker study can build.
fn check_methods(methods: &[Method]) -> Result<()> {
    for m in methods {
        if let Some(s) = m
            .steps
            .iter()
            .find(|s| !matches!(s, Step::Optimize | Step::Prune | Step::Fp16))
        {
            return Err(Error::option_value(
                "methods",
                s.name(),
                "a tracker pair is studied with optimize, prune and fp16, and chains of them \
                 (the other methods need one graph and calibration images)",
            ));
        }
    }
    Ok(())
}

/// What every variant of the study shares.
struct Ctx<'a> {
    pair: &'a TrackerPair,
    cfg: &'a StudyConfig,
    seqs: &'a Path,
    original: &'a EvalReport,
}

/// Run (or resume) the study of the tracker pair `cfg.model`.
pub fn run(cfg: &StudyConfig, seqs: &Sequences, progress: Progress) -> Result<Study> {
    let pair = TrackerPair::load(&cfg.model)?;
    check_methods(&cfg.methods)?;
    let metric = cfg.metric.unwrap_or(types::Metric::Auc);
    if !matches!(metric, types::Metric::Auc | types::Metric::Agreement) {
        return Err(Error::option_value(
            "metric",
            metric.as_str(),
            "a tracker is judged by auc (against the ground truth) or agreement (with the \
             original's boxes)",
        ));
    }
    if matches!(cfg.recover.mode, Recover::Distill | Recover::Glora) {
        return Err(Error::option_value(
            "recover",
            cfg.recover.mode.as_str(),
            "a tracker recovers by fine-tuning on generated tracking pairs (their labels come \
             with the generator, no annotation needed): use --recover finetune",
        ));
    }
    if cfg.budget_by != BudgetBy::Params {
        return Err(Error::option_value(
            "budget-by",
            cfg.budget_by.as_str(),
            "a tracker pair's budget is the share of its parameters kept (the pair pruner \
             keeps every layer's share of channels alike, so MACs follow them)",
        ));
    }
    let variants = super::plan::variants(&cfg.methods, &cfg.budgets)?;
    std::fs::create_dir_all(cfg.out.join(VARIANTS)).map_err(|e| Error::io(&cfg.out, e))?;
    let seq_dir = sequences_dir(seqs, &cfg.out, progress)?;
    progress("tracking the benchmark sequences with the original");
    let original = evaluate(&cfg.model, &seq_dir)?;
    let frames: usize = original.sequences.iter().map(|s| s.frames).sum();
    let shapes = search_shape(&pair);
    let (file_bytes, sha) = pair_bytes(&cfg.model)?;
    let mut study = Study::start(
        cfg,
        Subject {
            model_sha256: sha,
            input_shape: shapes[0].dims.clone(),
            data: seqs.to_string(),
            split: format!(
                "{} OTB sequences, {frames} frames, in {}; the tracking loop of the board \
                 runtime (3 scales, 1 thread); params, MACs and latency are the search graph's \
                 at one scale, file size both graphs'",
                original.sequences.len(),
                seq_dir.display()
            ),
            held_out_samples: frames,
            labels: true,
            metric,
            params: pair.params(),
            file_bytes,
            macs: edgeslim_onnx::inspect::inspect(&pair.search, &shapes)?.total_macs,
            quality: quality(&original, &original),
        },
    );
    let kept = super::kept_rows(cfg, &study)?;
    let ctx = Ctx {
        pair: &pair,
        cfg,
        seqs: &seq_dir,
        original: &original,
    };
    super::build_rows(
        &mut study,
        &variants,
        &kept,
        &cfg.out,
        progress,
        |v, done| build_row(v, &ctx, done),
    )?;
    super::finish(
        &mut study,
        &cfg.model.join("search.onnx"),
        &cfg.out,
        &shapes,
        progress,
    )?;
    Ok(study)
}

/// The float pair of a variant: pruned (and fine-tuned) when the method prunes, then
/// optimised; with the quality before recovery and what recovery did.
struct FloatPair {
    template: OnnxModel,
    search: OnnxModel,
    settings: Vec<String>,
    quality_compressed: Option<Quality>,
    recovery: Option<RecoveryFacts>,
}

fn float_pair(v: &Variant, ctx: &Ctx, dir: &Path) -> Result<FloatPair> {
    let mut settings = Vec::new();
    let (mut template, mut search) = (ctx.pair.template.clone(), ctx.pair.search.clone());
    let (mut quality_compressed, mut recovery) = (None, None);
    if v.method.steps.contains(&Step::Prune) {
        let keep = v.budget.unwrap_or(1.0);
        let opts = TrackerPruneOptions {
            criterion: Criterion::Bn,
            budget: TrackerBudget::KeepParams(keep),
            min_channels: 1,
            round_to: 1,
        };
        let (t, s, config, summary) = pair_pruner::prune_pair(ctx.pair, &opts)?;
        settings.push(format!(
            "pair pruned to channels {:?} (|γ| criterion)",
            summary.widths_after
        ));
        (template, search) = (t, s);
        if ctx.cfg.recover.mode == Recover::Finetune {
            // The pruned pair is tracked, and then fine-tuned, in folders beside the
            // variant's: its final graphs are written there once optimised (a model is never
            // saved over the file it was loaded from).
            let beside = |tag: &str| {
                dir.with_file_name(format!(
                    "{}.{tag}",
                    dir.file_name()
                        .map_or("variant".into(), |n| n.to_string_lossy())
                ))
            };
            let pruned = beside("pruned");
            save_pair(&pruned, &template, &search)?;
            let before = evaluate(&pruned, ctx.seqs);
            let _ = std::fs::remove_dir_all(&pruned);
            quality_compressed = Some(quality(&before?, ctx.original));
            let trained = beside("finetune");
            let t0 = Instant::now();
            let o = pair_pruner::finetune(&pair_pruner::Finetune {
                source: &ctx.cfg.model,
                template: &template,
                search: &search,
                config: &config,
                output: &trained,
                seed: FINETUNE_PAIRS_SEED,
                epochs: ctx.cfg.recover.epochs,
                lr: ctx.cfg.recover.lr,
                command: format!("edgeslim study (variant {})", v.id),
                provenance: vec![format!(
                    "pruned from {} to channels {:?}, then fine-tuned",
                    ctx.cfg.model.display(),
                    summary.widths_after
                )],
                progress: ctx.cfg.recover.progress,
            })?;
            let read = |p: &Path| -> Result<OnnxModel> {
                OnnxModel::from_bytes(&std::fs::read(p).map_err(|e| Error::io(p, e))?, p)
            };
            template = read(&o.template)?;
            search = read(&o.search)?;
            // The trainer's card (data, split, history) goes with the variant.
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            for card in ["card.md", "card.json", "history.json"] {
                let _ = std::fs::rename(trained.join(card), dir.join(card));
            }
            let _ = std::fs::remove_dir_all(&trained);
            let within = |e: usize| {
                o.history
                    .get(e.saturating_sub(1))
                    .map_or(f64::NAN, |h| h.val_peak_within_stride)
            };
            recovery = Some(RecoveryFacts {
                mode: Recover::Finetune,
                epochs: ctx.cfg.recover.epochs,
                best_epoch: o.best_epoch,
                held_out_before: within(1),
                held_out_after: within(o.best_epoch),
                judged_by: "held-out pairs with the peak within one stride (after epoch 1, \
                            best epoch)"
                    .into(),
                seconds: t0.elapsed().as_secs_f64(),
                stopped: None,
                trained_values: Some(template.float_constant_elements()?),
            });
        }
    }
    // Every variant is the optimised pair, as a user would deploy it.
    let opts = edgeslim_onnx::optimize::OptimizeOptions::default();
    // Changes per pass, summed over the two graphs, in the order the passes ran.
    let mut passes: Vec<(String, usize)> = Vec::new();
    for m in [&mut template, &mut search] {
        for p in edgeslim_onnx::optimize::optimize(m, &opts)? {
            match passes.iter_mut().find(|(name, _)| *name == p.pass) {
                Some(e) => e.1 += p.count,
                None => passes.push((p.pass.to_string(), p.count)),
            }
        }
    }
    if v.method.steps.first() == Some(&Step::Optimize) {
        let done: Vec<String> = passes
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        settings.push(format!("optimize (both graphs): {}", done.join(", ")));
    }
    Ok(FloatPair {
        template,
        search,
        settings,
        quality_compressed,
        recovery,
    })
}

fn build_row(v: &Variant, ctx: &Ctx, done: &[Row]) -> Result<Row> {
    let t0 = Instant::now();
    let rel = format!("{VARIANTS}/{}", v.id.replace('@', "-"));
    let dir = ctx.cfg.out.join(&rel);
    // A chain's float part is an earlier row (prune@0.5 for prune+fp16@0.5): reuse it.
    let prefix = super::float_prefix(v).and_then(|id| done.iter().find(|r| r.id == id));
    let (mut template, mut search, mut settings, quality_compressed, recovery, mut notes) =
        match prefix {
            Some(row) => {
                let from = ctx.cfg.out.join(&row.file);
                let from = from.parent().unwrap_or(&from);
                (
                    OnnxModel::load(&from.join("template.onnx"))?,
                    OnnxModel::load(&from.join("search.onnx"))?,
                    row.settings.clone(),
                    row.quality_compressed.clone(),
                    row.recovery.clone(),
                    vec![format!("float pair of row {} reused", row.id)],
                )
            }
            None => {
                let f = float_pair(v, ctx, &dir)?;
                (
                    f.template,
                    f.search,
                    f.settings,
                    f.quality_compressed,
                    f.recovery,
                    Vec::new(),
                )
            }
        };
    let row_params = pair_pruner::model_params(&search);
    let macs = edgeslim_onnx::inspect::inspect(&search, &search_shape(ctx.pair))?.total_macs;
    if v.method.precision() == Some(Step::Fp16) {
        let t = fp16_storage(&mut template)?;
        let s = fp16_storage(&mut search)?;
        settings.push(format!(
            "fp16 weights: {} + {} tensors",
            t.tensors_converted, s.tensors_converted
        ));
    }
    save_pair(&dir, &template, &search)?;
    let seconds = t0.elapsed().as_secs_f64();
    let report = evaluate(&dir, ctx.seqs)?;
    notes.push(format!(
        "tracking loop {:.1} fps (3 scales, 1 thread, during the quality run)",
        report.fps
    ));
    let engines = engine_check(&dir, ctx.pair);
    let (file_bytes, sha256) = pair_bytes(&dir)?;
    Ok(Row {
        id: v.id.clone(),
        method: v.method.clone(),
        budget: v.budget,
        settings,
        file: format!("{rel}/search.onnx"),
        sha256,
        file_bytes,
        params: row_params,
        macs,
        quality_compressed,
        quality: quality(&report, ctx.original),
        recovery,
        notes,
        seconds,
        engines,
        latency: None,
        rss_load_bytes: None,
        speedup_vs_tract: None,
        speedup_vs_ort: None,
        drop_points: None,
        pareto: false,
    })
}

/// Generated pairs the two-engine check runs.
const ENGINE_PAIRS: u64 = 4;

/// The pair on tract and on ONNX Runtime, end to end (template graph, then the search graph
/// with each engine's own kernel) on generated template/search crops.
fn engine_check(dir: &Path, pair: &TrackerPair) -> EngineCheck {
    EngineCheck::of(ENGINE_PAIRS as usize, responses_both(dir, pair))
}

#[cfg(feature = "ort")]
fn responses_both(dir: &Path, pair: &TrackerPair) -> Result<f64> {
    use edgeslim_data::tracking::pairs::{PairConfig, PairGenerator};
    use edgeslim_measure::engines::ort::OrtSession;
    use edgeslim_runtime::tract_onnx::prelude::Tensor;
    use edgeslim_runtime::{LoadOptions, LoadedModel};
    let c = &pair.config;
    let photos = Photos::open(&edgeslim_data::assets::Assets::open())?;
    let gen = PairGenerator::new(
        &photos,
        PairConfig::for_network(
            c.template_size as u32,
            c.search_size as u32,
            c.stride as u32,
        ),
    )?;
    let (tp, sp) = (dir.join("template.onnx"), dir.join("search.onnx"));
    let opts = LoadOptions {
        threads: 1,
        input_shapes: search_shape(pair),
        ..LoadOptions::default()
    };
    let t_tract = LoadedModel::load(&tp, &LoadOptions::default())?;
    let s_tract = LoadedModel::load(&sp, &opts)?;
    let mut t_ort = OrtSession::load(&tp, 1)?;
    let mut s_ort = OrtSession::load(&sp, 1)?;
    let t_name = t_tract
        .inputs
        .first()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let k_name = s_tract
        .inputs
        .iter()
        .find(|i| i.name != "search")
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let arr = |shape: &[usize], v: Vec<f32>| {
        ndarray::ArrayD::from_shape_vec(shape.to_vec(), v)
            .map_err(|e| Error::Other(format!("engine check input: {e}")))
    };
    let first = |mut o: edgeslim_measure::engines::ort::NamedArrays| {
        o.drain(..)
            .next()
            .map(|(_, a)| a)
            .ok_or_else(|| Error::Graph("ONNX Runtime returned no output".into()))
    };
    let tensor = |shape: &[usize], v: &[f32]| {
        Tensor::from_shape(shape, v).map_err(|e| Error::Other(format!("engine check: {e}")))
    };
    let (ts, ss) = (c.template_size, c.search_size);
    let mut worst = 0.0f64;
    for i in 0..ENGINE_PAIRS {
        let p = gen.pair(0, i);
        let kt = t_tract.run(vec![tensor(&[1, 3, ts, ts], &p.template)?])?;
        let kernel = kt
            .into_iter()
            .next()
            .ok_or_else(|| Error::Graph("template graph: no output".into()))?;
        let r_tract = s_tract.run(vec![tensor(&[1, 3, ss, ss], &p.search)?, kernel])?;
        let r_tract: Vec<f32> = r_tract
            .first()
            .and_then(|t| t.to_plain_array_view::<f32>().ok())
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let k_ort =
            first(t_ort.run(&[(t_name.clone(), arr(&[1, 3, ts, ts], p.template.clone())?)])?)?;
        let r_ort = first(s_ort.run(&[
            ("search".into(), arr(&[1, 3, ss, ss], p.search.clone())?),
            (k_name.clone(), k_ort),
        ])?)?;
        if r_ort.len() != r_tract.len() {
            return Err(Error::Graph(format!(
                "response sizes differ: tract {}, ONNX Runtime {}",
                r_tract.len(),
                r_ort.len()
            )));
        }
        let r_ort: Vec<f32> = r_ort.iter().copied().collect();
        worst = worst.max(super::measure::relative_diff(&r_ort, &r_tract));
    }
    Ok(worst)
}

#[cfg(not(feature = "ort"))]
fn responses_both(_: &Path, _: &TrackerPair) -> Result<f64> {
    Err(Error::Other(
        "built without ONNX Runtime (feature `ort`)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_parse_as_generated_or_an_existing_folder() {
        assert_eq!(
            "tracking:7".parse::<Sequences>().unwrap(),
            Sequences::Generated(7)
        );
        let d = std::env::temp_dir();
        assert_eq!(
            d.display().to_string().parse::<Sequences>().unwrap(),
            Sequences::Folder(d)
        );
        for bad in ["tracking:x", "/no/such/folder"] {
            let e = bad.parse::<Sequences>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn box_overlap() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-12);
        assert!((iou(&a, &[5.0, 0.0, 10.0, 10.0]) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(iou(&a, &[20.0, 0.0, 5.0, 5.0]), 0.0);
        assert_eq!(iou(&a, &[f32::NAN; 4]), 0.0);
    }

    #[test]
    fn other_methods_are_refused_by_name() {
        let ok = super::super::plan::parse_methods(DEFAULT_METHODS).unwrap();
        assert!(check_methods(&ok).is_ok());
        let bad = super::super::plan::parse_methods("prune,lowrank-feature").unwrap();
        let e = check_methods(&bad).unwrap_err().to_string();
        assert!(e.contains("lowrank-feature"), "{e}");
    }
}
