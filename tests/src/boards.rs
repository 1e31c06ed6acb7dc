//! Helpers for the board tests: the cross-built runtimes and qemu-user to run them, a model
//! that exercises the ARM matrix kernels, and a throwaway sshd on 127.0.0.1.
//!
//! The ARM runtimes come from `edgeslim build --profile qemu --target-dir <target>/cross`
//! (`<target>` is `$CARGO_TARGET_DIR`, or `target/` in the workspace), the same command
//! `.ci/run` runs before `cargo test`, so here it is a no-op; on a developer's
//! machine it builds them the first time. Without the cross toolchain the tests fail with the
//! commands that install it. Only an explicit EDGESLIM_SKIP_CROSS=1 (or EDGESLIM_SKIP_SSHD=1
//! for the ssh tests) skips them, and says so; `.ci/run` never sets either.

use crate::{bin, models::Weights, workspace};
use edgeslim::boards::profile::{builtin_named, Profile};
use edgeslim::onnx::builder::GraphBuilder;
use edgeslim::onnx::node::{int, ints};
use edgeslim::onnx::OnnxModel;
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SKIP_CROSS: &str = "EDGESLIM_SKIP_CROSS";
pub const SKIP_SSHD: &str = "EDGESLIM_SKIP_SSHD";
/// The cargo profile of the qemu test builds: release without LTO (workspace Cargo.toml).
pub const CROSS_PROFILE: &str = "qemu";
/// The board profiles the qemu tests run, one per ARM architecture.
pub const ARM_TARGETS: [&str; 2] = ["rpi4", "rpi3-armv7"];

/// True (and says so on stderr) when the developer opted out with `VAR=1`.
pub fn skipped(var: &str, what: &str) -> bool {
    let skip = std::env::var(var).is_ok_and(|v| v == "1");
    if skip {
        eprintln!("SKIPPED {what}: {var}=1 is set");
    }
    skip
}

/// A runtime built for a board, and how to run it on this machine.
#[derive(Debug, Clone)]
pub struct CrossRuntime {
    pub profile: Profile,
    pub binary: PathBuf,
    /// What `edgeslim build --json` said about the build.
    pub built: serde_json::Value,
}

impl CrossRuntime {
    /// `qemu-<arch>-static -L <sysroot> edgeslim-rt`, with the profile's tract hints.
    pub fn command(&self) -> Command {
        let tc = &self.profile.toolchain;
        let mut cmd = Command::new(&tc.qemu);
        cmd.arg("-L").arg(&tc.sysroot).arg(&self.binary);
        cmd.envs(self.profile.tract_env());
        cmd
    }

    /// What a bundle's run.sh needs in EDGESLIM_RUNNER to run the binary here.
    pub fn runner(&self) -> String {
        format!(
            "{} -L {}",
            self.profile.toolchain.qemu, self.profile.toolchain.sysroot
        )
    }
}

/// Where the ARM runtimes are built: beside the host build, so a persistent
/// `CARGO_TARGET_DIR` (as `.ci/run` uses) keeps them too.
pub fn cross_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir.join("cross")
            } else {
                workspace().join(dir).join("cross")
            }
        }
        _ => workspace().join("target/cross"),
    }
}

/// The runtime for `target` built for the qemu tests; `None` only when EDGESLIM_SKIP_CROSS=1.
pub fn cross_runtime(target: &str) -> Option<CrossRuntime> {
    static BUILT: Mutex<Option<HashMap<String, CrossRuntime>>> = Mutex::new(None);
    if skipped(
        SKIP_CROSS,
        &format!("the {target} (ARM under qemu) part of this test"),
    ) {
        return None;
    }
    // One build at a time, once per test process.
    let mut cache = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(rt) = cache.get(target) {
        return Some(rt.clone());
    }
    let profile = builtin_named(target).expect("a built-in profile");
    let target_dir = cross_target_dir();
    let out = Command::new(bin("edgeslim"))
        .args(["build", "--target", target, "--profile", CROSS_PROFILE])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--json")
        .stderr(Stdio::piped())
        .output()
        .expect("running edgeslim build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cannot build the {target} runtime for the qemu tests:\n{stderr}\n\
         Install the cross toolchain with the commands above (docs/boards.md), then rerun; \
         .ci/run does this. To skip the ARM tests knowingly, set {SKIP_CROSS}=1."
    );
    let built: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("edgeslim build --json prints JSON");
    let binary = PathBuf::from(built["binary"].as_str().expect("binary path"));
    let qemu = &profile.toolchain.qemu;
    assert!(
        edgeslim::boards::toolchain::which(qemu).is_some(),
        "{qemu} is missing: apt-get install qemu-user-static (or set {SKIP_CROSS}=1 to skip the ARM tests)"
    );
    let rt = CrossRuntime {
        profile,
        binary,
        built,
    };
    cache.insert(target.to_string(), rt.clone());
    Some(rt)
}

