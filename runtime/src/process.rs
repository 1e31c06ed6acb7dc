//! What both command-line tools (`edgeslim`, `edgeslim-rt`) set up before they parse their
//! arguments, and where their shared cache lives: one place instead of a copy per binary.

use std::path::PathBuf;

/// Process-wide setup at the top of `main`, before any thread exists: die quietly on a closed
/// pipe, remove temporary files on Ctrl-C or SIGTERM, and turn tract's panics on invalid
/// graphs into one-line errors.
pub fn init_cli() {
    restore_sigpipe();
    // Ctrl-C or SIGTERM during a write removes the temporary file before exiting (130).
    crate::fsutil::install_interrupt_cleanup();
    // tract's panics on invalid graphs become one-line errors, without a backtrace dump.
    crate::model::install_quiet_panic_hook();
}

/// Die quietly on a closed pipe (`edgeslim ... | head`) like other Unix tools, instead of
/// panicking inside `println!`.
fn restore_sigpipe() {
    // SAFETY: setting a signal disposition to its default before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The cache of models, data and photographs: `$EDGESLIM_HOME`, else `~/.cache/edgeslim`,
/// else (no home directory, as in some CI containers) a per-machine temporary folder, which
/// still avoids downloading again within one job.
pub fn edgeslim_home() -> PathBuf {
    if let Some(h) = std::env::var_os("EDGESLIM_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("edgeslim"),
        None => std::env::temp_dir().join("edgeslim"),
    }
}

/// The global output flags both tools accept before or after the subcommand.
#[derive(clap::Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verbosity {
    /// Less output: no progress bars and no per-item lines; warnings and errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More output: -v shows info messages (and a command's details, e.g. every optimizer
    /// change), -vv debug, -vvv trace. RUST_LOG, when set, overrides the log level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
}

static VERBOSITY: std::sync::OnceLock<Verbosity> = std::sync::OnceLock::new();

/// Record the flags and start logging: `-q` errors only, the default warnings, `-v` info,
/// `-vv` debug, `-vvv` trace; `RUST_LOG` wins when set (`RUST_LOG=edgeslim_train=debug`).
pub fn init_logging(v: Verbosity) {
    let _ = VERBOSITY.set(v);
    let level = match (v.quiet, v.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .try_init();
}

/// `-q` was given.
pub fn quiet() -> bool {
    VERBOSITY.get().is_some_and(|v| v.quiet)
}

/// How many `-v` were given.
pub fn verbose() -> u8 {
    VERBOSITY.get().map_or(0, |v| v.verbose)
}

/// The tract version compiled in (from Cargo.lock, `build.rs`).
pub const TRACT_VERSION: &str = env!("EDGESLIM_TRACT_VERSION");
/// The `ort` crate version the host tools link (ONNX Runtime is loaded at run time).
pub const ORT_VERSION: &str = env!("EDGESLIM_ORT_VERSION");

/// The runtime library's compiled optional features.
pub fn runtime_features() -> Vec<&'static str> {
    [
        (cfg!(feature = "serve"), "serve"),
        (cfg!(feature = "camera"), "camera"),
        (cfg!(feature = "gpio"), "gpio"),
        (cfg!(feature = "transformers"), "transformers"),
    ]
    .into_iter()
    .filter_map(|(on, f)| on.then_some(f))
    .collect()
}

/// `--version`'s long text: the tool's version, the engines and the features built in.
pub fn long_version(engines: &[String], features: &[&str]) -> &'static str {
    let features = if features.is_empty() {
        "none".to_string()
    } else {
        features.join(", ")
    };
    let text = format!(
        "{}\n{}\nfeatures: {features}\ntarget: {}-{}",
        env!("CARGO_PKG_VERSION"),
        engines.join("\n"),
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    // Once per process, for clap's 'static help texts.
    Box::leak(text.into_boxed_str())
}

/// The exit statuses, for `--help` and docs/cli.md.
pub const EXIT_CODES: &str = "Exit status: 0 success; 1 error (bad input or failed work, one line \
naming the file, node or option); 2 usage error (unknown flag, missing or malformed argument); \
130 interrupted (Ctrl-C or SIGTERM; temporary files are removed, no half-written output).";

/// A renamed flag still accepted for one release: say so on stderr (the old spelling goes in
/// the next release; docs/cli.md lists them).
pub fn deprecated(old: &str, new: &str) {
    eprintln!("warning: {old} is deprecated and will be removed in the next release; use {new}");
}

/// The value of an argument given either the current way or by its deprecated flag.
pub fn current_or_deprecated<T: Clone>(
    current: &Option<T>,
    old: &Option<T>,
    old_flag: &str,
    new: &str,
) -> Option<T> {
    if current.is_none() && old.is_some() {
        deprecated(old_flag, new);
    }
    current.clone().or_else(|| old.clone())
}
