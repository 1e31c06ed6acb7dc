//! Splitting matrices (Liu et al., "Splitting steepest descent"). An MLP neuron computes
//! h = σ(wᵀx) and the loss reads it through the rest of the network. Replacing it by two
//! neurons with input weights w ± εv, each with half its output weights, changes the loss by
//! (ε²/2)·vᵀSv + O(ε⁴), with the splitting matrix
//!
//! S = Σ over tokens and images of ∂L/∂h · σ''(wᵀx) · x xᵀ
//!
//! (x the block's normalised input, σ'' of the exact GELU = φ(z)(2 − z²)). When S has a
//! negative eigenvalue, splitting along its eigenvector lowers the loss at second order; the
//! smallest eigenvalue is the neuron's score (the more negative, the more it gains).
//!
//! ∂L/∂h is read from a probe: the scoring graph adds a zero tensor to every MLP's activation,
//! fed as a variable, and the gradient of a variable is what the engine's backward pass keeps.

use crate::{Error, Result};
use edgeslim_onnx::builder::{value_info, D};
use edgeslim_onnx::OnnxModel;
use edgeslim_train::engine::candle_core::{DType, Tensor, Var};
use edgeslim_train::engine::loss::cross_entropy;
use edgeslim_train::engine::EngineOptions;
use edgeslim_train::engine::{GraphModule, Mode};
use onnx_protobuf::tensor_proto::DataType;

use faer::{Mat, Side};
use serde::{Deserialize, Serialize};

/// A neuron's splitting score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronScore {
    pub block: usize,
    pub neuron: usize,
    /// Smallest eigenvalue of the splitting matrix.
    pub lambda: f64,
    /// Its unit eigenvector (the split direction), length `dim`.
    #[serde(skip)]
    pub direction: Vec<f32>,
}

