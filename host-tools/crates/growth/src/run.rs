//! `edgeslim grow`: a ViT recipe trained from `start_width` of its QKV and MLP widths in
//! stages of `interval` epochs; between stages, the `grow_per_step` units (MLP neurons and
//! QKV units, see [`crate::split`]) with the most negative splitting eigenvalue per added
//! parameter (only negative ones: a split that would not lower the loss is not made) are
//! split, while the parameters stay within the budget. The baseline (`uniform`)
//! is the widest uniformly scaled ViT within the same budget, trained on the same schedule.
//!
//! Schedule: every stage is a run of the recipe's optimiser (its moments restart with each
//! stage, because the weights change shape); the first stage warms up, the last decays with
//! the recipe's cosine, the ones between run at the recipe's learning rate. The total number
//! of epochs is the recipe's (or `epochs`): growth adds no training iterations.

use crate::grow::grow_step;
use crate::split::{scores, NeuronScore, QkvScore, Scores};
use crate::{Error, Result};
use edgeslim_data::{shuffled_indices, SplitData};
use edgeslim_onnx::OnnxModel;
use edgeslim_train::classify::{finetune, EpochStats, FinetuneOptions};
use edgeslim_train::engine::candle_core::{Device, Tensor};
use edgeslim_train::engine::EngineOptions;
use edgeslim_train::families::vit::{self, BlockShape, VitConfig};
use edgeslim_train::families::FamilySpec;
use edgeslim_train::recipe::Recipe;
use edgeslim_train::zoo::{recipe_options, ClassifierRun};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrowOptions {
    /// The parameter budget (every float weight of the model).
    pub budget_params: u64,
    /// Epochs between growth steps.
    pub interval: usize,
    /// Units (MLP neurons or QKV units) split per growth step (at most).
    pub grow_per_step: usize,
    /// Grow the MLPs only, never the heads (QKV widths stay at the start).
    #[serde(default)]
    pub mlp_only: bool,
    /// What a unit's score is divided by to rank it.
    #[serde(default)]
    pub rank_by: RankBy,
    /// Starting share of the recipe's QKV and MLP widths.
    pub start_width: f64,
    /// The baseline: the widest uniformly scaled ViT within the budget, no growth.
    pub uniform: bool,
    /// Total epochs (default: the recipe's).
    pub epochs: Option<usize>,
    /// Split size ε relative to the neuron's input-weight norm (QKV units: see
    /// [`crate::grow`]).
    pub eps: f64,
    /// Training images the splitting matrices are measured on.
    pub score_images: usize,
    pub threads: usize,
    #[serde(skip)]
    pub progress: bool,
    /// Cut every epoch to this many batches (quick runs).
    pub max_batches_per_epoch: Option<usize>,
}

impl Default for GrowOptions {
    fn default() -> Self {
        GrowOptions {
            budget_params: 0,
            interval: 1,
            grow_per_step: 8,
            mlp_only: false,
            rank_by: RankBy::Params,
            start_width: 0.5,
            uniform: false,
            epochs: None,
            eps: 1e-3,
            score_images: 256,
            threads: 0,
            progress: false,
            max_batches_per_epoch: None,
        }
    }
}

/// One growth step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrowthStep {
    /// Epochs trained before it.
    pub epoch: usize,
    /// The neurons split (block, neuron, eigenvalue).
    pub split: Vec<NeuronScore>,
    /// The QKV units split (block, rank, eigenvalue).
    #[serde(default)]
    pub split_qkv: Vec<QkvScore>,
    /// Neurons whose splitting matrix had a negative eigenvalue.
    pub negative: usize,
    pub params: u64,
    /// MLP width of every block after the step.
    pub mlp: Vec<usize>,
    /// Head width of every block after the step.
    #[serde(default)]
    pub head_dim: Vec<usize>,
    /// Every block's most negative MLP neuron score before the step.
    #[serde(default)]
    pub best_mlp: Vec<f64>,
    /// Every block's most negative QKV unit score before the step (none with `mlp_only`).
    #[serde(default)]
    pub best_qkv: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrowReport {
    pub recipe: String,
    pub method: String,
    pub budget_params: u64,
    /// Width share the run started at (the uniform baseline's chosen width).
    pub width: f64,
    pub start: Vec<BlockShape>,
    pub blocks: Vec<BlockShape>,
    pub params: u64,
    pub held_out_accuracy: f64,
    pub history: Vec<EpochStats>,
    pub steps: Vec<GrowthStep>,
    pub seconds: f64,
    pub options: GrowOptions,
}

