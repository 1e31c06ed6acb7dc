//! Animal-MNIST (PyPI `animal-mnist` 0.4, MIT): 10,000 28×28 grayscale animal silhouettes,
//! 1000 per class, a second real labelled set beside MNIST.
//!
//! # DATA
//! - **Files**: `animal_data_version_3.gz` and `animal_label_version_3.gz`, each a gzipped
//!   protocol-4 pickle of one NumPy array (uint8 [10000, 28, 28], int64 [10000]), read by our
//!   restricted unpickler ([`crate::pickle`]: `numpy.core.multiarray._reconstruct`,
//!   `numpy.ndarray` and `numpy.dtype` are the only globals allowed, nothing is executed).
//! - **Classes**: labels 0..=9, 1000 rows each, sorted by label. The package does not map
//!   numbers to names; its description lists "Bear, Bird, Cat, Cow, Dog, Elephant, Giraffe,
//!   Horse, Sheep, Zebra" and we name label k by the k-th of that alphabetical list.
//! - **Fixed split** (no randomness): per class, in file order, the first 80 % train and the
//!   last 20 % are held out: 800 / 200 per class, 8000 / 2000 in all.
//! - **Tensors**: `[N, 1, 28, 28]` `f32`, pixels scaled to [0, 1] then normalised with the
//!   training split's own statistics, mean [`MEAN`] and std [`STD`] (a test recomputes them).

use crate::pickle::{unpickle, Value};
use crate::{data_error, DataSource, ImageSet, Normalization, Result, SplitData};
use std::io::Read;
use std::path::Path;

pub const MEAN: f32 = 0.2720;
pub const STD: f32 = 0.4053;
pub const SIDE: usize = 28;
pub const CLASSES: [&str; 10] = [
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
];
pub const HELD_OUT_FRACTION: f64 = 0.2;

const NUMPY_GLOBALS: &[(&str, &str)] = &[
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
];

/// A NumPy array as pickled: its shape, its dtype string (`u1`, `<i8`, ...) and raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PickledArray {
    pub shape: Vec<usize>,
    pub dtype: String,
    pub data: Vec<u8>,
}

/// Read a (gzipped, by extension) pickle of one C-ordered NumPy array.
pub fn read_array(path: &Path) -> Result<PickledArray> {
    let mut raw = Vec::new();
    let file = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    let read = if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file).read_to_end(&mut raw)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut raw)
    };
    read.map_err(|e| data_error(path, format!("reading: {e}")))?;
    parse_array(&raw, &path.display().to_string())
}

/// `ndarray.__reduce__`: `_reconstruct(ndarray, (0,), b'b')` then BUILD with
/// `(version, shape, dtype, fortran_order, bytes)`; the dtype is `dtype(code, False, True)`
/// built with `(3, byte_order, ...)`.
pub fn parse_array(bytes: &[u8], what: &str) -> Result<PickledArray> {
    let bad =
        |why: &str| crate::Error::Invalid(format!("{what}: not a pickled NumPy array: {why}"));
    let value = unpickle(bytes, NUMPY_GLOBALS, what)?.value;
    let Value::Build { obj, state } = value else {
        return Err(bad("the top object is not a built ndarray"));
    };
    let Value::Call { func, .. } = obj.as_ref() else {
        return Err(bad("the top object is not a built ndarray"));
    };
    if !func
        .global_name()
        .is_some_and(|g| g.ends_with("multiarray._reconstruct"))
    {
        return Err(bad("the top object is not made by _reconstruct"));
    }
    let Value::Tuple(s) = state.as_ref() else {
        return Err(bad("its state is not a tuple"));
    };
    let [_, Value::Tuple(shape), dtype, Value::Bool(fortran), Value::Bytes(data)] = s.as_slice()
    else {
        return Err(bad(
            "its state is not (version, shape, dtype, fortran, bytes)",
        ));
    };
    if *fortran {
        return Err(bad("Fortran-ordered arrays are not read"));
    }
    let shape = shape
        .iter()
        .map(|d| match d {
            Value::Int(v) if *v >= 0 => Ok(*v as usize),
            _ => Err(bad("a dimension that is not a non-negative integer")),
        })
        .collect::<Result<Vec<usize>>>()?;
    let (code, order) = match dtype {
        Value::Build { obj, state } => {
            let code = match obj.as_ref() {
                Value::Call { args, .. } => args.first().and_then(Value::as_str),
                _ => None,
            };
            let order = match state.as_ref() {
                Value::Tuple(t) => t.get(1).and_then(Value::as_str),
                _ => None,
            };
            (code, order.unwrap_or("|"))
        }
        _ => (None, "|"),
    };
    let code = code.ok_or_else(|| bad("its dtype is not numpy.dtype(code, ...)"))?;
    if order == ">" {
        return Err(bad("big-endian arrays are not read"));
    }
    let size = match code {
        "u1" | "i1" | "b1" => 1,
        "i8" | "u8" | "f8" => 8,
        "i4" | "u4" | "f4" => 4,
        other => return Err(bad(&format!("dtype '{other}' is not read"))),
    };
    let count: usize = shape.iter().product();
    if count.checked_mul(size) != Some(data.len()) {
        return Err(bad(&format!(
            "{} bytes for shape {shape:?} of {code} ({size} bytes each)",
            data.len()
        )));
    }
    Ok(PickledArray {
        shape,
        dtype: code.to_string(),
        data: data.clone(),
    })
}

