//! ViT-Slim on a Siamese tracker with a transformer backbone (`edgeslim compress vit-slim DIR`
//! on a pair made by `edgeslim train` with `[model.vit]`): the transformer trunk both branches
//! share is recognised and masked once, so the template and the search branch see the same
//! masks; the search trains masks and weights with the tracking loss on generated pairs; the
//! kept channels meet a budget on the search graph; the smaller pair is rebuilt from its
//! per-block shapes (`vit.blocks` in its config), filled with the sliced weights, and
//! fine-tuned like a pruned tracker.
//!
//! ```text
//! pair ─ trunk (weights by name) ─ prepare + recognise ─ masks ─ search: the tracker trainer
//!   with the masked trunk spliced into both branches, l1 on the masks ─ fold ─ threshold to
//!   the budget (params or MACs of the search graph) ─ slice the trunk ─ rebuild the pair from
//!   the sliced shapes, weights by name ─ fine-tune ─ pair
//! ```

use crate::masks::{self, Mask, MaskKind, MaskValues};
use crate::recognize::VitStructure;
use crate::slice::Keep;
use crate::{budget, magnitude, slice, BlockShape, Selection, PAPER_ATTENTION_WEIGHT};
use edgeslim_compress::prune::tracker::{base_recipe, model_params, TrackerPair};
use edgeslim_compress::study::budget::BudgetBy;
use edgeslim_data::DataSpec;
use edgeslim_onnx::{Error, OnnxModel, Result};
use edgeslim_runtime::InputShape;
use edgeslim_train::families::siamese::{self, SiameseConfig};
use edgeslim_train::families::vit::BlockShape as VitBlock;
use edgeslim_train::families::FamilySpec;
use edgeslim_train::tracker::{TrackerOutcome, TrackerRun};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TrackerSlimOptions {
    pub selection: Selection,
    /// `head-dims` or `heads`, and/or `mlp` (tokens are refused: the response map needs them).
    pub kinds: Vec<MaskKind>,
    pub budget_by: BudgetBy,
    /// Fraction of the search graph's parameters (or MACs per search scale) kept.
    pub budget: f64,
    pub search_epochs: usize,
    pub retrain_epochs: usize,
    /// Learning rate of search and fine-tuning (the tracker's recipe, no warm-up).
    pub lr: f64,
    pub mask_lr: Option<f64>,
    pub attention_weight: f64,
    pub mlp_weight: f64,
    pub round_to: usize,
    /// `tracking:SEED`: the generated pairs.
    pub data_seed: u64,
    /// Cut every epoch to this many batches, and the held-out pairs to this many (short
    /// runs, tests).
    pub max_batches_per_epoch: Option<usize>,
    pub val_pairs: Option<usize>,
    /// Photographs the pairs are cut from (default: the asset cache).
    pub photos_dir: Option<PathBuf>,
    /// Where the fine-tuned pair and its card go.
    pub output: PathBuf,
    /// Also write the sliced pair before fine-tuning here.
    pub sliced_output: Option<PathBuf>,
    pub threads: usize,
    pub progress: bool,
    pub command: String,
}

impl Default for TrackerSlimOptions {
    fn default() -> Self {
        TrackerSlimOptions {
            selection: Selection::Learned,
            kinds: vec![MaskKind::HeadDims, MaskKind::Mlp],
            budget_by: BudgetBy::Params,
            budget: 0.5,
            search_epochs: 3,
            retrain_epochs: 5,
            lr: 1e-3,
            mask_lr: None,
            attention_weight: PAPER_ATTENTION_WEIGHT,
            mlp_weight: crate::PAPER_MLP_WEIGHT,
            round_to: 1,
            data_seed: 1,
            max_batches_per_epoch: None,
            val_pairs: None,
            photos_dir: None,
            output: PathBuf::from("vit-slim-tracker"),
            sliced_output: None,
            threads: 0,
            progress: false,
            command: String::new(),
        }
    }
}

