//! ViT-Slim (Chavan et al., CVPR 2022; `shared/methods.md` §4) on any ONNX vision transformer:
//!
//! ```text
//! model ─ prepare ─ recognize ─ insert masks (all 1) ─ search: train masks + weights with
//!   l1 on the masks ─ fold masks into weights ─ global threshold per mask type, bisected to
//!   the budget ─ slice physically ─ retrain ─ plain smaller ONNX (no mask left)
//! ```
//!
//! [`recognize`] finds the blocks, [`masks`] inserts and folds the masks, [`budget`] turns mask
//! values into kept channels, [`slice`] cuts the weights, [`run`] is the whole method.

pub mod budget;
pub mod magnitude;
pub mod masks;
pub mod recognize;
pub mod slice;
pub mod tracker;

pub use masks::MaskKind;

use edgeslim_compress::prune::prepare;
use edgeslim_compress::study::budget::BudgetBy;
use edgeslim_onnx::{Error, OnnxModel, Result};
use edgeslim_runtime::InputShape;
use edgeslim_train::{classify, zoo, Distill, FinetuneOptions};
use recognize::VitStructure;
use serde::Serialize;
use slice::Keep;
use std::collections::HashMap;
use std::time::Instant;

/// The paper's l1 weights for DeiT-S (attention 2e-4, MLP 5e-5); heads reuse attention's.
pub const PAPER_ATTENTION_WEIGHT: f64 = 2e-4;
pub const PAPER_MLP_WEIGHT: f64 = 5e-5;
/// The paper's l1 weight of the token masks (on tanh ζ) for DeiT-S.
pub const PAPER_TOKEN_WEIGHT: f64 = 1e-4;

/// How the kept channels are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// ViT-Slim: masks learnt with the weights under l1 (the search).
    Learned,
    /// The baseline: weight magnitudes, no search (same threshold, slicing, retraining).
    Magnitude,
}

