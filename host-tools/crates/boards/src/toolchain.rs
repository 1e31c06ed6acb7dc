//! Can this machine build the runtime for a board? Looks for the Rust standard library of the
//! target, the cross linker and the target's C library, and says how to install what is
//! missing with the exact commands (Debian/Ubuntu; docs/boards.md).

use super::profile::Profile;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One thing the build needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    /// What it is, for people: "Rust standard library for aarch64-unknown-linux-gnu".
    pub what: String,
    /// Where it was found, or `None` when it is missing.
    pub found: Option<String>,
    pub fix: Fix,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fix {
    RustupTarget(String),
    Apt(Vec<String>),
}

/// The state of the toolchain for one profile.
#[derive(Debug, Clone)]
pub struct Status {
    pub target: String,
    pub triple: String,
    pub requirements: Vec<Requirement>,
    /// qemu-user, to run builds on this machine: not needed to build, reported separately.
    pub qemu: Option<Requirement>,
}

impl Status {
    pub fn missing(&self) -> Vec<&Requirement> {
        self.requirements
            .iter()
            .filter(|r| r.found.is_none())
            .collect()
    }

    pub fn ok(&self) -> bool {
        self.missing().is_empty()
    }

    /// The shell commands that install everything missing: one `rustup`, one `apt-get`.
    pub fn install_commands(&self) -> Vec<String> {
        install_commands(&self.missing())
    }
}

/// Merge fixes into as few commands as possible, in a stable order.
pub fn install_commands(missing: &[&Requirement]) -> Vec<String> {
    let mut triples: Vec<&str> = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    for r in missing {
        match &r.fix {
            Fix::RustupTarget(t) => {
                if !triples.contains(&t.as_str()) {
                    triples.push(t);
                }
            }
            Fix::Apt(pkgs) => {
                for p in pkgs {
                    if !packages.contains(&p.as_str()) {
                        packages.push(p);
                    }
                }
            }
        }
    }
    let mut commands = Vec::new();
    if !triples.is_empty() {
        commands.push(format!("rustup target add {}", triples.join(" ")));
    }
    if !packages.is_empty() {
        let sudo = if is_root() { "" } else { "sudo " };
        commands.push(format!("{sudo}apt-get install -y {}", packages.join(" ")));
    }
    commands
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Check everything `edgeslim build --target` needs for `profile`.
pub fn check(profile: &Profile) -> Status {
    let triple = &profile.triple;
    let tc = &profile.toolchain;
    let mut requirements = vec![Requirement {
        what: format!("Rust standard library for {triple}"),
        found: rust_std_dir(triple).map(|p| p.display().to_string()),
        fix: Fix::RustupTarget(triple.clone()),
    }];
    let linker = which(&tc.linker);
    requirements.push(Requirement {
        what: format!("linker and C compiler {}", tc.linker),
        found: linker.as_ref().map(|p| p.display().to_string()),
        fix: Fix::Apt(tc.debian_packages.clone()),
    });
    // The C library the linker links against (libc6-dev-*-cross): ask the linker itself, so
    // the check follows whatever sysroot it was configured with. Rust's musl targets bring
    // their own C library (self-contained), so they need none from the system.
    if !triple.ends_with("musl") {
        requirements.push(Requirement {
            what: format!("C library for {triple} (crt1.o)"),
            found: linker.as_ref().and_then(|l| c_runtime(l)),
            fix: Fix::Apt(tc.debian_packages.clone()),
        });
    }
    let qemu = (!tc.qemu.is_empty()).then(|| Requirement {
        what: format!("{} (runs {triple} builds on this machine)", tc.qemu),
        found: which(&tc.qemu).map(|p| p.display().to_string()),
        fix: Fix::Apt(vec!["qemu-user-static".into()]),
    });
    Status {
        target: profile.name.clone(),
        triple: triple.clone(),
        requirements,
        qemu,
    }
}

/// `rustc` as cargo would run it.
pub fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

/// `<sysroot>/lib/rustlib/<triple>/lib` when it holds a standard library.
fn rust_std_dir(triple: &str) -> Option<PathBuf> {
    let out = Command::new(rustc())
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(triple)
        .join("lib");
    let has_std = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("libstd-") && n.ends_with(".rlib")
        });
    has_std.then_some(dir)
}

/// Where the linker finds `crt1.o`; gcc echoes the bare name back when it has none.
fn c_runtime(linker: &Path) -> Option<String> {
    let out = Command::new(linker)
        .arg("-print-file-name=crt1.o")
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && Path::new(&path).is_absolute() && Path::new(&path).exists())
        .then_some(path)
}

/// The executable `name` would run as: a path as given, or the first match on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(fix: Fix) -> Requirement {
        Requirement {
            what: "x".into(),
            found: None,
            fix,
        }
    }

    #[test]
    fn commands_are_merged_and_deduplicated() {
        let a = req(Fix::RustupTarget("aarch64-unknown-linux-gnu".into()));
        let b = req(Fix::Apt(vec![
            "gcc-aarch64-linux-gnu".into(),
            "libc6-dev-arm64-cross".into(),
        ]));
        let c = req(Fix::Apt(vec![
            "gcc-aarch64-linux-gnu".into(),
            "libc6-dev-arm64-cross".into(),
        ]));
        let cmds = install_commands(&[&a, &b, &c]);
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0], "rustup target add aarch64-unknown-linux-gnu");
        assert!(cmds[1].ends_with("apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross"));
    }

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("no-such-tool-edgeslim").is_none());
    }
}
