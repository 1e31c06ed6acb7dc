//! A live `edgeslim-rt track --serve` process for the tests, and plain HTTP/1.1 requests to it
//! (the tests speak the protocol themselves so that they check what goes over the wire).

use crate::bin;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The running tracker; killed when dropped so a failing test leaves no server behind.
pub struct LiveTracker {
    child: Child,
    /// host:port the server bound (it was asked for port 0).
    pub addr: String,
}

impl Drop for LiveTracker {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our child's process group (spawned with process_group(0)).
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl LiveTracker {
    /// `edgeslim-rt track MODEL --source SOURCE --serve 127.0.0.1:0 --quiet EXTRA...`,
    /// waiting (up to a minute) for the "live view: http://..." line.
    pub fn start(model: &Path, source: &Path, extra: &[&str]) -> LiveTracker {
        let mut cmd = Command::new(bin("edgeslim-rt"));
        cmd.arg("track")
            .arg(model)
            .arg("--source")
            .arg(source)
            .args(["--serve", "127.0.0.1:0", "--quiet"])
            .args(extra);
        Self::spawn(cmd)
    }

    /// Any command that ends up running `edgeslim-rt track --serve` (a bundle's run.sh). It
    /// runs in its own process group, all of which is killed at the end.
    pub fn spawn(mut cmd: Command) -> LiveTracker {
        let child = cmd
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the live tracker");
        let mut live = LiveTracker {
            child,
            addr: String::new(),
        };
        let mut err = BufReader::new(live.child.stderr.take().expect("piped stderr"));
        let t0 = Instant::now();
        let mut said = String::new();
        // Under qemu, loading the graphs takes a while.
        while live.addr.is_empty() && t0.elapsed() < Duration::from_secs(180) {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("edgeslim-rt ended before serving:\n{said}");
            }
            if let Some(rest) = line.trim().strip_prefix("live view: http://") {
                live.addr = rest.trim_end_matches('/').to_string();
            }
            said.push_str(&line);
        }
        assert!(live.addr.starts_with("127.0.0.1:"), "{said}");
        // Keep draining stderr so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in err.lines() {});
        live
    }

    /// One request; returns the response head and body.
    pub fn http(&self, req: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(&self.addr).expect("connecting to the live server");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP head");
        (
            String::from_utf8_lossy(&buf[..split]).into_owned(),
            buf[split + 4..].to_vec(),
        )
    }

    /// GET /state.json.
    pub fn state(&self) -> serde_json::Value {
        let (head, body) =
            self.http("GET /state.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_slice(&body).expect("state.json is JSON")
    }

    /// Poll the state until `done` holds or `timeout` passes; returns the last state.
    pub fn wait_state(
        &self,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let t0 = Instant::now();
        let mut st = self.state();
        while !done(&st) && t0.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(100));
            st = self.state();
        }
        st
    }
}
