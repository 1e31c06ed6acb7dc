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
    // Both spellings at once is a usage error.
    let r = run(
        "edgeslim-rt",
        &["track", s(&trk), "--model", s(&trk), "--eval", s(&seqs)],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
}
