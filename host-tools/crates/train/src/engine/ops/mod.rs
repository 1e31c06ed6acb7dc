//! The ONNX operators the engine executes, each a small struct built once from its node
//! (attributes parsed at compile time) and run on candle tensors.
//!
//! Every op is written with differentiable candle primitives (or our own custom ops with a
//! backward pass), so autograd flows through it. candle's fused `softmax_last_dim`,
//! `ops::layer_norm` and `rms_norm` have no gradient and are never used here.

pub(crate) mod activation;
pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod im2col;
pub(crate) mod linear;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod resize;
pub(crate) mod shape;

use super::Mode;
use candle_core::{DType, Tensor, Var};
use edgeslim_runtime::input::SplitMix64;
use onnx_protobuf::NodeProto;
use std::collections::HashMap;
use std::sync::Mutex;

/// Why an op failed; the executor adds the node's name and op type.
#[derive(Debug)]
pub(crate) struct OpError(pub String);

impl From<candle_core::Error> for OpError {
    fn from(e: candle_core::Error) -> Self {
        // candle's errors can carry a backtrace on several lines: keep the first.
        let s = e.to_string();
        OpError(s.lines().next().unwrap_or("").to_string())
    }
}

impl From<String> for OpError {
    fn from(s: String) -> Self {
        OpError(s)
    }
}

impl From<&str> for OpError {
    fn from(s: &str) -> Self {
        OpError(s.to_string())
    }
}

pub(crate) type OpResult<T> = std::result::Result<T, OpError>;

macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::engine::ops::OpError(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// What a running op may look at besides its inputs.
pub(crate) struct RunCtx<'a> {
    pub mode: Mode,
    /// Float type of the engine (weights and activations).
    pub dtype: DType,
    /// Dropout's random stream; seeded, so runs repeat.
    pub rng: &'a Mutex<SplitMix64>,
}

/// What an op may look at while it is built.
pub(crate) struct BuildCtx<'a> {
    pub opset: i64,
    /// Batch-norm running statistics by tensor name, updated in place in training mode.
    pub stats: &'a HashMap<String, Var>,
}

pub(crate) trait Op: Send + Sync {
    /// Outputs in the node's output order; trailing optional outputs may be left out.
    fn run(&self, cx: &RunCtx, ins: &[Option<Tensor>]) -> OpResult<Vec<Tensor>>;

    /// Depends on the mode or on randomness, or changes state: never evaluated at compile
    /// time even when its inputs are constants.
    fn stateful(&self) -> bool {
        false
    }
}

/// Every op type `build` knows, for the "unsupported op" message.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "ArgMax",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceL2",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Upsample",
    "Where",
];

/// Build the op for `node`, or say why it cannot run here.
pub(crate) fn build(node: &NodeProto, cx: &BuildCtx) -> OpResult<Box<dyn Op>> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        bail!(
            "op '{}' of domain '{}' is not supported by the training engine",
            node.op_type,
            node.domain
        );
    }
    let a = Attrs(node);
    let op = node.op_type.as_str();
    if let Some(b) = elementwise::build(op, &a, cx)? {
        return Ok(b);
    }
    if let Some(b) = activation::build(op, &a, cx)? {
        return Ok(b);
    }
    if let Some(b) = shape::build(op, &a, cx)? {
        return Ok(b);
    }
    if let Some(b) = reduce::build(op, &a, cx)? {
        return Ok(b);
    }
    let b: Box<dyn Op> = match op {
        "Conv" => Box::new(conv::Conv::build(&a)?),
        "ConvTranspose" => Box::new(conv::ConvTranspose::build(&a)?),
        "Gemm" => Box::new(linear::Gemm::build(&a)?),
        "MatMul" => Box::new(linear::MatMul),
        "BatchNormalization" => Box::new(norm::BatchNorm::build(&a, cx)?),
        "LayerNormalization" => Box::new(norm::LayerNorm::build(&a)?),
        "InstanceNormalization" => Box::new(norm::InstanceNorm::build(&a)?),
        "MaxPool" | "AveragePool" => Box::new(pool::Pool::build(&a)?),
        "GlobalAveragePool" => Box::new(pool::GlobalPool { max: false }),
        "GlobalMaxPool" => Box::new(pool::GlobalPool { max: true }),
        "Resize" | "Upsample" => Box::new(resize::Resize::build(&a, cx)?),
        other => bail!(
            "op '{other}' is not supported by the training engine (it supports: {})",
            SUPPORTED_OPS.join(", ")
        ),
    };
    Ok(b)
}

