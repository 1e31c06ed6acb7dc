//! Typed tensors and their conversion from and to ONNX `TensorProto`.
//!
//! Element counts are checked against the bytes actually present before anything is
//! allocated, so a tensor declaring absurd dimensions is an error, not an allocation.

use crate::{Error, Result};
use half::f16;
use ndarray::{ArrayD, IxDyn};
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::TensorProto;
use protobuf::Enum;

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dims: Vec<usize>,
    pub data: TensorData,
}

/// Number of elements of `dims`, or an error if the product overflows.
pub fn element_count(name: &str, dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| Error::tensor(name, format!("dimensions {dims:?} overflow")))
    })
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn data_type(&self) -> DataType {
        match self {
            TensorData::F32(_) => DataType::FLOAT,
            TensorData::F64(_) => DataType::DOUBLE,
            TensorData::F16(_) => DataType::FLOAT16,
            TensorData::I64(_) => DataType::INT64,
            TensorData::I32(_) => DataType::INT32,
            TensorData::I8(_) => DataType::INT8,
            TensorData::U8(_) => DataType::UINT8,
            TensorData::Bool(_) => DataType::BOOL,
        }
    }
}

/// Is this ONNX element type a floating-point one (what we count as parameters)?
pub fn is_float_type(data_type: i32) -> bool {
    [
        DataType::FLOAT,
        DataType::DOUBLE,
        DataType::FLOAT16,
        DataType::BFLOAT16,
    ]
    .iter()
    .any(|t| t.value() == data_type)
}

/// Bytes per element of an ONNX element type, where fixed.
pub fn element_size(data_type: i32) -> Option<usize> {
    let t = DataType::from_i32(data_type)?;
    Some(match t {
        DataType::FLOAT | DataType::INT32 | DataType::UINT32 => 4,
        DataType::DOUBLE | DataType::INT64 | DataType::UINT64 => 8,
        DataType::FLOAT16 | DataType::BFLOAT16 | DataType::INT16 | DataType::UINT16 => 2,
        DataType::INT8 | DataType::UINT8 | DataType::BOOL => 1,
        _ => return None,
    })
}

/// Declared dims of a proto as usize, refusing negative values.
pub fn proto_dims(p: &TensorProto) -> Result<Vec<usize>> {
    p.dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                Error::tensor(&p.name, format!("negative dimension {d} in {:?}", p.dims))
            })
        })
        .collect()
}

/// Element count of a proto from the data it actually holds (no decoding).
pub fn stored_element_count(p: &TensorProto) -> Result<usize> {
    if p.data_location.enum_value() == Ok(DataLocation::EXTERNAL) {
        // External tensors are resolved at load; count from declared dims.
        return element_count(&p.name, &proto_dims(p)?);
    }
    if !p.raw_data.is_empty() {
        let size = element_size(p.data_type).ok_or_else(|| {
            Error::tensor(
                &p.name,
                format!("element type {} has no fixed size", p.data_type),
            )
        })?;
        return Ok(p.raw_data.len() / size);
    }
    Ok(p.float_data.len()
        + p.int32_data.len()
        + p.int64_data.len()
        + p.double_data.len()
        + p.uint64_data.len()
        + p.string_data.len())
}

fn from_le<T, const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks_exact gives N bytes")))
        .collect()
}

impl Tensor {
    pub fn new(dims: Vec<usize>, data: TensorData) -> Result<Tensor> {
        let n = element_count("(new)", &dims)?;
        if n != data.len() {
            return Err(Error::tensor(
                "(new)",
                format!("dims {dims:?} hold {n} elements, data has {}", data.len()),
            ));
        }
        Ok(Tensor { dims, data })
    }

    pub fn f32(dims: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        Tensor::new(dims, TensorData::F32(data))
    }

