//! `edgeslim run RECIPE.toml`: the whole pipeline from one file (nyuntam-style). A recipe names
//! a model and a list of steps (optimize, prune, lowrank, quantize, finetune, eval, bench, fit,
//! bundle); each step runs as the `edgeslim` command of the same name on the previous step's
//! model, its settings turned into that command's flags, its outputs in its own folder of the
//! run folder. `state.json` records each finished step (its command and the sha256 of what it
//! read and wrote), so a second run skips what is done and an interrupted or failed run resumes
//! at the step that did not finish. Every step's errors are the command's own.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim run examples/recipes/mnist-cnn-rpi4.toml\n  edgeslim run examples/recipes/ppocr-cls-rpi4.toml -o runs/cls   # run folder other than the recipe's\n  edgeslim run recipe.toml --fresh                                  # ignore state.json, run every step\n\nRecipe (TOML):\n  name = \"cls\"\n  model = \"cls.onnx\"            # relative to the recipe; or zoo = \"efficientnet-lite0\"\n  input_shape = [\"x=1,3,48,192\"]  # passed to every step that takes --input-shape\n  target = \"rpi4\"               # for fit and bundle\n  output = \"runs/cls\"           # the run folder\n  [[step]]\n  kind = \"optimize\"\n  [[step]]\n  kind = \"prune\"                # optimize prune lowrank quantize finetune eval bench fit bundle\n  ratio = 0.3                   # any flag of the command: key = value, true for a switch\n  calib = \"ppocr-text\"\n\nSteps run as `edgeslim <command>` on the previous step's model; state.json makes reruns resume."
)]
pub struct Args {
    /// The recipe (TOML).
    recipe: PathBuf,
    /// The run folder (default: the recipe's `output`, else runs/NAME).
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Run every step again, whatever state.json says.
    #[arg(long)]
    fresh: bool,
    /// Print the commands the steps would run, run nothing (a zoo model is not imported).
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipe {
    name: String,
    model: Option<PathBuf>,
    zoo: Option<String>,
    /// A file of the asset cache (`models/ch_PP-OCRv4_det_infer.onnx`), fetched if missing.
    asset: Option<String>,
    #[serde(default)]
    input_shape: Vec<String>,
    target: Option<String>,
    output: Option<PathBuf>,
    #[serde(rename = "step")]
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
struct Step {
    kind: Kind,
    #[serde(flatten)]
    settings: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Optimize,
    Prune,
    Lowrank,
    Quantize,
    Finetune,
    Eval,
    Bench,
    Fit,
    Bundle,
}

impl Kind {
    fn command(self) -> &'static [&'static str] {
        match self {
            Kind::Optimize => &["optimize"],
            Kind::Prune => &["compress", "prune"],
            Kind::Lowrank => &["compress", "lowrank"],
            Kind::Quantize => &["compress", "quantize"],
            Kind::Finetune => &["finetune"],
            Kind::Eval => &["eval"],
            Kind::Bench => &["bench"],
            Kind::Fit => &["fit"],
            Kind::Bundle => &["bundle"],
        }
    }

    /// Writes a model that the next step takes.
    fn makes_model(self) -> bool {
        matches!(
            self,
            Kind::Optimize | Kind::Prune | Kind::Lowrank | Kind::Quantize | Kind::Finetune
        )
    }

    fn takes_input_shape(self) -> bool {
        matches!(
            self,
            Kind::Optimize
                | Kind::Prune
                | Kind::Lowrank
                | Kind::Quantize
                | Kind::Bench
                | Kind::Fit
                | Kind::Bundle
        )
    }

    fn writes_report_dir(self) -> bool {
        matches!(self, Kind::Prune | Kind::Lowrank | Kind::Quantize)
    }

    /// The recipe's spelling (`kind = "..."`), for folder names and messages.
    fn name(self) -> &'static str {
        match self {
            Kind::Optimize => "optimize",
            Kind::Prune => "prune",
            Kind::Lowrank => "lowrank",
            Kind::Quantize => "quantize",
            Kind::Finetune => "finetune",
            Kind::Eval => "eval",
            Kind::Bench => "bench",
            Kind::Fit => "fit",
            Kind::Bundle => "bundle",
        }
    }
}

/// What state.json remembers of a finished step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Done {
    step: usize,
    kind: Kind,
    args: Vec<String>,
    input_sha256: String,
    /// The model it wrote (model steps), for the next step and for the skip check.
    output_sha256: Option<String>,
    seconds: f64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// sha256 of the recipe text of the last run (for people; steps are checked one by one).
    recipe: String,
    steps: Vec<Done>,
}