/// The raw images (uint8, [N, 28, 28]) and labels.
pub fn read(data: &Path, labels: &Path) -> Result<(Vec<u8>, Vec<usize>)> {
    let images = read_array(data)?;
    if images.dtype != "u1" || images.shape.len() != 3 || images.shape[1..] != [SIDE, SIDE] {
        return Err(data_error(
            data,
            format!(
                "images of dtype {} and shape {:?}, expected u1 [N, 28, 28]",
                images.dtype, images.shape
            ),
        ));
    }
    let l = read_array(labels)?;
    if l.dtype != "i8" || l.shape != [images.shape[0]] {
        return Err(data_error(
            labels,
            format!(
                "labels of dtype {} and shape {:?}, expected i8 [{}]",
                l.dtype, l.shape, images.shape[0]
            ),
        ));
    }
    let labels_out = l
        .data
        .chunks_exact(8)
        .enumerate()
        .map(|(i, c)| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            let v = i64::from_le_bytes(b);
            usize::try_from(v)
                .ok()
                .filter(|&v| v < CLASSES.len())
                .ok_or_else(|| data_error(labels, format!("label {i} is {v}, not 0..=9")))
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok((images.data, labels_out))
}

/// The files from the asset cache, cut into the fixed split.
pub fn load_assets(assets: &crate::assets::Assets) -> Result<SplitData> {
    use crate::assets::{ANIMAL_MNIST_DATA, ANIMAL_MNIST_LABELS};
    let data = assets.file(ANIMAL_MNIST_DATA);
    let (pixels, labels) = read(&data, &assets.file(ANIMAL_MNIST_LABELS))?;
    let all = ImageSet {
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        channels: 1,
        height: SIDE,
        width: SIDE,
        pixels: pixels
            .iter()
            .map(|&p| (p as f32 / 255.0 - MEAN) / STD)
            .collect(),
        labels: labels.clone(),
        sources: (0..labels.len()).map(|i| format!("image {i}")).collect(),
    };
    let (train, held) = crate::mnist::split_indices_with(&labels, CLASSES.len(), HELD_OUT_FRACTION);
    let version = assets
        .manifest()?
        .and_then(|m| m.package("animal-mnist").map(|p| p.version.clone()))
        .unwrap_or_else(|| "unknown version".into());
    let sha256 = crate::assets::file_sha256(&data)
        .map(|(_, h)| h)
        .map_err(|e| crate::Error::io(&data, e))?;
    Ok(SplitData {
        train: all.subset(&train),
        held_out: all.subset(&held),
        normalization: Normalization::uniform(1, MEAN, STD),
        split: format!(
            "fixed, per class in file order: first 80% of each class's rows train, last 20% held \
             out ({} train / {} held out)",
            train.len(),
            held.len()
        ),
        source: DataSource {
            package: format!("animal-mnist {version}"),
            path: data.display().to_string(),
            sha256: Some(sha256),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8), protocol=4)`, opcode by
    /// opcode as NumPy writes it (frames left out).
    fn pickled_u8() -> Vec<u8> {
        let mut p = b"\x80\x04".to_vec();
        p.extend(b"\x8c\x15numpy.core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94");
        p.extend(
            b"\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94",
        );
        p.extend(b"(K\x01K\x02K\x03\x86\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02u1\x94\x89\x88\x87\x94R\x94");
        p.extend(b"(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b");
        p.extend(b"\x89C\x06\x01\x02\x03\x04\x05\x06\x94t\x94b.");
        p
    }

    #[test]
    fn a_numpy_pickle_reads_and_bad_ones_are_named() {
        let a = parse_array(&pickled_u8(), "a.pkl").unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.dtype, "u1");
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        // Five bytes for a 2×3 array.
        let mut cut = pickled_u8();
        let at = cut.windows(2).position(|w| w == b"C\x06").unwrap();
        cut[at + 1] = 5;
        cut.remove(at + 2);
        let e = parse_array(&cut, "a.pkl").unwrap_err().to_string();
        assert!(e.contains("a.pkl") && e.contains("5 bytes"), "{e}");
        // A pickle calling os.system is refused by the unpickler.
        let evil = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02ls\x94\x85\x94R\x94.";
        let e = parse_array(evil, "e.pkl").unwrap_err().to_string();
        assert!(e.contains("os.system"), "{e}");
    }
}
