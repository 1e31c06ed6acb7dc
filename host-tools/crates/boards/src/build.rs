//! `edgeslim build`: cargo builds `edgeslim-rt` for a board with the board's linker and
//! `target-cpu`, in the workspace's size-optimised `board` profile, then reads back what came
//! out (architecture, stripped, glibc needed) and its size.

use super::elf::{self, ElfInfo};
use super::profile::Profile;
use super::TargetError;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The size the runtime should stay under with its default features (bytes, stripped).
pub const SIZE_GOAL_BYTES: u64 = 8_000_000;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The edgeslim workspace (holds runtime/).
    pub source: PathBuf,
    /// A cargo profile of the workspace: `board` (small, for boards) or e.g. `release`.
    pub cargo_profile: String,
    pub features: Vec<String>,
    pub no_default_features: bool,
    /// Cargo's target directory; default `<source>/target/board/<profile name>`, one per board
    /// because a different `target-cpu` rebuilds everything.
    pub target_dir: Option<PathBuf>,
    /// Capture cargo's output instead of showing it (it is in the error when the build fails).
    pub quiet: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Built {
    pub target: String,
    pub triple: String,
    pub target_cpu: String,
    pub cargo_profile: String,
    pub features: Vec<String>,
    pub default_features: bool,
    pub binary: PathBuf,
    pub size_bytes: u64,
    pub stripped: bool,
    pub max_glibc: Option<String>,
    pub seconds: f64,
    /// Things that will bite on the board (a C library newer than the board's).
    pub warnings: Vec<String>,
    /// The cargo profile's opt-levels, as the workspace's Cargo.toml sets them.
    pub opt_levels: OptLevels,
}

/// The opt-levels a cargo profile compiles with: its own (after `inherits`), and the
/// per-package overrides (`"*"`: every dependency not named).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OptLevels {
    pub profile: String,
    pub packages: std::collections::BTreeMap<String, String>,
}

impl OptLevels {
    /// The opt-level `package` is compiled at (a workspace member takes the profile's own).
    pub fn of(&self, package: &str, workspace_member: bool) -> &str {
        if let Some(l) = self.packages.get(package) {
            return l;
        }
        if !workspace_member {
            if let Some(l) = self.packages.get("*") {
                return l;
            }
        }
        &self.profile
    }
}

/// Read `profile`'s opt-levels from the workspace manifest `source/Cargo.toml`, following
/// `inherits` to cargo's built-in `release` (3) and `dev` (0). Environment overrides
/// (`CARGO_PROFILE_<NAME>_OPT_LEVEL`) win, as they do for cargo.
pub fn profile_opt_levels(source: &Path, profile: &str) -> Result<OptLevels, TargetError> {
    let path = source.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| TargetError::Build(format!("{}: {e}", path.display())))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| TargetError::Build(format!("{}: {e}", path.display())))?;
    let profiles = doc.get("profile").and_then(|p| p.as_table());
    let level = |v: &toml::Value| match v {
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::String(s) => Some(s.clone()),
        _ => None,
    };
    let mut out = OptLevels::default();
    let mut name = profile.to_string();
    let mut seen = Vec::new();
    let own = loop {
        if seen.contains(&name) {
            return Err(TargetError::Build(format!(
                "{}: profile '{name}' inherits from itself",
                path.display()
            )));
        }
        seen.push(name.clone());
        let table = profiles
            .and_then(|p| p.get(&name))
            .and_then(|t| t.as_table());
        if let Some(pkgs) = table
            .and_then(|t| t.get("package"))
            .and_then(|p| p.as_table())
        {
            for (pkg, settings) in pkgs {
                if let Some(l) = settings.get("opt-level").and_then(level) {
                    out.packages.entry(pkg.clone()).or_insert(l);
                }
            }
        }
        if let Some(l) = table.and_then(|t| t.get("opt-level")).and_then(level) {
            break l;
        }
        match table
            .and_then(|t| t.get("inherits"))
            .and_then(|v| v.as_str())
        {
            Some(parent) => name = parent.to_string(),
            None if name == "release" || name == "bench" => break "3".into(),
            None if name == "dev" || name == "test" => break "0".into(),
            None => {
                return Err(TargetError::Build(format!(
                    "{}: profile '{name}' has no opt-level and inherits nothing",
                    path.display()
                )))
            }
        }
    };
    let env = format!(
        "CARGO_PROFILE_{}_OPT_LEVEL",
        profile.to_uppercase().replace('-', "_")
    );
    out.profile = std::env::var(&env).unwrap_or(own);
    Ok(out)
}

