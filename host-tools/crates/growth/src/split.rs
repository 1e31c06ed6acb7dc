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
use edgeslim_train::families::vit::VitConfig;
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

/// A probed tensor: the name of the tensor a zero probe is added to, and its rank.
struct Probe {
    target: String,
    rank: usize,
}

impl Probe {
    fn input(&self) -> String {
        format!("probe.{}", self.target)
    }
}

/// Every block's probes: its MLP activation `[N, T, M]` and its scaled attention scores
/// `[N, H, T, T]` (the softmax's input).
fn block_probes(depth: usize) -> Vec<[Probe; 2]> {
    (0..depth)
        .map(|b| {
            [
                Probe {
                    target: format!("blocks.{b}.mlp.gelu"),
                    rank: 3,
                },
                Probe {
                    target: format!("blocks.{b}.attn.scale"),
                    rank: 4,
                },
            ]
        })
        .collect()
}

/// `model` with a probe input added to every probed tensor (`T` + `probe.T`, which T's
/// readers then read).
fn probed(model: &OnnxModel, probes: &[&Probe]) -> Result<OnnxModel> {
    let mut m = model.clone();
    let g = m.graph_mut();
    for p in probes {
        let act = p.target.clone();
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
        add.input = vec![act.clone(), p.input()];
        add.output = vec![sum.clone()];
        // Right after the tensor's node, so the graph stays topologically sorted.
        let at = g
            .node
            .iter()
            .position(|n| n.output.contains(&act))
            .ok_or_else(|| Error::tensor(&act, "no node makes it"))?;
        g.node.insert(at + 1, add);
        let dims: Vec<D> = (0..p.rank)
            .map(|i| D::Sym(["N", "A", "B", "C"][i]))
            .collect();
        g.input
            .push(value_info(&p.input(), DataType::FLOAT, Some(&dims)));
    }
    Ok(m)
}

/// The second-order statistics of one growth step, averaged over the score batches.
pub struct SplittingMatrices {
    /// `mlp[b][n]`: the splitting matrix of block b's MLP neuron n (`dim × dim`).
    pub mlp: Vec<Vec<Mat<f64>>>,
    /// `attention[b][h]`: B = s·Σ Xᵀ G X for block b's head h (`dim × dim`): s the softmax
    /// scale, X the block's normalised input `[T, dim]`, G = ∂L/∂(scaled scores) `[T, T]`.
    pub attention: Vec<Vec<Mat<f64>>>,
}

/// The splitting matrices of every MLP neuron and the attention matrices of every head of
/// the ViT `cfg` (`model`), averaged over `batches` (image tensor, label tensor) of the mean
/// cross-entropy.
pub fn splitting_matrices(
    model: &OnnxModel,
    cfg: &VitConfig,
    batches: &[(Tensor, Tensor)],
    opts: &EngineOptions,
) -> Result<SplittingMatrices> {
    let depth = cfg.depth;
    let shapes = cfg.block_shapes();
    let probes = block_probes(depth);
    let flat: Vec<&Probe> = probes.iter().flatten().collect();
    let module = GraphModule::from_onnx(&probed(model, &flat)?, opts)?;
    let names: Vec<[String; 3]> = (0..depth)
        .map(|b| {
            [
                format!("blocks.{b}.norm2"),
                format!("blocks.{b}.mlp.fc1"),
                format!("blocks.{b}.norm1"),
            ]
        })
        .collect();
    let mut want: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
    want.extend(flat.iter().map(|p| p.target.as_str()));
    let input = model
        .true_inputs()
        .first()
        .map(|v| v.name.clone())
        .ok_or_else(|| Error::Invalid("the ViT has no input".into()))?;
    let mut mlp: Vec<Vec<Mat<f64>>> = Vec::new();
    let mut attention: Vec<Vec<Mat<f64>>> = Vec::new();
    for (x, y) in batches {
        // A zero probe needs the probed tensor's shape: take it from a pass with
        // one-element probes, which broadcast.
        let plain = probe_shapes(&module, &input, x, &flat, opts.dtype)?;
        let vars: Vec<Var> = plain
            .iter()
            .map(|dims| {
                Tensor::zeros(dims.as_slice(), opts.dtype, x.device())
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(|e| cerr("probe", e))
            })
            .collect::<Result<_>>()?;
        let probe_names: Vec<String> = flat.iter().map(|p| p.input()).collect();
        let mut inputs: Vec<(&str, Tensor)> = vec![(input.as_str(), x.clone())];
        inputs.extend(
            probe_names
                .iter()
                .map(String::as_str)
                .zip(vars.iter().map(|p| p.as_tensor().clone())),
        );
        let out = module.forward(&inputs, Mode::Eval, &want)?;
        let logits = out
            .get("logits")
            .ok_or_else(|| Error::Invalid("the ViT has no output 'logits'".into()))?;
        let grads = module.backward(&cross_entropy(logits, y)?)?;
        let get = |n: &str| {
            out.get(n)
                .ok_or_else(|| Error::Invalid(format!("the ViT has no tensor '{n}'")))
        };
        let grad = |i: usize| {
            grads
                .get(vars[i].as_tensor())
                .ok_or_else(|| Error::Invalid(format!("no gradient reaches {}", flat[i].target)))
        };
        for (b, [norm2, fc1, norm1]) in names.iter().enumerate() {
            let mats = neuron_matrices(get(norm2)?, get(fc1)?, grad(2 * b)?)?;
            let heads = head_matrices(get(norm1)?, grad(2 * b + 1)?, shapes[b].scale)?;
            accumulate(&mut mlp, b, mats);
            accumulate(&mut attention, b, heads);
        }
    }
    let n = batches.len().max(1) as f64;
    for m in mlp.iter_mut().chain(attention.iter_mut()).flatten() {
        *m *= faer::Scale(1.0 / n);
    }
    Ok(SplittingMatrices { mlp, attention })
}

