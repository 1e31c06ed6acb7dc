//! A PyTorch state dict as an importer reads it: tensors by key with their shapes checked,
//! convolutions with their batch norms folded in, and a record of what was read, so a
//! checkpoint with weights the architecture does not use is refused instead of half-imported.

use crate::{Error, Result};
use edgeslim_data::torch::{self, Values};
use edgeslim_onnx::Tensor;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub struct StateDict {
    label: String,
    tensors: BTreeMap<String, torch::Tensor>,
    read: RefCell<BTreeSet<String>>,
}

/// A convolution with its batch norm folded in: `W' = W·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`.
pub struct FoldedConv {
    /// `[out, in/groups, kh, kw]`.
    pub weight: Tensor,
    pub bias: Tensor,
}

impl FoldedConv {
    pub fn out_channels(&self) -> usize {
        self.weight.dims[0]
    }
    pub fn in_per_group(&self) -> usize {
        self.weight.dims[1]
    }
    pub fn kernel(&self) -> usize {
        self.weight.dims[2]
    }
}

impl StateDict {
    /// Read a checkpoint file (legacy or zip format).
    pub fn read(path: &Path) -> Result<StateDict> {
        StateDict::new(&path.display().to_string(), torch::read(path)?)
    }

    pub fn new(label: &str, tensors: Vec<torch::Tensor>) -> Result<StateDict> {
        let mut map = BTreeMap::new();
        for t in tensors {
            let name = t.name.clone();
            if map.insert(name.clone(), t).is_some() {
                return Err(Error::Invalid(format!(
                    "{label}: tensor '{name}' appears twice"
                )));
            }
        }
        Ok(StateDict {
            label: label.to_string(),
            tensors: map,
            read: RefCell::new(BTreeSet::new()),
        })
    }

    /// The file (or description) the tensors came from, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The tensor `key` as stored, marked as read.
    pub fn tensor(&self, key: &str) -> Result<&torch::Tensor> {
        let t = self.tensors.get(key).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no tensor '{key}': not a checkpoint of the architecture being imported",
                self.label
            ))
        })?;
        self.read.borrow_mut().insert(key.to_string());
        Ok(t)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The float tensor `key`, whose shape must be `expected` where given (`None` = any size
    /// along that axis).
    pub fn float(&self, key: &str, expected: &[Option<usize>]) -> Result<(Vec<usize>, &[f32])> {
        let t = self.tensor(key)?;
        let fits = t.shape.len() == expected.len()
            && t.shape
                .iter()
                .zip(expected)
                .all(|(&d, e)| e.is_none_or(|e| e == d));
        if !fits {
            let want: Vec<String> = expected
                .iter()
                .map(|e| e.map_or("?".to_string(), |v| v.to_string()))
                .collect();
            return Err(Error::Invalid(format!(
                "{}: tensor '{key}' has shape {:?}, the architecture needs [{}]",
                self.label,
                t.shape,
                want.join(", ")
            )));
        }
        let Values::F32(v) = &t.values else {
            return Err(Error::Invalid(format!(
                "{}: tensor '{key}' holds integers, the architecture needs floats",
                self.label
            )));
        };
        Ok((t.shape.clone(), v))
    }

    /// Convolution `conv` (`conv.weight`, no bias) followed by batch norm `bn`.
    pub fn conv_bn(&self, conv: &str, bn: &str, eps: f32) -> Result<FoldedConv> {
        let (shape, w) = self.float(&format!("{conv}.weight"), &[None, None, None, None])?;
        let out = shape[0];
        let per = [Some(out)];
        let (_, gamma) = self.float(&format!("{bn}.weight"), &per)?;
        let (_, beta) = self.float(&format!("{bn}.bias"), &per)?;
        let (_, mean) = self.float(&format!("{bn}.running_mean"), &per)?;
        let (_, var) = self.float(&format!("{bn}.running_var"), &per)?;
        // Counters only: never used at inference.
        self.read
            .borrow_mut()
            .insert(format!("{bn}.num_batches_tracked"));
        let per_out = w.len() / out.max(1);
        let mut weight = Vec::with_capacity(w.len());
        let mut bias = Vec::with_capacity(out);
        for o in 0..out {
            // In f64: the fold should not be where the import loses precision.
            let scale = gamma[o] as f64 / (var[o] as f64 + eps as f64).sqrt();
            weight.extend(
                w[o * per_out..(o + 1) * per_out]
                    .iter()
                    .map(|&x| (x as f64 * scale) as f32),
            );
            bias.push((beta[o] as f64 - mean[o] as f64 * scale) as f32);
        }
        Ok(FoldedConv {
            weight: Tensor::f32(shape, weight)?,
            bias: Tensor::f32(vec![out], bias)?,
        })
    }

    /// Convolution `conv`'s weight and batch norm `bn`'s (scale, bias, mean, variance), as
    /// stored: for graphs that keep the BatchNormalization node.
    pub fn conv_and_bn(&self, conv: &str, bn: &str) -> Result<(Tensor, [Tensor; 4])> {
        let (shape, w) = self.float(&format!("{conv}.weight"), &[None, None, None, None])?;
        let out = shape[0];
        let weight = Tensor::f32(shape, w.to_vec())?;
        let get = |k: &str| -> Result<Tensor> {
            let (_, v) = self.float(&format!("{bn}.{k}"), &[Some(out)])?;
            Tensor::f32(vec![out], v.to_vec())
        };
        let bn_tensors = [
            get("weight")?,
            get("bias")?,
            get("running_mean")?,
            get("running_var")?,
        ];
        self.read
            .borrow_mut()
            .insert(format!("{bn}.num_batches_tracked"));
        Ok((weight, bn_tensors))
    }

    /// Fail naming the tensors that were never read: a checkpoint of a related but
    /// different architecture (squeeze-excitation blocks, an extra head) must not import
    /// as if those weights did not exist.
    pub fn check_all_used(&self) -> Result<()> {
        let read = self.read.borrow();
        let unused: Vec<&str> = self
            .tensors
            .keys()
            .filter(|k| !read.contains(*k))
            .map(String::as_str)
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = unused.iter().take(5).copied().collect();
        Err(Error::Invalid(format!(
            "{}: {} tensor(s) the architecture does not use ({}{}): not a checkpoint of this architecture",
            self.label,
            unused.len(),
            shown.join(", "),
            if unused.len() > shown.len() { ", ..." } else { "" }
        )))
    }
}
