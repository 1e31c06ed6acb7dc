//! A growth step on the ONNX ViT: neurons split into ± pairs. Neuron i of block b's MLP, with
//! input weights w (a column of `fc1.weight [dim, mlp]`), bias c and output weights a (a row of
//! `fc2.weight [mlp, dim]`), becomes two neurons with input weights w − εv and w + εv (v the
//! unit eigenvector of its splitting matrix, ε = `eps`·‖w‖), both with bias c and output
//! weights a/2. At ε = 0 the function is exactly unchanged (halving is exact in binary floating
//! point); the ± perturbation, which breaks the pair's symmetry so it can learn two features,
//! changes the outputs by O(ε²) (≤ 1e-5 at the default ε, a test). The model is rebuilt from the
//! family with the block's MLP one wider per split and every other weight copied.

use crate::split::NeuronScore;
use crate::{Error, Result};
use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_train::families::vit::{self, VitConfig};

fn weight(model: &OnnxModel, name: &str) -> Result<Vec<f32>> {
    let p = model
        .initializer(name)
        .ok_or_else(|| Error::tensor(name, "missing from the ViT"))?;
    Ok(Tensor::from_proto(p)?.to_f32_vec())
}

/// The ViT with the chosen neurons split (at most once each); returns it and its config.
pub fn split_neurons(
    model: &OnnxModel,
    cfg: &VitConfig,
    picks: &[NeuronScore],
    eps: f64,
) -> Result<(OnnxModel, VitConfig)> {
    let mut shapes = cfg.block_shapes();
    let d = cfg.dim;
    let mut changed: Vec<(String, Tensor)> = Vec::new();
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
            weight(model, &format!("{p}.fc1.weight"))?,
            weight(model, &format!("{p}.fc1.bias"))?,
            weight(model, &format!("{p}.fc2.weight"))?,
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
    let grown = VitConfig {
        blocks: Some(shapes),
        ..cfg.clone()
    };
    let mut out = vit::build(&grown)?;
    copy_weights(model, &mut out, &changed)?;
    Ok((out, grown))
}

/// Every float initializer of `to` from `from` by name (same shape), except `changed`.
pub fn copy_weights(
    from: &OnnxModel,
    to: &mut OnnxModel,
    changed: &[(String, Tensor)],
) -> Result<()> {
    let names: Vec<String> = to
        .graph()
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .collect();
    for name in names {
        if let Some((_, t)) = changed.iter().find(|(n, _)| *n == name) {
            to.set_initializer(&name, t);
            continue;
        }
        let p = from
            .initializer(&name)
            .ok_or_else(|| Error::tensor(&name, "missing from the model being grown"))?;
        let t = Tensor::from_proto(p)?;
        to.set_initializer(&name, &t);
    }
    Ok(())
}