fn accumulate(sums: &mut Vec<Vec<Mat<f64>>>, b: usize, mats: Vec<Mat<f64>>) {
    match sums.get_mut(b) {
        Some(acc) => {
            for (a, s) in acc.iter_mut().zip(mats) {
                *a += s;
            }
        }
        None => sums.push(mats),
    }
}

/// Every MLP neuron's splitting matrix for one batch: Σ ∂L/∂h · σ''(z) · x xᵀ over tokens.
fn neuron_matrices(norm: &Tensor, fc1: &Tensor, grad: &Tensor) -> Result<Vec<Mat<f64>>> {
    let (r, d, xv) = rows(norm, "the MLP's input")?;
    let (_, m, zv) = rows(fc1, "the MLP's pre-activation")?;
    let (_, _, gv) = rows(grad, "activation gradient")?;
    let x = Mat::from_fn(r, d, |i, j| xv[i * d + j]);
    Ok((0..m)
        .map(|n| {
            let xc = Mat::from_fn(r, d, |i, j| {
                let k = i * m + n;
                xv[i * d + j] * gv[k] * gelu_second_derivative(zv[k])
            });
            xc.transpose() * &x
        })
        .collect())
}

/// Every head's B = s·Σ over images of Xᵀ G X for one batch (X `[N, T, d]` the normalised
/// block input, G `[N, H, T, T]` the gradient at the scaled scores).
fn head_matrices(norm: &Tensor, grad: &Tensor, scale: f32) -> Result<Vec<Mat<f64>>> {
    let (n, t, d) = norm.dims3().map_err(|e| cerr("the attention's input", e))?;
    let (_, h, _, _) = grad.dims4().map_err(|e| cerr("the scores' gradient", e))?;
    let (_, _, xv) = rows(norm, "the attention's input")?;
    let (_, _, gv) = rows(grad, "the scores' gradient")?;
    Ok((0..h)
        .map(|head| {
            let mut acc = Mat::<f64>::zeros(d, d);
            for img in 0..n {
                let x = Mat::from_fn(t, d, |i, j| xv[(img * t + i) * d + j]);
                let g = Mat::from_fn(t, t, |i, j| gv[((img * h + head) * t + i) * t + j]);
                acc += x.transpose() * (&g * &x);
            }
            acc * faer::Scale(scale as f64)
        })
        .collect())
}

