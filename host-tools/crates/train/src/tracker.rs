//! Training the Siamese tracker ([`super::families::siamese`]) on generated SiamFC pairs
//! ([`edgeslim_data::tracking::pairs`]) with the graph engine.
//!
//! - Graph: [`siamese::build_train`] at the recipe's batch size (the correlation folds the
//!   batch into channels, so the batch is fixed in the graph); batch norm in training mode.
//! - Data: pairs from the generator seeded with the recipe's `tracking:SEED`; epoch `e` uses
//!   pair indices `e·N … (e+1)·N − 1` (`N = data.pairs_per_epoch`), so every epoch sees new
//!   scenes; validation pairs come from [`DataConfig::validation_seed`] and never overlap.
//! - Loss: SiamFC's balanced logistic loss on the response map,
//!   `Σ w · (softplus(r) − y·r)` per sample (positives and negatives each weigh 0.5), averaged
//!   over the batch.
//! - Metrics each epoch on the held-out pairs: loss, mean peak error (search-crop pixels
//!   between the response's arg-max and the true displacement), and the share of pairs whose
//!   peak is within one stride of the truth (`peak_within_stride`), next to the same numbers
//!   for a "never move" baseline that always answers the centre.
//! - Output: `template.onnx` and `search.onnx` ([`siamese::export_tracker`]) of the best
//!   epoch (lowest held-out loss), the training graph `train.onnx` is not kept, a model card
//!   (`card.md`, `card.json`) and `history.json`.

use super::card::{CardData, CardFile, CardMachine, CardMetrics, ModelCard};
use super::engine::{EngineOptions, GraphModule, Mode};
use super::families::siamese::{self, SiameseConfig};
use super::families::FamilySpec;
use super::optim::{AdamW, AdamWConfig, DecayPolicy, Optimizer, Sgd, SgdConfig};
use super::recipe::{DataConfig, OptimizerKind, Recipe};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use edgeslim_data::tracking::{peak_error, PairBatch, PairConfig, PairGenerator, Photos};
use edgeslim_data::{DataSource, DataSpec};
use edgeslim_onnx::OnnxModel;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to run a tracker recipe.
#[derive(Debug, Clone)]
pub struct TrackerRun {
    /// Engine threads (0 = all cores).
    pub threads: usize,
    /// The command line, for the card.
    pub command: String,
    /// The recipe file, copied into the card.
    pub recipe_path: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// Override `schedule.epochs` (short runs in tests).
    pub epochs: Option<usize>,
    /// Override `data.pairs_per_epoch`.
    pub pairs_per_epoch: Option<usize>,
    /// Override `data.val_pairs`.
    pub val_pairs: Option<usize>,
    /// The photographs (default: the asset cache).
    pub photos_dir: Option<PathBuf>,
    /// Start from these graphs' weights (copied by name into the training graph, shapes
    /// checked) instead of the recipe's random initialisation: fine-tuning a pruned pair.
    pub init_weights: Vec<OnnxModel>,
    /// Extra lines for the card's provenance.
    pub provenance: Vec<String>,
    /// A ViT trunk in place of the one the config builds (ViT-Slim's masked trunk in the
    /// search); the written pair splices it too.
    pub trunk: Option<OnnxModel>,
    /// L1 penalties added to the loss (ViT-Slim's mask sparsity terms).
    pub sparsity: Vec<crate::Sparsity>,
    /// Learning-rate multipliers by name part (ViT-Slim's mask learning rate).
    pub lr_scale: Vec<(String, f64)>,
    /// Weight-decay exemptions besides the recipe's (by name part).
    pub no_decay: Vec<String>,
    /// Keep the last epoch, not the best by held-out loss (a mask search).
    pub keep_last: bool,
}

impl Default for TrackerRun {
    fn default() -> Self {
        TrackerRun {
            threads: 0,
            command: String::new(),
            recipe_path: None,
            progress: true,
            epochs: None,
            pairs_per_epoch: None,
            val_pairs: None,
            photos_dir: None,
            init_weights: Vec::new(),
            provenance: Vec::new(),
            trunk: None,
            sparsity: Vec::new(),
            lr_scale: Vec::new(),
            no_decay: Vec::new(),
            keep_last: false,
        }
    }
}

