//! Headless Chromium driven over the DevTools protocol, for the live page's test.
//!
//! The protocol runs over `--remote-debugging-pipe` (file descriptors 3 and 4 of the browser,
//! NUL-terminated JSON messages) rather than a WebSocket: no port to pick, no extra crate, and
//! the browser goes away with its pipes. Mouse input goes through `Input.dispatchMouseEvent`,
//! so the page sees trusted events exactly as from a user's mouse.
//!
//! Debian's `chromium` is installed by `.ci/run`. Elsewhere set EDGESLIM_CHROMIUM to a
//! Chrome/Chromium binary, or EDGESLIM_SKIP_BROWSER=1 to skip (and say so).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const SKIP_BROWSER: &str = "EDGESLIM_SKIP_BROWSER";

/// The browser binary: EDGESLIM_CHROMIUM, else the first of the usual names on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EDGESLIM_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// A headless browser with one page attached.
pub struct Browser {
    child: Child,
    to_browser: std::io::PipeWriter,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Start `chromium` headless with a throwaway profile and a 1024×768 window.
    pub fn launch(binary: &std::path::Path) -> std::io::Result<Browser> {
        let profile = tempfile::tempdir()?;
        let (to_r, to_w) = std::io::pipe()?;
        let (from_r, from_w) = std::io::pipe()?;
        let (r3, w4) = (to_r.as_raw_fd(), from_w.as_raw_fd());
        let mut cmd = Command::new(binary);
        cmd.args([
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--remote-debugging-pipe",
            "--window-size=1024,768",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // Chromium's sandbox refuses to start as root (CI runs as root).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--no-sandbox");
        }
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2). The pipe
        // ends are first copied above 10 so that neither can be overwritten by the other's
        // dup2 onto 3 or 4; dup2 clears close-on-exec on the copies the browser keeps.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(r3, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(w4, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop((to_r, from_w));
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_r);
            loop {
                let mut msg = Vec::new();
                match reader.read_until(0, &mut msg) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        msg.pop_if(|b| *b == 0);
                        if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(Browser {
            child,
            to_browser: to_w,
            from_browser: rx,
            next_id: 1,
            session: None,
            _profile: profile,
        })
    }

    /// Send one command (to the attached page once there is one) and wait for its answer.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).map_err(|e| e.to_string())?;
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .map_err(|e| format!("{method}: writing to the browser: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from_browser
                .recv_timeout(left)
                .map_err(|e| format!("{method}: no answer from the browser: {e}"))?;
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    return Err(format!("{method}: {e}"));
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// Open `url` in a new page and attach to it; later calls go to that page.
    pub fn open(&mut self, url: &str) -> Result<(), String> {
        let t = self.call("Target.createTarget", json!({"url": url}))?;
        let target = t["targetId"].clone();
        let a = self.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )?;
        let session = a["sessionId"]
            .as_str()
            .ok_or_else(|| format!("attachToTarget answered {a}"))?;
        self.session = Some(session.to_string());
        Ok(())
    }

    /// Evaluate a JavaScript expression in the page (promises awaited) and return its value.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(format!("{expression}: {ex}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Press the left button at `from`, move in steps to `to`, release: a user's drag, in CSS
    /// pixels of the viewport.
    pub fn drag(&mut self, from: (f64, f64), to: (f64, f64)) -> Result<(), String> {
        let mouse = |kind: &str, (x, y): (f64, f64), buttons: u32| json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1});
        self.call("Input.dispatchMouseEvent", mouse("mousePressed", from, 1))?;
        for k in 1..=8 {
            let t = k as f64 / 8.0;
            let p = (from.0 + t * (to.0 - from.0), from.1 + t * (to.1 - from.1));
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": "mouseMoved", "x": p.0, "y": p.1, "button": "left", "buttons": 1}),
            )?;
        }
        self.call("Input.dispatchMouseEvent", mouse("mouseReleased", to, 0))?;
        Ok(())
    }
}
