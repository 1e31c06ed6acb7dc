//! The meta-gradients against finite differences, the exported task model against the gated
//! network, and MAML against training from scratch on toy tasks.

use edgeslim_metadock::export::{dense_model, task_model, TaskModelStats};
use edgeslim_metadock::gates::Gates;
use edgeslim_metadock::learner::{Algo, GateConfig, Learner, LearnerConfig, Task};
use edgeslim_metadock::nets::{self, Arch, NetConfig, INPUT, LOGITS};
use edgeslim_metadock::params;
use edgeslim_train::engine::candle_core::{DType, Tensor};
use edgeslim_train::engine::{EngineOptions, GraphModule, Mode};
use rand::RngExt;

fn learner(net: &NetConfig, cfg: LearnerConfig, gates: Option<Gates>, dtype: DType) -> Learner {
    let model = nets::graph(net, true).unwrap();
    let module = GraphModule::from_onnx(
        &model,
        &EngineOptions {
            dtype,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    Learner::new(module, net.clone(), cfg, gates).unwrap()
}

/// `n` images per way of random pixels (seeded), side `side`.
fn random_task(
    ways: usize,
    shots: usize,
    queries: usize,
    side: usize,
    seed: u64,
    dtype: DType,
) -> Task {
    let mut r = edgeslim_data::rng(seed, 1);
    let mut part = |n: usize| {
        let mut px = Vec::new();
        let mut labels = Vec::new();
        for w in 0..ways {
            for _ in 0..n {
                px.extend((0..side * side).map(|_| r.random_range(0.0f32..1.0)));
                labels.push(w);
            }
        }
        (px, labels)
    };
    let (s, q) = (part(shots), part(queries));
    Task::new(s, q, 1, side, dtype).unwrap()
}

fn tiny() -> NetConfig {
    NetConfig::conv4(1, 6, vec![2, 3], 2, 3)
}

/// MAML's meta-gradient (through Hessian-vector products) is the derivative of the query loss
/// after the inner loop, checked along random directions by central differences in f64; the
/// first-order gradient is not (so the check can tell them apart).
#[test]
fn maml_meta_gradient_matches_finite_differences_of_the_inner_loop() {
    let net = tiny();
    let task = random_task(2, 2, 3, net.side, 11, DType::F64);
    let cfg = |algo| LearnerConfig {
        algo,
        inner_lr: 0.3,
        inner_steps: 3,
        ..LearnerConfig::default()
    };
    let maml = learner(&net, cfg(Algo::Maml), None, DType::F64);
    let g = maml.meta_gradient(&task, 0.0).unwrap().weights;
    let fo = learner(&net, cfg(Algo::Fomaml), None, DType::F64)
        .meta_gradient(&task, 0.0)
        .unwrap()
        .weights;
    let (_, stats) = maml.adapted_query_loss(&task, None).unwrap();
    let theta = params::snapshot(&maml.vars).unwrap();
    let h = 1e-5;
    let mut worst_fo: f64 = 0.0;
    for k in 0..3u64 {
        // A seeded random direction.
        let mut r = edgeslim_data::rng(k, 7);
        let d: Vec<Tensor> = theta
            .iter()
            .map(|t| {
                let v: Vec<f64> = (0..t.elem_count())
                    .map(|_| r.random_range(-1.0..1.0))
                    .collect();
                Tensor::from_vec(v, t.dims(), t.device()).unwrap()
            })
            .collect();
        let f = |s: f64| {
            params::restore(&maml.vars, &params::axpy(s, &d, &theta).unwrap()).unwrap();
            let (l, _) = maml.adapted_query_loss(&task, Some(&stats)).unwrap();
            params::restore(&maml.vars, &theta).unwrap();
            l
        };
        let numeric = (f(h) - f(-h)) / (2.0 * h);
        let analytic = params::dot(&g, &d).unwrap();
        let first_order = params::dot(&fo, &d).unwrap();
        let tol = 1e-5 * (1.0 + numeric.abs());
        assert!(
            (numeric - analytic).abs() < tol,
            "direction {k}: finite differences {numeric}, MAML {analytic}"
        );
        worst_fo = worst_fo.max((numeric - first_order).abs() / tol);
    }
    assert!(
        worst_fo > 10.0,
        "first-order MAML agrees too well ({worst_fo})"
    );
}

/// Gates of `net`: each kernel off with probability `off` (seeded).
fn random_gates(net: &NetConfig, off: f64, seed: u64) -> Vec<Vec<f32>> {
    let mut r = edgeslim_data::rng(seed, 2);
    net.kernels()
        .iter()
        .map(|&k| {
            (0..k)
                .map(|_| {
                    if r.random_range(0.0..1.0) < off {
                        -1.0f32
                    } else {
                        1.0
                    }
                })
                .collect()
        })
        .collect()
}

/// Adapt `net` with fixed gates `zeta` to a random task, export the task model, and check that
/// it computes what the gated network computes on the queries (≤ 1e-5) and is smaller than
/// the dense network. Returns the task model's figures.
fn task_model_matches_gated(net: &NetConfig, zeta: &[Vec<f32>]) -> TaskModelStats {
    let gates = Gates::from_values(net, zeta, DType::F32).unwrap();
    let cfg = LearnerConfig {
        algo: Algo::Fomaml,
        inner_lr: 0.2,
        inner_steps: 2,
        gates: Some(GateConfig {
            lr: 0.0,
            ..GateConfig::default()
        }),
        ..LearnerConfig::default()
    };
    let l = learner(net, cfg, Some(gates), DType::F32);
    let task = random_task(net.ways, 4, 5, net.side, 4, DType::F32);
    let a = l.adapt(&task, 2).unwrap();
    let tm = task_model(&l.module, &l.net, &a.masks).unwrap();
    let dense = dense_model(&l.module, &l.net).unwrap().stats;
    let s = tm.stats.clone();
    assert!(s.params < dense.params && s.nonzero_params < s.params && s.macs < dense.macs);
    // Gated network in evaluation mode (the support's statistics) against the task model.
    let hard: Vec<Tensor> = a
        .masks
        .iter()
        .zip(net.convs())
        .map(|(m, c)| {
            Tensor::from_vec(m.clone(), (c.cout, c.cin, 1, 1), task.query_x.device()).unwrap()
        })
        .collect();
    let gated = l.logits(&task.query_x, &hard, Mode::Eval).unwrap();
    let exported = GraphModule::from_onnx(&tm.model, &EngineOptions::default()).unwrap();
    let out = exported
        .forward_inference(&[(INPUT, task.query_x.clone())], &[])
        .unwrap();
    let diff = (out[LOGITS].clone() - gated)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        diff <= 1e-5,
        "task model differs from the gated network by {diff}"
    );
    s
}

/// Conv-4: the packed task model equals the gated network, with an unused channel removed
/// and a dead channel before the classifier folded into its bias.
#[test]
fn exported_conv4_task_model_equals_the_gated_network_and_is_smaller() {
    let net = NetConfig::conv4(1, 8, vec![4, 5, 3], 3, 5);
    let mut zeta = random_gates(&net, 0.2, 9);
    // Block 1's channel 2 reads nothing (a constant), block 2 reads nothing from block 1's
    // channel 1 (unused), block 2's channel 0 reads nothing (folded into the bias).
    zeta[1][2 * 4..3 * 4].fill(-1.0);
    for o in 0..3 {
        zeta[2][o * 5 + 1] = -1.0;
    }
    zeta[2][..5].fill(-1.0);
    let s = task_model_matches_gated(&net, &zeta);
    assert!(
        s.widths[1] <= 4,
        "block 1's unused channel is removed: {:?}",
        s.widths
    );
    assert!(
        s.widths[2] <= 2,
        "the last block's dead channel is folded: {:?}",
        s.widths
    );
}

/// ResNet-12: a stage's inner channels are packed, its residual channels stay, and the task
/// model equals the gated network.
#[test]
fn exported_resnet_task_model_packs_inner_channels_and_equals_the_gated_network() {
    let mut net = NetConfig::of_arch(Arch::Resnet12Small, 3, 2);
    net.side = 8;
    net.widths = vec![4, 6];
    let mut zeta = random_gates(&net, 0.3, 5);
    // Stage 0: conv b reads nothing from conv a's channel 1 (unused).
    for o in 0..4 {
        zeta[1][o * 4 + 1] = -1.0;
    }
    let s = task_model_matches_gated(&net, &zeta);
    assert!(
        s.widths[0] <= 3,
        "conv a's unused channel is removed: {:?}",
        s.widths
    );
    assert_eq!(
        (s.widths[2], s.widths[3], s.widths[6], s.widths[7]),
        (4, 4, 6, 6)
    );
}

/// Toy tasks: 2 ways, 3 shots, each a random pair of 6 fixed prototype patterns plus noise, with the
/// labels in random order, so no single network solves them without adapting. A few MAML
/// meta-steps give an initialisation from which the same inner loop does better on new tasks
/// than it does from a fresh network.
#[test]
fn maml_beats_training_from_scratch_on_toy_tasks() {
    let net = NetConfig::conv4(1, 8, vec![8, 8], 2, 1);
    let mut r = edgeslim_data::rng(2, 3);
    let prototypes: Vec<Vec<f32>> = (0..6)
        .map(|_| {
            (0..64)
                .map(|_| {
                    if r.random_range(0.0..1.0) < 0.5 {
                        0.0
                    } else {
                        1.0
                    }
                })
                .collect()
        })
        .collect();
    let toy = |seed: u64| {
        let mut r = edgeslim_data::rng(seed, 4);
        let a = r.random_range(0..6usize);
        let b = (a + r.random_range(1..6usize)) % 6;
        let mut part = |n: usize| {
            let (mut px, mut labels) = (Vec::new(), Vec::new());
            for (w, p) in [a, b].iter().enumerate() {
                for _ in 0..n {
                    px.extend(
                        prototypes[*p]
                            .iter()
                            .map(|&v| v + r.random_range(-1.2f32..1.2)),
                    );
                    labels.push(w);
                }
            }
            (px, labels)
        };
        let (s, q) = (part(3), part(10));
        Task::new(s, q, 1, 8, DType::F32).unwrap()
    };
    let cfg = LearnerConfig {
        algo: Algo::Maml,
        inner_lr: 0.1,
        inner_steps: 2,
        ..LearnerConfig::default()
    };
    let score = |l: &Learner| {
        let state = l.save_state().unwrap();
        let mut sum = 0.0;
        for i in 0..40 {
            sum += l.adapt(&toy(10_000 + i), 2).unwrap().query_accuracy;
            l.restore_state(&state).unwrap();
        }
        sum / 40.0
    };
    let scratch = learner(&net, cfg.clone(), None, DType::F32);
    let before = score(&scratch);
    let meta = learner(&net, cfg, None, DType::F32);
    let mut opt = edgeslim_train::optim::AdamW::new(
        meta.names
            .iter()
            .cloned()
            .zip(meta.vars.iter().cloned())
            .collect(),
        edgeslim_train::optim::AdamWConfig {
            lr: 3e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
        &edgeslim_train::optim::DecayPolicy::default(),
    )
    .unwrap();
    use edgeslim_train::optim::Optimizer;
    for step in 0..200 {
        let task = toy(step);
        let mg = meta.meta_gradient(&task, 0.0).unwrap();
        // A store keyed by the weights, refilled with the meta-gradient.
        let zero = meta
            .vars
            .iter()
            .map(|v| v.as_tensor().sum_all().unwrap().affine(0.0, 0.0).unwrap())
            .reduce(|a, b| (a + b).unwrap())
            .unwrap();
        let mut store = zero.backward().unwrap();
        for (v, g) in meta.vars.iter().zip(mg.weights) {
            store.insert(v.as_tensor(), g);
        }
        opt.step(&store).unwrap();
    }
    let after = score(&meta);
    eprintln!("MAML {after:.3} against scratch {before:.3}");
    assert!(
        after > before + 0.05,
        "MAML {after:.3} against scratch {before:.3}"
    );
}
