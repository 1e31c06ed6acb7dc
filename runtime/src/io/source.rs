//! Frame sources: an image file or a folder of images (sorted by name), optionally looped.
//! A camera source (V4L2) plugs in behind the same trait.

use crate::error::{Result, RuntimeError};
use std::path::{Path, PathBuf};

/// A decoded frame and where it came from (file name, or a camera frame number).
pub struct Frame {
    pub image: image::RgbImage,
    pub label: String,
    /// Position in the source (0, 1, 2, ...).
    pub index: u64,
}

/// Anything that yields frames. `None` is the end of the source; an `Err` is one bad frame
/// (the caller counts and skips it) unless the source says it cannot go on.
pub trait FrameSource {
    fn next_frame(&mut self) -> Option<Result<Frame>>;
    /// A one-line description for logs and the state endpoint.
    fn describe(&self) -> String;
    /// Whether frames are flowing; only a source that can lose its device says otherwise.
    fn health(&self) -> super::reconnect::SourceHealth {
        super::reconnect::SourceHealth::Live
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

/// Every png/jpeg file under `dir`, recursively, sorted by path (so MVTec-style
/// `test/<defect>/000.png` folders inspect in a stable order).
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| RuntimeError::io(&d, e))?;
        for e in entries {
            let p = e.map_err(|e| RuntimeError::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if is_image(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Images from a file or a folder.
pub struct ImageFiles {
    files: Vec<PathBuf>,
    root: PathBuf,
    next: usize,
    looped: bool,
    index: u64,
}

impl ImageFiles {
    /// `path` is one image or a folder of them; `looped` starts over at the end (a demo
    /// line that never stops).
    pub fn open(path: &Path, looped: bool) -> Result<ImageFiles> {
        let files = if path.is_dir() {
            list_images(path)?
        } else if path.exists() {
            vec![path.to_path_buf()]
        } else {
            return Err(RuntimeError::Data {
                path: path.into(),
                reason: "no such file or folder".into(),
            });
        };
        if files.is_empty() {
            return Err(RuntimeError::Data {
                path: path.into(),
                reason: "no .png/.jpg images in this folder".into(),
            });
        }
        Ok(ImageFiles {
            files,
            root: path.to_path_buf(),
            next: 0,
            looped,
            index: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for ImageFiles {
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        if self.next >= self.files.len() {
            if !self.looped {
                return None;
            }
            self.next = 0;
        }
        let p = &self.files[self.next];
        self.next += 1;
        let index = self.index;
        self.index += 1;
        let label = p
            .strip_prefix(&self.root)
            .ok()
            .filter(|r| !r.as_os_str().is_empty())
            .unwrap_or(p)
            .display()
            .to_string();
        Some(crate::input::open_image(p).map(|img| Frame {
            image: img.to_rgb8(),
            label,
            index,
        }))
    }

    fn describe(&self) -> String {
        format!("{} ({} images)", self.root.display(), self.files.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_sorted_recursive_and_loop() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("b")).unwrap();
        for p in ["b/1.png", "a.png", "c.jpg"] {
            image::RgbImage::new(4, 4).save(d.path().join(p)).unwrap();
        }
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        std::fs::write(d.path().join("broken.png"), "not an image").unwrap();
        let mut s = ImageFiles::open(d.path(), true).unwrap();
        assert_eq!(s.len(), 4);
        let mut labels = Vec::new();
        let mut errors = 0;
        for _ in 0..5 {
            match s.next_frame().unwrap() {
                Ok(f) => labels.push(f.label),
                Err(_) => errors += 1,
            }
        }
        assert_eq!(labels, ["a.png", "b/1.png", "c.jpg", "a.png"]);
        assert_eq!(errors, 1, "a broken file is one bad frame, not the end");
        let e = ImageFiles::open(&d.path().join("nope"), false)
            .err()
            .unwrap();
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}
