//! Sequences in OTB layout, the format tracking benchmarks and our evaluator read:
//!
//! ```text
//! NAME/img/0001.jpg, 0002.jpg, …      frames (1-based, 4 digits; more when n > 9999)
//! NAME/groundtruth_rect.txt           one `x,y,w,h` per frame, 1-based pixel coordinates
//! NAME/absence.label                  GOT-10k style: 1 where under 10 % of the target shows
//! NAME/meta.json                      seed, size, sources, attributes (provenance)
//! ```
//! The sequence is written into a temporary folder next to `NAME` and renamed into place, so a
//! failed write leaves nothing half-written.

use super::super::data_error;
use super::scene::Photos;
use super::sequence::{Sequence, SequenceConfig};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// JPEG quality of written frames.
pub const JPEG_QUALITY: u8 = 92;
/// Below this visible share a frame is marked absent in `absence.label`.
pub const ABSENT_BELOW: f32 = 0.1;

/// What `meta.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceInfo {
    pub name: String,
    pub seed: u64,
    pub n_frames: usize,
    pub width: u32,
    pub height: u32,
    pub target: String,
    pub background: String,
    pub occluder: String,
    /// OTB-style attributes that occurred (IV, SV, OCC, MB, FM, IPR, OV, BC).
    pub attributes: Vec<String>,
    /// Frames marked absent.
    pub absent_frames: usize,
    pub generator: String,
    pub photos: String,
}

/// Write sequence `name` with every effect on (`SequenceConfig::new`), from the photographs of
/// the asset cache. Returns the sequence folder's description.
pub fn write_otb_sequence(
    dir: &Path,
    name: &str,
    seed: u64,
    n_frames: usize,
    size: (u32, u32),
) -> Result<SequenceInfo> {
    let photos = Photos::open(&crate::assets::Assets::open())?;
    write_otb_sequence_with(
        &photos,
        dir,
        name,
        seed,
        &SequenceConfig::new(size.0, size.1, n_frames),
    )
}

/// Write sequence `name` into `dir/name` with the given photographs and configuration.
pub fn write_otb_sequence_with(
    photos: &Photos,
    dir: &Path,
    name: &str,
    seed: u64,
    cfg: &SequenceConfig,
) -> Result<SequenceInfo> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(crate::Error::Invalid(format!(
            "sequence name '{name}': use a plain folder name"
        )));
    }
    let final_dir = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = write_into(photos, &tmp, name, seed, cfg);
    let info = match result {
        Ok(i) => i,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| crate::Error::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| crate::Error::io(&final_dir, e))?;
    Ok(info)
}

fn frame_name(i: usize, n: usize) -> String {
    let width = n.to_string().len().max(4);
    format!("{:0width$}.jpg", i + 1)
}

fn write_into(
    photos: &Photos,
    dir: &Path,
    name: &str,
    seed: u64,
    cfg: &SequenceConfig,
) -> Result<SequenceInfo> {
    let img_dir = dir.join("img");
    std::fs::create_dir_all(&img_dir).map_err(|e| crate::Error::io(&img_dir, e))?;
    let mut seq = Sequence::new(photos, seed, cfg.clone())?;
    let (target, background, occluder) = seq.describe();
    let mut gt = String::new();
    let mut absence = String::new();
    let mut absent_frames = 0;
    for frame in seq.by_ref() {
        let p = img_dir.join(frame_name(frame.index, cfg.n_frames));
        let f = std::fs::File::create(&p).map_err(|e| crate::Error::io(&p, e))?;
        let mut w = std::io::BufWriter::new(f);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, JPEG_QUALITY)
            .encode_image(&frame.image)
            .map_err(|e| data_error(&p, format!("JPEG encoding: {e}")))?;
        w.flush().map_err(|e| crate::Error::io(&p, e))?;
        let [x, y, bw, bh] = frame.rect;
        gt.push_str(&format!(
            "{:.2},{:.2},{:.2},{:.2}\n",
            x + 1.0,
            y + 1.0,
            bw,
            bh
        ));
        let absent = frame.visible < ABSENT_BELOW;
        absent_frames += absent as usize;
        absence.push_str(if absent { "1\n" } else { "0\n" });
    }
    let info = SequenceInfo {
        name: name.to_string(),
        seed,
        n_frames: cfg.n_frames,
        width: cfg.width,
        height: cfg.height,
        target,
        background,
        occluder,
        attributes: seq.attributes().iter().map(|s| s.to_string()).collect(),
        absent_frames,
        generator: format!("edgeslim {} tracking generator", env!("CARGO_PKG_VERSION")),
        photos: "scikit-image 0.26 data (skimage/data)".into(),
    };
    let write = |file: &str, text: &[u8]| -> Result<()> {
        let p = dir.join(file);
        std::fs::write(&p, text).map_err(|e| crate::Error::io(&p, e))
    };
    write("groundtruth_rect.txt", gt.as_bytes())?;
    write("absence.label", absence.as_bytes())?;
    let json = serde_json::to_vec_pretty(&info)
        .map_err(|e| crate::Error::Other(format!("meta.json: {e}")))?;
    write("meta.json", &json)?;
    Ok(info)
}

/// Read an OTB `groundtruth_rect.txt` (fields separated by commas, tabs or spaces), as written:
/// 1-based `[x, y, w, h]` per line. Errors name the file and line.
pub fn read_groundtruth(path: &Path) -> Result<Vec<[f32; 4]>> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Vec<f32> = line
            .split([',', '\t', ' '])
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| data_error(path, format!("line {}: {e}", i + 1)))?;
        match v.as_slice() {
            [x, y, w, h] => out.push([*x, *y, *w, *h]),
            _ => {
                return Err(data_error(
                    path,
                    format!("line {}: {} numbers, expected x,y,w,h", i + 1, v.len()),
                ))
            }
        }
    }
    Ok(out)
}

/// The frame files of an OTB sequence folder, sorted.
pub fn frame_files(seq_dir: &Path) -> Result<Vec<PathBuf>> {
    let img = seq_dir.join("img");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&img)
        .map_err(|e| crate::Error::io(&img, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    files.sort();
    Ok(files)
}
