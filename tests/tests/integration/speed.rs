//! The speed features (docs/results/speed.md): frames pipelined over workers come back in
//! order and equal to one-at-a-time runs; several models are benchmarked side by side; the
//! plan dump names tract's kernels; a plain tract loop is measured next to ours.
//! No wall-clock bound is asserted anywhere: only counts, order and values.

use edgeslim::onnx::builder::GraphBuilder;
use edgeslim::onnx::node::ints;
use edgeslim::onnx::SaveOptions;
use edgeslim_e2e::models::Weights;
use edgeslim_e2e::{run_ok, workspace};
use edgeslim_runtime::input::tensor_to_f32_vec;
use edgeslim_runtime::tract_onnx::prelude::Tensor;
use edgeslim_runtime::{LoadOptions, LoadedModel};
use std::path::{Path, PathBuf};

fn small_cnn(dir: &Path) -> PathBuf {
    let mut w = Weights::new(9);
    let mut b = GraphBuilder::new("small_cnn", 13);
    let x = b.input("x", &[1, 3, 32, 32]);
    let w1 = b.init("w1", &w.uniform(&[16, 3, 3, 3], 0.4));
    let c1 = b.node("Conv", &[&x, &w1], vec![ints("pads", &[1, 1, 1, 1])]);
    let r1 = b.node("Relu", &[&c1], vec![]);
    let w2 = b.init("w2", &w.uniform(&[8, 16, 1, 1], 0.4));
    b.node_named("Conv", "head", &[&r1, &w2], &["y"], vec![]);
    b.output("y");
    let p = dir.join("small.onnx");
    b.finish().save(&p, &SaveOptions::default()).unwrap();
    p
}

