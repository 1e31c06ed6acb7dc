//! Graph surgery: a layer becomes its two factors, writing the same output tensor, so every
//! consumer (and calibration of later layers) is untouched.
//!
//! - Gemm → Gemm(x, W1, transB=1) → Gemm(·, W2, b', transB=1)
//! - MatMul → MatMul(x, W1ᵀ) → MatMul(·, W2ᵀ) [→ Add(b') when a bias is non-zero]
//! - Conv k×k → Conv k×k to r channels (same pads, strides, dilations, no bias) → Conv 1×1
//!   with bias b'.

use super::layers::{transpose, LayerKind, LinearLayer};
use super::Factors;
use crate::{Error, Result};
use edgeslim_onnx::node::{self, attr, int, ints};
use edgeslim_onnx::{OnnxModel, Tensor};

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn add_init(model: &mut OnnxModel, base: &str, dims: Vec<usize>, v: &[f64]) -> Result<String> {
    let name = model.fresh_name(base);
    let t = Tensor::f32(dims, f32s(v)).map_err(|e| Error::tensor(&name, e.to_string()))?;
    model.set_initializer(&name, &t);
    Ok(name)
}

/// Replace `layer` in `model` by the factors `f`.
pub fn apply_factors(model: &mut OnnxModel, layer: &LinearLayer, f: &Factors) -> Result<()> {
    let index = model
        .graph()
        .node
        .iter()
        .position(|n| n.output.first() == Some(&layer.output))
        .ok_or_else(|| {
            Error::Graph(format!(
                "layer '{}' (output '{}') is no longer in the graph",
                layer.name, layer.output
            ))
        })?;
    let original = model.graph().node[index].clone();
    let (d_in, d_out, r) = (layer.d_in, layer.d_out, f.rank);
    let base = layer.name.clone();
    let mid = model.fresh_name(&format!("{}.lowrank", layer.output));
    let name1 = model.fresh_name(&format!("{base}.lowrank.1"));
    let name2 = model.fresh_name(&format!("{base}.lowrank.2"));
    let nonzero_bias = f.bias.as_ref().filter(|b| b.iter().any(|&x| x != 0.0));
    let nodes = match &layer.kind {
        LayerKind::Gemm => {
            let w1 = add_init(model, &format!("{base}.lowrank.w1"), vec![r, d_in], &f.w1)?;
            let w2 = add_init(model, &format!("{base}.lowrank.w2"), vec![d_out, r], &f.w2)?;
            let mut in2 = vec![mid.clone(), w2];
            if let Some(b) = nonzero_bias {
                in2.push(add_init(
                    model,
                    &format!("{base}.lowrank.b"),
                    vec![d_out],
                    b,
                )?);
            }
            let in2: Vec<&str> = in2.iter().map(|s| s.as_str()).collect();
            vec![
                node::make(
                    "Gemm",
                    &[&layer.input, &w1],
                    &[&mid],
                    &name1,
                    vec![int("transB", 1)],
                ),
                node::make(
                    "Gemm",
                    &in2,
                    &[&layer.output],
                    &name2,
                    vec![int("transB", 1)],
                ),
            ]
        }
        LayerKind::MatMul => {
            let w1 = add_init(
                model,
                &format!("{base}.lowrank.w1"),
                vec![d_in, r],
                &transpose(&f.w1, r, d_in),
            )?;
            let w2 = add_init(
                model,
                &format!("{base}.lowrank.w2"),
                vec![r, d_out],
                &transpose(&f.w2, d_out, r),
            )?;
            let mut nodes = vec![node::make(
                "MatMul",
                &[&layer.input, &w1],
                &[&mid],
                &name1,
                vec![],
            )];
            match nonzero_bias {
                None => nodes.push(node::make(
                    "MatMul",
                    &[&mid, &w2],
                    &[&layer.output],
                    &name2,
                    vec![],
                )),
                Some(b) => {
                    let mid2 = model.fresh_name(&format!("{}.lowrank.proj", layer.output));
                    let bname = add_init(model, &format!("{base}.lowrank.b"), vec![d_out], b)?;
                    let name3 = model.fresh_name(&format!("{base}.lowrank.bias"));
                    nodes.push(node::make("MatMul", &[&mid, &w2], &[&mid2], &name2, vec![]));
                    nodes.push(node::make(
                        "Add",
                        &[&mid2, &bname],
                        &[&layer.output],
                        &name3,
                        vec![],
                    ));
                }
            }
            nodes
        }
        LayerKind::Conv { kernel, group } => {
            if *group != 1 {
                return Err(Error::node(
                    &original,
                    "only group = 1 convs are decomposed",
                ));
            }
            let c_in = d_in / kernel.iter().product::<usize>().max(1);
            let mut dims1 = vec![r, c_in];
            dims1.extend(kernel);
            let w1 = add_init(model, &format!("{base}.lowrank.w1"), dims1, &f.w1)?;
            let mut dims2 = vec![d_out, r];
            dims2.extend(kernel.iter().map(|_| 1));
            let w2 = add_init(model, &format!("{base}.lowrank.w2"), dims2, &f.w2)?;
            // The k×k half keeps every spatial attribute of the original.
            let mut attrs1: Vec<_> = original
                .attribute
                .iter()
                .filter(|a| a.name != "group")
                .cloned()
                .collect();
            if attr(&original, "kernel_shape").is_none() {
                let k: Vec<i64> = kernel.iter().map(|&v| v as i64).collect();
                attrs1.push(ints("kernel_shape", &k));
            }
            let ones: Vec<i64> = kernel.iter().map(|_| 1).collect();
            let mut in2 = vec![mid.clone(), w2];
            if let Some(b) = nonzero_bias {
                in2.push(add_init(
                    model,
                    &format!("{base}.lowrank.b"),
                    vec![d_out],
                    b,
                )?);
            }
            let in2: Vec<&str> = in2.iter().map(|s| s.as_str()).collect();
            vec![
                node::make("Conv", &[&layer.input, &w1], &[&mid], &name1, attrs1),
                node::make(
                    "Conv",
                    &in2,
                    &[&layer.output],
                    &name2,
                    vec![ints("kernel_shape", &ones)],
                ),
            ]
        }
    };
    model.replace_node(index, nodes);
    Ok(())
}
