//! Calibrated output statistics of layers: run the model (only the part feeding the layers)
//! over the calibration split and stream each layer's output features into a covariance
//! accumulator.
//!
//! `compress` asks for one layer at a time on the partially compressed model (sequential
//! calibration, memory of one layer); `analyze` asks for a group of layers at once on the
//! original model, in groups small enough to bound the d² accumulators.

use super::feature::{CovAccumulator, Covariance};
use super::layers::LinearLayer;
use crate::Result;
use edgeslim_data::calib::{Dataset, ModelInput};
use edgeslim_measure::runner::{progress_bar, Runner};
use edgeslim_onnx::OnnxModel;

/// Covariance of the outputs of each of `layers`, calibrated on `data` through `model`.
pub fn output_covariances(
    model: &OnnxModel,
    input: &ModelInput,
    layers: &[&LinearLayer],
    data: &Dataset,
    what: &str,
) -> Result<Vec<Covariance>> {
    let names: Vec<String> = layers.iter().map(|l| l.output.clone()).collect();
    let runner = Runner::new(model, input, Some(&names))?;
    let mut accs: Vec<CovAccumulator> = layers
        .iter()
        .map(|l| CovAccumulator::new(l.d_out))
        .collect();
    let pb = progress_bar(data.len(), what);
    runner.for_each(data, &pb, |_, outs| {
        for ((acc, layer), out) in accs.iter_mut().zip(layers).zip(&outs) {
            let axis = layer.feature_axis(out.shape.len());
            acc.add_tensor(&out.shape, &out.values, axis, &layer.output)?;
        }
        Ok(())
    })?;
    pb.finish_and_clear();
    Ok(accs.iter().map(|a| a.finish()).collect())
}

/// Split `layers` into groups whose accumulators (d² f64 each) stay under `budget_bytes`.
pub fn groups_within<'a>(
    layers: &[&'a LinearLayer],
    budget_bytes: usize,
) -> Vec<Vec<&'a LinearLayer>> {
    let mut groups: Vec<Vec<&LinearLayer>> = Vec::new();
    let mut used = 0usize;
    for &l in layers {
        let cost = l.d_out * l.d_out * 8;
        if groups.is_empty()
            || (used + cost > budget_bytes && !groups.last().is_some_and(|g| g.is_empty()))
        {
            groups.push(Vec::new());
            used = 0;
        }
        used += cost;
        if let Some(g) = groups.last_mut() {
            g.push(l);
        }
    }
    groups
}