/// Held-out pair figures of one stage (peak error in search-crop pixels).
#[derive(Debug, Clone, Serialize)]
pub struct PairStage {
    pub loss: f64,
    pub peak_error_px: f64,
    pub peak_within_stride: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackerSlimReport {
    pub selection: Selection,
    pub masks: Vec<MaskKind>,
    pub budget_by: String,
    pub budget: f64,
    pub kept_fraction: f64,
    /// Search graph: parameters, and MACs of one search scale, before → after.
    pub params: (u64, u64),
    pub macs: (u64, u64),
    pub blocks: Vec<BlockShape>,
    /// The masked pair at the end of the search (None: magnitude selection).
    pub after_search: Option<PairStage>,
    /// The fine-tuned pair's best epoch (None without fine-tuning).
    pub retrained: Option<PairStage>,
    pub search_seconds: f64,
    pub retrain_seconds: f64,
    pub search_losses: Vec<f64>,
    pub peak_rss_bytes: Option<u64>,
    pub notes: Vec<String>,
}

/// The trunk of a ViT tracker with the pair's weights, prepared and recognised at the search
/// size.
pub struct Trunk {
    pub prepared: crate::Prepared,
    pub config: SiameseConfig,
    /// The trunk's weights (its initializers as built; `prepare` makes initializers of the
    /// fixed numbers too).
    pub weights: std::collections::HashSet<String>,
}

/// The pair's ViT trunk: built from its config, weights copied by name from the search graph.
pub fn trunk(pair: &TrackerPair) -> Result<Trunk> {
    let cfg = pair.config.clone();
    if cfg.vit.is_none() {
        return Err(Error::Invalid(format!(
            "{}: the tracker's backbone is a CNN ({}); ViT-Slim needs a transformer backbone \
             (`[model.vit]` in the recipe). Prune CNN trackers with `edgeslim compress prune`.",
            pair.dir.display(),
            if cfg.pretrained.is_some() {
                "pretrained MobileNetV2"
            } else {
                "conv1..conv4"
            }
        )));
    }
    let mut t = siamese::vit_trunk(&cfg)?;
    siamese::copy_weights_by_name(
        &mut t,
        &[&pair.search],
        |_| true,
        &format!("{} (search.onnx)", pair.dir.display()),
    )?;
    let s = cfg.search_size;
    let shape = InputShape {
        name: Some("x".into()),
        dims: vec![1, 3, s, s],
    };
    let weights = t
        .graph()
        .initializer
        .iter()
        .map(|i| i.name.clone())
        .collect();
    Ok(Trunk {
        prepared: crate::prepare_vit(&t, &[shape])?,
        config: cfg,
        weights,
    })
}

/// The config of the pair sliced to `keep`: per-block heads, head size and MLP units; each
/// block keeps its original softmax scale (slicing keeps it, so the sliced model equals the
/// masked one).
pub fn sliced_config(cfg: &SiameseConfig, s: &VitStructure, keep: &Keep) -> Result<SiameseConfig> {
    let mut out = cfg.clone();
    let v = out
        .vit
        .as_mut()
        .ok_or_else(|| Error::Invalid("the tracker has no vit backbone".into()))?;
    let before = v.block_shapes();
    if before.len() != s.attentions.len() || s.mlps.len() != s.attentions.len() {
        return Err(Error::Graph(format!(
            "the trunk has {} blocks, ViT-Slim recognised {} attentions and {} MLPs",
            before.len(),
            s.attentions.len(),
            s.mlps.len()
        )));
    }
    v.blocks = before
        .iter()
        .enumerate()
        .map(|(b, shape)| VitBlock {
            heads: keep.attentions[b].heads.len(),
            head_dim: keep.attentions[b].head_dim(),
            mlp: keep.mlps[b].len(),
            scale: shape.scale,
        })
        .collect();
    out.validate()?;
    Ok(out)
}

/// The pair of `cfg` (a sliced config) holding `trunk`'s weights (a sliced trunk) and the
/// neck and head from `rest`, every tensor's shape checked against the rebuilt graphs.
pub fn rebuild_pair(
    cfg: &SiameseConfig,
    trunk: &OnnxModel,
    rest: &[&OnnxModel],
) -> Result<(OnnxModel, OnnxModel)> {
    let mut template = siamese::build_template(cfg)?;
    let mut search = siamese::build_search(cfg)?;
    let mut sources = vec![trunk];
    sources.extend_from_slice(rest);
    for m in [&mut template, &mut search] {
        siamese::copy_weights_by_name(m, &sources, |_| true, "the sliced trunk and the head")?;
    }
    Ok((template, search))
}

fn count(by: BudgetBy, search: &OnnxModel, cfg: &SiameseConfig) -> Result<u64> {
    Ok(match by {
        BudgetBy::Params => model_params(search),
        BudgetBy::Macs => {
            let shapes = vec![InputShape {
                name: Some("search".into()),
                dims: vec![1, 3, cfg.search_size, cfg.search_size],
            }];
            edgeslim_onnx::inspect::inspect(search, &shapes)?.total_macs
        }
    })
}

/// Threshold the mask values to the budget (`by`, fraction of `original`'s count), measured
/// on the search graph rebuilt from each candidate's shapes: the kept fraction of every mask
/// type, the kept channels, and the sliced pair's config.
pub fn plan(
    cfg: SiameseConfig,
    s: &VitStructure,
    masks: &[Mask],
    values: &MaskValues,
    (by, fraction): (BudgetBy, f64),
    round_to: usize,
    original: &OnnxModel,
) -> Result<(f64, Keep, SiameseConfig)> {
    let before = count(by, original, &cfg)? as f64;
    let (kept, keep, _) = budget::fit(s, masks, values, fraction, round_to, |k| {
        let c = sliced_config(&cfg, s, k)?;
        Ok(count(by, &siamese::build_search(&c)?, &c)? as f64 / before)
    })?;
    let sliced = sliced_config(&cfg, s, &keep)?;
    Ok((kept, keep, sliced))
}

fn stage(o: &TrackerOutcome) -> Option<PairStage> {
    o.history
        .get(o.best_epoch.checked_sub(1)?)
        .map(|e| PairStage {
            loss: e.val_loss,
            peak_error_px: e.val_peak_error_px,
            peak_within_stride: e.val_peak_within_stride,
        })
}

/// The tracker trainer's recipe for a stage: the pair's own (from its card), no warm-up.
fn recipe(
    pair: &TrackerPair,
    cfg: &SiameseConfig,
    opts: &TrackerSlimOptions,
    output: &Path,
) -> Result<edgeslim_train::recipe::Recipe> {
    let mut r = base_recipe(&pair.dir)?;
    r.name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vit-slim-tracker".into());
    r.output = output.to_path_buf();
    r.model = FamilySpec::Siamese(cfg.clone());
    r.data.spec = DataSpec::Tracking(opts.data_seed);
    r.optimizer.lr = opts.lr;
    r.schedule.warmup_epochs = 0.0;
    Ok(r)
}

fn run_options(opts: &TrackerSlimOptions, epochs: usize, batch: usize) -> TrackerRun {
    TrackerRun {
        threads: opts.threads,
        command: opts.command.clone(),
        progress: opts.progress,
        epochs: Some(epochs),
        pairs_per_epoch: opts.max_batches_per_epoch.map(|b| b * batch),
        val_pairs: opts.val_pairs,
        photos_dir: opts.photos_dir.clone(),
        ..TrackerRun::default()
    }
}

/// Search, slice to the budget, fine-tune; the pair goes to `opts.output`.
pub fn run(pair: &TrackerPair, opts: &TrackerSlimOptions) -> Result<TrackerSlimReport> {
    if !(opts.budget > 0.0 && opts.budget <= 1.0) {
        return Err(Error::option_value(
            "budget",
            opts.budget,
            "the kept fraction must be in (0, 1]",
        ));
    }
    if opts.kinds.contains(&MaskKind::Tokens) {
        return Err(Error::option_value(
            "masks",
            "tokens",
            "a tracker's features are its token map (the correlation reads every token)",
        ));
    }
    let tr = trunk(pair)?;
    let p = &tr.prepared;
    let s = &p.structure;
    let (masked, masks) = masks::insert(&p.model, s, &opts.kinds)?;
    let masked_for_training = fixed_as_constants(&masked, &tr.weights)?;
    // An unreachable budget is refused before the search, not after it.
    let budget = (opts.budget_by, opts.budget);
    plan(
        tr.config.clone(),
        s,
        &masks,
        &masks::ones(&masks),
        budget,
        opts.round_to,
        &pair.search,
    )?;

    let t0 = Instant::now();
    let (values, folded, rest, after_search, search_losses) = match opts.selection {
        Selection::Learned => {
            // Next to the output, named after all of it (`with_extension` would cut
            // `svit-0.5` to `svit-0`, shared with `svit-0.25`).
            let mut work = opts.output.clone().into_os_string();
            work.push(".vitslim-search");
            let work = PathBuf::from(work);
            let o = search(pair, &tr, opts, &masked_for_training, &masks, &work);
            let _ = std::fs::remove_dir_all(&work);
            let o = o?;
            let values = masks::values(&o.trained, &masks)?;
            let mut trained_trunk = masked.clone();
            siamese::copy_weights_by_name(
                &mut trained_trunk,
                &[&o.trained],
                |n| tr.weights.contains(n) || n.starts_with(masks::PREFIX),
                "the searched training graph",
            )?;
            let folded = masks::fold(&trained_trunk, s, &masks, &values)?;
            let losses = o.history.iter().map(|e| e.train_loss).collect();
            (values, folded, o.trained.clone(), stage(&o), losses)
        }
        Selection::Magnitude => (
            magnitude::scores(&p.model, s, &masks)?,
            p.model.clone(),
            pair.search.clone(),
            None,
            Vec::new(),
        ),
    };
    let search_seconds = t0.elapsed().as_secs_f64();

    let cfg = &tr.config;
    let (fraction, keep, cfg_sliced) = plan(
        tr.config.clone(),
        s,
        &masks,
        &values,
        budget,
        opts.round_to,
        &pair.search,
    )?;
    let sliced_trunk = slice::slice(&folded, s, &keep, &p.shapes)?;
    let (mut template, mut search) = rebuild_pair(&cfg_sliced, &sliced_trunk, &[&rest])?;
    let note = format!(
        "ViT-Slim ({}) from {} to {:.1} % of the search graph's {}",
        opts.selection.as_str(),
        pair.dir.display(),
        opts.budget * 100.0,
        opts.budget_by.as_str()
    );
    for m in [&mut template, &mut search] {
        m.set_metadata("edgeslim.pruned", &note);
        for key in ["edgeslim.tracker.mean", "edgeslim.tracker.std"] {
            if let Some(v) = pair.template.metadata(key) {
                let v = v.to_string();
                m.set_metadata(key, &v);
            }
        }
    }
    if let Some(dir) = &opts.sliced_output {
        write_pair(dir, &template, &search)?;
    }

    let t1 = Instant::now();
    let retrained = if opts.retrain_epochs > 0 {
        let r = recipe(pair, &cfg_sliced, opts, &opts.output)?;
        let mut run = run_options(opts, opts.retrain_epochs, r.batch_size);
        run.init_weights = vec![template.clone(), search.clone()];
        run.provenance = vec![note.clone()];
        let o = edgeslim_train::tracker::train(&r, &run)?;
        if let Some(why) = &o.stopped {
            return Err(Error::Invalid(format!("fine-tuning stopped: {why}")));
        }
        stage(&o)
    } else {
        write_pair(&opts.output, &template, &search)?;
        None
    };
    let retrain_seconds = t1.elapsed().as_secs_f64();

    let final_search = OnnxModel::load(&opts.output.join("search.onnx"))?;
    let macs = |m: &OnnxModel| count(BudgetBy::Macs, m, cfg);
    Ok(TrackerSlimReport {
        selection: opts.selection,
        masks: opts.kinds.clone(),
        budget_by: opts.budget_by.as_str().into(),
        budget: opts.budget,
        kept_fraction: fraction,
        params: (model_params(&pair.search), model_params(&final_search)),
        macs: (macs(&pair.search)?, macs(&final_search)?),
        blocks: crate::block_shapes(s, &keep, &masks, &values),
        after_search,
        retrained,
        search_seconds,
        retrain_seconds,
        search_losses,
        peak_rss_bytes: edgeslim_runtime::device::peak_rss_bytes(),
        notes: vec![s.describe()],
    })
}

/// The search: the tracker trainer with the masked trunk in both branches, l1 on the masks,
/// the last epoch kept.
fn search(
    pair: &TrackerPair,
    tr: &Trunk,
    opts: &TrackerSlimOptions,
    masked: &OnnxModel,
    masks: &[Mask],
    work: &Path,
) -> Result<TrackerOutcome> {
    let r = recipe(pair, &tr.config, opts, work)?;
    let mut run = run_options(opts, opts.search_epochs.max(1), r.batch_size);
    run.trunk = Some(masked.clone());
    run.init_weights = vec![pair.template.clone(), pair.search.clone()];
    run.keep_last = true;
    run.no_decay = vec![masks::PREFIX.to_string()];
    if let Some(mlr) = opts.mask_lr {
        run.lr_scale = vec![(masks::PREFIX.to_string(), mlr / opts.lr)];
    }
    // No token masks on a tracker (refused before): their weight does not matter.
    run.sparsity = masks::sparsity_terms(masks, opts.attention_weight, opts.mlp_weight, 0.0);
    let o = edgeslim_train::tracker::train(&r, &run)?;
    if let Some(why) = &o.stopped {
        return Err(Error::Invalid(format!("the mask search stopped: {why}")));
    }
    Ok(o)
}

/// `m` with every initializer that is neither one of `weights` nor a mask moved into a
/// `Constant` node: the engine trains every float initializer, and the attention scale and the
/// reshape shapes `prepare` turned into initializers must stay fixed.
pub fn fixed_as_constants(
    m: &OnnxModel,
    weights: &std::collections::HashSet<String>,
) -> Result<OnnxModel> {
    let mut out = m.clone();
    let fixed: Vec<String> = m
        .graph()
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .filter(|n| !weights.contains(n) && !n.starts_with(masks::PREFIX))
        .collect();
    for name in fixed {
        let Some(t) = out.constant(&name).transpose()? else {
            continue;
        };
        out.graph_mut().initializer.retain(|i| i.name != name);
        let node = edgeslim_onnx::node::make(
            "Constant",
            &[],
            &[&name],
            &name,
            vec![edgeslim_onnx::node::tensor("value", &t)],
        );
        out.graph_mut().node.insert(0, node);
    }
    Ok(out)
}

/// Write a pair the way the trainer does: the pair record dropped first and written last.
pub fn write_pair(dir: &Path, template: &OnnxModel, search: &OnnxModel) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    edgeslim_runtime::track::pair_manifest::begin_write(dir)?;
    let so = edgeslim_onnx::SaveOptions::default();
    template.save(&dir.join("template.onnx"), &so)?;
    search.save(&dir.join("search.onnx"), &so)?;
    edgeslim_runtime::track::pair_manifest::finish_write(dir)?;
    Ok(())
}
