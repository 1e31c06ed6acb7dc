//! PyTorch checkpoints (`torch.save` of a state dict) read without Python: the legacy format
//! (pickles in a row, then the storages) and the zip format (`*/data.pkl` + `*/data/<key>`),
//! through the restricted unpickler ([`crate::pickle`]): only an `OrderedDict` of tensors is
//! accepted, nothing executable.
//!
//! Legacy layout: pickle(magic number) pickle(protocol 1001) pickle(sys info) pickle(state
//! dict, tensors naming their storages by key) pickle(storage keys in file order), then for each
//! key an u64 element count and the raw little-endian elements.

use crate::pickle::{unpickle, Value};
use crate::{Error, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// `torch.save`'s magic number 0x1950a86a20f9469cfc6c, the first pickle of a legacy file,
/// little-endian.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The globals a state dict of tensors names.
const ALLOWED: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch", "FloatStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "HalfStorage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ByteStorage"),
];

/// A tensor's values: float storages as f32, integer storages as i64.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One entry of a state dict.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Values,
}

/// A tensor as the state dict describes it: a view into a storage.
struct View {
    name: String,
    storage: String,
    kind: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// A storage's raw bytes and its element type.
struct Storage<'a> {
    kind: &'a str,
    bytes: &'a [u8],
}

fn element_size(kind: &str) -> Option<usize> {
    match kind {
        "FloatStorage" | "IntStorage" => Some(4),
        "DoubleStorage" | "LongStorage" => Some(8),
        "HalfStorage" => Some(2),
        "ByteStorage" => Some(1),
        _ => None,
    }
}

/// Read a checkpoint file of either format.
pub fn read(path: &Path) -> Result<Vec<Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let what = path.display().to_string();
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(&bytes, &what)
    } else {
        read_legacy(&bytes, &what)
    }
}

/// A legacy (pre-1.6, non-zip) checkpoint.
pub fn read_legacy(bytes: &[u8], what: &str) -> Result<Vec<Tensor>> {
    let bad = |why: String| Error::Invalid(format!("{what}: not a PyTorch checkpoint: {why}"));
    let mut pos = 0;
    let next = |pos: &mut usize| -> Result<Value> {
        let u = unpickle(&bytes[*pos..], ALLOWED, what)?;
        *pos += u.consumed;
        Ok(u.value)
    };
    match next(&mut pos)? {
        Value::Long(m) if m == LEGACY_MAGIC => {}
        other => return Err(bad(format!("the magic number is {other:?}"))),
    }
    let _protocol = next(&mut pos)?;
    let _sys_info = next(&mut pos)?;
    let views = views_of(&next(&mut pos)?, what)?;
    let keys = next(&mut pos)?;
    let keys: Vec<&str> = keys
        .items()
        .and_then(|k| k.iter().map(|v| v.as_str()).collect::<Option<Vec<_>>>())
        .ok_or_else(|| bad("the storage keys are not a list of strings".into()))?;
    let kind_of: HashMap<&str, &str> = views
        .iter()
        .map(|v| (v.storage.as_str(), v.kind.as_str()))
        .collect();
    let mut storages = HashMap::new();
    for key in keys {
        let kind = kind_of
            .get(key)
            .copied()
            .ok_or_else(|| bad(format!("storage {key} belongs to no tensor")))?;
        let size = element_size(kind).ok_or_else(|| bad(format!("storage type {kind}")))?;
        let count_bytes = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| bad(format!("storage {key} is cut off")))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(count_bytes);
        let n = usize::try_from(u64::from_le_bytes(a))
            .ok()
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| bad(format!("storage {key} claims too many elements")))?;
        pos += 8;
        let data = bytes.get(pos..pos.saturating_add(n)).ok_or_else(|| {
            bad(format!(
                "storage {key} needs {n} bytes; the file ends first"
            ))
        })?;
        pos += n;
        storages.insert(key, Storage { kind, bytes: data });
    }
    views
        .iter()
        .map(|v| materialise(v, &storages, what))
        .collect()
}

