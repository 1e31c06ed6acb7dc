//! Growth: a split keeps the function (≤ 1e-5), the splitting score predicts the loss change
//! of a split (finite differences), and the budget is never exceeded.

use edgeslim_growth::grow::{grow_step, split_neurons};
use edgeslim_growth::run::{choose, param_count, scaled, SplitCost};
use edgeslim_growth::split::{scores, HeadDirection, NeuronScore, QkvScore, Scores};
use edgeslim_onnx::OnnxModel;
use edgeslim_train::engine::candle_core::{DType, Device, Tensor};
use edgeslim_train::engine::loss::cross_entropy;
use edgeslim_train::engine::{EngineOptions, GraphModule};
use edgeslim_train::families::vit::{self, VitConfig};
use rand::RngExt;

fn tiny() -> VitConfig {
    let cfg = VitConfig {
        in_channels: 1,
        image_size: 8,
        patch: 4,
        dim: 8,
        depth: 2,
        heads: 2,
        mlp_ratio: 2.0,
        classes: 3,
        seed: 4,
        blocks: None,
    };
    scaled(&cfg, 0.5)
}

/// The tiny ViT with its matrices redrawn at a scale where every block matters (a fresh
/// ViT's 0.02-scale weights leave its MLPs nearly silent).
fn model_of(cfg: &VitConfig) -> OnnxModel {
    let mut m = vit::build(cfg).unwrap();
    let mut r = edgeslim_data::rng(8, 3);
    let names: Vec<(String, Vec<usize>)> = m
        .graph()
        .initializer
        .iter()
        .filter(|t| t.dims.len() >= 2)
        .map(|t| (t.name.clone(), t.dims.iter().map(|&d| d as usize).collect()))
        .collect();
    for (name, dims) in names {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| r.random_range(-0.6f32..0.6)).collect();
        m.set_initializer(&name, &edgeslim_onnx::Tensor::f32(dims, v).unwrap());
    }
    m
}

