//! Growth (issue 25): `edgeslim grow` on the zoo's ViT recipe and real MNIST.

use edgeslim::growth::run::param_count;
use edgeslim::onnx::OnnxModel;
use edgeslim_e2e::engines::{random, rel_diff, run_both};
use edgeslim_e2e::{assets, python_check, run, run_ok, workspace};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn grow(out: &Path, extra: &[&str]) -> edgeslim_e2e::Run {
    let recipe = workspace().join("models/recipes/vit-tiny-mnist.toml");
    let mut args = vec![
        "grow",
        s(&recipe),
        "--epochs",
        "2",
        "--interval",
        "1",
        "--max-batches",
        "4",
        "--score-images",
        "64",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-o", s(out)]);
    run("edgeslim", &args)
}

/// A grown ViT stays within its budget, has per-block MLP widths of its own, is a plain ONNX
/// model that onnx.checker passes and tract and ORT agree on, and goes through ViT-Slim like
/// any other ViT; the uniform baseline is the widest one within the same budget; a CNN
/// recipe and a budget below the start are refused with nothing written.
#[test]
fn grown_vit_within_budget_runs_everywhere_and_composes_with_vit_slim() {
    assets();
    let tmp = tempfile::tempdir().unwrap();
    let grown = tmp.path().join("grown.onnx");
    let r = grow(&grown, &["--budget", "params=80k", "--grow-per-step", "6"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("grown.json")).unwrap()).unwrap();
    let svg = std::fs::read_to_string(tmp.path().join("grown.svg")).unwrap();
    assert!(svg.contains("block 3") && svg.contains("(grown)"));
    let model = OnnxModel::load(&grown).unwrap();
    let params = param_count(&model);
    assert_eq!(rep["params"], params);
    assert!(params <= 80_000, "{params}");
    let steps = rep["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        1,
        "one growth step between two one-epoch stages"
    );
    let split = steps[0]["split"].as_array().unwrap().len();
    assert_eq!(split, 6);
    let mlp: Vec<u64> = rep["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["mlp"].as_u64().unwrap())
        .collect();
    assert_eq!(mlp.iter().sum::<u64>(), 4 * 64 + 6, "{mlp:?}");
    // The half-width start has 72 842; each split adds a neuron: 2·dim + 1 parameters.
    assert_eq!(params, 72_842 + 6 * (2 * 64 + 1));
    let (t, o) = run_both(&grown, &[("x", vec![2, 1, 28, 28], random(2 * 784, 3))]);
    assert!(rel_diff(&t[0], &o[0]) <= 1e-4, "{}", rel_diff(&t[0], &o[0]));
    assert_eq!(
        python_check(&grown, None, &["--input-shape", "x=2,1,28,28"]).checker,
        "ok"
    );
    let slim = tmp.path().join("slim.onnx");
    run_ok(
        "edgeslim",
        &[
            "compress",
            "vit-slim",
            s(&grown),
            "--data",
            "mnist",
            "--budget",
            "params=0.8",
            "--search-epochs",
            "1",
            "--retrain-epochs",
            "1",
            "--max-batches",
            "4",
            "--runs",
            "3",
            "-o",
            s(&slim),
        ],
    );
    assert!(param_count(&OnnxModel::load(&slim).unwrap()) < params);

    let uniform = tmp.path().join("uniform.onnx");
    let r = grow(&uniform, &["--budget", "params=80k", "--uniform"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let u = param_count(&OnnxModel::load(&uniform).unwrap());
    assert!(
        u <= 80_000 && u > 75_000,
        "the widest uniform ViT within 80 K: {u}"
    );

    let r = grow(&tmp.path().join("small.onnx"), &["--budget", "params=50k"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("over the budget"), "{}", r.stderr);
    assert!(!tmp.path().join("small.onnx").exists());
    // A device as the output is refused before any training.
    let r = grow(Path::new("/dev/null"), &["--budget", "params=80k"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is a device"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("epoch"),
        "it trained first: {}",
        r.stderr
    );
    let cnn = workspace().join("models/recipes/mnist-cnn.toml");
    let out = tmp.path().join("cnn.onnx");
    let r = run(
        "edgeslim",
        &["grow", s(&cnn), "--budget", "params=80k", "-o", s(&out)],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("trains a ViT"), "{}", r.stderr);
    assert!(!out.exists());
}
