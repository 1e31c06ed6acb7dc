//! Gradient checks: autograd against central finite differences, in f64.
//!
//! The loss is a fixed random projection of every graph output, `L = Σₖ ⟨outₖ, Rₖ⟩`, so
//! every output element matters with a different weight and symmetric errors cannot cancel.
//! Checked: every float graph input and every trainable weight, on up to `max_elems`
//! evenly spread elements of each.

use super::{EngineOptions, GraphModule, Mode};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::input::SplitMix64;

#[derive(Debug, Clone)]
pub struct GradCheckOptions {
    pub mode: Mode,
    /// Finite-difference step.
    pub eps: f64,
    /// Pass when |analytic − numeric| ≤ atol + rtol·max(|analytic|, |numeric|).
    pub rtol: f64,
    pub atol: f64,
    /// Elements checked per tensor.
    pub max_elems: usize,
}

impl Default for GradCheckOptions {
    fn default() -> Self {
        GradCheckOptions {
            mode: Mode::Eval,
            eps: 1e-6,
            rtol: 1e-5,
            atol: 1e-7,
            max_elems: 24,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GradCheckReport {
    /// Number of (tensor, element) pairs compared.
    pub checked: usize,
    /// Largest |a − n| / (atol + rtol·max(|a|, |n|)); ≤ 1 passes.
    pub worst: f64,
    pub worst_at: String,
}

/// Uniform values in [lo, hi) as an f64 tensor, from a seed (reproducible, unlike candle's
/// thread-local generator).
pub fn random(dims: &[usize], seed: u64, lo: f64, hi: f64) -> Tensor {
    let mut r = SplitMix64(seed);
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| lo + (hi - lo) * r.next_f32() as f64)
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).expect("volume matches")
}

fn cerr(e: candle_core::Error) -> Error {
    Error::Other(format!(
        "gradient check: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

fn sample(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        (0..n).collect()
    } else {
        (0..max).map(|i| i * (n - 1) / (max - 1).max(1)).collect()
    }
}

fn with_element(t: &Tensor, i: usize, delta: f64) -> Result<Tensor> {
    let mut v = t
        .flatten_all()
        .and_then(|f| f.to_vec1::<f64>())
        .map_err(cerr)?;
    v[i] += delta;
    Tensor::from_vec(v, t.dims(), t.device()).map_err(cerr)
}

/// Compile `model` in f64 and check its gradients on `inputs`.
pub fn check_model(
    model: &OnnxModel,
    inputs: &[(&str, Tensor)],
    opts: &GradCheckOptions,
) -> Result<GradCheckReport> {
    let m = GraphModule::from_onnx(
        model,
        &EngineOptions {
            dtype: DType::F64,
            require_weights: false,
            ..EngineOptions::default()
        },
    )?;
    check(&m, inputs, opts)
}

/// Check the gradients of an f64 module on `inputs`; an error describes the worst mismatch.
pub fn check(
    m: &GraphModule,
    inputs: &[(&str, Tensor)],
    opts: &GradCheckOptions,
) -> Result<GradCheckReport> {
    if m.dtype() != DType::F64 {
        return Err(Error::Invalid(
            "gradient checks need a module compiled with dtype F64".into(),
        ));
    }
    let inputs: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| {
            let t = if t.dtype().is_float() {
                t.to_dtype(DType::F64).map_err(cerr)?
            } else {
                t.clone()
            };
            Ok((*n, t))
        })
        .collect::<Result<_>>()?;
    const SEED: u64 = 0x5eed;
    let outs = {
        m.set_seed(SEED);
        m.forward(&inputs, opts.mode, &[])?
    };
    let mut names: Vec<&String> = outs.keys().collect();
    names.sort();
    let proj: Vec<(String, Tensor)> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| outs[**n].dtype().is_float())
        .map(|(k, n)| {
            (
                (*n).clone(),
                random(outs[*n].dims(), 100 + k as u64, -1.0, 1.0),
            )
        })
        .collect();
    let loss_of = |ins: &[(&str, Tensor)]| -> Result<Tensor> {
        m.set_seed(SEED);
        let o = m.forward(ins, opts.mode, &[])?;
        let mut total: Option<Tensor> = None;
        for (n, r) in &proj {
            let s = (&o[n] * r).and_then(|p| p.sum_all()).map_err(cerr)?;
            total = Some(match total {
                None => s,
                Some(t) => (t + s).map_err(cerr)?,
            });
        }
        total.ok_or_else(|| Error::Invalid("the graph has no float output".into()))
    };
    let value =
        |ins: &[(&str, Tensor)]| -> Result<f64> { loss_of(ins)?.to_scalar::<f64>().map_err(cerr) };

    // Analytic gradients.
    let vars: Vec<Option<Var>> = inputs
        .iter()
        .map(|(_, t)| {
            t.dtype()
                .is_float()
                .then(|| Var::from_tensor(t))
                .transpose()
        })
        .collect::<candle_core::Result<_>>()
        .map_err(cerr)?;
    let var_inputs: Vec<(&str, Tensor)> = inputs
        .iter()
        .zip(&vars)
        .map(|((n, t), v)| {
            (
                *n,
                v.as_ref()
                    .map(|v| v.as_tensor().clone())
                    .unwrap_or_else(|| t.clone()),
            )
        })
        .collect();
    let grads = m.backward(&loss_of(&var_inputs)?)?;

    let mut report = GradCheckReport {
        checked: 0,
        worst: 0.0,
        worst_at: String::new(),
    };
    let mut compare = |what: String, analytic: &Tensor, numeric: f64, i: usize| -> Result<()> {
        let a = analytic
            .flatten_all()
            .and_then(|f| f.get(i))
            .and_then(|v| v.to_scalar::<f64>())
            .map_err(cerr)?;
        let ratio = (a - numeric).abs() / (opts.atol + opts.rtol * a.abs().max(numeric.abs()));
        report.checked += 1;
        if ratio > report.worst || report.worst_at.is_empty() {
            report.worst = report.worst.max(ratio);
            report.worst_at = format!("{what}[{i}]: analytic {a:.9e}, numeric {numeric:.9e}");
        }
        Ok(())
    };

    for (k, ((name, t), v)) in inputs.iter().zip(&vars).enumerate() {
        let Some(v) = v else { continue };
        let g = match grads.get(v.as_tensor()) {
            Some(g) => g.clone(),
            None => t.zeros_like().map_err(cerr)?,
        };
        for i in sample(t.elem_count(), opts.max_elems) {
            let mut plus = inputs.clone();
            plus[k].1 = with_element(t, i, opts.eps)?;
            let mut minus = inputs.clone();
            minus[k].1 = with_element(t, i, -opts.eps)?;
            let numeric = (value(&plus)? - value(&minus)?) / (2.0 * opts.eps);
            compare(format!("input {name}"), &g, numeric, i)?;
        }
    }
    for (name, v) in m.trainable() {
        let orig = v.as_tensor().copy().map_err(cerr)?;
        let g = match grads.get(v.as_tensor()) {
            Some(g) => g.clone(),
            None => orig.zeros_like().map_err(cerr)?,
        };
        for i in sample(orig.elem_count(), opts.max_elems) {
            v.set(&with_element(&orig, i, opts.eps)?).map_err(cerr)?;
            let lp = value(&inputs)?;
            v.set(&with_element(&orig, i, -opts.eps)?).map_err(cerr)?;
            let lm = value(&inputs)?;
            v.set(&orig).map_err(cerr)?;
            compare(
                format!("weight {name}"),
                &g,
                (lp - lm) / (2.0 * opts.eps),
                i,
            )?;
        }
    }
    if report.worst > 1.0 {
        return Err(Error::Other(format!(
            "gradient check failed ({} elements): worst {}",
            report.checked, report.worst_at
        )));
    }
    Ok(report)
}

/// Test support: a one-node graph `op(inputs…, initializers…)` with float inputs of the given
/// shapes, weights as initializers and one output per `outputs`.
pub fn single_node(
    op: &str,
    inputs: &[(&str, &[usize])],
    inits: &[(&str, edgeslim_onnx::Tensor)],
    attrs: Vec<onnx_protobuf::AttributeProto>,
    outputs: usize,
    opset: i64,
) -> OnnxModel {
    use edgeslim_onnx::builder::GraphBuilder;
    let mut b = GraphBuilder::new(op, opset);
    let mut names: Vec<String> = Vec::new();
    for (n, d) in inputs {
        let dims: Vec<i64> = d.iter().map(|&v| v as i64).collect();
        names.push(b.input(n, &dims));
    }
    for (n, t) in inits {
        names.push(b.init(n, t));
    }
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let outs: Vec<String> = (0..outputs).map(|k| format!("y{k}")).collect();
    let out_refs: Vec<&str> = outs.iter().map(|s| s.as_str()).collect();
    b.node_named(op, &format!("{op}_node"), &refs, &out_refs, attrs);
    for o in &outs {
        b.output(o);
    }
    b.finish()
}

/// Test support: uniform f32 IR tensor in [lo, hi) from a seed.
pub fn random_onnx(dims: &[usize], seed: u64, lo: f32, hi: f32) -> edgeslim_onnx::Tensor {
    let mut r = SplitMix64(seed);
    let n: usize = dims.iter().product();
    let v = (0..n).map(|_| lo + (hi - lo) * r.next_f32()).collect();
    edgeslim_onnx::Tensor::f32(dims.to_vec(), v).expect("volume matches")
}

/// Test support: check a model's gradients with default options, panicking with the worst
/// mismatch.
pub fn assert_grads(model: &OnnxModel, inputs: &[(&str, Tensor)], mode: Mode) -> GradCheckReport {
    let opts = GradCheckOptions {
        mode,
        ..GradCheckOptions::default()
    };
    match check_model(model, inputs, &opts) {
        Ok(r) => {
            assert!(r.checked > 0, "nothing was checked");
            r
        }
        Err(e) => panic!("{e}"),
    }
}
