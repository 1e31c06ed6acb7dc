//! `edgeslim demo --part tracking`: the committed zoo tracker pruned (no training), both
//! benchmarked with tract (and ONNX Runtime), both evaluated on generated sequences; the report
//! carries the tracking section with the metrics and the annotated frames.

use edgeslim_e2e::{assets, python_check, run};

/// The stated level: the original tracker's AUC on the demo's 4 × 60-frame set (seed 7).
/// Measured 0.694 (docs/results/tracking.md).
const ORIGINAL_AUC_FLOOR: f64 = 0.55;

#[test]
fn demo_tracking_part_reports_metrics_speed_and_frames() {
    let _ = assets();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("demo");
    let t0 = std::time::Instant::now();
    let r = run(
        "edgeslim",
        &[
            "demo",
            "--part",
            "tracking",
            "--quick",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    println!(
        "{}\n(demo took {:.1} s)",
        r.stdout,
        t0.elapsed().as_secs_f64()
    );
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("tracking/tracking.json")).unwrap())
            .unwrap();
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let (orig, pruned, still) = (&t["original"], &t["pruned"], &t["never_move"]);
    let (auc_o, auc_p, auc_s) = (
        f(&orig["overall"]["auc"]),
        f(&pruned["overall"]["auc"]),
        f(&still["auc"]),
    );
    assert!(
        auc_o >= ORIGINAL_AUC_FLOOR,
        "original AUC {auc_o} below {ORIGINAL_AUC_FLOOR}"
    );
    assert!(
        auc_o > auc_s + 0.3,
        "original {auc_o} vs never-move {auc_s}"
    );
    assert!(auc_p > auc_s + 0.15, "pruned {auc_p} vs never-move {auc_s}");
    assert!(auc_p <= 1.0 && f(&pruned["overall"]["precision_20px"]) <= 1.0);
    assert_eq!(orig["per_sequence_auc"].as_array().unwrap().len(), 4);
    assert!(f(&orig["fps"]) > 1.0 && f(&pruned["fps"]) > 1.0);
    // Both graphs really shrank, were timed, and still compute nearly the same thing.
    let graphs = t["graphs"].as_array().unwrap();
    assert_eq!(graphs.len(), 2);
    for g in graphs {
        assert!(f(&g["macs_after"]) < 0.8 * f(&g["macs_before"]), "{g}");
        assert!(f(&g["params_after"]) < f(&g["params_before"]), "{g}");
        assert!(f(&g["tract_ms_before"]) > 0.0 && f(&g["tract_ms_after"]) > 0.0);
        assert!(f(&g["output_cosine"]) > 0.5, "{g}");
    }
    // The written ONNX files pass the checker; tract and ORT agree on the pruned search graph.
    let p = out.join("tracking/pruned");
    assert_eq!(
        python_check(&p.join("template.onnx"), None, &[]).checker,
        "ok"
    );
    assert_eq!(
        python_check(
            &p.join("search.onnx"),
            None,
            &["--input-shape", "search=3,3,127,127"]
        )
        .checker,
        "ok"
    );
    let b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("tracker-search.pruned.json")).unwrap())
            .unwrap();
    for o in b["comparison"]["outputs"].as_array().unwrap() {
        assert!(
            f(&o["max_abs_diff"]) <= 1e-4 * f(&o["max_abs_reference"]).max(1.0),
            "{o}"
        );
    }
    // The frames exist, are frames of the sequence, and carry the boxes.
    let clip = t["clip"].as_array().unwrap();
    assert_eq!(clip.len(), 6);
    for c in clip {
        let img = image::open(out.join(c["file"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        assert_eq!(img.dimensions(), (320, 240));
        let green = img.pixels().filter(|p| p.0 == [0, 220, 0]).count();
        assert!(green > 20, "{c}: {green} box pixels");
    }
    // The report shows the section, the numbers and the frames.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("id=\"tracking\""));
    assert!(html.contains(&format!("{auc_o:.3}")) && html.contains(&format!("{auc_p:.3}")));
    assert_eq!(html.matches("data:image/png;base64,").count(), 6);
    assert!(out.join("tracking/prune-search/index.html").is_file());
}

/// `edgeslim demo --part classifier`: the imported EfficientNet-Lite0 pruned, both timed, their
/// label-free agreement on the 26 photographs, the section in the report.
#[test]
fn demo_classifier_part_prunes_times_and_compares_on_photographs() {
    let _ = assets();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("demo");
    let r = run(
        "edgeslim",
        &[
            "demo",
            "--part",
            "classifier",
            "--quick",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("efficientnet-lite0 pruned"),
        "{}",
        r.stdout
    );
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("classifier.json")).unwrap()).unwrap();
    let f = |k: &str| c[k].as_f64().unwrap();
    assert!(f("params_after") < 0.7 * f("params_before"));
    assert!(f("macs_after") < 0.7 * f("macs_before"));
    assert!(f("tract_ms_before") > 0.0 && f("tract_ms_after") > 0.0);
    assert_eq!(c["photos"].as_u64(), Some(26));
    for k in ["top1_agreement", "top5_overlap"] {
        assert!((0.0..=1.0).contains(&f(k)), "{k}");
    }
    // The original names the cat photo a cat class, whatever the pruned model says.
    let cat = c["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["photo"] == "chelsea.png")
        .unwrap();
    let name = cat["original"].as_str().unwrap();
    assert!(name.contains("cat"), "{name}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Pretrained classifier: EfficientNet-Lite0"));
    assert_eq!(
        python_check(&out.join("efficientnet-lite0-pruned.onnx"), None, &[]).checker,
        "ok"
    );
}
