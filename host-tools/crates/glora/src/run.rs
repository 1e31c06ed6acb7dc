//! `adapt`: transfer a network to a labelled task with one of four methods and write a plain
//! model — linear probe (the head only), full fine-tuning, LoRA and GLoRA (adapters merged).

use crate::adapter::{self, Adapter, PREFIX};
use crate::layers::{self, Layer};
use crate::support::LayerSupport;
use edgeslim_onnx::{Error, OnnxModel, Result};
use edgeslim_train::engine::Freeze;
use edgeslim_train::{classify, zoo, FinetuneOptions};
use serde::Serialize;
use std::sync::Arc;

/// What is trained.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The head only.
    Linear,
    /// Every weight.
    Full,
    /// B of rank r on every selected layer, plus the head.
    Lora(usize),
    /// The GLoRA support on every selected layer, plus the head.
    Glora(LayerSupport),
}

impl Method {
    pub fn label(&self) -> String {
        match self {
            Method::Linear => "linear probe".into(),
            Method::Full => "full fine-tuning".into(),
            Method::Lora(r) => format!("LoRA r={r}"),
            Method::Glora(s) => format!("GLoRA {}", s.label()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdaptOptions {
    pub method: Method,
    /// Training data spec (`mnist`, `animal-mnist`, `folder:PATH`).
    pub data: String,
    /// Wrap the layers whose node or weight name matches (default: every linear layer of a
    /// transformer, every convolution of a CNN; never the head).
    pub layers: Option<regex::Regex>,
    /// Train on this many samples per class of the training split (few-shot), drawn with
    /// the seed; `None`: the whole split.
    pub shots: Option<usize>,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub max_batches_per_epoch: Option<usize>,
    /// Evaluate on this many held-out samples (a fixed subset).
    pub held_out_cap: Option<usize>,
    pub seed: u64,
    pub threads: usize,
    pub progress: bool,
}

impl Default for AdaptOptions {
    fn default() -> Self {
        AdaptOptions {
            method: Method::Glora(LayerSupport::glora_full(4)),
            data: "mnist".into(),
            layers: None,
            shots: None,
            epochs: 5,
            lr: 1e-3,
            batch_size: 32,
            max_batches_per_epoch: None,
            held_out_cap: None,
            seed: 0,
            threads: 0,
            progress: false,
        }
    }
}

/// Held-out accuracy and loss.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub accuracy: f64,
    pub loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdaptReport {
    pub method: String,
    pub data: String,
    pub shots: Option<usize>,
    pub train_samples: usize,
    pub held_out_samples: usize,
    /// Wrapped layers (none for linear probe and full fine-tuning).
    pub adapters: Vec<AdapterSummary>,
    pub head: Option<String>,
    pub trainable_params: usize,
    pub total_params: u64,
    pub before: Stage,
    /// The trained model with its adapters (not merged).
    pub adapted: Stage,
    /// The written, merged model (same graph as the input).
    pub merged: Stage,
    pub best_epoch: usize,
    pub train_seconds: f64,
    pub epoch_losses: Vec<f64>,
    pub stopped: Option<String>,
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    pub node: String,
    pub support: String,
    pub params: usize,
}

pub struct Adapted {
    pub model: OnnxModel,
    pub report: AdaptReport,
}

/// `k` samples of every class of `labels`, drawn with `seed`; an error names a class with
/// fewer.
pub fn few_shot(labels: &[usize], classes: usize, k: usize, seed: u64) -> Result<Vec<usize>> {
    let order = edgeslim_data::shuffled_indices(labels.len(), seed, 0x5407);
    let mut taken = vec![0usize; classes];
    let mut pick = Vec::with_capacity(k * classes);
    for i in order {
        let c = labels[i];
        if c < classes && taken[c] < k {
            taken[c] += 1;
            pick.push(i);
        }
    }
    if let Some(c) = taken.iter().position(|&t| t < k) {
        return Err(Error::option_value(
            "shots",
            k,
            format!("class {c} has only {} training samples", taken[c]),
        ));
    }
    pick.sort_unstable();
    Ok(pick)
}

fn stage(r: &classify::EvalReport) -> Stage {
    Stage {
        accuracy: r.accuracy,
        loss: r.loss,
    }
}

/// Train `model` on the task with the method, merge, and check the merged model.
pub fn adapt(model: &OnnxModel, opts: &AdaptOptions) -> Result<Adapted> {
    let spec: edgeslim_data::DataSpec = opts
        .data
        .parse()
        .map_err(|e: Error| Error::option("data", e.to_string()))?;
    let (input, c, h, w) = classify::image_input(model)?;
    let mut data = zoo::load_data(&spec, Some((c, h, w)), 0.2, opts.seed)?;
    if let Some(k) = opts.shots {
        let pick = few_shot(&data.train.labels, data.train.num_classes(), k, opts.seed)?;
        data.train = data.train.subset(&pick);
    }
    if let Some(n) = opts.held_out_cap.filter(|&n| n < data.held_out.len()) {
        let mut pick = edgeslim_data::shuffled_indices(data.held_out.len(), opts.seed, 0);
        pick.truncate(n.max(1));
        pick.sort_unstable();
        data.held_out = data.held_out.subset(&pick);
    }

    let (found, head) = layers::find(model)?;
    let head_layer = head
        .as_ref()
        .and_then(|h| found.iter().find(|l| &l.node == h))
        .cloned();
    let mut head_weights: Vec<String> = Vec::new();
    if let Some(l) = &head_layer {
        head_weights.push(l.weight.clone());
        head_weights.extend(l.bias.as_ref().map(|b| b.0.clone()));
    }
    if head_weights.is_empty() && opts.method != Method::Full {
        return Err(Error::Invalid(format!(
            "{}: no linear layer produces the output, so there is no head to train ({})",
            model.label(),
            opts.method.label()
        )));
    }
    let chosen = layers::select(
        &found,
        head.as_deref(),
        opts.layers.as_ref(),
        layers::has_attention(model),
    );
    let support = match &opts.method {
        Method::Lora(r) => Some(LayerSupport::lora(*r)),
        Method::Glora(s) => Some(*s),
        Method::Linear | Method::Full => None,
    };
    if support.is_some() && chosen.is_empty() {
        return Err(Error::option(
            "layers",
            format!("{}: no layer to wrap", model.label()),
        ));
    }
    let plan: Vec<(Layer, LayerSupport)> = match support {
        Some(s) => chosen.into_iter().map(|l| (l, s)).collect(),
        None => Vec::new(),
    };
    let (adapted, adapters) = adapter::insert(model, &plan, opts.seed)?;

    let trainable: Arc<dyn Fn(&str) -> bool + Send + Sync> = match opts.method {
        Method::Full => Arc::new(|_: &str| true),
        _ => {
            let head = head_weights.clone();
            Arc::new(move |n: &str| n.starts_with(PREFIX) || head.iter().any(|h| h == n))
        }
    };
    let frozen = trainable.clone();
    let fo = FinetuneOptions {
        epochs: opts.epochs,
        lr: opts.lr,
        batch_size: opts.batch_size,
        seed: opts.seed,
        threads: opts.threads,
        progress: opts.progress,
        max_batches_per_epoch: opts.max_batches_per_epoch,
        input: Some(input.clone()),
        stop_on_ctrl_c: true,
        freeze: Some(Freeze::Predicate(Arc::new(move |n: &str| !frozen(n)))),
        no_decay: vec![PREFIX.to_string()],
        ..FinetuneOptions::default()
    };
    let trained = classify::finetune(&adapted, &data, &fo)?;
    let merged = adapter::merge(model, &trained.model, &adapters)?;
    let merged_eval = classify::evaluate(&merged, &data.held_out, 256, opts.threads)?;
    let trainable_params = weights_matching(&adapted, &*trainable)?;
    Ok(Adapted {
        report: AdaptReport {
            method: opts.method.label(),
            data: opts.data.clone(),
            shots: opts.shots,
            train_samples: data.train.len(),
            held_out_samples: data.held_out.len(),
            adapters: adapters.iter().map(summary).collect(),
            head,
            trainable_params,
            total_params: model.float_constant_elements()?,
            before: stage(&trained.initial),
            adapted: stage(&trained.best),
            merged: stage(&merged_eval),
            best_epoch: trained.best_epoch,
            train_seconds: trained.seconds,
            epoch_losses: trained
                .history
                .iter()
                .filter(|e| e.epoch > 0)
                .map(|e| e.train_loss)
                .collect(),
            stopped: trained.stopped,
            peak_rss_bytes: edgeslim_runtime::device::peak_rss_bytes(),
        },
        model: merged,
    })
}

fn summary(a: &Adapter) -> AdapterSummary {
    AdapterSummary {
        node: a.layer.node.clone(),
        support: a.support.label(),
        params: a.params(),
    }
}

/// Elements of the float initializers `pred` accepts.
fn weights_matching(m: &OnnxModel, pred: &dyn Fn(&str) -> bool) -> Result<usize> {
    let mut n = 0;
    for t in &m.graph().initializer {
        if t.data_type == onnx_protobuf::tensor_proto::DataType::FLOAT as i32 && pred(&t.name) {
            n += t.dims.iter().product::<i64>().max(0) as usize;
        }
    }
    Ok(n)
}
