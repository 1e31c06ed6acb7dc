//! The soft masks of ViT-Slim as graph nodes: a `Mul` by a trainable initializer (all ones
//! at the start, so the masked model computes what the original does) at
//!
//! - each projection output of q, k and v, one mask of H·dh values shared by the three (a
//!   fused projection multiplies by the mask repeated three times): per head dimension;
//! - the attention-weighted values `[B, H, N, dh]`, one value per head: whole heads;
//! - the MLP's activation output, one value per hidden unit;
//! - the residual stream entering a block, `tanh(ζ)` per token (ζ starts at 3; the class
//!   token, first, at 20, where tanh is 1 in f32 and its gradient vanishes: it stays).
//!
//! [`fold`] undoes the insertion: it multiplies each trained mask into the weights that
//! produce (or read) the masked channels and removes the nodes, leaving the original graph.

use crate::recognize::{Linear, Qkv, VitStructure};
use edgeslim_onnx::node::{int, make};
use edgeslim_onnx::{Error, OnnxModel, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a mask scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskKind {
    /// One value per attention head.
    Heads,
    /// One value per head dimension, shared by q, k and v.
    HeadDims,
    /// One value per MLP hidden unit.
    Mlp,
    /// One value per token at a block's input (through tanh), made monotone over depth.
    Tokens,
}

impl MaskKind {
    pub fn key(self) -> &'static str {
        match self {
            MaskKind::Heads => "heads",
            MaskKind::HeadDims => "head-dims",
            MaskKind::Mlp => "mlp",
            MaskKind::Tokens => "tokens",
        }
    }

    /// `heads,head-dims,mlp` → kinds; heads and head-dims together are refused (one mask per
    /// attention, as in the paper).
    pub fn parse_list(s: &str) -> Result<Vec<MaskKind>> {
        let mut kinds = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let k = match part {
                "heads" => MaskKind::Heads,
                "head-dims" => MaskKind::HeadDims,
                "mlp" => MaskKind::Mlp,
                "tokens" => MaskKind::Tokens,
                other => {
                    return Err(Error::option_value(
                        "masks",
                        other,
                        "mask types are heads, head-dims, mlp and tokens",
                    ))
                }
            };
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        if kinds.is_empty() {
            return Err(Error::option_value(
                "masks",
                s,
                "name at least one mask type",
            ));
        }
        if kinds.contains(&MaskKind::Heads) && kinds.contains(&MaskKind::HeadDims) {
            return Err(Error::option_value(
                "masks",
                s,
                "choose heads or head-dims for the attention, not both",
            ));
        }
        Ok(kinds)
    }
}

/// One inserted mask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mask {
    pub kind: MaskKind,
    /// Index of the attention (heads, head-dims) or MLP in [`VitStructure`].
    pub block: usize,
    /// The trainable initializer.
    pub name: String,
    pub len: usize,
}

/// Token masks start at tanh(3) ≈ 0.995 (the paper's initialisation) and the class token's
/// at tanh(20) = 1.
pub const TOKEN_INIT: f32 = 3.0;
pub const CLASS_TOKEN_INIT: f32 = 20.0;

/// The prefix of every mask initializer (kept out of weight decay, found by the search).
pub const PREFIX: &str = "vitslim.";

