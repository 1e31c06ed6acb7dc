//! `edgeslim deploy`: copy a bundle to a board over ssh, check the board can run it, unpack it
//! next to (then in place of) the previous deployment, and optionally run the benchmark there
//! and bring the JSON reports back.
//!
//! Order matters: the machine is checked (`uname -m`, the program loader) before anything is
//! copied, and a new deployment only replaces the old one after its checksums verified and
//! its binary started, so a failed deploy leaves the board as it was.

use super::bundle::{read_manifest, App, Manifest, SUMS};
use super::ssh::{last_line, quote, Ssh};
use super::TargetError;
use edgeslim_runtime::report::BenchReport;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub bundle: PathBuf,
    pub ssh: Ssh,
    /// Where bundles go on the board, relative to the remote home unless absolute.
    pub remote_dir: String,
    pub bench: bool,
    /// Local folder for the bench reports brought back.
    pub results: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Deployed {
    pub manifest: Manifest,
    /// What `uname -m` said on the board.
    pub machine: String,
    /// The bundle's directory on the board.
    pub remote_path: String,
    /// `edgeslim-rt --version` as the board ran it.
    pub runtime_version: String,
    /// Bench reports copied back (checked to be readable and for this board).
    pub reports: Vec<PathBuf>,
}

/// What the board told about itself before anything was copied.
#[derive(Debug, Clone, PartialEq)]
struct Facts {
    machine: String,
    loader: bool,
    sha256sum: bool,
}

fn parse_facts(stdout: &str) -> Option<Facts> {
    let get = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::trim)
    };
    Some(Facts {
        machine: get("machine")?.to_string(),
        loader: get("loader")? == "yes",
        sha256sum: get("sha256sum")? == "yes",
    })
}

/// Why the board cannot run the bundle, if it cannot.
fn refuse(m: &Manifest, f: &Facts) -> Option<String> {
    let p = &m.profile;
    if !p.uname_machines.contains(&f.machine) {
        return Some(format!(
            "the board is {} (uname -m) but the bundle is for {} ({}, runs on {})",
            f.machine,
            p.name,
            p.triple,
            p.uname_machines.join(", ")
        ));
    }
    if !f.loader {
        return Some(format!(
            "the board is {} but has no {}: its userland cannot run {} binaries (a 32-bit OS on a 64-bit kernel, or the reverse?)",
            f.machine,
            p.dynamic_loader.as_deref().unwrap_or("program loader"),
            p.triple
        ));
    }
    if !f.sha256sum {
        return Some("the board has no sha256sum (coreutils) to verify the bundle".into());
    }
    None
}

fn safe_remote_dir(dir: &str) -> bool {
    !dir.is_empty()
        && dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        && !dir.split('/').any(|part| part == "..")
}