/// Held-out numbers of one epoch.
#[derive(Debug, Clone, Serialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Mean peak error, search-crop pixels.
    pub val_peak_error_px: f64,
    pub val_peak_within_stride: f64,
    pub seconds: f64,
    pub pairs_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackerOutcome {
    pub template: PathBuf,
    pub search: PathBuf,
    pub card: PathBuf,
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
    /// The "always the centre" baseline on the same held-out pairs.
    pub baseline_peak_error_px: f64,
    pub baseline_peak_within_stride: f64,
    pub training_seconds: f64,
    /// The training graph with the kept epoch's weights.
    #[serde(skip)]
    pub trained: OnnxModel,
    /// Why training ended early (Ctrl-C), or `None`.
    pub stopped: Option<String>,
}

fn cerr(what: &str, e: candle_core::Error) -> Error {
    Error::Other(format!(
        "{what}: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

/// SiamFC's balanced logistic loss: `Σ_cells w · (softplus(r) − y·r)`, averaged over the batch
/// (`response`, `label`, `weight` all `[B, 1, m, m]`; each sample's weights sum to 1).
pub fn logistic_loss(response: &Tensor, label: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let f = || -> candle_core::Result<Tensor> {
        let b = response.dim(0)? as f64;
        // softplus(r) = max(r, 0) + log(1 + exp(−|r|)), stable for large |r|.
        let sp = (response.relu()? + ((response.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
        let per = (sp - (label * response)?)?;
        (per * weight)?.sum_all()?.affine(1.0 / b, 0.0)
    };
    f().map_err(|e| cerr("logistic loss", e))
}

fn batch_tensors(
    b: &PairBatch,
    cfg: &SiameseConfig,
    m: usize,
) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let dev = Device::Cpu;
    let (t, s) = (cfg.template_size, cfg.search_size);
    let f = || -> candle_core::Result<(Tensor, Tensor, Tensor, Tensor)> {
        Ok((
            Tensor::from_vec(b.template.clone(), (b.n, 3, t, t), &dev)?,
            Tensor::from_vec(b.search.clone(), (b.n, 3, s, s), &dev)?,
            Tensor::from_vec(b.label.clone(), (b.n, 1, m, m), &dev)?,
            Tensor::from_vec(b.weight.clone(), (b.n, 1, m, m), &dev)?,
        ))
    };
    f().map_err(|e| cerr("pair batch", e))
}

/// Peak error and whether the peak is within one stride, per sample of a response batch.
fn peak_metrics(pc: &PairConfig, response: &[f32], shifts: &[[f32; 2]]) -> (f64, usize) {
    let m2 = (pc.map_size * pc.map_size) as usize;
    let mut err = 0.0;
    let mut within = 0;
    for (i, s) in shifts.iter().enumerate() {
        let e = peak_error(pc, &response[i * m2..(i + 1) * m2], *s);
        err += e as f64;
        if e <= pc.stride as f32 {
            within += 1;
        }
    }
    (err, within)
}

struct Validation {
    batches: Vec<PairBatch>,
}

impl Validation {
    fn evaluate(
        &self,
        module: &GraphModule,
        cfg: &SiameseConfig,
        pc: &PairConfig,
    ) -> Result<(f64, f64, f64)> {
        let m = pc.map_size as usize;
        let (mut loss, mut err, mut within, mut n) = (0.0, 0.0, 0usize, 0usize);
        for b in &self.batches {
            let (z, x, y, w) = batch_tensors(b, cfg, m)?;
            let out = module.forward_inference(&[("template", z), ("search", x)], &[])?;
            let r = out
                .get("response")
                .ok_or_else(|| Error::Graph("the tracker graph has no 'response' output".into()))?;
            loss += logistic_loss(r, &y, &w)?
                .to_scalar::<f32>()
                .map_err(|e| cerr("loss", e))? as f64
                * b.n as f64;
            let flat: Vec<f32> = r
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(|e| cerr("response", e))?;
            let (e, k) = peak_metrics(pc, &flat, &b.shifts);
            err += e;
            within += k;
            n += b.n;
        }
        let n = n.max(1) as f64;
        Ok((loss / n, err / n, within as f64 / n))
    }

    /// The "never move" baseline: a response peaked at the centre.
    fn baseline(&self, pc: &PairConfig) -> (f64, f64) {
        let m = pc.map_size as usize;
        let mut centre = vec![0.0f32; m * m];
        centre[(m / 2) * m + m / 2] = 1.0;
        let (mut err, mut within, mut n) = (0.0, 0, 0);
        for b in &self.batches {
            let flat: Vec<f32> = (0..b.n).flat_map(|_| centre.iter().copied()).collect();
            let (e, k) = peak_metrics(pc, &flat, &b.shifts);
            err += e;
            within += k;
            n += b.n;
        }
        let n = n.max(1) as f64;
        (err / n, within as f64 / n)
    }
}

fn optimizer(
    recipe: &Recipe,
    module: &GraphModule,
    extra_no_decay: &[String],
) -> Result<Box<dyn Optimizer + Send>> {
    let o = &recipe.optimizer;
    let mut policy = DecayPolicy::default();
    for p in o.no_decay.iter().chain(extra_no_decay) {
        policy = policy.exclude_pattern(&regex::escape(p))?;
    }
    let params = module.require_trainable()?;
    Ok(match o.kind {
        OptimizerKind::Sgd => Box::new(Sgd::new(
            params,
            SgdConfig {
                lr: o.lr,
                momentum: o.momentum,
                nesterov: false,
                weight_decay: o.weight_decay,
            },
            &policy,
        )?),
        OptimizerKind::Adamw => Box::new(AdamW::new(
            params,
            AdamWConfig {
                lr: o.lr,
                beta1: o.betas[0],
                beta2: o.betas[1],
                eps: 1e-8,
                weight_decay: o.weight_decay,
            },
            &policy,
        )?),
    })
}

fn save_model(m: &OnnxModel, path: &Path) -> Result<()> {
    m.save(path, &edgeslim_onnx::SaveOptions::default())
}

/// Train the tracker a recipe describes; writes the runtime pair, card and history into the
/// recipe's output folder.
pub fn train(recipe: &Recipe, run: &TrackerRun) -> Result<TrackerOutcome> {
    recipe.validate(&recipe.name)?;
    let cfg = match recipe.model_spec() {
        FamilySpec::Siamese(c) => c,
        other => {
            return Err(Error::Invalid(format!(
                "{}: model.family is '{}', the tracker trainer needs 'siamese'",
                recipe.name,
                other.name()
            )))
        }
    };
    let data_seed = match recipe.data.spec {
        DataSpec::Tracking(s) => s,
        ref other => {
            return Err(Error::Invalid(format!(
                "{}: data.spec: the tracker trains on tracking:SEED, not {other:?}",
                recipe.name
            )))
        }
    };
    let batch = recipe.batch_size;
    let epochs = run.epochs.unwrap_or(recipe.schedule.epochs).max(1);
    let per_epoch = run
        .pairs_per_epoch
        .unwrap_or(recipe.data.pairs_per_epoch)
        .max(batch);
    let steps_per_epoch = per_epoch / batch;
    let val_pairs = run.val_pairs.unwrap_or(recipe.data.val_pairs).max(batch);
    let val_batches = val_pairs / batch;

    let photos = match &run.photos_dir {
        Some(d) => Photos::load(d)?,
        None => Photos::open(&edgeslim_data::assets::Assets::open())?,
    };
    let pc = PairConfig::for_network(
        cfg.template_size as u32,
        cfg.search_size as u32,
        cfg.stride as u32,
    );
    if pc.map_size as usize != cfg.response_size() {
        return Err(Error::Other(format!(
            "pair maps are {0}×{0} but the network answers {1}×{1}",
            pc.map_size,
            cfg.response_size()
        )));
    }
    let gen = PairGenerator::new(&photos, pc.clone())?;
    let val_seed = DataConfig::validation_seed(data_seed);
    let validation = Validation {
        batches: (0..val_batches)
            .map(|k| {
                let idx: Vec<u64> = (0..batch).map(|i| (k * batch + i) as u64).collect();
                gen.batch(val_seed, &idx)
            })
            .collect(),
    };
    let (base_err, base_within) = validation.baseline(&pc);

    let mut graph = siamese::build_train_with(&cfg, batch, run.trunk.as_ref())?;
    if !run.init_weights.is_empty() {
        // The training graph's own constants (reshape shapes, integer initializers in a
        // prepared trunk) stay as built.
        let sources: Vec<&OnnxModel> = run.init_weights.iter().collect();
        let floats: std::collections::HashSet<String> = graph
            .graph()
            .initializer
            .iter()
            .filter(|t| t.data_type == onnx_protobuf::tensor_proto::DataType::FLOAT as i32)
            .map(|t| t.name.clone())
            .collect();
        siamese::copy_weights_by_name(
            &mut graph,
            &sources,
            |n| {
                floats.contains(n)
                    && (n.starts_with("backbone.")
                        || n.starts_with("head.")
                        || n.starts_with("neck.")
                        || n.starts_with("features."))
            },
            "the starting weights",
        )?;
    }
    // A pretrained backbone stays as it is unless the recipe trains it too.
    let freeze = (cfg.pretrained.is_some() && !cfg.train_backbone)
        .then(|| super::engine::Freeze::pattern(r"^features\."))
        .transpose()?;
    let module = GraphModule::from_onnx(
        &graph,
        &EngineOptions {
            threads: run.threads,
            seed: recipe.seed,
            freeze,
            ..EngineOptions::default()
        },
    )?;
    let mut opt = optimizer(recipe, &module, &run.no_decay)?;
    for (part, factor) in &run.lr_scale {
        opt.scale_learning_rate_of(&|n: &str| n.contains(part.as_str()), *factor);
    }
    let params = module.trainable();
    let penalties = super::classify::sparsity_vars(&params, &run.sparsity, &recipe.name)?;
    let total_steps = epochs * steps_per_epoch;
    let bar = if run.progress {
        let b = indicatif::ProgressBar::new(total_steps as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(recipe.name.clone());
        b
    } else {
        indicatif::ProgressBar::hidden()
    };

    std::fs::create_dir_all(&recipe.output).map_err(|e| Error::io(&recipe.output, e))?;
    let template_path = recipe.output.join("template.onnx");
    let search_path = recipe.output.join("search.onnx");
    let start = Instant::now();
    let mut history: Vec<EpochStats> = Vec::new();
    let mut best: Option<(f64, usize)> = None;
    let mut rng_order = edgeslim_data::rng(recipe.seed, 0x5eed);
    let mut stopped = None;
    let mut kept: Option<OnnxModel> = None;
    'epochs: for epoch in 0..epochs {
        let t0 = Instant::now();
        let mut order: Vec<u64> = (0..(steps_per_epoch * batch) as u64)
            .map(|i| (epoch * per_epoch) as u64 + i)
            .collect();
        {
            use rand::seq::SliceRandom;
            order.shuffle(&mut rng_order);
        }
        let mut loss_sum = 0.0;
        for step in 0..steps_per_epoch {
            let t = epoch as f64 + step as f64 / steps_per_epoch as f64;
            opt.set_learning_rate(recipe.schedule.lr_at(recipe.optimizer.lr, t));
            let b = gen.batch(data_seed, &order[step * batch..(step + 1) * batch]);
            let (z, x, y, w) = batch_tensors(&b, &cfg, pc.map_size as usize)?;
            let out = module.forward(&[("template", z), ("search", x)], Mode::Train, &[])?;
            let r = out
                .get("response")
                .ok_or_else(|| Error::Graph("the tracker graph has no 'response' output".into()))?;
            if super::interrupt::requested() {
                stopped = Some(format!("interrupted in epoch {}", epoch + 1));
                break 'epochs;
            }
            let loss = logistic_loss(r, &y, &w)?;
            let lv = loss.to_scalar::<f32>().map_err(|e| cerr("loss", e))? as f64;
            let loss = super::classify::add_penalties(loss, &penalties)?;
            if !lv.is_finite() {
                bar.abandon();
                return Err(Error::Other(format!(
                    "{}: loss is {lv} at epoch {} step {step}; stopped (the best model so far is in {})",
                    recipe.name,
                    epoch + 1,
                    recipe.output.display()
                )));
            }
            let mut grads = module.backward(&loss)?;
            if let Some(c) = recipe.optimizer.clip_grad_norm {
                super::optim::clip_grad_norm(&mut grads, &params, c)?;
            }
            module.in_pool(|| opt.step(&grads))?;
            loss_sum += lv;
            bar.set_message(format!("epoch {} loss {lv:.4}", epoch + 1));
            bar.inc(1);
        }
        let train_loss = loss_sum / steps_per_epoch.max(1) as f64;
        let (val_loss, val_err, val_within) = validation.evaluate(&module, &cfg, &pc)?;
        let secs = t0.elapsed().as_secs_f64();
        let st = EpochStats {
            epoch: epoch + 1,
            train_loss,
            val_loss,
            val_peak_error_px: val_err,
            val_peak_within_stride: val_within,
            seconds: secs,
            pairs_per_second: (steps_per_epoch * batch) as f64 / secs.max(1e-9),
        };
        bar.println(format!(
            "epoch {:>3}: train loss {:.4}  held-out loss {:.4}  peak error {:.1} px  within stride {:.1}%  ({:.0} s, {:.1} pairs/s)",
            st.epoch, st.train_loss, st.val_loss, st.val_peak_error_px, 100.0 * st.val_peak_within_stride, secs, st.pairs_per_second
        ));
        history.push(st);
        if run.keep_last || best.is_none_or(|(l, _)| val_loss < l) {
            best = Some((val_loss, epoch + 1));
            let trained = module.export()?;
            let (mut template, mut search) =
                siamese::export_tracker_with(&trained, &cfg, run.trunk.as_ref())?;
            kept = Some(trained);
            for m in [&mut template, &mut search] {
                m.set_metadata("edgeslim.tracker.mean", "0.485,0.456,0.406");
                m.set_metadata("edgeslim.tracker.std", "0.229,0.224,0.225");
                m.set_metadata("edgeslim.tracker.epoch", &(epoch + 1).to_string());
                if let Some(v) = run
                    .init_weights
                    .first()
                    .and_then(|s| s.metadata("edgeslim.pruned"))
                {
                    m.set_metadata("edgeslim.pruned", v);
                }
            }
            // The pair record is dropped before and written after the two graphs, so a
            // kill between them never leaves a pair a loader would trust.
            edgeslim_runtime::track::pair_manifest::begin_write(&recipe.output)?;
            save_model(&template, &template_path)?;
            save_model(&search, &search_path)?;
            edgeslim_runtime::track::pair_manifest::finish_write(&recipe.output)?;
        }
        let hist = serde_json::to_vec_pretty(&history)
            .map_err(|e| Error::Other(format!("history: {e}")))?;
        edgeslim_runtime::fsutil::write_atomic(&recipe.output.join("history.json"), &hist)?;
    }
    bar.finish_and_clear();
    let training_seconds = start.elapsed().as_secs_f64();
    let (Some((best_loss, best_epoch)), Some(trained)) = (best, kept) else {
        return Err(Error::Other(format!(
            "{}: {} before the first epoch ended; nothing written",
            recipe.name,
            stopped.as_deref().unwrap_or("stopped")
        )));
    };
    let best_stats = history[best_epoch.saturating_sub(1)].clone();

    // Card.
    let template = OnnxModel::load(&template_path)?;
    let search = OnnxModel::load(&search_path)?;
    let (params_t, macs_t) = count(&template, cfg.search_size)?;
    let (_, macs_s) = count(&search, cfg.search_size)?;
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("peak_error_px".into(), best_stats.val_peak_error_px);
    extra.insert(
        "peak_within_stride".into(),
        best_stats.val_peak_within_stride,
    );
    extra.insert("baseline_centre_peak_error_px".into(), base_err);
    extra.insert("baseline_centre_peak_within_stride".into(), base_within);
    extra.insert("best_epoch".into(), best_epoch as f64);
    extra.insert("template_macs".into(), macs_t as f64);
    extra.insert("search_macs_per_scale".into(), macs_s as f64);
    let o = &recipe.optimizer;
    let card = ModelCard {
        name: recipe.name.clone(),
        family: "siamese".into(),
        description: format!(
            "A SiamFC-style tracker: shared conv backbone, depth-wise cross-correlation head, \
             {m}×{m} response map. Two ONNX graphs: `template.onnx` (template [1,3,{t},{t}] → \
             kernel, run once per (re-)initialisation) and `search.onnx` (search [N,3,{s},{s}] + \
             kernel → response [N,1,{m},{m}], N scales per call). Inputs are RGB in [0,1] \
             normalised with the ImageNet mean/std; crops use SiamFC's context 0.5.",
            m = cfg.response_size(),
            t = cfg.template_size,
            s = cfg.search_size
        ),
        config: serde_json::to_value(&cfg).unwrap_or_default(),
        inputs: vec![
            ("template".into(), dims(&[1, 3, cfg.template_size, cfg.template_size])),
            ("search".into(), {
                let mut d = dims(&[0, 3, cfg.search_size, cfg.search_size]);
                d[0] = "N".into();
                d
            }),
        ],
        outputs: vec![(
            "response".into(),
            vec![
                "N".into(),
                "1".into(),
                cfg.response_size().to_string(),
                cfg.response_size().to_string(),
            ],
        )],
        data: CardData {
            spec: format!("tracking:{data_seed}"),
            source: DataSource {
                package: "scikit-image (photographs)".into(),
                path: photos.dir.display().to_string(),
                sha256: None,
            },
            split: format!(
                "generated SiamFC pairs: epoch e uses pairs e·{per_epoch} … (e+1)·{per_epoch}−1 of seed {data_seed}; \
                 {} held-out pairs from seed {val_seed}",
                val_batches * batch
            ),
            train_samples: epochs * steps_per_epoch * batch,
            held_out_samples: val_batches * batch,
            normalization: edgeslim_data::Normalization::imagenet(),
        },
        seed: recipe.seed,
        epochs,
        batch_size: batch,
        optimizer: format!(
            "{:?} lr {} wd {} {:?} schedule, {} warm-up epochs",
            o.kind, o.lr, o.weight_decay, recipe.schedule.kind, recipe.schedule.warmup_epochs
        )
        .to_lowercase(),
        metrics: CardMetrics {
            accuracy: None,
            per_class: Vec::new(),
            train_loss: Some(best_stats.train_loss),
            held_out_loss: Some(best_loss),
            extra,
        },
        params: params_t,
        macs: macs_t + macs_s,
        training_seconds,
        machine: CardMachine::this(run.threads),
        command: run.command.clone(),
        recipe: run
            .recipe_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok()),
        files: vec![CardFile::of(&template_path)?, CardFile::of(&search_path)?],
        edgeslim_version: env!("CARGO_PKG_VERSION").into(),
        provenance: {
            let mut p = run.provenance.clone();
            p.push("template.onnx and search.onnx share the backbone weights (copied by name from the training graph)".into());
            p.push(format!("best epoch {best_epoch} of {epochs} by held-out loss"));
            p
        },
    };
    let (card_path, _) = card.write(&recipe.output)?;
    Ok(TrackerOutcome {
        template: template_path,
        search: search_path,
        card: card_path,
        history,
        best_epoch,
        baseline_peak_error_px: base_err,
        baseline_peak_within_stride: base_within,
        training_seconds,
        trained,
        stopped,
    })
}

fn dims(d: &[usize]) -> Vec<String> {
    d.iter().map(|v| v.to_string()).collect()
}

/// Parameters and MACs of a graph (single-scale search for the search graph).
fn count(m: &OnnxModel, search_size: usize) -> Result<(u64, u64)> {
    let shapes = if m.graph().input.iter().any(|i| i.name == "search") {
        vec![edgeslim_runtime::InputShape {
            name: Some("search".into()),
            dims: vec![1, 3, search_size, search_size],
        }]
    } else {
        Vec::new()
    };
    let i = edgeslim_onnx::inspect::inspect(m, &shapes)?;
    Ok((i.total_params, i.total_macs))
}
