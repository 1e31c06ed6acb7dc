//! Which nodes are Linear-like layers y = W x + b, and their W and b.
//!
//! - `Gemm` with a constant B (transA = 0): W = alpha·Bᵀ (or alpha·B with transB = 1), b = beta·C
//!   when C is a constant vector of d_out (or [1, d_out], or a scalar).
//! - `MatMul` with a constant 2-D second input [d_in, d_out]: W = Bᵀ, no bias (a following Add
//!   stays where it is; see `feature.rs` for why that changes nothing).
//! - `Conv` with a constant weight [C_out, C_in/g, k…]: W is that weight reshaped to
//!   [C_out, C_in/g·Πk], b the optional bias. Output channel vectors at every position are the
//!   layer's outputs. Grouped convs (depthwise included) are analysed but never decomposed: a
//!   group's factors would need a grouped 1×1 conv per group, which saves nothing on
//!   depthwise layers and is not what the methods describe.

use crate::{Error, Result};
use edgeslim_onnx::node::{attr_f, attr_i, display_name};
use edgeslim_onnx::OnnxModel;
use onnx_protobuf::NodeProto;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    Gemm,
    MatMul,
    /// Spatial kernel size (`[3, 3]`, `[1, 1]`, `[5]`) and group count.
    Conv {
        kernel: Vec<usize>,
        group: usize,
    },
}

#[derive(Debug, Clone)]
pub struct LinearLayer {
    /// The node's display name (name, else first output).
    pub name: String,
    pub op: String,
    pub kind: LayerKind,
    pub input: String,
    /// The tensor the layer writes; what calibration reads and what the factors write again.
    pub output: String,
    pub d_in: usize,
    pub d_out: usize,
    /// Row-major d_out × d_in, in f64 (decompositions run in f64).
    pub weight: Vec<f64>,
    pub bias: Option<Vec<f64>>,
    /// Why this layer is never decomposed (analysis still covers it).
    pub not_decomposable: Option<String>,
}

impl LinearLayer {
    pub fn params(&self) -> usize {
        self.d_in * self.d_out + self.bias.as_ref().map_or(0, |b| b.len())
    }

    /// The rank at which two factors cost as much as W: κ = d_in·d_out/(d_in + d_out).
    pub fn kappa(&self) -> f64 {
        super::budget::kappa(self.d_in, self.d_out)
    }

    pub fn full_rank(&self) -> usize {
        self.d_in.min(self.d_out)
    }

    /// Axis of the output tensor that holds the d_out features (1 for Conv's NCHW, last
    /// otherwise).
    pub fn feature_axis(&self, rank: usize) -> usize {
        match self.kind {
            LayerKind::Conv { .. } => 1,
            _ => rank.saturating_sub(1),
        }
    }

    pub fn kind_label(&self) -> String {
        match &self.kind {
            LayerKind::Gemm => "Gemm".into(),
            LayerKind::MatMul => "MatMul".into(),
            LayerKind::Conv { kernel, group } => {
                let k: Vec<String> = kernel.iter().map(|v| v.to_string()).collect();
                if *group > 1 {
                    format!("Conv {} g{group}", k.join("×"))
                } else {
                    format!("Conv {}", k.join("×"))
                }
            }
        }
    }
}

/// Every Linear-like layer in graph order. Nodes whose weight is not a constant are not
/// layers in this sense and are left out.
pub fn find_layers(model: &OnnxModel) -> Result<Vec<LinearLayer>> {
    let mut out = Vec::new();
    for node in &model.graph().node {
        let layer = match node.op_type.as_str() {
            "Gemm" => gemm(model, node)?,
            "MatMul" => matmul(model, node)?,
            "Conv" => conv(model, node)?,
            _ => None,
        };
        out.extend(layer);
    }
    Ok(out)
}

fn const_f64(
    model: &OnnxModel,
    node: &NodeProto,
    name: &str,
) -> Result<Option<(Vec<usize>, Vec<f64>)>> {
    if name.is_empty() {
        return Ok(None);
    }
    match model.constant(name) {
        None => Ok(None),
        Some(t) => {
            let t = t.map_err(|e| Error::node(node, e.to_string()))?;
            if !t.is_float() {
                return Ok(None);
            }
            Ok(Some((
                t.dims.clone(),
                t.to_f32_vec().into_iter().map(f64::from).collect(),
            )))
        }
    }
}

/// A bias of `d_out` values from a constant of shape [d_out], [1, d_out] or a scalar.
fn bias_vector(dims: &[usize], v: &[f64], d_out: usize, scale: f64) -> Option<Vec<f64>> {
    let n: usize = dims.iter().product();
    if n == 1 {
        return Some(vec![v[0] * scale; d_out]);
    }
    let vector_like = dims.iter().filter(|&&d| d != 1).count() == 1 && n == d_out;
    vector_like.then(|| v.iter().map(|x| x * scale).collect())
}

