//! Model inputs from files (.npy tensors, images) or generated, and outputs to .npy.

use crate::error::{Result, RuntimeError};
use crate::model::TensorSpec;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::path::Path;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::tract_ndarray::{self, ArrayD, IxDyn};

/// Deterministic inputs for benchmarking: uniform [0, 1) floats from `seed`, zeros for
/// integer inputs (ids, lengths) where random values could be out of range.
pub fn random_inputs(specs: &[TensorSpec], seed: u64) -> Vec<Tensor> {
    let mut rng = SplitMix64(seed);
    specs
        .iter()
        .map(|s| match s.dtype.as_str() {
            "float" | "float16" | "double" | "" => {
                let n: usize = s.shape.iter().product();
                let data: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
                let t: Tensor = ArrayD::from_shape_vec(IxDyn(&s.shape), data)
                    .expect("volume matches shape")
                    .into();
                match s.dtype.as_str() {
                    "float16" => t.cast_to::<f16>().map(|c| c.into_owned()).unwrap_or(t),
                    "double" => t.cast_to::<f64>().map(|c| c.into_owned()).unwrap_or(t),
                    _ => t,
                }
            }
            "int32" => Tensor::zero::<i32>(&s.shape).expect("zero tensor"),
            "bool" => Tensor::zero::<u8>(&s.shape)
                .and_then(|t| t.cast_to::<bool>().map(|c| c.into_owned()))
                .expect("zero tensor"),
            _ => Tensor::zero::<i64>(&s.shape).expect("zero tensor"),
        })
        .collect()
}

/// A tiny, well-known generator (Steele et al.'s SplitMix64): reproducible inputs from a
/// seed without pulling a random-number crate into the board binary.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Copy any numeric tensor's values out as f32, in row-major order.
pub fn tensor_to_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    let f = t.cast_to::<f32>().map_err(|e| {
        RuntimeError::Other(format!(
            "tensor of {:?} is not numeric: {e}",
            t.datum_type()
        ))
    })?;
    let view = f
        .to_plain_array_view::<f32>()
        .map_err(|e| RuntimeError::Other(e.to_string()))?;
    Ok(view.iter().copied().collect())
}

/// Read a .npy file of f32, f64, i64, i32 or u8 into a tensor.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| RuntimeError::io(path, e))?;
    parse_npy(path, &bytes)
}

/// Parse the bytes of a .npy file (`path` names it in messages): the reader behind
/// [`read_npy`], and the entry point of the `npy` fuzz target.
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Tensor> {
    let bad = |reason: String| RuntimeError::Data {
        path: path.into(),
        reason,
    };
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err(bad("not a .npy file (missing the \\x93NUMPY magic)".into()));
    }
    check_npy_size(bytes).map_err(bad)?;
    macro_rules! try_type {
        ($t:ty) => {
            if let Ok(a) = ArrayD::<$t>::read_npy(bytes) {
                return Ok(a.into());
            }
        };
    }
    // Float inputs must be finite: tract's Relu/Max/pooling turn NaN into numbers where ONNX
    // Runtime propagates it, so a NaN input would get a confident, engine-dependent answer.
    macro_rules! try_float {
        ($t:ty) => {
            if let Ok(a) = ArrayD::<$t>::read_npy(bytes) {
                let bad_values = a.iter().filter(|v| !v.is_finite()).count();
                if bad_values > 0 {
                    return Err(bad(format!(
                        "holds {bad_values} NaN or infinite values of {}; inputs must be finite",
                        a.len()
                    )));
                }
                return Ok(a.into());
            }
        };
    }
    try_float!(f32);
    try_float!(f64);
    try_type!(i64);
    try_type!(i32);
    try_type!(u8);
    let err = ArrayD::<f32>::read_npy(bytes)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    Err(bad(format!("unsupported .npy content: {err}")))
}