fn cerr(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!(
        "splitting scores, {what}: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

/// σ'' of the exact GELU z·Φ(z).
pub fn gelu_second_derivative(z: f64) -> f64 {
    let phi = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    phi * (2.0 - z * z)
}

fn rows(t: &Tensor, what: &str) -> Result<(usize, usize, Vec<f64>)> {
    let d = t.dims();
    let cols = *d
        .last()
        .ok_or_else(|| Error::Invalid(format!("{what}: a scalar")))?;
    let v: Vec<f64> = t
        .to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .map_err(|e| cerr(what, e))?;
    Ok((v.len() / cols.max(1), cols, v))
}

/// The name of block `b`'s probe input.
fn probe(b: usize) -> String {
    format!("probe.{b}")
}

/// `model` with a probe input added to every MLP activation (`blocks.{b}.mlp.gelu` +
/// `probe.{b}`, which the MLP's second layer then reads).
pub fn probed(model: &OnnxModel, depth: usize) -> Result<OnnxModel> {
    let mut m = model.clone();
    let g = m.graph_mut();
    for b in 0..depth {
        let act = format!("blocks.{b}.mlp.gelu");
        let sum = format!("{act}.probed");
        let readers: Vec<usize> = (0..g.node.len())
            .filter(|&i| g.node[i].input.contains(&act))
            .collect();
        if readers.is_empty() {
            return Err(Error::tensor(
                &act,
                "no node reads it: not an edgeslim ViT block",
            ));
        }
        for i in readers {
            for x in g.node[i].input.iter_mut().filter(|x| **x == act) {
                *x = sum.clone();
            }
        }
        let mut add = onnx_protobuf::NodeProto::new();
        add.op_type = "Add".into();
        add.name = sum.clone();
        add.input = vec![act.clone(), probe(b)];
        add.output = vec![sum.clone()];
        // Right after the activation's node, so the graph stays topologically sorted.
        let at = g
            .node
            .iter()
            .position(|n| n.output.contains(&act))
            .ok_or_else(|| Error::tensor(&act, "no node makes it"))?;
        g.node.insert(at + 1, add);
        g.input.push(value_info(
            &probe(b),
            DataType::FLOAT,
            Some(&[D::Sym("N"), D::Sym("T"), D::Sym("M")]),
        ));
    }
    Ok(m)
}

/// The splitting matrices of every MLP neuron of blocks `0..depth` of `model`, averaged over
/// `batches` (image tensor, label tensor) of the mean cross-entropy.
pub fn splitting_matrices(
    model: &OnnxModel,
    depth: usize,
    batches: &[(Tensor, Tensor)],
    opts: &EngineOptions,
) -> Result<Vec<Vec<Mat<f64>>>> {
    let module = GraphModule::from_onnx(&probed(model, depth)?, opts)?;
    let names: Vec<[String; 2]> = (0..depth)
        .map(|b| [format!("blocks.{b}.norm2"), format!("blocks.{b}.mlp.fc1")])
        .collect();
    let want: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
    let input = model
        .true_inputs()
        .first()
        .map(|v| v.name.clone())
        .ok_or_else(|| Error::Invalid("the ViT has no input".into()))?;
    let mut sums: Vec<Vec<Mat<f64>>> = Vec::with_capacity(depth);
    for (x, y) in batches {
        // The activations' shapes from a pass with zero probes of any shape would need the
        // shapes first: take them from fc1's weight and the token count of a plain pass.
        let plain = module_shapes(&module, &input, x, depth, opts.dtype)?;
        let probes: Vec<Var> = plain
            .iter()
            .map(|dims| {
                Tensor::zeros(dims.as_slice(), opts.dtype, x.device())
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(|e| cerr("probe", e))
            })
            .collect::<Result<_>>()?;
        let probe_names: Vec<String> = (0..depth).map(probe).collect();
        let mut inputs: Vec<(&str, Tensor)> = vec![(input.as_str(), x.clone())];
        inputs.extend(
            probe_names
                .iter()
                .map(String::as_str)
                .zip(probes.iter().map(|p| p.as_tensor().clone())),
        );
        let out = module.forward(&inputs, Mode::Eval, &want)?;
        let logits = out
            .get("logits")
            .ok_or_else(|| Error::Invalid("the ViT has no output 'logits'".into()))?;
        let grads = module.backward(&cross_entropy(logits, y)?)?;
        for (b, [norm, fc1]) in names.iter().enumerate() {
            let get = |n: &str| {
                out.get(n)
                    .ok_or_else(|| Error::Invalid(format!("the ViT has no tensor '{n}'")))
            };
            let (r, d, xv) = rows(get(norm)?, norm)?;
            let (_, m, zv) = rows(get(fc1)?, fc1)?;
            let g = grads
                .get(probes[b].as_tensor())
                .ok_or_else(|| Error::Invalid(format!("no gradient reaches block {b}'s MLP")))?;
            let (_, _, gv) = rows(g, "activation gradient")?;
            let x = Mat::from_fn(r, d, |i, j| xv[i * d + j]);
            let mats: Vec<Mat<f64>> = (0..m)
                .map(|n| {
                    let xc = Mat::from_fn(r, d, |i, j| {
                        let k = i * m + n;
                        xv[i * d + j] * gv[k] * gelu_second_derivative(zv[k])
                    });
                    xc.transpose() * &x
                })
                .collect();
            match sums.get_mut(b) {
                Some(acc) => {
                    for (a, s) in acc.iter_mut().zip(mats) {
                        *a += s;
                    }
                }
                None => sums.push(mats),
            }
        }
    }
    let n = batches.len().max(1) as f64;
    for block in &mut sums {
        for s in block.iter_mut() {
            *s *= faer::Scale(1.0 / n);
        }
    }
    Ok(sums)
}

/// The shape of every block's MLP activation for the images `x` (a pass with zero probes
/// needs them): `[N, tokens, mlp]` from fc1's output of a pass with one-element probes,
/// which broadcast.
fn module_shapes(
    module: &GraphModule,
    input: &str,
    x: &Tensor,
    depth: usize,
    dtype: DType,
) -> Result<Vec<Vec<usize>>> {
    let names: Vec<String> = (0..depth).map(|b| format!("blocks.{b}.mlp.fc1")).collect();
    let want: Vec<&str> = names.iter().map(String::as_str).collect();
    let zero = Tensor::zeros((1, 1, 1), dtype, x.device()).map_err(|e| cerr("probe", e))?;
    let probe_names: Vec<String> = (0..depth).map(probe).collect();
    let mut inputs: Vec<(&str, Tensor)> = vec![(input, x.clone())];
    inputs.extend(probe_names.iter().map(|p| (p.as_str(), zero.clone())));
    let out = module.forward_inference(&inputs, &want)?;
    names
        .iter()
        .map(|n| {
            out.get(n)
                .map(|t| t.dims().to_vec())
                .ok_or_else(|| Error::Invalid(format!("the ViT has no tensor '{n}'")))
        })
        .collect()
}

/// Every MLP neuron's score: the smallest eigenpair of its splitting matrix.
pub fn scores(
    model: &OnnxModel,
    depth: usize,
    batches: &[(Tensor, Tensor)],
    opts: &EngineOptions,
) -> Result<Vec<NeuronScore>> {
    let mats = splitting_matrices(model, depth, batches, opts)?;
    let mut out = Vec::new();
    for (block, ms) in mats.iter().enumerate() {
        for (neuron, s) in ms.iter().enumerate() {
            let evd = s.self_adjoint_eigen(Side::Lower).map_err(|e| {
                Error::Other(format!(
                    "block {block} neuron {neuron}: the eigen-decomposition did not converge ({e:?})"
                ))
            })?;
            let values = evd.S().column_vector();
            let u = evd.U();
            // faer sorts ascending.
            out.push(NeuronScore {
                block,
                neuron,
                lambda: values[0],
                direction: (0..s.nrows()).map(|i| u[(i, 0)] as f32).collect(),
            });
        }
    }
    Ok(out)
}
