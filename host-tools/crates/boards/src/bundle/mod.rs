//! `edgeslim bundle`: one .tar.gz with everything a board needs to run a model — the runtime
//! built for it, the model(s), a config, a run script, a systemd unit, a README written for
//! that board, a manifest (bundle.json) and SHA256SUMS over all of it.
//!
//! Every entry sits under one directory named after the bundle, so unpacking never spills
//! files into the current directory. Entries carry fixed owners and modes and one mtime
//! (`SOURCE_DATE_EPOCH` when set), so the same inputs give the same bytes.

mod files;

use super::build::check_binary;
use super::elf;
use super::profile::Profile;
use super::TargetError;
use edgeslim_runtime::model::{LoadOptions, LoadedModel};
use edgeslim_runtime::InputShape;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "bundle.json";
pub const SUMS: &str = "SHA256SUMS";
pub const SCHEMA_VERSION: u32 = 1;

/// What the bundle runs when started (by `./run.sh` or the systemd unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum App {
    /// `edgeslim-rt bench` over every model; JSON reports in results/.
    Bench,
    /// `edgeslim-rt track` with the first model as the tracker, on a camera or video.
    Track,
    /// `edgeslim-rt inspect` with the first model as the anomaly detector.
    Inspect,
}

impl App {
    pub fn as_str(self) -> &'static str {
        match self {
            App::Bench => "bench",
            App::Track => "track",
            App::Inspect => "inspect",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BundleSpec {
    pub profile: Profile,
    pub binary: PathBuf,
    pub models: Vec<PathBuf>,
    pub app: App,
    pub input_shapes: Vec<InputShape>,
    /// Threads on the board; default: all its cores.
    pub threads: Option<usize>,
    pub warmup: usize,
    pub runs: usize,
    /// What `track`/`inspect` read: a camera (/dev/video0), a video, a folder of images.
    pub source: String,
    /// Live view address for `track`/`inspect`.
    pub serve: String,
    /// Directory name inside the tarball and on the board; default `edgeslim-<target>-<app>`.
    pub name: Option<String>,
    pub output: PathBuf,
    /// Bundle even when the binary needs a newer glibc than the profile's OS ships.
    pub allow_newer_glibc: bool,
}

/// The manifest: what the bundle holds and what it is for. `edgeslim deploy` reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub name: String,
    pub created_by: String,
    pub app: App,
    pub profile: Profile,
    pub binary: FileEntry,
    pub binary_arch: String,
    pub binary_max_glibc: Option<String>,
    pub models: Vec<ModelEntry>,
    pub input_shapes: Vec<String>,
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the bundle directory.
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    pub file: FileEntry,
    /// `NAME=D0,D1,...` for every input: the shapes the board runs it at.
    pub input_shapes: Vec<String>,
    /// `name dtype [dims]` of each input and output, as tract fixed them.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BundleSummary {
    pub path: PathBuf,
    pub name: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub files: Vec<FileEntry>,
    pub warnings: Vec<String>,
}

struct Entry {
    path: String,
    mode: u32,
    bytes: Vec<u8>,
}

fn bundle_err(path: &Path, reason: impl Into<String>) -> TargetError {
    TargetError::Bundle {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Text that goes into shell and env files unquoted must not need quoting.
fn shell_safe(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-=,:/@+".contains(c))
}

pub fn bundle(spec: &BundleSpec) -> crate::Result<BundleSummary> {
    let p = &spec.profile;
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("edgeslim-{}-{}", p.name, spec.app.as_str()));
    if !shell_safe(&name) || name.contains('/') || name.starts_with('.') {
        return Err(bundle_err(
            &spec.output,
            format!("bundle name '{name}' must be letters, digits, '.', '-' or '_'"),
        )
        .into());
    }
    if spec.models.is_empty() {
        return Err(crate::Error::option("model", "no model given"));
    }
    let model_paths = model_files(&spec.models)?;
    if spec.app == App::Track {
        check_tracker_pair(&model_paths)?;
    }
    let mut inputs: Vec<&Path> = model_paths.iter().map(PathBuf::as_path).collect();
    inputs.push(&spec.binary);
    edgeslim_runtime::fsutil::ensure_not_input(&spec.output, &inputs)?;

    // The binary: the right architecture and loader, and a C library the board has.
    let binary = std::fs::read(&spec.binary).map_err(|e| crate::Error::io(&spec.binary, e))?;
    let info = elf::parse(&binary).map_err(|reason| TargetError::Binary {
        path: spec.binary.clone(),
        reason,
    })?;
    let problems = check_binary(p, &info);
    if let Some(wrong) = problems.wrong {
        return Err(TargetError::Binary {
            path: spec.binary.clone(),
            reason: format!("not a runtime for {}: {wrong}", p.name),
        }
        .into());
    }
    let warnings = problems.warnings;
    // A binary that needs a newer C library than the board's OS would not even start there.
    if let (Some(needed), Some(board)) = (info.max_glibc, p.glibc_version()) {
        if needed > board && !spec.allow_newer_glibc {
            return Err(crate::Error::option(
                "allow_newer_glibc",
                format!(
                    "{}: needs glibc {}.{}, newer than {}'s {}; build a static musl runtime, or allow it if the board's OS is newer than the profile says",
                    spec.binary.display(), needed.0, needed.1, p.name, p.os
                ),
            ));
        }
    }

    let mut entries = vec![Entry {
        path: "bin/edgeslim-rt".into(),
        mode: 0o755,
        bytes: binary,
    }];
    let mut models = Vec::new();
    let mut used = vec![false; spec.input_shapes.len()];
    for m in &model_paths {
        let (entry, model) = model_entry(m, &spec.input_shapes, &mut used)?;
        if entries.iter().any(|e| e.path == entry.path) {
            return Err(
                bundle_err(m, format!("two models named {}: rename one", entry.path)).into(),
            );
        }
        models.push(model);
        entries.push(entry);
    }
    if let Some(unused) = spec.input_shapes.iter().zip(&used).find(|(_, u)| !**u) {
        return Err(crate::Error::option_value(
            "input_shape",
            unused.0,
            "fixes no dynamic input of the models",
        ));
    }
    for s in &spec.input_shapes {
        if !shell_safe(&s.to_string()) {
            return Err(bundle_err(&spec.output, format!("input shape '{s}': input names with spaces or quotes cannot go into the run script")).into());
        }
    }
    for (option, v) in [("source", &spec.source), ("serve", &spec.serve)] {
        if !shell_safe(v) {
            return Err(crate::Error::option_value(
                option,
                v,
                "must not need shell quoting (it goes into the run script)",
            ));
        }
    }
    let threads = spec
        .threads
        .or(p.cores.map(|c| c as usize))
        .unwrap_or(1)
        .max(1);
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        name: name.clone(),
        created_by: format!("edgeslim {}", env!("CARGO_PKG_VERSION")),
        app: spec.app,
        profile: p.clone(),
        binary: FileEntry {
            path: "bin/edgeslim-rt".into(),
            sha256: edgeslim_runtime::fsutil::sha256_hex(&entries[0].bytes),
            size_bytes: entries[0].bytes.len() as u64,
        },
        binary_arch: info.arch.clone(),
        binary_max_glibc: info.max_glibc.map(|(a, b)| format!("{a}.{b}")),
        models,
        input_shapes: spec.input_shapes.iter().map(|s| s.to_string()).collect(),
        threads,
    };
    let text = |path: &str, mode: u32, body: String| Entry {
        path: path.into(),
        mode,
        bytes: body.into_bytes(),
    };
    entries.push(text(
        "config.env",
        0o644,
        files::config_env(&manifest, spec),
    ));
    entries.push(text("run.sh", 0o755, files::run_sh(&manifest)));
    entries.push(text(
        "edgeslim.service",
        0o644,
        files::systemd_unit(&manifest),
    ));
    entries.push(text("README.md", 0o644, files::readme(&manifest)));
    let manifest_json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| crate::Error::Other(format!("encoding {MANIFEST}: {e}")))?;
    entries.push(text(MANIFEST, 0o644, manifest_json + "\n"));
    let sums: String = entries
        .iter()
        .map(|e| {
            format!(
                "{}  {}\n",
                edgeslim_runtime::fsutil::sha256_hex(&e.bytes),
                e.path
            )
        })
        .collect();
    entries.push(text(SUMS, 0o644, sums));