/// The data a .npy header declares must be in the file: a 193-byte file declaring 10¹⁰
/// elements would otherwise make the reader allocate 40 GB before noticing.
fn check_npy_size(bytes: &[u8]) -> std::result::Result<(), String> {
    let (header_len, start): (usize, usize) = match bytes.get(6) {
        Some(1) if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        Some(2) | Some(3) if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err("truncated or unknown .npy version".into()),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or("the .npy header is longer than the file")?;
    let header = String::from_utf8_lossy(header);
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or("the .npy header has no shape")?;
    let item = header
        .split("'descr':")
        .nth(1)
        .and_then(|s| s.split('\'').nth(1))
        .map(|d| d.trim_start_matches(['<', '>', '|', '=']).to_string())
        .ok_or("the .npy header has no descr")?;
    let item_bytes: u64 = item
        .get(1..)
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("unsupported .npy element type '{item}'"))?;
    let mut elements: u64 = 1;
    for d in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: u64 = d
            .parse()
            .map_err(|_| format!("the .npy shape ({shape}) is not a list of sizes"))?;
        elements = elements
            .checked_mul(d)
            .ok_or_else(|| format!("the .npy shape ({shape}) overflows"))?;
    }
    let need = elements
        .checked_mul(item_bytes)
        .ok_or_else(|| format!("the .npy shape ({shape}) overflows"))?;
    let have = (bytes.len() - (start + header_len)) as u64;
    if need > have {
        return Err(format!(
            "the header declares shape ({shape}) of '{item}' = {need} bytes, the file holds {have}"
        ));
    }
    Ok(())
}

/// Write a float or integer tensor as .npy (through a temporary file).
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    let mut buf = Vec::new();
    let res = match t.datum_type() {
        DatumType::I64 => t
            .to_plain_array_view::<i64>()
            .map(|a| a.write_npy(&mut buf)),
        DatumType::I32 => t
            .to_plain_array_view::<i32>()
            .map(|a| a.write_npy(&mut buf)),
        _ => t.cast_to::<f32>().and_then(|c| {
            c.to_plain_array_view::<f32>()
                .map(|a| a.write_npy(&mut buf))
        }),
    };
    match res {
        Ok(Ok(())) => crate::fsutil::write_atomic(path, &buf),
        Ok(Err(e)) => Err(RuntimeError::Other(format!("{}: {e}", path.display()))),
        Err(e) => Err(RuntimeError::Other(format!("{}: {e}", path.display()))),
    }
}

/// How an image becomes an NCHW float tensor: value = (pixel·scale − mean[c]) / std[c].
#[derive(Debug, Clone)]
pub struct ImagePrep {
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Channel order BGR instead of RGB (OpenCV-trained models such as PP-OCR).
    pub bgr: bool,
}

impl Default for ImagePrep {
    /// ImageNet statistics: what most pretrained vision backbones expect.
    fn default() -> Self {
        ImagePrep {
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            bgr: false,
        }
    }
}

/// The most memory one image's decoder may allocate: a 4K RGBA frame takes 33 MB and a
/// 8K one 133 MB; a small PNG that declares 12000x12000 pixels (576 MB as RGBA) is refused
/// before its pixels are allocated instead of costing the board its memory.
pub const MAX_IMAGE_DECODE_BYTES: u64 = 256 << 20;

/// Decode an image file, refusing truncated JPEGs and images over the decode budget.
pub fn open_image(path: &Path) -> Result<image::DynamicImage> {
    // A compressed file is smaller than its pixels, so the decode budget bounds the read too.
    let len = std::fs::metadata(path)
        .map_err(|e| RuntimeError::io(path, e))?
        .len();
    if len > MAX_IMAGE_DECODE_BYTES {
        return Err(RuntimeError::Data {
            path: path.into(),
            reason: format!(
                "{len} bytes is above the image budget of {MAX_IMAGE_DECODE_BYTES} bytes"
            ),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| RuntimeError::io(path, e))?;
    decode_image(path, &bytes)
}

/// Decode the bytes of an image file (`path` names it in messages): the decoder behind
/// [`open_image`], and the entry point of the `image` fuzz target.
pub fn decode_image(path: &Path, bytes: &[u8]) -> Result<image::DynamicImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RuntimeError::io(path, e))?;
    let bad = |reason: String| RuntimeError::Data {
        path: path.into(),
        reason,
    };
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        check_jpeg_complete(bytes).map_err(bad)?;
        let (w, h) =
            image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg)
                .into_dimensions()
                .map_err(|e| bad(format!("image does not decode: {e}")))?;
        check_jpeg_scan_size(w, h, bytes.len()).map_err(bad)?;
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_IMAGE_DECODE_BYTES);
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| bad(format!("image does not decode: {e}")))
}

