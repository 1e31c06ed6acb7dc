//! Between the IR's tensors (`onnx::Tensor`) and candle's.
//!
//! Inside the engine there are three element kinds: the engine float (f32, or f64 for
//! gradient checks), int64 for every integer type (shape arithmetic needs no other width) and
//! u8 for bool. Weights are written back in the element type the model stored them in.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use edgeslim_onnx::{Tensor as OnnxTensor, TensorData};
use half::f16;

fn cerr(name: &str, e: candle_core::Error) -> Error {
    Error::tensor(name, e.to_string().lines().next().unwrap_or("").to_string())
}

/// An IR tensor as a candle tensor: floats in `float`, integers as i64, bools as u8.
pub(crate) fn to_candle(name: &str, t: &OnnxTensor, float: DType) -> Result<Tensor> {
    let dev = Device::Cpu;
    let dims = t.dims.clone();
    let r = match &t.data {
        TensorData::F32(v) => Tensor::from_slice(v, dims, &dev).and_then(|t| t.to_dtype(float)),
        TensorData::F64(v) => Tensor::from_slice(v, dims, &dev).and_then(|t| t.to_dtype(float)),
        TensorData::F16(v) => {
            let f: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
            Tensor::from_vec(f, dims, &dev).and_then(|t| t.to_dtype(float))
        }
        TensorData::I64(v) => Tensor::from_slice(v, dims, &dev),
        TensorData::I32(v) => {
            Tensor::from_vec(v.iter().map(|&x| x as i64).collect::<Vec<_>>(), dims, &dev)
        }
        TensorData::I8(v) => {
            Tensor::from_vec(v.iter().map(|&x| x as i64).collect::<Vec<_>>(), dims, &dev)
        }
        TensorData::U8(v) => {
            Tensor::from_vec(v.iter().map(|&x| x as i64).collect::<Vec<_>>(), dims, &dev)
        }
        TensorData::Bool(v) => {
            Tensor::from_vec(v.iter().map(|&x| x as u8).collect::<Vec<_>>(), dims, &dev)
        }
    };
    r.map_err(|e| cerr(name, e))
}

/// A float candle tensor as an IR tensor in the element type of `like` (f32, f64 or f16).
pub(crate) fn to_onnx(name: &str, t: &Tensor, like: &TensorData) -> Result<OnnxTensor> {
    let dims = t.dims().to_vec();
    let flat = t.flatten_all().map_err(|e| cerr(name, e))?;
    let data = match like {
        TensorData::F64(_) => TensorData::F64(
            flat.to_dtype(DType::F64)
                .and_then(|t| t.to_vec1::<f64>())
                .map_err(|e| cerr(name, e))?,
        ),
        TensorData::F16(_) | TensorData::F32(_) => {
            let v = flat
                .to_dtype(DType::F32)
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| cerr(name, e))?;
            if matches!(like, TensorData::F16(_)) {
                TensorData::F16(v.into_iter().map(f16::from_f32).collect())
            } else {
                TensorData::F32(v)
            }
        }
        _ => return Err(Error::tensor(name, "only float tensors are written back")),
    };
    OnnxTensor::new(dims, data)
}

/// An empty `TensorData` of the same variant, to remember a weight's stored type.
pub(crate) fn same_kind(d: &TensorData) -> TensorData {
    match d {
        TensorData::F64(_) => TensorData::F64(vec![]),
        TensorData::F16(_) => TensorData::F16(vec![]),
        _ => TensorData::F32(vec![]),
    }
}
