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
