//! `edgeslim deploy` against a real OpenSSH server: a private sshd on 127.0.0.1 with a
//! throwaway host key and one authorized key, everything under a temp directory (the "board"
//! directory too). No other address is ever contacted.

use edgeslim_e2e::boards::{cross_runtime, Sshd};
use edgeslim_e2e::{assets, bin, run_ok, Run};
use edgeslim_runtime::report::BenchReport;
use std::path::Path;
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn edgeslim(args: &[String]) -> Run {
    Command::new(bin("edgeslim"))
        .args(args)
        .output()
        .expect("running edgeslim")
        .into()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// An x86-64 bundle of the host runtime: this machine is the "board".
fn host_bundle(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("host.tar.gz");
    let rt = bin("edgeslim-rt");
    let cls = assets().ppocr_cls();
    run_ok(
        "edgeslim",
        &[
            "bundle",
            "--target",
            "x86_64",
            "--binary",
            s(&rt),
            s(&cls),
            "--input-shape",
            "x=1,3,48,192",
            "--runs",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "-o",
            s(&out),
        ],
    );
    out
}

#[test]
fn deploy_benchmarks_on_the_board_and_brings_the_json_back() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = host_bundle(dir.path());
    let board = dir.path().join("board");
    let results = dir.path().join("results");
    let mut args = strs(&["deploy", s(&bundle)]);
    args.extend(sshd.deploy_args());
    args.extend(strs(&[
        "--remote-dir",
        s(&board),
        "--bench",
        "--report",
        s(&results),
    ]));
    let r = edgeslim(&args);
    assert_eq!(
        r.code,
        0,
        "{}\n{}\nsshd log:\n{}",
        r.stdout,
        r.stderr,
        sshd.log()
    );
    let deployed = board.join("edgeslim-x86_64-bench");
    assert!(
        r.stdout.contains(&format!(
            "deployed edgeslim-x86_64-bench to {}@127.0.0.1:{}",
            sshd.user,
            deployed.display()
        )),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("x86_64; edgeslim-rt"), "{}", r.stdout);
    assert!(deployed.join("bin/edgeslim-rt").is_file());
    assert!(deployed
        .join("results/ch_ppocr_mobile_v2.0_cls_infer.json")
        .is_file());
    assert!(
        !board.join(".edgeslim-x86_64-bench.upload.tar.gz").exists(),
        "upload cleaned up"
    );

    let local = results.join("ch_ppocr_mobile_v2.0_cls_infer.x86_64.json");
    assert!(
        r.stdout.contains(&format!("report: {}", local.display())),
        "{}",
        r.stdout
    );
    let report = BenchReport::read(&local).unwrap();
    assert_eq!(report.target_profile.as_deref(), Some("x86_64"));
    assert_eq!(report.device.arch, "x86_64");
    assert!(!report.device.emulated);
    assert_eq!(report.label, "ch_ppocr_mobile_v2.0_cls_infer@x86_64");
    assert_eq!(report.latency.runs, 3);
    let (_, sha) = edgeslim::assets::file_sha256(&assets().ppocr_cls()).unwrap();
    assert_eq!(report.model.sha256, sha, "the board ran the bundled model");

    // Deploying again replaces the bundle and keeps the board's earlier results.
    let mut again = strs(&["deploy", s(&bundle)]);
    again.extend(sshd.deploy_args());
    again.extend(strs(&["--remote-dir", s(&board)]));
    let r = edgeslim(&again);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(deployed
        .join("results/ch_ppocr_mobile_v2.0_cls_infer.json")
        .is_file());
    let leftovers: Vec<_> = std::fs::read_dir(&board)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the deployment, no staging: {leftovers:?}"
    );

    // The report renders the board run next to a host run.
    let host = dir.path().join("host.json");
    run_ok(
        "edgeslim-rt",
        &[
            "bench",
            s(&assets().ppocr_cls()),
            "--input-shape",
            "x=1,3,48,192",
            "--runs",
            "3",
            "--json",
            s(&host),
        ],
    );
    let html = dir.path().join("r.html");
    run_ok("edgeslim", &["report", s(&host), s(&local), "-o", s(&html)]);
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("ch_ppocr_mobile_v2.0_cls_infer@x86_64"));
}

#[test]
fn deploy_refuses_a_bundle_for_another_architecture() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let Some(rt) = cross_runtime("rpi4") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("pi.tar.gz");
    let cls = assets().ppocr_cls();
    run_ok(
        "edgeslim",
        &[
            "bundle",
            "--target",
            "rpi4",
            "--binary",
            s(&rt.binary),
            s(&cls),
            "--input-shape",
            "x=1,3,48,192",
            "-o",
            s(&bundle),
        ],
    );
    let board = dir.path().join("board");
    let mut args = strs(&["deploy", s(&bundle)]);
    args.extend(sshd.deploy_args());
    args.extend(strs(&["--remote-dir", s(&board), "--bench"]));
    let r = edgeslim(&args);
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {}", r.stderr);
    for want in [
        "refusing to deploy",
        "x86_64 (uname -m)",
        "rpi4",
        "aarch64-unknown-linux-gnu",
    ] {
        assert!(lines[0].contains(want), "{want:?} in {}", lines[0]);
    }
    assert!(!board.exists(), "nothing was copied");
}

#[test]
fn ssh_failures_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = host_bundle(dir.path());
    // Nothing listens on this port (bound, read, released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = edgeslim(&strs(&[
        "deploy",
        s(&bundle),
        "--ssh",
        "nobody@127.0.0.1",
        "--port",
        &port.to_string(),
        "--ssh-option",
        "StrictHostKeyChecking=no",
        "--ssh-option",
        "UserKnownHostsFile=/dev/null",
    ]));
    assert_ne!(r.code, 0);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].starts_with("edgeslim: error: ssh nobody@127.0.0.1"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("Connection refused") && lines[0].contains("sshd running"),
        "{}",
        lines[0]
    );

    // A key the board does not accept.
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let stranger = dir.path().join("stranger");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut args = strs(&["deploy", s(&bundle)]);
    args.extend(sshd.deploy_args());
    let key_at = args.iter().position(|a| a == "-i").unwrap() + 1;
    args[key_at] = s(&stranger).to_string();
    let r = edgeslim(&args);
    assert_ne!(r.code, 0);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].contains("Permission denied") && lines[0].contains("ssh-copy-id"),
        "{}",
        lines[0]
    );
}