/// A model for the ARM kernels: matrix products with sizes that are not multiples of any
/// kernel tile (edge handling), a depthwise and a pointwise convolution, HardSigmoid/HardSwish
/// (PP-OCR's activations), a residual Add and a Softmax.
pub fn kernel_mix() -> OnnxModel {
    let mut w = Weights::new(7);
    let mut b = GraphBuilder::new("kernel_mix", 14);
    let x = b.input("x", &[1, 6, 19, 23]);
    let dw = b.init("dw.w", &w.uniform(&[6, 1, 3, 3], 0.5));
    let c1 = b.node(
        "Conv",
        &[&x, &dw],
        vec![int("group", 6), ints("pads", &[1, 1, 1, 1])],
    );
    let hs = b.node("HardSwish", &[&c1], vec![]);
    let pw = b.init("pw.w", &w.uniform(&[13, 6, 1, 1], 0.4));
    let pb = b.init("pw.b", &w.uniform(&[13], 0.1));
    let c2 = b.node("Conv", &[&hs, &pw, &pb], vec![]);
    let hg = b.node("HardSigmoid", &[&c2], vec![]);
    let mul = b.node("Mul", &[&c2, &hg], vec![]);
    let shape = b.init(
        "flat.shape",
        &edgeslim::onnx::Tensor::i64(vec![2], vec![1, -1]).expect("shape tensor"),
    );
    let flat = b.node("Reshape", &[&mul, &shape], vec![]);
    // 13·19·23 = 5681 inputs -> 37 -> 37 (residual) -> 11.
    let w1 = b.init("fc1.w", &w.uniform(&[5681, 37], 0.02));
    let m1 = b.node("MatMul", &[&flat, &w1], vec![]);
    let r1 = b.node("Relu", &[&m1], vec![]);
    let w2 = b.init("fc2.w", &w.uniform(&[37, 37], 0.2));
    let m2 = b.node("MatMul", &[&r1, &w2], vec![]);
    let res = b.node("Add", &[&m2, &r1], vec![]);
    let w3 = b.init("fc3.w", &w.uniform(&[11, 37], 0.3));
    let b3 = b.init("fc3.b", &w.uniform(&[11], 0.1));
    let g = b.node("Gemm", &[&res, &w3, &b3], vec![int("transB", 1)]);
    b.node_named("Softmax", "probs", &[&g], &["probs"], vec![int("axis", 1)]);
    b.output("probs");
    b.finish()
}

/// A private sshd on 127.0.0.1 with a throwaway host key and one authorized key, in a temp
/// directory; stopped when dropped.
pub struct Sshd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    /// The client's private key.
    pub key: PathBuf,
}

impl Sshd {
    /// `None` only when EDGESLIM_SKIP_SSHD=1.
    pub fn start() -> Option<Sshd> {
        if skipped(SKIP_SSHD, "the ssh deployment test") {
            return None;
        }
        let sshd = Path::new("/usr/sbin/sshd");
        let missing = |what: &str| {
            format!("{what} is missing: apt-get install openssh-server openssh-client (.ci/run does), or set {SKIP_SSHD}=1 to skip the ssh tests")
        };
        assert!(sshd.exists(), "{}", missing("/usr/sbin/sshd"));
        assert!(
            edgeslim::boards::toolchain::which("ssh").is_some(),
            "{}",
            missing("ssh")
        );
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n");
        if root.unwrap_or(false) {
            assert!(
                Path::new("/run/sshd").is_dir(),
                "sshd started as root needs its privilege separation directory: mkdir -p /run/sshd (.ci/run does)"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for (key, comment) in [
            ("host_key", "edgeslim-test-host"),
            ("client_key", "edgeslim-test"),
        ] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(d.join(key))
                .status()
                .expect("running ssh-keygen")
                .success();
            assert!(ok, "ssh-keygen failed");
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        let user = String::from_utf8(
            Command::new("id")
                .arg("-un")
                .output()
                .expect("id -un")
                .stdout,
        )
        .expect("utf-8 user name")
        .trim()
        .to_string();
        // A free port: bind port 0, read what the kernel gave, let go.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nStrictModes no\n\
             PidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let mut child = Command::new(sshd)
            .args(["-D", "-f"])
            .arg(d.join("sshd_config"))
            .arg("-E")
            .arg(d.join("sshd.log"))
            .spawn()
            .expect("starting sshd");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
                panic!("sshd exited at once ({status}):\n{log}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "sshd did not listen on 127.0.0.1:{port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let key = d.join("client_key");
        Some(Sshd {
            child,
            dir,
            port,
            user,
            key,
        })
    }

    /// `--ssh USER@127.0.0.1 --port P -i KEY` plus options that keep ssh away from the
    /// user's own known_hosts and keys.
    pub fn deploy_args(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            "--ssh".into(),
            format!("{}@127.0.0.1", self.user),
            "--port".into(),
            self.port.to_string(),
            "-i".into(),
            self.key.display().to_string(),
            "--ssh-option".into(),
            format!("UserKnownHostsFile={}/known_hosts", d.display()),
            "--ssh-option".into(),
            "StrictHostKeyChecking=accept-new".into(),
            "--ssh-option".into(),
            "IdentitiesOnly=yes".into(),
        ]
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
