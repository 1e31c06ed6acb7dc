use anyhow::Result;
use edgeslim::boards::build::{build, BuildOptions};
use edgeslim::boards::bundle::{bundle, App, BundleSpec};
use edgeslim::boards::find;
use edgeslim_runtime::InputShape;
use std::path::PathBuf;

/// Make a .tar.gz for a board: the runtime built for it, the model(s), a config, a run
/// script, a systemd unit, a README for the board and SHA256SUMS. Each model is loaded with
/// tract first, so a model the board cannot run is refused here.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim bundle cls.onnx --target rpi4 --input-shape x=1,3,48,192 -o cls-rpi4.tar.gz\n  edgeslim bundle tracker.onnx --target rpi3-armv7 --app track --binary edgeslim-rt.armv7 -o track.tar.gz"
)]
pub struct Args {
    /// Board profile: a name from `edgeslim targets`, or the path of a profile TOML.
    #[arg(long)]
    target: String,
    /// A model to ship (repeatable); `track` and `inspect` use the first. A tracker folder
    /// (models/siamese-tracker) ships its template.onnx and search.onnx.
    #[arg(value_name = "MODEL", required_unless_present = "model_flags")]
    models: Vec<PathBuf>,
    /// Deprecated: the models are positional now.
    #[arg(
        long = "model",
        value_name = "M.onnx",
        hide = true,
        conflicts_with = "models"
    )]
    model_flags: Vec<PathBuf>,
    /// What the bundle runs: bench, track or inspect.
    #[arg(long, value_enum, default_value_t = App::Bench)]
    app: App,
    /// The bundle to write (.tar.gz).
    #[arg(short, long)]
    output: PathBuf,
    /// Ship this runtime instead of building one (from `edgeslim build -o`); it is checked
    /// to be for the board.
    #[arg(long, value_name = "FILE")]
    binary: Option<PathBuf>,
    /// Shape of an input, NAME=D0,D1,... (repeatable), for models with dynamic shapes.
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<InputShape>,
    /// Threads on the board (default: all its cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Benchmark warm-up runs.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Benchmark timed runs.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Frames for track/inspect: a camera, a video file or a folder of images.
    #[arg(long, default_value = "/dev/video0")]
    source: String,
    /// Live view address for track/inspect (0.0.0.0:PORT lets other machines in).
    #[arg(long, default_value = "127.0.0.1:8080")]
    serve: String,
    /// Directory name of the bundle (default edgeslim-<target>-<app>).
    #[arg(long)]
    name: Option<String>,
    /// Runtime features when building (comma-separated), e.g. gpio.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Leave out the runtime's default features when building.
    #[arg(long)]
    no_default_features: bool,
    /// The edgeslim workspace to build from.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Bundle even if the runtime needs a newer glibc than the profile's OS ships.
    #[arg(long)]
    allow_newer_glibc: bool,
}

pub fn run(a: Args) -> Result<()> {
    let profile = find(&a.target)?;
    let binary = match a.binary {
        Some(b) => b,
        None => {
            let opts = BuildOptions {
                source: edgeslim::boards::build::find_source(a.workspace.as_deref())?,
                cargo_profile: "board".into(),
                features: a.features,
                no_default_features: a.no_default_features,
                target_dir: None,
                quiet: false,
            };
            let built = build(&profile, &opts)?;
            super::build::print_built(&built, None);
            built.binary
        }
    };
    let spec = BundleSpec {
        profile,
        binary,
        models: if a.models.is_empty() {
            edgeslim_runtime::process::deprecated("--model M.onnx", "positional MODEL arguments");
            a.model_flags
        } else {
            a.models
        },
        app: a.app,
        input_shapes: a.input_shapes,
        threads: a.threads,
        warmup: a.warmup,
        runs: a.runs,
        source: a.source,
        serve: a.serve,
        name: a.name,
        output: a.output,
        allow_newer_glibc: a.allow_newer_glibc,
    };
    let s = bundle(&spec)?;
    for w in &s.warnings {
        eprintln!("edgeslim: warning: {w}");
    }
    println!(
        "{} -> {} ({}, sha256 {})",
        s.name,
        s.path.display(),
        edgeslim::boards::build::fmt_size(s.size_bytes),
        s.sha256
    );
    for f in &s.files {
        println!("  {:>12}  {}/{}", f.size_bytes, s.name, f.path);
    }
    println!(
        "deploy with: edgeslim deploy {} --ssh USER@BOARD [--bench]",
        s.path.display()
    );
    Ok(())
}