/// Parameters of a model: every element of its float initializers.
pub fn param_count(model: &OnnxModel) -> u64 {
    model
        .graph()
        .initializer
        .iter()
        .filter(|t| edgeslim_onnx::tensor::is_float_type(t.data_type))
        .map(|t| t.dims.iter().product::<i64>().max(0) as u64)
        .sum()
}

/// The recipe's ViT with its QKV and MLP widths scaled by `width` (heads kept, each head
/// `round(width · dim/heads)` wide, softmax scale 1/√head size).
pub fn scaled(cfg: &VitConfig, width: f64) -> VitConfig {
    let head = ((cfg.dim / cfg.heads.max(1)) as f64 * width)
        .round()
        .max(1.0) as usize;
    let mlp = (cfg.mlp_hidden() as f64 * width).round().max(1.0) as usize;
    let shape = BlockShape {
        heads: cfg.heads,
        head_dim: head,
        mlp,
        scale: 1.0 / (head as f32).sqrt(),
    };
    VitConfig {
        blocks: Some(vec![shape; cfg.depth]),
        ..cfg.clone()
    }
}

fn vit_config(recipe: &Recipe) -> Result<VitConfig> {
    match recipe.model_spec() {
        FamilySpec::Vit(c) => Ok(c),
        other => Err(Error::Invalid(format!(
            "{}: growth trains a ViT; this recipe's model.family is '{}'",
            recipe.name,
            other.name()
        ))),
    }
}

/// The widest uniform scaling within the budget (bisection on the width share, to 1e-3).
fn widest_uniform(cfg: &VitConfig, budget: u64) -> Result<f64> {
    let fits =
        |w: f64| -> Result<bool> { Ok(param_count(&vit::build(&scaled(cfg, w))?) <= budget) };
    let (mut lo, mut hi) = (0.0, 4.0);
    if !fits(1e-3)? {
        return Err(Error::Invalid(format!(
            "a budget of {budget} parameters holds no uniformly scaled ViT of this recipe"
        )));
    }
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// A stage: the recipe's options for `epochs` epochs, warming up only in the first stage and
/// decaying only in the last, keeping its last weights (the next stage grows them).
fn stage_options(
    recipe: &Recipe,
    opts: &GrowOptions,
    epochs: usize,
    first: bool,
    last: bool,
) -> FinetuneOptions {
    let run = ClassifierRun {
        threads: opts.threads,
        progress: opts.progress,
        max_batches_per_epoch: opts.max_batches_per_epoch,
        ..ClassifierRun::default()
    };
    let mut o = recipe_options(recipe, epochs, &run);
    if !first {
        o.warmup_epochs = 0.0;
    }
    if !last {
        o.min_lr_fraction = 1.0;
    }
    o.keep_last = true;
    o
}

/// Score batches: the first `n` images of a seeded shuffle of the training split.
fn score_batches(data: &SplitData, n: usize, seed: u64) -> Result<Vec<(Tensor, Tensor)>> {
    let idx = shuffled_indices(data.train.len(), seed, 0x5c0e);
    idx[..n.min(idx.len())]
        .chunks(64)
        .map(|c| {
            let b = data.train.batch(c);
            let x = Tensor::from_vec(b.x, b.shape.to_vec(), &Device::Cpu)
                .map_err(|e| Error::Other(format!("score batch: {e}")))?;
            Ok((x, edgeslim_train::classify::labels_tensor(&b.labels)?))
        })
        .collect()
}

/// What one split adds, in parameters or in MACs per image: an MLP neuron and, per head, a
/// QKV unit of a block.
#[derive(Debug, Clone, Copy)]
pub struct SplitCost {
    pub mlp: u64,
    pub qkv_per_head: u64,
}

impl SplitCost {
    /// Parameters: a neuron's fc1 column and bias and fc2 row; per head, a q, k and v column
    /// with biases and an output-projection row.
    pub fn params(cfg: &VitConfig) -> SplitCost {
        let d = cfg.dim as u64;
        SplitCost {
            mlp: 2 * d + 1,
            qkv_per_head: 4 * d + 3,
        }
    }

    /// MACs per image over T tokens: a neuron's fc1 and fc2 (2·T·dim); per head, the q, k, v
    /// and output projections (4·T·dim) and the head's share of Q·Kᵀ and of the
    /// attention-weighted sum (2·T²), which the parameter count does not see.
    pub fn macs(cfg: &VitConfig) -> SplitCost {
        let (d, t) = (cfg.dim as u64, cfg.tokens() as u64);
        SplitCost {
            mlp: 2 * t * d,
            qkv_per_head: 4 * t * d + 2 * t * t,
        }
    }

    fn qkv(&self, heads: usize) -> u64 {
        self.qkv_per_head * heads as u64
    }
}

/// What the scores are divided by to rank the units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RankBy {
    /// Score per added parameter (what the budget counts).
    #[default]
    Params,
    /// Score per added MAC (what the board's latency follows; QKV units cost more at many
    /// tokens).
    Macs,
}

