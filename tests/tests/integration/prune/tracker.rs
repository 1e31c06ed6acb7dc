//! The Siamese tracker pruned as a pair (template.onnx + search.onnx with the correlation
//! kernel's channels removed on both sides): budgets met, both engines agree, pruning nothing
//! changes nothing, fine-tuning recovers tracking, bad input is refused with a reason.

use edgeslim_e2e::engines::{random, rel_diff, run_both};
use edgeslim_e2e::{python_check, run, run_ok, workspace};
use std::path::{Path, PathBuf};

fn zoo_tracker() -> PathBuf {
    workspace().join("models/siamese-tracker")
}

fn prune_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// The response of a tracker pair in tract and in ONNX Runtime: the template graph's kernel
/// (from each engine) fed to its search graph on the same search crops.
fn pair_response(dir: &Path, seed: u64) -> (Vec<f32>, Vec<f32>) {
    pair_response_at(dir, seed, 9)
}

/// [`pair_response`] for a pair whose template features are `tf`×`tf`.
fn pair_response_at(dir: &Path, seed: u64, tf: usize) -> (Vec<f32>, Vec<f32>) {
    let template = random(3 * 63 * 63, seed);
    let (kt, ko) = run_both(
        &dir.join("template.onnx"),
        &[("template", vec![1, 3, 63, 63], template)],
    );
    assert!(
        rel_diff(&kt[0], &ko[0]) < 1e-4,
        "template: engines disagree"
    );
    let c = kt[0].len() / (tf * tf);
    let search = random(2 * 3 * 127 * 127, seed + 1);
    let (rt, ro) = run_both(
        &dir.join("search.onnx"),
        &[
            ("search", vec![2, 3, 127, 127], search),
            ("kernel", vec![c, 1, tf, tf], kt[0].clone()),
        ],
    );
    (rt[0].clone(), ro[0].clone())
}

#[test]
fn tracker_pair_pruned_to_a_tenth_meets_the_budget_and_runs_in_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p10");
    let rep = dir.path().join("rep");
    let trk = zoo_tracker();
    let r = run_ok(
        "edgeslim",
        &[
            "compress",
            "prune",
            trk.to_str().unwrap(),
            "--keep-params",
            "0.1",
            "--criterion",
            "bn",
            "-o",
            out.to_str().unwrap(),
            "--report",
            rep.to_str().unwrap(),
            "--runs",
            "4",
        ],
    );
    assert!(r.stdout.contains("params 40369 ->"), "{}", r.stdout);
    let j = prune_json(&rep);
    let kept = j["params_kept"].as_f64().unwrap();
    assert!(kept <= 0.1 && kept > 0.07, "kept {kept} of the parameters");
    let before: Vec<u64> = serde_json::from_value(j["widths_before"].clone()).unwrap();
    let after: Vec<u64> = serde_json::from_value(j["widths_after"].clone()).unwrap();
    assert_eq!(before, vec![16, 32, 48, 48]);
    assert!(
        after.iter().zip(&before).all(|(a, b)| a < b && *a >= 1),
        "{after:?}"
    );
    // The kernel lost channels too: that is what the pair pruner is for.
    assert!(after[3] < 48);
    assert!(
        j["macs_per_search_scale_after"].as_u64().unwrap()
            < j["macs_per_search_scale_before"].as_u64().unwrap() / 5
    );
    assert!(j["latency"]["speedup"].as_f64().unwrap() > 0.0);
    for f in ["template.onnx", "search.onnx"] {
        let c = python_check(&out.join(f), None, &[]);
        assert_eq!(c.checker, "ok", "{f}: {}", c.checker);
    }
    let (t, o) = pair_response(&out, 5);
    assert_eq!(t.len(), 2 * 17 * 17);
    assert!(
        rel_diff(&t, &o) < 1e-4,
        "tract and ORT responses differ: {}",
        rel_diff(&t, &o)
    );
    // The runtime tracks with it (metadata travelled with the weights).
    let seqs = dir.path().join("seqs");
    run_ok(
        "edgeslim",
        &[
            "data",
            "tracking",
            "-o",
            seqs.to_str().unwrap(),
            "--sequences",
            "1",
            "--frames",
            "10",
            "--seed",
            "2",
        ],
    );
    let r = run_ok(
        "edgeslim",
        &[
            "eval",
            out.to_str().unwrap(),
            "--task",
            "track",
            "--data",
            seqs.to_str().unwrap(),
        ],
    );
    assert!(r.stdout.contains("overall"), "{}", r.stdout);
}

