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