/// Every 8x8 block of a JPEG's first component costs at least one bit of scan data (its DC
/// difference has a Huffman code of one bit or more, in baseline and progressive files
/// alike), so a file smaller than blocks/8 bytes cannot hold its pixels. The decoder would
/// fill the rest with grey after an early end-of-image marker: a 637-byte file declaring
/// 54792x248 pixels (found by `cargo fuzz`) decoded to 40 MB of grey and was scored.
fn check_jpeg_scan_size(w: u32, h: u32, len: usize) -> std::result::Result<(), String> {
    let blocks = u64::from(w.div_ceil(8)) * u64::from(h.div_ceil(8));
    if (len as u64).saturating_mul(8) < blocks {
        return Err(format!(
            "truncated or crafted JPEG: {w}x{h} pixels ({blocks} blocks) cannot fit in {len} bytes"
        ));
    }
    Ok(())
}

/// JPEG decoders fill a cut-off scan with grey and report success, so a half-copied camera
/// frame would be scored as a real part. A complete JPEG ends with the end-of-image marker
/// (FF D9), possibly followed by zero padding; files with vendor data after it are refused too.
fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), String> {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    let end = tail.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if end >= 2 && tail[end - 2..end] == [0xFF, 0xD9] {
        Ok(())
    } else {
        Err("truncated JPEG: no end-of-image marker at the end of the file".into())
    }
}