    write_tar_gz(&spec.output, &name, &entries)?;
    let (size_bytes, sha256) = edgeslim_runtime::fsutil::sha256_file(&spec.output)
        .map_err(|e| crate::Error::io(&spec.output, e))?;
    Ok(BundleSummary {
        path: spec.output.clone(),
        name,
        sha256,
        size_bytes,
        files: entries
            .iter()
            .map(|e| FileEntry {
                path: e.path.clone(),
                sha256: edgeslim_runtime::fsutil::sha256_hex(&e.bytes),
                size_bytes: e.bytes.len() as u64,
            })
            .collect(),
        warnings,
    })
}

/// The model files to ship. A folder stands for a tracker (`models/siamese-tracker-p25`): its
/// `template.onnx` and `search.onnx`, in that order, so `track` finds the pair.
fn model_files(models: &[PathBuf]) -> crate::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for m in models {
        if m.is_dir() {
            let (template, search) = edgeslim_runtime::track::tracker::tracker_files(m)
                .map_err(|e| bundle_err(m, format!("a folder of models must be a tracker: {e}")))?;
            files.extend([template, search]);
        } else {
            files.push(m.clone());
        }
    }
    Ok(files)
}

/// `run.sh track` hands the first model to `edgeslim-rt track`, which finds the other graph of
/// the pair by name next to it (`tracker_files`); check now, with the same rule, that the bundle
/// ships that graph too, rather than fail on the board.
fn check_tracker_pair(models: &[PathBuf]) -> crate::Result<()> {
    let first = &models[0];
    let (template, search) =
        edgeslim_runtime::track::tracker::tracker_files(first).map_err(|e| {
            crate::Error::Invalid(format!(
                "{}: the track app needs a tracker: its folder (models/siamese-tracker) or \
                     template.onnx and search.onnx ({e})",
                first.display()
            ))
        })?;
    let partner = if template == *first { search } else { template };
    let partner_name = partner.file_name().unwrap_or_default();
    if !models.iter().any(|m| m.file_name() == Some(partner_name)) {
        return Err(crate::Error::Invalid(format!(
            "{}: the track app needs the other graph of the tracker too: {}",
            first.display(),
            partner_name.to_string_lossy()
        )));
    }
    Ok(())
}