// ---- attribute and input helpers ----------------------------------------------------------

/// Typed access to a node's attributes with ONNX defaults.
pub(crate) struct Attrs<'a>(pub &'a NodeProto);

impl Attrs<'_> {
    pub fn has(&self, name: &str) -> bool {
        self.0.attribute.iter().any(|a| a.name == name)
    }
    pub fn i(&self, name: &str, default: i64) -> i64 {
        edgeslim_onnx::node::attr_i(self.0, name).unwrap_or(default)
    }
    pub fn f(&self, name: &str, default: f32) -> f32 {
        edgeslim_onnx::node::attr_f(self.0, name).unwrap_or(default)
    }
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        edgeslim_onnx::node::attr_ints(self.0, name)
    }
    pub fn s(&self, name: &str, default: &str) -> String {
        edgeslim_onnx::node::attr_s(self.0, name).unwrap_or_else(|| default.to_string())
    }
    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        edgeslim_onnx::node::attr(self.0, name).map(|a| a.floats.clone())
    }
    /// Number of outputs the node names (non-empty).
    pub fn wants_output(&self, k: usize) -> bool {
        self.0.output.get(k).is_some_and(|o| !o.is_empty())
    }
}

/// A required input.
pub(crate) fn input(ins: &[Option<Tensor>], k: usize) -> OpResult<&Tensor> {
    match ins.get(k) {
        Some(Some(t)) => Ok(t),
        _ => bail!("input {k} is missing"),
    }
}

/// An optional input (absent, or named "").
pub(crate) fn opt_input(ins: &[Option<Tensor>], k: usize) -> Option<&Tensor> {
    ins.get(k).and_then(|t| t.as_ref())
}

/// The values of a small tensor as i64 (shapes, axes, indices).
pub(crate) fn ints_of(t: &Tensor) -> OpResult<Vec<i64>> {
    let t = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::I64 => t.to_vec1::<i64>()?,
        DType::U32 => t.to_vec1::<u32>()?.into_iter().map(i64::from).collect(),
        DType::U8 => t.to_vec1::<u8>()?.into_iter().map(i64::from).collect(),
        _ => t
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?
            .into_iter()
            .map(|v| v as i64)
            .collect(),
    })
}

/// The values of a small tensor as f64 (scalars such as Clip bounds, Resize scales).
pub(crate) fn floats_of(t: &Tensor) -> OpResult<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// One scalar value of a tensor input.
pub(crate) fn scalar_of(t: &Tensor) -> OpResult<f64> {
    let v = floats_of(t)?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => bail!("expected a scalar, got a tensor of shape {:?}", t.dims()),
    }
}

/// A possibly negative axis made absolute for a tensor of rank `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        bail!("axis {axis} is out of range for rank {rank}");
    }
    Ok(a as usize)
}

/// Numpy broadcasting of two shapes.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => bail!("shapes {a:?} and {b:?} do not broadcast"),
        };
    }
    Ok(out)
}

/// Is this tensor a float one (activations, weights) rather than an index or a mask?
pub(crate) fn is_float(t: &Tensor) -> bool {
    t.dtype().is_float()
}

/// Bring integer operands of a float op to the engine's float type.
pub(crate) fn as_float(t: &Tensor, dtype: DType) -> OpResult<Tensor> {
    if t.dtype() == dtype {
        Ok(t.clone())
    } else {
        Ok(t.to_dtype(dtype)?)
    }
}

/// Index tensor for `index_select` from usize positions.
pub(crate) fn index_tensor(idx: &[usize], device: &candle_core::Device) -> OpResult<Tensor> {
    let v: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    Ok(Tensor::from_vec(v, idx.len(), device)?)
}

/// `[1, c, 1, 1, ...]`: a per-channel vector shaped to broadcast over an NC... tensor.
pub(crate) fn channel_shape(rank: usize, c: usize) -> Vec<usize> {
    let mut s = vec![1; rank.max(2)];
    s[1] = c;
    s
}
