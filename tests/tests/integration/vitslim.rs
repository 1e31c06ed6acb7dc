//! ViT-Slim (issue 21): the command on the zoo ViT end to end (budget met, no mask left,
//! onnx.checker, tract and ONNX Runtime agree, accuracy after retraining), the real DINOv2
//! ViT-S/14 backbone recognised and sliced exactly, and the DINOv2 classifier of a grayscale
//! data set equal to the backbone on the upsampled, normalised RGB image; the zoo's ViT
//! tracker slimmed as a pair and run by the board runtime's tracking loop.

use edgeslim::import::dinov2;
use edgeslim::import::gray::{self, GrayInput};
use edgeslim::onnx::node::{int, make};
use edgeslim::onnx::{OnnxModel, SaveOptions, Tensor};
use edgeslim::vitslim::masks::{self, MaskKind};
use edgeslim::vitslim::{budget, prepare_vit, slice};
use edgeslim_e2e::engines::{random, rel_diff, run_both};
use edgeslim_e2e::{assets, python_check, run, run_ok, workspace};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn vit_slim_slims_the_zoo_vit_to_the_budget_and_writes_a_plain_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/vit-tiny-mnist.onnx");
    let out = dir.path().join("slim.onnx");
    let rep = dir.path().join("rep");
    let json = dir.path().join("r.json");
    run_ok(
        "edgeslim",
        &[
            "compress",
            "vit-slim",
            s(&model),
            "--data",
            "mnist",
            "--budget",
            "params=0.6",
            "--search-epochs",
            "1",
            "--retrain-epochs",
            "1",
            "--max-batches",
            "25",
            "--runs",
            "10",
            "-o",
            s(&out),
            "--report",
            s(&rep),
            "--json",
            s(&json),
        ],
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // The budget, re-counted on the written file.
    let original = OnnxModel::load(&model).unwrap();
    let slim = OnnxModel::load(&out).unwrap();
    let p0 = original.float_constant_elements().unwrap() as f64;
    let p1 = slim.float_constant_elements().unwrap() as f64;
    assert!(p1 <= 0.6 * p0, "{p1} of {p0}");
    assert!(p1 > 0.5 * p0, "{p1} of {p0}: far under the budget");
    assert_eq!(r["params"][1].as_f64().unwrap(), p1);
    // No mask left: plain weights, no extra node.
    for t in &slim.graph().initializer {
        assert!(!t.name.starts_with("vitslim."), "{} left", t.name);
    }
    let muls = |m: &OnnxModel| m.graph().node.iter().filter(|n| n.op_type == "Mul").count();
    assert!(muls(&slim) <= muls(&original));
    // Smaller blocks, as reported.
    let blocks = r["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 4);
    assert!(blocks
        .iter()
        .any(|b| b["head_dim"][1].as_u64().unwrap() < 32 || b["heads"][1].as_u64().unwrap() < 2));
    assert!(blocks
        .iter()
        .all(|b| b["mlp_units"][1].as_u64().unwrap() <= 128));
    // Two engines and the checker.
    let check = python_check(&out, None, &["--input-shape", "x=1,1,28,28"]);
    assert_eq!(check.checker, "ok", "{}", check.checker);
    let x = random(2 * 784, 5);
    let (t, o) = run_both(&out, &[("x", vec![2, 1, 28, 28], x)]);
    assert!(rel_diff(&t[0], &o[0]) <= 1e-4, "{}", rel_diff(&t[0], &o[0]));
    // Retraining a 60 % model for 25 batches keeps most of the zoo ViT's accuracy.
    let acc = &r["accuracy"];
    let (a0, a1) = (
        acc["original"].as_f64().unwrap(),
        acc["retrained"].as_f64().unwrap(),
    );
    assert!(a0 > 0.9, "{acc}");
    assert!(a1 > 0.85 && a1 >= acc["sliced"].as_f64().unwrap(), "{acc}");
    assert!(r["latency"]["slim_p50_ms"].as_f64().unwrap() > 0.0);
    let page = std::fs::read_to_string(rep.join("index.html")).unwrap();
    assert!(page.contains("The searched shape") && page.contains("<svg"));
}

fn import_dinov2(dir: &Path) -> std::path::PathBuf {
    assets();
    run_ok(
        "edgeslim",
        &[
            "zoo",
            "import",
            "dinov2-s14",
            "--size",
            "112",
            "-o",
            s(dir),
            "--runs",
            "0",
        ],
    );
    dir.join("model.onnx")
}

#[test]
fn the_dinov2_backbone_is_recognised_and_sliced_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = import_dinov2(&dir.path().join("dino"));
    let model = OnnxModel::load(&path).unwrap();
    let shapes = vec!["input_image=1,3,112,112".parse().unwrap()];
    let p = prepare_vit(&model, &shapes).unwrap();
    let st = &p.structure;
    assert_eq!(st.attentions.len(), 12, "{}", st.describe());
    assert_eq!(st.mlps.len(), 12, "{}", st.describe());
    assert!(st
        .attentions
        .iter()
        .all(|a| (a.heads, a.head_dim) == (6, 64)));
    assert!(st.mlps.iter().all(|m| m.units == 1536));
    // The backbone's output is the token map: token masks are refused, naming it.
    let e = edgeslim::vitslim::tokens_allowed(&p)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("'tokens'") && e.contains("carries every token"),
        "{e}"
    );

    let (mut masked, ms) =
        masks::insert(&p.model, st, &[MaskKind::HeadDims, MaskKind::Mlp]).unwrap();
    let mut r = edgeslim_runtime::input::SplitMix64(9);
    let values: masks::MaskValues = ms
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                (0..m.len).map(|_| r.next_f32() * 2.0).collect(),
            )
        })
        .collect();
    for m in &ms {
        let dims = masked.constant(&m.name).unwrap().unwrap().dims;
        masked.set_initializer(
            &m.name,
            &Tensor::f32(dims, values[&m.name].clone()).unwrap(),
        );
    }
    let folded = masks::fold(&masked, st, &ms, &values).unwrap();
    let keep = budget::keep_at(st, &ms, &values, 0.5, 1);
    let sliced = slice::slice(&folded, st, &keep, &p.shapes).unwrap();
    let zeroed = slice::zero_dropped(&folded, st, &keep).unwrap();
    let save = |m: &OnnxModel, name: &str| {
        let f = dir.path().join(name);
        m.save(&f, &SaveOptions::default()).unwrap();
        f
    };
    let (fm, fz, fs) = (
        save(&masked, "masked.onnx"),
        save(&zeroed, "zeroed.onnx"),
        save(&sliced, "sliced.onnx"),
    );
    let x = random(3 * 112 * 112, 4);
    let input = [("input_image", vec![1, 3, 112, 112], x)];
    let (tm, _) = run_both(&fm, &input);
    let (tf, _) = run_both(&save(&folded, "folded.onnx"), &input);
    assert!(
        rel_diff(&tm[0], &tf[0]) <= 1e-4,
        "fold {}",
        rel_diff(&tm[0], &tf[0])
    );
    let (tz, _) = run_both(&fz, &input);
    let (ts, os) = run_both(&fs, &input);
    assert!(
        rel_diff(&tz[0], &ts[0]) <= 1e-4,
        "slice {}",
        rel_diff(&tz[0], &ts[0])
    );
    assert!(
        rel_diff(&ts[0], &os[0]) <= 1e-4,
        "tract vs ORT {}",
        rel_diff(&ts[0], &os[0])
    );
    let check = python_check(&fs, None, &[]);
    assert_eq!(check.checker, "ok", "{}", check.checker);
    let (p0, p1) = (
        p.model.float_constant_elements().unwrap(),
        sliced.float_constant_elements().unwrap(),
    );
    assert!(p1 < p0 * 3 / 4, "{p1} of {p0}");
    // The dynamic head reshapes became constants: no Shape reads an attention tensor.
    let shapes_left = sliced
        .graph()
        .node
        .iter()
        .filter(|n| n.op_type == "Shape" && n.name.contains("attention"))
        .count();
    assert_eq!(shapes_left, 0);
}

