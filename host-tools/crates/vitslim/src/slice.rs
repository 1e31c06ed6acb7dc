//! Physical slicing: the kept heads, head dimensions and MLP units become a smaller dense ViT
//! (fewer q/k/v columns, fewer output-projection and second-layer rows, reshape targets and
//! splits for the new head count and size). The softmax scale is left as it was, so a sliced
//! model computes exactly what the unsliced one computes with the removed channels' masks at
//! zero.

use crate::masks::scale_axis;
use crate::recognize::{Linear, Qkv, VitStructure};
use edgeslim_onnx::node::display_name;
use edgeslim_onnx::{Error, OnnxModel, Result, Tensor};
use serde::Serialize;
use std::collections::HashMap;

/// What one attention keeps: heads (indices into the original heads), each with the same
/// number of dimensions (indices within the head).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionKeep {
    pub heads: Vec<(usize, Vec<usize>)>,
}

impl AttentionKeep {
    pub fn all(heads: usize, head_dim: usize) -> AttentionKeep {
        AttentionKeep {
            heads: (0..heads).map(|h| (h, (0..head_dim).collect())).collect(),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.heads.first().map(|(_, d)| d.len()).unwrap_or(0)
    }

    /// Kept channels of the `[.., H·dh]` layout, in order.
    pub fn channels(&self, head_dim: usize) -> Vec<usize> {
        self.heads
            .iter()
            .flat_map(|(h, dims)| dims.iter().map(move |d| h * head_dim + d))
            .collect()
    }
}

/// What a whole model keeps, one entry per attention and per MLP of the structure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Keep {
    pub attentions: Vec<AttentionKeep>,
    pub mlps: Vec<Vec<usize>>,
    /// Per attention block: the tokens (original positions, the class token 0 first) its
    /// input keeps, each a subset of the previous block's; `None`: all that reach it.
    pub tokens: Vec<Option<Vec<usize>>>,
}

impl Keep {
    pub fn all(s: &VitStructure) -> Keep {
        Keep {
            attentions: s
                .attentions
                .iter()
                .map(|a| AttentionKeep::all(a.heads, a.head_dim))
                .collect(),
            mlps: s.mlps.iter().map(|m| (0..m.units).collect()).collect(),
            tokens: vec![None; s.attentions.len()],
        }
    }
}

/// Keep `keep` of `t` along `axis`.
fn select_axis(m: &mut OnnxModel, name: &str, axis: usize, keep: &[usize]) -> Result<()> {
    let t = m
        .constant(name)
        .ok_or_else(|| Error::tensor(name, "expected a constant weight"))??;
    let c = *t
        .dims
        .get(axis)
        .ok_or_else(|| Error::tensor(name, format!("no axis {axis} in {:?}", t.dims)))?;
    if let Some(bad) = keep.iter().find(|&&k| k >= c) {
        return Err(Error::tensor(
            name,
            format!("channel {bad} out of {c} on axis {axis}"),
        ));
    }
    let outer: usize = t.dims[..axis].iter().product();
    let inner: usize = t.dims[axis + 1..].iter().product();
    let v = t.to_f32_vec();
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let start = (o * c + k) * inner;
            out.extend_from_slice(&v[start..start + inner]);
        }
    }
    let mut dims = t.dims.clone();
    dims[axis] = keep.len();
    m.set_initializer(name, &Tensor::f32(dims, out)?);
    Ok(())
}

fn slice_linear(m: &mut OnnxModel, l: &Linear, keep: &[usize], outputs: bool) -> Result<()> {
    if outputs {
        select_axis(m, &l.weight, l.out_axis, keep)?;
        if let Some(b) = &l.bias {
            select_axis(m, b, 0, keep)?;
        }
        Ok(())
    } else {
        select_axis(m, &l.weight, l.in_axis(), keep)
    }
}

fn node_index(m: &OnnxModel, name: &str) -> Result<usize> {
    m.graph()
        .node
        .iter()
        .position(|n| display_name(n) == name)
        .ok_or_else(|| Error::Graph(format!("node '{name}' is gone (a ViT-Slim bug)")))
}

