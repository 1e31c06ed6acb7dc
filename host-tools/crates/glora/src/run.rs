//! `adapt`: transfer a network to a labelled task with one of four methods and write a plain
//! model — linear probe (the head only), full fine-tuning, LoRA and GLoRA (adapters merged).

use crate::adapter::{self, Adapter, PREFIX};
use crate::layers::{self, Layer};
use crate::supernet::{self, SearchOptions, Supernet};
use crate::support::LayerSupport;
use edgeslim_onnx::{Error, OnnxModel, Result};
use edgeslim_train::engine::Freeze;
use edgeslim_train::{classify, zoo, FinetuneOptions};
use serde::{Deserialize, Serialize};
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
    /// GLoRA with each layer's support searched: the supernet at this LoRA rank trained
    /// (`AdaptOptions::epochs`), the evolutionary search, the chosen configuration retrained
    /// from the supernet's weights (`epochs` again).
    GloraSearch(usize, SearchOptions),
}

impl Method {
    pub fn label(&self) -> String {
        match self {
            Method::Linear => "linear probe".into(),
            Method::Full => "full fine-tuning".into(),
            Method::Lora(r) => format!("LoRA r={r}"),
            Method::Glora(s) => format!("GLoRA {}", s.label()),
            Method::GloraSearch(r, _) => format!("GLoRA, supports searched (rank {r})"),
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
    /// Samples the search scores configurations on (taken out of the training split; with
    /// `shots`, the shots themselves).
    pub search_samples: usize,
    /// Start the head from fresh random weights (a head already trained on the task's full
    /// training split would make a few-shot comparison meaningless).
    pub reset_head: bool,
    /// Keep the last epoch (the transfer comparisons report on the held-out split, so they
    /// may not choose on it); `false` keeps the best held-out epoch, the compressed weights
    /// included, as the pipeline's other recovery does.
    pub keep_last: bool,
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
            search_samples: 500,
            reset_head: false,
            keep_last: true,
        }
    }
}

/// Held-out accuracy and loss.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage {
    pub accuracy: f64,
    pub loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The supernet and the search (GLoRA with searched supports).
    pub search: Option<SearchReport>,
    /// The input and the written model timed side by side (by the command, when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<AdaptLatency>,
}

/// tract p50 of the input and of the written model, interleaved runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdaptLatency {
    pub runs: usize,
    pub threads: usize,
    pub original_p50_ms: f64,
    pub adapted_p50_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchReport {
    pub options: SearchOptions,
    pub search_samples: usize,
    pub supernet_seconds: f64,
    pub search_seconds: f64,
    pub evaluations: usize,
    /// Accuracy of the chosen configuration with the supernet's shared weights.
    pub fitness: f64,
    pub generations: Vec<supernet::Generation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    let (_, c, h, w) = classify::image_input(model)?;
    let data = zoo::load_data(&spec, Some((c, h, w)), 0.2, opts.seed)?;
    adapt_split(model, data, opts)
}

/// [`adapt`] on data already loaded (`opts.data` only names it in the report): a
/// compression pipeline's recovery step trains on its own calibration split.
pub fn adapt_split(
    model: &OnnxModel,
    mut data: edgeslim_data::SplitData,
    opts: &AdaptOptions,
) -> Result<Adapted> {
    let (input, _, _, _) = classify::image_input(model)?;
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
    let fresh;
    let model = if opts.reset_head {
        let l = head
            .as_ref()
            .and_then(|h| found.iter().find(|l| &l.node == h))
            .ok_or_else(|| {
                Error::option("reset-head", format!("{}: no head layer", model.label()))
            })?;
        fresh = reset(model, l, opts.seed)?;
        &fresh
    } else {
        model
    };
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
        Method::GloraSearch(..) => Some(LayerSupport::NONE),
        Method::Linear | Method::Full => None,
    };
    if support.is_some() && chosen.is_empty() {
        return Err(Error::option(
            "layers",
            format!("{}: no layer to wrap", model.label()),
        ));
    }
    let mut search = None;
    let (adapted, adapters) = match (&opts.method, support) {
        (Method::GloraSearch(rank, so), _) => {
            let (a, ads, report) = searched(
                model,
                &chosen,
                *rank,
                so,
                &head_weights,
                &input,
                &mut data,
                opts,
            )?;
            search = Some(report);
            (a, ads)
        }
        (_, Some(s)) => {
            let plan: Vec<(Layer, LayerSupport)> = chosen.into_iter().map(|l| (l, s)).collect();
            adapter::insert(model, &plan, opts.seed)?
        }
        (_, None) => adapter::insert(model, &[], opts.seed)?,
    };

    let trainable: Arc<dyn Fn(&str) -> bool + Send + Sync> = match opts.method {
        Method::Full => Arc::new(|_: &str| true),
        _ => {
            let head = head_weights.clone();
            Arc::new(move |n: &str| n.starts_with(PREFIX) || head.iter().any(|h| h == n))
        }
    };
    let fo = base_options(opts, &input, trainable.clone());
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
            search,
            latency: None,
        },
        model: merged,
    })
}