impl Selection {
    pub fn as_str(self) -> &'static str {
        match self {
            Selection::Learned => "learned masks (ViT-Slim search)",
            Selection::Magnitude => "weight magnitude (baseline, no search)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct VitSlimOptions {
    pub selection: Selection,
    /// Training data spec (`mnist`, `animal-mnist`, `folder:PATH`).
    pub data: String,
    pub kinds: Vec<MaskKind>,
    pub budget_by: BudgetBy,
    /// Fraction of the original's parameters (or MACs) the result may have.
    pub budget: f64,
    pub search_epochs: usize,
    pub retrain_epochs: usize,
    pub lr: f64,
    /// Learning rate of the masks in the search (`None`: `lr`). A pretrained backbone
    /// fine-tunes at a small rate the masks would hardly move at.
    pub mask_lr: Option<f64>,
    /// l1 weight of the attention masks (head dimensions or heads) and of the MLP masks.
    pub attention_weight: f64,
    pub mlp_weight: f64,
    pub token_weight: f64,
    /// Distil from this model (logit KL, alpha 0.7) besides the labels; `None`: labels only.
    pub teacher: Option<OnnxModel>,
    pub input_shapes: Vec<InputShape>,
    /// Round kept head sizes and MLP widths up to multiples of this (1: no rounding).
    pub round_to: usize,
    pub batch_size: usize,
    /// Cut every epoch to this many batches (quick runs, tests).
    pub max_batches_per_epoch: Option<usize>,
    /// Evaluate on this many held-out samples (a fixed random subset of the split; every
    /// stage sees the same ones) instead of all: a big backbone evaluates at ~20 samples/s.
    pub held_out_cap: Option<usize>,
    pub seed: u64,
    pub threads: usize,
    pub progress: bool,
}

impl Default for VitSlimOptions {
    fn default() -> Self {
        VitSlimOptions {
            selection: Selection::Learned,
            data: "mnist".into(),
            kinds: vec![MaskKind::HeadDims, MaskKind::Mlp],
            budget_by: BudgetBy::Params,
            budget: 0.6,
            search_epochs: 3,
            retrain_epochs: 3,
            lr: 1e-3,
            mask_lr: None,
            attention_weight: PAPER_ATTENTION_WEIGHT,
            mlp_weight: PAPER_MLP_WEIGHT,
            token_weight: PAPER_TOKEN_WEIGHT,
            teacher: None,
            input_shapes: Vec::new(),
            round_to: 1,
            batch_size: 64,
            max_batches_per_epoch: None,
            held_out_cap: None,
            seed: 0,
            threads: 0,
            progress: false,
        }
    }
}

/// One block before and after.
#[derive(Debug, Clone, Serialize)]
pub struct BlockShape {
    pub block: usize,
    pub heads: (usize, usize),
    pub head_dim: (usize, usize),
    pub mlp_units: Option<(usize, usize)>,
    /// Tokens entering the block, before and after.
    pub tokens: (usize, usize),
    /// Sorted mask magnitudes after the search (largest first), per mask type present.
    pub attention_mask: Vec<f32>,
    pub mlp_mask: Vec<f32>,
}

/// Held-out accuracy at each stage.
#[derive(Debug, Clone, Serialize)]
pub struct Accuracies {
    pub original: f64,
    /// The masked model at the end of the search (masks as learnt, nothing removed); `None`
    /// without a search (magnitude selection).
    pub after_search: Option<f64>,
    /// Sliced, before retraining.
    pub sliced: f64,
    pub retrained: f64,
    pub held_out_samples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct VitSlimReport {
    pub selection: Selection,
    pub masks: Vec<MaskKind>,
    pub budget_by: String,
    pub budget: f64,
    /// The kept fraction of every mask type's values that met the budget.
    pub kept_fraction: f64,
    pub params: (u64, u64),
    pub macs: (u64, u64),
    pub blocks: Vec<BlockShape>,
    pub accuracy: Accuracies,
    pub search_seconds: f64,
    pub retrain_seconds: f64,
    pub search_losses: Vec<f64>,
    pub retrain_best_epoch: usize,
    pub stopped: Option<String>,
    /// Peak resident memory of the process after search and retraining.
    pub peak_rss_bytes: Option<u64>,
    /// Filled by the caller that benchmarks the written model next to the original.
    pub latency: Option<Latency>,
    pub notes: Vec<String>,
}

/// tract latency of the original and the slimmed model, timed interleaved in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub threads: usize,
    pub runs: usize,
    pub original_p50_ms: f64,
    pub slim_p50_ms: f64,
    pub original_p90_ms: f64,
    pub slim_p90_ms: f64,
}

pub struct Outcome {
    pub model: OnnxModel,
    pub report: VitSlimReport,
}

fn check(opts: &VitSlimOptions) -> Result<()> {
    if !(opts.budget > 0.0 && opts.budget <= 1.0) {
        return Err(Error::option_value(
            "budget",
            opts.budget,
            "the kept fraction must be in (0, 1]",
        ));
    }
    if opts.selection == Selection::Learned && opts.search_epochs == 0 {
        return Err(Error::option_value(
            "search_epochs",
            0,
            "search at least one epoch",
        ));
    }
    if opts.attention_weight < 0.0 || opts.mlp_weight < 0.0 || opts.token_weight < 0.0 {
        return Err(Error::option("sparsity", "l1 weights cannot be negative"));
    }
    Ok(())
}

/// A model prepared for ViT-Slim: the canonical form, its shapes and its blocks.
pub struct Prepared {
    pub model: OnnxModel,
    pub shapes: HashMap<String, Vec<usize>>,
    pub structure: VitStructure,
}

/// Prepare `model` (lossless clean-up at fixed input shapes) and recognise its blocks.
pub fn prepare_vit(model: &OnnxModel, input_shapes: &[InputShape]) -> Result<Prepared> {
    let mut m = model.clone();
    let (shapes, _) = prepare::prepare(&mut m, input_shapes)?;
    let structure = recognize::recognize(&m, &shapes)?;
    Ok(Prepared {
        model: m,
        shapes,
        structure,
    })
}

fn finetune_options(opts: &VitSlimOptions, epochs: usize, input: &str) -> FinetuneOptions {
    let mut fo = FinetuneOptions {
        epochs,
        lr: opts.lr,
        batch_size: opts.batch_size,
        seed: opts.seed,
        threads: opts.threads,
        progress: opts.progress,
        max_batches_per_epoch: opts.max_batches_per_epoch,
        input: Some(input.to_string()),
        distill: opts.teacher.clone().map(Distill::new),
        stop_on_ctrl_c: true,
        ..FinetuneOptions::default()
    };
    fo.no_decay.push(masks::PREFIX.to_string());
    fo
}

/// Search, slice to the budget, retrain.
pub fn run(model: &OnnxModel, opts: &VitSlimOptions) -> Result<Outcome> {
    check(opts)?;
    let p = prepare_vit(model, &opts.input_shapes)?;
    let s = &p.structure;
    log::info!("{}: {}", model.label(), s.describe());
    let spec: edgeslim_data::DataSpec = opts
        .data
        .parse()
        .map_err(|e: Error| Error::option("data", e.to_string()))?;
    let (input, c, h, w) = classify::image_input(&p.model)?;
    let mut data = zoo::load_data(&spec, Some((c, h, w)), 0.2, opts.seed)?;
    if let Some(n) = opts.held_out_cap.filter(|&n| n < data.held_out.len()) {
        let mut pick = edgeslim_data::shuffled_indices(data.held_out.len(), opts.seed, 0);
        pick.truncate(n.max(1));
        pick.sort_unstable();
        data.held_out = data.held_out.subset(&pick);
    }
    let original = classify::evaluate(&p.model, &data.held_out, 256, opts.threads)?;

    // What stays: learnt masks (the search) or weight magnitudes (the baseline).
    if opts.kinds.contains(&MaskKind::Tokens) {
        tokens_allowed(&p)?;
    }
    let (masked, masks) = masks::insert(&p.model, s, &opts.kinds)?;
    // Threshold to the budget: the count of the sliced model relative to the original's.
    let count = |m: &OnnxModel| opts.budget_by.count(m, &opts.input_shapes);
    let before = count(&p.model)? as f64;
    let fit = |folded: &OnnxModel, values: &masks::MaskValues| {
        budget::fit(s, &masks, values, opts.budget, opts.round_to, |k| {
            Ok(count(&slice::slice(folded, s, k, &p.shapes)?)? as f64 / before)
        })
    };
    // An unreachable budget is refused before the search, not after it.
    fit(&p.model, &masks::ones(&masks))?;
    let Selected {
        values,
        folded,
        after_search,
        losses: search_losses,
        seconds: search_seconds,
    } = match opts.selection {
        Selection::Learned => search(opts, &p, &data, &input, &masked, &masks)?,
        Selection::Magnitude => Selected {
            values: magnitude::scores(&p.model, s, &masks)?,
            folded: p.model.clone(),
            after_search: None,
            losses: Vec::new(),
            seconds: 0.0,
        },
    };

    let (fraction, keep, _) = fit(&folded, &values)?;
    let sliced = slice::slice(&folded, s, &keep, &p.shapes)?;
    let sliced_eval = classify::evaluate(&sliced, &data.held_out, 256, opts.threads)?;

    // Retrain the smaller dense model.
    let t1 = Instant::now();
    let retrained = if opts.retrain_epochs > 0 {
        Some(classify::finetune(
            &sliced,
            &data,
            &finetune_options(opts, opts.retrain_epochs, &input),
        )?)
    } else {
        None
    };
    let retrain_seconds = t1.elapsed().as_secs_f64();
    let (mut model_out, retrained_acc, best_epoch, stopped) = match retrained {
        Some(r) => (r.model, r.best.accuracy, r.best_epoch, r.stopped),
        None => (sliced, sliced_eval.accuracy, 0, None),
    };
    // `prepare` gave every use its own copy of a shared constant; store them once again.
    model_out.share_identical_initializers();
    let shapes_of = |m: &OnnxModel| -> Result<(u64, u64)> {
        Ok((
            BudgetBy::Params.count(m, &opts.input_shapes)?,
            BudgetBy::Macs.count(m, &opts.input_shapes)?,
        ))
    };
    let (p0, m0) = shapes_of(model)?;
    let (p1, m1) = shapes_of(&model_out)?;
    let blocks = block_shapes(s, &keep, &masks, &values);
    Ok(Outcome {
        report: VitSlimReport {
            selection: opts.selection,
            masks: opts.kinds.clone(),
            budget_by: opts.budget_by.as_str().into(),
            budget: opts.budget,
            kept_fraction: fraction,
            params: (p0, p1),
            macs: (m0, m1),
            blocks,
            accuracy: Accuracies {
                original: original.accuracy,
                after_search,
                sliced: sliced_eval.accuracy,
                retrained: retrained_acc,
                held_out_samples: original.samples,
            },
            search_seconds,
            retrain_seconds,
            search_losses,
            retrain_best_epoch: best_epoch,
            stopped,
            peak_rss_bytes: edgeslim_runtime::device::peak_rss_bytes(),
            latency: None,
            notes: vec![s.describe()],
        },
        model: model_out,
    })
}

/// What decides the kept channels: mask values (or magnitude scores), the model they apply to
/// (masks folded in), and the search's figures.
struct Selected {
    values: masks::MaskValues,
    folded: OnnxModel,
    /// Held-out accuracy of the masked model after the search.
    after_search: Option<f64>,
    losses: Vec<f64>,
    seconds: f64,
}

/// The search: masks and weights trained together with l1 on the masks.
fn search(
    opts: &VitSlimOptions,
    p: &Prepared,
    data: &edgeslim_data::SplitData,
    input: &str,
    masked: &OnnxModel,
    masks: &[masks::Mask],
) -> Result<Selected> {
    let mut fo = finetune_options(opts, opts.search_epochs, input);
    fo.keep_last = true;
    if let Some(mlr) = opts.mask_lr {
        fo.lr_scale = vec![(masks::PREFIX.to_string(), mlr / opts.lr)];
    }
    fo.sparsity = masks::sparsity_terms(
        masks,
        opts.attention_weight,
        opts.mlp_weight,
        opts.token_weight,
    );
    let t0 = Instant::now();
    let searched = classify::finetune(masked, data, &fo)?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(why) = &searched.stopped {
        return Err(Error::Invalid(format!("the mask search stopped: {why}")));
    }
    let values = masks::values(&searched.model, masks)?;
    let folded = masks::fold(&searched.model, &p.structure, masks, &values)?;
    let losses = searched
        .history
        .iter()
        .filter(|e| e.epoch > 0)
        .map(|e| e.train_loss)
        .collect();
    Ok(Selected {
        values,
        folded,
        after_search: Some(searched.best.accuracy),
        losses,
        seconds,
    })
}

/// Dropping tokens changes every later tensor's token count: refuse when a graph output
/// carries the tokens (a backbone's token map) or no block shows its residual input.
pub fn tokens_allowed(p: &Prepared) -> Result<()> {
    let Some(first) = p.structure.attentions.first() else {
        return Ok(());
    };
    for o in &p.model.graph().output {
        if let Some(d) = p.shapes.get(&o.name) {
            if d.len() == 3 && d[1] == first.tokens {
                return Err(Error::option_value(
                    "masks",
                    "tokens",
                    format!(
                        "{}: the output '{}' {d:?} carries every token; dropping tokens would change it (token masks are for models that read the class token)",
                        p.model.label(),
                        o.name
                    ),
                ));
            }
        }
    }
    if p.structure
        .attentions
        .iter()
        .all(|a| a.block_input.is_none())
    {
        return Err(Error::option_value(
            "masks",
            "tokens",
            "no block has a residual input ViT-Slim can see",
        ));
    }
    Ok(())
}

/// Per block: heads, head size and MLP units before and after, and the sorted masks.
pub fn block_shapes(
    s: &VitStructure,
    keep: &Keep,
    masks: &[masks::Mask],
    values: &masks::MaskValues,
) -> Vec<BlockShape> {
    let sorted = |kind: fn(MaskKind) -> bool, b: usize| -> Vec<f32> {
        let mut v: Vec<f32> = masks
            .iter()
            .filter(|m| kind(m.kind) && m.block == b)
            .flat_map(|m| values.get(&m.name).cloned().unwrap_or_default())
            .map(f32::abs)
            .collect();
        v.sort_by(|a, b| b.total_cmp(a));
        v
    };
    s.attentions
        .iter()
        .enumerate()
        .map(|(b, a)| BlockShape {
            block: b,
            heads: (a.heads, keep.attentions[b].heads.len()),
            head_dim: (a.head_dim, keep.attentions[b].head_dim()),
            mlp_units: s.mlps.get(b).map(|m| (m.units, keep.mlps[b].len())),
            tokens: (
                a.tokens,
                keep.tokens[b].as_ref().map(|t| t.len()).unwrap_or_else(|| {
                    // Whatever the last pruned block before it kept.
                    keep.tokens[..b]
                        .iter()
                        .rev()
                        .find_map(|t| t.as_ref().map(|t| t.len()))
                        .unwrap_or(a.tokens)
                }),
            ),
            attention_mask: sorted(|k| matches!(k, MaskKind::HeadDims | MaskKind::Heads), b),
            mlp_mask: sorted(|k| k == MaskKind::Mlp, b),
        })
        .collect()
}
