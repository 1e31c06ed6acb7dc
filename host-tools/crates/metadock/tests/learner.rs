//! The meta-gradients against finite differences, the exported task model against the gated
//! network, and MAML against training from scratch on toy tasks.

use edgeslim_metadock::export::task_model;
use edgeslim_metadock::gates::Gates;
use edgeslim_metadock::learner::{Algo, GateConfig, Learner, LearnerConfig, Task};
use edgeslim_metadock::nets::{self, NetConfig, INPUT, LOGITS};
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
    NetConfig {
        in_channels: 1,
        side: 6,
        widths: vec![2, 3],
        ways: 2,
        seed: 3,
    }
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

/// The packed task model computes what the gated network computes on the task (≤ 1e-5),
/// with dead channels removed or folded and fewer parameters.
#[test]
fn exported_task_model_equals_the_gated_network_and_is_smaller() {
    let net = NetConfig {
        in_channels: 1,
        side: 8,
        widths: vec![4, 5, 3],
        ways: 3,
        seed: 5,
    };
    let mut r = edgeslim_data::rng(9, 2);
    let mut zeta: Vec<Vec<f32>> = net
        .kernels()
        .iter()
        .map(|&k| {
            (0..k)
                .map(|_| {
                    if r.random_range(0.0..1.0) < 0.2 {
                        -1.0f32
                    } else {
                        1.0
                    }
                })
                .collect()
        })
        .collect();
    // Block 1's channel 2 reads nothing (a constant), block 2 reads nothing from block 1's
    // channel 1 (unused), block 2's channel 0 reads nothing (folded into the bias).
    for i in 0..4 {
        zeta[1][2 * 4 + i] = -1.0;
    }
    for o in 0..3 {
        zeta[2][o * 5 + 1] = -1.0;
    }
    zeta[2][..5].fill(-1.0);
    let gates = Gates::from_values(&net, &zeta, DType::F32).unwrap();
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
    let l = learner(&net, cfg, Some(gates), DType::F32);
    let task = random_task(3, 4, 5, net.side, 4, DType::F32);
    let a = l.adapt(&task, 2).unwrap();
    let tm = task_model(&l.module, &l.net, &a.masks).unwrap();
    let s = &tm.stats;
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
    let dense = task_model(
        &l.module,
        &l.net,
        &net.kernels()
            .iter()
            .map(|&k| vec![1.0; k])
            .collect::<Vec<_>>(),
    )
    .unwrap()
    .stats;
    assert!(s.params < dense.params && s.nonzero_params < s.params && s.macs < dense.macs);
    // Gated network in evaluation mode (the support's statistics) against the task model.
    let hard: Vec<Tensor> = a
        .masks
        .iter()
        .enumerate()
        .map(|(b, m)| {
            Tensor::from_vec(
                m.clone(),
                (net.widths[b], net.in_channels_of(b), 1, 1),
                task.query_x.device(),
            )
            .unwrap()
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
}

/// Toy tasks: 2 ways, 3 shots, each a random pair of 6 fixed prototype patterns plus noise, with the
/// labels in random order, so no single network solves them without adapting. A few MAML
/// meta-steps give an initialisation from which the same inner loop does better on new tasks
/// than it does from a fresh network.
#[test]
fn maml_beats_training_from_scratch_on_toy_tasks() {
    let net = NetConfig {
        in_channels: 1,
        side: 8,
        widths: vec![8, 8],
        ways: 2,
        seed: 1,
    };
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