/// The probed tensors' shapes for the images `x`, from a pass with one-element probes.
fn probe_shapes(
    module: &GraphModule,
    input: &str,
    x: &Tensor,
    probes: &[&Probe],
    dtype: DType,
) -> Result<Vec<Vec<usize>>> {
    let want: Vec<&str> = probes.iter().map(|p| p.target.as_str()).collect();
    let names: Vec<String> = probes.iter().map(|p| p.input()).collect();
    let mut inputs: Vec<(&str, Tensor)> = vec![(input, x.clone())];
    for (p, name) in probes.iter().zip(&names) {
        let one =
            Tensor::zeros(vec![1; p.rank], dtype, x.device()).map_err(|e| cerr("probe", e))?;
        inputs.push((name.as_str(), one));
    }
    let out = module.forward_inference(&inputs, &want)?;
    want.iter()
        .map(|n| {
            out.get(*n)
                .map(|t| t.dims().to_vec())
                .ok_or_else(|| Error::Invalid(format!("the ViT has no tensor '{n}'")))
        })
        .collect()
}

/// A QKV growth unit: one more dimension in every head of a block, along the r-th singular
/// pair of each head's attention matrix B. Splitting an existing dimension j (q and k halved
/// by √2 into two copies, perturbed by ±ε(u, w)) changes the scores by 2ε²(xᵀu)(xᵀw), so the
/// loss by 2ε²·uᵀBw = −2ε²σ_r with w the negated right singular vector: q·k is bilinear, its
/// splitting matrix [[0, B], [Bᵀ, 0]] has the eigenvalues ±σ, and the r-th pair is the r-th
/// best orthogonal direction. `lambda` = −2·Σ over heads σ_r is on the MLP scores' scale:
/// the loss change is (ε²/2)·λ for a perturbation of norm ε per head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QkvScore {
    pub block: usize,
    pub rank: usize,
    pub lambda: f64,
    /// Per head: σ_r and the unit directions for q (u) and k (w), length `dim`.
    #[serde(skip)]
    pub heads: Vec<HeadDirection>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeadDirection {
    pub sigma: f64,
    pub u: Vec<f32>,
    pub w: Vec<f32>,
}

/// One growth step's candidates.
pub struct Scores {
    /// Every MLP neuron: the smallest eigenpair of its splitting matrix.
    pub mlp: Vec<NeuronScore>,
    /// Every block's first `head_dim` QKV units (more would split one dimension twice).
    pub qkv: Vec<QkvScore>,
}

/// Every MLP neuron's and every QKV unit's score for the ViT `cfg` (`model`).
pub fn scores(
    model: &OnnxModel,
    cfg: &VitConfig,
    batches: &[(Tensor, Tensor)],
    opts: &EngineOptions,
) -> Result<Scores> {
    let mats = splitting_matrices(model, cfg, batches, opts)?;
    let mut mlp = Vec::new();
    for (block, ms) in mats.mlp.iter().enumerate() {
        for (neuron, s) in ms.iter().enumerate() {
            let evd = s.self_adjoint_eigen(Side::Lower).map_err(|e| {
                Error::Other(format!(
                    "block {block} neuron {neuron}: the eigen-decomposition did not converge ({e:?})"
                ))
            })?;
            let values = evd.S().column_vector();
            let u = evd.U();
            // faer sorts ascending.
            mlp.push(NeuronScore {
                block,
                neuron,
                lambda: values[0],
                direction: (0..s.nrows()).map(|i| u[(i, 0)] as f32).collect(),
            });
        }
    }
    let shapes = cfg.block_shapes();
    let mut qkv = Vec::new();
    for (block, hs) in mats.attention.iter().enumerate() {
        let svds = hs
            .iter()
            .enumerate()
            .map(|(h, b)| {
                b.svd().map_err(|e| {
                    Error::Other(format!(
                        "block {block} head {h}: the SVD did not converge ({e:?})"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ranks = shapes[block].head_dim.min(cfg.dim);
        for rank in 0..ranks {
            let heads: Vec<HeadDirection> = svds
                .iter()
                .map(|svd| {
                    let (u, v) = (svd.U(), svd.V());
                    // faer sorts the singular values in nonincreasing order.
                    HeadDirection {
                        sigma: svd.S().column_vector()[rank],
                        u: (0..u.nrows()).map(|i| u[(i, rank)] as f32).collect(),
                        w: (0..v.nrows()).map(|i| -v[(i, rank)] as f32).collect(),
                    }
                })
                .collect();
            qkv.push(QkvScore {
                block,
                rank,
                lambda: -2.0 * heads.iter().map(|h| h.sigma).sum::<f64>(),
                heads,
            });
        }
    }
    Ok(Scores { mlp, qkv })
}
