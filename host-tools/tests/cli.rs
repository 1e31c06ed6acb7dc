//! The `edgeslim` binary's own contract: every command documents itself with an example.
//! (Also makes `cargo test` build the binary the end-to-end tests drive.)

use std::process::Command;

fn edgeslim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgeslim"))
        .args(args)
        .output()
        .expect("run edgeslim")
}

#[test]
fn commands_have_help_with_examples() {
    for cmd in ["inspect", "optimize", "bench", "report"] {
        let out = edgeslim(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Example"),
            "{cmd} --help has an example:\n{text}"
        );
    }
    let out = edgeslim(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["inspect", "optimize", "bench", "report", "assets", "demo"] {
        assert!(text.contains(cmd), "top-level help lists {cmd}");
    }
}

#[test]
fn unknown_pass_is_refused() {
    let dir = std::env::temp_dir();
    let out = edgeslim(&[
        "optimize",
        "x.onnx",
        "-o",
        dir.join("y.onnx").to_str().unwrap(),
        "--skip",
        "magic",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("x.onnx"),
        "the missing file is reported first: {err}"
    );
}
