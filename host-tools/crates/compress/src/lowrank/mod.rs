//! Low-rank compression of Linear-like layers, in weight space (truncated SVD) or feature
//! space (PCA of calibrated outputs with the centred bias, calibrated sequentially), the rank
//! analysis behind `edgeslim analyze`, and the surgical rank search (docs/methods/lowrank.md).
//!
//! One job per file: `layers` finds layers and their W, b; `budget` turns budgets into ranks;
//! `svd` and `feature` make factors; `calibration` streams layer outputs into covariances;
//! `rewrite` puts factors into the graph; `search` picks ranks by task metric; `analysis`
//! measures spectra; `report` gathers what a run measured.

pub mod analysis;
pub mod budget;
pub mod calibration;
pub mod feature;
pub mod layers;
pub mod report;
pub mod rewrite;
pub mod search;
pub mod svd;

use crate::{Error, Result};
use edgeslim_data::calib::{Dataset, ModelInput};
use edgeslim_onnx::OnnxModel;
use layers::LinearLayer;
use serde::Serialize;

/// Two factors replacing W (d_out × d_in): x → W1 x (r values) → W2 (·) + bias.
#[derive(Debug, Clone)]
pub struct Factors {
    pub rank: usize,
    /// Row-major r × d_in.
    pub w1: Vec<f64>,
    /// Row-major d_out × r.
    pub w2: Vec<f64>,
    pub bias: Option<Vec<f64>>,
    /// Share of the spectrum's energy (σ² in weight space, output variance in feature space)
    /// the kept directions hold.
    pub kept_energy: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Truncated SVD of the weight (no data).
    Weight,
    /// PCA of the layer's calibrated outputs, centred bias, sequential calibration.
    Feature,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Weight => "weight",
            Method::Feature => "feature",
        }
    }
}

/// How each layer's rank is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankRule {
    /// r = ⌊κ·budget⌋; the layer stays dense when r ≥ κ.
    Budget(f64),
    /// The same rank for every layer, capped at the layer's full rank, decomposed even when
    /// that costs more than W. For checks: at full rank the model must not change.
    Fixed(usize),
}

#[derive(Debug, Clone)]
pub struct CompressOptions {
    pub method: Method,
    pub rule: RankRule,
    /// Only layers whose name or output tensor matches.
    pub layers: Option<regex::Regex>,
}

/// What happened to one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerResult {
    pub name: String,
    pub kind: String,
    pub d_in: usize,
    pub d_out: usize,
    pub kappa: f64,
    pub full_rank: usize,
    /// The rank used; `None` when the layer was left dense.
    pub rank: Option<usize>,
    pub params_before: usize,
    pub params_after: usize,
    /// `decomposed`, `dense` or `skipped`.
    pub status: String,
    pub note: Option<String>,
    pub kept_energy: Option<f64>,
    /// Feature vectors the covariance was estimated from (feature space).
    pub calib_samples: Option<u64>,
}

impl LayerResult {
    fn new(l: &LinearLayer, status: &str, note: Option<String>) -> LayerResult {
        LayerResult {
            name: l.name.clone(),
            kind: l.kind_label(),
            d_in: l.d_in,
            d_out: l.d_out,
            kappa: l.kappa(),
            full_rank: l.full_rank(),
            rank: None,
            params_before: l.params(),
            params_after: l.params(),
            status: status.into(),
            note,
            kept_energy: None,
            calib_samples: None,
        }
    }

    fn decomposed(
        l: &LinearLayer,
        f: &Factors,
        samples: Option<u64>,
        note: Option<String>,
    ) -> LayerResult {
        let bias = f.bias.as_ref().map_or(0, |b| b.len());
        LayerResult {
            rank: Some(f.rank),
            params_after: budget::factor_params(l.d_in, l.d_out, f.rank) + bias,
            kept_energy: Some(f.kept_energy),
            calib_samples: samples,
            ..LayerResult::new(l, "decomposed", note)
        }
    }
}

/// The clean-up every method runs first: Constant weights become initializers (so layers are
/// found), BatchNorm folds into its Conv/Gemm (so the folded weight is what gets decomposed).
/// The input keeps its declared shape: `--input-shape` only sets the shape calibration,
/// evaluation and the benchmark run at ([`edgeslim_data::calib::ModelInput::resolve`]), as in
/// `compress prune`, so a backbone with a dynamic input (PP-OCR det) stays usable at any size.
/// `edgeslim optimize --input-shape` fixes a shape for good.
pub fn prepare(model: &mut OnnxModel) -> Result<()> {
    edgeslim_onnx::optimize::optimize(model, &edgeslim_onnx::optimize::OptimizeOptions::default())?;
    Ok(())
}

