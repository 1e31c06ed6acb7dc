//! A network's weights as one flat list of tensors (one per weight, in the learner's order):
//! what the inner loop updates in place, what a Hessian-vector product perturbs, and what the
//! meta-gradients are. Every value here is detached.

use crate::{Error, Result};
use edgeslim_train::engine::candle_core::backprop::GradStore;
use edgeslim_train::engine::candle_core::{DType, Tensor, Var};

pub(crate) fn cerr(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!(
        "meta-learning, {what}: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

/// Copies of the variables' current values.
pub fn snapshot(vars: &[Var]) -> Result<Vec<Tensor>> {
    vars.iter()
        .map(|v| {
            v.as_tensor()
                .detach()
                .copy()
                .map_err(|e| cerr("snapshot", e))
        })
        .collect()
}

/// Write `values` into the variables in place (the compiled graph keeps its storage).
pub fn restore(vars: &[Var], values: &[Tensor]) -> Result<()> {
    if vars.len() != values.len() {
        return Err(Error::Invalid(format!(
            "{} values for {} weights",
            values.len(),
            vars.len()
        )));
    }
    for (v, t) in vars.iter().zip(values) {
        v.set(t).map_err(|e| cerr("setting a weight", e))?;
    }
    Ok(())
}

/// `y + a·x`, element by element.
pub fn axpy(a: f64, x: &[Tensor], y: &[Tensor]) -> Result<Vec<Tensor>> {
    x.iter()
        .zip(y)
        .map(|(x, y)| {
            (x.affine(a, 0.0))
                .and_then(|ax| ax + y)
                .map_err(|e| cerr("axpy", e))
        })
        .collect()
}

/// `a·x`.
pub fn scale(a: f64, x: &[Tensor]) -> Result<Vec<Tensor>> {
    x.iter()
        .map(|x| x.affine(a, 0.0).map_err(|e| cerr("scale", e)))
        .collect()
}

/// Σ x·y over every element, in f64.
pub fn dot(x: &[Tensor], y: &[Tensor]) -> Result<f64> {
    let mut s = 0.0;
    for (x, y) in x.iter().zip(y) {
        s += (x * y)
            .and_then(|p| p.sum_all())
            .and_then(|p| p.to_dtype(DType::F64))
            .and_then(|p| p.to_scalar::<f64>())
            .map_err(|e| cerr("dot", e))?;
    }
    Ok(s)
}

pub fn norm(x: &[Tensor]) -> Result<f64> {
    Ok(dot(x, x)?.sqrt())
}

/// The gradient of each variable in `grads` (zeros where the loss does not reach it).
pub fn gradients(grads: &GradStore, vars: &[Var]) -> Result<Vec<Tensor>> {
    vars.iter()
        .map(|v| match grads.get(v.as_tensor()) {
            Some(g) => Ok(g.detach()),
            None => v
                .as_tensor()
                .zeros_like()
                .map_err(|e| cerr("zero gradient", e)),
        })
        .collect()
}

/// The values of a tensor as f32 (any float type).
pub fn to_f32(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| cerr("reading values", e))
}