fn batch(n: usize, seed: u64, dtype: DType) -> (Tensor, Tensor) {
    let mut r = edgeslim_data::rng(seed, 1);
    let x: Vec<f32> = (0..n * 64).map(|_| r.random_range(-1.0f32..1.0)).collect();
    let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    (
        Tensor::from_vec(x, (n, 1, 8, 8), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .unwrap(),
        Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
    )
}

fn module(m: &OnnxModel, dtype: DType) -> GraphModule {
    GraphModule::from_onnx(
        m,
        &EngineOptions {
            dtype,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

fn logits(m: &OnnxModel, x: &Tensor, dtype: DType) -> Tensor {
    module(m, dtype)
        .forward_inference(&[("x", x.clone())], &[])
        .unwrap()["logits"]
        .clone()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Splitting neurons of both blocks leaves the outputs within 1e-5 at the default ε, exactly
/// equal (to rounding) at ε = 0, and the grown blocks wider by the splits.
#[test]
fn a_growth_step_keeps_the_function() {
    let cfg = tiny();
    let model = model_of(&cfg);
    let (x, _) = batch(6, 1, DType::F32);
    let before = logits(&model, &x, DType::F32);
    let mut r = edgeslim_data::rng(3, 2);
    let picks: Vec<NeuronScore> = [(0, 1), (0, 5), (1, 0)]
        .iter()
        .map(|&(block, neuron)| {
            let v: Vec<f32> = (0..8).map(|_| r.random_range(-1.0f32..1.0)).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            NeuronScore {
                block,
                neuron,
                lambda: -1.0,
                direction: v.iter().map(|x| x / n).collect(),
            }
        })
        .collect();
    let (grown, gcfg) = split_neurons(&model, &cfg, &picks, 1e-3).unwrap();
    let mlp: Vec<usize> = gcfg.block_shapes().iter().map(|b| b.mlp).collect();
    assert_eq!(mlp, vec![8 + 2, 8 + 1]);
    assert_eq!(param_count(&grown), param_count(&model) + 3 * (2 * 8 + 1));
    let after = logits(&grown, &x, DType::F32);
    let d = max_diff(&before, &after);
    assert!(d <= 1e-5, "outputs moved by {d}");
    let (exact, _) = split_neurons(&model, &cfg, &picks, 0.0).unwrap();
    let d0 = max_diff(&before, &logits(&exact, &x, DType::F32));
    assert!(d0 <= 1e-6, "an ε = 0 split moved the outputs by {d0}");
    // A large ε does change the function (the check above can fail).
    let (far, _) = split_neurons(&model, &cfg, &picks, 0.5).unwrap();
    assert!(max_diff(&before, &logits(&far, &x, DType::F32)) > 1e-4);
}

/// Every unit's score for the batch (x, y), measured in f64.
fn f64_scores(model: &OnnxModel, cfg: &VitConfig, x: &Tensor, y: &Tensor) -> Scores {
    let f64_engine = EngineOptions {
        dtype: DType::F64,
        ..EngineOptions::default()
    };
    scores(model, cfg, &[(x.clone(), y.clone())], &f64_engine).unwrap()
}

/// The mean cross-entropy of `model` on (x, y), in f64.
fn f64_loss(model: &OnnxModel, x: &Tensor, y: &Tensor) -> f64 {
    cross_entropy(&logits(model, x, DType::F64), y)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The splitting score is the second-order loss change of a split along its eigenvector:
/// 2·(L_split − L)/ε² ≈ λ, by finite differences in f64, for the most negative and the median
/// score of a tiny ViT.
#[test]
fn the_splitting_score_matches_finite_differences() {
    let cfg = tiny();
    let model = model_of(&cfg);
    let (x, y) = batch(12, 5, DType::F64);
    let all = f64_scores(&model, &cfg, &x, &y).mlp;
    let loss = |mm: &OnnxModel| f64_loss(mm, &x, &y);
    let base = loss(&model);
    let mut sorted: Vec<&NeuronScore> = all.iter().collect();
    sorted.sort_by(|a, b| a.lambda.total_cmp(&b.lambda));
    let (lo, mid) = (sorted[0], sorted[sorted.len() / 2]);
    assert!(
        lo.lambda < mid.lambda && lo.lambda < 0.0,
        "{} {}",
        lo.lambda,
        mid.lambda
    );
    for s in [lo, mid] {
        // ε relative to the neuron's input-weight norm, as split_neurons takes it.
        let w = model
            .initializer(&format!("blocks.{}.mlp.fc1.weight", s.block))
            .unwrap();
        let w = edgeslim_onnx::Tensor::from_proto(w).unwrap().to_f32_vec();
        let m_width = cfg.block_shapes()[s.block].mlp;
        let norm = (0..8)
            .map(|r| (w[r * m_width + s.neuron] as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let rel = 0.05;
        let eps = rel * norm;
        let (split, _) = split_neurons(&model, &cfg, std::slice::from_ref(s), rel).unwrap();
        let estimate = 2.0 * (loss(&split) - base) / (eps * eps);
        assert!(
            (estimate - s.lambda).abs() <= 0.05 * s.lambda.abs() + 1e-3,
            "block {} neuron {}: λ {} against finite differences {estimate}",
            s.block,
            s.neuron,
            s.lambda
        );
    }
}

fn unit(r: &mut impl rand::Rng, d: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..d).map(|_| r.random_range(-1.0f32..1.0)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// Splitting QKV units (one more dimension in every head of a block) keeps the outputs
/// within 1e-5, widens the heads by one per unit, keeps the softmax scale and adds
/// heads·(4·dim + 3) parameters per unit; a large ε moves the outputs.
#[test]
fn a_qkv_growth_step_keeps_the_function() {
    let cfg = tiny();
    let model = model_of(&cfg);
    let (x, _) = batch(6, 1, DType::F32);
    let before = logits(&model, &x, DType::F32);
    let mut r = edgeslim_data::rng(5, 2);
    let units: Vec<QkvScore> = [(0, 0), (0, 1), (1, 1)]
        .iter()
        .map(|&(block, rank)| QkvScore {
            block,
            rank,
            lambda: -1.0,
            heads: (0..2)
                .map(|_| HeadDirection {
                    sigma: 1.0,
                    u: unit(&mut r, 8),
                    w: unit(&mut r, 8),
                })
                .collect(),
        })
        .collect();
    let neuron = NeuronScore {
        block: 1,
        neuron: 2,
        lambda: -1.0,
        direction: unit(&mut r, 8),
    };
    let shapes = cfg.block_shapes();
    let (grown, gcfg) =
        grow_step(&model, &cfg, std::slice::from_ref(&neuron), &units, 1e-3).unwrap();
    let after = gcfg.block_shapes();
    assert_eq!(
        after.iter().map(|b| b.head_dim).collect::<Vec<_>>(),
        vec![shapes[0].head_dim + 2, shapes[1].head_dim + 1]
    );
    assert_eq!(after[1].mlp, shapes[1].mlp + 1);
    assert!(after.iter().zip(&shapes).all(|(a, b)| a.scale == b.scale));
    assert_eq!(
        param_count(&grown),
        param_count(&model) + 3 * 2 * (4 * 8 + 3) + (2 * 8 + 1)
    );
    let d = max_diff(&before, &logits(&grown, &x, DType::F32));
    assert!(d <= 1e-5, "outputs moved by {d}");
    let (exact, _) = grow_step(&model, &cfg, &[], &units, 0.0).unwrap();
    let d0 = max_diff(&before, &logits(&exact, &x, DType::F32));
    assert!(d0 <= 1e-5, "an ε = 0 split moved the outputs by {d0}");
    let (far, _) = grow_step(&model, &cfg, &[], &units, 0.5).unwrap();
    assert!(max_diff(&before, &logits(&far, &x, DType::F32)) > 1e-4);
    // A config that does not describe the model is an error naming the tensor, not a panic.
    let mut wrong = cfg.block_shapes();
    wrong[0].head_dim += 1;
    let wrong = VitConfig {
        blocks: Some(wrong),
        ..cfg.clone()
    };
    let e = grow_step(&model, &wrong, &[], &units, 1e-3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("blocks.0.attn.q.weight"), "{e}");
}

/// A QKV unit's score is the second-order loss change of its split: the loss moves by
/// Σ over heads −2·ε_h²·σ_h (ε_h relative to the RMS of the split q and k columns' norms), by finite
/// differences in f64, for the first and the second unit of each block; and the first
/// unit's score is the most negative of its block.
#[test]
fn the_qkv_score_matches_finite_differences() {
    let cfg = tiny();
    let model = model_of(&cfg);
    let (x, y) = batch(12, 7, DType::F64);
    let all = f64_scores(&model, &cfg, &x, &y).qkv;
    let loss = |mm: &OnnxModel| f64_loss(mm, &x, &y);
    let base = loss(&model);
    let shapes = cfg.block_shapes();
    for (b, shape) in shapes.iter().enumerate() {
        let hd = shape.head_dim;
        let mine: Vec<&QkvScore> = all.iter().filter(|s| s.block == b).collect();
        assert_eq!(mine.len(), hd);
        assert!(
            mine.windows(2)
                .all(|w| w[0].lambda <= w[1].lambda && w[1].lambda <= 0.0),
            "block {b}: the units' scores are not in order: {:?}",
            mine.iter().map(|s| s.lambda).collect::<Vec<_>>()
        );
        for s in &mine[..2] {
            let col = |which: &str, c: usize| {
                let w = model
                    .initializer(&format!("blocks.{b}.attn.{which}.weight"))
                    .unwrap();
                let w = edgeslim_onnx::Tensor::from_proto(w).unwrap().to_f32_vec();
                let width = 2 * hd;
                (0..8)
                    .map(|r| (w[r * width + c] as f64).powi(2))
                    .sum::<f64>()
            };
            let rel = 0.03;
            let expected: f64 = s
                .heads
                .iter()
                .enumerate()
                .map(|(h, dir)| {
                    let c = h * hd + s.rank;
                    let eps2 = rel * rel * (col("q", c) + col("k", c)) / 2.0;
                    -2.0 * eps2 * dir.sigma
                })
                .sum();
            let (split, _) = grow_step(&model, &cfg, &[], std::slice::from_ref(s), rel).unwrap();
            let measured = loss(&split) - base;
            assert!(
                expected < 0.0 && (measured - expected).abs() <= 0.05 * expected.abs(),
                "block {b} unit {}: predicted {expected}, measured {measured}",
                s.rank
            );
        }
    }
}

/// Growth picks only negative scores, the most negative first, and never past the budget.
#[test]
fn choosing_splits_respects_the_budget() {
    let s = |n: usize, lambda: f64| NeuronScore {
        block: 0,
        neuron: n,
        lambda,
        direction: vec![],
    };
    let all = Scores {
        mlp: vec![s(0, -1.0), s(1, 0.5), s(2, -3.0), s(3, -2.0), s(4, -0.1)],
        qkv: vec![],
    };
    let cost = SplitCost {
        mlp: 17,
        qkv_per_head: 35,
    };
    let ids = |p: &edgeslim_growth::run::Picks| p.mlp.iter().map(|p| p.neuron).collect::<Vec<_>>();
    let picked = choose(&all, 10, 100, cost, cost, &[2], 100 + 17 * 3 + 16);
    assert_eq!(
        ids(&picked),
        vec![2, 3, 0],
        "three fit the budget, most negative first"
    );
    assert!(choose(&all, 10, 100, cost, cost, &[2], 116).mlp.is_empty());
    assert_eq!(choose(&all, 2, 0, cost, cost, &[2], 10_000).mlp.len(), 2);
    assert_eq!(
        choose(&all, 10, 0, cost, cost, &[2], 10_000).mlp.len(),
        4,
        "never a positive score"
    );
    // QKV units compete per added parameter: −10 over 2·35 = 70 parameters (−0.143 per
    // parameter) comes after −3/17 (−0.176) and before −2/17 (−0.118); a unit that no longer
    // fits is passed over for a neuron that does.
    let q = |rank: usize, lambda: f64| QkvScore {
        block: 0,
        rank,
        lambda,
        heads: vec![],
    };
    let mixed = Scores {
        qkv: vec![q(0, -10.0), q(1, 0.0)],
        ..all
    };
    let p = choose(&mixed, 3, 0, cost, cost, &[2], 10_000);
    assert_eq!(ids(&p), vec![2, 3]);
    assert_eq!(p.qkv.iter().map(|u| u.rank).collect::<Vec<_>>(), vec![0]);
    let tight = choose(&mixed, 10, 0, cost, cost, &[2], 17 + 17 + 17);
    assert_eq!(
        ids(&tight),
        vec![2, 3, 0],
        "the unit did not fit, the neurons did"
    );
    assert!(tight.qkv.is_empty());
}