/// Point reshape `node` at a fresh constant target: the leading `copy` axes copied from the
/// input (0), then `tail`.
fn set_reshape_target(m: &mut OnnxModel, node: &str, copy: usize, tail: &[usize]) -> Result<()> {
    let i = node_index(m, node)?;
    let mut target = vec![0i64; copy];
    target.extend(tail.iter().map(|&d| d as i64));
    let name = m.fresh_name(&format!("{node}.vitslim_shape"));
    m.set_initializer(&name, &Tensor::i64(vec![target.len()], target)?);
    m.graph_mut().node[i].input[1] = name;
    Ok(())
}

/// The kept columns of a fused q/k/v projection: the kept channels in each of its 3 parts.
fn fused_channels(channels: &[usize], width: usize) -> Vec<usize> {
    (0..3)
        .flat_map(|p| channels.iter().map(move |c| p * width + c))
        .collect()
}

/// How many leading axes (batch, tokens) a head reshape copies from its input: all but the
/// head axes it makes (`[B, N, H, dh]`, `[B, N, 3, H, dh]`) or merges (`[B, N, H·dh]`).
fn lead_axes(m: &OnnxModel, node: &str, shapes: &HashMap<String, Vec<usize>>) -> Result<usize> {
    let n = &m.graph().node[node_index(m, node)?];
    let out = shapes
        .get(&n.output[0])
        .ok_or_else(|| Error::node(n, "no inferred shape"))?;
    Ok(out.len().saturating_sub(match out.len() {
        5 => 3,
        4 => 2,
        _ => 1,
    }))
}

/// The sliced model. `model` is the unmasked prepared model (or [`crate::masks::fold`]'s
/// output); `shapes` its tensor shapes.
pub fn slice(
    model: &OnnxModel,
    s: &VitStructure,
    keep: &Keep,
    shapes: &HashMap<String, Vec<usize>>,
) -> Result<OnnxModel> {
    let mut m = model.clone();
    for (a, k) in s.attentions.iter().zip(&keep.attentions) {
        let (h2, d2) = (k.heads.len(), k.head_dim());
        if h2 == 0 || d2 == 0 || k.heads.iter().any(|(_, d)| d.len() != d2) {
            return Err(Error::Invalid(format!(
                "attention '{}': every kept head must keep the same number (≥ 1) of dimensions",
                a.softmax
            )));
        }
        let ch = k.channels(a.head_dim);
        let width = a.width();
        match &a.qkv {
            Qkv::Separate {
                q,
                k: kk,
                v,
                reshapes,
            } => {
                for l in [q, kk, v] {
                    slice_linear(&mut m, l, &ch, true)?;
                }
                for r in reshapes {
                    let c = lead_axes(&m, r, shapes)?;
                    set_reshape_target(&mut m, r, c, &[h2, d2])?;
                }
            }
            Qkv::FusedSplit {
                linear,
                split,
                reshapes,
            } => {
                slice_linear(&mut m, linear, &fused_channels(&ch, width), true)?;
                let i = node_index(&m, split)?;
                let sizes = vec![(h2 * d2) as i64; 3];
                let n = &m.graph().node[i];
                if n.input.len() > 1 && !n.input[1].is_empty() {
                    let name = m.fresh_name(&format!("{split}.vitslim_sizes"));
                    m.set_initializer(&name, &Tensor::i64(vec![3], sizes)?);
                    m.graph_mut().node[i].input[1] = name;
                } else if n.attribute.iter().any(|x| x.name == "split") {
                    let n = &mut m.graph_mut().node[i];
                    edgeslim_onnx::node::set_attr(n, edgeslim_onnx::node::ints("split", &sizes));
                }
                for r in reshapes {
                    let c = lead_axes(&m, r, shapes)?;
                    set_reshape_target(&mut m, r, c, &[h2, d2])?;
                }
            }
            Qkv::FusedHeads { linear, reshape } => {
                slice_linear(&mut m, linear, &fused_channels(&ch, width), true)?;
                let c = lead_axes(&m, reshape, shapes)?;
                set_reshape_target(&mut m, reshape, c, &[3, h2, d2])?;
            }
        }
        slice_linear(&mut m, &a.proj, &ch, false)?;
        let c = lead_axes(&m, &a.merge, shapes)?;
        set_reshape_target(&mut m, &a.merge, c, &[h2 * d2])?;
    }
    for (mlp, k) in s.mlps.iter().zip(&keep.mlps) {
        if k.is_empty() {
            return Err(Error::Invalid(format!(
                "MLP '{}': at least one unit must stay",
                mlp.fc1.node
            )));
        }
        slice_linear(&mut m, &mlp.fc1, k, true)?;
        slice_linear(&mut m, &mlp.fc2, k, false)?;
    }
    drop_tokens(&mut m, s, keep)?;
    m.topo_sort()?;
    edgeslim_onnx::optimize::dead::remove_dead(&mut m)?;
    m.validate_references()?;
    Ok(m)
}

