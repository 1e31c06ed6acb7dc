//! The `edgeslim-rt` binary's own contract: help with examples, one-line errors. (Also makes
//! `cargo test` build the binary the end-to-end tests drive.)

use std::process::Command;

fn rt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgeslim-rt"))
        .args(args)
        .output()
        .expect("run edgeslim-rt")
}

#[test]
fn help_teaches_with_examples() {
    for cmd in ["run", "bench"] {
        let out = rt(&[cmd, "--help"]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Example"),
            "{cmd} --help has an example:\n{text}"
        );
        assert!(text.contains("--input-shape"));
    }
}

#[test]
fn missing_model_is_one_line() {
    let out = rt(&["bench", "/nonexistent/model.onnx"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/model.onnx") && err.contains("No such file"),
        "{err}"
    );
}