/// The workspace to build from: the one given, else the one around the current directory,
/// else the one this binary was built from.
pub fn find_source(explicit: Option<&Path>) -> Result<PathBuf, TargetError> {
    let is_workspace =
        |d: &Path| d.join("runtime/Cargo.toml").is_file() && d.join("Cargo.toml").is_file();
    if let Some(d) = explicit {
        return if is_workspace(d) {
            Ok(d.to_path_buf())
        } else {
            Err(TargetError::Build(format!(
                "{}: not an edgeslim workspace (no runtime/Cargo.toml)",
                d.display()
            )))
        };
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(d) = cwd.ancestors().find(|d| is_workspace(d)) {
            return Ok(d.to_path_buf());
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    if is_workspace(&built_from) {
        return Ok(built_from);
    }
    Err(TargetError::Build(
        "cannot find the edgeslim sources to build from: run inside the workspace or pass --source DIR".into(),
    ))
}

/// `aarch64-unknown-linux-gnu` -> `AARCH64_UNKNOWN_LINUX_GNU` (cargo's env var spelling).
fn triple_env(triple: &str) -> String {
    triple.replace(['-', '.'], "_").to_uppercase()
}

/// The folder holding the toolchain's `ld.lld` wrapper for C compiler drivers
/// (`<sysroot>/lib/rustlib/<host>/bin/gcc-ld`; rustup ships it with every rustc).
fn rust_lld_dir() -> Result<PathBuf, TargetError> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let ask = |args: &[&str]| -> Result<String, TargetError> {
        let out = Command::new(&rustc)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TargetError::Build(format!("running {rustc} {}: {e}", args.join(" "))))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let sysroot = ask(&["--print", "sysroot"])?;
    let host = ask(&["-vV"])?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap_or_default();
    let dir = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(&host)
        .join("bin/gcc-ld");
    if !dir.join("ld.lld").is_file() {
        return Err(TargetError::Build(format!(
            "the profile links with rust-lld, but {} has no ld.lld (a rustup toolchain ships it; \
             set toolchain.rust_lld = false in the profile to link with the cross ld)",
            dir.display()
        )));
    }
    Ok(dir)
}

/// RUSTFLAGS for the board: its CPU, and the rust-lld link options its profile asks for.
pub fn target_rustflags(profile: &Profile) -> Result<String, TargetError> {
    let mut flags = format!("-C target-cpu={}", profile.target_cpu);
    let t = &profile.toolchain;
    if t.rust_lld {
        let dir = rust_lld_dir()?;
        flags.push_str(&format!(
            " -C link-arg=-fuse-ld=lld -C link-arg=-B{}",
            dir.display()
        ));
        if t.icf {
            flags.push_str(" -C link-arg=-Wl,--icf=all");
        }
        if t.pack_relative_relocs {
            flags.push_str(" -C link-arg=-Wl,-z,pack-relative-relocs");
        }
    }
    Ok(flags)
}

/// The cargo command for a board build: the runtime binary only, the board's linker, CPU and
/// link options (`rustflags`, from [`target_rustflags`]).
pub fn cargo_command(
    profile: &Profile,
    opts: &BuildOptions,
    target_dir: &Path,
    rustflags: &str,
) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The build reads nothing from the terminal.
    cmd.stdin(Stdio::null())
        .current_dir(&opts.source)
        .args(["build", "-p", "edgeslim-runtime", "--bin", "edgeslim-rt"])
        .args([
            "--target",
            &profile.triple,
            "--profile",
            &opts.cargo_profile,
        ]);
    if opts.no_default_features {
        cmd.arg("--no-default-features");
    }
    if !opts.features.is_empty() {
        cmd.args(["--features", &opts.features.join(",")]);
    }
    let t = triple_env(&profile.triple);
    cmd.env("CARGO_TARGET_DIR", target_dir)
        .env(
            format!("CARGO_TARGET_{t}_LINKER"),
            &profile.toolchain.linker,
        )
        .env(format!("CARGO_TARGET_{t}_RUSTFLAGS"), rustflags)
        // tract-linalg assembles its kernels through the cc crate.
        .env(
            format!("CC_{}", profile.triple.replace(['-', '.'], "_")),
            &profile.toolchain.linker,
        );
    cmd
}

