//! `edgeslim meta train / eval / adapt` on a few-shot pool (`edgeslim data fewshot`).
//!
//! A meta-model folder holds `meta.onnx` (the gated Conv-4 with the meta-learned weights),
//! `gates.json` (the meta-learned gates ζ, with MetaDOCK) and `meta.json` (the options, the
//! network's shape and the training history). It is written all or nothing.

use crate::export::{dense_model, task_model, TaskModel, TaskModelStats};
use crate::gates::Gates;
use crate::learner::{Learner, LearnerConfig, Task};
use crate::nets::{self, Arch, NetConfig};
use crate::params::cerr;
use crate::{Error, Result};
use edgeslim_data::fewshot::{episode, EpisodeSpec, Pool, Split};
use edgeslim_onnx::OnnxModel;
use edgeslim_train::engine::candle_core::DType;
use edgeslim_train::engine::{EngineOptions, GraphModule};
use edgeslim_train::optim::{AdamW, AdamWConfig, DecayPolicy, Optimizer};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const META_ONNX: &str = "meta.onnx";
pub const GATES_JSON: &str = "gates.json";
pub const CARD_JSON: &str = "meta.json";

/// Streams of the episode generator, so training, validation and test never share a draw
/// (their classes are disjoint anyway).
const VAL_STREAM: u64 = 0x7a11_da7e;

/// Outer learning rate of the gates relative to the weights'.
pub const GATE_LR_SCALE: f64 = 10.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaTrainOptions {
    pub arch: Arch,
    pub learner: LearnerConfig,
    /// Meta-steps (outer updates).
    pub episodes: usize,
    /// Tasks per meta-step.
    pub meta_batch: usize,
    pub spec: EpisodeSpec,
    /// Adam's step size for the meta-weights and gates.
    pub outer_lr: f64,
    /// Inner steps when adapting to a validation or test task.
    pub test_steps: usize,
    /// Validate every this many meta-steps (0: only at the end), keeping the best meta-model.
    pub val_every: usize,
    pub val_tasks: usize,
    pub seed: u64,
    pub threads: usize,
    #[serde(skip)]
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryRow {
    pub step: usize,
    pub query_loss: f64,
    pub query_accuracy: f64,
    /// Share of active kernels of the meta-gates.
    pub active: f64,
    pub val_accuracy: Option<f64>,
}

/// `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaCard {
    pub options: MetaTrainOptions,
    pub net: NetConfig,
    pub history: Vec<HistoryRow>,
    pub best_step: usize,
    pub best_val_accuracy: f64,
    pub seconds: f64,
    pub stopped: Option<String>,
}

pub struct Trained {
    pub learner: Learner,
    pub card: MetaCard,
}

/// Episode `index` of `split` as a task of the learner's float type.
pub fn episode_task(
    pool: &Pool,
    split: Split,
    spec: EpisodeSpec,
    seed: u64,
    index: u64,
    dtype: DType,
) -> Result<Task> {
    let e = episode(pool, split, spec, seed, index)?;
    Task::new(
        e.tensors(pool, &e.support),
        e.tensors(pool, &e.query),
        1,
        28,
        dtype,
    )
}

fn engine_options(threads: usize) -> EngineOptions {
    EngineOptions {
        threads,
        ..EngineOptions::default()
    }
}

fn build_learner(
    model: &OnnxModel,
    net: &NetConfig,
    cfg: &LearnerConfig,
    gates: Option<Gates>,
    threads: usize,
) -> Result<Learner> {
    let module = GraphModule::from_onnx(model, &engine_options(threads))?;
    Learner::new(module, net.clone(), cfg.clone(), gates)
}

