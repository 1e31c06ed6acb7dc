//! Boards: the profiles in targets/, `edgeslim targets`, the toolchain check of `edgeslim
//! build` (with the exact install commands when something is missing), the board build
//! itself, bundles (checked, reproducible, and run end to end under qemu by their own run
//! script), and the share of the board's peak in the HTML report.

use edgeslim::boards::elf;
use edgeslim::onnx::model::SaveOptions;
use edgeslim_e2e::boards::{cross_runtime, kernel_mix, skipped, ARM_TARGETS, SKIP_CROSS};
use edgeslim_e2e::{assets, bin, run, run_ok, workspace};
use edgeslim_runtime::report::BenchReport;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// An error is one line on stderr, starts with the tool's name, and is not a panic.
fn assert_one_line_error(r: &edgeslim_e2e::Run) -> String {
    assert_ne!(r.code, 0, "expected a failure:\n{}", r.stdout);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("edgeslim: error: "), "{}", r.stderr);
    last
}

#[test]
fn targets_lists_every_profile_with_its_peak() {
    let out = run_ok("edgeslim", &["targets", "--json"]);
    let all: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let mut names: Vec<String> = all
        .iter()
        .map(|p| p["name"].as_str().unwrap().into())
        .collect();
    names.sort();
    let mut files: Vec<String> = std::fs::read_dir(workspace().join("targets"))
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".toml")
                .map(String::from)
        })
        .collect();
    files.sort();
    assert_eq!(names, files);
    for want in [
        "rpi3-armv7",
        "rpi3-aarch64",
        "rpi4",
        "rpi5",
        "jetson-nano",
        "jetson-orin-nano",
        "x86_64",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing");
    }
    for p in &all {
        let Some(peak) = p["peak"].as_object() else {
            continue;
        };
        let computed = p["cores"].as_f64().unwrap()
            * p["clock_ghz"].as_f64().unwrap()
            * peak["fma_lanes_fp32"].as_f64().unwrap()
            * 2.0;
        let stated = peak["fp32_gflops"].as_f64().unwrap();
        assert!(
            (computed - stated).abs() < 1e-6 * stated,
            "{}: {computed} vs {stated}",
            p["name"]
        );
    }
    let peak = |n: &str| {
        all.iter().find(|p| p["name"] == n).unwrap()["peak"]["fp32_gflops"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(peak("rpi4"), 48.0);
    assert!((peak("rpi5") - 154.0).abs() < 1.0);
    assert!((peak("jetson-nano") - 46.0).abs() < 1.0);
    assert!((144.0..=163.2).contains(&peak("jetson-orin-nano")));
    let armv7 = all.iter().find(|p| p["name"] == "rpi3-armv7").unwrap();
    assert_eq!(armv7["tract"]["env"]["TRACT_CPU_ARM32_NEON"], "true");
    assert_eq!(armv7["triple"], "armv7-unknown-linux-gnueabihf");

    let table = run_ok("edgeslim", &["targets"]).stdout;
    for n in &names {
        assert!(table.contains(n.as_str()), "{n} not in the table:\n{table}");
    }
}

#[test]
fn targets_shows_one_board_with_its_toolchain() {
    let out = run_ok("edgeslim", &["targets", "rpi3-armv7"]).stdout;
    for want in [
        "armv7-unknown-linux-gnueabihf",
        "38.4 GFLOP/s = 4 cores × 1.2 GHz × 4 lanes × 2",
        "TRACT_CPU_ARM32_NEON=true",
        "toolchain on this machine:",
        "arm-linux-gnueabihf-gcc",
        "get_throttled",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn unknown_targets_list_the_known_ones() {
    for args in [
        vec!["build", "--target", "rpi9"],
        vec!["targets", "rpi9"],
        vec!["bundle", "--target", "rpi9", "m.onnx", "-o", "b.tar.gz"],
    ] {
        let line = assert_one_line_error(&run("edgeslim", &args));
        assert!(line.contains("unknown target 'rpi9'"), "{line}");
        assert!(
            line.contains("rpi4") && line.contains("jetson-orin-nano"),
            "{line}"
        );
    }
}

#[test]
fn a_missing_toolchain_prints_the_exact_install_commands() {
    let dir = tempfile::tempdir().unwrap();
    // A board whose triple this machine surely cannot build for.
    let riscv = std::fs::read_to_string(workspace().join("targets/rpi4.toml"))
        .unwrap()
        .replace("name = \"rpi4\"", "name = \"riscv-board\"")
        .replace("aarch64-unknown-linux-gnu", "riscv64gc-unknown-linux-gnu")
        .replace(
            "target_cpu = \"cortex-a72\"",
            "target_cpu = \"generic-rv64\"",
        )
        .replace("aarch64-linux-gnu-gcc", "riscv64-linux-gnu-gcc")
        .replace("gcc-aarch64-linux-gnu", "gcc-riscv64-linux-gnu")
        .replace("libc6-dev-arm64-cross", "libc6-dev-riscv64-cross");
    let profile = dir.path().join("riscv-board.toml");
    std::fs::write(&profile, riscv).unwrap();
    let r = run("edgeslim", &["build", "--target", s(&profile)]);
    let line = assert_one_line_error(&r);
    for want in [
        "rustup target add riscv64gc-unknown-linux-gnu",
        "apt-get install -y gcc-riscv64-linux-gnu libc6-dev-riscv64-cross",
    ] {
        assert!(line.contains(want), "{line}");
        assert!(
            r.stderr.lines().any(|l| l.trim().ends_with(want)),
            "own line for {want}:\n{}",
            r.stderr
        );
    }

    // The linker missing from PATH (everything else found through RUSTC).
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let rustc = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("bin/rustc");
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(bin("edgeslim"))
        .args(["build", "--target", "rpi4", "--check"])
        .env("PATH", &empty)
        .env("RUSTC", &rustc)
        .output()
        .unwrap();
    let r: edgeslim_e2e::Run = out.into();
    let line = assert_one_line_error(&r);
    assert!(
        line.contains("linker and C compiler aarch64-linux-gnu-gcc"),
        "{line}"
    );
    assert!(
        line.contains("apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
        "{line}"
    );
}

#[test]
fn the_ci_toolchain_is_complete_and_builds_stripped_board_binaries() {
    if skipped(SKIP_CROSS, "the cross toolchain check") {
        return;
    }
    for target in ARM_TARGETS {
        let out = run_ok("edgeslim", &["build", "--target", target, "--check"]).stdout;
        assert!(out.contains("is complete"), "{out}");
        let rt = cross_runtime(target).expect("not skipped");
        let b = &rt.built;
        assert_eq!(b["target"], target);
        assert_eq!(b["triple"], rt.profile.triple.as_str());
        assert_eq!(b["stripped"], true);
        // The build records the opt-levels it compiled with (the qemu profile: 1).
        assert_eq!(b["opt_levels"]["profile"], "1", "{b}");
        let info = elf::read(&rt.binary).unwrap();
        assert_eq!(info.arch, rt.profile.rust_arch());
        assert!(info.stripped);
        assert_eq!(
            info.interpreter.as_deref(),
            rt.profile.dynamic_loader.as_deref()
        );
        assert_eq!(
            b["size_bytes"].as_u64().unwrap(),
            std::fs::metadata(&rt.binary).unwrap().len()
        );
        // A profile that packs relocations (rpi4) links with rust-lld: the ELF says so by
        // asking for GLIBC_ABI_DT_RELR, read as glibc 2.36, which the profile's board ships.
        if rt.profile.toolchain.pack_relative_relocs {
            assert!(
                info.max_glibc >= Some((2, 36)),
                "{target}: RELR not packed? {:?}",
                info.max_glibc
            );
        }
        eprintln!(
            "{target}: {} bytes ({} profile, default features), needs glibc {}",
            b["size_bytes"], b["cargo_profile"], b["max_glibc"]
        );
    }
}

/// Unpack with the system tar, as a board would.
fn untar(bundle: &Path, into: &Path) {
    let ok = Command::new("tar")
        .arg("-xzf")
        .arg(bundle)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(ok.success());
}

fn save_model(dir: &Path, name: &str, m: edgeslim::onnx::OnnxModel) -> PathBuf {
    let p = dir.join(format!("{name}.onnx"));
    m.save(&p, &SaveOptions::default()).unwrap();
    p
}

#[test]
fn a_pi_bundle_is_complete_reproducible_and_runs_under_qemu() {
    let Some(rt) = cross_runtime("rpi4") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cls = assets().ppocr_cls();
    let mix = save_model(dir.path(), "kernel_mix", kernel_mix());
    let make = |out: &Path| {
        let out = Command::new(bin("edgeslim"))
            .args(["bundle", "--target", "rpi4", "--binary", s(&rt.binary)])
            .args([s(&cls), s(&mix)])
            .args([
                "--input-shape",
                "x=1,3,48,192",
                "--runs",
                "3",
                "--warmup",
                "1",
                "--threads",
                "1",
            ])
            .arg("-o")
            .arg(out)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        let r: edgeslim_e2e::Run = out.into();
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    };
    let bundle = dir.path().join("cls-rpi4.tar.gz");
    let printed = make(&bundle).stdout;
    assert!(
        printed.contains("edgeslim-rpi4-bench/bin/edgeslim-rt"),
        "{printed}"
    );
    let again = dir.path().join("again.tar.gz");
    make(&again);
    assert_eq!(
        std::fs::read(&bundle).unwrap(),
        std::fs::read(&again).unwrap(),
        "same inputs, same bytes"
    );

    let unpacked = dir.path().join("board");
    std::fs::create_dir(&unpacked).unwrap();
    untar(&bundle, &unpacked);
    let root = unpacked.join("edgeslim-rpi4-bench");
    for f in [
        "bin/edgeslim-rt",
        "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "models/kernel_mix.onnx",
        "config.env",
        "run.sh",
        "edgeslim.service",
        "README.md",
        "bundle.json",
        "SHA256SUMS",
    ] {
        assert!(root.join(f).is_file(), "{f} missing from the bundle");
    }
    let sums = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(sums.success(), "SHA256SUMS verifies");
    assert_eq!(
        std::fs::read(root.join("bin/edgeslim-rt")).unwrap(),
        std::fs::read(&rt.binary).unwrap()
    );
    assert_eq!(
        std::fs::read(root.join("models/kernel_mix.onnx")).unwrap(),
        std::fs::read(&mix).unwrap()
    );

    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(manifest["app"], "bench");
    assert_eq!(manifest["profile"]["name"], "rpi4");
    assert_eq!(manifest["binary_arch"], "aarch64");
    assert_eq!(manifest["threads"], 1);
    let shapes: Vec<&Value> = manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["input_shapes"][0])
        .collect();
    assert_eq!(
        shapes,
        ["x=1,3,48,192", "x=1,6,19,23"],
        "the given shape fixes only the dynamic model"
    );
    let config = std::fs::read_to_string(root.join("config.env")).unwrap();
    assert!(config.contains("TRACT_CPU_AARCH64_KIND=a72"), "{config}");
    let unit = std::fs::read_to_string(root.join("edgeslim.service")).unwrap();
    assert!(
        unit.contains("Type=oneshot") && unit.contains("EnvironmentFile=@BUNDLE_DIR@/config.env")
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("Raspberry Pi 4") && readme.contains("48 GFLOP/s"),
        "{readme}"
    );

    let run_sh = |args: &[&str], runner: bool| -> edgeslim_e2e::Run {
        let mut c = Command::new(root.join("run.sh"));
        c.args(args).current_dir(dir.path());
        if runner {
            c.env("EDGESLIM_RUNNER", rt.runner());
        }
        c.output().unwrap().into()
    };
    // On this x86 machine without an emulator the script refuses.
    let refused = run_sh(&["bench"], false);
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("this bundle is for rpi4 (aarch64), this machine is x86_64"),
        "{}",
        refused.stderr
    );
    // Through qemu: the checks pass and the benchmark writes a report per model.
    let check = run_sh(&["check"], true);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(check.stdout.contains("edgeslim-rt"), "{}", check.stdout);
    let bench = run_sh(&[], true);
    assert_eq!(bench.code, 0, "{}\n{}", bench.stdout, bench.stderr);
    for (stem, macs_model) in [
        ("ch_ppocr_mobile_v2.0_cls_infer", &cls),
        ("kernel_mix", &mix),
    ] {
        let r = BenchReport::read(&root.join(format!("results/{stem}.json"))).unwrap();
        assert_eq!(r.target_profile.as_deref(), Some("rpi4"));
        assert_eq!(r.device.arch, "aarch64");
        assert!(r.device.emulated);
        assert_eq!(r.label, format!("{stem}@rpi4"));
        assert_eq!(r.threads, 1);
        assert_eq!(r.latency.runs, 3);
        assert!(r
            .model
            .path
            .ends_with(macs_model.file_name().unwrap().to_str().unwrap()));
    }

    // A damaged file is caught.
    let model = root.join("models/kernel_mix.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let damaged = run_sh(&["check"], true);
    assert_ne!(damaged.code, 0);
    assert!(
        damaged.stderr.contains("checksums do not match"),
        "{}",
        damaged.stderr
    );
}

/// The board half of examples/live-tracking: the zoo's pruned tracker pair bundled with
/// `--app track`, run by the bundle's own `run.sh track` under qemu with the settings a user
/// edits in config.env; it must load both graphs, serve the page and track.
#[test]
fn a_tracker_bundle_serves_and_tracks_under_qemu() {
    use edgeslim::data::tracking::{write_otb_sequence_with, Photos, SequenceConfig};
    use edgeslim_e2e::live::LiveTracker;
    let Some(rt) = cross_runtime("rpi4") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let photos = Photos::open(assets()).unwrap();
    write_otb_sequence_with(
        &photos,
        dir.path(),
        "seq",
        4242,
        &SequenceConfig::new(320, 240, 8),
    )
    .unwrap();
    let seq = dir.path().join("seq");
    let zoo = workspace().join("models/siamese-tracker-p25");
    let bundle = dir.path().join("track-rpi4.tar.gz");
    let r = run_ok(
        "edgeslim",
        &[
            "bundle",
            "--target",
            "rpi4",
            "--app",
            "track",
            "--binary",
            s(&rt.binary),
            // The tracker's folder: the bundle ships its two graphs.
            s(&zoo),
            "--source",
            s(&seq),
            "--serve",
            "127.0.0.1:0",
            "--threads",
            "1",
            "-o",
            s(&bundle),
        ],
    );
    assert!(r.stdout.contains("edgeslim-rpi4-track"), "{}", r.stdout);
    untar(&bundle, dir.path());
    let root = dir.path().join("edgeslim-rpi4-track");
    // What the walkthrough tells a user to edit: extra flags for `edgeslim-rt track`.
    let config = root.join("config.env");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("EDGESLIM_APP=track"), "{text}");
    std::fs::write(
        &config,
        text.replace(
            "EDGESLIM_EXTRA_ARGS=\"\"",
            "EDGESLIM_EXTRA_ARGS=\"--max-frames 8 --scales 1\"",
        ),
    )
    .unwrap();
    let mut cmd = Command::new(root.join("run.sh"));
    cmd.env("EDGESLIM_RUNNER", rt.runner());
    let live = LiveTracker::spawn(cmd);
    let st = live.wait_state(std::time::Duration::from_secs(240), |st| {
        st["frame"].as_u64() == Some(8)
    });
    assert_eq!(st["frame"], 8, "{st}");
    assert_eq!(st["source_state"], "live", "{st}");
    assert!(st["state"] == "tracking" || st["state"] == "lost", "{st}");
    assert!(st["search_ms"].as_f64().unwrap() > 0.0, "{st}");
    let (head, page) = live.http("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(String::from_utf8_lossy(&page).contains("/stream.mjpg"));
}

#[test]
fn bundles_refuse_wrong_binaries_and_unrunnable_models() {
    let dir = tempfile::tempdir().unwrap();
    let cls = assets().ppocr_cls();
    let out = dir.path().join("b.tar.gz");
    // The x86 runtime is no runtime for a Pi.
    let x86 = bin("edgeslim-rt");
    let r = run(
        "edgeslim",
        &[
            "bundle",
            "--target",
            "rpi4",
            "--binary",
            s(&x86),
            s(&cls),
            "--input-shape",
            "x=1,3,48,192",
            "-o",
            s(&out),
        ],
    );
    let line = assert_one_line_error(&r);
    assert!(
        line.contains("not a runtime for rpi4: built for x86_64"),
        "{line}"
    );
    assert!(!out.exists());
    // A file that is no ONNX model is refused here, not on the board.
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"not a model").unwrap();
    let r = run(
        "edgeslim",
        &[
            "bundle",
            "--target",
            "x86_64",
            "--binary",
            s(&x86),
            s(&junk),
            "-o",
            s(&out),
        ],
    );
    let line = assert_one_line_error(&r);
    assert!(line.contains("junk.onnx"), "{line}");
    assert!(!out.exists());
    // A track bundle needs both graphs of a tracker, or `run.sh track` would fail on the board.
    let zoo = workspace().join("models/siamese-tracker-p25");
    let track_bundle = |models: &[&Path]| {
        let mut args = vec!["bundle", "--target", "x86_64", "--app", "track"];
        args.extend(["--binary", s(&x86)]);
        for m in models {
            args.extend([s(m)]);
        }
        args.extend(["-o", s(&out)]);
        run("edgeslim", &args)
    };
    let line = assert_one_line_error(&track_bundle(&[cls.as_path()]));
    assert!(line.contains("the track app needs a tracker"), "{line}");
    let line = assert_one_line_error(&track_bundle(&[zoo.join("template.onnx").as_path()]));
    assert!(
        line.contains("the other graph of the tracker too: search.onnx"),
        "{line}"
    );
    let line = assert_one_line_error(&track_bundle(&[dir.path()]));
    assert!(line.contains("must be a tracker"), "{line}");
    assert!(!out.exists());
    // A dynamic input left open says which flag fixes it.
    let r = run(
        "edgeslim",
        &[
            "bundle",
            "--target",
            "x86_64",
            "--binary",
            s(&x86),
            s(&cls),
            "-o",
            s(&out),
        ],
    );
    let line = assert_one_line_error(&r);
    assert!(line.contains("--input-shape x="), "{line}");
    // A shape that fixes nothing is a typo.
    let r = run(
        "edgeslim",
        &[
            "bundle",
            "--target",
            "x86_64",
            "--binary",
            s(&x86),
            s(&cls),
            "--input-shape",
            "x=1,3,48,192",
            "--input-shape",
            "y=1,2",
            "-o",
            s(&out),
        ],
    );
    let line = assert_one_line_error(&r);
    assert!(
        line.contains("--input-shape y=1,2: fixes no dynamic input"),
        "{line}"
    );
    assert!(!out.exists());
}

#[test]
fn the_report_shows_the_share_of_the_boards_fp32_peak() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host.json");
    run_ok(
        "edgeslim-rt",
        &[
            "bench",
            s(&assets().ppocr_cls()),
            "--input-shape",
            "x=1,3,48,192",
            "--runs",
            "5",
            "--target",
            "x86_64",
            "--json",
            s(&host),
        ],
    );
    // The same run as a Pi 4 would have reported it (arch and profile; not emulated).
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&host).unwrap()).unwrap();
    v["target_profile"] = "rpi4".into();
    v["device"]["arch"] = "aarch64".into();
    let pi = dir.path().join("pi.json");
    std::fs::write(&pi, serde_json::to_string(&v).unwrap()).unwrap();
    v["target_profile"] = "my-own-board".into();
    let own = dir.path().join("own.json");
    std::fs::write(&own, serde_json::to_string(&v).unwrap()).unwrap();
    let html = dir.path().join("r.html");
    run_ok(
        "edgeslim",
        &["report", s(&host), s(&pi), s(&own), "-o", s(&html)],
    );
    let page = std::fs::read_to_string(&html).unwrap();
    let achieved = BenchReport::read(&pi)
        .unwrap()
        .profile
        .unwrap()
        .achieved_gflops;
    let want = format!(
        "{:.1}% <span class=\"note\">of 48 GFLOP/s (rpi4); 1 of 4 cores ran",
        achieved / 48.0 * 100.0
    );
    assert!(
        page.contains("Share of the board&#39;s fp32 peak"),
        "row missing"
    );
    assert!(page.contains(&want), "missing {want:?}");
    assert!(page.contains("x86_64 states no peak"));
    assert!(page.contains("no built-in profile &#39;my-own-board&#39;"));
}
