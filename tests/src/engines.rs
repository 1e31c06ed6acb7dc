//! Run one model in tract and in ONNX Runtime on the same inputs, and compare the outputs.

use crate::assets;
use edgeslim::engines::ort::OrtSession;
use edgeslim_runtime::input::{tensor_to_f32_vec, SplitMix64};
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use edgeslim_runtime::{LoadOptions, LoadedModel};
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

/// One named input: its dimensions and values.
pub type Input<'a> = (&'a str, Vec<usize>, Vec<f32>);

/// `n` deterministic values in [-1, 1).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64(seed);
    (0..n).map(|_| r.next_f32() * 2.0 - 1.0).collect()
}

/// Run `model` in tract (with these input shapes) and in ONNX Runtime on the same inputs;
/// return both engines' outputs (graph order).
pub fn run_both(model: &Path, inputs: &[Input]) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    assets(); // ONNX Runtime's library comes from the asset cache.
    let opts = LoadOptions {
        input_shapes: inputs
            .iter()
            .map(|(n, d, _)| {
                let dims: Vec<String> = d.iter().map(|v| v.to_string()).collect();
                format!("{n}={}", dims.join(",")).parse().unwrap()
            })
            .collect(),
        ..Default::default()
    };
    let tract = LoadedModel::load(model, &opts).unwrap();
    let tin: Vec<TractTensor> = inputs
        .iter()
        .map(|(_, d, v)| TractTensor::from_shape::<f32>(d, v).unwrap())
        .collect();
    let t_out: Vec<Vec<f32>> = tract
        .run(tin)
        .unwrap()
        .iter()
        .map(|t| tensor_to_f32_vec(t).unwrap())
        .collect();
    let mut ort = OrtSession::load(model, 1).unwrap();
    let oin: Vec<(String, ArrayD<f32>)> = inputs
        .iter()
        .map(|(n, d, v)| {
            (
                n.to_string(),
                ArrayD::from_shape_vec(IxDyn(d), v.clone()).unwrap(),
            )
        })
        .collect();
    let o_out: Vec<Vec<f32>> = ort
        .run(&oin)
        .unwrap()
        .into_iter()
        .map(|(_, a)| a.iter().copied().collect())
        .collect();
    (t_out, o_out)
}

/// max |a − b| / max |b| (the scale floored at 1e-6).
pub fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "output sizes differ");
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max);
    d / b.iter().map(|y| y.abs() as f64).fold(1e-6, f64::max)
}