    pub fn i64(dims: Vec<usize>, data: Vec<i64>) -> Result<Tensor> {
        Tensor::new(dims, TensorData::I64(data))
    }

    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor {
            dims: vec![],
            data: TensorData::F32(vec![v]),
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn is_float(&self) -> bool {
        matches!(
            self.data,
            TensorData::F32(_) | TensorData::F64(_) | TensorData::F16(_)
        )
    }

    /// Values as f32 (float types converted, integers cast).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
        }
    }

    /// Values as i64 (for shape-like tensors).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        match &self.data {
            TensorData::I64(v) => Some(v.clone()),
            TensorData::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::I8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::U8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            _ => None,
        }
    }

    pub fn to_array_f32(&self) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(&self.dims), self.to_f32_vec())
            .expect("dims checked at construction")
    }

    pub fn from_array_f32(a: &ArrayD<f32>) -> Tensor {
        Tensor {
            dims: a.shape().to_vec(),
            data: TensorData::F32(a.iter().copied().collect()),
        }
    }

    /// Decode a proto whose data is in memory (external data must be resolved first).
    pub fn from_proto(p: &TensorProto) -> Result<Tensor> {
        let name = p.name.as_str();
        if p.data_location.enum_value() == Ok(DataLocation::EXTERNAL) {
            return Err(Error::tensor(
                name,
                "data is in an external file that was not loaded",
            ));
        }
        let dims = proto_dims(p)?;
        let n = element_count(name, &dims)?;
        let dt = DataType::from_i32(p.data_type)
            .ok_or_else(|| Error::tensor(name, format!("unknown element type {}", p.data_type)))?;
        let raw = &p.raw_data;
        let have = stored_element_count(p)?;
        if have != n {
            return Err(Error::tensor(
                name,
                format!("dims {dims:?} need {n} elements, the file holds {have}"),
            ));
        }
        let data = if !raw.is_empty() {
            match dt {
                DataType::FLOAT => TensorData::F32(from_le(raw, f32::from_le_bytes)),
                DataType::DOUBLE => TensorData::F64(from_le(raw, f64::from_le_bytes)),
                DataType::FLOAT16 => TensorData::F16(from_le(raw, |b: [u8; 2]| {
                    f16::from_bits(u16::from_le_bytes(b))
                })),
                DataType::BFLOAT16 => TensorData::F32(from_le(raw, |b: [u8; 2]| {
                    f32::from_bits((u16::from_le_bytes(b) as u32) << 16)
                })),
                DataType::INT64 => TensorData::I64(from_le(raw, i64::from_le_bytes)),
                DataType::INT32 => TensorData::I32(from_le(raw, i32::from_le_bytes)),
                DataType::INT8 => TensorData::I8(raw.iter().map(|&b| b as i8).collect()),
                DataType::UINT8 => TensorData::U8(raw.clone()),
                DataType::BOOL => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
                other => {
                    return Err(Error::tensor(
                        name,
                        format!("element type {other:?} is not supported"),
                    ))
                }
            }
        } else {
            match dt {
                DataType::FLOAT => TensorData::F32(p.float_data.clone()),
                DataType::DOUBLE => TensorData::F64(p.double_data.clone()),
                DataType::FLOAT16 => TensorData::F16(
                    p.int32_data
                        .iter()
                        .map(|&b| f16::from_bits(b as u16))
                        .collect(),
                ),
                DataType::BFLOAT16 => TensorData::F32(
                    p.int32_data
                        .iter()
                        .map(|&b| f32::from_bits((b as u32 & 0xffff) << 16))
                        .collect(),
                ),
                DataType::INT64 => TensorData::I64(p.int64_data.clone()),
                DataType::INT32 => TensorData::I32(p.int32_data.clone()),
                DataType::INT8 => TensorData::I8(p.int32_data.iter().map(|&b| b as i8).collect()),
                DataType::UINT8 => TensorData::U8(p.int32_data.iter().map(|&b| b as u8).collect()),
                DataType::BOOL => TensorData::Bool(p.int32_data.iter().map(|&b| b != 0).collect()),
                other => {
                    return Err(Error::tensor(
                        name,
                        format!("element type {other:?} is not supported"),
                    ))
                }
            }
        };
        Ok(Tensor { dims, data })
    }

    /// Encode as a proto with little-endian `raw_data` (the compact form exporters use).
    pub fn to_proto(&self, name: &str) -> TensorProto {
        let mut p = TensorProto::new();
        p.name = name.to_string();
        p.dims = self.dims.iter().map(|&d| d as i64).collect();
        p.data_type = self.data.data_type().value();
        p.raw_data = match &self.data {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F16(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8).collect(),
        };
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_typed_fields_decode_alike() {
        let t = Tensor::f32(vec![2, 2], vec![1.0, -2.5, 3.0, 0.125]).unwrap();
        let p = t.to_proto("w");
        assert_eq!(Tensor::from_proto(&p).unwrap(), t);
        let mut typed = TensorProto::new();
        typed.name = "w".into();
        typed.dims = vec![2, 2];
        typed.data_type = DataType::FLOAT.value();
        typed.float_data = vec![1.0, -2.5, 3.0, 0.125];
        assert_eq!(Tensor::from_proto(&typed).unwrap(), t);
        let h = Tensor::new(
            vec![2],
            TensorData::F16(vec![f16::from_f32(0.5), f16::from_f32(-1.0)]),
        )
        .unwrap();
        assert_eq!(
            Tensor::from_proto(&h.to_proto("h")).unwrap().to_f32_vec(),
            vec![0.5, -1.0]
        );
    }

    #[test]
    fn absurd_dims_are_refused_without_allocating() {
        let mut p = TensorProto::new();
        p.name = "huge".into();
        p.dims = vec![1 << 40, 1 << 40];
        p.data_type = DataType::FLOAT.value();
        p.raw_data = vec![0; 16];
        let e = Tensor::from_proto(&p).unwrap_err().to_string();
        assert!(e.starts_with("tensor 'huge'"), "{e}");
        p.dims = vec![-1];
        assert!(Tensor::from_proto(&p)
            .unwrap_err()
            .to_string()
            .contains("negative"));
    }
}
