//! GLoRA's adapters on every supported layer kind — MatMul with and without a bias Add, Gemm
//! with transB and without, Conv with and without bias, grouped — checked by running the
//! graphs in tract: zero-initialised adapters are the base model, and the merged plain model
//! equals the adapter model with trained (here: random) factors and has the input's nodes.

use edgeslim_glora::layers::{self, Layer};
use edgeslim_glora::{adapter, LayerSupport, Support};
use edgeslim_onnx::builder::GraphBuilder;
use edgeslim_onnx::node::{int, ints};
use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_runtime::input::{tensor_to_f32_vec, SplitMix64};
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use edgeslim_runtime::{LoadOptions, LoadedModel};
use std::path::Path;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64(seed);
    (0..n).map(|_| r.next_f32() * 2.0 - 1.0).collect()
}

fn t(dims: &[usize], seed: u64) -> Tensor {
    Tensor::f32(dims.to_vec(), random(dims.iter().product(), seed)).unwrap()
}

/// x [2, 8] → MatMul (no bias) → MatMul + Add → Gemm(transB) → Gemm → y [2, 5].
fn linear_model() -> OnnxModel {
    let mut b = GraphBuilder::new("linears", 17);
    let x = b.input("x", &[2, 8]);
    let w1 = b.init("w1", &t(&[8, 6], 1));
    b.node_named("MatMul", "fc1", &[&x, &w1], &["h1"], vec![]);
    let w2 = b.init("w2", &t(&[6, 7], 2));
    let b2 = b.init("b2", &t(&[7], 3));
    b.node_named("MatMul", "fc2", &["h1", &w2], &["h2m"], vec![]);
    b.node_named("Add", "fc2.bias", &["h2m", &b2], &["h2"], vec![]);
    b.node_named("Relu", "relu", &["h2"], &["h2r"], vec![]);
    let w3 = b.init("w3", &t(&[9, 7], 4));
    let b3 = b.init("b3", &t(&[9], 5));
    b.node_named(
        "Gemm",
        "fc3",
        &["h2r", &w3, &b3],
        &["h3"],
        vec![int("transB", 1)],
    );
    let w4 = b.init("w4", &t(&[9, 5], 6));
    let b4 = b.init("b4", &t(&[5], 7));
    b.node_named("Gemm", "head", &["h3", &w4, &b4], &["y"], vec![]);
    b.output("y");
    b.finish()
}

/// x [2, 4, 9, 9] → Conv 3×3 (no bias) → Conv 3×3 grouped (2) with bias → Conv 1×1 → y.
fn conv_model() -> OnnxModel {
    let mut b = GraphBuilder::new("convs", 17);
    let x = b.input("x", &[2, 4, 9, 9]);
    let w1 = b.init("c1.weight", &t(&[6, 4, 3, 3], 11));
    b.node_named(
        "Conv",
        "c1",
        &[&x, &w1],
        &["f1"],
        vec![ints("kernel_shape", &[3, 3])],
    );
    let w2 = b.init("c2.weight", &t(&[6, 3, 3, 3], 12));
    let b2 = b.init("c2.bias", &t(&[6], 13));
    b.node_named(
        "Conv",
        "c2",
        &["f1", &w2, &b2],
        &["f2"],
        vec![ints("kernel_shape", &[3, 3]), int("group", 2)],
    );
    let w3 = b.init("c3.weight", &t(&[3, 6, 1, 1], 14));
    let b3 = b.init("c3.bias", &t(&[3], 15));
    b.node_named("Conv", "c3", &["f2", &w3, &b3], &["y"], vec![]);
    b.output("y");
    b.finish()
}