pub fn build(profile: &Profile, opts: &BuildOptions) -> Result<Built, TargetError> {
    let status = super::toolchain::check(profile);
    if !status.ok() {
        return Err(toolchain_error(&status));
    }
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        if std::env::var_os(var).is_some() {
            log::warn!(
                "{var} is set and replaces the profile's -C target-cpu={}",
                profile.target_cpu
            );
        }
    }
    let target_dir = opts
        .target_dir
        .clone()
        .unwrap_or_else(|| opts.source.join("target/board").join(&profile.name));
    let rustflags = target_rustflags(profile)?;
    let mut cmd = cargo_command(profile, opts, &target_dir, &rustflags);
    let start = Instant::now();
    let output = if opts.quiet {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output()
    } else {
        cmd.status().map(|status| std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }
    .map_err(|e| TargetError::Build(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        let tail = last_lines(&String::from_utf8_lossy(&output.stderr), 3);
        return Err(TargetError::Build(format!(
            "cargo build of edgeslim-rt for {} failed ({}){}",
            profile.name,
            output.status,
            if tail.is_empty() {
                String::from("; its messages are above")
            } else {
                format!(": {tail}")
            }
        )));
    }
    let seconds = start.elapsed().as_secs_f64();
    let binary = target_dir
        .join(&profile.triple)
        .join(&opts.cargo_profile)
        .join("edgeslim-rt");
    let size_bytes = std::fs::metadata(&binary)
        .map_err(|e| TargetError::Binary {
            path: binary.clone(),
            reason: format!("cargo succeeded but the binary is not there: {e}"),
        })?
        .len();
    let info = elf::read(&binary).map_err(|reason| TargetError::Binary {
        path: binary.clone(),
        reason,
    })?;
    let problems = check_binary(profile, &info);
    if let Some(wrong) = problems.wrong {
        return Err(TargetError::Binary {
            path: binary,
            reason: wrong,
        });
    }
    Ok(Built {
        target: profile.name.clone(),
        triple: profile.triple.clone(),
        target_cpu: profile.target_cpu.clone(),
        cargo_profile: opts.cargo_profile.clone(),
        features: opts.features.clone(),
        default_features: !opts.no_default_features,
        binary,
        size_bytes,
        stripped: info.stripped,
        max_glibc: info.max_glibc.map(|(a, b)| format!("{a}.{b}")),
        seconds,
        warnings: problems.warnings,
        opt_levels: profile_opt_levels(&opts.source, &opts.cargo_profile)?,
    })
}

/// What is wrong with a binary for a board: `wrong` when it cannot run there at all,
/// `warnings` when it may not.
#[derive(Debug, Default)]
pub struct BinaryProblems {
    pub wrong: Option<String>,
    pub warnings: Vec<String>,
}

pub fn check_binary(profile: &Profile, info: &ElfInfo) -> BinaryProblems {
    let mut p = BinaryProblems::default();
    if info.arch != profile.rust_arch() {
        p.wrong = Some(format!(
            "built for {}, but {} is {} ({})",
            info.arch,
            profile.name,
            profile.rust_arch(),
            profile.triple
        ));
        return p;
    }
    match (&info.interpreter, &profile.dynamic_loader) {
        (Some(interp), Some(loader)) if interp != loader => {
            p.wrong = Some(format!(
                "asks for the loader {interp}, but {} has {loader}",
                profile.name
            ));
            return p;
        }
        (Some(interp), None) => {
            p.wrong = Some(format!(
                "is dynamically linked (loader {interp}), but {} takes a static build ({})",
                profile.name, profile.triple
            ));
            return p;
        }
        _ => {}
    }
    if let (Some(needed), Some(board)) = (info.max_glibc, profile.glibc_version()) {
        if needed > board {
            p.warnings.push(format!(
                "the binary needs glibc {}.{} but {} ({}) ships {}.{}: it will not start there; \
                 build on a machine with an older C library (or in a container of the board's OS)",
                needed.0, needed.1, profile.name, profile.os, board.0, board.1
            ));
        }
    }
    if !info.stripped {
        p.warnings
            .push("the binary is not stripped (use the `board` cargo profile)".into());
    }
    p
}

/// The one-line error for an incomplete toolchain, with the exact commands.
pub fn toolchain_error(status: &super::toolchain::Status) -> TargetError {
    let missing: Vec<String> = status.missing().iter().map(|r| r.what.clone()).collect();
    TargetError::Toolchain {
        target: status.target.clone(),
        triple: status.triple.clone(),
        missing: missing.join(", "),
        commands: status.install_commands().join(" && "),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// "6.42 MB (6,421,504 bytes)".
pub fn fmt_size(bytes: u64) -> String {
    let digits = bytes.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{:.2} MB ({grouped} bytes)", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::builtin_named;

    #[test]
    fn cargo_gets_the_boards_linker_and_cpu() {
        let p = builtin_named("rpi4").unwrap();
        let opts = BuildOptions {
            source: PathBuf::from("/src"),
            cargo_profile: "board".into(),
            features: vec!["gpio".into()],
            no_default_features: true,
            target_dir: None,
            quiet: true,
        };
        let cmd = cargo_command(&p, &opts, Path::new("/t"), "-C target-cpu=cortex-a72");
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into()).collect();
        let line = args.join(" ");
        assert!(
            line.contains("--target aarch64-unknown-linux-gnu --profile board"),
            "{line}"
        );
        assert!(
            line.contains("--no-default-features --features gpio"),
            "{line}"
        );
        let env: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into(), v?.to_string_lossy().into())))
            .collect();
        assert!(env.contains(&(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER".into(),
            "aarch64-linux-gnu-gcc".into()
        )));
        assert!(env.contains(&(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS".into(),
            "-C target-cpu=cortex-a72".into()
        )));
    }

    #[test]
    fn rpi4_links_with_rust_lld_folding_code_and_packing_relocations() {
        let p = builtin_named("rpi4").unwrap();
        let flags = target_rustflags(&p).unwrap();
        assert!(flags.starts_with("-C target-cpu=cortex-a72 "), "{flags}");
        assert!(flags.contains("-C link-arg=-fuse-ld=lld"), "{flags}");
        assert!(flags.contains("gcc-ld"), "{flags}");
        assert!(
            flags.contains("--icf=all") && flags.contains("pack-relative-relocs"),
            "{flags}"
        );
        // A board whose glibc predates DT_RELR keeps the plain link.
        let nano = builtin_named("jetson-nano").unwrap();
        assert!(!target_rustflags(&nano)
            .unwrap()
            .contains("pack-relative-relocs"));
    }

    #[test]
    fn a_binary_for_another_board_is_wrong() {
        let pi = builtin_named("rpi4").unwrap();
        let x86 = ElfInfo {
            arch: "x86_64".into(),
            bits: 64,
            stripped: true,
            interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
            max_glibc: Some((2, 34)),
        };
        assert!(check_binary(&pi, &x86)
            .wrong
            .unwrap()
            .contains("built for x86_64"));
        let arm = ElfInfo {
            arch: "aarch64".into(),
            interpreter: Some("/lib/ld-linux-aarch64.so.1".into()),
            ..x86
        };
        assert!(check_binary(&pi, &arm).wrong.is_none());
        assert!(
            check_binary(&pi, &arm).warnings.is_empty(),
            "2.34 <= rpi4's 2.36"
        );
        // A glibc build for a board whose OS ships an older glibc: it would not start there.
        let old_os = Profile {
            glibc: Some("2.31".into()),
            ..pi.clone()
        };
        let p = check_binary(&old_os, &arm);
        assert!(p.wrong.is_none());
        assert!(p.warnings[0].contains("glibc 2.34") && p.warnings[0].contains("2.31"));
        // The Jetson Nano takes a static musl build: a dynamic one is wrong, a static one fine.
        let nano = builtin_named("jetson-nano").unwrap();
        let wrong = check_binary(&nano, &arm).wrong.unwrap();
        assert!(wrong.contains("takes a static build"), "{wrong}");
        let static_arm = ElfInfo {
            interpreter: None,
            max_glibc: None,
            ..arm
        };
        let p = check_binary(&nano, &static_arm);
        assert!(p.wrong.is_none() && p.warnings.is_empty(), "{p:?}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(fmt_size(6_421_504), "6.42 MB (6,421,504 bytes)");
        assert_eq!(fmt_size(999), "0.00 MB (999 bytes)");
    }

    /// The board profile must not regress to size-first speed: the inference path stays at
    /// opt-level 3 (docs/results/speed.md measured opt "z" there at 1.5-2.4x slower).
    #[test]
    fn board_profile_keeps_the_inference_path_at_opt_3() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
        let o = profile_opt_levels(&workspace, "board").unwrap();
        for hot in [
            "tract-linalg",
            "tract-core",
            "tract-data",
            "tract-onnx-opl",
            "ndarray",
            "rayon-core",
        ] {
            assert_eq!(o.of(hot, false), "3", "{hot}: {o:?}");
        }
        assert_eq!(o.of("edgeslim-runtime", true), "3", "{o:?}");
        assert_eq!(
            o.of("clap_builder", false),
            "z",
            "cold crates stay small: {o:?}"
        );
        // Inheritance: the qemu profile's own level, release's built-in 3.
        assert_eq!(profile_opt_levels(&workspace, "qemu").unwrap().profile, "1");
        assert_eq!(
            profile_opt_levels(&workspace, "release").unwrap().profile,
            "3"
        );
        assert!(profile_opt_levels(&workspace, "no-such-profile").is_err());
    }
}