#[test]
fn pipelined_frames_come_back_in_order_and_equal_to_single_runs() {
    let dir = tempfile::tempdir().unwrap();
    let model = LoadedModel::load(&small_cnn(dir.path()), &LoadOptions::default()).unwrap();
    let frames: Vec<Vec<Tensor>> = (0..23)
        .map(|i| {
            let v = Weights::new(100 + i)
                .uniform(&[3 * 32 * 32], 1.0)
                .to_f32_vec();
            vec![Tensor::from_shape(&[1, 3, 32, 32], &v).unwrap()]
        })
        .collect();
    let expected: Vec<Vec<f32>> = frames
        .iter()
        .map(|f| tensor_to_f32_vec(&model.run(f.clone()).unwrap()[0]).unwrap())
        .collect();
    for workers in [1, 3] {
        let mut got: Vec<(usize, Vec<f32>)> = Vec::new();
        let stats =
            edgeslim_runtime::stream::run_stream(&model, workers, frames.clone(), |i, o| {
                got.push((i, tensor_to_f32_vec(&o[0]).unwrap()));
                Ok(())
            })
            .unwrap();
        assert_eq!(stats.frames, 23);
        assert_eq!(stats.workers, workers);
        assert_eq!(stats.latency.samples_ms.len(), 23);
        let order: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, (0..23).collect::<Vec<_>>(), "results in input order");
        for ((_, g), e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "a pipelined frame equals its single run bit for bit");
        }
    }
    // A failing consumer stops the stream with its error, not a hang.
    let e = edgeslim_runtime::stream::run_stream(&model, 2, frames.clone(), |i, _| {
        if i == 5 {
            Err(edgeslim_runtime::RuntimeError::Other(
                "consumer gave up".into(),
            ))
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(e.to_string().contains("consumer gave up"), "{e}");
}

#[test]
fn bench_pipeline_side_by_side_raw_loop_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let m = small_cnn(dir.path());
    let json = dir.path().join("b.json");
    let out = run_ok(
        "edgeslim-rt",
        &[
            "bench",
            m.to_str().unwrap(),
            "--runs",
            "12",
            "--pipeline",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(
        out.stdout.contains("pipelined on 2 workers"),
        "{}",
        out.stdout
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["pipeline"]["frames"], 12);
    assert_eq!(r["pipeline"]["workers"], 2);
    // Each frame's compute time is part of its submitted-to-handed-back time.
    let compute = r["pipeline"]["compute"]["p50_ms"].as_f64().unwrap();
    let latency = r["pipeline"]["latency"]["p50_ms"].as_f64().unwrap();
    assert!(
        compute > 0.0 && compute <= latency,
        "{compute} vs {latency}"
    );
    assert_eq!(r["pipeline"]["compute"]["runs"], 12);

    // Two models side by side: a JSON array, each with every interleaved sample.
    let zoo = workspace().join("models/mnist-cnn.onnx");
    let json2 = dir.path().join("side.json");
    let out = run_ok(
        "edgeslim",
        &[
            "bench",
            zoo.to_str().unwrap(),
            zoo.to_str().unwrap(),
            "--runs",
            "25",
            "--vs-raw-tract",
            "--json",
            json2.to_str().unwrap(),
        ],
    );
    assert!(out.stdout.contains("side by side"), "{}", out.stdout);
    let rs: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json2).unwrap()).unwrap();
    assert_eq!(rs.len(), 2);
    for r in &rs {
        assert_eq!(r["latency"]["samples_ms"].as_array().unwrap().len(), 25);
        let raw = &r["raw_tract"];
        assert_eq!(
            raw["raw_latency"]["samples_ms"].as_array().unwrap().len(),
            25
        );
        let ratio = raw["overhead_ratio_p50"].as_f64().unwrap();
        assert!(ratio.is_finite() && ratio > 0.0, "{raw}");
    }

    // The plan names the kernel tract picked for the convolutions.
    let plan = dir.path().join("plan.json");
    let out = run_ok(
        "edgeslim-rt",
        &[
            "plan",
            m.to_str().unwrap(),
            "--json",
            plan.to_str().unwrap(),
        ],
    );
    assert!(out.stdout.contains("matrix kernels:"), "{}", out.stdout);
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    let kernels = p["kernels"].as_array().unwrap();
    assert!(
        !kernels.is_empty()
            && kernels
                .iter()
                .all(|k| k.as_str().unwrap().contains("_mmm_")),
        "{p}"
    );
    assert!(p["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["op"] == "OptMatMul"));
}

/// A small fully convolutional network with everything the strips must get exactly right:
/// strided and dilated 3×3 convolutions, a depthwise one, max pooling, a 2× nearest
/// up-sampling, a ConvTranspose, a skip connection concatenated on channels, HardSwish, a
/// per-channel scale and a sigmoid head at full resolution.
fn fcn(dir: &Path, global_gate: bool) -> PathBuf {
    use edgeslim::onnx::node::{float, int, string};
    use edgeslim::onnx::Tensor as T;
    let mut w = Weights::new(21);
    let mut b = GraphBuilder::new("fcn", 14);
    // Height left open: strips run the same graph at their own height.
    use edgeslim::onnx::builder::D;
    let x = b.input_dims(
        "x",
        onnx_protobuf::tensor_proto::DataType::FLOAT,
        &[D::N(1), D::N(3), D::Sym("H"), D::N(40)],
    );
    let w1 = b.init("w1", &w.uniform(&[8, 3, 3, 3], 0.5));
    let c1 = b.node(
        "Conv",
        &[&x, &w1],
        vec![ints("pads", &[1, 1, 1, 1]), ints("strides", &[2, 2])],
    );
    let h1 = b.node("HardSwish", &[&c1], vec![]);
    let wd = b.init("wd", &w.uniform(&[8, 1, 3, 3], 0.5));
    let d = b.node(
        "Conv",
        &[&h1, &wd],
        vec![
            ints("pads", &[2, 2, 2, 2]),
            ints("dilations", &[2, 2]),
            int("group", 8),
        ],
    );
    let mut gated = d.clone();
    if global_gate {
        let gp = b.node("GlobalAveragePool", &[&d], vec![]);
        let sg = b.node("Sigmoid", &[&gp], vec![]);
        gated = b.node("Mul", &[&d, &sg], vec![]);
    }
    let p = b.node(
        "MaxPool",
        &[&gated],
        vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
    );
    let w2 = b.init("w2", &w.uniform(&[16, 8, 3, 3], 0.3));
    let c2 = b.node("Conv", &[&p, &w2], vec![ints("pads", &[1, 1, 1, 1])]);
    let s2 = b.init("s2", &w.range(&[1, 16, 1, 1], 0.5, 1.5));
    let m2 = b.node("Mul", &[&c2, &s2], vec![]);
    let r2 = b.node("Relu", &[&m2], vec![]);
    let scales = b.init(
        "scales",
        &T::f32(vec![4], vec![1.0, 1.0, 2.0, 2.0]).unwrap(),
    );
    let up = b.node(
        "Resize",
        &[&r2, "", &scales],
        vec![
            string("mode", "nearest"),
            string("coordinate_transformation_mode", "asymmetric"),
            string("nearest_mode", "floor"),
        ],
    );
    let cat = b.node("Concat", &[&up, &h1], vec![int("axis", 1)]);
    let wt = b.init("wt", &w.uniform(&[24, 4, 2, 2], 0.3));
    let ct = b.node(
        "ConvTranspose",
        &[&cat, &wt],
        vec![ints("strides", &[2, 2])],
    );
    let w3 = b.init("w3", &w.uniform(&[1, 4, 3, 3], 0.3));
    let c3 = b.node("Conv", &[&ct, &w3], vec![ints("pads", &[1, 1, 1, 1])]);
    let l = b.node("LeakyRelu", &[&c3], vec![float("alpha", 0.1)]);
    b.node_named("Sigmoid", "head", &[&l], &["map"], vec![]);
    b.output("map");
    let path = dir.join(if global_gate {
        "fcn-gated.onnx"
    } else {
        "fcn.onnx"
    });
    b.finish().save(&path, &SaveOptions::default()).unwrap();
    path
}

fn whole_and_tiled(
    model: &Path,
    shape: &str,
    tiles: usize,
) -> (Vec<f32>, Vec<f32>, edgeslim_runtime::tile::TileSpec) {
    let opts = LoadOptions {
        input_shapes: vec![shape.parse().unwrap()],
        ..Default::default()
    };
    let whole = LoadedModel::load(model, &opts).unwrap();
    let input = edgeslim_runtime::input::random_inputs(&whole.inputs, 3).remove(0);
    let expected = tensor_to_f32_vec(&whole.run(vec![input.clone()]).unwrap()[0]).unwrap();
    let tiled = edgeslim_runtime::tile::TiledModel::load(model, &opts, tiles).unwrap();
    let got = tensor_to_f32_vec(&tiled.run(&input).unwrap()[0]).unwrap();
    (expected, got, tiled.spec)
}

#[test]
fn strips_equal_the_whole_image_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let m = fcn(dir.path(), false);
    for tiles in [2, 3] {
        let (whole, tiled, spec) = whole_and_tiled(&m, "x=1,3,192,40", tiles);
        assert_eq!(spec.tiles, tiles);
        assert_eq!(spec.align_rows, 4, "stride 2 conv and 2× pooling");
        assert!(spec.halo_rows > 0 && spec.window_rows < 192, "{spec:?}");
        assert_eq!(whole.len(), tiled.len());
        let differing = whole
            .iter()
            .zip(&tiled)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differing, 0,
            "{tiles} strips: {differing} values differ ({spec:?})"
        );
    }
    // A halo one alignment unit too small would show: the strips' edges would be wrong.
}

#[test]
fn strips_refuse_a_model_that_mixes_the_whole_image() {
    let dir = tempfile::tempdir().unwrap();
    let m = fcn(dir.path(), true);
    let opts = LoadOptions {
        input_shapes: vec!["x=1,3,192,40".parse().unwrap()],
        ..Default::default()
    };
    let e = edgeslim_runtime::tile::TiledModel::load(&m, &opts, 2)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("GlobalAveragePool") && e.contains("mixes rows"),
        "{e}"
    );
}