/// `gray::classifier` folds the gray-to-RGB repeat and both normalisations into the patch
/// embedding: with an identity head its logits are the class token of the backbone run on
/// the upsampled image repeated over RGB and ImageNet-normalised, built here by plain ops.
#[test]
fn the_dinov2_gray_classifier_equals_the_backbone_on_the_normalised_rgb_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = import_dinov2(&dir.path().join("dino"));
    let backbone = OnnxModel::load(&path).unwrap();
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let gray = GrayInput {
        side: 28,
        mean: 0.27,
        std: 0.4,
    };
    let mut clf = gray::classifier(backbone.clone(), gray, (mean, std), 384).unwrap();
    let eye: Vec<f32> = (0..384 * 384)
        .map(|i| if i / 384 == i % 384 { 1.0 } else { 0.0 })
        .collect();
    clf.set_initializer("head.weight", &Tensor::f32(vec![384, 384], eye).unwrap());

    // Reference: x → Resize → ·std + mean → repeat ×3 → (− μ) / σ → backbone → token 0.
    let mut r = edgeslim_e2e::gray::reference(backbone, dinov2::INPUT, 112, gray, (mean, std));
    r.set_initializer("ref.zero", &Tensor::i64(vec![], vec![0]).unwrap());
    let tail = make(
        "Gather",
        &[dinov2::OUTPUT, "ref.zero"],
        &["token"],
        "token",
        vec![int("axis", 1)],
    );
    let g = r.graph_mut();
    g.node.push(tail);
    g.output[0] = edgeslim::onnx::builder::value_info(
        "token",
        onnx_protobuf::tensor_proto::DataType::FLOAT,
        None,
    );
    edgeslim_e2e::gray::assert_matches_reference(dir.path(), &r, &clf, 384, 8);
}