/// Resize (bilinear) to the spec's H×W and lay out as [1, C, H, W] with C = 1 or 3.
pub fn image_to_tensor(
    img: &image::DynamicImage,
    shape: &[usize],
    prep: &ImagePrep,
) -> std::result::Result<Tensor, String> {
    let [n, c, h, w] = shape else {
        return Err(format!(
            "an image input needs a 4-D NCHW input, the model takes {shape:?}"
        ));
    };
    if *n != 1 || !(*c == 1 || *c == 3) {
        return Err(format!(
            "an image fills a [1, 1|3, H, W] input, the model takes {shape:?}"
        ));
    }
    let rgb = img
        .resize_exact(*w as u32, *h as u32, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let mut arr = tract_ndarray::Array4::<f32>::zeros((1, *c, *h, *w));
    for (x, y, p) in rgb.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        if *c == 1 {
            // ITU-R BT.601 luma, as image's to_luma does.
            let l = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
            arr[[0, 0, y, x]] = (l * prep.scale - prep.mean[0]) / prep.std[0];
        } else {
            for ch in 0..3 {
                let src = if prep.bgr { 2 - ch } else { ch };
                arr[[0, ch, y, x]] = (p[src] as f32 * prep.scale - prep.mean[ch]) / prep.std[ch];
            }
        }
    }
    Ok(arr.into_dyn().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn non_finite_npy_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nan.npy");
        let t: Tensor = tract_ndarray::arr1(&[1.0f32, f32::NAN, f32::INFINITY, 2.0])
            .into_dyn()
            .into();
        write_npy(&p, &t).unwrap();
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(
            e.contains("nan.npy") && e.contains("holds 2 NaN or infinite values of 4"),
            "{e}"
        );
    }

    /// Cut-off JPEGs and images declaring more pixels than the decode budget are refused
    /// with a reason; a whole JPEG still decodes.
    #[test]
    fn truncated_and_oversized_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let img =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 7]));
        let whole = dir.path().join("whole.jpg");
        img.save(&whole).unwrap();
        assert_eq!(open_image(&whole).unwrap().width(), 64);
        let bytes = std::fs::read(&whole).unwrap();
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let e = open_image(&cut).unwrap_err().to_string();
        assert!(e.contains("cut.jpg") && e.contains("truncated JPEG"), "{e}");

        // A whole JPEG (end-of-image marker kept) whose frame header is rewritten to declare
        // 54792 pixels across: its scan data cannot hold them and the decoder would fill
        // them with grey.
        let mut wide = bytes.clone();
        let sof = wide
            .windows(2)
            .position(|m| m == [0xFF, 0xC0])
            .expect("a baseline frame header");
        wide[sof + 7..sof + 9].copy_from_slice(&54792u16.to_be_bytes());
        let e = decode_image(Path::new("wide.jpg"), &wide)
            .unwrap_err()
            .to_string();
        assert!(e.contains("wide.jpg") && e.contains("cannot fit"), "{e}");

        // A 4x4 PNG whose header is rewritten to declare 12000x12000 RGBA (576 MB).
        let small = dir.path().join("small.png");
        image::RgbaImage::new(4, 4).save(&small).unwrap();
        let mut png = std::fs::read(&small).unwrap();
        png[16..20].copy_from_slice(&12000u32.to_be_bytes());
        png[20..24].copy_from_slice(&12000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let huge = dir.path().join("huge.png");
        std::fs::write(&huge, &png).unwrap();
        let e = open_image(&huge).unwrap_err().to_string();
        assert!(
            e.contains("huge.png") && e.contains("does not decode"),
            "{e}"
        );
    }

    #[test]
    fn npy_round_trip_keeps_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npy");
        let t: Tensor = tract_ndarray::arr2(&[[1.5f32, -2.0], [3.25, 4.0]])
            .into_dyn()
            .into();
        write_npy(&p, &t).unwrap();
        let back = read_npy(&p).unwrap();
        assert_eq!(back.shape(), &[2, 2]);
        assert_eq!(
            tensor_to_f32_vec(&back).unwrap(),
            vec![1.5, -2.0, 3.25, 4.0]
        );
        std::fs::write(&p, b"garbage").unwrap();
        // A header declaring 10^10 elements in a tiny file: refused before any allocation.
        let liar = p.with_file_name("liar.npy");
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.extend_from_slice(&[0u8; 16]);
        std::fs::write(&liar, &b).unwrap();
        let e = read_npy(&liar).unwrap_err().to_string();
        assert!(e.contains("declares shape (100000, 100000)"), "{e}");
        assert!(read_npy(&p)
            .unwrap_err()
            .to_string()
            .contains("not a .npy file"));
    }

    #[test]
    fn image_normalisation_is_per_channel() {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            4,
            4,
            image::Rgb([255, 0, 51]),
        ));
        let prep = ImagePrep {
            scale: 1.0 / 255.0,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
            bgr: false,
        };
        let t = image_to_tensor(&img, &[1, 3, 2, 2], &prep).unwrap();
        let v = tensor_to_f32_vec(&t).unwrap();
        assert!(
            (v[0] - 1.0).abs() < 1e-6 && (v[4] + 1.0).abs() < 1e-6 && (v[8] + 0.6).abs() < 1e-5
        );
        let bgr = image_to_tensor(&img, &[1, 3, 2, 2], &ImagePrep { bgr: true, ..prep }).unwrap();
        assert!((tensor_to_f32_vec(&bgr).unwrap()[0] + 0.6).abs() < 1e-5);
        assert!(image_to_tensor(&img, &[1, 3, 8], &ImagePrep::default()).is_err());
    }

    #[test]
    fn random_inputs_are_reproducible() {
        let spec = TensorSpec {
            name: "x".into(),
            dtype: "float".into(),
            declared: vec![],
            shape: vec![2, 3],
        };
        let a = random_inputs(std::slice::from_ref(&spec), 7);
        let b = random_inputs(std::slice::from_ref(&spec), 7);
        assert_eq!(a[0], b[0]);
        assert!(tensor_to_f32_vec(&a[0])
            .unwrap()
            .iter()
            .all(|v| (0.0..1.0).contains(v)));
    }
}
