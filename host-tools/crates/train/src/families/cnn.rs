//! A small CNN classifier (MNIST-sized by default).
//!
//! ```text
//! x [N, C, H, W]
//!   features.{i}.conv  Conv 3×3 pad 1 (no bias)   ┐
//!   features.{i}.bn    BatchNormalization         │ for each width i
//!   features.{i}.relu  Relu                       │
//!   features.{i}.pool  MaxPool 2×2 stride 2       ┘
//!   flatten            Flatten
//!   classifier         Gemm → logits [N, classes]
//! ```
//! The batch dimension is symbolic (`N`), so training batches and single images both run.

use super::layers::Net;
use crate::{Error, Result};
use edgeslim_onnx::builder::D;
use edgeslim_onnx::OnnxModel;
use onnx_protobuf::tensor_proto::DataType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CnnConfig {
    pub in_channels: usize,
    pub image_size: usize,
    /// Output channels of each conv stage (each halves the spatial size).
    pub widths: Vec<usize>,
    pub classes: usize,
    pub seed: u64,
}

impl Default for CnnConfig {
    fn default() -> Self {
        CnnConfig {
            in_channels: 1,
            image_size: 28,
            widths: vec![32, 64, 128],
            classes: 10,
            seed: 0,
        }
    }
}

impl CnnConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| Err(Error::Invalid(format!("cnn: {field}: {why}")));
        if self.in_channels == 0 || self.classes < 2 {
            return bad(
                "in_channels/classes",
                "need ≥ 1 channel and ≥ 2 classes".into(),
            );
        }
        if self.widths.is_empty() || self.widths.contains(&0) {
            return bad(
                "widths",
                format!("{:?}: need at least one positive width", self.widths),
            );
        }
        if self.image_size >> self.widths.len() == 0 {
            return bad(
                "widths",
                format!(
                    "{} stages halve a {}-pixel image to nothing",
                    self.widths.len(),
                    self.image_size
                ),
            );
        }
        Ok(())
    }

    /// Spatial size after the last stage.
    pub fn final_size(&self) -> usize {
        self.image_size >> self.widths.len()
    }
}

/// Build the classifier: input `x [N, C, H, W]`, output `logits [N, classes]`.
pub fn build(cfg: &CnnConfig) -> Result<OnnxModel> {
    cfg.validate()?;
    let mut n = Net::new("cnn", cfg.seed);
    let s = cfg.image_size as i64;
    let mut x = n.b.input_dims(
        "x",
        DataType::FLOAT,
        &[D::Sym("N"), D::N(cfg.in_channels as i64), D::N(s), D::N(s)],
    );
    let mut cin = cfg.in_channels;
    for (i, &w) in cfg.widths.iter().enumerate() {
        let p = format!("features.{i}");
        x = n.conv(&format!("{p}.conv"), &x, cin, w, 3, 1, 1, false);
        x = n.batchnorm(&format!("{p}.bn"), &x, w);
        x = n.relu(&format!("{p}.relu"), &x);
        x = n.maxpool(&format!("{p}.pool"), &x, 2, 2);
        cin = w;
    }
    let f = n.flatten("flatten", &x);
    let fin = cin * cfg.final_size() * cfg.final_size();
    let w = n.init.xavier_uniform(&[cfg.classes, fin], fin, cfg.classes);
    n.gemm("classifier", "logits", &f, &w, cfg.classes);
    n.b.output_dims("logits", &[D::Sym("N"), D::N(cfg.classes as i64)]);
    let mut m = n.b.finish();
    super::describe(&mut m, "cnn", cfg);
    Ok(m)
}
