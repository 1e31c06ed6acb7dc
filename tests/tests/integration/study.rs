//! `edgeslim study` and `compress auto` on the zoo CNN: every row built, measured and checked
//! on two engines, label-free distillation raising a pruned model's agreement, the automatic
//! pick equal to the one a hand check makes, and a killed study resumed.

use edgeslim_e2e::{python_check, run, run_ok, workspace};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn study_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("study.json")).unwrap()).unwrap()
}

/// Small and quick: 1500 calibration digits (the distillation set), 1000 held out.
const COMMON: [&str; 10] = [
    "--data",
    "mnist",
    "--calib-samples",
    "1500",
    "--epochs",
    "3",
    "--runs",
    "6",
    "--target",
    "rpi4",
];

#[test]
fn a_study_measures_every_variant_and_auto_picks_the_hand_checked_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/mnist-cnn.onnx");
    let out = dir.path().join("study");
    let mut args = vec![
        "study",
        s(&model),
        "--methods",
        "prune,lowrank-weight,int8,prune+int8",
        "--budgets",
        "0.5",
        "--recover",
        "distill",
        "-o",
        s(&out),
    ];
    args.extend(COMMON);
    let r = run_ok("edgeslim", &args);
    assert!(r.stdout.contains("original (ORT)"), "{}", r.stdout);
    let st = study_json(&out);
    assert_eq!(st["complete"], true);
    assert_eq!(
        st["metric"], "agreement",
        "no --labels: judged against the original"
    );
    assert!(st["threads_note"].as_str().is_some() || st["threads"] == 4);
    let rows = st["rows"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["prune@0.5", "lowrank-weight@0.5", "int8", "prune+int8@0.5"]
    );
    assert!(st["reference"]["tract"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(st["reference"]["ort"]["p50_ms"].as_f64().unwrap() > 0.0);
    let params0 = st["reference"]["params"].as_f64().unwrap();
    for row in rows {
        let id = row["id"].as_str().unwrap();
        let file = out.join(row["file"].as_str().unwrap());
        // Every variant passes onnx.checker, runs in ONNX Runtime, and agrees with tract.
        let check = python_check(&file, None, &[]);
        assert_eq!(check.checker, "ok", "{id}: {}", check.checker);
        let diff = row["engines"]["max_rel_diff"].as_f64().unwrap_or(f64::NAN);
        let allowed = if id.contains("int8") { 0.05 } else { 1e-4 };
        assert!(diff <= allowed, "{id}: tract vs ORT {diff}");
        assert!(row["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{id}");
        let speedup = row["speedup_vs_tract"].as_f64().unwrap();
        let ratio = st["reference"]["tract"]["p50_ms"].as_f64().unwrap()
            / row["latency"]["p50_ms"].as_f64().unwrap();
        assert!((speedup - ratio).abs() < 1e-9, "{id}");
        // The whole-model budget holds: half the parameters or fewer, and not far below.
        if row["budget"].as_f64().is_some() {
            let kept = row["params"].as_f64().unwrap() / params0;
            assert!((0.35..=0.5).contains(&kept), "{id}: kept {kept}");
        }
    }
    // Label-free distillation raised the pruned model's agreement with the original
    // (measured: 10 % -> 97.5 % in 3 epochs on 1500 unlabelled digits).
    let pruned = &rows[0];
    let before = pruned["quality_compressed"]["agreement"].as_f64().unwrap();
    let after = pruned["quality"]["agreement"].as_f64().unwrap();
    assert!(
        after > before + 0.5 && after > 0.9,
        "agreement {before} -> {after}"
    );
    assert_eq!(pruned["recovery"]["mode"], "distill");
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("Pareto"), "no chart");

    // `compress auto` on the same folder resumes every row and picks what a hand check picks:
    // the lowest p50 among rows within the drop of the original's agreement.
    let max_drop = 2.0;
    let picked = dir.path().join("auto.onnx");
    let mut args = vec![
        "compress",
        "auto",
        s(&model),
        "--methods",
        "prune,lowrank-weight,int8,prune+int8",
        "--budgets",
        "0.5",
        "--recover",
        "distill",
        "--max-drop",
        "2",
        "--study-dir",
        s(&out),
        "-o",
        s(&picked),
    ];
    args.extend(COMMON);
    let r = run("edgeslim", &args);
    assert!(r.stderr.contains("kept from the last run"), "{}", r.stderr);
    let st = study_json(&out);
    let within: Vec<&Value> = st["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["drop_points"].as_f64().unwrap() <= max_drop)
        .collect();
    let hand = within.iter().min_by(|a, b| {
        a["latency"]["p50_ms"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["latency"]["p50_ms"].as_f64().unwrap())
    });
    match hand {
        Some(h) => {
            assert_eq!(r.code, 0, "{}", r.stderr);
            let (_, sha) = edgeslim_runtime::fsutil::sha256_file(&picked).unwrap();
            assert_eq!(sha, h["sha256"].as_str().unwrap(), "picked {}", r.stdout);
            let card = std::fs::read_to_string(picked.with_extension("md")).unwrap();
            assert!(card.contains(h["id"].as_str().unwrap()), "{card}");
        }
        None => {
            assert_eq!(r.code, 1, "{}", r.stdout);
            assert!(r.stderr.contains("no variant"), "{}", r.stderr);
            assert!(!picked.exists());
        }
    }
}

#[test]
fn a_killed_study_resumes_with_its_finished_rows() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/mnist-cnn.onnx");
    let out = dir.path().join("study");
    let mut args = vec![
        "study".to_string(),
        s(&model).into(),
        "--methods".into(),
        "prune,lowrank-weight,lowrank-feature".into(),
        "--budgets".into(),
        "0.75,0.5".into(),
        "-o".into(),
        s(&out).into(),
    ];
    args.extend(COMMON.iter().map(|a| a.to_string()));
    let mut child = std::process::Command::new(edgeslim_e2e::bin("edgeslim"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the first row is on disk.
    let t0 = Instant::now();
    let first = loop {
        if let Ok(bytes) = std::fs::read(out.join("study.json")) {
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                if let Some(r) = v["rows"].as_array().and_then(|r| r.first()) {
                    break r.clone();
                }
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no row after 5 min"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let st = study_json(&out);
    assert_eq!(st["complete"], false, "killed before the benchmark");

    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run_ok("edgeslim", &refs);
    assert!(
        r.stderr.contains("prune@0.75: kept from the last run"),
        "{}",
        r.stderr
    );
    let st = study_json(&out);
    assert_eq!(st["complete"], true);
    assert_eq!(st["rows"].as_array().unwrap().len(), 6);
    assert_eq!(st["rows"][0]["sha256"], first["sha256"]);
    assert_eq!(
        st["rows"][0]["seconds"], first["seconds"],
        "the row was kept, not rebuilt"
    );

    // Other settings in the same folder are refused, not mixed in.
    let mut other = refs.clone();
    other.push("--seed");
    other.push("7");
    let r = run("edgeslim", &other);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("seed differs"), "{}", r.stderr);
}

/// Label-free distillation of a dense output (the trainer for detection maps and feature
/// maps), on the pruned zoo CNN's logits: the held-out cosine to the original rises, and tract
/// running the returned model measures the cosine the engine reported.
#[test]
fn dense_distillation_raises_a_pruned_models_cosine_to_the_original() {
    use edgeslim::data::calib::{self, CalibSpec, ModelInput};
    use edgeslim::measure::fidelity::cosine;
    use edgeslim::measure::runner::{progress_bar, Runner};
    use edgeslim::onnx::OnnxModel;
    use edgeslim::train::dense::{distill, DenseLoss, DenseOptions, DenseScore, Pairs};

    let model = OnnxModel::load(&workspace().join("models/mnist-cnn.onnx")).unwrap();
    let pruned = edgeslim::prune::prune(
        &model,
        &edgeslim::prune::PruneOptions {
            ratio: 0.5,
            ..Default::default()
        },
        &[],
        None,
    )
    .unwrap()
    .model;
    let input = ModelInput::of(&model).unwrap();
    let mut data = calib::load(&CalibSpec::Mnist, &input, None).unwrap();
    // Every sixth training digit (all classes), 200 held out; no labels used.
    data.calib = data.calib.filter("train", |i| i % 6 == 0);
    data.held_out.truncate(200);
    let pb = progress_bar(0, "");
    let teacher = Runner::new(&model, &input, None).unwrap();
    let t_train = teacher.first_outputs(&data.calib, &pb).unwrap();
    let t_held = teacher.first_outputs(&data.held_out, &pb).unwrap();
    let opts = DenseOptions {
        tensor: None,
        loss: DenseLoss::Mse,
        score: DenseScore::Cosine,
        shape: input.shape.clone(),
        input: input.name.clone(),
        epochs: 2,
        batch_size: 32,
        lr: 1e-3,
        weight_decay: 0.0,
        seed: 0,
        threads: 0,
        progress: false,
        stop_on_ctrl_c: false,
    };
    let r = distill(
        &pruned,
        &Pairs {
            inputs: &data.calib.samples,
            targets: &t_train,
        },
        &Pairs {
            inputs: &data.held_out.samples,
            targets: &t_held,
        },
        &opts,
    )
    .unwrap();
    println!(
        "cosine {:.4} -> {:.4} (epoch {})",
        r.score_before, r.score_after, r.best_epoch
    );
    assert!(r.best_epoch > 0);
    assert!(
        r.score_after > r.score_before + 0.05,
        "{} -> {}",
        r.score_before,
        r.score_after
    );
    let student = Runner::new(&r.model, &input, None).unwrap();
    let s_held = student.first_outputs(&data.held_out, &pb).unwrap();
    let tract_cos: f64 = s_held
        .iter()
        .zip(&t_held)
        .map(|(a, b)| cosine(a, b))
        .sum::<f64>()
        / s_held.len() as f64;
    assert!(
        (tract_cos - r.score_after).abs() < 1e-3,
        "tract {tract_cos} vs engine {}",
        r.score_after
    );
}

/// The zoo tracker pair in a study: judged by tracking AUC on generated benchmark sequences,
/// pruned as a pair and fine-tuned on generated pairs, every graph checked on two engines, and
/// `compress auto` copying the chosen pair.
#[test]
fn a_tracker_study_prunes_the_pair_and_judges_it_by_auc() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/siamese-tracker");
    let out = dir.path().join("study");
    let args = [
        "study",
        s(&model),
        "--data",
        "tracking:7",
        "--methods",
        "prune,prune+fp16",
        "--budgets",
        "0.25",
        "--recover",
        "finetune",
        "--epochs",
        "1",
        "--runs",
        "4",
        "-o",
        s(&out),
    ];
    run_ok("edgeslim", &args);
    let st = study_json(&out);
    assert_eq!(st["metric"], "auc");
    let auc0 = st["reference"]["quality"]["auc"].as_f64().unwrap();
    assert!(
        (0.5..=1.0).contains(&auc0),
        "the zoo tracker's AUC on the benchmark: {auc0} (0.658 in docs/results/tracking.md)"
    );
    assert_eq!(st["reference"]["quality"]["agreement"], 1.0);
    let rows = st["rows"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["prune@0.25", "prune+fp16@0.25"]);
    let params0 = st["reference"]["params"].as_f64().unwrap();
    for row in rows {
        let id = row["id"].as_str().unwrap();
        let search = out.join(row["file"].as_str().unwrap());
        let template = search.with_file_name("template.onnx");
        for g in [&template, &search] {
            let check = python_check(g, None, &[]);
            assert_eq!(
                check.checker,
                "ok",
                "{id} {}: {}",
                g.display(),
                check.checker
            );
        }
        let diff = row["engines"]["max_rel_diff"].as_f64().unwrap_or(f64::NAN);
        assert!(diff <= 1e-4, "{id}: tract vs ORT {diff} {}", row["engines"]);
        let kept = row["params"].as_f64().unwrap() / params0;
        assert!((0.15..=0.25).contains(&kept), "{id}: kept {kept}");
        assert!(row["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{id}");
    }
    // Fine-tuning recovers tracking (docs: AUC 0.164 pruned -> 0.624 after 5 epochs).
    let pruned = &rows[0];
    let before = pruned["quality_compressed"]["auc"].as_f64().unwrap();
    let after = pruned["quality"]["auc"].as_f64().unwrap();
    assert!(after > before + 0.1, "AUC {before} -> {after}");
    assert_eq!(pruned["recovery"]["mode"], "finetune");
    // The chain reused the fine-tuned pair; fp16 changes the tracker's boxes very little.
    let chain = &rows[1];
    assert!(chain["notes"][0].as_str().unwrap().contains("reused"));
    let fp16_auc = chain["quality"]["auc"].as_f64().unwrap();
    assert!((fp16_auc - after).abs() < 0.02, "{fp16_auc} vs {after}");

    // Methods a pair cannot take and label-free distillation are refused by name.
    let r = run(
        "edgeslim",
        &[
            "study",
            s(&model),
            "--data",
            "tracking:7",
            "--methods",
            "lowrank-feature",
            "-o",
            s(&out),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("lowrank-feature"), "{}", r.stderr);

    // `compress auto` resumes the study and writes the chosen pair as a folder.
    let picked = dir.path().join("auto-tracker");
    let mut auto = vec!["compress", "auto"];
    auto.extend(&args[1..args.len() - 2]);
    auto.extend([
        "--max-drop",
        "100",
        "--study-dir",
        s(&out),
        "-o",
        s(&picked),
    ]);
    let r = run_ok("edgeslim", &auto);
    assert!(r.stderr.contains("kept from the last run"), "{}", r.stderr);
    let st = study_json(&out);
    let fastest = st["rows"]
        .as_array()
        .unwrap()
        .iter()
        .min_by(|a, b| {
            a["latency"]["p50_ms"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["latency"]["p50_ms"].as_f64().unwrap())
        })
        .unwrap();
    let (_, sha) = edgeslim_runtime::fsutil::sha256_file(&picked.join("search.onnx")).unwrap();
    assert_eq!(sha, fastest["sha256"].as_str().unwrap());
    assert!(picked.join("template.onnx").is_file());
}

/// PP-OCRv4 det on real text photographs: judged by the F1 of its text boxes against the
/// original's (no labels). The optimised graph finds exactly the original's boxes; half the
/// parameters pruned without recovery loses most of them.
#[test]
fn a_text_detector_is_judged_by_its_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let det = edgeslim_e2e::assets().ppocr_det();
    let out = dir.path().join("study");
    let r = run_ok(
        "edgeslim",
        &[
            "study",
            s(&det),
            "--input-shape",
            "x=1,3,320,320",
            "--data",
            "ppocr-scenes",
            "--metric",
            "box-f1",
            "--methods",
            "optimize,prune",
            "--budgets",
            "0.5",
            "--runs",
            "3",
            "-o",
            s(&out),
        ],
    );
    assert!(r.stdout.contains("box-f1"), "{}", r.stdout);
    let st = study_json(&out);
    assert_eq!(st["reference"]["quality"]["box_f1"], 1.0);
    assert_eq!(st["held_out_samples"], 32, "{}", st["split"]);
    let rows = st["rows"].as_array().unwrap();
    let f1 = |i: usize| rows[i]["quality"]["box_f1"].as_f64().unwrap();
    assert_eq!(rows[0]["id"], "optimize");
    assert_eq!(f1(0), 1.0, "the optimised graph keeps every box");
    assert!(
        rows[0]["quality"]["map_iou"].as_f64().unwrap() > 0.99,
        "{}",
        rows[0]["quality"]
    );
    assert!(
        f1(1) < 0.5,
        "pruned to half without recovery: box F1 {}",
        f1(1)
    );
    for row in rows {
        let diff = row["engines"]["max_rel_diff"].as_f64().unwrap_or(f64::NAN);
        assert!(diff <= 1e-3, "{}: tract vs ORT {diff}", row["id"]);
    }
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains("box F1 %") && !page.contains("agreement %"));
}

/// Budgets in MACs: pruning and low rank bisect on the MACs of the model they give.
#[test]
fn a_macs_budget_holds_for_pruning_and_low_rank() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/mnist-cnn.onnx");
    let out = dir.path().join("study");
    let mut args = vec![
        "study",
        s(&model),
        "--methods",
        "prune,lowrank-weight",
        "--budgets",
        "0.5",
        "--budget-by",
        "macs",
        "-o",
        s(&out),
    ];
    args.extend(COMMON);
    run_ok("edgeslim", &args);
    let st = study_json(&out);
    assert_eq!(st["budget_by"], "macs");
    let macs0 = st["reference"]["macs"].as_f64().unwrap();
    let params0 = st["reference"]["params"].as_f64().unwrap();
    for row in st["rows"].as_array().unwrap() {
        let kept = row["macs"].as_f64().unwrap() / macs0;
        assert!(
            (0.3..=0.5).contains(&kept),
            "{}: MACs kept {kept}",
            row["id"]
        );
        println!(
            "{}: MACs {kept:.4}, params {:.4}",
            row["id"],
            row["params"].as_f64().unwrap() / params0
        );
    }
    // Not a parameter budget in disguise: low rank spends its budget where the MACs are
    // and keeps more than half the parameters (the dense layer holds most of them and runs
    // once).
    let lr = &st["rows"][1];
    assert!(lr["params"].as_f64().unwrap() / params0 > 0.5, "{lr}");
}
