use anyhow::Result;
use edgeslim::boards::deploy::{deploy, DeployOptions};
use edgeslim::boards::ssh::Ssh;
use std::path::PathBuf;

/// Copy a bundle to a board over ssh/scp and unpack it, after checking with `uname -m` that
/// the board can run it; with --bench, run the benchmark there and bring the JSON back.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim deploy cls-rpi4.tar.gz --ssh pi@raspberrypi.local --bench\n  edgeslim report cls-host.json cls.rpi4.json -o report.html"
)]
pub struct Args {
    /// The bundle (from `edgeslim bundle`).
    bundle: PathBuf,
    /// The board: user@host, or a Host alias from ~/.ssh/config. Key login must work.
    #[arg(long, value_name = "USER@HOST")]
    ssh: String,
    /// ssh port.
    #[arg(long)]
    port: Option<u16>,
    /// ssh private key.
    #[arg(short = 'i', long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// More ssh options, KEY=VALUE (repeatable), e.g. StrictHostKeyChecking=accept-new.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    ssh_options: Vec<String>,
    /// Where bundles live on the board (relative to the home directory unless absolute).
    #[arg(long, default_value = "edgeslim")]
    remote_dir: String,
    /// Run the benchmark on the board and copy its JSON reports back.
    #[arg(long)]
    bench: bool,
    /// Local folder for the reports brought back (default: the current folder).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Deprecated spelling of --report.
    #[arg(long, value_name = "DIR", hide = true, conflicts_with = "report")]
    results: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let mut ssh = Ssh::new(&a.ssh);
    ssh.port = a.port;
    ssh.identity = a.identity;
    ssh.options = a.ssh_options;
    let d = deploy(&DeployOptions {
        bundle: a.bundle,
        ssh,
        remote_dir: a.remote_dir,
        bench: a.bench,
        results: edgeslim_runtime::process::current_or_deprecated(
            &a.report,
            &a.results,
            "--results DIR",
            "--report DIR",
        )
        .unwrap_or_else(|| PathBuf::from(".")),
    })?;
    println!(
        "deployed {} to {}:{} ({}; {})",
        d.manifest.name, a.ssh, d.remote_path, d.machine, d.runtime_version
    );
    for r in &d.reports {
        println!("report: {}", r.display());
    }
    if !d.reports.is_empty() {
        println!(
            "compare with the host: edgeslim report HOST.json {} -o report.html",
            d.reports
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}
