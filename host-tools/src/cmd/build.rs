use anyhow::Result;
use edgeslim::boards::build::{
    build, fmt_size, toolchain_error, BuildOptions, Built, SIZE_GOAL_BYTES,
};
use edgeslim::boards::{find, toolchain};
use std::path::PathBuf;

/// Build `edgeslim-rt` for a board: checks the cross toolchain (and prints the exact commands
/// that install what is missing), builds stripped and size-optimised with the board's linker
/// and target-cpu, and prints the binary's size.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim build --target rpi4\n  edgeslim build --target rpi3-armv7 --features gpio -o edgeslim-rt.armv7\n  edgeslim build --target jetson-nano --check"
)]
pub struct Args {
    /// Board profile: a name from `edgeslim targets`, or the path of a profile TOML.
    #[arg(long)]
    target: String,
    /// Runtime features to add (comma-separated or repeated), e.g. gpio.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Leave out the runtime's default features.
    #[arg(long)]
    no_default_features: bool,
    /// Cargo profile of the workspace: `board` (small: LTO, stripped) or e.g. `release`.
    #[arg(long, default_value = "board")]
    profile: String,
    /// Only check the toolchain; build nothing.
    #[arg(long)]
    check: bool,
    /// Also copy the binary here.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The edgeslim workspace to build (default: the one around the current directory, or
    /// the one this edgeslim was built from).
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Cargo's target directory (default: target/board/<target> in the workspace).
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

pub fn run(a: Args) -> Result<()> {
    let profile = find(&a.target)?;
    let status = toolchain::check(&profile);
    if !status.ok() {
        eprintln!(
            "edgeslim: the toolchain for {} ({}) is incomplete:",
            profile.name, profile.triple
        );
        for r in status.missing() {
            eprintln!("  missing: {}", r.what);
        }
        eprintln!("install with:");
        for c in status.install_commands() {
            eprintln!("  {c}");
        }
        return Err(toolchain_error(&status).into());
    }
    if a.check {
        println!(
            "toolchain for {} ({}) is complete: {}",
            profile.name,
            profile.triple,
            status
                .requirements
                .iter()
                .filter_map(|r| r.found.clone())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    let opts = BuildOptions {
        source: edgeslim::boards::build::find_source(a.workspace.as_deref())?,
        cargo_profile: a.profile,
        features: a.features,
        no_default_features: a.no_default_features,
        target_dir: a.target_dir,
        quiet: false,
    };
    let built = build(&profile, &opts)?;
    if let Some(out) = &a.output {
        copy_executable(&built.binary, out)?;
    }
    if !edgeslim_runtime::json_out::emit(&a.json.dest, &built)? {
        print_built(&built, a.output.as_ref());
    }
    Ok(())
}

/// Copy through a temporary file, keeping the executable bit.
pub fn copy_executable(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(from)?;
    edgeslim_runtime::fsutil::write_atomic_with(to, |f| {
        std::io::Write::write_all(f, &bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))
    })?;
    Ok(())
}

pub fn print_built(b: &Built, copy: Option<&PathBuf>) {
    let features = match (b.default_features, b.features.is_empty()) {
        (true, true) => "default".to_string(),
        (true, false) => format!("default + {}", b.features.join(",")),
        (false, true) => "none".to_string(),
        (false, false) => b.features.join(","),
    };
    println!(
        "edgeslim-rt for {} ({}, target-cpu {}, profile {}, features {}) in {:.0} s",
        b.target, b.triple, b.target_cpu, b.cargo_profile, features, b.seconds
    );
    println!(
        "  {}  {}{}",
        b.binary.display(),
        fmt_size(b.size_bytes),
        if b.stripped { ", stripped" } else { "" }
    );
    if let Some(c) = copy {
        println!("  copied to {}", c.display());
    }
    let goal = if b.size_bytes <= SIZE_GOAL_BYTES {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "  size goal ≤ {:.0} MB: {goal}",
        SIZE_GOAL_BYTES as f64 / 1e6
    );
    if let Some(g) = &b.max_glibc {
        println!("  needs glibc ≥ {g}");
    }
    for w in &b.warnings {
        eprintln!("edgeslim: warning: {w}");
    }
}
