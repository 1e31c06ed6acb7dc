//! A growth step on the ONNX ViT: neurons split into ± pairs. Neuron i of block b's MLP, with
//! input weights w (a column of `fc1.weight [dim, mlp]`), bias c and output weights a (a row of
//! `fc2.weight [mlp, dim]`), becomes two neurons with input weights w − εv and w + εv (v the
//! unit eigenvector of its splitting matrix, ε = `eps`·‖w‖), both with bias c and output
//! weights a/2. At ε = 0 the function is exactly unchanged (halving is exact in binary floating
//! point); the ± perturbation, which breaks the pair's symmetry so it can learn two features,
//! changes the outputs by O(ε²) (≤ 1e-5 at the default ε, a test). The model is rebuilt from the
//! family with the block's MLP one wider per split and every other weight copied by name.
//!
//! A QKV unit ([`QkvScore`]) splits dimension j = r of every head of its block the same way:
//! q_j and k_j become two copies each, halved by √2 and perturbed by ±ε_h·u and ±ε_h·w (the
//! r-th singular pair of the head's attention matrix; ε_h = `eps` times the RMS of ‖q_j‖ and
//! ‖k_j‖), so the scores change by 2ε_h²(xᵀu)(xᵀw); v_j becomes v_j ± ε_v·u
//! (ε_v = `eps`·‖v_j‖), which changes nothing since both copies read half of v_j's
//! output-projection row; and the softmax scale stays what it was, so the heads are one
//! dimension wider per unit and the function is kept to O(ε²).

use crate::split::{NeuronScore, QkvScore};
use crate::{Error, Result};
use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_train::families::siamese;
use edgeslim_train::families::vit::{self, BlockShape, VitConfig};

/// A weight's values, which must number `len` (what the config says; the indexing of a
/// split relies on it).
fn weight(model: &OnnxModel, name: &str, len: usize) -> Result<Vec<f32>> {
    let p = model
        .initializer(name)
        .ok_or_else(|| Error::tensor(name, "missing from the ViT"))?;
    let w = Tensor::from_proto(p)?.to_f32_vec();
    if w.len() != len {
        return Err(Error::tensor(
            name,
            format!("{} values where the ViT's config needs {len}", w.len()),
        ));
    }
    Ok(w)
}

/// The ViT with the chosen neurons split (at most once each); returns it and its config.
pub fn split_neurons(
    model: &OnnxModel,
    cfg: &VitConfig,
    picks: &[NeuronScore],
    eps: f64,
) -> Result<(OnnxModel, VitConfig)> {
    grow_step(model, cfg, picks, &[], eps)
}

/// The ViT with the chosen MLP neurons and QKV units split (each at most once); returns it
/// and its config.
pub fn grow_step(
    model: &OnnxModel,
    cfg: &VitConfig,
    neurons: &[NeuronScore],
    qkv: &[QkvScore],
    eps: f64,
) -> Result<(OnnxModel, VitConfig)> {
    let mut shapes = cfg.block_shapes();
    let mut changed: Vec<(String, Tensor)> = Vec::new();
    split_mlp(model, cfg, &mut shapes, neurons, eps, &mut changed)?;
    split_qkv(model, cfg, &mut shapes, qkv, eps, &mut changed)?;
    let grown = VitConfig {
        blocks: Some(shapes),
        ..cfg.clone()
    };
    let mut out = vit::build(&grown)?;
    // Every weight a split did not touch comes from the model by name, its shape checked.
    let unchanged = |name: &str| !changed.iter().any(|(n, _)| n == name);
    siamese::copy_weights_by_name(&mut out, &[model], unchanged, "the model being grown")?;
    for (name, t) in &changed {
        out.set_initializer(name, t);
    }
    Ok((out, grown))
}