pub fn deploy(opts: &DeployOptions) -> crate::Result<Deployed> {
    let manifest = read_manifest(&opts.bundle)?;
    let ssh = &opts.ssh;
    let refused = |reason: String| TargetError::Refused {
        dest: ssh.dest.clone(),
        reason,
    };
    if !safe_remote_dir(&opts.remote_dir) {
        return Err(refused(format!(
            "remote directory '{}' must be letters, digits, '.', '-', '_' and '/'",
            opts.remote_dir
        ))
        .into());
    }

    // 1. Is this the right machine? Nothing is copied before we know.
    // A static build needs no loader: `[ -e / ]` is always true.
    let loader = manifest.profile.dynamic_loader.as_deref().unwrap_or("/");
    let probe = format!(
        "echo machine=$(uname -m)\n\
         if [ -e {loader} ]; then echo loader=yes; else echo loader=no; fi\n\
         if command -v sha256sum >/dev/null 2>&1; then echo sha256sum=yes; else echo sha256sum=no; fi\n",
        loader = quote(loader)
    );
    let out = ssh.script(&probe)?;
    let facts = parse_facts(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        ssh.failed(&format!(
            "the board did not answer the probe ({})",
            last_line(&out.stderr).unwrap_or_else(|| out.status.to_string())
        ))
    })?;
    if let Some(reason) = refuse(&manifest, &facts) {
        return Err(refused(reason).into());
    }

    // 2. Copy, unpack beside the old deployment, verify, start the binary once, swap.
    let base = opts.remote_dir.trim_end_matches('/').to_string();
    let name = &manifest.name;
    let upload = format!("{base}/.{name}.upload.tar.gz");
    let out = ssh.script(&format!("mkdir -p {}\n", quote(&base)))?;
    if !out.status.success() {
        return Err(ssh
            .failed(&format!(
                "cannot create {base}: {}",
                last_line(&out.stderr).unwrap_or_default()
            ))
            .into());
    }
    ssh.upload(&opts.bundle, &upload)?;
    let app_check = match manifest.app {
        App::Bench => String::new(),
        app => format!(
            "./bin/edgeslim-rt help {a} >/dev/null 2>&1 || fail \"this edgeslim-rt has no '{a}' command: bundle a runtime built with it\"\n",
            a = app.as_str()
        ),
    };
    let install = format!(
        r#"set -u
base={base}
case "$base" in /*) ;; *) base="$HOME/$base" ;; esac
name={name}
stage="$base/.$name.new"
upload="$base/.$name.upload.tar.gz"
fail() {{ echo "deploy: $*" >&2; rm -rf "$stage" "$upload"; exit 3; }}
rm -rf "$stage" && mkdir -p "$stage" || fail "cannot create $stage"
tar -xzf "$upload" -C "$stage" || fail "cannot unpack the bundle (disk full?)"
cd "$stage/$name" || fail "the bundle holds no $name/"
sha256sum -c --quiet {sums} >&2 || fail "checksums do not match after the copy"
version=$(./bin/edgeslim-rt --version 2>&1) || fail "the runtime does not start on this board: $version"
{app_check}cd "$base" || fail "cannot enter $base"
if [ -d "$name/results" ]; then mv "$name/results" ".$name.new/$name/results"; fi
rm -rf ".$name.old"
if [ -d "$name" ]; then mv "$name" ".$name.old"; fi
mv ".$name.new/$name" "$name" || fail "cannot move the new deployment in place"
rm -rf ".$name.old" ".$name.new" ".$name.upload.tar.gz"
echo "version=$version"
echo "path=$(pwd)/$name"
"#,
        base = quote(&base),
        name = quote(name),
        sums = SUMS,
    );
    let out = ssh.script(&install)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(ssh
            .failed(
                &last_line(&out.stderr)
                    .unwrap_or_else(|| format!("install failed ({})", out.status)),
            )
            .into());
    }
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let remote_path = field("path");
    let runtime_version = field("version");

    // 3. Optionally benchmark there and bring the reports home.
    let mut reports = Vec::new();
    if opts.bench {
        let out = ssh.script_live(&format!("cd {} && ./run.sh bench\n", quote(&remote_path)))?;
        if !out.status.success() {
            return Err(ssh
                .failed(&format!(
                    "the benchmark failed on the board ({}); its messages are above",
                    out.status
                ))
                .into());
        }
        std::fs::create_dir_all(&opts.results).map_err(|e| crate::Error::io(&opts.results, e))?;
        for model in &manifest.models {
            let stem = model
                .file
                .path
                .trim_start_matches("models/")
                .trim_end_matches(".onnx")
                .to_string();
            let local = opts
                .results
                .join(format!("{stem}.{}.json", manifest.profile.name));
            fetch_report(
                ssh,
                &format!("{remote_path}/results/{stem}.json"),
                &local,
                &manifest,
            )?;
            reports.push(local);
        }
    }
    Ok(Deployed {
        manifest,
        machine: facts.machine,
        remote_path,
        runtime_version,
        reports,
    })
}

/// Copy one report through a temporary file, then check it is a bench report of this board
/// before it takes its final name.
fn fetch_report(ssh: &Ssh, remote: &str, local: &Path, m: &Manifest) -> crate::Result<()> {
    let tmp = edgeslim_runtime::fsutil::temp_path_for(local);
    let result = (|| -> crate::Result<()> {
        ssh.download(remote, &tmp)?;
        let report = BenchReport::read(&tmp)?;
        let bad = |reason: String| TargetError::Bundle {
            path: local.to_path_buf(),
            reason,
        };
        if report.target_profile.as_deref() != Some(m.profile.name.as_str()) {
            return Err(bad(format!(
                "the board's report names target {:?}, expected {}",
                report.target_profile, m.profile.name
            ))
            .into());
        }
        if report.device.arch != m.profile.rust_arch() {
            return Err(bad(format!(
                "the board's report says arch {}, expected {}",
                report.device.arch,
                m.profile.rust_arch()
            ))
            .into());
        }
        std::fs::rename(&tmp, local).map_err(|e| crate::Error::io(local, e))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::builtin_named;

    fn manifest(target: &str) -> Manifest {
        let profile = builtin_named(target).unwrap();
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "name": "b", "created_by": "t", "app": "bench",
            "profile": profile,
            "binary": {"path": "bin/edgeslim-rt", "sha256": "", "size_bytes": 0},
            "binary_arch": "aarch64", "binary_max_glibc": null, "models": [],
            "input_shapes": [], "threads": 4
        }))
        .unwrap()
    }

    #[test]
    fn the_board_probe_parses() {
        let f = parse_facts("machine=aarch64\nloader=yes\nsha256sum=yes\n").unwrap();
        assert_eq!(f.machine, "aarch64");
        assert!(f.loader && f.sha256sum);
        assert!(parse_facts("Welcome to the board!\n").is_none());
    }

    #[test]
    fn wrong_machines_are_refused() {
        let pi = manifest("rpi4");
        let x86 = Facts {
            machine: "x86_64".into(),
            loader: false,
            sha256sum: true,
        };
        let why = refuse(&pi, &x86).unwrap();
        assert!(why.contains("x86_64") && why.contains("rpi4"), "{why}");
        // A 32-bit userland on a 64-bit kernel runs armv7 bundles, not aarch64 ones.
        let arm32 = manifest("rpi3-armv7");
        let mixed = Facts {
            machine: "aarch64".into(),
            loader: true,
            sha256sum: true,
        };
        assert!(refuse(&arm32, &mixed).is_none());
        let no_loader = Facts {
            loader: false,
            ..mixed
        };
        assert!(refuse(&pi, &no_loader)
            .unwrap()
            .contains("ld-linux-aarch64"));
    }

    #[test]
    fn remote_dirs_are_plain_paths() {
        assert!(safe_remote_dir("edgeslim"));
        assert!(safe_remote_dir("/opt/edgeslim"));
        assert!(!safe_remote_dir("../etc"));
        assert!(!safe_remote_dir("a b"));
        assert!(!safe_remote_dir(""));
    }
}
