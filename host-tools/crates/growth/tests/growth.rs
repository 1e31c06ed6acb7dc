//! Growth: a split keeps the function (≤ 1e-5), the splitting score predicts the loss change
//! of a split (finite differences), and the budget is never exceeded.

use edgeslim_growth::grow::split_neurons;
use edgeslim_growth::run::{choose, param_count, scaled};
use edgeslim_growth::split::{scores, NeuronScore};
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

/// The splitting score is the second-order loss change of a split along its eigenvector:
/// 2·(L_split − L)/ε² ≈ λ, by finite differences in f64, for the most negative and the median
/// score of a tiny ViT.
#[test]
fn the_splitting_score_matches_finite_differences() {
    let cfg = tiny();
    let model = model_of(&cfg);
    let (x, y) = batch(12, 5, DType::F64);
    let f64_engine = EngineOptions {
        dtype: DType::F64,
        ..EngineOptions::default()
    };
    let all = scores(&model, cfg.depth, &[(x.clone(), y.clone())], &f64_engine).unwrap();
    let loss = |mm: &OnnxModel| {
        cross_entropy(&logits(mm, &x, DType::F64), &y)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
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

/// Growth picks only negative scores, the most negative first, and never past the budget.
#[test]
fn choosing_splits_respects_the_budget() {
    let s = |n: usize, lambda: f64| NeuronScore {
        block: 0,
        neuron: n,
        lambda,
        direction: vec![],
    };
    let all = vec![s(0, -1.0), s(1, 0.5), s(2, -3.0), s(3, -2.0), s(4, -0.1)];
    let picked = choose(&all, 10, 100, 17, 100 + 17 * 3 + 16);
    let ids: Vec<usize> = picked.iter().map(|p| p.neuron).collect();
    assert_eq!(
        ids,
        vec![2, 3, 0],
        "three fit the budget, most negative first"
    );
    assert!(choose(&all, 10, 100, 17, 116).is_empty());
    assert_eq!(choose(&all, 2, 0, 17, 10_000).len(), 2);
    assert_eq!(
        choose(&all, 10, 0, 17, 10_000).len(),
        4,
        "never a positive score"
    );
}