/// A `Gather` on the token axis at each block input whose kept tokens differ from what
/// reaches it (positions relative to the sequence that arrives there).
fn drop_tokens(m: &mut OnnxModel, s: &VitStructure, keep: &Keep) -> Result<()> {
    let mut current: Option<Vec<usize>> = None;
    for (a, k) in s.attentions.iter().zip(&keep.tokens) {
        let (Some(k), Some(x)) = (k, &a.block_input) else {
            continue;
        };
        let arriving: Vec<usize> = current.clone().unwrap_or_else(|| (0..a.tokens).collect());
        if *k == arriving {
            continue;
        }
        let rel: Vec<i64> = k
            .iter()
            .map(|t| {
                arriving.iter().position(|p| p == t).map(|p| p as i64).ok_or_else(|| {
                    Error::Invalid(format!(
                        "attention '{}': token {t} is kept but an earlier block dropped it (token masks must be monotone)",
                        a.softmax
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let idx = m.fresh_name(&format!("{x}.kept_tokens"));
        m.set_initializer(&idx, &Tensor::i64(vec![rel.len()], rel)?);
        let out = m.fresh_name(&format!("{x}.tokens"));
        m.replace_uses(x, &out);
        let node = edgeslim_onnx::node::make(
            "Gather",
            &[x, &idx],
            &[&out],
            &out,
            vec![edgeslim_onnx::node::int("axis", 1)],
        );
        m.graph_mut().node.push(node);
        current = Some(k.clone());
    }
    Ok(())
}

/// Zero the channels `keep` drops (q/k/v columns and biases): the unsliced model that the
/// sliced one must equal, for the exactness tests.
pub fn zero_dropped(model: &OnnxModel, s: &VitStructure, keep: &Keep) -> Result<OnnxModel> {
    let mut m = model.clone();
    for (a, k) in s.attentions.iter().zip(&keep.attentions) {
        let kept: std::collections::HashSet<usize> = k.channels(a.head_dim).into_iter().collect();
        let f: Vec<f32> = (0..a.width())
            .map(|c| if kept.contains(&c) { 1.0 } else { 0.0 })
            .collect();
        let repeat = if matches!(a.qkv, Qkv::Separate { .. }) {
            1
        } else {
            3
        };
        let tiled: Vec<f32> = (0..repeat).flat_map(|_| f.iter().copied()).collect();
        for l in a.qkv.linears() {
            scale_axis(&mut m, &l.weight, l.out_axis, &tiled)?;
            if let Some(b) = &l.bias {
                scale_axis(&mut m, b, 0, &tiled)?;
            }
        }
    }
    for (mlp, k) in s.mlps.iter().zip(&keep.mlps) {
        let kept: std::collections::HashSet<usize> = k.iter().copied().collect();
        let f: Vec<f32> = (0..mlp.units)
            .map(|c| if kept.contains(&c) { 1.0 } else { 0.0 })
            .collect();
        scale_axis(&mut m, &mlp.fc2.weight, mlp.fc2.in_axis(), &f)?;
    }
    Ok(m)
}
