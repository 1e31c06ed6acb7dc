//! Activations and their gradients for the `taylor` criterion, from the training engine.
//!
//! The engine's backward pass keeps gradients of weights only, so every observed tensor `t`
//! gets a zero-valued probe weight `p` of its shape: `t' = t + p`, and `t`'s consumers read
//! `t'`. The outputs do not change, and ∂L/∂p = ∂L/∂t exactly. The loss is the task loss on
//! labelled calibration data: cross-entropy of output 0 against the labels (the negative
//! log-likelihood when the graph already ends in a Softmax, as PP-OCR cls does).

use super::importance::GradientSource;
use crate::{Error, Result};
use edgeslim_onnx::{OnnxModel, Tensor as OnnxTensor};
use edgeslim_runtime::InputShape;
use edgeslim_train::engine::candle_core::{self, DType, Device, Tensor};
use edgeslim_train::engine::{loss, EngineOptions, GraphModule, Mode};
use ndarray::ArrayD;
use std::collections::HashMap;

/// Labelled calibration samples of a single-input model.
pub struct EngineGradients {
    pub input: String,
    /// Shape of one sample, batch included (batch 1).
    pub shape: Vec<usize>,
    pub samples: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
}

fn cerr(what: &str, e: candle_core::Error) -> Error {
    Error::Other(format!(
        "taylor criterion: {what}: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

fn to_array(t: &Tensor) -> Result<ArrayD<f32>> {
    let dims = t.dims().to_vec();
    let v: Vec<f32> = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .map_err(|e| cerr("reading a tensor", e))?;
    ArrayD::from_shape_vec(dims, v).map_err(|e| Error::Other(format!("taylor criterion: {e}")))
}

impl GradientSource for EngineGradients {
    fn activations_and_gradients(
        &mut self,
        model: &OnnxModel,
        tensors: &[String],
    ) -> Result<Vec<HashMap<String, (ArrayD<f32>, ArrayD<f32>)>>> {
        if self.samples.len() != self.labels.len() || self.samples.is_empty() {
            return Err(Error::option(
                "calib",
                "the taylor criterion needs labelled calibration data (mnist, ppocr-text)",
            ));
        }
        let shape_spec = InputShape {
            name: Some(self.input.clone()),
            dims: self.shape.clone(),
        };
        let shapes = super::prepare::infer_shapes(model, std::slice::from_ref(&shape_spec))?;
        let outputs = model.graph_output_names();
        let mut m = model.clone();
        let mut probes: Vec<(String, String)> = Vec::new();
        let mut added = Vec::new();
        for t in tensors {
            let Some(dims) = shapes.get(t) else { continue };
            if outputs.contains(t) {
                continue;
            }
            let probe = m.fresh_name(&format!("{t}.taylor_probe"));
            let n: usize = dims.iter().product();
            m.set_initializer(&probe, &OnnxTensor::f32(dims.clone(), vec![0.0; n])?);
            let probed = m.fresh_name(&format!("{t}.probed"));
            for node in m.graph_mut().node.iter_mut() {
                for i in node.input.iter_mut().filter(|i| *i == t) {
                    *i = probed.clone();
                }
            }
            added.push(edgeslim_onnx::node::make(
                "Add",
                &[t.as_str(), probe.as_str()],
                &[probed.as_str()],
                &format!("{t}.taylor_add"),
                vec![],
            ));
            probes.push((t.clone(), probe));
        }
        m.graph_mut().node.extend(added);
        m.topo_sort()?;
        let module = GraphModule::from_onnx(
            &m,
            &EngineOptions {
                require_weights: false,
                ..EngineOptions::default()
            },
        )?;
        let vars: HashMap<String, candle_core::Var> = module.trainable().into_iter().collect();
        let out_name = module
            .output_names()
            .first()
            .map(|s| s.to_string())
            .ok_or_else(|| Error::Graph("the model has no output".into()))?;
        let ends_in_softmax = m
            .graph()
            .node
            .iter()
            .any(|n| n.op_type == "Softmax" && n.output.first() == Some(&out_name));
        let want: Vec<&str> = probes.iter().map(|(t, _)| t.as_str()).collect();
        let mut batches = Vec::new();
        for (x, &label) in self.samples.iter().zip(&self.labels) {
            let x = Tensor::from_vec(x.clone(), self.shape.as_slice(), &Device::Cpu)
                .map_err(|e| cerr("input", e))?;
            let outs = module.forward(&[(self.input.as_str(), x)], Mode::Eval, &want)?;
            let y = outs
                .get(&out_name)
                .ok_or_else(|| Error::tensor(&out_name, "missing output"))?;
            let y = y
                .flatten_from(1)
                .map_err(|e| cerr("output 0 is not [N, classes]", e))?;
            let labels =
                Tensor::new(&[label as u32], &Device::Cpu).map_err(|e| cerr("labels", e))?;
            let l = if ends_in_softmax {
                let f = || -> candle_core::Result<Tensor> {
                    let idx = labels.unsqueeze(1)?;
                    (y.gather(&idx, 1)? + 1e-12)?.log()?.mean_all()?.neg()
                };
                f().map_err(|e| cerr("loss", e))?
            } else {
                loss::cross_entropy(&y, &labels)?
            };
            let grads = module.backward(&l)?;
            let mut batch = HashMap::new();
            for (t, probe) in &probes {
                let (Some(a), Some(v)) = (outs.get(t), vars.get(probe)) else {
                    continue;
                };
                let Some(g) = grads.get(v.as_tensor()) else {
                    continue;
                };
                batch.insert(t.clone(), (to_array(a)?, to_array(g)?));
            }
            batches.push(batch);
        }
        Ok(batches)
    }
}
