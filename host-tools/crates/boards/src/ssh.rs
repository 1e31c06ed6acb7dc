//! Running commands on a board over OpenSSH (`ssh` and `scp` from the PATH, so the user's
//! ~/.ssh/config, agent and known_hosts apply). Never interactive: `BatchMode=yes` makes a
//! missing key fail at once instead of waiting for a password nobody will type.

use super::TargetError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[derive(Debug, Clone)]
pub struct Ssh {
    /// `user@host` or a Host alias from ~/.ssh/config.
    pub dest: String,
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    /// Extra `-o KEY=VALUE` options.
    pub options: Vec<String>,
    /// Seconds to wait for the connection.
    pub connect_timeout: u32,
}

/// Exit status ssh itself uses for its own failures (connection, authentication).
const SSH_FAILED: i32 = 255;

impl Ssh {
    pub fn new(dest: impl Into<String>) -> Ssh {
        Ssh {
            dest: dest.into(),
            port: None,
            identity: None,
            options: Vec::new(),
            connect_timeout: 15,
        }
    }

    /// Options shared by ssh and scp; they spell the port flag differently.
    fn common(&self, port_flag: &str) -> Vec<String> {
        let mut a = vec![
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-o".to_string(),
            format!("ConnectTimeout={}", self.connect_timeout),
            // Notice a board that went away mid-benchmark instead of hanging forever.
            "-o".to_string(),
            "ServerAliveInterval=15".to_string(),
            "-o".to_string(),
            "ServerAliveCountMax=4".to_string(),
        ];
        if let Some(p) = self.port {
            a.push(port_flag.to_string());
            a.push(p.to_string());
        }
        if let Some(i) = &self.identity {
            a.push("-i".to_string());
            a.push(i.display().to_string());
        }
        for o in &self.options {
            a.push("-o".to_string());
            a.push(o.clone());
        }
        a
    }

    /// Run a POSIX sh script on the board (sent on stdin to `sh -s`, so the user's login
    /// shell, whatever it is, never parses it). Returns the output whatever the script's exit
    /// status; fails only when ssh itself fails.
    pub fn script(&self, script: &str) -> Result<Output, TargetError> {
        self.script_with(script, false)
    }

    /// Like [`Ssh::script`], with the script's stdout and stderr shown as it runs (long
    /// benchmarks); the returned output is then empty.
    pub fn script_live(&self, script: &str) -> Result<Output, TargetError> {
        self.script_with(script, true)
    }

    fn script_with(&self, script: &str, live: bool) -> Result<Output, TargetError> {
        let mut cmd = Command::new("ssh");
        cmd.args(self.common("-p"))
            .arg(&self.dest)
            .args(["sh", "-s"])
            .stdin(Stdio::piped());
        if live {
            // Everything the board prints goes to our stderr as it comes: our stdout stays
            // for the results.
            cmd.stdout(Stdio::from(std::io::stderr()))
                .stderr(Stdio::inherit());
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| self.failed(&format!("cannot run ssh: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A connection that dies early closes the pipe; the exit status tells why.
            let _ = stdin.write_all(script.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.failed(&format!("waiting for ssh: {e}")))?;
        self.check_connection(&out)?;
        Ok(out)
    }

    /// Copy a local file to `remote` (relative paths are under the remote home).
    pub fn upload(&self, local: &Path, remote: &str) -> Result<(), TargetError> {
        let target = format!("{}:{remote}", self.dest);
        self.scp(&[&local.display().to_string(), &target])
    }

    pub fn download(&self, remote: &str, local: &Path) -> Result<(), TargetError> {
        let source = format!("{}:{remote}", self.dest);
        self.scp(&[&source, &local.display().to_string()])
    }

    fn scp(&self, paths: &[&str]) -> Result<(), TargetError> {
        let out = Command::new("scp")
            .args(["-q"])
            .args(self.common("-P"))
            .args(paths)
            .output()
            .map_err(|e| self.failed(&format!("cannot run scp: {e}")))?;
        if !out.status.success() {
            return Err(self.failed(&format!(
                "scp {}: {}",
                paths.join(" "),
                last_line(&out.stderr).unwrap_or_else(|| out.status.to_string())
            )));
        }
        Ok(())
    }

    fn check_connection(&self, out: &Output) -> Result<(), TargetError> {
        if out.status.code() != Some(SSH_FAILED) {
            return Ok(());
        }
        let line =
            last_line(&out.stderr).unwrap_or_else(|| "ssh failed (its message is above)".into());
        Err(self.failed(&explain(&line)))
    }

    pub fn failed(&self, reason: &str) -> TargetError {
        TargetError::Ssh {
            dest: match self.port {
                Some(p) => format!("{} (port {p})", self.dest),
                None => self.dest.clone(),
            },
            reason: reason.to_string(),
        }
    }
}

/// ssh's own message plus what to do about it.
fn explain(line: &str) -> String {
    let hint = if line.contains("Permission denied") {
        "; set up key login first (ssh-copy-id), edgeslim never asks for passwords"
    } else if line.contains("Host key verification failed") {
        "; connect once with plain ssh to check and accept the board's host key"
    } else if line.contains("Connection refused") {
        "; is sshd running on the board (sudo systemctl enable --now ssh)?"
    } else if line.contains("Could not resolve hostname") {
        "; check the name or use the board's IP address"
    } else {
        ""
    };
    format!("{line}{hint}")
}

/// The last non-empty line of a command's stderr.
pub fn last_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Quote for a POSIX shell: 'it'\''s'.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for text in ["plain", "with space", "it's", "$(rm -rf /)", ""] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(text)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), text);
        }
    }

    #[test]
    fn options_are_batch_mode_with_the_port() {
        let mut s = Ssh::new("pi@board");
        s.port = Some(2222);
        let ssh = s.common("-p").join(" ");
        assert!(
            ssh.contains("BatchMode=yes") && ssh.contains("-p 2222"),
            "{ssh}"
        );
        assert!(s.common("-P").join(" ").contains("-P 2222"));
    }

    #[test]
    fn refused_connections_say_what_to_check() {
        let m = explain("ssh: connect to host 127.0.0.1 port 9: Connection refused");
        assert!(m.contains("sshd running"));
    }
}