/// What one growth step splits.
#[derive(Debug, Clone, Default)]
pub struct Picks {
    pub mlp: Vec<NeuronScore>,
    pub qkv: Vec<QkvScore>,
}

/// The units to split: the most negative score per `rank` cost first, at most `k`, while
/// their `params` costs fit the budget (a unit that no longer fits is skipped for a cheaper
/// one that does). `heads[b]` is block b's head count.
pub fn choose(
    scores: &Scores,
    k: usize,
    params: u64,
    cost: SplitCost,
    rank: SplitCost,
    heads: &[usize],
    budget: u64,
) -> Picks {
    enum Unit<'a> {
        Mlp(&'a NeuronScore),
        Qkv(&'a QkvScore),
    }
    let heads_of = |b: usize| heads.get(b).copied().unwrap_or(1);
    // (score per rank cost, parameters, unit)
    let mut units: Vec<(f64, u64, Unit)> = scores
        .mlp
        .iter()
        .filter(|s| s.lambda < 0.0)
        .map(|s| (s.lambda / rank.mlp as f64, cost.mlp, Unit::Mlp(s)))
        .chain(scores.qkv.iter().filter(|s| s.lambda < 0.0).map(|s| {
            let h = heads_of(s.block);
            (s.lambda / rank.qkv(h) as f64, cost.qkv(h), Unit::Qkv(s))
        }))
        .collect();
    units.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut room = budget.saturating_sub(params);
    let mut picks = Picks::default();
    for (_, c, unit) in units {
        if picks.mlp.len() + picks.qkv.len() >= k {
            break;
        }
        if c > room {
            continue;
        }
        room -= c;
        match unit {
            Unit::Mlp(s) => picks.mlp.push(s.clone()),
            Unit::Qkv(s) => picks.qkv.push(s.clone()),
        }
    }
    picks
}

/// The smallest score of each of `depth` blocks.
fn best_per_block(scores: impl Iterator<Item = (usize, f64)>, depth: usize) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; depth];
    for (b, l) in scores {
        if let Some(x) = best.get_mut(b) {
            *x = x.min(l);
        }
    }
    best
}

