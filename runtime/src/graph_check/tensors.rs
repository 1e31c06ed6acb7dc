//! Stored tensors (initializers, `Constant` values): a known element type, dims that are not
//! negative, exactly as many values as the dims say, and a size inside the budget.

use super::Scope;
use crate::Result;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

/// Bytes per element of a fixed-size ONNX element type; `None` for STRING and the packed
/// sub-byte and 8-bit float types, whose stored size is not a plain product.
pub fn element_size(data_type: i32) -> Option<u64> {
    use DataType as D;
    let size = match DataType::try_from(data_type).ok()? {
        D::Uint8 | D::Int8 | D::Bool => 1,
        D::Uint16 | D::Int16 | D::Float16 | D::Bfloat16 => 2,
        D::Float | D::Int32 | D::Uint32 => 4,
        D::Int64 | D::Double | D::Uint64 | D::Complex64 => 8,
        D::Complex128 => 16,
        _ => return None,
    };
    Some(size)
}

pub(super) fn check_tensor(scope: &Scope, owner: &str, t: &pb::TensorProto) -> Result<()> {
    let what = if t.name.is_empty() || owner.starts_with("initializer") {
        owner.to_string()
    } else {
        format!("{owner}: tensor '{}'", t.name)
    };
    if t.data_type == DataType::Undefined as i32 || DataType::try_from(t.data_type).is_err() {
        return Err(scope.invalid(&what, format!("unknown element type {}", t.data_type)));
    }
    if let Some(d) = t.dims.iter().find(|&&d| d < 0) {
        return Err(scope.invalid(&what, format!("negative dimension {d} in {:?}", t.dims)));
    }
    let elements: u128 = t.dims.iter().map(|&d| d as u128).product();
    let is_string = t.data_type == DataType::String as i32;
    if is_string && !t.raw_data.is_empty() {
        return Err(scope.invalid(
            &what,
            "a STRING tensor stored as raw bytes (ONNX keeps strings in string_data)",
        ));
    }
    let elem = element_size(t.data_type);
    let bytes = elements * elem.unwrap_or(1) as u128;
    if bytes > scope.budget as u128 {
        return Err(scope.invalid(
            &what,
            format!(
                "dims {:?} need {bytes} bytes, over the limit of {} bytes",
                t.dims, scope.budget
            ),
        ));
    }
    if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32) {
        return Ok(()); // its bytes live in another file, checked when they are read
    }
    if !t.raw_data.is_empty() {
        if let Some(elem) = elem {
            let need = elements * elem as u128;
            if t.raw_data.len() as u128 != need {
                return Err(scope.invalid(
                    &what,
                    format!(
                        "holds {} raw bytes, its dims {:?} need {need}",
                        t.raw_data.len(),
                        t.dims
                    ),
                ));
            }
        }
        return Ok(());
    }
    if let Some(stored) = typed_value_count(t) {
        if stored != elements {
            return Err(scope.invalid(
                &what,
                format!(
                    "holds {stored} values, its dims {:?} need {elements}",
                    t.dims
                ),
            ));
        }
    }
    Ok(())
}

/// How many values a tensor keeps in its typed field (not raw bytes), for the types whose
/// field is unambiguous.
fn typed_value_count(t: &pb::TensorProto) -> Option<u128> {
    use DataType as D;
    let n = match DataType::try_from(t.data_type).ok()? {
        D::Float => t.float_data.len(),
        D::Complex64 => t.float_data.len() / 2,
        D::Int64 => t.int64_data.len(),
        D::Double => t.double_data.len(),
        D::Complex128 => t.double_data.len() / 2,
        D::Uint32 | D::Uint64 => t.uint64_data.len(),
        D::String => t.string_data.len(),
        D::Int32 | D::Int16 | D::Int8 | D::Uint8 | D::Uint16 | D::Bool | D::Float16 => {
            t.int32_data.len()
        }
        _ => return None,
    };
    Some(n as u128)
}

/// The values of a small integer constant (a shape, repeats, steps, axes).
pub(super) fn int_values(t: &pb::TensorProto) -> Option<Vec<i64>> {
    use DataType as D;
    match DataType::try_from(t.data_type).ok()? {
        D::Int64 if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        D::Int64 => Some(t.int64_data.clone()),
        D::Int32 if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i64)
                .collect(),
        ),
        D::Int32 => Some(t.int32_data.iter().map(|&v| v as i64).collect()),
        _ => None,
    }
}

/// The values of a float constant (BatchNorm statistics).
pub(super) fn float_values(t: &pb::TensorProto) -> Option<Vec<f32>> {
    match DataType::try_from(t.data_type).ok()? {
        DataType::Float if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                .collect(),
        ),
        DataType::Float => Some(t.float_data.clone()),
        _ => None,
    }
}