#[test]
fn pruning_no_channel_leaves_the_tracker_response_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("same");
    let trk = zoo_tracker();
    run_ok(
        "edgeslim",
        &[
            "compress",
            "prune",
            trk.to_str().unwrap(),
            "--ratio",
            "0",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let (orig, _) = pair_response(&trk, 9);
    let (same, _) = pair_response(&out, 9);
    assert!(
        rel_diff(&same, &orig) < 1e-6,
        "ratio 0 changed the response: {}",
        rel_diff(&same, &orig)
    );
    // At ratio 0.5 it does change: the comparison above can fail.
    let half = dir.path().join("half");
    run_ok(
        "edgeslim",
        &[
            "compress",
            "prune",
            trk.to_str().unwrap(),
            "--ratio",
            "0.5",
            "-o",
            half.to_str().unwrap(),
        ],
    );
    let (h, _) = pair_response(&half, 9);
    assert!(rel_diff(&h, &orig) > 1e-3);
}

#[test]
fn fine_tuning_a_one_percent_tracker_recovers_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let trk = zoo_tracker();
    let (pruned, tuned) = (dir.path().join("p01"), dir.path().join("p01-ft"));
    let common = ["--keep-params", "0.01", "--criterion", "bn"];
    let mut a = vec!["compress", "prune", trk.to_str().unwrap()];
    a.extend(common);
    a.extend(["-o", pruned.to_str().unwrap()]);
    run_ok("edgeslim", &a);
    let mut a = vec!["compress", "prune", trk.to_str().unwrap()];
    a.extend(common);
    a.extend([
        "-o",
        tuned.to_str().unwrap(),
        "--finetune",
        "tracking:1",
        "--epochs",
        "1",
    ]);
    let r = run_ok("edgeslim", &a);
    assert!(
        r.stdout.contains("fine-tuned 1 epochs on tracking:1"),
        "{}",
        r.stdout
    );
    let card = std::fs::read_to_string(tuned.join("card.md")).unwrap();
    assert!(card.contains("pruned from"), "{card}");
    let seqs = dir.path().join("seqs");
    run_ok(
        "edgeslim",
        &[
            "data",
            "tracking",
            "-o",
            seqs.to_str().unwrap(),
            "--sequences",
            "3",
            "--frames",
            "40",
            "--seed",
            "11",
        ],
    );
    let auc = |d: &Path| -> f64 {
        let j = dir
            .path()
            .join(format!("{}.json", d.file_name().unwrap().to_string_lossy()));
        run_ok(
            "edgeslim",
            &[
                "eval",
                d.to_str().unwrap(),
                "--task",
                "track",
                "--data",
                seqs.to_str().unwrap(),
                "--json",
                j.to_str().unwrap(),
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
        v["overall"]["auc"].as_f64().unwrap()
    };
    let (before, after) = (auc(&pruned), auc(&tuned));
    // A run gave 0.09 → 0.45 on the 6×100 benchmark set.
    assert!(
        after > before + 0.1,
        "AUC pruned {before:.3}, fine-tuned {after:.3}"
    );
}

#[test]
fn tracker_pair_bad_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let trk = zoo_tracker();
    let t = trk.to_str().unwrap();
    let out = dir.path().join("o");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--ratio", "0.5", "--criterion", "taylor", "-o", o],
            "l1, l2 or bn",
        ),
        (vec!["--keep-params", "0.001", "-o", o], "smallest tracker"),
        (vec!["--keep-params", "1.5", "-o", o], "must be in (0, 1]"),
        (
            vec!["--ratio", "0.5", "--calib", "mnist", "-o", o],
            "--calib is not supported",
        ),
        (
            vec!["--ratio", "0.5", "--finetune", "mnist", "-o", o],
            "tracking:SEED",
        ),
        (vec!["--ratio", "0.5", "-o", t], "refusing to overwrite"),
    ];
    for (args, want) in cases {
        let mut a = vec!["compress", "prune", t];
        a.extend(args.iter().copied());
        let r = run("edgeslim", &a);
        assert_ne!(r.code, 0, "{a:?} succeeded");
        assert!(
            r.stderr.contains(want),
            "{a:?}: expected '{want}' in:\n{}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    // --keep-params is for pairs; a single graph says so.
    let search = trk.join("search.onnx");
    let r = run(
        "edgeslim",
        &[
            "compress",
            "prune",
            search.to_str().unwrap(),
            "--keep-params",
            "0.5",
            "-o",
            o,
        ],
    );
    assert!(
        r.stderr
            .contains("--keep-params is for tracker directories"),
        "{}",
        r.stderr
    );
    // Nothing was written by the refused runs.
    assert!(!out.join("search.onnx").exists());
}

#[test]
fn zoo_pruned_trackers_meet_their_budgets_and_run_in_both_engines() {
    let full = edgeslim::prune::tracker::TrackerPair::load(&zoo_tracker())
        .unwrap()
        .params();
    for (tag, share) in [("p50", 0.5), ("p25", 0.25), ("p10", 0.1), ("p01", 0.01)] {
        let dir = workspace().join(format!("models/siamese-tracker-{tag}"));
        let pair = edgeslim::prune::tracker::TrackerPair::load(&dir).unwrap();
        let kept = pair.params() as f64 / full as f64;
        assert!(kept <= share && kept > share * 0.7, "{tag}: {kept}");
        assert!(
            pair.template.metadata("edgeslim.pruned").is_some(),
            "{tag}: provenance"
        );
        let card: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("card.json")).unwrap()).unwrap();
        assert!(
            card["command"].as_str().unwrap().contains("--keep-params"),
            "{tag}"
        );
        for f in ["template.onnx", "search.onnx"] {
            let c = python_check(&dir.join(f), None, &[]);
            assert_eq!(c.checker, "ok", "{tag}/{f}: {}", c.checker);
        }
        let (t, o) = pair_response(&dir, 3);
        assert!(
            rel_diff(&t, &o) < 1e-4,
            "{tag}: tract and ORT differ by {}",
            rel_diff(&t, &o)
        );
    }
}

