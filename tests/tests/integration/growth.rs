//! Growth (issue 25): `edgeslim grow` on the zoo's ViT recipe and real MNIST.

use edgeslim::growth::grow::grow_step;
use edgeslim::growth::run::{param_count, scaled, SplitCost};
use edgeslim::growth::split::{HeadDirection, NeuronScore, QkvScore};
use edgeslim::onnx::OnnxModel;
use edgeslim::onnx::SaveOptions;
use edgeslim::train::families::vit::{self, VitConfig};
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

/// `edgeslim compress vit-slim` on MNIST with one search and one retraining epoch of
/// `batches` batches, timed over `runs` runs.
fn vit_slim(model: &Path, out: &Path, budget: &str, batches: &str, runs: &str) {
    run_ok(
        "edgeslim",
        &[
            "compress",
            "vit-slim",
            s(model),
            "--data",
            "mnist",
            "--budget",
            budget,
            "--search-epochs",
            "1",
            "--retrain-epochs",
            "1",
            "--max-batches",
            batches,
            "--runs",
            runs,
            "-o",
            s(out),
        ],
    );
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
    let neurons = steps[0]["split"].as_array().unwrap().len() as u64;
    let units = steps[0]["split_qkv"].as_array().unwrap().len() as u64;
    assert_eq!(neurons + units, 6);
    let widths = |key: &str| -> u64 {
        rep["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[key].as_u64().unwrap())
            .sum()
    };
    assert_eq!(widths("mlp"), 4 * 64 + neurons);
    assert_eq!(widths("head_dim"), 4 * 16 + units);
    // The half-width start has 72 842; a neuron adds 2·dim + 1 parameters, a QKV unit
    // 2 heads · (4·dim + 3).
    assert_eq!(
        params,
        72_842 + neurons * (2 * 64 + 1) + units * 2 * (4 * 64 + 3)
    );
    let (t, o) = run_both(&grown, &[("x", vec![2, 1, 28, 28], random(2 * 784, 3))]);
    assert!(rel_diff(&t[0], &o[0]) <= 1e-4, "{}", rel_diff(&t[0], &o[0]));
    assert_eq!(
        python_check(&grown, None, &["--input-shape", "x=2,1,28,28"]).checker,
        "ok"
    );
    let slim = tmp.path().join("slim.onnx");
    vit_slim(&grown, &slim, "params=0.8", "4", "3");
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

/// A ViT whose blocks have grown apart (heads of 16, 19 and 17, MLPs of 64, 66 and 64, the
/// softmax scale of the 16-wide heads kept) is a plain ONNX model: onnx.checker passes it,
/// tract and ORT agree on it, and ViT-Slim slims it.
#[test]
fn heterogeneous_heads_and_mlps_run_in_both_engines() {
    assets();
    let base = VitConfig {
        depth: 3,
        heads: 2,
        ..VitConfig::default()
    };
    let cfg = scaled(&base, 0.5);
    let model = vit::build(&cfg).unwrap();
    let d = cfg.dim;
    let dir = |k: usize| -> Vec<f32> {
        let v: Vec<f32> = (0..d)
            .map(|i| ((i * 7 + k * 3) % 11) as f32 - 5.0)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    };
    let unit = |block: usize, rank: usize| QkvScore {
        block,
        rank,
        lambda: -1.0,
        heads: (0..cfg.heads)
            .map(|h| HeadDirection {
                sigma: 1.0,
                u: dir(h + rank),
                w: dir(h + rank + 5),
            })
            .collect(),
    };
    let units = [unit(1, 0), unit(1, 1), unit(1, 2), unit(2, 0)];
    let neurons: Vec<NeuronScore> = (0..2)
        .map(|n| NeuronScore {
            block: 1,
            neuron: n,
            lambda: -1.0,
            direction: dir(n),
        })
        .collect();
    let (grown, gcfg) = grow_step(&model, &cfg, &neurons, &units, 0.05).unwrap();
    // What a split adds, counted by `inspect` on the two graphs, is what growth ranks by.
    let shape: edgeslim_runtime::InputShape = "x=1,1,28,28".parse().unwrap();
    let macs = |m: &OnnxModel| {
        edgeslim::onnx::inspect::inspect(m, std::slice::from_ref(&shape))
            .unwrap()
            .total_macs
    };
    let (p, c) = (SplitCost::params(&cfg), SplitCost::macs(&cfg));
    let heads = cfg.heads as u64;
    assert_eq!(
        param_count(&grown) - param_count(&model),
        2 * p.mlp + 4 * heads * p.qkv_per_head
    );
    assert_eq!(
        macs(&grown) - macs(&model),
        2 * c.mlp + 4 * heads * c.qkv_per_head
    );
    let shapes = gcfg.block_shapes();
    let heads: Vec<usize> = shapes.iter().map(|b| b.head_dim).collect();
    assert_eq!(heads, vec![16, 19, 17]);
    assert_eq!(shapes[1].mlp, shapes[0].mlp + 2);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("grown.onnx");
    grown.save(&path, &SaveOptions::default()).unwrap();
    let n = cfg.in_channels * cfg.image_size * cfg.image_size;
    let shape = vec![2, cfg.in_channels, cfg.image_size, cfg.image_size];
    let (t, o) = run_both(&path, &[("x", shape, random(2 * n, 5))]);
    assert!(rel_diff(&t[0], &o[0]) <= 1e-4, "{}", rel_diff(&t[0], &o[0]));
    let dims = format!(
        "x=2,{},{},{}",
        cfg.in_channels, cfg.image_size, cfg.image_size
    );
    assert_eq!(
        python_check(&path, None, &["--input-shape", &dims]).checker,
        "ok"
    );
    let slim = tmp.path().join("slim.onnx");
    vit_slim(&path, &slim, "params=0.7", "2", "2");
    let slimmed = param_count(&OnnxModel::load(&slim).unwrap());
    assert!(slimmed < param_count(&grown), "{slimmed}");
}
