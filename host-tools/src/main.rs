//! `edgeslim`: the host side. Each subcommand lives in `cmd/`, the work in the library.

mod cmd;

use clap::Parser;

/// Die quietly on a closed pipe (`edgeslim ... | head`) like other Unix tools, instead of
/// panicking inside `println!`.
fn restore_sigpipe() {
    // SAFETY: setting a signal disposition to its default before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() {
    restore_sigpipe();
    // Ctrl-C or SIGTERM during a write removes the temporary file before exiting (130).
    edgeslim_runtime::fsutil::install_interrupt_cleanup();
    // tract's panics on invalid graphs become one-line errors, without a backtrace dump.
    edgeslim_runtime::model::install_quiet_panic_hook();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = cmd::Cli::parse();
    if let Err(e) = cmd::run(cli) {
        eprintln!("edgeslim: error: {}", edgeslim_runtime::error::one_line(&e));
        std::process::exit(1);
    }
}
