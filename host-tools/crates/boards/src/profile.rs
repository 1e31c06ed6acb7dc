//! Board profiles: one TOML per board in the repository's `targets/` (docs/boards.md).
//!
//! The profiles are compiled into the binary, so `edgeslim targets`, `edgeslim report` and the
//! rest work from any directory. A path to a TOML file of the same shape names a board of one's
//! own (`edgeslim build --target ./myboard.toml`).

use super::TargetError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything edgeslim knows about one board. Field names are the TOML keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What `--target` takes, and what bench reports record as `target_profile`.
    pub name: String,
    pub board: String,
    pub soc: String,
    /// The OS the profile was written for (the C library of the build must not be newer).
    pub os: String,
    /// The Rust target triple the runtime is built for.
    pub triple: String,
    /// `-C target-cpu=` for the build.
    pub target_cpu: String,
    /// What `uname -m` may print on a machine that runs this build.
    pub uname_machines: Vec<String>,
    /// The program interpreter of the build; its presence on the board tells a matching
    /// userland. Absent for static builds (musl triples), which need none.
    pub dynamic_loader: Option<String>,
    /// The C library version of the board's OS: a build needing a newer one cannot start there.
    pub glibc: Option<String>,
    pub cpu: String,
    /// Absent for profiles that stand for many machines (x86_64).
    pub cores: Option<u32>,
    pub clock_ghz: Option<f64>,
    /// RAM of the board's variants.
    #[serde(default)]
    pub ram_gb: Vec<u32>,
    /// Half-precision arithmetic on the CPU (ARMv8.2 FEAT_FP16), not just conversion.
    pub fp16_arithmetic: bool,
    pub peak: Option<Peak>,
    #[serde(default)]
    pub tract: TractHints,
    #[serde(default)]
    pub sensors: Sensors,
    pub toolchain: Toolchain,
}

/// Theoretical fp32 peak of the whole CPU: cores × GHz × fp32 FMA lanes per cycle × 2.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Peak {
    /// fp32 lanes of fused multiply-add one core retires per cycle.
    pub fma_lanes_fp32: u32,
    pub fp32_gflops: f64,
    /// The arithmetic behind the number, for people.
    pub formula: String,
}

/// Environment for tract-linalg's kernel selection (set by the run script and the qemu tests).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TractHints {
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Where the board exposes temperatures, throttling and power: notes for people, since the
/// runtime's device probe reads the generic places itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sensors {
    #[serde(default)]
    pub thermal: Vec<String>,
    #[serde(default)]
    pub throttling: Vec<String>,
    #[serde(default)]
    pub power: Vec<String>,
}

/// How to cross-compile for the board on a Debian/Ubuntu host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Toolchain {
    /// The C compiler driver that links (and assembles tract's kernels).
    pub linker: String,
    /// The packages that provide the linker and the target's C library.
    pub debian_packages: Vec<String>,
    /// The target's root (qemu's `-L`).
    pub sysroot: String,
    /// The qemu-user binary that runs the build on this machine; empty for native builds.
    #[serde(default)]
    pub qemu: String,
    /// Link with the Rust toolchain's own `rust-lld` (through the C driver's `-fuse-ld=lld`)
    /// instead of the cross binutils' ld, for the two size options below.
    #[serde(default)]
    pub rust_lld: bool,
    /// lld's identical code folding (`--icf=all`): one copy of byte-identical functions.
    #[serde(default)]
    pub icf: bool,
    /// RELR-packed relative relocations (`-z pack-relative-relocs`): the position-independent
    /// binary keeps ASLR without 0.8 MB of `.rela.dyn`; the board's glibc must be ≥ 2.36.
    #[serde(default)]
    pub pack_relative_relocs: bool,
}

/// The profiles shipped in targets/, compiled in. A unit test checks this list against the
/// directory, so a new TOML there cannot be forgotten here.
const BUILTIN: &[(&str, &str)] = &[
    (
        "jetson-nano",
        include_str!("../../../../targets/jetson-nano.toml"),
    ),
    (
        "jetson-orin-nano",
        include_str!("../../../../targets/jetson-orin-nano.toml"),
    ),
    (
        "rpi3-aarch64",
        include_str!("../../../../targets/rpi3-aarch64.toml"),
    ),
    (
        "rpi3-armv7",
        include_str!("../../../../targets/rpi3-armv7.toml"),
    ),
    ("rpi4", include_str!("../../../../targets/rpi4.toml")),
    ("rpi5", include_str!("../../../../targets/rpi5.toml")),
    ("x86_64", include_str!("../../../../targets/x86_64.toml")),
];

