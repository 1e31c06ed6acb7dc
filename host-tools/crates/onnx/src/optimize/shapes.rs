//! Declared shapes that disagree with the shapes a model actually runs at.
//!
//! Exporters write symbolic output dims (`p2o.DynamicDimension.3`) unrelated to the inputs'
//! symbols; with fixed inputs those symbols contradict what engines infer, and tract refuses
//! the model. With fixed input shapes (declared or given) we write the inferred output shapes;
//! otherwise we turn symbols that no input carries into unknown dims.

use super::PassReport;
use crate::OnnxModel;
use crate::{Error, Result};
use edgeslim_runtime::model::{resolve_input_shapes, Dim, LoadOptions, TypedOnnx};
use edgeslim_runtime::InputShape;
use onnx_protobuf::tensor_shape_proto::dimension::Value as DimValue;
use onnx_protobuf::tensor_shape_proto::Dimension;
use onnx_protobuf::type_proto::Value as TypeValue;
use onnx_protobuf::ValueInfoProto;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

fn dims_mut(vi: &mut ValueInfoProto) -> Option<&mut Vec<Dimension>> {
    match vi.type_.as_mut()?.value.as_mut()? {
        TypeValue::TensorType(t) => Some(&mut t.shape.as_mut()?.dim),
        _ => None,
    }
}

pub fn declared(vi: &ValueInfoProto) -> Vec<Dim> {
    let Some(TypeValue::TensorType(t)) = vi.type_.as_ref().and_then(|t| t.value.as_ref()) else {
        return Vec::new();
    };
    let Some(shape) = t.shape.as_ref() else {
        return Vec::new();
    };
    shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(DimValue::DimValue(v)) if *v > 0 => Dim::Fixed(*v as usize),
            Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
            _ => Dim::Symbolic("?".into()),
        })
        .collect()
}

fn fixed_dim(v: usize) -> Dimension {
    let mut d = Dimension::new();
    d.set_dim_value(v as i64);
    d
}

fn describe(dims: &[Dim]) -> String {
    edgeslim_runtime::model::format_dims(dims)
}

pub fn fix_shapes(model: &mut OnnxModel, user: &[InputShape]) -> Result<PassReport> {
    let mut report = PassReport::new("shapes fixed or cleared");
    let label = PathBuf::from(model.label());
    let inputs: Vec<(String, Vec<Dim>)> = model
        .true_inputs()
        .iter()
        .map(|vi| (vi.name.clone(), declared(vi)))
        .collect();

    if !user.is_empty() {
        let resolved = resolve_input_shapes(&label, &inputs, user)?;
        let g = model.graph_mut();
        for ((name, _), shape) in inputs.iter().zip(&resolved) {
            if let Some(vi) = g.input.iter_mut().find(|v| &v.name == name) {
                if let Some(dims) = dims_mut(vi) {
                    *dims = shape.iter().map(|&d| fixed_dim(d)).collect();
                    report.note(format!("input {name} fixed to {shape:?}"));
                }
            }
        }
    }
    let inputs: Vec<(String, Vec<Dim>)> = model
        .true_inputs()
        .iter()
        .map(|vi| (vi.name.clone(), declared(vi)))
        .collect();
    let all_fixed = inputs
        .iter()
        .all(|(_, d)| !d.is_empty() && d.iter().all(|x| matches!(x, Dim::Fixed(_))));

    let inferred = if all_fixed {
        infer(model, &inputs)
    } else {
        Ok(HashMap::new())
    };
    let inferred = match inferred {
        Ok(s) => s,
        // A broken operator rule (an axis outside the rank) is refused, not cleaned around.
        Err(e @ crate::Error::Runtime(edgeslim_runtime::RuntimeError::Invalid { .. })) => {
            return Err(e)
        }
        Err(e) => {
            log::warn!("shape inference failed, clearing free symbols only: {e}");
            HashMap::new()
        }
    };
    let input_symbols: HashSet<String> = inputs
        .iter()
        .flat_map(|(_, d)| d.iter())
        .filter_map(|d| match d {
            Dim::Symbolic(s) if s != "?" => Some(s.clone()),
            _ => None,
        })
        .collect();

    let g = model.graph_mut();
    for (kind, list) in [("output", &mut g.output), ("value_info", &mut g.value_info)] {
        for vi in list.iter_mut() {
            let before = declared(vi);
            if before.is_empty() {
                continue;
            }
            let name = vi.name.clone();
            let Some(dims) = dims_mut(vi) else { continue };
            if let Some(shape) = inferred.get(&name) {
                let agrees = before.len() == shape.len()
                    && before
                        .iter()
                        .zip(shape)
                        .all(|(d, s)| matches!(d, Dim::Fixed(f) if f == s));
                if !agrees {
                    *dims = shape.iter().map(|&d| fixed_dim(d)).collect();
                    report.note(format!("{kind} {name}: {} -> {shape:?}", describe(&before)));
                }
                continue;
            }
            let mut changed = false;
            for d in dims.iter_mut() {
                if let Some(DimValue::DimParam(p)) = &d.value {
                    if !input_symbols.contains(p) {
                        d.value = None;
                        changed = true;
                    }
                }
            }
            if changed {
                report.note(format!(
                    "{kind} {name}: {} -> free symbols cleared",
                    describe(&before)
                ));
            }
        }
    }
    Ok(report)
}

/// Shapes of every named tensor with the inputs at their (fixed) declared shapes.
fn infer(model: &OnnxModel, inputs: &[(String, Vec<Dim>)]) -> Result<HashMap<String, Vec<usize>>> {
    let shapes = inputs
        .iter()
        .map(|(name, dims)| InputShape {
            name: Some(name.clone()),
            dims: dims
                .iter()
                .map(|d| match d {
                    Dim::Fixed(f) => *f,
                    Dim::Symbolic(_) => 1,
                })
                .collect(),
        })
        .collect();
    let opts = LoadOptions {
        input_shapes: shapes,
        ignore_declared_facts: true,
        ..Default::default()
    };
    let label = PathBuf::from(model.label());
    let typed = TypedOnnx::from_bytes(
        model.to_bytes()?,
        &label,
        None,
        &opts,
        std::time::Instant::now(),
    )
    .map_err(Error::from)?;
    Ok(typed.tensor_shapes)
}