fn base_options(
    opts: &AdaptOptions,
    input: &str,
    trainable: Arc<dyn Fn(&str) -> bool + Send + Sync>,
) -> FinetuneOptions {
    FinetuneOptions {
        epochs: opts.epochs,
        lr: opts.lr,
        batch_size: opts.batch_size,
        seed: opts.seed,
        threads: opts.threads,
        progress: opts.progress,
        max_batches_per_epoch: opts.max_batches_per_epoch,
        input: Some(input.to_string()),
        stop_on_ctrl_c: true,
        freeze: Some(Freeze::Predicate(Arc::new(move |n: &str| !trainable(n)))),
        no_decay: vec![PREFIX.to_string()],
        // Scalar factors and gates are one-element tensors: weights all the same.
        weight_prefixes: vec![PREFIX.to_string()],
        keep_last: opts.keep_last,
        ..FinetuneOptions::default()
    }
}

/// GLoRA's search: train the supernet (a random configuration per step), evolve
/// configurations scored on the search samples with the shared weights, and return the
/// model with the chosen adapters holding the supernet's trained factors (and head).
#[allow(clippy::too_many_arguments)]
fn searched(
    model: &OnnxModel,
    layers: &[Layer],
    rank: usize,
    so: &SearchOptions,
    head_weights: &[String],
    input: &str,
    data: &mut edgeslim_data::SplitData,
    opts: &AdaptOptions,
) -> Result<(OnnxModel, Vec<Adapter>, SearchReport)> {
    // The search scores on samples the final evaluation never sees: out of the training
    // split, or (few-shot) the shots themselves.
    let search_set = if opts.shots.is_some() {
        data.train.clone()
    } else {
        let order = edgeslim_data::shuffled_indices(data.train.len(), opts.seed, 0x5ea2);
        let n = opts.search_samples.min(data.train.len() / 5).max(1);
        let (s, t) = order.split_at(n);
        let (mut s, mut t) = (s.to_vec(), t.to_vec());
        s.sort_unstable();
        t.sort_unstable();
        let set = data.train.subset(&s);
        data.train = data.train.subset(&t);
        set
    };
    let (graph, sn) = Supernet::build(model, layers, rank, opts.seed)?;
    let head: Vec<String> = head_weights.to_vec();
    let trainable: Arc<dyn Fn(&str) -> bool + Send + Sync> = Arc::new(move |n: &str| {
        (n.starts_with(PREFIX) && !Supernet::is_gate(n)) || head.iter().any(|h| h == n)
    });
    let mut fo = base_options(opts, input, trainable);
    fo.keep_last = true;
    let sampler = std::sync::Mutex::new(edgeslim_runtime::input::SplitMix64(opts.seed ^ 0x5a3e));
    let hook_sn = sn.clone();
    fo.before_step = Some(edgeslim_train::StepHook(Arc::new(move |m, _step| {
        let cfg = {
            let mut r = sampler
                .lock()
                .map_err(|_| Error::Other("the supernet sampler's lock".into()))?;
            hook_sn.random(&mut r)
        };
        hook_sn.apply(m, &cfg)
    })));
    let t0 = std::time::Instant::now();
    let trained = classify::finetune(&graph, data, &fo)?;
    if let Some(why) = &trained.stopped {
        return Err(Error::Invalid(format!(
            "the supernet's training stopped: {why}"
        )));
    }
    let supernet_seconds = t0.elapsed().as_secs_f64();

    let t1 = std::time::Instant::now();
    let module = edgeslim_train::engine::GraphModule::from_onnx(
        &trained.model,
        &edgeslim_train::engine::EngineOptions {
            threads: opts.threads,
            seed: opts.seed,
            weight_prefixes: vec![PREFIX.to_string()],
            ..Default::default()
        },
    )?;
    let output = trained
        .model
        .graph()
        .output
        .first()
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let found = supernet::evolve(&sn, so, opts.seed, |cfg| {
        sn.apply(&module, cfg)?;
        Ok(classify::evaluate_module(&module, &search_set, input, &output, 256)?.accuracy)
    })?;
    let search_seconds = t1.elapsed().as_secs_f64();

    let plan: Vec<(Layer, LayerSupport)> = sn
        .adapters
        .iter()
        .zip(&found.config)
        .map(|(a, s)| (a.layer.clone(), *s))
        .collect();
    let (mut chosen, adapters) = adapter::insert(model, &plan, opts.seed)?;
    // The chosen options' factors, and the head, as the supernet trained them.
    let names: Vec<String> = chosen
        .graph()
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .collect();
    for n in names {
        if let Some(t) = trained.model.initializer(&n) {
            chosen.set_initializer(&n, &edgeslim_onnx::Tensor::from_proto(t)?);
        }
    }
    Ok((
        chosen,
        adapters,
        SearchReport {
            options: so.clone(),
            search_samples: search_set.len(),
            supernet_seconds,
            search_seconds,
            evaluations: found.evaluations,
            fitness: found.fitness,
            generations: found.history,
        },
    ))
}

/// `model` with the head's weight drawn uniformly in ±1/√fan_in (seeded) and its bias zero.
fn reset(model: &OnnxModel, head: &Layer, seed: u64) -> Result<OnnxModel> {
    let mut m = model.clone();
    let mut r = edgeslim_runtime::input::SplitMix64(seed ^ 0x4ead);
    let bound = 1.0 / (head.fan_in().max(1) as f32).sqrt();
    let n: usize = head.dims.iter().product();
    let w = (0..n).map(|_| (r.next_f32() * 2.0 - 1.0) * bound).collect();
    m.set_initializer(
        &head.weight,
        &edgeslim_onnx::Tensor::f32(head.dims.clone(), w)?,
    );
    if let Some((b, _, _)) = &head.bias {
        let k = head.outputs();
        m.set_initializer(b, &edgeslim_onnx::Tensor::f32(vec![k], vec![0.0; k])?);
    }
    Ok(m)
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
