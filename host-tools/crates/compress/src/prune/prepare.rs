//! Put a real export into the form the channel rules read, without changing what it
//! computes: weights as initializers, reshapes of constants folded, flatten-reshapes whose
//! target is computed from `Shape` written as `[0, -1]`, initializers used by several nodes
//! split into one copy per use (so slicing one never slices another), Identity and inference
//! Dropout removed (the exporter's weight sharing), dead nodes dropped, every node named: the
//! lossless clean-up of `edgeslim optimize` that the channel rules need, on the in-memory copy.

use crate::Result;
use edgeslim_onnx::model::OnnxModel;
use edgeslim_onnx::optimize::{constants, dead, identity, names};
use edgeslim_onnx::tensor::Tensor;
use edgeslim_runtime::model::{LoadOptions, TypedOnnx};
use edgeslim_runtime::InputShape;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Every tensor's shape at the given input shapes (tract's type inference; declared
/// value_info ignored, since exports often declare symbols that clash with fixed inputs).
pub fn infer_shapes(
    model: &OnnxModel,
    input_shapes: &[InputShape],
) -> Result<HashMap<String, Vec<usize>>> {
    let opts = LoadOptions {
        input_shapes: input_shapes.to_vec(),
        optimize: false,
        ignore_declared_facts: true,
        ..LoadOptions::default()
    };
    let label = model.label();
    let dir = model.path.as_ref().and_then(|p| p.parent());
    let typed = TypedOnnx::from_bytes(
        model.to_bytes()?,
        Path::new(&label),
        dir,
        &opts,
        std::time::Instant::now(),
    )?;
    Ok(typed.tensor_shapes)
}

/// Tensor name → static shape.
pub type Shapes = HashMap<String, Vec<usize>>;

/// Prepare `model` in place; returns the shapes of the prepared model and one note per change.
pub fn prepare(
    model: &mut OnnxModel,
    input_shapes: &[InputShape],
) -> Result<(Shapes, Vec<String>)> {
    let mut notes = Vec::new();
    let r = constants::constants_to_initializers(model)?;
    if r.count > 0 {
        notes.push(format!("{} Constant nodes became initializers", r.count));
    }
    // PyTorch's exporter routes shared and de-duplicated weights through Identity nodes; a
    // weight behind one is not an initializer to the channel rules, and every group it is in
    // would be kept whole ("nothing to prune" on a raw resnet18 export).
    let r = identity::remove_identities(model)?;
    if r.count > 0 {
        notes.push(format!("{} Identity/Dropout nodes removed", r.count));
    }
    model.topo_sort()?;
    let shapes = infer_shapes(model, input_shapes)?;
    notes.extend(fold_constant_reshapes(model, &shapes)?);
    notes.extend(flatten_computed_reshapes(model, &shapes));
    dead::remove_dead(model)?;
    notes.extend(unshare_initializers(model));
    names::name_unnamed_nodes(model);
    model.topo_sort()?;
    model.validate_references()?;
    let shapes = infer_shapes(model, input_shapes)?;
    Ok((shapes, notes))
}

const DATA_PRESERVING: &[&str] = &["Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"];

/// Reshape-like nodes whose data input is a constant become a constant (paddle2onnx writes
/// per-channel biases as `Reshape(bias[C], [1, C, 1, 1])`).
fn fold_constant_reshapes(
    model: &mut OnnxModel,
    shapes: &HashMap<String, Vec<usize>>,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let inputs = model.graph_input_names();
    let mut folded = Vec::new();
    for (i, n) in model.graph().node.iter().enumerate() {
        if !DATA_PRESERVING.contains(&n.op_type.as_str()) {
            continue;
        }
        let all_const = n
            .input
            .iter()
            .filter(|s| !s.is_empty())
            .all(|s| model.initializer(s).is_some() && !inputs.contains(s));
        let (Some(x), Some(y)) = (n.input.first(), n.output.first()) else {
            continue;
        };
        let Some(dims) = shapes.get(y) else { continue };
        if !all_const {
            continue;
        }
        let Some(Ok(t)) = model.constant(x) else {
            continue;
        };
        if t.len() != dims.iter().product::<usize>() {
            continue;
        }
        folded.push((i, y.clone(), Tensor::new(dims.clone(), t.data)?));
    }
    for (_, name, t) in &folded {
        model.set_initializer(name, t);
        notes.push(format!("constant reshape folded into '{name}'"));
    }
    let drop: HashSet<usize> = folded.iter().map(|(i, _, _)| *i).collect();
    let mut k = 0;
    model.graph_mut().node.retain(|_| {
        k += 1;
        !drop.contains(&(k - 1))
    });
    Ok(notes)
}

/// `Reshape(x, Concat(Slice(Shape(x)), C))` flattening [N, C, 1, 1] to [N, C] becomes
/// `Reshape(x, [0, -1])`: the same for every batch size, and it no longer reads the channel
/// count through `Shape` (which would pin the channels).
fn flatten_computed_reshapes(
    model: &mut OnnxModel,
    shapes: &HashMap<String, Vec<usize>>,
) -> Vec<String> {
    let mut edits = Vec::new();
    for (i, n) in model.graph().node.iter().enumerate() {
        if n.op_type != "Reshape" || n.input.len() < 2 {
            continue;
        }
        if model.constant(&n.input[1]).is_some() {
            continue;
        }
        let (Some(si), Some(so)) = (
            shapes.get(&n.input[0]),
            n.output.first().and_then(|y| shapes.get(y)),
        ) else {
            continue;
        };
        let flattens = so.len() == 2
            && !si.is_empty()
            && si[0] == so[0]
            && so[1] == si[1..].iter().product::<usize>();
        if flattens {
            edits.push(i);
        }
    }
    let mut notes = Vec::new();
    for i in edits {
        let name = model.fresh_name(&format!(
            "{}.flatten_shape",
            edgeslim_onnx::node::display_name(&model.graph().node[i])
        ));
        let spec = Tensor {
            dims: vec![2],
            data: edgeslim_onnx::TensorData::I64(vec![0, -1]),
        };
        model.set_initializer(&name, &spec);
        let node = &mut model.graph_mut().node[i];
        notes.push(format!(
            "Reshape '{}': computed flatten shape written as [0, -1]",
            edgeslim_onnx::node::display_name(node)
        ));
        node.input[1] = name;
    }
    notes
}

/// One initializer per use: a per-channel constant shared by two nodes may belong to two
/// different channel groups.
fn unshare_initializers(model: &mut OnnxModel) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let inits: HashMap<String, usize> = model
        .graph()
        .initializer
        .iter()
        .enumerate()
        .filter(|(_, t)| t.dims.iter().product::<i64>() > 1)
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut copies = Vec::new();
    let mut used = model.used_names();
    let node_count = model.graph().node.len();
    for ni in 0..node_count {
        let n_inputs = model.graph().node[ni].input.len();
        for slot in 0..n_inputs {
            let name = model.graph().node[ni].input[slot].clone();
            let Some(&ti) = inits.get(&name) else {
                continue;
            };
            if seen.insert(name.clone()) {
                continue;
            }
            let fresh = edgeslim_onnx::model::fresh_name_in(&used, &format!("{name}.copy"));
            used.insert(fresh.clone());
            let mut t = model.graph().initializer[ti].clone();
            t.name = fresh.clone();
            copies.push(t);
            model.graph_mut().node[ni].input[slot] = fresh;
        }
    }
    let n = copies.len();
    model.graph_mut().initializer.extend(copies);
    if n > 0 {
        vec![format!("{n} shared initializers copied, one per use")]
    } else {
        Vec::new()
    }
}