/// Meta-train a Conv-4 on the pool's meta-train classes.
pub fn train(pool: &Pool, opts: &MetaTrainOptions) -> Result<Trained> {
    if opts.episodes == 0 || opts.meta_batch == 0 {
        return Err(Error::Invalid(format!(
            "meta-training needs ≥ 1 meta-step of ≥ 1 task ({} steps, {} tasks)",
            opts.episodes, opts.meta_batch
        )));
    }
    let net = NetConfig::of_arch(opts.arch, opts.spec.ways, opts.seed);
    let model = nets::graph(&net, true)?;
    let gates = match opts.learner.gates {
        Some(_) => Some(Gates::new(&net, 0.0, 0.2, opts.seed, DType::F32)?),
        None => None,
    };
    let learner = build_learner(&model, &net, &opts.learner, gates, opts.threads)?;
    // Check the episode shape on every split before the first step.
    for split in Split::ALL {
        episode(pool, split, opts.spec, opts.seed, 0)?;
    }
    let mut params: Vec<(String, edgeslim_train::engine::candle_core::Var)> = learner
        .names
        .iter()
        .cloned()
        .zip(learner.vars.iter().cloned())
        .collect();
    if let Some(g) = &learner.gates {
        params.extend(
            g.zeta
                .iter()
                .enumerate()
                .map(|(l, z)| (format!("gate.{l}"), z.clone())),
        );
    }
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            lr: opts.outer_lr,
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
        &DecayPolicy::default(),
    )?;
    // The gates learn faster than the weights (as ViT-Slim's masks do): with Adam, a gate
    // moves about one step size per meta-step, and it has to travel from its start to the
    // budget within the first half of meta-training.
    opt.scale_learning_rate_of(&|n: &str| n.starts_with("gate."), GATE_LR_SCALE);
    let bar = if opts.progress {
        indicatif::ProgressBar::new(opts.episodes as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let start = std::time::Instant::now();
    let mut history = Vec::new();
    let (mut best_step, mut best_val, mut best) = (0, f64::NEG_INFINITY, learner.save_state()?);
    let mut stopped = None;
    let mut best_eligible = false;
    for step in 0..opts.episodes {
        if edgeslim_train::interrupt::requested() {
            stopped = Some("interrupted".to_string());
            break;
        }
        // w_b ramps to its full value over the first half of meta-training.
        let ramp = ((step + 1) as f64 / (opts.episodes as f64 * 0.5).max(1.0)).min(1.0);
        let w_b = opts
            .learner
            .gates
            .map(|g| g.budget_weight * ramp)
            .unwrap_or(0.0);
        let (mut sum_w, mut sum_g): (Option<Vec<_>>, Option<Vec<_>>) = (None, None);
        let (mut loss, mut acc) = (0.0, 0.0);
        for t in 0..opts.meta_batch {
            let index = (step * opts.meta_batch + t) as u64;
            let task = episode_task(
                pool,
                Split::MetaTrain,
                opts.spec,
                opts.seed,
                index,
                DType::F32,
            )?;
            let mg = learner.meta_gradient(&task, w_b)?;
            loss += mg.query_loss / opts.meta_batch as f64;
            acc += mg.query_accuracy / opts.meta_batch as f64;
            let scale = 1.0 / opts.meta_batch as f64;
            sum_w = Some(accumulate(sum_w, &mg.weights, scale)?);
            if let Some(g) = &mg.gates {
                sum_g = Some(accumulate(sum_g, g, scale)?);
            }
        }
        if !loss.is_finite() {
            stopped = Some(format!("non-finite query loss at meta-step {}", step + 1));
            break;
        }
        // The optimiser takes a GradStore: one from a zero loss over the weights, refilled.
        let mut store = zero_store(&learner)?;
        for (v, g) in learner.vars.iter().zip(sum_w.unwrap_or_default()) {
            store.insert(v.as_tensor(), g);
        }
        if let (Some(gates), Some(sg)) = (&learner.gates, sum_g) {
            for (z, g) in gates.zeta.iter().zip(sg) {
                store.insert(z.as_tensor(), g);
            }
        }
        learner.module.in_pool(|| opt.step(&store))?;
        let active = match &learner.gates {
            Some(g) => g.active_fraction()?,
            None => 1.0,
        };
        let last = step + 1 == opts.episodes;
        let val_accuracy = if (opts.val_every > 0 && (step + 1) % opts.val_every == 0) || last {
            let a = validate(&learner, pool, opts)?;
            // With MetaDOCK, a meta-model only counts once the budget has its full weight.
            let eligible = opts.learner.gates.is_none() || ramp >= 1.0;
            if (eligible && (!best_eligible || a > best_val)) || best_val == f64::NEG_INFINITY {
                best_eligible = eligible;
                best_val = a;
                best_step = step + 1;
                best = learner.save_state()?;
            }
            Some(a)
        } else {
            None
        };
        history.push(HistoryRow {
            step: step + 1,
            query_loss: loss,
            query_accuracy: acc,
            active,
            val_accuracy,
        });
        bar.set_message(format!(
            "loss {loss:.3} acc {:.1}% active {:.1}%",
            acc * 100.0,
            active * 100.0
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    learner.restore_state(&best)?;
    Ok(Trained {
        card: MetaCard {
            options: opts.clone(),
            net,
            history,
            best_step,
            best_val_accuracy: best_val.max(0.0),
            seconds: start.elapsed().as_secs_f64(),
            stopped,
        },
        learner,
    })
}

fn accumulate(
    acc: Option<Vec<edgeslim_train::engine::candle_core::Tensor>>,
    g: &[edgeslim_train::engine::candle_core::Tensor],
    scale: f64,
) -> Result<Vec<edgeslim_train::engine::candle_core::Tensor>> {
    match acc {
        None => crate::params::scale(scale, g),
        Some(a) => crate::params::axpy(scale, g, &a),
    }
}

/// A gradient store holding the weights (an empty one cannot be made outside candle).
fn zero_store(
    learner: &Learner,
) -> Result<edgeslim_train::engine::candle_core::backprop::GradStore> {
    let mut total: Option<edgeslim_train::engine::candle_core::Tensor> = None;
    for v in &learner.vars {
        let s = v
            .as_tensor()
            .sum_all()
            .and_then(|s| s.affine(0.0, 0.0))
            .map_err(|e| cerr("gradient store", e))?;
        total = Some(match total {
            None => s,
            Some(t) => (t + s).map_err(|e| cerr("gradient store", e))?,
        });
    }
    let total = total.ok_or_else(|| Error::Invalid("no weights".into()))?;
    learner.module.backward(&total)
}

/// Mean query accuracy over the first `val_tasks` meta-val episodes.
fn validate(learner: &Learner, pool: &Pool, opts: &MetaTrainOptions) -> Result<f64> {
    let state = learner.save_state()?;
    let mut sum = 0.0;
    let n = opts.val_tasks.max(1);
    for i in 0..n {
        let task = episode_task(
            pool,
            Split::MetaVal,
            opts.spec,
            opts.seed ^ VAL_STREAM,
            i as u64,
            DType::F32,
        )?;
        sum += learner.adapt(&task, opts.test_steps)?.query_accuracy;
        learner.restore_state(&state)?;
    }
    Ok(sum / n as f64)
}

/// Write the meta-model folder (all or nothing; an existing folder is refused).
pub fn save(dir: &Path, t: &Trained) -> Result<()> {
    edgeslim_data::write_new_folder(dir, |tmp| {
        std::fs::create_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
        t.learner
            .module
            .export()?
            .save(&tmp.join(META_ONNX), &edgeslim_onnx::SaveOptions::default())?;
        if let Some(g) = &t.learner.gates {
            write_json(&tmp.join(GATES_JSON), &g.values()?)?;
        }
        write_json(&tmp.join(CARD_JSON), &t.card)
    })
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn read_json<T: for<'a> Deserialize<'a>>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Invalid(format!(
            "{}: not an edgeslim meta-model file: {e}",
            path.display()
        ))
    })
}

/// Read a meta-model folder written by [`save`].
pub fn load(dir: &Path, threads: usize) -> Result<(Learner, MetaCard)> {
    let card: MetaCard = read_json(&dir.join(CARD_JSON))?;
    let model = OnnxModel::load(&dir.join(META_ONNX))?;
    let gates = match card.options.learner.gates {
        Some(_) => {
            let v: Vec<Vec<f32>> = read_json(&dir.join(GATES_JSON))?;
            Some(Gates::from_values(&card.net, &v, DType::F32)?)
        }
        None => None,
    };
    let learner = build_learner(&model, &card.net, &card.options.learner, gates, threads)?;
    Ok((learner, card))
}

/// Accuracy over test tasks with the 95 % confidence interval of the mean, and what the task
/// models cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub tasks: usize,
    pub spec: EpisodeSpec,
    pub steps: usize,
    pub seed: u64,
    pub accuracy: f64,
    /// 1.96 · standard deviation / √tasks.
    pub ci95: f64,
    /// Share of the network's kernels active per task: mean, standard deviation, min, max.
    pub active: Summary,
    /// Stored parameters, nonzero parameters, dense and active MACs of the packed task models.
    pub params: Summary,
    pub nonzero_params: Summary,
    pub macs: Summary,
    pub active_macs: Summary,
    /// Mean channels kept per block.
    pub widths: Vec<f64>,
    /// The dense network's parameters and MACs (every kernel).
    pub dense: TaskModelStats,
    pub seconds: f64,
    /// Query accuracy of every task, in task order (the tasks are the same for every model
    /// of a seed, so two models compare task by task).
    #[serde(default)]
    pub per_task: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(v: &[f64]) -> Summary {
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Summary {
            mean,
            std: var.sqrt(),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// Adapt to `tasks` meta-test episodes of `spec` (seed `seed`: every model meets the same
/// tasks) and score their queries with the packed task model's semantics.
pub fn evaluate(
    learner: &Learner,
    pool: &Pool,
    spec: EpisodeSpec,
    tasks: usize,
    steps: usize,
    seed: u64,
    progress: bool,
) -> Result<EvalReport> {
    if tasks == 0 {
        return Err(Error::Invalid("evaluation needs ≥ 1 task".into()));
    }
    if spec.ways != learner.net.ways {
        return Err(Error::Invalid(format!(
            "the meta-model classifies {} ways, the episodes have {}",
            learner.net.ways, spec.ways
        )));
    }
    let start = std::time::Instant::now();
    let state = learner.save_state()?;
    let bar = if progress {
        indicatif::ProgressBar::new(tasks as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let dense = dense_model(&learner.module, &learner.net)?.stats;
    let total_kernels: usize = learner.net.kernels().iter().sum();
    let (mut acc, mut active, mut params, mut nonzero, mut macs, mut amacs) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut widths = vec![0.0; learner.net.widths.len()];
    for i in 0..tasks {
        if edgeslim_train::interrupt::requested() {
            return Err(Error::Other("interrupted".into()));
        }
        let task = episode_task(pool, Split::MetaTest, spec, seed, i as u64, DType::F32)?;
        let a = learner.adapt(&task, steps)?;
        let s = task_model(&learner.module, &learner.net, &a.masks)?.stats;
        acc.push(a.query_accuracy);
        active.push(a.active.iter().sum::<usize>() as f64 / total_kernels as f64);
        params.push(s.params as f64);
        nonzero.push(s.nonzero_params as f64);
        macs.push(s.macs as f64);
        amacs.push(s.active_macs as f64);
        for (w, &k) in widths.iter_mut().zip(&s.widths) {
            *w += k as f64 / tasks as f64;
        }
        learner.restore_state(&state)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let a = Summary::of(&acc);
    Ok(EvalReport {
        tasks,
        spec,
        steps,
        seed,
        accuracy: a.mean,
        ci95: 1.96 * a.std / (tasks as f64).sqrt(),
        active: Summary::of(&active),
        params: Summary::of(&params),
        nonzero_params: Summary::of(&nonzero),
        macs: Summary::of(&macs),
        active_macs: Summary::of(&amacs),
        widths,
        dense,
        seconds: start.elapsed().as_secs_f64(),
        per_task: acc,
    })
}

/// A support set on disk: one sub-folder per class (ways in sorted order) of images, turned to
/// 28 × 28 gray in [0, 1].
pub fn read_support(dir: &Path) -> Result<(Vec<String>, Vec<f32>, Vec<usize>)> {
    let mut classes: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    if classes.len() < 2 {
        return Err(Error::Invalid(format!(
            "{}: a support set is one sub-folder of images per class; found {} class folders",
            dir.display(),
            classes.len()
        )));
    }
    let (mut names, mut px, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for (way, c) in classes.iter().enumerate() {
        let mut files: Vec<_> = std::fs::read_dir(c)
            .map_err(|e| Error::io(c, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::Invalid(format!("{}: no images", c.display())));
        }
        for f in files {
            let img = image::open(&f)
                .map_err(|e| Error::Invalid(format!("{}: not an image: {e}", f.display())))?
                .to_luma8();
            let img = image::imageops::resize(&img, 28, 28, image::imageops::FilterType::Triangle);
            px.extend(img.as_raw().iter().map(|&p| p as f32 / 255.0));
            labels.push(way);
        }
        names.push(
            c.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    Ok((names, px, labels))
}

/// Adapt the meta-model to a support set and export the task's model. The support images
/// double as the queries scored in the result (the accuracy on the support set itself).
pub fn adapt_support(
    learner: &Learner,
    support: (Vec<f32>, Vec<usize>),
    steps: usize,
) -> Result<(TaskModel, f64)> {
    let ways = support.1.iter().max().map(|m| m + 1).unwrap_or(0);
    if ways != learner.net.ways {
        return Err(Error::Invalid(format!(
            "the meta-model classifies {} ways; the support set has {ways} classes",
            learner.net.ways
        )));
    }
    let task = Task::new(support.clone(), support, 1, 28, DType::F32)?;
    let a = learner.adapt(&task, steps)?;
    let m = task_model(&learner.module, &learner.net, &a.masks)?;
    Ok((m, a.query_accuracy))
}
