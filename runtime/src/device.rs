//! Facts about the machine a benchmark ran on, read from /proc and /sys. A fact the machine
//! does not expose is `None` (null in JSON), never guessed.

use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThermalZone {
    pub zone: String,
    pub kind: Option<String>,
    pub temp_c: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Throttling {
    /// Where the reading came from.
    pub source: String,
    /// Raspberry Pi firmware flags (`get_throttled`), as the raw hex word.
    pub raw: Option<String>,
    pub under_voltage_now: Option<bool>,
    pub freq_capped_now: Option<bool>,
    pub throttled_now: Option<bool>,
    pub throttled_since_boot: Option<bool>,
    /// x86: sum over CPUs of the kernel's thermal throttle event counters.
    pub throttle_events: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceInfo {
    pub arch: String,
    pub os: String,
    pub kernel: Option<String>,
    pub hostname: Option<String>,
    pub cpu_model: Option<String>,
    /// Board name from the device tree (Raspberry Pi, Jetson), absent on PCs.
    pub board_model: Option<String>,
    pub cores: usize,
    pub mem_total_bytes: Option<u64>,
    pub governor: Option<String>,
    pub cur_freq_mhz: Vec<Option<f64>>,
    pub max_freq_mhz: Option<f64>,
    pub thermal_before: Vec<ThermalZone>,
    pub thermal_after: Vec<ThermalZone>,
    pub throttling_before: Option<Throttling>,
    pub throttling_after: Option<Throttling>,
    /// Set when the runtime itself runs under an emulator (qemu-user): timings mean nothing.
    pub emulated: bool,
}

fn read_trim(p: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| {
            s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                .to_string()
        })
        .filter(|s| !s.is_empty())
}

fn cpuinfo_field(cpuinfo: &str, keys: &[&str]) -> Option<String> {
    for key in keys {
        for line in cpuinfo.lines() {
            if let Some((k, v)) = line.split_once(':') {
                if k.trim() == *key && !v.trim().is_empty() {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

/// ARM /proc/cpuinfo has no model name on many kernels; map the part number of the cores we
/// target to its name.
fn arm_core_name(cpuinfo: &str) -> Option<String> {
    let part = cpuinfo_field(cpuinfo, &["CPU part"])?;
    let name = match part.to_lowercase().as_str() {
        "0xd03" => "Cortex-A53",
        "0xd04" => "Cortex-A35",
        "0xd05" => "Cortex-A55",
        "0xd07" => "Cortex-A57",
        "0xd08" => "Cortex-A72",
        "0xd09" => "Cortex-A73",
        "0xd0a" => "Cortex-A75",
        "0xd0b" => "Cortex-A76",
        "0xd41" => "Cortex-A78",
        "0xd42" => "Cortex-A78AE",
        "0xc07" => "Cortex-A7",
        "0xc09" => "Cortex-A9",
        _ => return Some(format!("ARM part {part}")),
    };
    Some(name.to_string())
}

pub fn thermal_zones() -> Vec<ThermalZone> {
    let mut zones = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/class/thermal") else {
        return zones;
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("thermal_zone"))
        })
        .collect();
    paths.sort();
    for p in paths {
        if let Some(milli) = read_trim(p.join("temp")).and_then(|t| t.parse::<f64>().ok()) {
            zones.push(ThermalZone {
                zone: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                kind: read_trim(p.join("type")),
                temp_c: milli / 1000.0,
            });
        }
    }
    zones
}

pub fn throttling() -> Option<Throttling> {
    // Raspberry Pi firmware exposes the same word `vcgencmd get_throttled` prints.
    for p in [
        "/sys/devices/platform/soc/soc:firmware/get_throttled",
        "/sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/get_throttled",
    ] {
        if let Some(raw) = read_trim(p) {
            let word = u64::from_str_radix(raw.trim_start_matches("0x"), 16).ok();
            let bit = |b: u32| word.map(|w| w & (1 << b) != 0);
            return Some(Throttling {
                source: p.to_string(),
                under_voltage_now: bit(0),
                freq_capped_now: bit(1),
                throttled_now: bit(2),
                throttled_since_boot: bit(18),
                raw: Some(raw),
                throttle_events: None,
            });
        }
    }
    // x86 kernels count thermal throttle events per core.
    let mut total = None;
    for cpu in 0..num_cpus() {
        let p = format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle/core_throttle_count");
        if let Some(v) = read_trim(&p).and_then(|s| s.parse::<u64>().ok()) {
            total = Some(total.unwrap_or(0) + v);
        }
    }
    total.map(|events| Throttling {
        source: "/sys/devices/system/cpu/cpu*/thermal_throttle/core_throttle_count".into(),
        raw: None,
        under_voltage_now: None,
        freq_capped_now: None,
        throttled_now: None,
        throttled_since_boot: None,
        throttle_events: Some(events),
    })
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn khz_to_mhz(s: Option<String>) -> Option<f64> {
    s.and_then(|v| v.parse::<f64>().ok()).map(|k| k / 1000.0)
}

/// The family of an architecture name as Rust (`std::env::consts::ARCH`) or the kernel
/// (`uname -m`, /proc/sys/kernel/arch) spells it.
fn arch_family(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" | "x86" | "i386" | "i486" | "i586" | "i686" => Some("x86"),
        "aarch64" | "arm64" | "arm" => Some("arm"),
        a if a.starts_with("armv") => Some("arm"),
        "riscv64" | "riscv32" => Some("riscv"),
        _ => None,
    }
}

/// Is this binary running under an emulator (qemu-user)? Then its timings are the emulator's
/// and must not be taken as board speed. Three witnesses, any one suffices:
/// - the kernel's own architecture (/proc/sys/kernel/arch) is another family than the build:
///   qemu-user fakes `uname` and, since qemu 8.2, /proc/cpuinfo for ARM guests, but not this;
///   an armv7 build on an aarch64 kernel (32-bit Raspberry Pi OS) is native, not emulated;
/// - an ARM build reading an x86 /proc/cpuinfo (qemu before 8.2 passes the host's through);
/// - QEMU_LD_PREFIX, which qemu-user takes instead of `-L`.
fn running_under_emulation(
    build_arch: &str,
    cpuinfo: &str,
    kernel_arch: Option<&str>,
    qemu_env: bool,
) -> bool {
    let kernel_differs = match (arch_family(build_arch), kernel_arch.and_then(arch_family)) {
        (Some(build), Some(kernel)) => build != kernel,
        _ => false,
    };
    let arm_build = arch_family(build_arch) == Some("arm");
    let x86_cpuinfo = ["GenuineIntel", "AuthenticAMD", "vendor_id"]
        .iter()
        .any(|m| cpuinfo.contains(m));
    kernel_differs || (arm_build && x86_cpuinfo) || qemu_env
}

impl DeviceInfo {
    /// Read everything but the "after" readings.
    pub fn probe() -> DeviceInfo {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo_field(&cpuinfo, &["model name", "Model name", "Processor"])
            .or_else(|| arm_core_name(&cpuinfo));
        let board_model = read_trim("/proc/device-tree/model")
            .or_else(|| cpuinfo_field(&cpuinfo, &["Model", "Hardware"]));
        let mem_total_bytes = fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        let cores = num_cpus();
        let cpufreq = |cpu: usize, f: &str| {
            read_trim(format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/{f}"))
        };
        DeviceInfo {
            arch: std::env::consts::ARCH.to_string(),
            os: std::env::consts::OS.to_string(),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            hostname: read_trim("/proc/sys/kernel/hostname"),
            cpu_model,
            board_model,
            cores,
            mem_total_bytes,
            governor: cpufreq(0, "scaling_governor"),
            cur_freq_mhz: (0..cores)
                .map(|c| khz_to_mhz(cpufreq(c, "scaling_cur_freq")))
                .collect(),
            max_freq_mhz: khz_to_mhz(cpufreq(0, "cpuinfo_max_freq")),
            thermal_before: thermal_zones(),
            thermal_after: Vec::new(),
            throttling_before: throttling(),
            throttling_after: None,
            emulated: running_under_emulation(
                std::env::consts::ARCH,
                &cpuinfo,
                read_trim("/proc/sys/kernel/arch").as_deref(),
                std::env::var_os("QEMU_LD_PREFIX").is_some(),
            ),
        }
    }

    /// Take the "after" readings once the benchmark is done.
    pub fn finish(&mut self) {
        self.thermal_after = thermal_zones();
        self.throttling_after = throttling();
    }
}

/// Peak resident set size of this process so far (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:")
}

/// Current resident set size (VmRSS), in bytes.
pub fn current_rss_bytes() -> Option<u64> {
    status_kb("VmRSS:")
}

fn status_kb(key: &str) -> Option<u64> {
    fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_part_numbers_name_the_core() {
        let pi4 = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n";
        assert_eq!(arm_core_name(pi4).as_deref(), Some("Cortex-A72"));
        assert_eq!(cpuinfo_field(pi4, &["model name"]), None);
    }

    #[test]
    fn emulation_is_seen_by_any_witness() {
        let x86_cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\n";
        // qemu >= 8.2 shows an ARM guest a made-up ARM cpuinfo: only the kernel tells.
        let qemu_arm_cpuinfo =
            "processor\t: 0\nBogoMIPS\t: 100.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd07\n";
        assert!(running_under_emulation(
            "aarch64",
            qemu_arm_cpuinfo,
            Some("x86_64"),
            false
        ));
        assert!(running_under_emulation(
            "arm",
            qemu_arm_cpuinfo,
            Some("x86_64"),
            false
        ));
        // qemu < 8.2 passes the host's cpuinfo through.
        assert!(running_under_emulation("aarch64", x86_cpuinfo, None, false));
        assert!(running_under_emulation("aarch64", "", None, true));
        // Native: a Pi 4, a 32-bit OS on a 64-bit kernel, an x86 PC.
        let pi_cpuinfo = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n";
        assert!(!running_under_emulation(
            "aarch64",
            pi_cpuinfo,
            Some("aarch64"),
            false
        ));
        assert!(!running_under_emulation(
            "arm",
            pi_cpuinfo,
            Some("aarch64"),
            false
        ));
        assert!(!running_under_emulation(
            "arm",
            pi_cpuinfo,
            Some("armv7l"),
            false
        ));
        assert!(!running_under_emulation(
            "x86_64",
            x86_cpuinfo,
            Some("x86_64"),
            false
        ));
        assert!(!running_under_emulation("aarch64", pi_cpuinfo, None, false));
    }

    #[test]
    fn probe_reads_this_machine() {
        let d = DeviceInfo::probe();
        assert_eq!(d.arch, std::env::consts::ARCH);
        assert!(d.cores >= 1);
        assert_eq!(d.cur_freq_mhz.len(), d.cores);
        assert!(peak_rss_bytes().unwrap() >= current_rss_bytes().unwrap() / 2);
    }
}
