//! Surgical rank search (SFSD, docs/methods/lowrank.md): walk the layers from the last backwards;
//! for
//! each, try the ranks {1, 0.1κ, …, 1.0κ} from the smallest and keep the first whose task
//! metric on the search split stays ≥ baseline − tolerance; if none does, the layer stays
//! dense. Later layers are compressed first because early layers are the most sensitive.
//!
//! Task metric: accuracy when the search split has labels, else top-1 agreement with the
//! original model (whose baseline is then 1). The caller reports on a disjoint split.
//!
//! In feature space each layer's covariance is taken when the layer is visited: the layers
//! before it are still dense then, so it sees the original activations, as in SFSD.

use super::budget::search_candidates;
use super::layers::LinearLayer;
use super::{calibration, feature, rewrite, svd, Factors, LayerResult, Method};
use crate::{Error, Result};
use edgeslim_data::calib::{Dataset, ModelInput};
use edgeslim_measure::fidelity::{accuracy, argmax};
use edgeslim_measure::runner::{progress_bar, Runner};
use edgeslim_onnx::OnnxModel;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub rank: usize,
    pub metric: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchStep {
    pub layer: String,
    pub trials: Vec<Trial>,
    /// The rank kept, `None` when no candidate held the metric (layer left dense).
    pub chosen: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    pub metric: String,
    pub split: String,
    pub samples: usize,
    pub baseline: f64,
    pub tolerance: f64,
    pub steps: Vec<SearchStep>,
    pub final_metric: f64,
}

pub struct SearchInputs<'a> {
    pub input: &'a ModelInput,
    /// Calibration for feature space.
    pub calib: Option<&'a Dataset>,
    /// The split the metric is measured on while searching.
    pub search: &'a Dataset,
    pub tolerance: f64,
}

/// The task metric of `model` on the search split.
struct Metric<'a> {
    data: &'a Dataset,
    input: &'a ModelInput,
    /// The original's top-1 per sample (agreement mode).
    reference: Option<Vec<usize>>,
}

impl Metric<'_> {
    fn name(&self) -> &'static str {
        if self.reference.is_some() {
            "top-1 agreement with the original"
        } else {
            "accuracy"
        }
    }

    fn eval(&self, model: &OnnxModel) -> Result<f64> {
        let pb = progress_bar(0, "");
        pb.finish_and_clear();
        let outs = Runner::new(model, self.input, None)?.first_outputs(self.data, &pb)?;
        Ok(match (&self.reference, &self.data.labels) {
            (Some(r), _) => {
                let same = outs.iter().zip(r).filter(|(o, &t)| argmax(o) == t).count();
                same as f64 / outs.len().max(1) as f64
            }
            (None, Some(labels)) => accuracy(&outs, labels),
            (None, None) => unreachable!("agreement mode is used without labels"),
        })
    }
}

/// Search ranks for `layers` (graph order) in `model` (already `prepare`d), in place.
pub fn search(
    model: &mut OnnxModel,
    layers: &[LinearLayer],
    method: Method,
    s: &SearchInputs,
) -> Result<(Vec<LayerResult>, SearchReport)> {
    let mut metric = Metric {
        data: s.search,
        input: s.input,
        reference: None,
    };
    if s.search.labels.is_none() {
        let pb = progress_bar(s.search.len(), "original outputs");
        let outs = Runner::new(model, s.input, None)?.first_outputs(s.search, &pb)?;
        pb.finish_and_clear();
        metric.reference = Some(outs.iter().map(|o| argmax(o)).collect());
    }
    let baseline = metric.eval(model)?;
    let target = baseline - s.tolerance;
    let mut steps = Vec::new();
    let mut results = Vec::new();
    let pb = progress_bar(layers.len(), "rank search (last layer first)");
    for l in layers.iter().rev() {
        pb.inc(1);
        if let Some(why) = &l.not_decomposable {
            results.push(LayerResult::new(l, "skipped", Some(why.clone())));
            continue;
        }
        let candidates = search_candidates(l.d_in, l.d_out);
        // Factors for any rank from one decomposition.
        let make: Box<dyn Fn(usize) -> Result<Factors>> = match (method, s.calib) {
            (Method::Weight, _) => {
                let l = l.clone();
                Box::new(move |r| svd::weight_factors(&l, r))
            }
            (Method::Feature, None) => {
                return Err(Error::option(
                    "calib",
                    "the feature-space method needs calibration data",
                ))
            }
            (Method::Feature, Some(calib)) => {
                let cov = calibration::output_covariances(model, s.input, &[l], calib, &l.name)?
                    .remove(0);
                let spec = cov.spectrum(&format!("layer '{}'", l.name))?;
                let l = l.clone();
                Box::new(move |r| Ok(feature::feature_factors(&l, &cov, &spec, r)))
            }
        };
        let mut step = SearchStep {
            layer: l.name.clone(),
            trials: Vec::new(),
            chosen: None,
        };
        for &r in &candidates {
            let f = make(r)?;
            let mut trial = model.clone();
            rewrite::apply_factors(&mut trial, l, &f)?;
            let m = metric.eval(&trial)?;
            step.trials.push(Trial { rank: r, metric: m });
            if m >= target {
                *model = trial;
                step.chosen = Some(r);
                results.push(LayerResult::decomposed(l, &f, None, None));
                break;
            }
        }
        if step.chosen.is_none() {
            let why = if candidates.is_empty() {
                "no candidate rank below κ".to_string()
            } else {
                format!(
                    "no candidate rank kept the {} within {} of the baseline",
                    metric.name(),
                    s.tolerance
                )
            };
            results.push(LayerResult::new(l, "dense", Some(why)));
        }
        steps.push(step);
    }
    pb.finish_and_clear();
    results.reverse();
    let final_metric = metric.eval(model)?;
    super::finish_graph(model)?;
    Ok((
        results,
        SearchReport {
            metric: metric.name().into(),
            split: s.search.name.clone(),
            samples: s.search.len(),
            baseline,
            tolerance: s.tolerance,
            steps,
            final_metric,
        },
    ))
}