fn run(m: &OnnxModel, dims: &[usize], x: &[f32]) -> Vec<f32> {
    let dims_s: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    let opts = LoadOptions {
        input_shapes: vec![format!("x={}", dims_s.join(",")).parse().unwrap()],
        ..LoadOptions::default()
    };
    let loaded =
        LoadedModel::from_bytes(m.to_bytes().unwrap(), Path::new("m"), None, &opts).unwrap();
    let t = TractTensor::from_shape(dims, x).unwrap();
    tensor_to_f32_vec(&loaded.run(vec![t]).unwrap()[0]).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Every adapter factor set to random values (a trained adapter's stand-in).
fn randomise(m: &mut OnnxModel, seed: u64) {
    let names: Vec<(String, Vec<usize>)> = m
        .graph()
        .initializer
        .iter()
        .filter(|t| t.name.starts_with(adapter::PREFIX))
        .map(|t| (t.name.clone(), t.dims.iter().map(|&d| d as usize).collect()))
        .collect();
    for (i, (n, dims)) in names.into_iter().enumerate() {
        let v: Vec<f32> = random(dims.iter().product(), seed + i as u64)
            .iter()
            .map(|x| 0.3 * x)
            .collect();
        m.set_initializer(&n, &Tensor::f32(dims, v).unwrap());
    }
}

fn supports() -> Vec<LayerSupport> {
    vec![
        LayerSupport::glora_full(2),
        LayerSupport::lora(3),
        LayerSupport::parse("A=vector,B=scalar,C=vector,D=scalar,E=vector").unwrap(),
        LayerSupport::parse("A=scalar,B=vector,C=lora-1,D=vector,E=scalar").unwrap(),
    ]
}

fn check(model: &OnnxModel, dims: &[usize], expect_layers: usize) {
    let (found, head) = layers::find(model).unwrap();
    assert_eq!(found.len(), expect_layers);
    // Every layer wrapped here, the head included, so every layout is exercised.
    let x = random(dims.iter().product(), 99);
    let base = run(model, dims, &x);
    for s in supports() {
        let plan: Vec<(Layer, LayerSupport)> = found.iter().map(|l| (l.clone(), s)).collect();
        let (mut adapted, adapters) = adapter::insert(model, &plan, 3).unwrap();
        assert_eq!(adapters.len(), expect_layers, "{}", s.label());
        let d = max_diff(&base, &run(&adapted, dims, &x));
        assert!(
            d <= 1e-6,
            "{}: zero-initialised adapters change the output by {d}",
            s.label()
        );

        randomise(&mut adapted, 5);
        let with_adapters = run(&adapted, dims, &x);
        assert!(
            max_diff(&base, &with_adapters) > 1e-3,
            "{}: factors had no effect",
            s.label()
        );
        let merged = adapter::merge(model, &adapted, &adapters).unwrap();
        let d = max_diff(&with_adapters, &run(&merged, dims, &x));
        assert!(
            d <= 1e-5,
            "{}: merged differs from the adapter model by {d}",
            s.label()
        );
        // Node by node the input's graph; every initializer keeps its name and shape.
        let g0 = model.graph();
        let g1 = merged.graph();
        assert_eq!(g0.node, g1.node);
        assert_eq!(g0.initializer.len(), g1.initializer.len());
        for (a, b) in g0.initializer.iter().zip(&g1.initializer) {
            assert_eq!((&a.name, &a.dims), (&b.name, &b.dims));
        }
        let _ = head;
    }
}

#[test]
fn linear_layers_merge_exactly_and_start_as_the_base_model() {
    let m = linear_model();
    let (found, head) = layers::find(&m).unwrap();
    assert_eq!(head.as_deref(), Some("head"));
    assert!(found[0].bias.is_none() && found[1].bias.is_some());
    assert_eq!((found[2].outputs(), found[2].fan_in()), (9, 7));
    check(&m, &[2, 8], 4);
}

#[test]
fn convolutions_merge_exactly_and_start_as_the_base_model() {
    let m = conv_model();
    let (found, _) = layers::find(&m).unwrap();
    assert_eq!(found[1].fan_in(), 3 * 9, "grouped: in/groups · kh · kw");
    check(&m, &[2, 4, 9, 9], 3);
}

#[test]
fn the_zoo_models_merge_exactly() {
    for (file, dims, n) in [
        ("models/vit-tiny-mnist.onnx", [2usize, 1, 28, 28], 4 * 6 + 2), // + patch conv, head
        ("models/mnist-cnn.onnx", [2, 1, 28, 28], 0),
    ] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../..")
            .join(file);
        let m = OnnxModel::load(&p).unwrap();
        let (found, head) = layers::find(&m).unwrap();
        if n > 0 {
            assert_eq!(found.len(), n, "{file}");
        }
        let chosen = layers::select(&found, head.as_deref(), None, layers::has_attention(&m));
        assert!(!chosen.is_empty(), "{file}");
        assert!(chosen.iter().all(|l| Some(&l.node) != head.as_ref()));
        let x = random(dims.iter().product(), 4);
        let base = run(&m, &dims, &x);
        let plan: Vec<_> = chosen
            .iter()
            .map(|l| (l.clone(), LayerSupport::glora_full(2)))
            .collect();
        let (mut adapted, adapters) = adapter::insert(&m, &plan, 1).unwrap();
        assert!(max_diff(&base, &run(&adapted, &dims, &x)) <= 1e-6, "{file}");
        randomise(&mut adapted, 8);
        let merged = adapter::merge(&m, &adapted, &adapters).unwrap();
        let d = max_diff(&run(&adapted, &dims, &x), &run(&merged, &dims, &x));
        assert!(d <= 1e-5, "{file}: {d}");
        assert_eq!(m.graph().node, merged.graph().node);
    }
    let _ = Support::None;
}

/// The supernet with one configuration's gates open equals the plain adapters of that
/// configuration holding the same factor values: what the search scores is what it returns.
#[test]
fn a_supernet_configuration_equals_its_plain_adapters() {
    use edgeslim_glora::supernet::Supernet;
    for (model, dims) in [
        (linear_model(), vec![2usize, 8]),
        (conv_model(), vec![2, 4, 9, 9]),
    ] {
        let (found, _) = layers::find(&model).unwrap();
        let (mut graph, sn) = Supernet::build(&model, &found, 2, 4).unwrap();
        randomise(&mut graph, 21);
        let x = random(dims.iter().product(), 5);
        let mut rng = SplitMix64(8);
        for _ in 0..4 {
            let cfg = sn.random(&mut rng);
            let mut gated = graph.clone();
            for (name, v) in sn.gates(&cfg) {
                gated.set_initializer(&name, &Tensor::f32(vec![1], vec![v]).unwrap());
            }
            let plan: Vec<(Layer, LayerSupport)> = sn
                .adapters
                .iter()
                .zip(&cfg)
                .map(|(a, s)| (a.layer.clone(), *s))
                .collect();
            let (mut plain, adapters) = adapter::insert(&model, &plan, 0).unwrap();
            let names: Vec<String> = plain
                .graph()
                .initializer
                .iter()
                .map(|t| t.name.clone())
                .collect();
            for n in names.iter().filter(|n| n.starts_with(adapter::PREFIX)) {
                let t = Tensor::from_proto(graph.initializer(n).unwrap()).unwrap();
                plain.set_initializer(n, &t);
            }
            let want = run(&gated, &dims, &x);
            let d = max_diff(&want, &run(&plain, &dims, &x));
            assert!(d <= 1e-5, "{cfg:?}: {d}");
            let merged = adapter::merge(&model, &plain, &adapters).unwrap();
            assert!(max_diff(&want, &run(&merged, &dims, &x)) <= 1e-5);
            assert_eq!(
                sn.params(&cfg),
                adapters.iter().map(|a| a.params()).sum::<usize>()
            );
        }
    }
}

/// The search is reproducible from its seed and never leaves the budget.
#[test]
fn the_evolutionary_search_is_reproducible_and_keeps_the_budget() {
    use edgeslim_glora::supernet::{evolve, SearchOptions, Supernet};
    let model = linear_model();
    let (found, _) = layers::find(&model).unwrap();
    let (_, sn) = Supernet::build(&model, &found, 2, 4).unwrap();
    let opts = SearchOptions {
        population: 12,
        generations: 6,
        parents: 3,
        mutations: 6,
        crossovers: 6,
        budget: Some(60),
        ..SearchOptions::default()
    };
    // A fitness that prefers configurations near 50 values, with a twist per layer so the
    // optimum is not unique in count alone.
    let score = |c: &Vec<LayerSupport>| -> f64 {
        let p = sn.params(c) as f64;
        let lora_a = c.iter().filter(|s| matches!(s.a, Support::Lora(_))).count() as f64;
        -(p - 50.0).abs() + 0.1 * lora_a
    };
    let run_search = |seed| {
        evolve(&sn, &opts, seed, |c| {
            assert!(sn.params(c) <= 60, "over the budget: {}", sn.params(c));
            Ok(score(c))
        })
        .unwrap()
    };
    let (a, b) = (run_search(3), run_search(3));
    assert_eq!(a.config, b.config);
    assert_eq!(a.fitness, b.fitness);
    assert!(a.history.len() == 6 && a.evaluations > 12);
    // Evolution improves on the random first generation.
    assert!(a.fitness >= a.history[0].best);
    assert!(a.history.last().unwrap().mean > a.history[0].mean);
}

/// One-element factors (scalar supports) and gates are weights the engine trains when named
/// so; otherwise the engine takes such tensors for fixed constants.
#[test]
fn scalar_factors_are_trainable_weights() {
    use edgeslim_train::engine::{EngineOptions, GraphModule};
    let model = linear_model();
    let (found, _) = layers::find(&model).unwrap();
    let s = LayerSupport::parse("A=scalar,B=scalar,C=none,D=scalar,E=scalar").unwrap();
    let plan: Vec<_> = found.iter().map(|l| (l.clone(), s)).collect();
    let (adapted, _) = adapter::insert(&model, &plan, 0).unwrap();
    let names = |prefixes: Vec<String>| -> Vec<String> {
        let m = GraphModule::from_onnx(
            &adapted,
            &EngineOptions {
                weight_prefixes: prefixes,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        m.trainable().into_iter().map(|(n, _)| n).collect()
    };
    let with = names(vec![adapter::PREFIX.to_string()]);
    assert!(with.iter().any(|n| n == "glora.fc1.a.scalar"), "{with:?}");
    assert!(with.iter().any(|n| n == "glora.fc2.e.scalar"), "{with:?}");
    let without = names(Vec::new());
    assert!(
        !without.iter().any(|n| n.ends_with(".scalar")),
        "{without:?}"
    );
}
