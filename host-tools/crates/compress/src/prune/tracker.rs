//! Joint pruning of a Siamese tracker pair (`template.onnx` + `search.onnx`, the zoo's
//! `siamese` family) down to a parameter budget.
//!
//! Why a pair pruner next to the graph pruner: the correlation kernel is a graph *output* of
//! the template graph and a graph *input* of the search graph, so pruning either file alone
//! must keep the backbone's last layer whole (its channels are the interface). Pruning both
//! graphs together removes kernel channels on both sides at once, which is what makes the
//! extreme budgets (down to 1 % of the parameters) reachable.
//!
//! - Channels of `backbone.conv{l}` (l = 1..4) are scored per layer: `l1`/`l2` over the output
//!   filter plus the next layer's input slice, `bn` by |γ| of `backbone.bn{l}`. For the last
//!   layer, `bn` uses γ²·|a| (a = the head's adjust weight of that channel): both the
//!   template and the search features of channel j are scaled by γⱼ and the correlation
//!   multiplies them, so the channel's share of the response scales with γⱼ²·aⱼ.
//! - Budget: either a channel ratio removed from every layer, or a share of the parameters
//!   kept: every layer keeps the same share of its channels (layer-wise thresholds, each
//!   layer at least `min_channels`), the largest share whose search graph fits the budget.
//! - The pruned pair is rebuilt by the family builders at the new widths and filled with the
//!   kept slices of every weight, so the graphs have exactly the zoo's structure and metadata.

use crate::prune::Criterion;
use crate::{Error, Result};
use edgeslim_data::DataSpec;
use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_train::families::siamese::{self, SiameseConfig};
use edgeslim_train::families::FamilySpec;
use edgeslim_train::recipe::Recipe;
use edgeslim_train::tracker::{TrackerOutcome, TrackerRun};
use serde::Serialize;
use std::path::{Path, PathBuf};

mod pretrained;

/// A tracker directory as the runtime reads it.
#[derive(Debug, Clone)]
pub struct TrackerPair {
    pub dir: PathBuf,
    pub template: OnnxModel,
    pub search: OnnxModel,
    pub config: SiameseConfig,
}

/// Is `path` a directory holding a tracker pair?
pub fn is_tracker_dir(path: &Path) -> bool {
    path.is_dir() && path.join("template.onnx").is_file() && path.join("search.onnx").is_file()
}

impl TrackerPair {
    /// Load `dir/template.onnx` and `dir/search.onnx`; the family config comes from the
    /// template's `edgeslim.config` metadata and is checked against the weights.
    pub fn load(dir: &Path) -> Result<TrackerPair> {
        let template_path = dir.join("template.onnx");
        let template = OnnxModel::load(&template_path)?;
        let search = OnnxModel::load(&dir.join("search.onnx"))?;
        let family = template.metadata("edgeslim.family").unwrap_or("");
        if family != "siamese-template" {
            return Err(Error::Invalid(format!(
                "{}: metadata edgeslim.family is '{family}'; the pair pruner needs a tracker made by \
                 `edgeslim train` (family siamese-template). Prune other graphs one file at a time.",
                template_path.display()
            )));
        }
        let config: SiameseConfig = template
            .metadata("edgeslim.config")
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: no edgeslim.config metadata",
                    template_path.display()
                ))
            })
            .and_then(|s| {
                serde_json::from_str(s).map_err(|e| {
                    Error::Invalid(format!("{}: edgeslim.config: {e}", template_path.display()))
                })
            })?;
        config.validate()?;
        let pair = TrackerPair {
            dir: dir.to_path_buf(),
            template,
            search,
            config,
        };
        // The config must describe the weights (a hand-edited file would be sliced wrong).
        if let Some(v) = &pair.config.vit {
            for (name, want) in [
                ("neck.conv.weight", pair.config.widths[3]),
                ("backbone.patch_embed.weight", v.dim),
            ] {
                let dims = pair.weight(name)?.dims;
                if dims.first() != Some(&want) {
                    return Err(Error::tensor(
                        name,
                        format!("shape {dims:?} disagrees with the metadata's width {want}"),
                    ));
                }
            }
            return Ok(pair);
        }
        if pair.config.pretrained.is_some() {
            let dims = pair.weight("neck.conv.weight")?.dims;
            if dims.first() != Some(&pair.config.widths[3]) {
                return Err(Error::tensor(
                    "neck.conv.weight",
                    format!(
                        "shape {dims:?} disagrees with the metadata's correlation width {}",
                        pair.config.widths[3]
                    ),
                ));
            }
            return Ok(pair);
        }
        for l in 1..=4 {
            let dims = pair.weight(&format!("backbone.conv{l}.weight"))?.dims;
            if dims.first() != Some(&pair.config.widths[l - 1]) {
                return Err(Error::tensor(
                    format!("backbone.conv{l}.weight"),
                    format!(
                        "shape {dims:?} disagrees with the metadata widths {:?}",
                        pair.config.widths
                    ),
                ));
            }
        }
        Ok(pair)
    }

    /// A weight by name, from the search graph (it holds the backbone and the head).
    fn weight(&self, name: &str) -> Result<Tensor> {
        let p = self
            .search
            .initializer(name)
            .or_else(|| self.template.initializer(name))
            .ok_or_else(|| Error::tensor(name, format!("missing in {}", self.dir.display())))?;
        Tensor::from_proto(p)
    }

    /// Parameters of the search graph (backbone + head): what the tracker carries.
    pub fn params(&self) -> u64 {
        model_params(&self.search)
    }
}