fn gemm(model: &OnnxModel, node: &NodeProto) -> Result<Option<LinearLayer>> {
    let (Some(a), Some(b)) = (node.input.first(), node.input.get(1)) else {
        return Ok(None);
    };
    let Some((dims, w)) = const_f64(model, node, b)? else {
        return Ok(None);
    };
    if attr_i(node, "transA").unwrap_or(0) != 0 || dims.len() != 2 {
        return Ok(None);
    }
    let alpha = attr_f(node, "alpha").unwrap_or(1.0) as f64;
    let beta = attr_f(node, "beta").unwrap_or(1.0) as f64;
    let trans_b = attr_i(node, "transB").unwrap_or(0) != 0;
    // W is d_out × d_in: B itself with transB, else Bᵀ.
    let (d_out, d_in) = if trans_b {
        (dims[0], dims[1])
    } else {
        (dims[1], dims[0])
    };
    let weight: Vec<f64> = if trans_b {
        w.iter().map(|x| x * alpha).collect()
    } else {
        transpose(&w, d_in, d_out)
            .into_iter()
            .map(|x| x * alpha)
            .collect()
    };
    let mut not_decomposable = None;
    let bias = match node.input.get(2).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match const_f64(model, node, c)? {
            Some((cd, cv)) => {
                let b = bias_vector(&cd, &cv, d_out, beta);
                if b.is_none() {
                    not_decomposable =
                        Some(format!("bias C has shape {cd:?}, not a vector of {d_out}"));
                }
                b
            }
            None => {
                not_decomposable = Some("bias C is not a constant".into());
                None
            }
        },
    };
    Ok(Some(LinearLayer {
        name: display_name(node),
        op: node.op_type.clone(),
        kind: LayerKind::Gemm,
        input: a.clone(),
        output: first_output(node)?,
        d_in,
        d_out,
        weight,
        bias,
        not_decomposable,
    }))
}

fn matmul(model: &OnnxModel, node: &NodeProto) -> Result<Option<LinearLayer>> {
    let (Some(a), Some(b)) = (node.input.first(), node.input.get(1)) else {
        return Ok(None);
    };
    let Some((dims, w)) = const_f64(model, node, b)? else {
        return Ok(None);
    };
    if dims.len() != 2 {
        return Ok(None);
    }
    let (d_in, d_out) = (dims[0], dims[1]);
    Ok(Some(LinearLayer {
        name: display_name(node),
        op: node.op_type.clone(),
        kind: LayerKind::MatMul,
        input: a.clone(),
        output: first_output(node)?,
        d_in,
        d_out,
        weight: transpose(&w, d_in, d_out),
        bias: None,
        not_decomposable: None,
    }))
}

fn conv(model: &OnnxModel, node: &NodeProto) -> Result<Option<LinearLayer>> {
    let (Some(x), Some(wn)) = (node.input.first(), node.input.get(1)) else {
        return Ok(None);
    };
    let Some((dims, w)) = const_f64(model, node, wn)? else {
        return Ok(None);
    };
    if dims.len() < 3 {
        return Ok(None);
    }
    let group = attr_i(node, "group").unwrap_or(1).max(1) as usize;
    let d_out = dims[0];
    let d_in: usize = dims[1..].iter().product();
    let mut not_decomposable = (group > 1)
        .then(|| format!("grouped conv (group = {group}): only group = 1 convs are decomposed"));
    let bias = match node.input.get(2).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match const_f64(model, node, c)? {
            Some((_, v)) if v.len() == d_out => Some(v),
            _ => {
                not_decomposable.get_or_insert_with(|| "bias is not a constant vector".into());
                None
            }
        },
    };
    Ok(Some(LinearLayer {
        name: display_name(node),
        op: node.op_type.clone(),
        kind: LayerKind::Conv {
            kernel: dims[2..].to_vec(),
            group,
        },
        input: x.clone(),
        output: first_output(node)?,
        d_in,
        d_out,
        weight: w,
        bias,
        not_decomposable,
    }))
}

fn first_output(node: &NodeProto) -> Result<String> {
    node.output
        .first()
        .filter(|o| !o.is_empty())
        .cloned()
        .ok_or_else(|| Error::node(node, "has no output"))
}

/// Row-major [rows × cols] → row-major [cols × rows].
pub fn transpose(v: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

/// Select layers by a regular expression on the name (or output tensor name).
pub fn select<'a>(
    layers: &'a [LinearLayer],
    pattern: Option<&regex::Regex>,
) -> Vec<&'a LinearLayer> {
    layers
        .iter()
        .filter(|l| pattern.is_none_or(|re| re.is_match(&l.name) || re.is_match(&l.output)))
        .collect()
}
