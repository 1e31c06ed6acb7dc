use anyhow::Result;
use edgeslim::boards::profile::{builtin, Profile};
use edgeslim::boards::{find, toolchain};

/// List the board profiles (targets/*.toml), or show one in full with the state of its cross
/// toolchain on this machine.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  edgeslim targets\n  edgeslim targets rpi4\n  edgeslim targets --json"
)]
pub struct Args {
    /// A profile to show in full (a name, or the path of a profile TOML).
    name: Option<String>,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
}

pub fn run(a: Args) -> Result<()> {
    match &a.name {
        None => {
            let all = builtin()?;
            if !edgeslim_runtime::json_out::emit(&a.json.dest, &all)? {
                print!("{}", table(&all));
            }
        }
        Some(name) => {
            let p = find(name)?;
            if !edgeslim_runtime::json_out::emit(&a.json.dest, &p)? {
                print!("{}", detail(&p));
            }
        }
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn table(all: &[Profile]) -> String {
    let mut rows = vec![[
        "NAME",
        "BOARD",
        "TRIPLE",
        "TARGET-CPU",
        "CORES",
        "GHZ",
        "RAM GB",
        "FP16",
        "PEAK GFLOP/S",
    ]
    .map(String::from)];
    for p in all {
        let ram: Vec<String> = p.ram_gb.iter().map(|g| g.to_string()).collect();
        rows.push([
            p.name.clone(),
            p.board.clone(),
            p.triple.clone(),
            p.target_cpu.clone(),
            opt(p.cores),
            opt(p.clock_ghz),
            if ram.is_empty() {
                "-".into()
            } else {
                ram.join("/")
            },
            if p.fp16_arithmetic { "yes" } else { "no" }.into(),
            opt(p.peak_gflops()),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(
        "\n`edgeslim targets NAME` shows one board in full, with its toolchain on this machine.\n",
    );
    out
}

fn detail(p: &Profile) -> String {
    let mut s = format!("{} — {} ({})\n", p.name, p.board, p.soc);
    let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<16} {v}\n"));
    line("os", p.os.clone());
    line("triple", p.triple.clone());
    line("target-cpu", p.target_cpu.clone());
    line(
        "cpu",
        format!("{} × {} at {} GHz", opt(p.cores), p.cpu, opt(p.clock_ghz)),
    );
    line("ram (GB)", format!("{:?}", p.ram_gb));
    line(
        "fp16 arithmetic",
        if p.fp16_arithmetic { "yes" } else { "no" }.into(),
    );
    line(
        "fp32 peak",
        p.peak
            .as_ref()
            .map(|k| format!("{} GFLOP/s = {}", k.fp32_gflops, k.formula))
            .unwrap_or_else(|| "not stated".into()),
    );
    line("uname -m", p.uname_machines.join(", "));
    line(
        "loader",
        p.dynamic_loader
            .clone()
            .unwrap_or_else(|| "none (static build)".into()),
    );
    line("glibc", opt(p.glibc.as_deref()));
    let hints: Vec<String> = p
        .tract_env()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    line(
        "tract hints",
        if hints.is_empty() {
            "none".into()
        } else {
            hints.join(" ")
        },
    );
    for (k, list) in [
        ("thermal", &p.sensors.thermal),
        ("throttling", &p.sensors.throttling),
        ("power", &p.sensors.power),
    ] {
        for item in list {
            line(k, item.clone());
        }
    }
    let status = toolchain::check(p);
    s.push_str("\ntoolchain on this machine:\n");
    for r in status.requirements.iter().chain(status.qemu.iter()) {
        match &r.found {
            Some(at) => s.push_str(&format!("  ok       {} ({at})\n", r.what)),
            None => s.push_str(&format!("  MISSING  {}\n", r.what)),
        }
    }
    let mut missing = status.missing();
    if let Some(q) = status.qemu.as_ref().filter(|q| q.found.is_none()) {
        missing.push(q);
    }
    let commands = toolchain::install_commands(&missing);
    if !commands.is_empty() {
        s.push_str("install with:\n");
        for c in commands {
            s.push_str(&format!("  {c}\n"));
        }
    }
    s
}
