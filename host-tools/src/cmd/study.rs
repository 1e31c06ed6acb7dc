//! `edgeslim study MODEL --data SPEC -o DIR`: every method at every budget, measured the same
//! way, with a Pareto chart; and `edgeslim compress auto`, which runs a study and keeps the
//! fastest variant within a quality drop.

use anyhow::{bail, Context, Result};
use edgeslim::boards::profile::find;
use edgeslim::compress::study::budget::BudgetBy;
use edgeslim::compress::study::plan::{parse_methods, DEFAULT_BUDGETS, DEFAULT_METHODS};
use edgeslim::compress::study::recover::{Recover, RecoverSettings};
use edgeslim::compress::study::{self, tracker, Metric, Study, StudyConfig, StudyData};
use edgeslim::data::calib::CalibSpec;
use edgeslim::prune::tracker::is_tracker_dir;
use edgeslim::train::interrupt;
use edgeslim_runtime::fsutil::write_atomic;
use edgeslim_runtime::InputShape;
use std::path::{Path, PathBuf};

/// What a study runs and how it judges; shared by `study` and `compress auto`.
#[derive(clap::Args, Clone)]
pub struct StudyArgs {
    /// The ONNX model, or a tracker folder (template.onnx + search.onnx); never overwritten.
    pub model: PathBuf,
    /// Shape of the model input, NAME=D0,D1,... (when the model leaves it open).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    pub input_shapes: Vec<InputShape>,
    /// Calibration and held-out data: ppocr-text, ppocr-scenes (text detectors), mnist,
    /// animal-mnist, images:DIR, npy:FILE. For a tracker folder: tracking:SEED (benchmark
    /// sequences generated into the study folder) or a folder of OTB-layout sequences.
    #[arg(long, value_name = "SPEC")]
    pub data: String,
    /// Use the data's labels: accuracy as the metric and `--recover finetune|glora` possible.
    /// Without, every figure is against the original's outputs (no annotation needed).
    #[arg(long)]
    pub labels: bool,
    /// Quality figure the drop is measured in (default: accuracy with --labels, agreement
    /// without; box-f1 for text-detection maps (boxes against the original's), cosine for
    /// other dense outputs; auc, the default, for a tracker folder).
    #[arg(long, value_enum)]
    pub metric: Option<Metric>,
    /// Board profile the thread count comes from (`edgeslim targets`), or `host`.
    #[arg(long, default_value = "host")]
    pub target: String,
    /// Threads for the benchmark (default: the target's cores, at most this machine's).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Methods, comma-separated; chains with '+': optimize (graph passes only), prune,
    /// prune-global, lowrank-weight, lowrank-feature, lowrank-late (the last layers only, at
    /// half their weights, as many as the budget needs, as LLM-ROM), lowrank-search (ranks by
    /// measured sensitivity, within one point), fp16, int8 (QOperator, tract's integer kernels),
    /// int8-qdq [default: optimize, prune, prune-global, lowrank-weight, lowrank-feature,
    /// lowrank-search, fp16, int8, prune+int8; for a tracker: optimize, prune, fp16,
    /// prune+fp16].
    #[arg(long)]
    pub methods: Option<String>,
    /// Fractions of the original's parameters (or MACs, --budget-by) kept, for the methods
    /// that change the architecture.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_BUDGETS)]
    pub budgets: Vec<f64>,
    /// What the budgets are fractions of: params, or macs (one inference at the input shape).
    #[arg(long, value_enum, default_value = "params")]
    pub budget_by: BudgetBy,
    /// Recovery after pruning and low rank: none, finetune (labels; a tracker fine-tunes on
    /// generated tracking pairs), distill (from the original, no labels), glora (labels:
    /// GLoRA adapters trained and merged back, the compressed graph unchanged).
    #[arg(long, value_enum, default_value = "none")]
    pub recover: Recover,
    /// Recovery epochs.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Recovery learning rate (AdamW, cosine schedule).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use at most this many calibration samples (also the recovery training set).
    #[arg(long, value_name = "N")]
    pub calib_samples: Option<usize>,
    /// Timed runs per model in the interleaved benchmark.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// Start over instead of resuming the study already in the folder.
    #[arg(long)]
    pub fresh: bool,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
edgeslim study models/mnist-cnn.onnx --data mnist --labels -o study-cnn\n  \
edgeslim study cls.onnx --input-shape x=1,3,48,192 --data ppocr-text --recover distill --target rpi4 -o study-cls\n  \
edgeslim study m.onnx --data images:photos --methods prune,prune+int8 --budgets 0.5 -o s\n\n\
Writes DIR/study.json (after every finished row: run the same command again to resume),\n\
DIR/index.html and DIR/variants/*.onnx. Exit codes: 0 done, 1 error, 2 usage, 130 interrupted.")]
pub struct Args {
    #[command(flatten)]
    pub study: StudyArgs,
    /// The study folder.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

/// Threads for the target: its cores (or `host`: this machine's), capped at this machine's,
/// with a note when capped.
fn threads_for(a: &StudyArgs) -> Result<(String, usize, Option<String>)> {
    let host = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.target == "host" {
        return Ok(("host".into(), a.threads.unwrap_or(host).max(1), None));
    }
    let profile = find(&a.target)?;
    let want = a
        .threads
        .or(profile.cores.map(|c| c as usize))
        .unwrap_or(1)
        .max(1);
    if want > host {
        let note = format!(
            "{} has {want} cores; this machine has {host}, so the benchmark ran {host} threads",
            profile.name
        );
        return Ok((profile.name, host, Some(note)));
    }
    Ok((profile.name, want, None))
}

pub fn config(a: &StudyArgs, out: &Path) -> Result<StudyConfig> {
    let (target, threads, threads_note) = threads_for(a)?;
    let tracker = is_tracker_dir(&a.model);
    let (data, default_methods) = if tracker {
        let seqs = a.data.parse().context("--data")?;
        (StudyData::Sequences(seqs), tracker::DEFAULT_METHODS)
    } else {
        let spec: CalibSpec = a.data.parse().context("--data")?;
        (StudyData::Samples(spec), DEFAULT_METHODS)
    };
    if a.recover.needs_labels() && !a.labels && !tracker {
        bail!(
            "--recover {} trains on labels: add --labels, or use --recover distill",
            a.recover.as_str()
        );
    }
    Ok(StudyConfig {
        model: a.model.clone(),
        input_shapes: a.input_shapes.clone(),
        data,
        labels: a.labels,
        metric: a.metric,
        methods: parse_methods(a.methods.as_deref().unwrap_or(default_methods))?,
        budgets: a.budgets.clone(),
        budget_by: a.budget_by,
        recover: RecoverSettings {
            mode: a.recover,
            epochs: a.epochs,
            lr: a.lr,
            seed: a.seed,
            threads: 0,
            progress: !edgeslim_runtime::process::quiet(),
        },
        calib_samples: a.calib_samples,
        target,
        threads,
        threads_note,
        bench_runs: a.runs,
        out: out.to_path_buf(),
        fresh: a.fresh,
    })
}

/// Run the study into `out` and write its page; exit 130 when interrupted.
pub fn run_study(a: &StudyArgs, out: &Path) -> Result<Study> {
    edgeslim_runtime::fsutil::ensure_not_input(out, &[&a.model])?;
    if out.exists() && !out.is_dir() {
        bail!(
            "{}: is not a folder (a file or a device); the study needs a folder",
            out.display()
        );
    }
    interrupt::install();
    let cfg = config(a, out)?;
    let say = |line: &str| {
        if !edgeslim_runtime::process::quiet() {
            eprintln!("edgeslim study: {line}");
        }
    };
    let study = match study::run(&cfg, &say) {
        Ok(s) => s,
        Err(e) if interrupt::requested() => {
            eprintln!("edgeslim: {e}");
            std::process::exit(130);
        }
        Err(e) => return Err(e.into()),
    };
    edgeslim::report::study::write_study_page(&study, out)?;
    Ok(study)
}

pub fn run(a: Args) -> Result<()> {
    let study = run_study(&a.study, &a.output)?;
    if edgeslim_runtime::json_out::emit(&a.json.dest, &study)? {
        return Ok(());
    }
    print_table(&study);
    println!("{}", edgeslim::report::study::headline(&study));
    println!("report: {}", a.output.join("index.html").display());
    Ok(())
}

fn print_table(s: &Study) {
    let metric = s.metric;
    let ms = |l: Option<&edgeslim::compress::study::types::Latency>| {
        l.map_or("-".to_string(), |l| format!("{:.3}", l.p50_ms))
    };
    println!(
        "{:<24} {:>10} {:>9} {:>8} {:>8} {:>9} {:>7}",
        "variant",
        "params",
        "p50 ms",
        "vs tract",
        "vs ORT",
        metric.as_str(),
        "pareto"
    );
    let base = s
        .reference_points()
        .map_or("-".into(), |q| format!("{q:.2}"));
    println!(
        "{:<24} {:>10} {:>9} {:>8} {:>8} {:>9}",
        "original (tract)",
        s.reference.params,
        ms(s.reference.tract.as_ref()),
        "",
        "",
        base
    );
    println!(
        "{:<24} {:>10} {:>9} {:>8} {:>8} {:>9}",
        "original (ORT)",
        s.reference.params,
        ms(s.reference.ort.as_ref()),
        "",
        "",
        base
    );
    for r in &s.rows {
        let x = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}x"));
        println!(
            "{:<24} {:>10} {:>9} {:>8} {:>8} {:>9} {:>7}",
            r.id,
            r.params,
            ms(r.latency.as_ref()),
            x(r.speedup_vs_tract),
            x(r.speedup_vs_ort),
            r.quality
                .points(metric)
                .map_or("-".into(), |q| format!("{q:.2}")),
            if r.pareto { "*" } else { "" }
        );
    }
    for k in &s.skipped {
        println!("{:<24} not built: {}", k.id, k.reason);
    }
}

/// `edgeslim compress auto`: a study, then the fastest variant within `--max-drop`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
edgeslim compress auto models/mnist-cnn.onnx --data mnist --labels --max-drop 1 -o cnn-auto.onnx\n  \
edgeslim compress auto cls.onnx --input-shape x=1,3,48,192 --data ppocr-text --recover distill --target rpi4 -o cls-auto.onnx\n\n\
The study behind the choice stays in --study DIR (default: OUT.study/), so a second run with\n\
another --max-drop picks again without rebuilding anything.")]
pub struct AutoArgs {
    #[command(flatten)]
    pub study: StudyArgs,
    /// The largest quality drop allowed, in points of the metric (1.0 = one point).
    #[arg(long, default_value_t = 1.0)]
    pub max_drop: f64,
    /// Where the chosen model goes.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The study folder (default: OUT.study next to the output).
    #[arg(long, value_name = "DIR")]
    pub study_dir: Option<PathBuf>,
}

pub fn auto(a: AutoArgs) -> Result<()> {
    if a.max_drop.is_nan() || a.max_drop < 0.0 {
        bail!("--max-drop {}: a drop in points, 0 or more", a.max_drop);
    }
    edgeslim_runtime::fsutil::ensure_not_input(&a.output, &[&a.study.model])?;
    // Refused before the study runs, not minutes later when the pick is copied.
    if is_tracker_dir(&a.study.model) {
        if a.output.exists() && !a.output.is_dir() {
            bail!(
                "{}: a tracker's pick is a folder (template.onnx + search.onnx); this is a file",
                a.output.display()
            );
        }
    } else {
        edgeslim_runtime::fsutil::ensure_replaceable(&a.output)?;
    }
    edgeslim_runtime::fsutil::ensure_replaceable(&a.output.with_extension("md"))?;
    let dir = a
        .study_dir
        .clone()
        .unwrap_or_else(|| a.output.with_extension("study"));
    let study = run_study(&a.study, &dir)?;
    let Some(row) = study.fastest_within(a.max_drop) else {
        bail!(
            "no variant of {} stays within {} point(s) of the original's {} ({}); the study is in \
             {}",
            study.model,
            a.max_drop,
            study.metric.as_str(),
            study
                .reference_points()
                .map_or("-".into(), |q| format!("{q:.2}")),
            dir.join("index.html").display()
        );
    };
    copy_pick(
        &dir.join(&row.file),
        &a.output,
        is_tracker_dir(&a.study.model),
    )?;
    let card = auto_card(&study, row, a.max_drop, &dir);
    write_atomic(&a.output.with_extension("md"), card.as_bytes())?;
    println!(
        "{} -> {}: {} ({} the original's speed on tract, {} on ONNX Runtime; {} {:.2}, \
         original {:.2})",
        study.model,
        a.output.display(),
        row.id,
        row.speedup_vs_tract
            .map_or("-".into(), |v| format!("{v:.2}x")),
        row.speedup_vs_ort
            .map_or("-".into(), |v| format!("{v:.2}x")),
        study.metric.as_str(),
        row.quality.points(study.metric).unwrap_or(f64::NAN),
        study.reference_points().unwrap_or(f64::NAN),
    );
    println!("card: {}", a.output.with_extension("md").display());
    Ok(())
}

/// Copy the chosen variant to `output`: the file, or for a tracker the pair (its folder's
/// two graphs, the pair record written last).
fn copy_pick(file: &Path, output: &Path, pair: bool) -> Result<()> {
    let read = |p: &Path| {
        std::fs::read(p).with_context(|| format!("reading the chosen variant {}", p.display()))
    };
    if !pair {
        return Ok(write_atomic(output, &read(file)?)?);
    }
    let from = file.parent().unwrap_or(file);
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    edgeslim_runtime::track::pair_manifest::begin_write(output)?;
    for name in ["template.onnx", "search.onnx"] {
        write_atomic(&output.join(name), &read(&from.join(name))?)?;
    }
    edgeslim_runtime::track::pair_manifest::finish_write(output)?;
    Ok(())
}

/// The model card of an automatic pick: what was chosen, against what, and how.
fn auto_card(s: &Study, r: &study::Row, max_drop: f64, dir: &Path) -> String {
    let q = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let lat =
        |l: Option<&study::types::Latency>| l.map_or("-".into(), |l| format!("{:.3} ms", l.p50_ms));
    format!(
        "# {id}: chosen by `edgeslim compress auto`\n\n\
         - Source model: `{model}` (sha256 {sha})\n\
         - Rule: the fastest of {n} variants (tract p50 at {threads} thread(s), target `{target}`) \
         whose {metric} is at most {max_drop} point(s) below the original's\n\
         - Method: {method}{budget}; {settings}\n\
         - {metric}: {qa} (original {q0}); drop {drop} points on {samples} held-out samples of \
         `{data}` ({split})\n\
         - Latency p50: {l} (original: {l0} on tract, {lo} on ONNX Runtime); speed-up {st} vs \
         tract, {so} vs ONNX Runtime\n\
         - Parameters: {p} (original {p0}); file {fb} bytes\n\
         - Recovery: {rec}\n\
         - tract vs ONNX Runtime on this model: {eng}\n\
         - The whole study: `{dir}/index.html`\n",
        id = r.id,
        model = s.model,
        sha = s.model_sha256,
        n = s.rows.len(),
        threads = s.threads,
        target = s.target,
        metric = s.metric.as_str(),
        method = r.method.name(),
        budget = r
            .budget
            .map(|b| format!(" at {b} of the parameters"))
            .unwrap_or_default(),
        settings = r.settings.join("; "),
        qa = q(r.quality.points(s.metric)),
        q0 = q(s.reference_points()),
        drop = q(r.drop_points),
        samples = s.held_out_samples,
        data = s.data,
        split = s.split,
        l = lat(r.latency.as_ref()),
        l0 = lat(s.reference.tract.as_ref()),
        lo = lat(s.reference.ort.as_ref()),
        st = r
            .speedup_vs_tract
            .map_or("-".into(), |v| format!("{v:.2}×")),
        so = r.speedup_vs_ort.map_or("-".into(), |v| format!("{v:.2}×")),
        p = r.params,
        p0 = s.reference.params,
        fb = r.file_bytes,
        rec = r
            .recovery
            .as_ref()
            .map(|f| format!(
                "{}, {} epochs, {:.0} s",
                f.mode.as_str(),
                f.epochs,
                f.seconds
            ))
            .unwrap_or_else(|| "none".into()),
        eng = r
            .engines
            .max_rel_diff
            .map(|d| format!("largest relative output difference {d:.1e}"))
            .or_else(|| r.engines.error.clone())
            .unwrap_or_default(),
        dir = dir.display(),
    )
}