/// `key = value` → `--key value` (underscores become dashes; `true` is a switch, `false` is
/// left out, arrays repeat the flag).
fn flags(settings: &BTreeMap<String, toml::Value>, step: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (k, v) in settings {
        let flag = format!("--{}", k.replace('_', "-"));
        let scalar = |v: &toml::Value| -> Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => bail!(
                    "step {step}: {k} = {other}: give a string, a number, true, or a list of them"
                ),
            })
        };
        match v {
            toml::Value::Boolean(true) => out.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for i in items {
                    out.push(flag.clone());
                    out.push(scalar(i)?);
                }
            }
            other => {
                out.push(flag);
                out.push(scalar(other)?);
            }
        }
    }
    Ok(out)
}

/// sha256 of a model file, or of a tracker folder's two graphs.
fn sha256(p: &Path) -> Result<String> {
    let file = |p: &Path| -> Result<String> {
        Ok(edgeslim::assets::file_sha256(p)
            .with_context(|| format!("reading {}", p.display()))?
            .1)
    };
    if p.is_dir() {
        let (t, s) = edgeslim_runtime::track::tracker::tracker_files(p)?;
        let both = format!("{}{}", file(&t)?, file(&s)?);
        return Ok(edgeslim_runtime::fsutil::sha256_hex(both.as_bytes()));
    }
    file(p)
}

/// The finished steps of an earlier run (each is checked again before it is skipped).
fn load_state(path: &Path) -> State {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<State>(&b).ok())
        .unwrap_or_default()
}

fn save_state(path: &Path, state: &State) -> Result<()> {
    edgeslim_runtime::fsutil::write_atomic(path, &serde_json::to_vec_pretty(state)?)?;
    Ok(())
}

/// The recipe's model: a file (relative to the recipe) or a zoo import into the run folder.
fn source_model(
    r: &Recipe,
    recipe_dir: &Path,
    run_dir: &Path,
    exe: &Path,
    dry_run: bool,
) -> Result<PathBuf> {
    match (&r.model, &r.zoo, &r.asset) {
        (None, None, Some(rel)) => {
            let assets = edgeslim::assets::Assets::open();
            assets.ensure()?;
            let p = assets.file(rel);
            if !p.exists() {
                bail!("asset {rel}: not in the cache ({}); `edgeslim assets path` lists it", p.display());
            }
            Ok(p)
        }
        (Some(m), None, None) => {
            let p = if m.is_absolute() {
                m.clone()
            } else {
                recipe_dir.join(m)
            };
            if !p.exists() {
                bail!("model {}: not found", p.display());
            }
            Ok(p)
        }
        (None, Some(name), None) => {
            let dir = run_dir.join("00-zoo");
            let model = dir.join("model.onnx");
            if !model.is_file() && !dry_run {
                let args = ["zoo", "import", name, "-o", &dir.display().to_string()].map(String::from);
                run_command(exe, recipe_dir, &args)?;
            }
            Ok(model)
        }
        _ => bail!(
            "give exactly one of `model = \"FILE.onnx\"` (or a tracker folder), `zoo = \"NAME\"` and `asset = \"models/FILE.onnx\"`"
        ),
    }
}

