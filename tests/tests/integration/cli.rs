//! The command-line grammar both tools share (docs/cli.md): `--version` with the engines and
//! features, global -q/-v, exit codes, the `--json [FILE]` rule, examples in every `--help`,
//! and the deprecated spellings that still work for one release.

use edgeslim_e2e::{run, run_ok, workspace};
use serde_json::Value;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn version_names_the_engines_and_features() {
    let host = run_ok("edgeslim", &["--version"]).stdout;
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock")).unwrap();
    let tract = lock
        .split("name = \"tract-onnx\"\nversion = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    assert!(host.contains(&format!("tract {tract}")), "{host}");
    assert!(host.contains("ONNX Runtime 1.32.0"), "{host}");
    assert!(host.contains("features: ort, serve, camera"), "{host}");
    let rt = run_ok("edgeslim-rt", &["--version"]).stdout;
    assert!(rt.contains(&format!("tract {tract}")), "{rt}");
    assert!(rt.contains("features: serve, camera"), "{rt}");
    assert!(
        !rt.contains("ort"),
        "the board runtime has no ONNX Runtime: {rt}"
    );
}

#[test]
fn exit_codes_and_global_flags() {
    // Usage errors: 2, with clap's message.
    let r = run("edgeslim", &["inspect", "--no-such-flag"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run("edgeslim-rt", &["-q", "-v", "bench", "x.onnx"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cannot be used with"), "{}", r.stderr);
    // Failed work: 1, one line naming the file.
    let r = run("edgeslim", &["inspect", "/nonexistent/m.onnx"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("/nonexistent/m.onnx"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    // The global flags go before or after the subcommand; -v turns info messages on.
    let quiet = run_ok("edgeslim", &["assets", "fetch", "-q"]);
    assert!(quiet.stderr.is_empty(), "-q: {}", quiet.stderr);
    run_ok("edgeslim", &["-q", "assets", "path"]);
    let verbose = run_ok(
        "edgeslim-rt",
        &[
            "-v",
            "bench",
            s(&workspace().join("models/mnist-cnn.onnx")),
            "--runs",
            "2",
        ],
    );
    assert_eq!(verbose.code, 0);
    // --help documents the exit codes.
    for bin in ["edgeslim", "edgeslim-rt"] {
        let h = run_ok(bin, &["--help"]).stdout;
        assert!(
            h.contains("Exit status: 0 success") && h.contains("130"),
            "{bin}: {h}"
        );
    }
}

/// Every subcommand's --help shows at least one example (the README promises it).
#[test]
fn every_subcommand_help_has_an_example() {
    for bin in ["edgeslim", "edgeslim-rt"] {
        let top = run_ok(bin, &["--help"]).stdout;
        let commands: Vec<String> = top
            .split("Commands:")
            .nth(1)
            .unwrap()
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|c| c != "help")
            .collect();
        assert!(commands.len() >= 5, "{bin}: {commands:?}");
        for c in &commands {
            let h = run_ok(bin, &[c, "--help"]).stdout;
            // Commands with subcommands: every leaf has one.
            let leaves: Vec<String> = h
                .split("Commands:")
                .nth(1)
                .map(|rest| {
                    rest.lines()
                        .skip(1)
                        .take_while(|l| l.starts_with("  "))
                        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                        .filter(|c| c != "help")
                        .collect()
                })
                .unwrap_or_default();
            if leaves.is_empty() {
                assert!(
                    h.contains("Example"),
                    "{bin} {c} --help has no example:\n{h}"
                );
            }
            for leaf in leaves {
                let h = run_ok(bin, &[c, &leaf, "--help"]).stdout;
                assert!(
                    h.contains("Example"),
                    "{bin} {c} {leaf} --help has no example:\n{h}"
                );
            }
        }
    }
}

/// `--json` alone: JSON on stdout and nothing else; `--json FILE.json`: the same JSON in the
/// file (and the usual text on stdout); a non-.json value after a bare `--json` is a usage
/// error that leaves the file alone.
#[test]
fn json_goes_to_stdout_or_to_a_file_by_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("models/mnist-cnn.onnx");
    let m = s(&model);
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("edgeslim", vec!["inspect", m]),
        ("edgeslim", vec!["targets", "rpi4"]),
        ("edgeslim", vec!["bench", m, "--runs", "2"]),
        ("edgeslim-rt", vec!["bench", m, "--runs", "2"]),
        ("edgeslim-rt", vec!["plan", m]),
    ];
    for (i, (bin, args)) in cases.iter().enumerate() {
        let mut a = args.clone();
        a.push("--json");
        let out = run_ok(bin, &a).stdout;
        let stdout: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{bin} {a:?}: stdout is not JSON ({e}):\n{out}"));
        let file = dir.path().join(format!("{i}.json"));
        let mut a = args.clone();
        a.extend(["--json", s(&file)]);
        run_ok(bin, &a);
        let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        // Same document (timings differ between runs: compare the keys).
        let keys = |v: &Value| -> Vec<String> {
            v.as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(keys(&stdout), keys(&written), "{bin} {args:?}");
    }
    let before = std::fs::read(&model).unwrap();
    let r = run("edgeslim", &["bench", "--json", m]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not a .json file"), "{}", r.stderr);
    assert_eq!(std::fs::read(&model).unwrap(), before);
}

#[test]
fn deprecated_spellings_still_work_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let seqs = dir.path().join("seqs");
    let r = run_ok(
        "edgeslim",
        &[
            "data",
            "tracking",
            "--out",
            s(&seqs),
            "--sequences",
            "1",
            "--frames",
            "5",
        ],
    );
    assert!(
        r.stderr.contains("--out DIR is deprecated") && r.stderr.contains("-o/--output"),
        "{}",
        r.stderr
    );
    assert!(seqs.join("seq-000/groundtruth_rect.txt").is_file());
    let trk = workspace().join("models/siamese-tracker-p01");
    let old = run_ok(
        "edgeslim-rt",
        &["track", "--model", s(&trk), "--eval", s(&seqs), "--json"],
    );
    assert!(
        old.stderr.contains("--model DIR is deprecated"),
        "{}",
        old.stderr
    );
    let new = run_ok(
        "edgeslim-rt",
        &["track", s(&trk), "--eval", s(&seqs), "--json"],
    );
    assert!(!new.stderr.contains("deprecated"), "{}", new.stderr);
    let auc = |o: &str| -> f64 {
        let v: Value = serde_json::from_str(o).unwrap();
        v["overall"]["auc"].as_f64().unwrap()
    };
    assert_eq!(auc(&old.stdout), auc(&new.stdout));
    // A live run as JSON Lines: one record per frame with its box, then the summary.
    let live = run_ok(
        "edgeslim-rt",
        &[
            "track",
            s(&trk),
            "--source",
            s(&seqs.join("seq-000")),
            "--jsonl",
        ],
    );
    let records: Vec<Value> = live
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (summary, frames) = records.split_last().unwrap();
    assert_eq!(
        summary["summary"]["frames"].as_u64(),
        Some(frames.len() as u64)
    );
    // The first frame initialises the tracker (no search); every later one searches.
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["box"].as_array().map(Vec::len), Some(4), "{f}");
        assert!(f["confidence"].is_number(), "{f}");
        assert_eq!(f["search_ms"].as_f64().unwrap() > 0.0, i > 0, "{f}");
    }
    let r = run(
        "edgeslim-rt",
        &["track", s(&trk), "--eval", s(&seqs), "--jsonl"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("--jsonl streams a live run"),
        "{}",
        r.stderr
    );
    // Both spellings at once is a usage error.
    let r = run(
        "edgeslim-rt",
        &["track", s(&trk), "--model", s(&trk), "--eval", s(&seqs)],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// Every ONNX the host tool writes says which commands made it, from which inputs (by
/// content hash), and the history survives a chain of commands.
#[test]
fn provenance_survives_an_optimize_prune_chain() {
    let dir = tempfile::tempdir().unwrap();
    let src = workspace().join("models/mnist-cnn.onnx");
    let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
    run_ok("edgeslim", &["optimize", s(&src), "-o", s(&a)]);
    run_ok(
        "edgeslim",
        &[
            "compress",
            "prune",
            s(&a),
            "--ratio",
            "0.5",
            "-o",
            s(&b),
            "--runs",
            "0",
        ],
    );
    let j: Value =
        serde_json::from_str(&run_ok("edgeslim", &["inspect", s(&b), "--json"]).stdout).unwrap();
    let h = j["provenance"].as_array().unwrap();
    let src_history =
        serde_json::from_str::<Value>(&run_ok("edgeslim", &["inspect", s(&src), "--json"]).stdout)
            .unwrap()["provenance"]
            .as_array()
            .unwrap()
            .len();
    assert_eq!(h.len(), src_history + 2, "{h:?}");
    let [.., opt, prune] = h.as_slice() else {
        unreachable!()
    };
    assert_eq!(
        opt["tool"],
        format!("edgeslim {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        opt["command"].as_str().unwrap().starts_with("optimize "),
        "{opt}"
    );
    assert!(
        opt["command"].as_str().unwrap().ends_with("-o <out>"),
        "{opt}"
    );
    let sha = |p: &Path| edgeslim::assets::file_sha256(p).unwrap().1;
    assert_eq!(opt["inputs"][0]["sha256"], sha(&src));
    assert_eq!(opt["inputs"][0]["file"], "mnist-cnn.onnx");
    assert!(
        prune["command"]
            .as_str()
            .unwrap()
            .contains("compress prune")
            && prune["command"].as_str().unwrap().contains("--ratio 0.5"),
        "{prune}"
    );
    assert_eq!(prune["inputs"][0]["sha256"], sha(&a));
    let text = run_ok("edgeslim", &["inspect", s(&b)]).stdout;
    assert!(text.contains("compress prune"), "{text}");
}

/// `fit`: the runtime's measured peak RSS against the board's usable RAM; a board too small
/// says so with the numbers; a bench report from the board replaces the estimates.
#[test]
fn fit_answers_with_the_reason() {
    let model = workspace().join("models/efficientnet-lite0/model.onnx");
    let m = s(&model);
    let fit = |extra: &[&str]| -> Value {
        let mut a = vec!["fit", m, "--target", "rpi4"];
        a.extend_from_slice(extra);
        a.push("--json");
        serde_json::from_str(&run_ok("edgeslim", &a).stdout).unwrap()
    };
    let big = fit(&[]);
    let row = &big["models"][0];
    assert_eq!(big["fits"], true, "{big}");
    let rss = row["peak_rss_bytes"].as_u64().unwrap();
    // The weights alone are 18.5 MB; tract's working set comes on top.
    assert!(rss > 20_000_000 && rss < 400_000_000, "{rss}");
    // 385 M MACs at 48 GFLOP/s: 16 ms at best.
    let est = row["latency_ms"].as_f64().unwrap();
    assert!((est - 2.0 * 385.2e6 / 48e9 * 1e3).abs() < 0.5, "{est}");
    let small = fit(&["--ram-gb", "0.35"]);
    assert_eq!(small["fits"], false, "{small}");
    let reason = small["models"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("MiB usable") && reason.contains(">"),
        "{reason}"
    );
    let text = run_ok(
        "edgeslim",
        &["fit", m, "--target", "rpi4", "--ram-gb", "0.35"],
    )
    .stdout;
    assert!(text.contains("does not fit"), "{text}");

    // Measured figures from a (here: host) bench report replace the estimates.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("board.json");
    run_ok(
        "edgeslim-rt",
        &["bench", m, "--runs", "2", "--json", s(&report)],
    );
    let measured = fit(&["--board-bench", s(&report)]);
    let bench: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let row = &measured["models"][0];
    assert_eq!(row["latency_ms"], bench["latency"]["p50_ms"]);
    assert_eq!(row["peak_rss_bytes"], bench["memory"]["peak_rss_bytes"]);
    assert!(row["latency_source"]
        .as_str()
        .unwrap()
        .starts_with("measured"));
}
