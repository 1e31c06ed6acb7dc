//! Attribute rules of the operators tract would otherwise trust: window sizes, strides,
//! dilations, pads, groups, slice steps, BatchNorm statistics.

use super::tensors::float_values;
use super::Scope;
use crate::Result;
use tract_onnx::pb;

/// The largest window, step or pad accepted along one axis.
pub const MAX_EXTENT: i64 = 1 << 24;

fn ints<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a [i64]> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.as_slice())
}

fn int(node: &pb::NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// The weights' first axis splits into `group` equal parts (Conv: M outputs; ConvTranspose: C
/// inputs), known from a constant weight before typing. A host pass does not type the model,
/// so without this `optimize` wrote a Conv with group = 2^40 that ONNX Runtime refuses.
fn check_group_divides_weights(scope: &Scope, label: &str, node: &pb::NodeProto) -> Result<()> {
    let group = int(node, "group").unwrap_or(1);
    let weight = match node.op_type.as_str() {
        "Conv" | "ConvTranspose" | "ConvInteger" => node.input.get(1),
        _ => node.input.get(3), // QLinearConv: x, x_scale, x_zero_point, w
    };
    let Some((_, dims)) = weight.and_then(|w| scope.known(w)) else {
        return Ok(());
    };
    let Some(&first) = dims.first() else {
        return Ok(());
    };
    if group > 0 && first % group as u64 != 0 {
        return Err(scope.invalid(
            label,
            format!(
                "group = {group} does not divide the weights' first axis of {first} ({dims:?})"
            ),
        ));
    }
    Ok(())
}

fn float(node: &pb::NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

/// Inputs an op cannot do without (the smallest count over the opsets tract reads; later
/// inputs may be optional). tract's rules index `inputs[0]` unchecked: a Flatten without an
/// input panicked while typing (found by cargo fuzz).
fn required_inputs(op: &str) -> usize {
    match op {
        "BatchNormalization" => 5,
        "InstanceNormalization" | "Where" => 3,
        "Conv" | "ConvTranspose" | "Gemm" | "MatMul" | "Add" | "Sub" | "Mul" | "Div" | "Pow"
        | "Mod" | "PRelu" | "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual"
        | "And" | "Or" | "Xor" | "Expand" | "Tile" | "Gather" | "GatherElements"
        | "LayerNormalization" | "CumSum" => 2,
        "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Neg" | "Abs" | "Sqrt" | "Reciprocal"
        | "HardSigmoid" | "HardSwish" | "LeakyRelu" | "Elu" | "Selu" | "Softplus" | "Softsign"
        | "Cast" | "Identity" | "Dropout" | "Softmax" | "LogSoftmax" | "Hardmax" | "MaxPool"
        | "AveragePool" | "LpPool" | "GlobalAveragePool" | "GlobalMaxPool" | "LRN" | "Erf"
        | "Floor" | "Ceil" | "Round" | "Sign" | "Not" | "Transpose" | "Flatten" | "Shape"
        | "Size" | "Squeeze" | "Unsqueeze" | "ArgMax" | "ArgMin" | "Split" | "Clip" | "Pad"
        | "Resize" | "Upsample" | "DepthToSpace" | "SpaceToDepth" | "Gelu" | "Mish" | "Sin"
        | "Cos" | "TopK" | "Reshape" | "Slice" | "Concat" | "Sum" | "Max" | "Min" | "Mean"
        | "ConstantOfShape" => 1,
        op if op.starts_with("Reduce") => 1,
        _ => 0,
    }
}

pub(super) fn check_node(scope: &Scope, label: &str, node: &pb::NodeProto) -> Result<()> {
    let required = required_inputs(&node.op_type);
    if let Some(missing) = (0..required).find(|&i| node.input.get(i).is_none_or(|n| n.is_empty())) {
        return Err(scope.invalid(
            label,
            format!(
                "input {missing} is missing ({} needs at least {required})",
                node.op_type
            ),
        ));
    }
    match node.op_type.as_str() {
        "Conv" | "ConvTranspose" | "ConvInteger" | "QLinearConv" => {
            check_window(scope, label, node, false)?;
            if let Some(g) = int(node, "group").filter(|&g| g < 1) {
                return Err(scope.invalid(label, format!("group = {g}; it must be at least 1")));
            }
            check_group_divides_weights(scope, label, node)?;
        }
        "MaxPool" | "AveragePool" | "LpPool" => {
            if ints(node, "kernel_shape").is_none_or(|k| k.is_empty()) {
                return Err(scope.invalid(label, "has no kernel_shape (it is required)"));
            }
            check_window(scope, label, node, true)?;
        }
        "Slice" => {
            // steps is the fifth input (opset 10+); older opsets have no steps.
            if let Some(steps) = node.input.get(4).and_then(|s| scope.const_ints(s)) {
                if steps.contains(&0) {
                    return Err(scope.invalid(label, format!("steps {steps:?} contain 0")));
                }
            }
        }
        "BatchNormalization" => check_batchnorm(scope, label, node)?,
        "Cast" => {
            // An element type ONNX does not define: ONNX Runtime refuses it; `optimize`,
            // which does not type the model, wrote it.
            let to = int(node, "to").unwrap_or(0);
            let known = i32::try_from(to)
                .ok()
                .and_then(|t| pb::tensor_proto::DataType::try_from(t).ok())
                .is_some_and(|t| t != pb::tensor_proto::DataType::Undefined);
            if !known {
                return Err(scope.invalid(label, format!("to = {to} is not an ONNX element type")));
            }
        }
        "Transpose" => {
            // tract loops allocating on a repeated axis (perm [0, 0, 1]).
            if let Some(perm) = ints(node, "perm") {
                let mut sorted = perm.to_vec();
                sorted.sort_unstable();
                if sorted != (0..perm.len() as i64).collect::<Vec<_>>() {
                    return Err(scope.invalid(
                        label,
                        format!("perm {perm:?} is not a permutation of 0..{}", perm.len()),
                    ));
                }
            }
        }
        "LRN" => {
            if let Some(s) = int(node, "size").filter(|&s| s < 1) {
                return Err(scope.invalid(label, format!("size = {s}; it must be at least 1")));
            }
        }
        "DepthToSpace" | "SpaceToDepth" => {
            if let Some(b) = int(node, "blocksize").filter(|&b| b < 1) {
                return Err(scope.invalid(label, format!("blocksize = {b}; it must be at least 1")));
            }
        }
        _ => {}
    }
    Ok(())
}

/// kernel_shape, strides and dilations positive and of one length; pads non-negative with two
/// entries per spatial axis. Pooling windows must also be larger than their padding.
fn check_window(scope: &Scope, label: &str, node: &pb::NodeProto, pool: bool) -> Result<()> {
    let kernel = ints(node, "kernel_shape");
    let mut spatial: Option<usize> = kernel.map(|k| k.len());
    for name in ["kernel_shape", "strides", "dilations"] {
        let Some(v) = ints(node, name) else { continue };
        if let Some(bad) = v.iter().find(|&&x| x < 1) {
            return Err(scope.invalid(
                label,
                format!("{name} {v:?} holds {bad}; every entry must be at least 1"),
            ));
        }
        // tract walks a window's extent while typing: a dilation of 2^31 spins for minutes.
        // No board image is 2^24 pixels along one axis, so no window or step may be either.
        if let Some(big) = v.iter().find(|&&x| x > MAX_EXTENT) {
            return Err(scope.invalid(
                label,
                format!("{name} {v:?} holds {big}, over the largest extent {MAX_EXTENT}"),
            ));
        }
        match spatial {
            Some(n) if n != v.len() && !v.is_empty() => {
                return Err(scope.invalid(
                    label,
                    format!("{name} has {} entries for {n} spatial axes", v.len()),
                ))
            }
            None if !v.is_empty() => spatial = Some(v.len()),
            _ => {}
        }
    }
    // The dilated window, with the kernel from the weights when the attribute is absent.
    let kernel_dims: Option<Vec<i64>> = kernel.map(|k| k.to_vec()).or_else(|| {
        let (_, w) = scope.known(node.input.get(1)?)?;
        (w.len() > 2).then(|| w[2..].iter().map(|&d| d as i64).collect())
    });
    if let (Some(k), Some(d)) = (kernel_dims, ints(node, "dilations")) {
        for (kk, dd) in k.iter().zip(d) {
            let extent = (*kk as i128 - 1) * *dd as i128 + 1;
            if extent > MAX_EXTENT as i128 {
                return Err(scope.invalid(
                    label,
                    format!("the dilated window ({kk} taps, dilation {dd}) spans {extent}, over the largest extent {MAX_EXTENT}"),
                ));
            }
        }
    }
    if let Some(pads) = ints(node, "pads").filter(|p| !p.is_empty()) {
        if let Some(big) = pads.iter().find(|&&p| p > MAX_EXTENT) {
            return Err(scope.invalid(
                label,
                format!("pads {pads:?} hold {big}, over the largest extent {MAX_EXTENT}"),
            ));
        }
        if let Some(bad) = pads.iter().find(|&&p| p < 0) {
            return Err(scope.invalid(label, format!("pads {pads:?} hold {bad}; pads are >= 0")));
        }
        let ok_len = match spatial {
            Some(n) => pads.len() == 2 * n,
            None => pads.len() % 2 == 0,
        };
        if !ok_len {
            return Err(scope.invalid(
                label,
                format!(
                    "pads has {} entries; it needs two per spatial axis ({})",
                    pads.len(),
                    spatial.map_or("an even count".to_string(), |n| format!("{}", 2 * n))
                ),
            ));
        }
        if let (true, Some(k)) = (pool, kernel) {
            let n = k.len();
            for (axis, &kk) in k.iter().enumerate() {
                let (begin, end) = (pads[axis], pads[axis + n]);
                if begin >= kk || end >= kk {
                    return Err(scope.invalid(
                        label,
                        format!(
                            "pads {pads:?} are not smaller than the window {k:?} on axis {axis}"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// epsilon finite and non-negative, variance finite and non-negative: otherwise the square
/// root is NaN, which engines disagree about (tract folds it into finite numbers).
fn check_batchnorm(scope: &Scope, label: &str, node: &pb::NodeProto) -> Result<()> {
    if let Some(eps) = float(node, "epsilon").filter(|e| !e.is_finite() || *e < 0.0) {
        return Err(scope.invalid(
            label,
            format!("epsilon = {eps}; it must be finite and >= 0"),
        ));
    }
    if let Some(var) = node
        .input
        .get(4)
        .and_then(|v| scope.constants.get(v.as_str()))
        .and_then(|t| float_values(t))
    {
        if let Some((i, v)) = var
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite() || **v < 0.0)
        {
            return Err(scope.invalid(
                label,
                format!("variance[{i}] = {v}; a variance must be finite and >= 0"),
            ));
        }
    }
    Ok(())
}
