//! GLoRA (issue 22) through `edgeslim adapt`: a few-shot transfer of the zoo ViT (MNIST) to
//! Animal-MNIST where GLoRA beats the linear probe on the held-out split, the written model
//! has the input's nodes and runs the same in tract and ONNX Runtime; the supernet search
//! end to end.

use edgeslim::onnx::OnnxModel;
use edgeslim_e2e::engines::{random, rel_diff, run_both};
use edgeslim_e2e::{assets, python_check, run, run_ok, workspace};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn adapt(model: &Path, out: &Path, json: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "adapt",
        s(model),
        "--data",
        "animal-mnist",
        "--shots",
        "16",
        "--epochs",
        "15",
        "--lr",
        "3e-3",
        "--held-out",
        "500",
        "-o",
        s(out),
        "--json",
        s(json),
    ];
    args.extend_from_slice(extra);
    run_ok("edgeslim", &args);
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn glora_beats_the_linear_probe_few_shot_and_merges_into_the_input_graph() {
    assets();
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/vit-tiny-mnist.onnx");
    let linear = adapt(
        &model,
        &dir.path().join("linear.onnx"),
        &dir.path().join("linear.json"),
        &["--method", "linear"],
    );
    let out = dir.path().join("glora.onnx");
    let glora = adapt(
        &model,
        &out,
        &dir.path().join("glora.json"),
        &[
            "--method",
            "glora",
            "--search-generations",
            "0",
            "--runs",
            "5",
            "--report",
            s(&dir.path().join("report")),
        ],
    );
    let acc = |r: &serde_json::Value, k: &str| r[k]["accuracy"].as_f64().unwrap();
    // 16 images per class, 500 held-out images the training never saw.
    assert_eq!(glora["train_samples"], 160);
    assert_eq!(glora["held_out_samples"], 500);
    assert!(
        acc(&glora, "merged") > acc(&linear, "merged") + 0.05,
        "GLoRA {} vs linear probe {}",
        acc(&glora, "merged"),
        acc(&linear, "merged")
    );
    // The merge changes nothing the held-out split can see.
    assert!((acc(&glora, "merged") - acc(&glora, "adapted")).abs() < 1e-9);
    assert!(
        (glora["merged"]["loss"].as_f64().unwrap() - glora["adapted"]["loss"].as_f64().unwrap())
            .abs()
            < 1e-4
    );
    // The input's graph: same nodes, same initializer names and shapes.
    let (a, b) = (
        OnnxModel::load(&model).unwrap(),
        OnnxModel::load(&out).unwrap(),
    );
    assert_eq!(a.graph().node, b.graph().node);
    let dims = |m: &OnnxModel| -> Vec<(String, Vec<i64>)> {
        m.graph()
            .initializer
            .iter()
            .map(|t| (t.name.clone(), t.dims.clone()))
            .collect()
    };
    assert_eq!(dims(&a), dims(&b));
    assert!(glora["latency"]["adapted_p50_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(python_check(&out, None, &["--no-run"]).checker, "ok");
    let x = random(2 * 784, 7);
    let (t, o) = run_both(&out, &[("x", vec![2, 1, 28, 28], x)]);
    assert!(rel_diff(&t[0], &o[0]) <= 1e-4, "{}", rel_diff(&t[0], &o[0]));
    // Fewer trained values than full fine-tuning would train.
    assert!(
        glora["trainable_params"].as_u64().unwrap() < glora["total_params"].as_u64().unwrap() / 2
    );

    // The run's page (adapters per layer as bars) and its report, re-read: the JSON on stdout's
    // file and report.json agree.
    let page = std::fs::read_to_string(dir.path().join("report/index.html")).unwrap();
    assert!(page.contains("Adapters per layer") && page.contains("<svg"));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report/report.json")).unwrap())
            .unwrap();
    assert_eq!(saved["merged"], glora["merged"]);
    assert_eq!(
        saved["adapters"].as_array().unwrap().len(),
        glora["adapters"].as_array().unwrap().len()
    );
    // The comparison page of the two runs: one point per run, both rows in the table.
    let cmp = dir.path().join("transfer.html");
    let lj = dir.path().join("linear.json");
    let gj = dir.path().join("glora.json");
    run_ok("edgeslim", &["report", s(&lj), s(&gj), "-o", s(&cmp)]);
    let page = std::fs::read_to_string(&cmp).unwrap();
    assert_eq!(page.matches("<circle").count(), 2, "one point per run");
    assert!(page.contains("linear probe") && page.contains("GLoRA"));
    // A bench report next to adapt reports is refused, naming it; nothing written.
    let bench = dir.path().join("bench.json");
    run_ok(
        "edgeslim",
        &["bench", s(&model), "--runs", "2", "--json", s(&bench)],
    );
    let mixed = dir.path().join("mixed.html");
    let o = run("edgeslim", &["report", s(&gj), s(&bench), "-o", s(&mixed)]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("bench.json"), "{}", o.stderr);
    assert!(!mixed.exists());
}

#[test]
fn the_glora_search_chooses_supports_under_the_budget() {
    assets();
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/vit-tiny-mnist.onnx");
    let out = dir.path().join("searched.onnx");
    let json = dir.path().join("searched.json");
    let r = adapt(
        &model,
        &out,
        &json,
        &[
            "--method",
            "glora",
            "--search-generations",
            "3",
            "--population",
            "8",
            "--budget",
            "trainable-params=8000",
        ],
    );
    let search = &r["search"];
    assert_eq!(search["generations"].as_array().unwrap().len(), 3);
    let adapters = r["adapters"].as_array().unwrap();
    let values: u64 = adapters.iter().map(|a| a["params"].as_u64().unwrap()).sum();
    assert!(values <= 8000, "{values}");
    // Searched supports differ between layers (a uniform choice would be no search).
    let supports: std::collections::HashSet<&str> = adapters
        .iter()
        .map(|a| a["support"].as_str().unwrap())
        .collect();
    assert!(supports.len() > 1, "{supports:?}");
    let a = OnnxModel::load(&model).unwrap();
    assert_eq!(a.graph().node, OnnxModel::load(&out).unwrap().graph().node);
    // A budget in other units is refused before any work.
    let bad = run(
        "edgeslim",
        &[
            "adapt",
            s(&model),
            "--data",
            "animal-mnist",
            "--budget",
            "params=10",
            "-o",
            s(&dir.path().join("x.onnx")),
        ],
    );
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("trainable-params"), "{}", bad.stderr);
}

/// EfficientNet-Lite0 as a classifier of 28×28 gray digits (the effnet-animals transfer
/// task): its stem convolution pads, so the gray-to-RGB map stays a Mul and Add in front of
/// it; with its own ImageNet head copied into the new head the classifier must be the
/// original model run on the upsampled, repeated, normalised image.
#[test]
fn the_efficientnet_gray_classifier_is_the_original_on_the_normalised_rgb_image() {
    use edgeslim::import::{catalogue, gray};
    use edgeslim::onnx::Tensor;
    assets();
    let dir = tempfile::tempdir().unwrap();
    let eff = dir.path().join("eff");
    run_ok(
        "edgeslim",
        &[
            "zoo",
            "import",
            "efficientnet-lite0",
            "--size",
            "112",
            "-o",
            s(&eff),
            "--runs",
            "0",
        ],
    );
    let backbone = OnnxModel::load(&eff.join("model.onnx")).unwrap();
    let norm = catalogue::find("efficientnet-lite0")
        .unwrap()
        .normalization();
    let rgb = |v: &[f32]| -> [f32; 3] { v.try_into().unwrap() };
    let imagenet = (rgb(&norm.mean), rgb(&norm.std));
    let g = gray::GrayInput {
        side: 28,
        mean: 0.27,
        std: 0.4,
    };
    let mut clf = gray::classifier(backbone.clone(), g, imagenet, 1000).unwrap();
    // The ImageNet head (Gemm, transB) back in the new head's place.
    let fc = backbone
        .graph()
        .node
        .iter()
        .find(|n| n.op_type == "Gemm")
        .unwrap()
        .clone();
    for (from, to) in [
        (&fc.input[1], gray::HEAD_WEIGHT),
        (&fc.input[2], gray::HEAD_BIAS),
    ] {
        let t = Tensor::from_proto(backbone.initializer(from).unwrap()).unwrap();
        assert_eq!(
            clf.initializer(to).unwrap().dims,
            t.dims.iter().map(|&d| d as i64).collect::<Vec<_>>()
        );
        clf.set_initializer(to, &t);
    }
    assert!(
        clf.graph()
            .node
            .iter()
            .any(|n| n.name == "x.gray_to_rgb.mul"),
        "a padded stem must not have the normalisation folded in"
    );
    let r = edgeslim_e2e::gray::reference(backbone, "image", 112, g, imagenet);
    edgeslim_e2e::gray::assert_matches_reference(dir.path(), &r, &clf, 1000, 3);
}

/// `study --recover glora` (issue 22, item 3): a pruned zoo CNN recovered by GLoRA adapters
/// merged back — the variant keeps the graph of the unrecovered one (same nodes, same
/// initializer shapes: zero inference cost), gains accuracy on the held-out split, trains
/// fewer values than fine-tuning, and the study's engine check (tract = ORT) holds.
#[test]
fn study_recovers_a_pruned_cnn_with_merged_glora_adapters() {
    assets();
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/mnist-cnn.onnx");
    let study = |mode: &str| -> serde_json::Value {
        let out = dir.path().join(mode);
        run_ok(
            "edgeslim",
            &[
                "study",
                s(&model),
                "--data",
                "mnist",
                "--labels",
                "--calib-samples",
                "600",
                "--methods",
                "prune",
                "--budgets",
                "0.25",
                "--recover",
                mode,
                "--epochs",
                "2",
                "--lr",
                "3e-3",
                "--runs",
                "3",
                "-o",
                s(&out),
            ],
        );
        serde_json::from_slice(&std::fs::read(out.join("study.json")).unwrap()).unwrap()
    };
    let (none, glora) = (study("none"), study("glora"));
    let row = |v: &serde_json::Value| v["rows"][0].clone();
    let (a, b) = (row(&none), row(&glora));
    assert_eq!(b["id"], "prune@0.25");
    let rec = &b["recovery"];
    assert_eq!(rec["mode"], "glora");
    let acc = |r: &serde_json::Value| r["quality"]["accuracy"].as_f64().unwrap();
    assert!(
        acc(&b) > acc(&a) + 0.1,
        "GLoRA {} vs none {}",
        acc(&b),
        acc(&a)
    );
    assert!((rec["held_out_after"].as_f64().unwrap() - acc(&b)).abs() < 1e-9);
    let trained = rec["trained_values"].as_u64().unwrap();
    assert!(trained > 0 && trained < b["params"].as_u64().unwrap() * 2);
    assert!(b["engines"]["max_rel_diff"].as_f64().unwrap() <= 1e-4);
    let load = |st: &serde_json::Value, r: &serde_json::Value| {
        let base = if st["recover"] == "glora" {
            "glora"
        } else {
            "none"
        };
        OnnxModel::load(&dir.path().join(base).join(r["file"].as_str().unwrap())).unwrap()
    };
    let (ma, mb) = (load(&none, &a), load(&glora, &b));
    let ops = |m: &OnnxModel| -> Vec<(String, Vec<String>)> {
        m.graph()
            .node
            .iter()
            .map(|n| (n.op_type.clone(), n.input.clone()))
            .collect()
    };
    assert_eq!(ops(&ma), ops(&mb));
    let dims = |m: &OnnxModel| -> Vec<(String, Vec<i64>)> {
        m.graph()
            .initializer
            .iter()
            .map(|t| (t.name.clone(), t.dims.clone()))
            .collect()
    };
    assert_eq!(dims(&ma), dims(&mb));
    assert_eq!(a["params"], b["params"]);
    assert_eq!(
        python_check(
            &dir.path().join("glora").join(b["file"].as_str().unwrap()),
            None,
            &["--no-run"]
        )
        .checker,
        "ok"
    );
}
