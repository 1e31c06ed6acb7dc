//! The committed classifier zoo: every `models/*.onnx` has its card (`models/<stem>.json`), is
//! valid ONNX, small, runs the same in tract, ONNX Runtime and the training engine, and its
//! held-out accuracy measured now (in tract, and in the training engine) is the card's within
//! half a point and meets the target. (The Siamese tracker in models/siamese-tracker/
//! is covered by tests/tests/track.rs.)

use edgeslim::data::DataSpec;
use edgeslim::onnx::OnnxModel;
use edgeslim::train::classify::evaluate;
use edgeslim::train::engine::candle_core::{Device, Tensor};
use edgeslim::train::engine::{EngineOptions, GraphModule};
use edgeslim::train::zoo::load_data;
use edgeslim_e2e::engines::{random, rel_diff, run_both};
use edgeslim_e2e::{assets, python_check, run_ok, workspace};
use serde_json::Value;
use std::path::PathBuf;

/// The held-out accuracy each zoo model must reach (issue 4).
const TARGETS: &[(&str, f64)] = &[("mnist-cnn", 0.985), ("vit-tiny-mnist", 0.96)];

struct Entry {
    name: String,
    model: PathBuf,
    card: Value,
}

fn zoo() -> Vec<Entry> {
    let dir = workspace().join("models");
    let mut v: Vec<Entry> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .map(|model| {
            let card_path = model.with_extension("json");
            let card = serde_json::from_slice(
                &std::fs::read(&card_path)
                    .unwrap_or_else(|e| panic!("{}: no card: {e}", card_path.display())),
            )
            .unwrap();
            Entry {
                name: model.file_stem().unwrap().to_string_lossy().into_owned(),
                model,
                card,
            }
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    for (name, _) in TARGETS {
        assert!(
            v.iter().any(|e| e.name == *name),
            "models/{name}.onnx is missing"
        );
    }
    v
}

#[test]
fn every_zoo_classifier_is_valid_small_and_three_engines_agree() {
    assets();
    for e in zoo() {
        let bytes = std::fs::metadata(&e.model).unwrap().len();
        assert!(bytes < 2_000_000, "{}: {bytes} bytes", e.name);
        let check = python_check(&e.model, None, &[]);
        assert_eq!(check.checker, "ok", "{}", e.name);
        assert_eq!(
            e.card["params"].as_u64(),
            Some(check.float_params),
            "{}",
            e.name
        );
        assert_eq!(e.card["name"].as_str(), Some(e.name.as_str()));
        // Four inputs in one batch: tract and ONNX Runtime.
        let x = random(4 * 784, 11);
        let (t, o) = run_both(&e.model, &[("x", vec![4, 1, 28, 28], x.clone())]);
        assert_eq!(o[0].len(), 40, "{}", e.name);
        let d = rel_diff(&t[0], &o[0]);
        assert!(d < 1e-4, "{}: tract vs ORT {d}", e.name);
        // The training engine (eval mode) computes what ORT computes.
        let m = OnnxModel::load(&e.model).unwrap();
        let g = GraphModule::from_onnx(&m, &EngineOptions::default()).unwrap();
        let xt = Tensor::from_vec(x, (4, 1, 28, 28), &Device::Cpu).unwrap();
        let out = g.forward_inference(&[("x", xt)], &[]).unwrap();
        let eng: Vec<f32> = out["logits"].flatten_all().unwrap().to_vec1().unwrap();
        let d = rel_diff(&eng, &o[0]);
        assert!(d < 1e-4, "{}: engine vs ORT {d}", e.name);
        if e.card["family"] == "vit" {
            let c = &e.card["config"];
            assert!(c["depth"].as_u64().unwrap() >= 4, "{}", e.name);
            assert!(c["heads"].as_u64().unwrap() >= 2, "{}", e.name);
            // One attention softmax per block, each over the tokens.
            let softmax = m
                .graph()
                .node
                .iter()
                .filter(|n| n.op_type == "Softmax")
                .count();
            assert!(softmax >= 4, "{}: {softmax} Softmax nodes", e.name);
        }
    }
}

#[test]
fn zoo_accuracy_matches_the_cards_and_meets_the_targets() {
    assets();
    let dir = tempfile::tempdir().unwrap();
    let data = load_data(&DataSpec::Mnist, None, 0.2, 0).unwrap();
    for e in zoo() {
        let card = e.card["metrics"]["accuracy"].as_f64().unwrap();
        // In tract, one image at a time, through the CLI.
        let j = dir.path().join(format!("{}.json", e.name));
        run_ok(
            "edgeslim",
            &[
                "eval",
                e.model.to_str().unwrap(),
                "--task",
                "classify",
                "--data",
                "mnist",
                "--json",
                j.to_str().unwrap(),
            ],
        );
        let v: Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
        assert_eq!(v["samples"].as_u64(), Some(1000), "{}", e.name);
        let tract = v["accuracy"].as_f64().unwrap();
        // In the training engine, batched.
        let m = OnnxModel::load(&e.model).unwrap();
        let engine = evaluate(&m, &data.held_out, 200, 0).unwrap().accuracy;
        println!(
            "{}: card {card:.4}, tract {tract:.4}, engine {engine:.4}",
            e.name
        );
        assert!(
            (tract - card).abs() <= 0.005,
            "{}: tract {tract} vs card {card}",
            e.name
        );
        assert!(
            (engine - card).abs() <= 0.005,
            "{}: engine {engine} vs card {card}",
            e.name
        );
        if let Some((_, target)) = TARGETS.iter().find(|(n, _)| *n == e.name) {
            assert!(tract >= *target, "{}: {tract} < target {target}", e.name);
        }
    }
}
