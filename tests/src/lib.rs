//! Helpers for the end-to-end tests: find the release binaries, run them, fetch assets once,
//! and ask the independent oracle (onnx.checker + ONNX Runtime, tests/py/check_model.py).

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root (tests/ is one level below it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A binary built by the same `cargo test` invocation: target/<profile>/<name>.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("EDGESLIM_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test runs from target/<profile>/deps");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test --release --workspace` (it builds the binaries)",
        p.display()
    );
    p
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run one of our binaries with arguments.
pub fn run(name: &str, args: &[&str]) -> Run {
    Command::new(bin(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
        .into()
}

/// Run and insist on success, showing stderr otherwise.
pub fn run_ok(name: &str, args: &[&str]) -> Run {
    let r = run(name, args);
    assert_eq!(
        r.code, 0,
        "{name} {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// The asset cache, fetched once per test process through the same code path as
/// `edgeslim assets fetch`.
pub fn assets() -> &'static edgeslim::assets::Assets {
    static ASSETS: OnceLock<edgeslim::assets::Assets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let a = edgeslim::assets::Assets::open();
        a.ensure().expect("fetching assets (needs PyPI)");
        a
    })
}

#[derive(Debug, Deserialize)]
pub struct OutputInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub max_abs: f64,
}

#[derive(Debug, Deserialize)]
pub struct Diff {
    pub name: String,
    pub max_abs_diff: f64,
    pub max_abs_reference: f64,
    /// How far ONNX Runtime's own graph optimisations move the reference's output.
    pub reference_noise: f64,
}

impl Diff {
    /// Difference relative to the output's scale (max |reference|, at least 1e-6).
    pub fn relative(&self) -> f64 {
        self.max_abs_diff / self.max_abs_reference.max(1e-6)
    }
}

#[derive(Debug, Deserialize)]
pub struct Check {
    pub checker: String,
    pub float_params: u64,
    #[serde(default)]
    pub outputs: Vec<OutputInfo>,
    #[serde(default)]
    pub diffs: Vec<Diff>,
}

/// onnx.checker (full) and an ONNX Runtime run of `model`, compared with `reference` when
/// given. `extra` takes the script's flags (`--input-shape x=...`, `--input x=file.npy`).
pub fn python_check(model: &Path, reference: Option<&Path>, extra: &[&str]) -> Check {
    let script = workspace().join("tests/py/check_model.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(model);
    if let Some(r) = reference {
        cmd.arg("--reference").arg(r);
    }
    cmd.args(extra);
    let out = cmd
        .output()
        .expect("running python3 (install it with the onnx and onnxruntime packages)");
    assert!(
        out.status.success(),
        "check_model.py failed on {}:\n{}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check_model.py output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn python() -> String {
    std::env::var("EDGESLIM_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Assert the checker passed and every output matches the reference within `rel` of its
/// scale — or, for models whose float noise is larger, within 1.5× the change ONNX Runtime's
/// own graph optimisations make to the reference (a rewrite that reorders float arithmetic,
/// such as BatchNorm folding, cannot be held to less than the engine's own reordering).
pub fn assert_equivalent(check: &Check, rel: f64) {
    assert_eq!(check.checker, "ok", "onnx.checker: {}", check.checker);
    assert!(!check.diffs.is_empty(), "no outputs compared");
    for d in &check.diffs {
        let allowed = (rel * d.max_abs_reference.max(1e-6)).max(1.5 * d.reference_noise);
        assert!(
            d.max_abs_diff <= allowed,
            "output {} differs: max abs diff {} vs scale {} (relative {}), allowed {allowed} \
             (ORT's own optimisation noise {})",
            d.name,
            d.max_abs_diff,
            d.max_abs_reference,
            d.relative(),
            d.reference_noise
        );
    }
}

pub mod boards;
pub mod browser;
pub mod engines;
pub mod gray;
pub mod live;
pub mod models;