/// Elements of every initializer (how the tracker commands count a pair's parameters).
fn initializer_elements(m: &OnnxModel) -> u64 {
    m.graph()
        .initializer
        .iter()
        .map(|t| t.dims.iter().product::<i64>() as u64)
        .sum()
}

#[test]
fn vit_slim_slims_the_zoo_vit_tracker_as_a_pair_that_the_runtime_tracks_with() {
    assets();
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/siamese-vit");
    let out = dir.path().join("svit60");
    let rep = dir.path().join("rep");
    run_ok(
        "edgeslim",
        &[
            "compress",
            "vit-slim",
            s(&model),
            "--data",
            "tracking:1",
            "--budget",
            "params=0.6",
            "--search-epochs",
            "1",
            "--retrain-epochs",
            "1",
            "--max-batches",
            "2",
            "--held-out",
            "16",
            "--runs",
            "5",
            "-o",
            s(&out),
            "--report",
            s(&rep),
        ],
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rep.join("report.json")).unwrap()).unwrap();
    // The budget, re-counted on the written search graph (the template graph is its subset).
    let original = OnnxModel::load(&model.join("search.onnx")).unwrap();
    let slim = OnnxModel::load(&out.join("search.onnx")).unwrap();
    let (p0, p1) = (
        initializer_elements(&original) as f64,
        initializer_elements(&slim) as f64,
    );
    assert!(p1 <= 0.6 * p0 && p1 > 0.5 * p0, "{p1} of {p0}");
    assert_eq!(r["params"][1].as_f64().unwrap(), p1);
    assert!(slim
        .graph()
        .initializer
        .iter()
        .all(|t| !t.name.starts_with("vitslim.")));
    let blocks = r["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 4);
    assert!(blocks
        .iter()
        .all(|b| b["head_dim"][1].as_u64().unwrap() < 32
            || b["mlp_units"][1].as_u64().unwrap() < 128));
    assert!(r["after_search"]["loss"].as_f64().unwrap().is_finite());
    assert!(r["latency"]["slim_p50_ms"].as_f64().unwrap() > 0.0);
    // The sliced pair before fine-tuning is kept next to the report.
    assert!(rep.join("sliced/search.onnx").is_file());

    // Both graphs: the checker, and tract = ONNX Runtime, the kernel fed from one to the other.
    for f in ["template.onnx", "search.onnx"] {
        assert_eq!(
            python_check(&out.join(f), None, &["--no-run"]).checker,
            "ok"
        );
    }
    let z = random(3 * 63 * 63, 3);
    let (t, o) = run_both(
        &out.join("template.onnx"),
        &[("template", vec![1, 3, 63, 63], z)],
    );
    assert!(
        rel_diff(&t[0], &o[0]) <= 1e-4,
        "template: {}",
        rel_diff(&t[0], &o[0])
    );
    let x = random(2 * 3 * 127 * 127, 4);
    let (t, o) = run_both(
        &out.join("search.onnx"),
        &[
            ("search", vec![2, 3, 127, 127], x),
            ("kernel", vec![48, 1, 7, 7], t[0].clone()),
        ],
    );
    assert_eq!(t[0].len(), 2 * 9 * 9);
    assert!(
        rel_diff(&t[0], &o[0]) <= 1e-4,
        "search: {}",
        rel_diff(&t[0], &o[0])
    );

    // The board runtime's tracking loop runs the slimmed pair on a generated sequence.
    let seqs = dir.path().join("seqs");
    run_ok(
        "edgeslim",
        &[
            "data",
            "tracking",
            "-o",
            s(&seqs),
            "--sequences",
            "1",
            "--frames",
            "20",
            "--seed",
            "7",
        ],
    );
    let json = dir.path().join("eval.json");
    run_ok(
        "edgeslim-rt",
        &[
            "track",
            s(&out),
            "--eval",
            s(&seqs),
            "--json",
            s(&json),
            "--quiet",
        ],
    );
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let auc = e["overall"]["auc"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&auc) && e["fps"].as_f64().unwrap() > 0.0,
        "{e}"
    );

    // A CNN tracker is refused, pointing at the channel pruner; nothing is written.
    let cnn_out = dir.path().join("cnn");
    let r = run(
        "edgeslim",
        &[
            "compress",
            "vit-slim",
            s(&workspace().join("models/siamese-tracker")),
            "--data",
            "tracking:1",
            "--budget",
            "params=0.5",
            "-o",
            s(&cnn_out),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("compress prune"), "{}", r.stderr);
    assert!(!cnn_out.exists());
}