/// A masked copy of `model` (the prepared model `structure` was recognised on) and its masks,
/// all ones.
pub fn insert(
    model: &OnnxModel,
    structure: &VitStructure,
    kinds: &[MaskKind],
) -> Result<(OnnxModel, Vec<Mask>)> {
    let mut m = model.clone();
    let mut masks = Vec::new();
    for (b, a) in structure.attentions.iter().enumerate() {
        if kinds.contains(&MaskKind::HeadDims) {
            let len = a.width();
            let name = m.fresh_name(&format!("{PREFIX}head_dims.{b}"));
            m.set_initializer(&name, &Tensor::f32(vec![len], vec![1.0; len])?);
            match &a.qkv {
                Qkv::Separate { q, k, v, .. } => {
                    for l in [q, k, v] {
                        multiply(&mut m, &l.output, &name);
                    }
                }
                Qkv::FusedSplit { linear, .. } | Qkv::FusedHeads { linear, .. } => {
                    let tiled = m.fresh_name(&format!("{name}.x3"));
                    let node = make(
                        "Concat",
                        &[&name, &name, &name],
                        &[&tiled],
                        &tiled,
                        vec![int("axis", 0)],
                    );
                    m.graph_mut().node.push(node);
                    multiply(&mut m, &linear.output, &tiled);
                }
            }
            masks.push(Mask {
                kind: MaskKind::HeadDims,
                block: b,
                name,
                len,
            });
        }
        if kinds.contains(&MaskKind::Heads) {
            let name = m.fresh_name(&format!("{PREFIX}heads.{b}"));
            m.set_initializer(
                &name,
                &Tensor::f32(vec![a.heads, 1, 1], vec![1.0; a.heads])?,
            );
            multiply(&mut m, &a.context, &name);
            masks.push(Mask {
                kind: MaskKind::Heads,
                block: b,
                name,
                len: a.heads,
            });
        }
    }
    if kinds.contains(&MaskKind::Tokens) {
        for (b, a) in structure.attentions.iter().enumerate() {
            let Some(x) = &a.block_input else { continue };
            if a.tokens < 2 {
                continue;
            }
            let name = m.fresh_name(&format!("{PREFIX}tokens.{b}"));
            let mut init = vec![TOKEN_INIT; a.tokens];
            init[0] = CLASS_TOKEN_INIT;
            m.set_initializer(&name, &Tensor::f32(vec![a.tokens, 1], init)?);
            let squashed = m.fresh_name(&format!("{name}.tanh"));
            let node = make("Tanh", &[&name], &[&squashed], &squashed, vec![]);
            m.graph_mut().node.push(node);
            multiply(&mut m, x, &squashed);
            masks.push(Mask {
                kind: MaskKind::Tokens,
                block: b,
                name,
                len: a.tokens,
            });
        }
    }
    if kinds.contains(&MaskKind::Mlp) {
        for (b, mlp) in structure.mlps.iter().enumerate() {
            let name = m.fresh_name(&format!("{PREFIX}mlp.{b}"));
            m.set_initializer(&name, &Tensor::f32(vec![mlp.units], vec![1.0; mlp.units])?);
            multiply(&mut m, &mlp.hidden, &name);
            masks.push(Mask {
                kind: MaskKind::Mlp,
                block: b,
                name,
                len: mlp.units,
            });
        }
    }
    m.topo_sort()?;
    m.validate_references()?;
    Ok((m, masks))
}

/// Route every reader of `t` through `Mul(t, mask)`.
fn multiply(m: &mut OnnxModel, t: &str, mask: &str) {
    let out = m.fresh_name(&format!("{t}.masked"));
    m.replace_uses(t, &out);
    let node = make("Mul", &[t, mask], &[&out], &out, vec![]);
    m.graph_mut().node.push(node);
}

/// Mask values by initializer name.
pub type MaskValues = HashMap<String, Vec<f32>>;

/// Mask values that keep everything (what the masks start at; the floor of a budget does not
/// depend on the values).
pub fn ones(masks: &[Mask]) -> MaskValues {
    masks
        .iter()
        .map(|m| (m.name.clone(), vec![1.0; m.len]))
        .collect()
}

/// The search's l1 terms: attention masks (head dimensions or heads), MLP masks, and token
/// masks taken through tanh, each with its weight; mask types absent from `masks` give none.
pub fn sparsity_terms(
    masks: &[Mask],
    attention: f64,
    mlp: f64,
    tokens: f64,
) -> Vec<edgeslim_train::Sparsity> {
    let names = |pred: fn(MaskKind) -> bool| -> Vec<String> {
        masks
            .iter()
            .filter(|m| pred(m.kind))
            .map(|m| m.name.clone())
            .collect()
    };
    let term = |names, weight, tanh| edgeslim_train::Sparsity {
        names,
        weight,
        tanh,
    };
    let mut t = vec![
        term(
            names(|k| matches!(k, MaskKind::HeadDims | MaskKind::Heads)),
            attention,
            false,
        ),
        term(names(|k| k == MaskKind::Mlp), mlp, false),
        term(names(|k| k == MaskKind::Tokens), tokens, true),
    ];
    t.retain(|t| !t.names.is_empty());
    t
}

/// Read the masks' current values from a masked model.
pub fn values(masked: &OnnxModel, masks: &[Mask]) -> Result<MaskValues> {
    masks
        .iter()
        .map(|mk| {
            let t = masked
                .constant(&mk.name)
                .ok_or_else(|| Error::tensor(&mk.name, "the mask is missing from the model"))??;
            Ok((mk.name.clone(), t.to_f32_vec()))
        })
        .collect()
}

/// Multiply the weight columns (or rows) `axis` of a linear layer's weight — and the bias
/// when `with_bias` — by `factors` (one per channel, repeated `repeat` times for a fused
/// projection).
fn scale_linear(
    m: &mut OnnxModel,
    l: &Linear,
    factors: &[f32],
    repeat: usize,
    outputs: bool,
) -> Result<()> {
    let axis = if outputs { l.out_axis } else { l.in_axis() };
    let f: Vec<f32> = (0..repeat).flat_map(|_| factors.iter().copied()).collect();
    scale_axis(m, &l.weight, axis, &f)?;
    if outputs {
        if let Some(b) = &l.bias {
            scale_axis(m, b, 0, &f)?;
        }
    }
    Ok(())
}

