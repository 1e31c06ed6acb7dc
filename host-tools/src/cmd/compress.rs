//! `edgeslim compress METHOD MODEL ... -o OUT.onnx`: one subcommand per compression method.
//! Each writes a new model (never over its input) and, with `--report DIR`, an HTML page and
//! the JSON behind it.
//!
//! `prune` lives in `cmd/prune.rs` (the pruning engineer's file).

use anyhow::{bail, Result};
use edgeslim::compress::pipeline::{self, Job, MethodReport};
use edgeslim::data::calib::CalibSpec;
use edgeslim::lowrank::report::CompressJob;
use edgeslim::lowrank::{CompressOptions, Method, RankRule};
use edgeslim_runtime::InputShape;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    method: CompressMethod,
}

#[derive(clap::Subcommand)]
enum CompressMethod {
    Lowrank(LowrankArgs),
    Quantize(QuantizeArgs),
    Prune(super::prune::PruneArgs),
    /// Run a study and keep the fastest variant within --max-drop points of the original.
    Auto(super::study::AutoArgs),
    VitSlim(super::vit_slim::VitSlimArgs),
}

pub fn run(a: Args) -> Result<()> {
    match a.method {
        CompressMethod::Lowrank(a) => lowrank(a),
        CompressMethod::Quantize(a) => quantize(a),
        // A tracker directory is pruned as a pair (template + search graphs).
        CompressMethod::Prune(a) if edgeslim::prune::tracker::is_tracker_dir(&a.model) => {
            super::prune_tracker::run(&a)
        }
        CompressMethod::Prune(a) => super::prune::run(a),
        CompressMethod::Auto(a) => super::study::auto(a),
        CompressMethod::VitSlim(a) => super::vit_slim::run(a),
    }
}