/// A zip-format checkpoint (`torch.save` since 1.6).
pub fn read_zip(bytes: &[u8], what: &str) -> Result<Vec<Tensor>> {
    let bad = |why: String| Error::Invalid(format!("{what}: not a PyTorch checkpoint: {why}"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(format!("a broken zip archive ({e})")))?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .cloned()
        .ok_or_else(|| bad("no data.pkl in the archive".into()))?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut member = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| bad(format!("archive member {name}: {e}")))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)
            .map_err(|e| bad(format!("archive member {name}: {e}")))?;
        Ok(out)
    };
    let views = views_of(&unpickle(&member(&pkl)?, ALLOWED, what)?.value, what)?;
    let mut raw: HashMap<String, (String, Vec<u8>)> = HashMap::new();
    for v in &views {
        if !raw.contains_key(&v.storage) {
            let data = member(&format!("{prefix}data/{}", v.storage))?;
            raw.insert(v.storage.clone(), (v.kind.clone(), data));
        }
    }
    let storages: HashMap<&str, Storage> = raw
        .iter()
        .map(|(k, (kind, data))| {
            (
                k.as_str(),
                Storage {
                    kind: kind.as_str(),
                    bytes: data.as_slice(),
                },
            )
        })
        .collect();
    views
        .iter()
        .map(|v| materialise(v, &storages, what))
        .collect()
}

/// The state dict's tensors, in file order.
fn views_of(state: &Value, what: &str) -> Result<Vec<View>> {
    let bad = |why: String| Error::Invalid(format!("{what}: not a state dict of tensors: {why}"));
    let entries = match state {
        // `state_dict()` sets `_metadata` (module versions) on the OrderedDict: a BUILD whose
        // state we do not need.
        Value::Build { obj, .. } => return views_of(obj, what),
        Value::Dict(d) => d.as_slice(),
        Value::Call { func, args }
            if func.global_name().as_deref() == Some("collections.OrderedDict") =>
        {
            match args.last() {
                Some(Value::Dict(d)) => d.as_slice(),
                None => &[],
                Some(other) => return Err(bad(format!("OrderedDict of {other:?}"))),
            }
        }
        other => return Err(bad(format!("the top object is {}", kind_name(other)))),
    };
    entries
        .iter()
        .map(|(k, v)| {
            let name = k
                .as_str()
                .ok_or_else(|| bad("a key that is not a string".into()))?
                .to_string();
            view_of(name, v, what)
        })
        .collect()
}