/// `t[.., i, ..] *= f[i]` along `axis`.
pub(crate) fn scale_axis(m: &mut OnnxModel, name: &str, axis: usize, f: &[f32]) -> Result<()> {
    let t = m
        .constant(name)
        .ok_or_else(|| Error::tensor(name, "expected a constant weight"))??;
    if t.dims.get(axis) != Some(&f.len()) {
        return Err(Error::tensor(
            name,
            format!(
                "axis {axis} of {:?} does not have {} channels",
                t.dims,
                f.len()
            ),
        ));
    }
    let inner: usize = t.dims[axis + 1..].iter().product();
    let c = f.len();
    let mut v = t.to_f32_vec();
    for (i, x) in v.iter_mut().enumerate() {
        *x *= f[(i / inner) % c];
    }
    m.set_initializer(name, &Tensor::f32(t.dims.clone(), v)?);
    Ok(())
}

/// The unmasked model with `values` multiplied into the weights: q/k/v columns by the
/// head-dimension masks, output-projection rows by the head masks, second MLP layer rows by
/// the MLP masks. Exact for those: it computes what the masked model computes with those
/// values. Token masks are removed without folding (a per-token scale of the residual stream
/// has no weight to go into).
pub fn fold(
    masked: &OnnxModel,
    structure: &VitStructure,
    masks: &[Mask],
    values: &MaskValues,
) -> Result<OnnxModel> {
    let mut m = masked.clone();
    for mk in masks {
        let v = values
            .get(&mk.name)
            .ok_or_else(|| Error::tensor(&mk.name, "no value for this mask"))?;
        match mk.kind {
            MaskKind::HeadDims => {
                let a = &structure.attentions[mk.block];
                let repeat = if matches!(a.qkv, Qkv::Separate { .. }) {
                    1
                } else {
                    3
                };
                for l in a.qkv.linears() {
                    scale_linear(&mut m, l, v, repeat, true)?;
                }
            }
            MaskKind::Heads => {
                let a = &structure.attentions[mk.block];
                let per_channel: Vec<f32> = v
                    .iter()
                    .flat_map(|&h| std::iter::repeat_n(h, a.head_dim))
                    .collect();
                scale_linear(&mut m, &a.proj, &per_channel, 1, false)?;
            }
            MaskKind::Mlp => {
                scale_linear(&mut m, &structure.mlps[mk.block].fc2, v, 1, false)?;
            }
            // Kept tokens are near 1 after the search and the dropped ones go: the mask is
            // dropped, not folded (retraining absorbs the difference).
            MaskKind::Tokens => {}
        }
    }
    remove(&mut m, masks)?;
    Ok(m)
}

/// Take the mask nodes and initializers out again.
fn remove(m: &mut OnnxModel, masks: &[Mask]) -> Result<()> {
    let names: std::collections::HashSet<&str> = masks.iter().map(|k| k.name.as_str()).collect();
    // Nodes computing from the masks alone (the fused projection's tiling, the tokens' tanh).
    let mut tiled: std::collections::HashSet<String> = std::collections::HashSet::new();
    for n in m.graph().node.iter() {
        if matches!(n.op_type.as_str(), "Concat" | "Tanh")
            && n.input.iter().all(|i| names.contains(i.as_str()))
        {
            tiled.insert(n.output[0].clone());
        }
    }
    let mut renames = Vec::new();
    m.graph_mut().node.retain(|n| {
        if n.output.first().is_some_and(|o| tiled.contains(o)) {
            return false;
        }
        let is_mask = n.op_type == "Mul"
            && n.input
                .get(1)
                .is_some_and(|i| names.contains(i.as_str()) || tiled.contains(i));
        if is_mask {
            renames.push((n.output[0].clone(), n.input[0].clone()));
        }
        !is_mask
    });
    for (from, to) in renames {
        m.replace_uses(&from, &to);
    }
    m.graph_mut()
        .initializer
        .retain(|t| !names.contains(t.name.as_str()));
    m.validate_references()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_lists_parse_and_refuse_clearly() {
        assert_eq!(
            MaskKind::parse_list("head-dims, mlp,tokens").unwrap(),
            vec![MaskKind::HeadDims, MaskKind::Mlp, MaskKind::Tokens]
        );
        assert_eq!(
            MaskKind::parse_list("heads,heads").unwrap(),
            vec![MaskKind::Heads]
        );
        let e = MaskKind::parse_list("heads,head-dims")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
        let e = MaskKind::parse_list("neurons").unwrap_err().to_string();
        assert!(e.contains("neurons") && e.contains("head-dims"), "{e}");
        assert!(MaskKind::parse_list(" , ").is_err());
    }
}