impl Profile {
    /// Parse and check one profile; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, TargetError> {
        let p: Profile = toml::from_str(text).map_err(|e| TargetError::Profile {
            origin: origin.to_string(),
            reason: e.message().to_string(),
        })?;
        p.validate().map_err(|reason| TargetError::Profile {
            origin: origin.to_string(),
            reason,
        })?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "name '{}' must be letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.triple.split('-').count() < 3 {
            return Err(format!("triple '{}' is not a target triple", self.triple));
        }
        if let Some(v) = &self.glibc {
            if super::elf::parse_version(v).is_none() {
                return Err(format!("glibc = '{v}' is not a version like \"2.36\""));
            }
        }
        let t = &self.toolchain;
        if (t.icf || t.pack_relative_relocs) && !t.rust_lld {
            return Err(
                "toolchain.icf and toolchain.pack_relative_relocs need toolchain.rust_lld".into(),
            );
        }
        if t.pack_relative_relocs {
            let ok = self
                .glibc
                .as_deref()
                .and_then(super::elf::parse_version)
                .is_some_and(|v| v >= (2, 36));
            if !ok {
                return Err(
                    "toolchain.pack_relative_relocs needs glibc ≥ 2.36 on the board (set glibc)"
                        .into(),
                );
            }
        }
        if self.uname_machines.is_empty() {
            return Err("uname_machines is empty".into());
        }
        if let Some(peak) = &self.peak {
            let (Some(cores), Some(ghz)) = (self.cores, self.clock_ghz) else {
                return Err("[peak] needs cores and clock_ghz".into());
            };
            let computed = peak_gflops(cores, ghz, peak.fma_lanes_fp32);
            // A typo in one of the four numbers must not slip into every report.
            if (computed - peak.fp32_gflops).abs() > 0.005 * computed {
                return Err(format!(
                    "peak.fp32_gflops = {} but {cores} cores × {ghz} GHz × {} lanes × 2 = {computed:.2}",
                    peak.fp32_gflops, peak.fma_lanes_fp32
                ));
            }
        }
        Ok(())
    }

    /// The architecture as Rust (and bench reports' `device.arch`) name it.
    pub fn rust_arch(&self) -> &str {
        let first = self.triple.split('-').next().unwrap_or("");
        if first.starts_with("arm") || first.starts_with("thumb") {
            "arm"
        } else if first == "i686" || first == "i586" {
            "x86"
        } else {
            first
        }
    }

    /// The fp32 peak in GFLOP/s, when the profile states one.
    pub fn peak_gflops(&self) -> Option<f64> {
        self.peak.as_ref().map(|p| p.fp32_gflops)
    }

    /// The board's glibc as (major, minor).
    pub fn glibc_version(&self) -> Option<(u32, u32)> {
        self.glibc.as_deref().and_then(super::elf::parse_version)
    }

    /// `KEY=VALUE` pairs of the tract hints, sorted.
    pub fn tract_env(&self) -> Vec<(String, String)> {
        self.tract
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// cores × GHz × fp32 FMA lanes per cycle × 2 FLOP per FMA.
pub fn peak_gflops(cores: u32, ghz: f64, lanes: u32) -> f64 {
    cores as f64 * ghz * lanes as f64 * 2.0
}

/// The built-in profiles, sorted by name.
pub fn builtin() -> Result<Vec<Profile>, TargetError> {
    BUILTIN
        .iter()
        .map(|(file, text)| Profile::parse(text, &format!("targets/{file}.toml")))
        .collect()
}

/// Names of the built-in profiles.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// A built-in profile by name, if there is one (no error: reports use this for JSON that may
/// name a board of someone else's).
pub fn builtin_named(name: &str) -> Option<Profile> {
    let (file, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
    Profile::parse(text, &format!("targets/{file}.toml")).ok()
}

/// What `--target` takes: a built-in profile name, or a path to a profile TOML.
pub fn find(target: &str) -> Result<Profile, TargetError> {
    let looks_like_path = target.ends_with(".toml") || target.contains('/');
    if looks_like_path {
        let path = Path::new(target);
        let text = std::fs::read_to_string(path).map_err(|e| TargetError::Profile {
            origin: target.to_string(),
            reason: e.to_string(),
        })?;
        return Profile::parse(&text, target);
    }
    builtin_named(target).ok_or_else(|| TargetError::UnknownTarget {
        name: target.to_string(),
        known: builtin_names().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_targets_is_built_in_and_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../targets");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".toml").map(str::to_string)
            })
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, builtin_names(), "targets/*.toml vs BUILTIN");
        for p in builtin().unwrap() {
            assert!(
                builtin_names().contains(&p.name.as_str()),
                "{}: name must match the file name",
                p.name
            );
        }
    }

    #[test]
    fn peaks_follow_the_formula() {
        let by_name = |n: &str| builtin_named(n).unwrap().peak_gflops().unwrap();
        assert_eq!(by_name("rpi4"), 48.0);
        assert!((by_name("rpi5") - 153.6).abs() < 1e-9);
        assert!((by_name("jetson-nano") - 45.76).abs() < 1e-9);
        assert_eq!(by_name("jetson-orin-nano"), 144.0);
        assert!(builtin_named("x86_64").unwrap().peak.is_none());
    }

    #[test]
    fn a_wrong_peak_is_refused() {
        let text = include_str!("../../../../targets/rpi4.toml").replace("48.0", "50.0");
        let err = Profile::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("= 48.00"), "{err}");
    }

    #[test]
    fn relr_needs_a_new_enough_glibc_and_rust_lld() {
        let rpi4 = include_str!("../../../../targets/rpi4.toml");
        let old = rpi4.replace("glibc = \"2.36\"", "glibc = \"2.31\"");
        let err = Profile::parse(&old, "old.toml").unwrap_err().to_string();
        assert!(err.contains("glibc ≥ 2.36"), "{err}");
        let no_lld = rpi4.replace("rust_lld = true", "rust_lld = false");
        let err = Profile::parse(&no_lld, "x.toml").unwrap_err().to_string();
        assert!(err.contains("need toolchain.rust_lld"), "{err}");
    }

    #[test]
    fn arches_match_rust_names() {
        assert_eq!(builtin_named("rpi4").unwrap().rust_arch(), "aarch64");
        assert_eq!(builtin_named("rpi3-armv7").unwrap().rust_arch(), "arm");
        assert_eq!(builtin_named("x86_64").unwrap().rust_arch(), "x86_64");
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = find("rpi9").unwrap_err().to_string();
        assert!(err.contains("rpi9") && err.contains("rpi4") && err.contains("jetson-nano"));
    }
}