/// The layers a run will touch, in graph order, or a clear error when there are none.
pub fn selected_layers(
    model: &OnnxModel,
    pattern: Option<&regex::Regex>,
) -> Result<Vec<LinearLayer>> {
    let all = layers::find_layers(model)?;
    let chosen: Vec<LinearLayer> = layers::select(&all, pattern).into_iter().cloned().collect();
    if chosen.is_empty() {
        let what = match pattern {
            Some(re) => format!(
                " matching the layer pattern '{re}' (the model has {} such layers)",
                all.len()
            ),
            None => String::new(),
        };
        return Err(Error::Invalid(format!(
            "{}: no eligible layers (Gemm, MatMul with a constant weight, Conv){what}",
            model.label()
        )));
    }
    Ok(chosen)
}

/// The rank for a layer under `rule`, or the reason it stays as it is.
/// The reason is boxed: a `LayerResult` is large and this is the common, cheap path.
fn rank_for(l: &LinearLayer, rule: RankRule) -> std::result::Result<usize, Box<LayerResult>> {
    if let Some(why) = &l.not_decomposable {
        return Err(Box::new(LayerResult::new(l, "skipped", Some(why.clone()))));
    }
    match rule {
        RankRule::Fixed(r) => Ok(r.clamp(1, l.full_rank())),
        RankRule::Budget(b) => budget::rank_for_budget(l.d_in, l.d_out, b).ok_or_else(|| {
            Box::new(LayerResult::new(
                l,
                "dense",
                Some(format!(
                    "r = ⌊κ·{b}⌋ reaches κ = {:.2}: factors would not be smaller",
                    l.kappa()
                )),
            ))
        }),
    }
}

/// Compress `model` in place (already `prepare`d). `calib` is needed by the feature method.
/// Warnings (e.g. too few samples for a rank) are returned with the per-layer results.
pub fn compress(
    model: &mut OnnxModel,
    opts: &CompressOptions,
    input: Option<&ModelInput>,
    calib: Option<&Dataset>,
    warnings: &mut Vec<String>,
) -> Result<Vec<LayerResult>> {
    let chosen = selected_layers(model, opts.layers.as_ref())?;
    let data = match opts.method {
        Method::Weight => None,
        Method::Feature => Some(match (input, calib) {
            (Some(i), Some(c)) => (i, c),
            _ => {
                return Err(Error::option(
                    "calib",
                    "the feature-space method needs calibration data",
                ))
            }
        }),
    };
    let mut results = Vec::new();
    let pb = edgeslim_measure::runner::progress_bar(chosen.len(), "layers");
    for l in &chosen {
        pb.inc(1);
        let r = match rank_for(l, opts.rule) {
            Ok(r) => r,
            Err(skip) => {
                results.push(*skip);
                continue;
            }
        };
        let (factors, samples, note) = match data {
            None => (svd::weight_factors(l, r)?, None, None),
            Some((input, calib)) => {
                // Sequential: `model` already holds every upstream layer's factors.
                let cov =
                    calibration::output_covariances(model, input, &[l], calib, &l.name)?.remove(0);
                let spec = cov.spectrum(&format!("layer '{}'", l.name))?;
                let (r, note) = cap_by_samples(l, r, cov.samples, warnings);
                (
                    feature::feature_factors(l, &cov, &spec, r),
                    Some(cov.samples),
                    note,
                )
            }
        };
        rewrite::apply_factors(model, l, &factors)?;
        results.push(LayerResult::decomposed(l, &factors, samples, note));
    }
    pb.finish_and_clear();
    finish_graph(model)?;
    Ok(results)
}

/// N feature vectors span at most N − 1 centred directions: a rank beyond that keeps
/// directions the data never showed (arbitrary eigenvectors of a zero eigenvalue). Lower the
/// rank to N − 1 and say so.
pub fn cap_by_samples(
    l: &LinearLayer,
    r: usize,
    samples: u64,
    warnings: &mut Vec<String>,
) -> (usize, Option<String>) {
    let usable = (samples as usize).saturating_sub(1).max(1);
    // At r = d_out the projection is the identity whatever the data: nothing to lower.
    if r <= usable || r >= l.d_out {
        return (r, None);
    }
    let note = format!(
        "only {samples} calibration feature vectors for rank {r}: their covariance has rank ≤ \
         {usable}, so the rank was lowered to {usable} (give more calibration samples to keep {r})"
    );
    warnings.push(format!("layer '{}': {note}", l.name));
    (usable, Some(note))
}

/// Drop the replaced weights and check the graph.
pub fn finish_graph(model: &mut OnnxModel) -> Result<()> {
    edgeslim_onnx::optimize::dead::remove_dead(model)?;
    model.topo_sort()?;
    model.validate_references()
}