fn kind_name(v: &Value) -> String {
    match v {
        Value::Global { .. } | Value::Call { .. } => {
            v.global_name().unwrap_or_else(|| "a call".to_string())
        }
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

/// `_rebuild_tensor_v2(storage, offset, shape, stride, requires_grad, hooks)`.
fn view_of(name: String, v: &Value, what: &str) -> Result<View> {
    let bad = |why: &str| Error::Invalid(format!("{what}: tensor '{name}': {why}"));
    let Value::Call { func, args } = v else {
        return Err(bad("not a tensor"));
    };
    if func.global_name().as_deref() != Some("torch._utils._rebuild_tensor_v2") || args.len() < 4 {
        return Err(bad("not built by torch._utils._rebuild_tensor_v2"));
    }
    let Value::PersistentId(id) = &args[0] else {
        return Err(bad("its storage is not a persistent reference"));
    };
    // ('storage', torch.FloatStorage, key, location, size)
    let id = id
        .items()
        .ok_or_else(|| bad("a storage reference that is not a tuple"))?;
    let (kind, key) = match id {
        [Value::Str(tag), Value::Global { module, name: kind }, Value::Str(key), ..]
            if tag == "storage" && module == "torch" =>
        {
            (kind.clone(), key.clone())
        }
        _ => return Err(bad("a storage reference of an unknown form")),
    };
    let dims = |v: &Value, what_: &str| -> Result<Vec<usize>> {
        v.items()
            .and_then(|d| {
                d.iter()
                    .map(|x| x.as_int().and_then(|i| usize::try_from(i).ok()))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad(&format!("its {what_} is not a tuple of sizes")))
    };
    Ok(View {
        offset: args[1]
            .as_int()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| bad("its storage offset is not a size"))?,
        shape: dims(&args[2], "shape")?,
        stride: dims(&args[3], "stride")?,
        storage: key,
        kind,
        name,
    })
}

/// Gather a view's elements (any strides) from its storage.
fn materialise(v: &View, storages: &HashMap<&str, Storage>, what: &str) -> Result<Tensor> {
    let bad = |why: String| Error::Invalid(format!("{what}: tensor '{}': {why}", v.name));
    let s = storages
        .get(v.storage.as_str())
        .ok_or_else(|| bad(format!("storage {} is missing", v.storage)))?;
    let size = element_size(s.kind).ok_or_else(|| bad(format!("storage type {}", s.kind)))?;
    let count = s.bytes.len() / size;
    if v.shape.len() != v.stride.len() {
        return Err(bad("shape and stride differ in rank".into()));
    }
    let n: usize = v
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("its size overflows".into()))?;
    // The furthest element any index reaches must lie inside the storage.
    let last = v
        .shape
        .iter()
        .zip(&v.stride)
        .try_fold(v.offset, |a, (&d, &st)| {
            a.checked_add(d.saturating_sub(1).checked_mul(st)?)
        });
    if n > 0 && last.is_none_or(|l| l >= count) {
        return Err(bad(format!(
            "its view reaches beyond the storage's {count} elements"
        )));
    }
    let mut index = vec![0usize; v.shape.len()];
    let mut offsets = Vec::with_capacity(n);
    for _ in 0..n {
        offsets.push(
            v.offset
                + index
                    .iter()
                    .zip(&v.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>(),
        );
        for ax in (0..index.len()).rev() {
            index[ax] += 1;
            if index[ax] < v.shape[ax] {
                break;
            }
            index[ax] = 0;
        }
    }
    let values = match s.kind {
        "FloatStorage" => Values::F32(decode(s.bytes, &offsets, f32::from_le_bytes)),
        "DoubleStorage" => Values::F32(decode(s.bytes, &offsets, |b| f64::from_le_bytes(b) as f32)),
        "HalfStorage" => Values::F32(decode(s.bytes, &offsets, |b| {
            half_to_f32(u16::from_le_bytes(b))
        })),
        "LongStorage" => Values::I64(decode(s.bytes, &offsets, i64::from_le_bytes)),
        "IntStorage" => Values::I64(decode(s.bytes, &offsets, |b| i32::from_le_bytes(b) as i64)),
        _ => Values::I64(decode(s.bytes, &offsets, |b: [u8; 1]| b[0] as i64)),
    };
    Ok(Tensor {
        name: v.name.clone(),
        shape: v.shape.clone(),
        values,
    })
}

/// The elements at `offsets` of a storage of `N`-byte little-endian elements (the offsets
/// were checked against the storage's length).
fn decode<const N: usize, T>(bytes: &[u8], offsets: &[usize], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    offsets
        .iter()
        .map(|&o| {
            let mut b = [0u8; N];
            b.copy_from_slice(&bytes[o * N..(o + 1) * N]);
            f(b)
        })
        .collect()
}

/// IEEE half to f32 (subnormals, infinities and NaN included).
fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three pickles before a legacy state dict: magic (LONG1 of 10 bytes), protocol 1001,
    /// system info `{}`.
    fn legacy_header() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.");
        f.extend(b"\x80\x02M\xe9\x03.");
        f.extend(b"\x80\x02}.");
        f
    }

    /// A legacy checkpoint with one 2×3 float tensor viewed transposed (stride 1, 2) from a
    /// storage of 6, and one int64 scalar, written byte by byte as torch.save does.
    fn legacy_file() -> Vec<u8> {
        let mut f = legacy_header();
        // OrderedDict with 'w' and 'n'
        f.extend(b"\x80\x02ccollections\nOrderedDict\n)R(");
        f.extend(b"X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(");
        f.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ");
        f.extend(b"K\x00K\x02K\x03\x86K\x01K\x02\x86\x89ccollections\nOrderedDict\n)RtR");
        f.extend(b"X\x01\x00\x00\x00nctorch._utils\n_rebuild_tensor_v2\n(");
        f.extend(b"(X\x07\x00\x00\x00storagectorch\nLongStorage\nX\x01\x00\x00\x001X\x03\x00\x00\x00cpuK\x01tQ");
        f.extend(b"K\x00))\x89ccollections\nOrderedDict\n)RtR");
        f.extend(b"u.");
        // storage keys, then the storages
        f.extend(b"\x80\x02](X\x01\x00\x00\x000X\x01\x00\x00\x001e.");
        f.extend(6u64.to_le_bytes());
        for x in [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0] {
            f.extend(x.to_le_bytes());
        }
        f.extend(1u64.to_le_bytes());
        f.extend(42i64.to_le_bytes());
        f
    }

    #[test]
    fn a_legacy_checkpoint_reads_with_strides() {
        let t = read_legacy(&legacy_file(), "t.pth").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].name.as_str(), t[0].shape.as_slice()),
            ("w", &[2, 3][..])
        );
        // stride (1, 2): element [i][j] is storage[i + 2j]
        assert_eq!(t[0].values, Values::F32(vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]));
        assert_eq!(t[1].shape, Vec::<usize>::new());
        assert_eq!(t[1].values, Values::I64(vec![42]));
    }

    /// A zip-format checkpoint (torch >= 1.6): `archive/data.pkl` naming storage `0`,
    /// `archive/data/0` holding it. The OrderedDict gets its `_metadata` by BUILD, as
    /// `state_dict()` does.
    fn zip_file() -> Vec<u8> {
        use std::io::Write;
        let mut pkl = Vec::new();
        pkl.extend(b"\x80\x02ccollections\nOrderedDict\n)R(");
        pkl.extend(b"X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(");
        pkl.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ");
        pkl.extend(b"K\x01K\x02K\x02\x86K\x02K\x01\x86\x89ccollections\nOrderedDict\n)RtR");
        pkl.extend(b"u}X\t\x00\x00\x00_metadata}sb.");
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("archive/data.pkl", opts).unwrap();
        zip.write_all(&pkl).unwrap();
        zip.start_file("archive/data/0", opts).unwrap();
        for x in [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0] {
            zip.write_all(&x.to_le_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn a_zip_checkpoint_reads_with_an_offset() {
        let t = read_zip(&zip_file(), "z.pt").unwrap();
        assert_eq!(t.len(), 1);
        // offset 1, shape (2, 2), stride (2, 1): storage[1], [2], [3], [4]
        assert_eq!(t[0].shape, vec![2, 2]);
        assert_eq!(t[0].values, Values::F32(vec![1.0, 2.0, 3.0, 4.0]));
        let e = read_zip(b"PK\x03\x04 not really", "z.pt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("z.pt"), "{e}");
    }

    #[test]
    fn a_checkpoint_that_runs_code_is_refused() {
        // The state dict replaced by os.system('ls') in a legacy file.
        let mut f = legacy_header();
        f.extend(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR.");
        let e = read_legacy(&f, "evil.pth").unwrap_err().to_string();
        assert!(e.contains("evil.pth") && e.contains("os.system"), "{e}");
    }

    #[test]
    fn damaged_checkpoints_are_errors() {
        let f = legacy_file();
        let cut = &f[..f.len() - 5];
        let e = read_legacy(cut, "t.pth").unwrap_err().to_string();
        assert!(e.contains("t.pth") && e.contains("storage 1"), "{e}");
        let e = read_legacy(b"\x80\x02K\x07.", "x.pth")
            .unwrap_err()
            .to_string();
        assert!(e.contains("magic number"), "{e}");
        assert!((half_to_f32(0x3c00) - 1.0).abs() < 1e-7 && half_to_f32(0xc000) == -2.0);
    }
}