/// Elements of every initializer (what a pair's size is counted in).
pub fn model_params(m: &OnnxModel) -> u64 {
    m.graph()
        .initializer
        .iter()
        .map(|t| t.dims.iter().product::<i64>().max(0) as u64)
        .sum()
}

/// How much to remove.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrackerBudget {
    /// Remove this fraction of every layer's channels.
    Ratio(f64),
    /// Keep at most this fraction of the parameters.
    KeepParams(f64),
}

#[derive(Debug, Clone)]
pub struct TrackerPruneOptions {
    pub criterion: Criterion,
    pub budget: TrackerBudget,
    pub min_channels: usize,
    /// Round kept channel counts up to a multiple of this (SIMD-friendly widths), capped at
    /// the layer's width.
    pub round_to: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackerPruneSummary {
    pub criterion: String,
    pub widths_before: [usize; 4],
    pub widths_after: [usize; 4],
    pub params_before: u64,
    pub params_after: u64,
    pub params_kept: f64,
    /// Kept channel indices of conv1..conv4 (original numbering); empty for a pretrained
    /// trunk (pruned by the graph pruner's dependency groups).
    pub kept: Vec<Vec<usize>>,
    /// A pretrained trunk's widths (stem, block 1 out, then hidden and out per block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trunk_widths_before: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trunk_widths_after: Option<Vec<usize>>,
}

/// Per-channel scores of `backbone.conv{l}` (higher = more important).
fn layer_scores(pair: &TrackerPair, l: usize, criterion: Criterion) -> Result<Vec<f64>> {
    let w = pair.config.widths[l - 1];
    let norm = |v: f32| -> f64 {
        match criterion {
            Criterion::L2 => (v as f64) * (v as f64),
            _ => (v as f64).abs(),
        }
    };
    match criterion {
        Criterion::L1 | Criterion::L2 => {
            let own = pair.weight(&format!("backbone.conv{l}.weight"))?;
            let own_v = own.to_f32_vec();
            let per_out = own_v.len() / w.max(1);
            let mut s: Vec<f64> = (0..w)
                .map(|j| {
                    own_v[j * per_out..(j + 1) * per_out]
                        .iter()
                        .map(|&v| norm(v))
                        .sum()
                })
                .collect();
            // The consumer's slice: conv{l+1}'s input channel j, or the adjust weight.
            let next = if l < 4 {
                format!("backbone.conv{}.weight", l + 1)
            } else {
                "head.adjust.weight".to_string()
            };
            let nt = pair.weight(&next)?;
            let nv = nt.to_f32_vec();
            let (cout, cin) = (nt.dims[0], nt.dims[1]);
            let k = nv.len() / (cout * cin).max(1);
            for o in 0..cout {
                for (j, sj) in s.iter_mut().enumerate() {
                    let base = (o * cin + j) * k;
                    *sj += nv[base..base + k].iter().map(|&v| norm(v)).sum::<f64>();
                }
            }
            Ok(s)
        }
        Criterion::Bn => {
            let g = pair.weight(&format!("backbone.bn{l}.weight"))?.to_f32_vec();
            if l < 4 {
                return Ok(g.iter().map(|&v| (v as f64).abs()).collect());
            }
            let a = pair.weight("head.adjust.weight")?.to_f32_vec();
            Ok(g.iter()
                .zip(&a)
                .map(|(&gj, &aj)| (gj as f64) * (gj as f64) * (aj as f64).abs())
                .collect())
        }
        other => Err(Error::option_value(
            "criterion",
            other.as_str(),
            "the tracker pair pruner scores with l1, l2 or bn",
        )),
    }
}

/// The `keep` most important channel indices, in their original order.
fn top_channels(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    // Stable on ties: the lower index wins, so results do not depend on sort internals.
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept: Vec<usize> = idx.into_iter().take(keep).collect();
    kept.sort_unstable();
    kept
}

fn widths_at(widths: [usize; 4], share: f64, opts: &TrackerPruneOptions) -> [usize; 4] {
    let step = opts.round_to.max(1);
    widths.map(|w| {
        let k = ((share * w as f64).round() as usize).clamp(opts.min_channels.min(w).max(1), w);
        (k.div_ceil(step) * step).min(w)
    })
}

/// Parameters of a search graph with these widths (built, so the count is the real one).
fn params_for(cfg: &SiameseConfig, widths: [usize; 4]) -> Result<u64> {
    let c = SiameseConfig {
        widths,
        ..cfg.clone()
    };
    Ok(model_params(&siamese::build_search(&c)?))
}

/// The widths a budget gives.
fn plan_widths(pair: &TrackerPair, opts: &TrackerPruneOptions) -> Result<[usize; 4]> {
    let w0 = pair.config.widths;
    match opts.budget {
        TrackerBudget::Ratio(r) => {
            if !(0.0..1.0).contains(&r) {
                return Err(Error::option_value("ratio", r, "must be in [0, 1)"));
            }
            Ok(widths_at(w0, 1.0 - r, opts))
        }
        TrackerBudget::KeepParams(f) => {
            if !(f > 0.0 && f <= 1.0) {
                return Err(Error::option_value("keep_params", f, "must be in (0, 1]"));
            }
            let limit = (f * pair.params() as f64).floor() as u64;
            let floor = widths_at(w0, 0.0, opts);
            let floor_params = params_for(&pair.config, floor)?;
            if floor_params > limit {
                return Err(Error::option_value(
                    "keep_params",
                    f,
                    format!(
                        "{limit} parameters cannot hold the smallest tracker ({floor_params} \
                         parameters with {floor:?} channels: at least {} channels per layer, \
                         rounded to multiples of {})",
                        opts.min_channels, opts.round_to
                    ),
                ));
            }
            // Bisection on the shared channel share; widths are monotone in it.
            let (mut lo, mut hi) = (0.0f64, 1.0f64);
            for _ in 0..40 {
                let mid = 0.5 * (lo + hi);
                if params_for(&pair.config, widths_at(w0, mid, opts))? <= limit {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            Ok(widths_at(w0, lo, opts))
        }
    }
}

/// Select `kept` entries of `t` along `axis`.
fn select_axis(name: &str, t: &Tensor, axis: usize, kept: &[usize]) -> Result<Tensor> {
    let a = t.to_array_f32();
    if axis >= a.ndim() || kept.iter().any(|&k| k >= a.shape()[axis]) {
        return Err(Error::tensor(
            name,
            format!("cannot keep {kept:?} of axis {axis} of {:?}", t.dims),
        ));
    }
    Ok(Tensor::from_array_f32(&a.select(ndarray::Axis(axis), kept)))
}

/// The slice of weight `name` that the kept channels leave.
fn pruned_weight(pair: &TrackerPair, name: &str, kept: &[Vec<usize>]) -> Result<Tensor> {
    let t = pair.weight(name)?;
    let layer = |prefix: &str| -> Option<usize> {
        name.strip_prefix(prefix)?
            .split('.')
            .next()?
            .parse::<usize>()
            .ok()
    };
    if let Some(l) = layer("backbone.conv") {
        let t = select_axis(name, &t, 0, &kept[l - 1])?;
        if name.ends_with(".weight") && l > 1 {
            return select_axis(name, &t, 1, &kept[l - 2]);
        }
        return Ok(t);
    }
    if let Some(l) = layer("backbone.bn") {
        return select_axis(name, &t, 0, &kept[l - 1]);
    }
    match name {
        "head.adjust.weight" => select_axis(name, &t, 1, &kept[3]),
        "head.adjust.bias" => Ok(t),
        _ => Err(Error::tensor(
            name,
            "not a weight of the siamese family; the pair pruner does not know how to slice it",
        )),
    }
}

fn fill(model: &mut OnnxModel, pair: &TrackerPair, kept: &[Vec<usize>]) -> Result<()> {
    let names: Vec<String> = model
        .graph()
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .collect();
    for name in names {
        if name.starts_with("kernel.") {
            continue; // the Reshape's shape constant, built for the new width
        }
        let t = pruned_weight(pair, &name, kept)?;
        model.set_initializer(&name, &t);
    }
    copy_runtime_facts(model, pair);
    Ok(())
}

/// Runtime facts the trainer wrote (normalisation, epoch) travel with the weights.
fn copy_runtime_facts(model: &mut OnnxModel, pair: &TrackerPair) {
    for key in [
        "edgeslim.tracker.mean",
        "edgeslim.tracker.std",
        "edgeslim.tracker.epoch",
    ] {
        if let Some(v) = pair.template.metadata(key) {
            let v = v.to_string();
            model.set_metadata(key, &v);
        }
    }
}

/// Prune the pair; returns the new template and search graphs and what changed.
pub fn prune_pair(
    pair: &TrackerPair,
    opts: &TrackerPruneOptions,
) -> Result<(OnnxModel, OnnxModel, SiameseConfig, TrackerPruneSummary)> {
    if pair.config.vit.is_some() {
        return Err(Error::Invalid(format!(
            "{}: the tracker's backbone is a transformer; the channel pruner follows conv \
             layers. Slim it with `edgeslim compress vit-slim {0}`.",
            pair.dir.display()
        )));
    }
    if pair.config.pretrained.is_some() {
        return pretrained::prune(pair, opts);
    }
    let widths = plan_widths(pair, opts)?;
    let mut kept = Vec::with_capacity(4);
    for l in 1..=4 {
        let s = layer_scores(pair, l, opts.criterion)?;
        kept.push(top_channels(&s, widths[l - 1]));
    }
    let cfg = SiameseConfig {
        widths,
        ..pair.config.clone()
    };
    let mut template = siamese::build_template(&cfg)?;
    let mut search = siamese::build_search(&cfg)?;
    fill(&mut template, pair, &kept)?;
    fill(&mut search, pair, &kept)?;
    let note = format!(
        "pruned from {} with {} to channels {widths:?}",
        pair.dir.display(),
        opts.criterion.as_str()
    );
    for m in [&mut template, &mut search] {
        m.set_metadata("edgeslim.pruned", &note);
    }
    let (pb, pa) = (pair.params(), model_params(&search));
    let summary = TrackerPruneSummary {
        criterion: opts.criterion.as_str().into(),
        widths_before: pair.config.widths,
        widths_after: widths,
        params_before: pb,
        params_after: pa,
        params_kept: pa as f64 / pb.max(1) as f64,
        kept,
        trunk_widths_before: None,
        trunk_widths_after: None,
    };
    Ok((template, search, cfg, summary))
}

/// The zoo recipe, for trackers whose card does not carry the recipe they were trained with.
const ZOO_RECIPE: &str = include_str!("../../../../../models/recipes/siamese-tracker.toml");

/// The recipe the tracker in `dir` was trained with (from its `card.json`), else the zoo's.
pub fn base_recipe(dir: &Path) -> Result<Recipe> {
    let card = dir.join("card.json");
    let from_card = std::fs::read_to_string(&card)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("recipe")?.as_str().map(str::to_string));
    Ok(match from_card {
        Some(text) => Recipe::parse(&text, &card.display().to_string())?,
        None => Recipe::parse(ZOO_RECIPE, "models/recipes/siamese-tracker.toml")?,
    })
}

/// Fine-tuning of a pruned pair on generated tracking pairs, with the recipe its source was
/// trained with (no warm-up: the weights are trained already).
pub struct Finetune<'a> {
    /// The tracker the pair was pruned from (its card gives the recipe).
    pub source: &'a Path,
    pub template: &'a OnnxModel,
    pub search: &'a OnnxModel,
    pub config: &'a SiameseConfig,
    /// Where the trainer writes the fine-tuned pair and its card.
    pub output: &'a Path,
    /// `tracking:SEED`: the pairs.
    pub seed: u64,
    pub epochs: usize,
    pub lr: f64,
    pub command: String,
    pub provenance: Vec<String>,
    pub progress: bool,
}

pub fn finetune(f: &Finetune) -> Result<TrackerOutcome> {
    let mut recipe = base_recipe(f.source)?;
    recipe.name = f
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pruned-tracker".into());
    recipe.output = f.output.to_path_buf();
    recipe.model = FamilySpec::Siamese(f.config.clone());
    recipe.data.spec = DataSpec::Tracking(f.seed);
    recipe.optimizer.lr = f.lr;
    recipe.schedule.warmup_epochs = 0.0;
    let run = TrackerRun {
        command: f.command.clone(),
        progress: f.progress,
        epochs: Some(f.epochs),
        init_weights: vec![f.template.clone(), f.search.clone()],
        provenance: f.provenance.clone(),
        ..TrackerRun::default()
    };
    edgeslim_train::tracker::train(&recipe, &run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoo_like(seed: u64) -> TrackerPair {
        let cfg = SiameseConfig {
            seed,
            ..SiameseConfig::default()
        };
        TrackerPair {
            dir: PathBuf::from("(built)"),
            template: siamese::build_template(&cfg).expect("template"),
            search: siamese::build_search(&cfg).expect("search"),
            config: cfg,
        }
    }

    #[test]
    fn keep_params_budget_is_met_and_tight() {
        let pair = zoo_like(3);
        for f in [0.5, 0.25, 0.1, 0.01] {
            let opts = TrackerPruneOptions {
                criterion: Criterion::L1,
                budget: TrackerBudget::KeepParams(f),
                min_channels: 1,
                round_to: 1,
            };
            let (_, search, cfg, s) = prune_pair(&pair, &opts).expect("prune");
            assert!(s.params_kept <= f, "{f}: kept {}", s.params_kept);
            // One more channel in the widest layer would break the budget or the share.
            assert!(s.params_kept > f * 0.5, "{f}: kept only {}", s.params_kept);
            assert_eq!(model_params(&search), s.params_after);
            assert_eq!(cfg.widths, s.widths_after);
        }
    }

    #[test]
    fn round_to_gives_multiples_within_the_budget() {
        let pair = zoo_like(2);
        let opts = TrackerPruneOptions {
            criterion: Criterion::L2,
            budget: TrackerBudget::KeepParams(0.5),
            min_channels: 1,
            round_to: 8,
        };
        let (_, _, _, s) = prune_pair(&pair, &opts).expect("prune");
        assert!(
            s.widths_after.iter().all(|w| w % 8 == 0),
            "{:?}",
            s.widths_after
        );
        assert!(s.params_kept <= 0.5);
        assert!(s.kept.iter().zip(s.widths_after).all(|(k, w)| k.len() == w));
    }

    #[test]
    fn top_channels_keeps_the_largest_in_order() {
        assert_eq!(top_channels(&[0.1, 3.0, 2.0, 3.0], 2), vec![1, 3]);
        assert_eq!(top_channels(&[1.0, 1.0, 1.0], 2), vec![0, 1]);
    }

    #[test]
    fn impossible_budget_names_the_floor() {
        let pair = zoo_like(1);
        let opts = TrackerPruneOptions {
            criterion: Criterion::Bn,
            budget: TrackerBudget::KeepParams(0.001),
            min_channels: 1,
            round_to: 1,
        };
        let e = prune_pair(&pair, &opts).expect_err("too small").to_string();
        assert!(e.contains("smallest tracker"), "{e}");
    }
}