/// Run `edgeslim ARGS` in `cwd` (the recipe's folder: paths in a recipe are relative to it).
fn run_command(exe: &Path, cwd: &Path, args: &[String]) -> Result<()> {
    eprintln!("$ edgeslim {}", args.join(" "));
    let status = Command::new(exe)
        .current_dir(cwd)
        .args(args)
        .status()
        .context("starting edgeslim")?;
    if status.code() == Some(130) {
        // The child already cleaned up; the run resumes at this step next time.
        std::process::exit(130);
    }
    if !status.success() {
        bail!(
            "`edgeslim {}` failed (exit {}); fix the recipe and run again: finished steps are kept",
            args.join(" "),
            status
                .code()
                .map_or("signal".to_string(), |c| c.to_string())
        );
    }
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.recipe)
        .with_context(|| format!("reading {}", a.recipe.display()))?;
    let recipe: Recipe = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}",
            a.recipe.display(),
            edgeslim::train::recipe::toml_error_line(&e, &text)
        )
    })?;
    if recipe.steps.is_empty() {
        bail!("{}: no [[step]]", a.recipe.display());
    }
    let recipe_dir = a
        .recipe
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .canonicalize()
        .with_context(|| format!("{}: its folder", a.recipe.display()))?;
    let run_dir = a
        .output
        .clone()
        .or_else(|| recipe.output.as_ref().map(|o| recipe_dir.join(o)))
        .unwrap_or_else(|| PathBuf::from("runs").join(&recipe.name));
    if run_dir.exists() && !run_dir.is_dir() {
        bail!(
            "-o {}: exists and is not a folder (a run writes its steps into a folder)",
            run_dir.display()
        );
    }
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    // Absolute from here on: the steps run in the recipe's folder.
    let run_dir = run_dir
        .canonicalize()
        .with_context(|| run_dir.display().to_string())?;
    let exe = std::env::current_exe().context("locating edgeslim")?;
    let state_path = run_dir.join("state.json");
    let recipe_sha = edgeslim_runtime::fsutil::sha256_hex(text.as_bytes());
    let mut state = if a.fresh {
        State::default()
    } else {
        load_state(&state_path)
    };
    state.recipe = recipe_sha.clone();
    let original = source_model(&recipe, &recipe_dir, &run_dir, &exe, a.dry_run)?;
    let original = original.canonicalize().unwrap_or(original);
    let mut model = original.clone();
    let total = recipe.steps.len();
    for (i, step) in recipe.steps.iter().enumerate() {
        let n = i + 1;
        let dir = run_dir.join(format!("{n:02}-{}", step.kind.name()));
        if !a.dry_run {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // A tracker pair stays a folder (template.onnx + search.onnx) from step to step.
        let out_model = if model.is_dir() {
            dir.join("tracker")
        } else {
            dir.join("model.onnx")
        };
        let mut args: Vec<String> = step.kind.command().iter().map(|s| s.to_string()).collect();
        match step.kind {
            Kind::Bench => {
                args.push(original.display().to_string());
                args.push(model.display().to_string());
            }
            _ => args.push(model.display().to_string()),
        }
        if step.kind.makes_model() {
            args.extend(["-o".into(), out_model.display().to_string()]);
        }
        if step.kind.writes_report_dir() {
            args.extend(["--report".into(), dir.join("report").display().to_string()]);
        }
        if matches!(step.kind, Kind::Fit | Kind::Bundle) && !step.settings.contains_key("target") {
            let t = recipe.target.as_ref().with_context(|| {
                format!(
                    "step {n} ({}): needs a target: `target = \"rpi4\"` in the recipe",
                    step.kind.name()
                )
            })?;
            args.extend(["--target".into(), t.clone()]);
        }
        if step.kind == Kind::Bundle {
            args.extend(["-o".into(), dir.join("bundle.tar.gz").display().to_string()]);
        }
        if matches!(
            step.kind,
            Kind::Eval | Kind::Bench | Kind::Fit | Kind::Finetune | Kind::Optimize
        ) {
            args.extend([
                "--json".into(),
                dir.join(format!("{}.json", step.kind.name()))
                    .display()
                    .to_string(),
            ]);
        }
        if step.kind.takes_input_shape() {
            for s in &recipe.input_shape {
                args.extend(["--input-shape".into(), s.clone()]);
            }
        }
        args.extend(flags(&step.settings, n)?);
        if a.dry_run {
            println!("step {n}/{total}: edgeslim {}", args.join(" "));
            if step.kind.makes_model() {
                model = out_model;
            }
            continue;
        }
        let input_sha256 = sha256(&model)?;
        let done = state.steps.iter().find(|d| d.step == n).cloned();
        let up_to_date = done.as_ref().is_some_and(|d| {
            d.kind == step.kind
                && d.args == args
                && d.input_sha256 == input_sha256
                && match &d.output_sha256 {
                    Some(h) => sha256(&out_model).ok().as_ref() == Some(h),
                    None => true,
                }
        });
        if up_to_date {
            eprintln!(
                "step {n}/{total} {}: up to date ({})",
                step.kind.name(),
                dir.display()
            );
        } else {
            // This step and every later one run again.
            state.steps.retain(|d| d.step < n);
            save_state(&state_path, &state)?;
            eprintln!("step {n}/{total} {}", step.kind.name());
            let start = std::time::Instant::now();
            run_command(&exe, &recipe_dir, &args)?;
            let output_sha256 = if step.kind.makes_model() {
                Some(sha256(&out_model)?)
            } else {
                None
            };
            state.steps.push(Done {
                step: n,
                kind: step.kind,
                args: args.clone(),
                input_sha256,
                output_sha256,
                seconds: start.elapsed().as_secs_f64(),
            });
            save_state(&state_path, &state)?;
        }
        if step.kind.makes_model() {
            model = out_model;
        }
    }
    if a.dry_run {
        return Ok(());
    }
    println!(
        "{}: {} steps done in {}; final model {}",
        recipe.name,
        total,
        run_dir.display(),
        model.display()
    );
    Ok(())
}
