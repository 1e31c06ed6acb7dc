//! The baseline ViT-Slim is compared with: the same masks' places scored by weight magnitude
//! instead of learnt (a head dimension by the l1 norms of its q, k, v columns and its
//! output-projection row; an MLP unit by its first-layer column and second-layer row; a head
//! by its dimensions' sum). Same global threshold, slicing and retraining: only the choice of
//! what stays differs.

use crate::masks::{Mask, MaskKind, MaskValues};
use crate::recognize::{Linear, Qkv, VitStructure};
use edgeslim_onnx::{Error, OnnxModel, Result};

/// l1 norm of every output (or input) channel of a linear layer, `repeat`-fused parts summed.
fn channel_l1(m: &OnnxModel, l: &Linear, outputs: bool, parts: usize) -> Result<Vec<f32>> {
    let t = m
        .constant(&l.weight)
        .ok_or_else(|| Error::tensor(&l.weight, "expected a constant weight"))??;
    let axis = if outputs { l.out_axis } else { l.in_axis() };
    let c = t.dims[axis];
    let inner: usize = t.dims[axis + 1..].iter().product();
    let mut norms = vec![0.0f32; c];
    for (i, v) in t.to_f32_vec().iter().enumerate() {
        norms[(i / inner) % c] += v.abs();
    }
    let width = c / parts.max(1);
    Ok((0..width)
        .map(|j| (0..parts).map(|p| norms[p * width + j]).sum())
        .collect())
}

/// Magnitude scores in the masks' layout (by mask name).
pub fn scores(m: &OnnxModel, s: &VitStructure, masks: &[Mask]) -> Result<MaskValues> {
    let mut out = MaskValues::new();
    for mk in masks {
        let v = match mk.kind {
            MaskKind::Tokens => {
                return Err(Error::option_value(
                    "masks",
                    "tokens",
                    "a token has no weights to score: token masks need the search (--selection learned)",
                ))
            }
            MaskKind::HeadDims | MaskKind::Heads => {
                let a = &s.attentions[mk.block];
                let parts = if matches!(a.qkv, Qkv::Separate { .. }) {
                    1
                } else {
                    3
                };
                let mut dims = channel_l1(m, &a.proj, false, 1)?;
                for l in a.qkv.linears() {
                    for (d, n) in dims.iter_mut().zip(channel_l1(m, l, true, parts)?) {
                        *d += n;
                    }
                }
                if mk.kind == MaskKind::Heads {
                    dims.chunks(a.head_dim).map(|h| h.iter().sum()).collect()
                } else {
                    dims
                }
            }
            MaskKind::Mlp => {
                let mlp = &s.mlps[mk.block];
                channel_l1(m, &mlp.fc1, true, 1)?
                    .into_iter()
                    .zip(channel_l1(m, &mlp.fc2, false, 1)?)
                    .map(|(a, b)| a + b)
                    .collect()
            }
        };
        out.insert(mk.name.clone(), v);
    }
    Ok(out)
}
