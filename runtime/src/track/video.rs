//! Frames from a video file through an external `ffmpeg` process (no codec in the runtime):
//! `ffprobe` reads the size, `ffmpeg` writes raw RGB24 frames to a pipe.

use crate::error::{Result, RuntimeError};
use crate::io::source::{Frame, FrameSource};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct VideoFile {
    path: PathBuf,
    child: Child,
    width: u32,
    height: u32,
    index: u64,
    done: bool,
}

fn missing(tool: &str, e: std::io::Error) -> RuntimeError {
    if e.kind() == std::io::ErrorKind::NotFound {
        RuntimeError::Other(format!(
            "video sources need `{tool}` on the PATH (apt install ffmpeg), or use a folder of frames"
        ))
    } else {
        RuntimeError::Other(format!("starting {tool}: {e}"))
    }
}

/// Parse `ffprobe -of csv=p=0 -show_entries stream=width,height` output (`640,480`).
pub fn parse_probe(text: &str) -> Option<(u32, u32)> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let mut it = line.trim().trim_end_matches(',').split(',');
    let w = it.next()?.trim().parse().ok()?;
    let h = it.next()?.trim().parse().ok()?;
    (w > 0 && h > 0).then_some((w, h))
}

impl VideoFile {
    pub fn open(path: &Path) -> Result<VideoFile> {
        if !path.is_file() {
            return Err(RuntimeError::Data {
                path: path.into(),
                reason: "no such video file".into(),
            });
        }
        let probe = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(path)
            .output()
            .map_err(|e| missing("ffprobe", e))?;
        let (width, height) =
            parse_probe(&String::from_utf8_lossy(&probe.stdout)).ok_or_else(|| {
                RuntimeError::Data {
                    path: path.into(),
                    reason: format!(
                        "ffprobe found no video stream ({})",
                        String::from_utf8_lossy(&probe.stderr)
                            .lines()
                            .next()
                            .unwrap_or("")
                            .trim()
                    ),
                }
            })?;
        let child = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(path)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| missing("ffmpeg", e))?;
        Ok(VideoFile {
            path: path.to_path_buf(),
            child,
            width,
            height,
            index: 0,
            done: false,
        })
    }
}

impl FrameSource for VideoFile {
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        if self.done {
            return None;
        }
        let n = self.width as usize * self.height as usize * 3;
        let mut buf = vec![0u8; n];
        let out = self.child.stdout.as_mut()?;
        match out.read_exact(&mut buf) {
            Ok(()) => {}
            Err(_) => {
                self.done = true;
                return None;
            }
        }
        let index = self.index;
        self.index += 1;
        let image = image::RgbImage::from_raw(self.width, self.height, buf)?;
        Some(Ok(Frame {
            image,
            label: format!("{}#{index}", self.path.display()),
            index,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{} ({}×{}, ffmpeg)",
            self.path.display(),
            self.width,
            self.height
        )
    }
}

impl Drop for VideoFile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_parses() {
        assert_eq!(parse_probe("640,480\n"), Some((640, 480)));
        assert_eq!(parse_probe("1280,720,\n"), Some((1280, 720)));
        assert_eq!(parse_probe(""), None);
        assert_eq!(parse_probe("0,0"), None);
    }
}