/// The real backbone: PP-OCRv4 det cut at its stage-4 output (stride 16, the layer the
/// anomaly detector reads), 2 strips of a 1024×256 line scan, bit for bit. (Its receptive
/// field needs a halo of about 190 rows: strips pay on large images, not on 320² ones.)
#[test]
fn ppocr_backbone_in_strips_is_exact() {
    let a = edgeslim_e2e::assets();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("backbone.onnx");
    run_ok(
        "edgeslim",
        &[
            "optimize",
            a.ppocr_det().to_str().unwrap(),
            "--outputs",
            "p2o.Add.147",
            "-o",
            cut.to_str().unwrap(),
        ],
    );
    let (whole, tiled, spec) = whole_and_tiled(&cut, "x=1,3,1024,256", 2);
    assert!(spec.align_rows >= 16, "{spec:?}");
    let differing = whole
        .iter()
        .zip(&tiled)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        differing,
        0,
        "{differing} of {} values differ ({spec:?})",
        whole.len()
    );
    // The whole detector has squeeze-excite gates in its neck: refused, naming one.
    let opts = LoadOptions {
        input_shapes: vec!["x=1,3,320,320".parse().unwrap()],
        ..Default::default()
    };
    let e = edgeslim_runtime::tile::TiledModel::load(&a.ppocr_det(), &opts, 2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("GlobalAveragePool"), "{e}");
}