/// Low-rank decomposition of Linear-like layers (Gemm, MatMul with a constant weight, Conv
/// with group = 1): weight space (truncated SVD) or feature space (PCA of calibrated outputs,
/// sequential calibration, centred bias). Conv k×k becomes k×k to r channels + 1×1.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
edgeslim compress lowrank cls.onnx --input-shape x=1,3,48,192 --method weight --budget 0.5 --calib ppocr-text -o w50.onnx --report rep\n  \
edgeslim compress lowrank cls.onnx --input-shape x=1,3,48,192 --method feature --budget 0.5 --calib ppocr-text -o f50.onnx\n  \
edgeslim compress lowrank mnist-cnn.onnx --method feature --calib mnist --search --tolerance 0.01 -o s.onnx\n\n\
budget = fraction of each layer's weights kept: r = floor(κ·budget), κ = d_in·d_out/(d_in+d_out);\n\
a layer whose r would reach κ stays dense.")]
pub struct LowrankArgs {
    /// The ONNX model (never overwritten).
    model: PathBuf,
    #[arg(long, value_enum)]
    method: Method,
    /// Fraction of each decomposed layer's weights kept, in (0, 1].
    #[arg(long, value_name = "F")]
    budget: Option<f64>,
    /// Instead of a budget: this rank for every layer (capped at full rank, even when that
    /// makes a layer bigger). For checks: at full rank the model's outputs do not change.
    #[arg(long, value_name = "R", conflicts_with = "budget")]
    rank: Option<usize>,
    /// Only layers whose name or output tensor matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    layers: Option<regex::Regex>,
    /// Calibration data (needed by --method feature; also the default evaluation data).
    #[arg(long, value_name = "SPEC")]
    calib: Option<CalibSpec>,
    /// Use at most this many calibration samples.
    #[arg(long, value_name = "N")]
    calib_samples: Option<usize>,
    /// Surgical rank search: per layer, from the last, the smallest rank keeping the task
    /// metric within --tolerance of the original on the search split.
    #[arg(long, requires = "tolerance")]
    search: bool,
    /// Allowed drop of the task metric for --search (0.01 = one percentage point).
    #[arg(long, value_name = "T")]
    tolerance: Option<f64>,
    /// Data for the task metric (search split and held-out report); default: --calib.
    #[arg(long, value_name = "SPEC")]
    eval: Option<CalibSpec>,
    /// Shape of the model input, NAME=D0,D1,..., for calibration, evaluation and the
    /// benchmark (needed when the model leaves it open). The output model keeps the input as
    /// declared (a dynamic input stays dynamic; `edgeslim optimize --input-shape` fixes it).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<InputShape>,
    /// Where to write the compressed model.
    #[arg(short, long)]
    output: PathBuf,
    /// Write DIR/index.html and DIR/report.json.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Timed tract runs per model for the latency comparison (0 skips it).
    #[arg(long, default_value_t = 50)]
    bench_runs: usize,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

fn lowrank(a: LowrankArgs) -> Result<()> {
    let rule = match (a.budget, a.rank, a.search) {
        (Some(b), _, _) => RankRule::Budget(b),
        (None, Some(r), _) => RankRule::Fixed(r),
        // The search picks ranks itself; the rule is only recorded.
        (None, None, true) => RankRule::Budget(1.0),
        (None, None, false) => bail!("give --budget F (or --rank R, or --search --tolerance T)"),
    };
    let job = CompressJob {
        model: a.model.clone(),
        output: a.output.clone(),
        input_shapes: a.input_shapes.clone(),
        options: CompressOptions {
            method: a.method,
            rule,
            layers: a.layers,
        },
        calib: a.calib,
        calib_samples: a.calib_samples,
        search_tolerance: if a.search { a.tolerance } else { None },
        eval: a.eval,
        bench_runs: a.bench_runs,
    };
    let outcome = pipeline::run(&Job::Lowrank(job), &|_| {})?;
    if let Some(dir) = &a.report {
        edgeslim::report::write::outcome(&outcome, dir)?;
    }
    let MethodReport::Lowrank(r) = outcome.report else {
        bail!("the low-rank job returned another method's report");
    };
    if edgeslim_runtime::json_out::emit(&a.json.dest, &r)? {
        return Ok(());
    }
    for w in &r.warnings {
        eprintln!("edgeslim: warning: {w}");
    }
    let decomposed = r.layers.iter().filter(|l| l.rank.is_some()).count();
    println!(
        "{} -> {}  [{} space, {} of {} layers decomposed, {:.1} s]",
        r.model,
        r.output,
        r.method.as_str(),
        decomposed,
        r.layers.len(),
        r.compress_seconds
    );
    println!(
        "  params {} -> {}   MACs {} -> {}",
        r.before.params, r.after.params, r.before.macs, r.after.macs
    );
    if let (Some(b), Some(c)) = (r.before.latency_p50_ms, r.after.latency_p50_ms) {
        println!("  tract p50 latency {b:.3} ms -> {c:.3} ms ({:.2}×)", c / b);
    }
    if let (Some(f), Some(h)) = (&r.fidelity, &r.held_out) {
        print!(
            "  held out ({h}): top-1 agreement {:.1}%, mean cosine {:.5}",
            100.0 * f.top1_agreement,
            f.mean_cosine
        );
        if let (Some(a0), Some(a1)) = (f.accuracy_reference, f.accuracy) {
            print!(", accuracy {:.1}% -> {:.1}%", 100.0 * a0, 100.0 * a1);
        }
        println!();
    }
    if let Some(dir) = &a.report {
        println!("report: {}", dir.join("index.html").display());
    }
    Ok(())
}

/// fp16 weights (f32 compute, or full f16 compute for ARMv8.2+ boards) or int8 QDQ with
/// calibrated activation ranges. The report states whether tract runs integer kernels and the
/// measured latency next to the original.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
edgeslim compress quantize cls.onnx --input-shape x=1,3,48,192 --fp16 --calib ppocr-text -o cls-fp16.onnx\n  \
edgeslim compress quantize cls.onnx --input-shape x=1,3,48,192 --int8 --per-channel --calib ppocr-text -o cls-int8.onnx --report q\n  \
edgeslim compress quantize cls.onnx --input-shape x=1,3,48,192 --int8 --format qoperator --calib ppocr-text -o cls-q8.onnx")]
pub struct QuantizeArgs {
    /// The ONNX model (never overwritten).
    model: PathBuf,
    /// FLOAT16 weights with a Cast to float: half the size, compute stays f32.
    #[arg(long, conflicts_with = "int8", required_unless_present = "int8")]
    fp16: bool,
    /// With --fp16: run the whole graph in f16 (only for boards with FP16 arithmetic,
    /// ARMv8.2+ such as Cortex-A55/A76; elsewhere f16 is emulated and slow).
    #[arg(long, requires = "fp16")]
    fp16_compute: bool,
    /// int8 Conv/MatMul/Gemm with calibrated activation ranges (needs --calib).
    #[arg(long)]
    int8: bool,
    /// int8 form: `qdq` (Quantize/Dequantize around float ops: ONNX Runtime's form, which
    /// tract runs in float) or `qoperator` (QLinearConv/QLinearMatMul: tract's integer
    /// kernels; depthwise and grouped convolutions stay float).
    #[arg(long, value_enum, default_value = "qdq", requires = "int8")]
    format: edgeslim::quantize::Int8Format,
    /// Per-output-channel weight scales (int8).
    #[arg(long)]
    per_channel: bool,
    /// 7-bit weights ([-63, 63]), as ONNX Runtime's quantizer's reduce_range: needed for
    /// ONNX Runtime's integer kernels on x86 CPUs without VNNI, which saturate otherwise (int8).
    #[arg(long, requires = "int8")]
    reduce_range: bool,
    /// How activation ranges are calibrated (int8).
    #[arg(long, value_enum, default_value = "minmax")]
    method: edgeslim::quantize::ranges::RangeMethod,
    /// Percentile for --method percentile.
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// Calibration data (int8 ranges; also the default evaluation data).
    #[arg(long, value_name = "SPEC")]
    calib: Option<CalibSpec>,
    #[arg(long, value_name = "N")]
    calib_samples: Option<usize>,
    /// Held-out data for the fidelity report (default: --calib's held-out split).
    #[arg(long, value_name = "SPEC")]
    eval: Option<CalibSpec>,
    /// Shape of the model input, NAME=D0,D1,... (needed when the model leaves it open; also
    /// fixed in the output model).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<InputShape>,
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Timed tract runs per model (0 skips the latency comparison).
    #[arg(long, default_value_t = 50)]
    bench_runs: usize,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

fn quantize(a: QuantizeArgs) -> Result<()> {
    use edgeslim::quantize::{Precision, QuantizeJob};
    let precision = if a.int8 {
        Precision::Int8 {
            format: a.format,
            per_channel: a.per_channel,
            reduce_range: a.reduce_range,
            method: a.method,
            percentile: a.percentile,
        }
    } else {
        Precision::Fp16 {
            compute: a.fp16_compute,
        }
    };
    let job = QuantizeJob {
        model: a.model.clone(),
        output: a.output.clone(),
        input_shapes: a.input_shapes.clone(),
        precision,
        calib: a.calib.clone(),
        calib_samples: a.calib_samples,
        eval: a.eval.clone(),
        bench_runs: a.bench_runs,
    };
    let outcome = pipeline::run(&Job::Quantize(job), &|_| {})?;
    if let Some(dir) = &a.report {
        edgeslim::report::write::outcome(&outcome, dir)?;
    }
    let MethodReport::Quantize(r) = outcome.report else {
        bail!("the quantisation job returned another method's report");
    };
    if edgeslim_runtime::json_out::emit(&a.json.dest, &r)? {
        return Ok(());
    }
    for w in &r.warnings {
        eprintln!("edgeslim: warning: {w}");
    }
    println!("{} -> {}  [{:.1} s]", r.model, r.output, r.quantize_seconds);
    println!(
        "  file {} -> {} bytes; {}",
        r.before.file_bytes, r.after.file_bytes, r.plan_after.verdict
    );
    if let (Some(b), Some(c)) = (r.before.latency_p50_ms, r.after.latency_p50_ms) {
        println!("  tract p50 latency {b:.3} ms -> {c:.3} ms ({:.2}x)", c / b);
    }
    if let (Some(f), Some(h)) = (&r.fidelity, &r.held_out) {
        println!(
            "  held out ({h}): top-1 agreement {:.1}%, mean cosine {:.5}",
            100.0 * f.top1_agreement,
            f.mean_cosine
        );
    }
    if let Some(e) = &r.engines {
        match &e.ort_error {
            None => println!(
                "  tract vs ONNX Runtime: max |diff| {:.3e}, top-1 agreement {:.1}%",
                e.max_abs_diff,
                100.0 * e.top1_agreement
            ),
            Some(err) => println!("  ONNX Runtime could not run it: {err}"),
        }
    }
    if let Some(dir) = &a.report {
        println!("report: {}", dir.join("index.html").display());
    }
    Ok(())
}
