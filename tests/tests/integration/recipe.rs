//! `edgeslim run RECIPE.toml`: a model through several steps in one run folder, resumed from
//! state.json (finished steps skipped, a failed step and the ones after it run again), the
//! provenance of the final model listing every step, a tracker folder carried through.

use edgeslim_e2e::{run, run_ok, workspace};
use serde_json::Value;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn state(run_dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(run_dir.join("state.json")).unwrap()).unwrap()
}

fn recipe(dir: &Path, model: &Path, prune: &str) -> std::path::PathBuf {
    let p = dir.join("r.toml");
    let text = format!(
        r#"name = "t"
model = "{}"
input_shape = ["x=1,1,28,28"]
target = "rpi4"
output = "run"

[[step]]
kind = "optimize"

[[step]]
kind = "prune"
{prune}
runs = 0

[[step]]
kind = "eval"
task = "classify"
data = "mnist"

[[step]]
kind = "fit"
"#,
        model.display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_recipe_runs_end_to_end_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let src = workspace().join("models/mnist-cnn.onnx");
    // A bad setting in step 2: step 1 finishes and is kept, the run stops with the command's
    // own error.
    let r = recipe(dir.path(), &src, "ratio = 1.5");
    let out = run("edgeslim", &["run", s(&r)]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("--ratio 1.5"), "{}", out.stderr);
    assert!(
        out.stderr.contains("finished steps are kept"),
        "{}",
        out.stderr
    );
    let run_dir = dir.path().join("run");
    assert_eq!(state(&run_dir)["steps"].as_array().unwrap().len(), 1);

    // Fixed: step 1 is not run again, the rest runs.
    let r = recipe(dir.path(), &src, "ratio = 0.5");
    let out = run_ok("edgeslim", &["run", s(&r)]);
    assert!(
        out.stderr.contains("step 1/4 optimize: up to date"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("$ edgeslim compress prune"),
        "{}",
        out.stderr
    );
    let st = state(&run_dir);
    let steps = st["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    // Each step read what the one before wrote.
    assert_eq!(steps[1]["input_sha256"], steps[0]["output_sha256"]);
    let fit: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("04-fit/fit.json")).unwrap()).unwrap();
    assert_eq!(fit["fits"], true);
    let eval: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("03-eval/eval.json")).unwrap()).unwrap();
    assert!(eval["accuracy"].as_f64().unwrap_or(0.0) > 0.0, "{eval}");
    // The final model says where it came from: the optimize and prune steps, in order.
    let final_model = run_dir.join("02-prune/model.onnx");
    let info: Value =
        serde_json::from_str(&run_ok("edgeslim", &["inspect", s(&final_model), "--json"]).stdout)
            .unwrap();
    let history: Vec<&str> = info["provenance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    let n = history.len();
    assert!(n >= 2, "{history:?}");
    assert!(history[n - 2].starts_with("optimize "), "{history:?}");
    assert!(history[n - 1].starts_with("compress prune "), "{history:?}");

    // Again: nothing to do, nothing rewritten.
    let before = std::fs::metadata(&final_model).unwrap().modified().unwrap();
    let out = run_ok("edgeslim", &["run", s(&r)]);
    assert_eq!(
        out.stderr.matches("up to date").count(),
        4,
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::metadata(&final_model).unwrap().modified().unwrap(),
        before
    );
}

#[test]
fn a_tracker_folder_goes_through_a_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("t.toml");
    std::fs::write(
        &r,
        format!(
            "name = \"trk\"\nmodel = \"{}\"\ntarget = \"rpi4\"\noutput = \"run\"\n\n[[step]]\nkind = \"prune\"\nkeep_params = 0.25\ncriterion = \"bn\"\nruns = 0\n\n[[step]]\nkind = \"fit\"\n",
            workspace().join("models/siamese-tracker").display()
        ),
    )
    .unwrap();
    run_ok("edgeslim", &["run", s(&r)]);
    let pair = dir.path().join("run/01-prune/tracker");
    let p = edgeslim::prune::tracker::TrackerPair::load(&pair).unwrap();
    assert!(p.params() < 40369 / 4 + 1, "{}", p.params());
    let fit: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("run/02-fit/fit.json")).unwrap())
            .unwrap();
    assert_eq!(fit["models"].as_array().unwrap().len(), 2, "{fit}");
    // An unknown step kind names the kinds and the line; a file as the run folder is refused.
    std::fs::write(
        &r,
        "name = \"x\"\nmodel = \"m.onnx\"\n[[step]]\nkind = \"shrink\"\n",
    )
    .unwrap();
    let out = run("edgeslim", &["run", s(&r)]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("unknown variant `shrink`") && out.stderr.contains("(line 4)"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    let file = dir.path().join("a-file");
    std::fs::write(&file, "keep").unwrap();
    std::fs::write(
        &r,
        "name = \"x\"\nmodel = \"m.onnx\"\n[[step]]\nkind = \"fit\"\n",
    )
    .unwrap();
    let out = run("edgeslim", &["run", s(&r), "-o", s(&file)]);
    assert!(
        out.stderr.contains("exists and is not a folder"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    // A recipe without a model is refused before anything runs.
    std::fs::write(&r, "name = \"x\"\n[[step]]\nkind = \"fit\"\n").unwrap();
    let out = run("edgeslim", &["run", s(&r)]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("give exactly one of"), "{}", out.stderr);
}

/// The shipped recipes parse and name models that exist (a dry run prints every command).
#[test]
fn the_example_recipes_are_valid() {
    edgeslim_e2e::assets();
    let dir = tempfile::tempdir().unwrap();
    for name in ["mnist-cnn-rpi4", "ppocr-det-rpi4", "tracker-rpi4"] {
        let r = workspace().join(format!("examples/recipes/{name}.toml"));
        let out = dir.path().join(name);
        let o = run_ok("edgeslim", &["run", s(&r), "--dry-run", "-o", s(&out)]);
        let lines: Vec<&str> = o.stdout.lines().collect();
        assert!(lines.len() >= 4, "{name}: {}", o.stdout);
        assert!(
            lines.last().unwrap().contains("edgeslim bundle"),
            "{name}: {}",
            o.stdout
        );
        // Nothing ran: no step folders.
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "{name}");
    }
}
