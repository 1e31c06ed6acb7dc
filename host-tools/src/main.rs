//! `edgeslim`: the host side. Each subcommand lives in `cmd/`, the work in the library.

mod cmd;

use clap::Parser;

fn main() {
    edgeslim_runtime::process::init_cli();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = cmd::Cli::parse();
    if let Err(e) = cmd::run(cli) {
        eprintln!("edgeslim: error: {}", cmd::error_line(&e));
        std::process::exit(1);
    }
}
