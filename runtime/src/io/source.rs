//! Frame sources: an image file or a folder of images (sorted by name), optionally looped.
//! A camera source (V4L2) plugs in behind the same trait.

use crate::error::{Result, RuntimeError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Whether frames are flowing, for the state endpoint and the page.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceHealth {
    Live,
    /// The device went away; `attempts` reopenings have failed so far, the last with `error`.
    Reconnecting {
        since: Instant,
        attempts: u64,
        error: String,
    },
}

impl SourceHealth {
    /// "live" or "reconnecting".
    pub fn name(&self) -> &'static str {
        match self {
            SourceHealth::Live => "live",
            SourceHealth::Reconnecting { .. } => "reconnecting",
        }
    }
}

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
    fn health(&self) -> SourceHealth {
        SourceHealth::Live
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

/// Every png/jpeg file under `dir`, recursively, sorted by path (so MVTec-style
/// `test/<defect>/000.png` folders inspect in a stable order). Entries that cannot be used are
/// logged and left out; [`walk_images`] returns them too.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = walk_images(dir)?;
    for (p, why) in &listing.skipped {
        log::warn!("skipping {}: {why}", p.display());
    }
    Ok(listing.files)
}

/// The images of a folder walk and what was left out, by name and reason.
#[derive(Debug, Default)]
pub struct ImageListing {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Walk `dir` for png/jpeg files. Symbolic links are followed, but every folder and file is
/// visited once (by device and inode), so a link cycle or a link to `..` neither loops nor
/// scores the same image twice. Sub-folders that cannot be read and names that are not
/// regular files (a FIFO named `x.png` would block the reader forever) are skipped with a
/// reason; only the top folder itself must be readable.
pub fn walk_images(dir: &Path) -> Result<ImageListing> {
    let mut listing = ImageListing::default();
    let mut seen = HashSet::new();
    let top = std::fs::metadata(dir).map_err(|e| RuntimeError::io(dir, e))?;
    seen.insert(identity(&top, dir));
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if d == dir => return Err(RuntimeError::io(&d, e)),
            Err(e) => {
                listing
                    .skipped
                    .push((d, format!("folder cannot be read: {e}")));
                continue;
            }
        };
        for e in entries {
            let p = match e {
                Ok(e) => e.path(),
                Err(e) => {
                    listing
                        .skipped
                        .push((d.clone(), format!("entry cannot be read: {e}")));
                    continue;
                }
            };
            // Follows links: a link to a folder is walked, a dangling link is skipped.
            let meta = match std::fs::metadata(&p) {
                Ok(m) => m,
                Err(e) => {
                    if is_image(&p) {
                        listing.skipped.push((p, format!("cannot be read: {e}")));
                    }
                    continue;
                }
            };
            if meta.is_dir() {
                if seen.insert(identity(&meta, &p)) {
                    stack.push(p);
                }
            } else if is_image(&p) {
                if !meta.is_file() {
                    listing.skipped.push((p, "not a regular file".into()));
                } else if seen.insert(identity(&meta, &p)) {
                    listing.files.push(p);
                }
            }
        }
    }
    listing.files.sort();
    listing.skipped.sort();
    Ok(listing)
}

/// What makes a file or folder the same one when reached by two paths.
#[cfg(unix)]
fn identity(meta: &std::fs::Metadata, _path: &Path) -> (u64, u64, PathBuf) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino(), PathBuf::new())
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata, path: &Path) -> (u64, u64, PathBuf) {
    (
        0,
        0,
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
    )
}

/// Images from a file or a folder.
pub struct ImageFiles {
    files: Vec<PathBuf>,
    /// Entries of the folder that were left out, by name and reason (for the run's report).
    pub skipped: Vec<(PathBuf, String)>,
    root: PathBuf,
    next: usize,
    looped: bool,
    index: u64,
}

impl ImageFiles {
    /// `path` is one image or a folder of them; `looped` starts over at the end (a demo
    /// line that never stops).
    pub fn open(path: &Path, looped: bool) -> Result<ImageFiles> {
        let (files, skipped) = if path.is_dir() {
            let l = walk_images(path)?;
            for (p, why) in &l.skipped {
                log::warn!("skipping {}: {why}", p.display());
            }
            (l.files, l.skipped)
        } else if path.is_file() {
            (vec![path.to_path_buf()], Vec::new())
        } else if path.exists() {
            return Err(RuntimeError::Data {
                path: path.into(),
                reason: "not a regular file or folder".into(),
            });
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
            skipped,
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

    /// The inspection line's folder walk: a link cycle and a link to `..` are walked once, a
    /// FIFO named like an image and an unreadable sub-folder are skipped by name.
    #[cfg(unix)]
    #[test]
    fn walks_survive_link_cycles_fifos_and_unreadable_folders() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        image::RgbImage::new(4, 4)
            .save(root.join("a/1.png"))
            .unwrap();
        image::RgbImage::new(4, 4)
            .save(root.join("a/b/2.png"))
            .unwrap();
        symlink(root.join("a"), root.join("a/b/loop")).unwrap();
        symlink("..", root.join("a/up")).unwrap();
        symlink(root.join("a/1.png"), root.join("same.png")).unwrap();
        let fifo = root.join("pipe.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        std::fs::create_dir(root.join("locked")).unwrap();
        image::RgbImage::new(4, 4)
            .save(root.join("locked/3.png"))
            .unwrap();
        std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o0))
            .unwrap();
        let locked_readable = std::fs::read_dir(root.join("locked")).is_ok(); // root can
        let l = walk_images(root).unwrap();
        std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let names: Vec<String> = l
            .files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        let expected_images = if locked_readable { 3 } else { 2 };
        assert_eq!(names.len(), expected_images, "each image once: {names:?}");
        let skipped: Vec<String> = l
            .skipped
            .iter()
            .map(|(p, w)| format!("{} {w}", p.display()))
            .collect();
        if made.is_ok_and(|s| s.success()) {
            assert!(
                skipped
                    .iter()
                    .any(|s| s.contains("pipe.png not a regular file")),
                "{skipped:?}"
            );
        }
        if !locked_readable {
            assert!(
                skipped
                    .iter()
                    .any(|s| s.contains("locked folder cannot be read")),
                "{skipped:?}"
            );
        }
    }
}