/// Train (and grow) the recipe's ViT; returns the final model and the report.
pub fn grow(
    recipe: &Recipe,
    data: &SplitData,
    opts: &GrowOptions,
) -> Result<(OnnxModel, GrowReport)> {
    let start_time = std::time::Instant::now();
    let base = vit_config(recipe)?;
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if opts.interval == 0 || !positive(opts.start_width) || !(opts.eps == 0.0 || positive(opts.eps))
    {
        return Err(Error::Invalid(format!(
            "growth needs an interval ≥ 1, a start width > 0 and ε ≥ 0 (interval {}, width {}, ε {})",
            opts.interval, opts.start_width, opts.eps
        )));
    }
    let width = if opts.uniform {
        widest_uniform(&base, opts.budget_params)?
    } else {
        opts.start_width
    };
    let mut cfg = scaled(&base, width);
    let mut model = vit::build(&cfg)?;
    let start_params = param_count(&model);
    if start_params > opts.budget_params {
        return Err(Error::Invalid(format!(
            "the ViT at {width} of its width has {start_params} parameters, over the budget of {}",
            opts.budget_params
        )));
    }
    let start = cfg.block_shapes();
    let cost = SplitCost::params(&base);
    let rank = match opts.rank_by {
        RankBy::Params => cost,
        RankBy::Macs => SplitCost::macs(&base),
    };
    let epochs = opts.epochs.unwrap_or(recipe.schedule.epochs).max(1);
    let stages = epochs.div_ceil(opts.interval);
    let (mut history, mut steps) = (Vec::new(), Vec::new());
    let mut done = 0;
    let mut held_out = 0.0;
    for stage in 0..stages {
        let n = opts.interval.min(epochs - done);
        let last = stage + 1 == stages;
        let r = finetune(
            &model,
            data,
            &stage_options(recipe, opts, n, stage == 0, last),
        )?;
        model = r.model;
        held_out = r.history.last().map(|h| h.held_out_accuracy).unwrap_or(0.0);
        history.extend(r.history.into_iter().filter(|h| h.epoch > 0).map(|mut h| {
            h.epoch += done;
            h
        }));
        done += n;
        if let Some(why) = r.stopped {
            return Err(Error::Other(format!(
                "training stopped after {done} epochs: {why}"
            )));
        }
        if last || opts.uniform || opts.grow_per_step == 0 {
            continue;
        }
        let batches = score_batches(data, opts.score_images, recipe.seed ^ done as u64)?;
        let engine = EngineOptions {
            threads: opts.threads,
            ..EngineOptions::default()
        };
        let mut all = scores(&model, &cfg, &batches, &engine)?;
        if opts.mlp_only {
            all.qkv.clear();
        }
        let heads: Vec<usize> = cfg.block_shapes().iter().map(|b| b.heads).collect();
        let params = param_count(&model);
        let picks = choose(
            &all,
            opts.grow_per_step,
            params,
            cost,
            rank,
            &heads,
            opts.budget_params,
        );
        if !picks.mlp.is_empty() || !picks.qkv.is_empty() {
            let (m, c) = grow_step(&model, &cfg, &picks.mlp, &picks.qkv, opts.eps)?;
            model = m;
            cfg = c;
        }
        let shapes = cfg.block_shapes();
        let qkv_blocks = if all.qkv.is_empty() { 0 } else { cfg.depth };
        steps.push(GrowthStep {
            epoch: done,
            negative: all.mlp.iter().filter(|s| s.lambda < 0.0).count(),
            split: picks.mlp,
            split_qkv: picks.qkv,
            params: param_count(&model),
            mlp: shapes.iter().map(|b| b.mlp).collect(),
            head_dim: shapes.iter().map(|b| b.head_dim).collect(),
            best_mlp: best_per_block(all.mlp.iter().map(|s| (s.block, s.lambda)), cfg.depth),
            best_qkv: best_per_block(all.qkv.iter().map(|s| (s.block, s.lambda)), qkv_blocks),
        });
    }
    let params = param_count(&model);
    model.set_metadata("edgeslim.family", "vit");
    model.set_metadata(
        "edgeslim.config",
        &serde_json::to_string(&cfg).map_err(|e| Error::Other(e.to_string()))?,
    );
    Ok((
        model,
        GrowReport {
            recipe: recipe.name.clone(),
            method: if opts.uniform { "uniform" } else { "grown" }.into(),
            budget_params: opts.budget_params,
            width,
            start,
            blocks: cfg.block_shapes(),
            params,
            held_out_accuracy: held_out,
            history,
            steps,
            seconds: start_time.elapsed().as_secs_f64(),
            options: opts.clone(),
        },
    ))
}