/// The tracker on a pretrained MobileNetV2 trunk: its inverted-residual blocks pruned by the
/// dependency groups (the residual pair kept equal), the correlation channels on both sides;
/// nothing pruned changes nothing; the folded batch norms refuse the `bn` criterion.
#[test]
fn the_pretrained_trunk_tracker_prunes_as_a_pair() {
    let dir = tempfile::tempdir().unwrap();
    let trk = workspace().join("models/siamese-mnv2");
    let t = trk.to_str().unwrap();
    let (out, rep) = (dir.path().join("k25"), dir.path().join("rep"));
    let r = run_ok(
        "edgeslim",
        &[
            "compress",
            "prune",
            t,
            "--keep-params",
            "0.25",
            "--criterion",
            "l1",
            "-o",
            out.to_str().unwrap(),
            "--report",
            rep.to_str().unwrap(),
            "--runs",
            "2",
        ],
    );
    assert!(r.stdout.contains("pretrained trunk widths"), "{}", r.stdout);
    let j = prune_json(&rep);
    let kept = j["params_kept"].as_f64().unwrap();
    assert!(kept <= 0.25 && kept > 0.15, "kept {kept} of the parameters");
    let before: Vec<usize> = serde_json::from_value(j["trunk_widths_before"].clone()).unwrap();
    let after: Vec<usize> = serde_json::from_value(j["trunk_widths_after"].clone()).unwrap();
    assert_eq!(before, vec![32, 16, 96, 24, 144, 24]);
    assert!(after.iter().zip(&before).all(|(a, b)| a < b), "{after:?}");
    // Blocks 2 and 3 share the residual stream: their outputs stay equally wide.
    assert_eq!(after[3], after[5], "{after:?}");
    let neck = j["widths_after"][3].as_u64().unwrap();
    assert!(neck < 48, "correlation channels {neck}");
    assert!(
        j["macs_per_search_scale_after"].as_u64().unwrap()
            < j["macs_per_search_scale_before"].as_u64().unwrap() / 2
    );
    // The config describes the weights: the family rebuilds the pruned trunk from it.
    let pair = edgeslim::prune::tracker::TrackerPair::load(&out).unwrap();
    assert_eq!(pair.config.pretrained_widths.as_deref(), Some(&after[..]));
    for f in ["template.onnx", "search.onnx"] {
        let c = python_check(&out.join(f), None, &[]);
        assert_eq!(c.checker, "ok", "{f}: {}", c.checker);
    }
    let (pt, po) = pair_response_at(&out, 4, 16);
    assert_eq!(pt.len(), 2 * 17 * 17);
    assert!(rel_diff(&pt, &po) < 1e-4, "engines: {}", rel_diff(&pt, &po));

    // Ratio 0 rebuilds the pair through the same path and changes nothing.
    let same = dir.path().join("same");
    run_ok(
        "edgeslim",
        &[
            "compress",
            "prune",
            t,
            "--ratio",
            "0",
            "--criterion",
            "l1",
            "-o",
            same.to_str().unwrap(),
        ],
    );
    let (orig, _) = pair_response_at(&trk, 4, 16);
    let (s, _) = pair_response_at(&same, 4, 16);
    assert!(
        rel_diff(&s, &orig) < 1e-6,
        "ratio 0: {}",
        rel_diff(&s, &orig)
    );
    assert!(rel_diff(&pt, &orig) > 1e-3);

    let r = run(
        "edgeslim",
        &[
            "compress",
            "prune",
            t,
            "--ratio",
            "0.5",
            "--criterion",
            "bn",
            "-o",
            dir.path().join("bn").to_str().unwrap(),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("l1 or l2"), "{}", r.stderr);
    assert!(!dir.path().join("bn").exists());
}
