//! One compression pipeline, one report schema: low-rank, quantisation and pruning of the same
//! real model (PP-OCR cls) each write report.json with the same `summary` block, filled from
//! the same measurements, and each page opens with the same summary table.

use edgeslim_e2e::{assets, run_ok};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SHAPE: &str = "x=1,3,48,192";

fn summary_of(rep: &Path) -> (serde_json::Value, serde_json::Value) {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rep.join("report.json")).unwrap()).unwrap();
    let page = std::fs::read_to_string(rep.join("index.html")).unwrap();
    assert!(page.contains("<h2>Summary: "), "{}", rep.display());
    (r["summary"].clone(), r)
}

#[test]
fn every_method_reports_the_same_summary_measured_the_same_way() {
    let a = assets();
    let cls = a.ppocr_cls();
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let common = |out: &str, rep: &str| {
        vec![
            "--input-shape".to_string(),
            SHAPE.to_string(),
            "-o".to_string(),
            s(&p(out)).to_string(),
            "--report".to_string(),
            s(&p(rep)).to_string(),
        ]
    };
    let runs = |args: Vec<String>| {
        let v: Vec<&str> = args.iter().map(|x| x.as_str()).collect();
        run_ok("edgeslim", &v);
    };
    let mut lr = vec![
        "compress",
        "lowrank",
        s(&cls),
        "--method",
        "weight",
        "--budget",
        "0.5",
        "--calib",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    lr.extend(["ppocr-text", "--calib-samples", "32", "--bench-runs", "4"].map(String::from));
    lr.extend(common("lr.onnx", "lr"));
    runs(lr);
    let mut q = [
        "compress",
        "quantize",
        s(&cls),
        "--fp16",
        "--calib",
        "ppocr-text",
    ]
    .map(String::from)
    .to_vec();
    q.extend(["--calib-samples", "32", "--bench-runs", "4"].map(String::from));
    q.extend(common("q.onnx", "q"));
    runs(q);
    let mut pr = [
        "compress",
        "prune",
        s(&cls),
        "--ratio",
        "0.3",
        "--calib",
        "ppocr-text",
    ]
    .map(String::from)
    .to_vec();
    pr.extend(["--calib-samples", "32", "--runs", "4"].map(String::from));
    pr.extend(common("p.onnx", "p"));
    runs(pr);

    let (ls, lr) = summary_of(&p("lr"));
    let (qs, qr) = summary_of(&p("q"));
    let (ps, prr) = summary_of(&p("p"));
    assert_eq!(ls["method"], "lowrank-weight");
    assert_eq!(qs["method"], "fp16");
    assert_eq!(ps["method"], "prune");
    // One schema: the same keys in every method's summary.
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&ls), keys(&qs));
    assert_eq!(keys(&ls), keys(&ps));
    // One way to count: the original's parameters and MACs agree across the three methods
    // and with `edgeslim inspect`.
    let inspect: serde_json::Value = serde_json::from_str(
        &run_ok(
            "edgeslim",
            &["inspect", s(&cls), "--input-shape", SHAPE, "--json"],
        )
        .stdout,
    )
    .unwrap();
    for sum in [&ls, &qs, &ps] {
        assert_eq!(sum["params_before"], inspect["total_params"], "{sum}");
        assert_eq!(sum["macs_before"], inspect["total_macs"], "{sum}");
    }
    // The summary is the method's own figures, not new ones.
    assert_eq!(ls["params_after"], lr["after"]["params"]);
    assert_eq!(ls["cosine_mean"], lr["fidelity"]["mean_cosine"]);
    assert_eq!(qs["latency_p50_ms_after"], qr["after"]["latency_p50_ms"]);
    assert_eq!(ps["params_after"], prr["totals"]["params_after"]);
    assert_eq!(
        ps["cosine_mean"],
        prr["fidelity"]["outputs"][0]["cosine_mean"]
    );
    assert_eq!(ps["speedup"], prr["latency"]["speedup"]);
    // Pruning and low-rank shrink the model; fp16 keeps the parameter count but for the
    // BatchNorms its clean-up folds into the convolutions.
    for sum in [&ls, &ps] {
        assert!(
            sum["params_after"].as_u64() < sum["params_before"].as_u64(),
            "{sum}"
        );
    }
    assert!(qs["params_after"].as_u64() <= qs["params_before"].as_u64());
    assert!(qs["params_after"].as_u64().unwrap() * 10 > qs["params_before"].as_u64().unwrap() * 9);
    // Every method measured latency the same way, side by side: both p50s and their ratio.
    for sum in [&ls, &qs, &ps] {
        let (b, a) = (
            sum["latency_p50_ms_before"].as_f64().unwrap(),
            sum["latency_p50_ms_after"].as_f64().unwrap(),
        );
        assert!(b > 0.0 && a > 0.0, "{sum}");
        let speedup = sum["speedup"].as_f64().unwrap();
        assert!((speedup - b / a).abs() < 1e-9 * speedup.max(1.0), "{sum}");
        let top1 = sum["top1_agreement"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&top1), "{sum}");
    }
}
