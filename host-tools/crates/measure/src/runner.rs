//! Run a model (or the part of it that feeds some inner tensors) over a data split with tract,
//! one sample at a time, handing each result to a callback: memory stays at one sample's
//! activations, whatever the split size.
//!
//! Inner tensors are read by making them the graph's outputs and dropping every node they do
//! not depend on, so calibrating an early layer runs only the layers before it.
//!
//! [`Runner`] takes flat samples of a data split (low-rank, quantisation); [`run_with_outputs`]
//! and [`run_outputs`] take sets of input tensors (pruning's scores, fidelity and exactness).
//! They are the host's one way to run a graph's inner tensors in tract.

use crate::{Error, Result};
use edgeslim_data::calib::{Dataset, ModelInput};
use edgeslim_onnx::builder::value_info;
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::input::tensor_to_f32_vec;
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use edgeslim_runtime::{InputShape, LoadOptions, LoadedModel};
use ndarray::ArrayD;
use onnx_protobuf::tensor_proto::DataType;
use std::path::{Path, PathBuf};

/// One output of one run: its shape and values.
#[derive(Debug, Clone)]
pub struct Output {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

pub struct Runner {
    loaded: LoadedModel,
    input: ModelInput,
    /// The graph outputs, in the order results come back.
    pub outputs: Vec<String>,
}

impl Runner {
    /// Load `model` for tract at the input's batch-1 shape. With `tensors`, the graph's outputs
    /// become those tensors (and only what feeds them is kept).
    pub fn new(
        model: &OnnxModel,
        input: &ModelInput,
        tensors: Option<&[String]>,
    ) -> Result<Runner> {
        let mut m = model.clone();
        if let Some(names) = tensors {
            let g = m.graph_mut();
            g.output.clear();
            for n in names {
                g.output.push(value_info(n, DataType::FLOAT, None));
            }
            edgeslim_onnx::optimize::dead::remove_dead(&mut m)?;
        }
        let outputs = m.graph().output.iter().map(|o| o.name.clone()).collect();
        let opts = LoadOptions {
            input_shapes: vec![InputShape {
                name: Some(input.name.clone()),
                dims: input.shape.clone(),
            }],
            ..LoadOptions::default()
        };
        let label = model.label();
        let loaded = LoadedModel::from_bytes(m.to_bytes()?, Path::new(&label), None, &opts)?;
        Ok(Runner {
            loaded,
            input: input.clone(),
            outputs,
        })
    }

    /// Run one sample (flat values of the input shape).
    pub fn run(&self, sample: &[f32]) -> Result<Vec<Output>> {
        let want: usize = self.input.shape.iter().product();
        if sample.len() != want {
            return Err(Error::Invalid(format!(
                "input '{}': a sample has {} values, the model input {:?} takes {want}",
                self.input.name,
                sample.len(),
                self.input.shape
            )));
        }
        let t = TractTensor::from_shape(&self.input.shape, sample)
            .map_err(|e| Error::tensor(&self.input.name, e.to_string()))?;
        let out = self.loaded.run(vec![t])?;
        out.iter()
            .map(|t| {
                Ok(Output {
                    shape: t.shape().to_vec(),
                    values: tensor_to_f32_vec(t)?,
                })
            })
            .collect()
    }

    /// Run every sample of `data` in order; `f(index, outputs)` sees each result.
    pub fn for_each(
        &self,
        data: &Dataset,
        progress: &indicatif::ProgressBar,
        mut f: impl FnMut(usize, Vec<Output>) -> Result<()>,
    ) -> Result<()> {
        for (i, s) in data.samples.iter().enumerate() {
            f(i, self.run(s)?)?;
            progress.inc(1);
        }
        Ok(())
    }

    /// The first output of every sample, flattened (a classifier's scores).
    pub fn first_outputs(
        &self,
        data: &Dataset,
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<Vec<f32>>> {
        let mut all = Vec::with_capacity(data.len());
        self.for_each(data, progress, |_, mut outs| {
            if outs.is_empty() {
                return Err(Error::Graph("the model produced no output".into()));
            }
            all.push(outs.swap_remove(0).values);
            Ok(())
        })?;
        Ok(all)
    }
}

/// A progress bar on stderr for `n` steps (hidden when stderr is not a terminal, as
/// indicatif does by itself).
pub fn progress_bar(n: usize, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(n as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:32!} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    if edgeslim_runtime::process::quiet() {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb
}

/// Run `model` with tract on every input set, calling `visit(name, value)` for each graph
/// output and each of `extra` tensors (exposed as additional outputs).
pub fn run_with_outputs(
    model: &OnnxModel,
    extra: &[String],
    inputs: &[Vec<TractTensor>],
    input_shapes: &[InputShape],
    visit: &mut dyn FnMut(&str, &ArrayD<f32>),
) -> Result<()> {
    let mut m = model.clone();
    let existing = m.graph_output_names();
    // A graph input is visited from the input itself: as an extra output, tract would clear
    // the very fact that fixes the input's shape.
    let input_names: Vec<String> = m.true_inputs().iter().map(|v| v.name.clone()).collect();
    let wanted_inputs: Vec<(usize, &String)> = input_names
        .iter()
        .enumerate()
        .filter(|(_, n)| extra.contains(n))
        .collect();
    for t in extra
        .iter()
        .filter(|t| !existing.contains(*t) && !input_names.contains(t))
    {
        m.graph_mut()
            .output
            .push(value_info(t, DataType::FLOAT, None));
    }
    let opts = LoadOptions {
        input_shapes: input_shapes.to_vec(),
        optimize: true,
        ignore_declared_facts: true,
        ..LoadOptions::default()
    };
    let label = PathBuf::from(model.label());
    let loaded = LoadedModel::from_bytes(m.to_bytes()?, &label, None, &opts)?;
    let names: Vec<String> = loaded.outputs.iter().map(|o| o.name.clone()).collect();
    for set in inputs {
        for &(ix, name) in &wanted_inputs {
            if let Some(t) = set.get(ix) {
                let data = tensor_to_f32_vec(t)?;
                let a = ArrayD::from_shape_vec(t.shape().to_vec(), data)
                    .map_err(|e| Error::tensor(name, e.to_string()))?;
                visit(name, &a);
            }
        }
        let outs = loaded.run(set.clone())?;
        for (name, t) in names.iter().zip(outs) {
            let data = tensor_to_f32_vec(&t)?;
            let a = ArrayD::from_shape_vec(t.shape().to_vec(), data)
                .map_err(|e| Error::tensor(name, e.to_string()))?;
            visit(name, &a);
        }
    }
    Ok(())
}

/// The graph outputs of `model` on every input set, in output order.
pub fn run_outputs(
    model: &OnnxModel,
    inputs: &[Vec<TractTensor>],
    input_shapes: &[InputShape],
) -> Result<Vec<Vec<ArrayD<f32>>>> {
    let names: Vec<String> = model
        .graph()
        .output
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let mut per_sample: Vec<Vec<ArrayD<f32>>> = Vec::new();
    let mut current: Vec<ArrayD<f32>> = Vec::new();
    run_with_outputs(model, &[], inputs, input_shapes, &mut |name, a| {
        if names.first().is_some_and(|n| n == name) && !current.is_empty() {
            per_sample.push(std::mem::take(&mut current));
        }
        current.push(a.clone());
    })?;
    if !current.is_empty() {
        per_sample.push(current);
    }
    Ok(per_sample)
}