/// Names of the model's inputs whose declared shape is not fully fixed.
fn dynamic_inputs(model: &edgeslim_onnx::OnnxModel) -> Vec<String> {
    use onnx_protobuf::type_proto::Value;
    model
        .true_inputs()
        .into_iter()
        .filter(|vi| {
            let fixed = match vi.type_.as_ref().and_then(|t| t.value.as_ref()) {
                Some(Value::TensorType(tt)) => tt
                    .shape
                    .as_ref()
                    .is_some_and(|s| s.dim.iter().all(|d| d.has_dim_value() && d.dim_value() > 0)),
                _ => false,
            };
            !fixed
        })
        .map(|vi| vi.name.clone())
        .collect()
}

/// Load the model with tract as the board will (same shapes, optimised), so a model tract
/// cannot run is refused here and not discovered on the board. `--input-shape` values apply
/// to the models whose inputs they fix (a model of fixed shapes keeps its own); `used` marks
/// the ones that fixed something. External weights are folded into the bundled file, which
/// must stand alone.
fn model_entry(
    path: &Path,
    shapes: &[InputShape],
    used: &mut [bool],
) -> crate::Result<(Entry, ModelEntry)> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| shell_safe(n))
        .ok_or_else(|| {
            bundle_err(
                path,
                "model file names must be letters, digits, '.', '-' or '_'",
            )
        })?;
    let raw = std::fs::read(path).map_err(|e| crate::Error::io(path, e))?;
    let parsed = edgeslim_onnx::OnnxModel::from_bytes(&raw, path)?;
    let dynamic = dynamic_inputs(&parsed);
    let mut mine = Vec::new();
    for (s, used) in shapes.iter().zip(used.iter_mut()) {
        let applies = match &s.name {
            Some(n) => dynamic.contains(n),
            None => !dynamic.is_empty(),
        };
        if applies {
            mine.push(s.clone());
            *used = true;
        }
    }
    let opts = LoadOptions {
        input_shapes: mine,
        ..Default::default()
    };
    let loaded = LoadedModel::load(path, &opts)?;
    let external = parsed
        .graph()
        .initializer
        .iter()
        .any(|t| !t.external_data.is_empty());
    let bytes = if external {
        edgeslim_onnx::OnnxModel::load(path)?.to_bytes()?
    } else {
        raw
    };
    let spec_text =
        |t: &edgeslim_runtime::model::TensorSpec| format!("{} {} {:?}", t.name, t.dtype, t.shape);
    let entry_path = format!("models/{file_name}");
    let input_shapes: Vec<String> = loaded
        .inputs
        .iter()
        .map(|t| {
            let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
            format!("{}={}", t.name, dims.join(","))
        })
        .collect();
    if let Some(bad) = input_shapes.iter().find(|s| !shell_safe(s)) {
        return Err(bundle_err(
            path,
            format!("input '{bad}': names with spaces or quotes cannot go into the run script"),
        )
        .into());
    }
    let model = ModelEntry {
        input_shapes,
        file: FileEntry {
            path: entry_path.clone(),
            sha256: edgeslim_runtime::fsutil::sha256_hex(&bytes),
            size_bytes: bytes.len() as u64,
        },
        inputs: loaded.inputs.iter().map(spec_text).collect(),
        outputs: loaded.outputs.iter().map(spec_text).collect(),
    };
    Ok((
        Entry {
            path: entry_path,
            mode: 0o644,
            bytes,
        },
        model,
    ))
}