/// MLP splits: the new fc1/fc2 tensors into `changed`, the widths into `shapes`.
fn split_mlp(
    model: &OnnxModel,
    cfg: &VitConfig,
    shapes: &mut [BlockShape],
    picks: &[NeuronScore],
    eps: f64,
    changed: &mut Vec<(String, Tensor)>,
) -> Result<()> {
    let d = cfg.dim;
    for (b, shape) in shapes.iter_mut().enumerate() {
        let mut mine: Vec<&NeuronScore> = picks.iter().filter(|p| p.block == b).collect();
        if mine.is_empty() {
            continue;
        }
        mine.sort_by_key(|p| p.neuron);
        if mine.windows(2).any(|w| w[0].neuron == w[1].neuron) {
            return Err(Error::Invalid(format!(
                "block {b}: a neuron picked twice in one step"
            )));
        }
        let m = shape.mlp;
        if let Some(p) = mine
            .iter()
            .find(|p| p.neuron >= m || p.direction.len() != d)
        {
            return Err(Error::Invalid(format!(
                "block {b}: neuron {} with a {}-long direction (the MLP has {m} neurons of width {d})",
                p.neuron,
                p.direction.len()
            )));
        }
        let p = format!("blocks.{b}.mlp");
        let (w1, b1, w2) = (
            weight(model, &format!("{p}.fc1.weight"), d * m)?,
            weight(model, &format!("{p}.fc1.bias"), m)?,
            weight(model, &format!("{p}.fc2.weight"), m * d)?,
        );
        let m2 = m + mine.len();
        // fc1.weight is [dim, mlp] (MatMul layout): column i is neuron i's input weights.
        let mut nw1 = vec![0.0f32; d * m2];
        for r in 0..d {
            nw1[r * m2..r * m2 + m].copy_from_slice(&w1[r * m..(r + 1) * m]);
        }
        let mut nb1 = b1.clone();
        let mut nw2 = w2.clone();
        for (k, s) in mine.iter().enumerate() {
            let (i, new) = (s.neuron, m + k);
            let norm = (0..d)
                .map(|r| (w1[r * m + i] as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let e = (eps * norm) as f32;
            for r in 0..d {
                let w = w1[r * m + i];
                nw1[r * m2 + i] = w - e * s.direction[r];
                nw1[r * m2 + new] = w + e * s.direction[r];
            }
            nb1.push(b1[i]);
            for c in 0..d {
                nw2[i * d + c] *= 0.5;
            }
            let half: Vec<f32> = nw2[i * d..(i + 1) * d].to_vec();
            nw2.extend(half);
        }
        changed.push((format!("{p}.fc1.weight"), Tensor::f32(vec![d, m2], nw1)?));
        changed.push((format!("{p}.fc1.bias"), Tensor::f32(vec![m2], nb1)?));
        changed.push((format!("{p}.fc2.weight"), Tensor::f32(vec![m2, d], nw2)?));
        shape.mlp = m2;
    }
    Ok(())
}

/// QKV splits: the new q/k/v/proj tensors into `changed`, the head widths into `shapes`.
fn split_qkv(
    model: &OnnxModel,
    cfg: &VitConfig,
    shapes: &mut [BlockShape],
    picks: &[QkvScore],
    eps: f64,
    changed: &mut Vec<(String, Tensor)>,
) -> Result<()> {
    let d = cfg.dim;
    for (b, shape) in shapes.iter_mut().enumerate() {
        let mut mine: Vec<&QkvScore> = picks.iter().filter(|p| p.block == b).collect();
        if mine.is_empty() {
            continue;
        }
        mine.sort_by_key(|p| p.rank);
        let (h, hd) = (shape.heads, shape.head_dim);
        if mine.windows(2).any(|w| w[0].rank == w[1].rank) {
            return Err(Error::Invalid(format!(
                "block {b}: a QKV unit picked twice in one step"
            )));
        }
        if let Some(p) = mine.iter().find(|p| {
            p.rank >= hd
                || p.heads.len() != h
                || p.heads.iter().any(|x| x.u.len() != d || x.w.len() != d)
        }) {
            return Err(Error::Invalid(format!(
                "block {b}: QKV unit {} does not fit heads of {hd} ({} heads of width {d} \
                 expected, {} given)",
                p.rank,
                h,
                p.heads.len()
            )));
        }
        let hd2 = hd + mine.len();
        let p = format!("blocks.{b}.attn");
        let sized = |name: String, len: usize| weight(model, &name, len);
        let load = |which: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                sized(format!("{p}.{which}.weight"), d * h * hd)?,
                sized(format!("{p}.{which}.bias"), h * hd)?,
            ))
        };
        let (q, k, v) = (load("q")?, load("k")?, load("v")?);
        let proj = sized(format!("{p}.proj.weight"), h * hd * d)?;
        // Old column (head, j) → new column: the heads are re-laid at the wider width.
        let widen = |(w, bias): &(Vec<f32>, Vec<f32>)| {
            let mut nw = vec![0.0f32; d * h * hd2];
            let mut nb = vec![0.0f32; h * hd2];
            for head in 0..h {
                for j in 0..hd {
                    let (o, n) = (head * hd + j, head * hd2 + j);
                    for r in 0..d {
                        nw[r * h * hd2 + n] = w[r * h * hd + o];
                    }
                    nb[n] = bias[o];
                }
            }
            (nw, nb)
        };
        let (mut nq, mut nk, mut nv) = (widen(&q), widen(&k), widen(&v));
        let mut nproj = vec![0.0f32; h * hd2 * d];
        for head in 0..h {
            for j in 0..hd {
                let (o, n) = (head * hd + j, head * hd2 + j);
                nproj[n * d..(n + 1) * d].copy_from_slice(&proj[o * d..(o + 1) * d]);
            }
        }
        let col_norm = |w: &[f32], c: usize| {
            (0..d)
                .map(|r| (w[r * h * hd2 + c] as f64).powi(2))
                .sum::<f64>()
        };
        for (i, unit) in mine.iter().enumerate() {
            for (head, dir) in unit.heads.iter().enumerate() {
                let (j, new) = (head * hd2 + unit.rank, head * hd2 + hd + i);
                let e = (eps * ((col_norm(&nq.0, j) + col_norm(&nk.0, j)) / 2.0).sqrt()) as f32;
                let ev = (eps * col_norm(&nv.0, j).sqrt()) as f32;
                // q and k: two copies at 1/√2, perturbed by ±ε along u (q) and w (k);
                // v: two copies perturbed by ±ε_v along u, each read by half the row.
                let half = std::f32::consts::FRAC_1_SQRT_2;
                for ((w, bias), dir, eps, scale) in [
                    (&mut nq, &dir.u, e, half),
                    (&mut nk, &dir.w, e, half),
                    (&mut nv, &dir.u, ev, 1.0),
                ] {
                    for r in 0..d {
                        let x = w[r * h * hd2 + j] * scale;
                        w[r * h * hd2 + j] = x + eps * dir[r];
                        w[r * h * hd2 + new] = x - eps * dir[r];
                    }
                    bias[j] *= scale;
                    bias[new] = bias[j];
                }
                for c in 0..d {
                    nproj[j * d + c] *= 0.5;
                    nproj[new * d + c] = nproj[j * d + c];
                }
            }
        }
        for (which, (w, bias)) in [("q", nq), ("k", nk), ("v", nv)] {
            changed.push((
                format!("{p}.{which}.weight"),
                Tensor::f32(vec![d, h * hd2], w)?,
            ));
            changed.push((
                format!("{p}.{which}.bias"),
                Tensor::f32(vec![h * hd2], bias)?,
            ));
        }
        changed.push((
            format!("{p}.proj.weight"),
            Tensor::f32(vec![h * hd2, d], nproj)?,
        ));
        shape.head_dim = hd2;
    }
    Ok(())
}