fn mtime() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

fn write_tar_gz(out: &Path, root: &str, entries: &[Entry]) -> crate::Result<()> {
    let mtime = mtime();
    edgeslim_runtime::fsutil::write_atomic_with(out, |file| {
        // Best compression: a bundle is made once and copied over slow links many times.
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
        let mut tar = tar::Builder::new(gz);
        let mut dirs: Vec<String> = vec![root.to_string()];
        for e in entries {
            if let Some((dir, _)) = e.path.rsplit_once('/') {
                let d = format!("{root}/{dir}");
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
        for d in &dirs {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(mtime);
            h.set_uid(0);
            h.set_gid(0);
            tar.append_data(&mut h, format!("{d}/"), std::io::empty())?;
        }
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(e.mode);
            h.set_size(e.bytes.len() as u64);
            h.set_mtime(mtime);
            h.set_uid(0);
            h.set_gid(0);
            tar.append_data(&mut h, format!("{root}/{}", e.path), e.bytes.as_slice())?;
        }
        let mut gz = tar.into_inner()?;
        gz.flush()?;
        gz.try_finish()
    })?;
    Ok(())
}

/// Read `bundle.json` out of a bundle without unpacking it.
pub fn read_manifest(path: &Path) -> crate::Result<Manifest> {
    let f = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let not_bundle = |reason: String| bundle_err(path, format!("not an edgeslim bundle: {reason}"));
    let entries = archive.entries().map_err(|e| not_bundle(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_bundle(e.to_string()))?;
        let entry_path = entry
            .path()
            .map_err(|e| not_bundle(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut parts = entry_path.trim_end_matches('/').splitn(2, '/');
        let (root, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if rest == MANIFEST {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text)
                .map_err(|e| not_bundle(e.to_string()))?;
            let m: Manifest = serde_json::from_str(&text)
                .map_err(|e| not_bundle(format!("{root}/{MANIFEST}: {e}")))?;
            if m.name != root {
                return Err(not_bundle(format!(
                    "{MANIFEST} names '{}' but the directory is '{root}'",
                    m.name
                ))
                .into());
            }
            return Ok(m);
        }
    }
    Err(not_bundle(format!("no {MANIFEST} inside")).into())
}
