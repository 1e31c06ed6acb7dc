//! ONNX Runtime through the `ort` crate, loaded at run time.
//!
//! `ort`'s default features download a prebuilt library at build time, which fails offline;
//! we build with `load-dynamic` instead and `dlopen` the `libonnxruntime.so` that
//! `edgeslim assets fetch` takes from the `onnxruntime` wheel on PyPI (or the one named by
//! `$ORT_DYLIB_PATH`).
//!
//! ONNX Runtime allows one environment per process, so it is created once and kept for the
//! life of the process; sessions are cheap by comparison. Sessions run with ORT's default
//! graph optimisation (all levels), sequential execution, `threads` intra-op threads and one
//! inter-op thread, so they compare fairly with tract at the same thread count.

use crate::{Error, Result};
use ::ort::environment::Environment;
use ::ort::logging::LogLevel;
use ::ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ::ort::session::{Session, SessionInputValue, SessionOutputs};
use ::ort::value::{DynValue, Tensor, TensorElementType};
use edgeslim_data::assets::Assets;
use ndarray::ArrayD;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The process-wide environment. Kept in a `Mutex<Option<_>>` rather than a `OnceLock` of a
/// result so that a failed first attempt (library not fetched yet) can be retried after
/// `edgeslim assets fetch`.
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Where the library is loaded from: `$ORT_DYLIB_PATH`, else the asset cache.
pub fn library_path() -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => Assets::open().ort_library(),
    }
}

const HOW_TO_GET: &str =
    "run `edgeslim assets fetch`, or set ORT_DYLIB_PATH to a libonnxruntime.so";

/// Fail early, with the remedy, when the library file is not there. A bare file name (no
/// directory) is left to the dynamic loader's search path.
fn require_library(path: &Path) -> Result<()> {
    let bare_name = path.components().count() <= 1;
    if bare_name || path.exists() {
        return Ok(());
    }
    Err(Error::Ort(format!(
        "the ONNX Runtime library is not at {}: {HOW_TO_GET}",
        path.display()
    )))
}

fn ort_error<R>(what: &str, e: ::ort::Error<R>) -> Error {
    Error::Ort(format!("{what}: {e}"))
}

/// Load the library and create the environment, once per process.
pub fn environment() -> Result<Environment> {
    let mut slot = ENVIRONMENT
        .lock()
        .map_err(|_| Error::Ort("the environment lock was poisoned by a panic".into()))?;
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let path = library_path();
    require_library(&path)?;
    let env = ::ort::init_from(&path)
        .map_err(|e| Error::Ort(format!("loading {}: {e} ({HOW_TO_GET})", path.display())))?
        .with_name("edgeslim")
        .with_telemetry(false)
        .with_logger(Arc::new(forward_log))
        .build()
        .map_err(|e| ort_error("creating the environment", e))?;
    // Quiet: ORT's info and verbose chatter would drown our own output.
    env.set_log_level(LogLevel::Warning);
    *slot = Some(env.clone());
    Ok(env)
}

/// ORT's log lines go to the `log` crate, so `RUST_LOG` controls them with everything else.
fn forward_log(level: LogLevel, category: &str, _id: &str, location: &str, message: &str) {
    let level = match level {
        LogLevel::Verbose => log::Level::Trace,
        LogLevel::Info => log::Level::Debug,
        LogLevel::Warning => log::Level::Warn,
        LogLevel::Error | LogLevel::Fatal => log::Level::Error,
    };
    log::log!(target: "onnxruntime", level, "[{category}] {message} ({location})");
}

/// Named tensors, in graph order.
pub type NamedArrays = Vec<(String, ArrayD<f32>)>;

/// Inputs converted once to ORT values, so timed runs measure inference and not copying.
pub struct OrtInputs {
    values: Vec<(String, DynValue)>,
}

/// One ONNX Runtime session.
pub struct OrtSession {
    session: Session,
    label: String,
    /// Graph inputs in order, with the element type ORT expects.
    inputs: Vec<(String, Option<TensorElementType>)>,
    outputs: Vec<String>,
    pub threads: usize,
}

impl std::fmt::Debug for OrtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtSession")
            .field("model", &self.label)
            .field("inputs", &self.input_names())
            .field("outputs", &self.outputs)
            .field("threads", &self.threads)
            .finish()
    }
}

impl OrtSession {
    /// A session over a model file (external data files are found next to it).
    pub fn load(model: &Path, threads: usize) -> Result<OrtSession> {
        let label = model.display().to_string();
        if !model.exists() {
            return Err(Error::io(
                model,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such model file"),
            ));
        }
        let session = builder(threads, &label)?
            .commit_from_file(model)
            .map_err(|e| ort_error(&format!("{label}: creating the session"), e))?;
        Ok(Self::wrap(session, label, threads))
    }

    /// A session over a model held in memory (a graph we have just edited). External data
    /// cannot be resolved without a directory: such models must be loaded from a file.
    pub fn load_bytes(bytes: &[u8], threads: usize) -> Result<OrtSession> {
        let label = "<in-memory model>".to_string();
        let session = builder(threads, &label)?
            .commit_from_memory(bytes)
            .map_err(|e| ort_error(&format!("{label}: creating the session"), e))?;
        Ok(Self::wrap(session, label, threads))
    }

    fn wrap(session: Session, label: String, threads: usize) -> OrtSession {
        let inputs = session
            .inputs()
            .iter()
            .map(|i| (i.name().to_string(), i.dtype().tensor_type()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        OrtSession {
            session,
            label,
            inputs,
            outputs,
            threads: threads.max(1),
        }
    }

    /// Graph input names, in order.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Graph output names, in order.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// Convert named f32 arrays to ORT values of each input's declared type (f32, f64, or
    /// integers and booleans for ids and masks). Every graph input must be given once.
    pub fn prepare(&self, inputs: &[(String, ArrayD<f32>)]) -> Result<OrtInputs> {
        if let Some((unknown, _)) = inputs
            .iter()
            .find(|(n, _)| !self.inputs.iter().any(|(i, _)| i == n))
        {
            return Err(self.input_error(unknown, "no such input"));
        }
        let mut values = Vec::with_capacity(self.inputs.len());
        for (name, ty) in &self.inputs {
            let mut given = inputs.iter().filter(|(n, _)| n == name);
            let (Some((_, array)), None) = (given.next(), given.next()) else {
                return Err(self.input_error(name, "must be given exactly once"));
            };
            values.push((name.clone(), self.to_value(name, *ty, array)?));
        }
        Ok(OrtInputs { values })
    }

    fn input_error(&self, name: &str, reason: &str) -> Error {
        Error::Ort(format!(
            "{}: input '{name}': {reason}; the model's inputs are: {}",
            self.label,
            self.input_names().join(", ")
        ))
    }

    fn to_value(
        &self,
        name: &str,
        ty: Option<TensorElementType>,
        a: &ArrayD<f32>,
    ) -> Result<DynValue> {
        let err = |e: ::ort::Error| ort_error(&format!("{}: input '{name}'", self.label), e);
        let value = match ty {
            Some(TensorElementType::Float32) => Tensor::from_array(a.clone()).map(|t| t.into_dyn()),
            Some(TensorElementType::Float64) => {
                Tensor::from_array(a.mapv(f64::from)).map(|t| t.into_dyn())
            }
            Some(TensorElementType::Int64) => {
                Tensor::from_array(a.mapv(|v| v as i64)).map(|t| t.into_dyn())
            }
            Some(TensorElementType::Int32) => {
                Tensor::from_array(a.mapv(|v| v as i32)).map(|t| t.into_dyn())
            }
            Some(TensorElementType::Uint8) => {
                Tensor::from_array(a.mapv(|v| v as u8)).map(|t| t.into_dyn())
            }
            Some(TensorElementType::Int8) => {
                Tensor::from_array(a.mapv(|v| v as i8)).map(|t| t.into_dyn())
            }
            Some(TensorElementType::Bool) => {
                Tensor::from_array(a.mapv(|v| v != 0.0)).map(|t| t.into_dyn())
            }
            other => {
                return Err(self.input_error(
                    name,
                    &format!("element type {other:?} is not supported by edgeslim's ORT bridge"),
                ))
            }
        };
        value.map_err(err)
    }

    /// Run once. Outputs come in graph order, converted to f32.
    pub fn run(&mut self, inputs: &[(String, ArrayD<f32>)]) -> Result<NamedArrays> {
        let prepared = self.prepare(inputs)?;
        self.run_prepared(&prepared)
    }

    /// Run once on prepared inputs.
    pub fn run_prepared(&mut self, inputs: &OrtInputs) -> Result<NamedArrays> {
        let label = self.label.clone();
        let outputs = self.outputs.clone();
        let result = run_raw(&mut self.session, &label, inputs)?;
        collect_outputs(&label, &outputs, &result)
    }

    /// `warmup` untimed runs, then `runs` timed ones (at least one). Only the inference call
    /// is timed: input values are prepared beforehand and outputs are converted after the
    /// clock stops, as tract's loop does. Returns the samples in ms and the last outputs.
    pub fn time_runs(
        &mut self,
        inputs: &OrtInputs,
        warmup: usize,
        runs: usize,
    ) -> Result<(Vec<f64>, NamedArrays)> {
        let label = self.label.clone();
        for _ in 0..warmup {
            run_raw(&mut self.session, &label, inputs)?;
        }
        let mut samples = Vec::with_capacity(runs.max(1));
        let mut last = Vec::new();
        for i in 0..runs.max(1) {
            let start = Instant::now();
            let out = run_raw(&mut self.session, &label, inputs)?;
            samples.push(start.elapsed().as_secs_f64() * 1e3);
            if i + 1 == runs.max(1) {
                last = collect_outputs(&label, &self.outputs, &out)?;
            }
        }
        Ok((samples, last))
    }

    /// The ONNX Runtime version, e.g. `"1.32.0"`, when the library loads.
    pub fn version() -> Option<String> {
        environment().ok()?;
        // `ort` does not expose ORT's GetVersionString; its build info does not always name
        // the release (PyPI builds say `git-branch=HEAD`), so ask the library itself first.
        library_version(&library_path()).or_else(|| Some(parse_version(::ort::info())))
    }
}

fn builder(threads: usize, label: &str) -> Result<SessionBuilder> {
    let env = environment()?;
    let what = format!("{label}: configuring the session");
    let err = |e| ort_error::<SessionBuilder>(&what, e);
    let b = Session::builder(&env).map_err(|e| ort_error(&what, e))?;
    // ORT's own default level (all optimisations), stated so a changed default cannot
    // silently change what we compare against.
    let b = b
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(err)?;
    let b = b.with_intra_threads(threads.max(1)).map_err(err)?;
    let b = b.with_inter_threads(1).map_err(err)?;
    let b = b.with_parallel_execution(false).map_err(err)?;
    b.with_log_level(LogLevel::Warning).map_err(err)
}

fn run_raw<'s>(
    session: &'s mut Session,
    label: &str,
    inputs: &OrtInputs,
) -> Result<SessionOutputs<'s>> {
    let values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = inputs
        .values
        .iter()
        .map(|(n, v)| (Cow::from(n.as_str()), SessionInputValue::from(v)))
        .collect();
    session
        .run(values)
        .map_err(|e| ort_error(&format!("{label}: running"), e))
}

fn collect_outputs(label: &str, names: &[String], out: &SessionOutputs<'_>) -> Result<NamedArrays> {
    names
        .iter()
        .map(|name| {
            let value = out.get(name).ok_or_else(|| {
                Error::Ort(format!("{label}: output '{name}' missing from the run"))
            })?;
            Ok((name.clone(), value_to_f32(label, name, value)?))
        })
        .collect()
}

/// Copy a tensor of any numeric element type out as f32.
fn value_to_f32(label: &str, name: &str, v: &DynValue) -> Result<ArrayD<f32>> {
    let err = |e: ::ort::Error| ort_error(&format!("{label}: output '{name}'"), e);
    macro_rules! cast {
        ($t:ty) => {
            v.try_extract_array::<$t>()
                .map(|a| a.mapv(|x| x as f32))
                .map_err(err)
        };
    }
    match v.dtype().tensor_type() {
        Some(TensorElementType::Float32) => v
            .try_extract_array::<f32>()
            .map(|a| a.to_owned())
            .map_err(err),
        Some(TensorElementType::Float64) => cast!(f64),
        Some(TensorElementType::Int64) => cast!(i64),
        Some(TensorElementType::Int32) => cast!(i32),
        Some(TensorElementType::Int16) => cast!(i16),
        Some(TensorElementType::Int8) => cast!(i8),
        Some(TensorElementType::Uint8) => cast!(u8),
        Some(TensorElementType::Uint16) => cast!(u16),
        Some(TensorElementType::Uint32) => cast!(u32),
        Some(TensorElementType::Uint64) => cast!(u64),
        Some(TensorElementType::Bool) => v
            .try_extract_array::<bool>()
            .map(|a| a.mapv(|x| if x { 1.0 } else { 0.0 }))
            .map_err(err),
        other => Err(Error::Ort(format!(
            "{label}: output '{name}' has type {other:?}, which edgeslim cannot compare as numbers"
        ))),
    }
}

/// The start of ORT's C API table (`onnxruntime_c_api.h`): stable across all versions.
#[repr(C)]
struct OrtApiBase {
    _get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
    get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
}

/// `OrtGetApiBase()->GetVersionString()` of the already loaded library at `path`.
#[cfg(unix)]
fn library_version(path: &Path) -> Option<String> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    let name = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: RTLD_NOLOAD only hands back a library that is already loaded (by `ort`, which
    // keeps it loaded for the process), and the reference taken is released below.
    // `OrtGetApiBase` returns a pointer to a static table whose first two members are the
    // function pointers declared in `OrtApiBase`; the version string is static too.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let sym = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = if sym.is_null() {
            None
        } else {
            let get_base = std::mem::transmute::<
                *mut std::ffi::c_void,
                unsafe extern "C" fn() -> *const OrtApiBase,
            >(sym);
            let base = get_base();
            let text = if base.is_null() {
                std::ptr::null()
            } else {
                ((*base).get_version_string)()
            };
            (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
        };
        libc::dlclose(handle);
        version
    }
}

#[cfg(not(unix))]
fn library_version(_path: &Path) -> Option<String> {
    None
}

/// ORT's build info reads `ORT Build Info: git-branch=rel-1.32.0, git-commit-id=…`; keep
/// the release number when it is there, the first field otherwise.
fn parse_version(info: &str) -> String {
    info.split([',', ' '])
        .find_map(|f| f.trim().strip_prefix("git-branch=rel-"))
        .map(str::to_string)
        .unwrap_or_else(|| info.split(',').next().unwrap_or(info).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_comes_from_the_release_branch() {
        assert_eq!(
            parse_version(
                "ORT Build Info: git-branch=rel-1.32.0, git-commit-id=abc, build type=Release"
            ),
            "1.32.0"
        );
        assert_eq!(parse_version("custom build, flags"), "custom build");
    }

    #[test]
    fn missing_library_says_how_to_get_it() {
        let err = require_library(Path::new("/nonexistent/lib/libonnxruntime.so"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("edgeslim assets fetch") && err.contains("ORT_DYLIB_PATH"),
            "{err}"
        );
        assert!(
            require_library(Path::new("libonnxruntime.so")).is_ok(),
            "left to the loader"
        );
    }

    /// Needs the library from the asset cache (or ORT_DYLIB_PATH); skipped without it, as
    /// the network-free unit tests must pass on a fresh checkout.
    #[test]
    fn runs_f32_and_i64_inputs_and_casts_outputs() {
        use edgeslim_onnx::builder::{value_info, GraphBuilder, D};
        use onnx_protobuf::tensor_proto::DataType;
        if require_library(&library_path()).is_err() {
            eprintln!("skipped: no ONNX Runtime library (run `edgeslim assets fetch`)");
            return;
        }
        let mut g = GraphBuilder::new("gather", 13);
        let x = g.input("x", &[3, 2]);
        let idx = g.input_dims("idx", DataType::INT64, &[D::N(2)]);
        let y = g.node("Gather", &[&x, &idx], vec![]);
        let shape = g.node("Shape", &[&y], vec![]);
        g.output(&y);
        let mut m = g.finish();
        m.graph_mut()
            .output
            .push(value_info(&shape, DataType::INT64, None));
        let mut session = OrtSession::load_bytes(&m.to_bytes().unwrap(), 1).unwrap();
        assert_eq!(session.input_names(), vec!["x", "idx"]);

        let xs = ArrayD::from_shape_vec(vec![3, 2], vec![0., 1., 2., 3., 4., 5.]).unwrap();
        let ids = ArrayD::from_shape_vec(vec![2], vec![2.0, 0.0]).unwrap();
        // Given out of order: matched by name.
        let out = session
            .run(&[("idx".into(), ids.clone()), ("x".into(), xs.clone())])
            .unwrap();
        assert_eq!(out[0].0, y);
        assert_eq!(out[0].1.shape(), &[2, 2]);
        assert_eq!(
            out[0].1.iter().copied().collect::<Vec<_>>(),
            vec![4., 5., 0., 1.]
        );
        assert_eq!(
            out[1].1.iter().copied().collect::<Vec<_>>(),
            vec![2., 2.],
            "i64 as f32"
        );

        let err = session
            .run(&[("x".into(), xs.clone())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input 'idx'") && err.contains("x, idx"),
            "{err}"
        );
        let err = session
            .run(&[
                ("x".into(), xs),
                ("idx".into(), ids.clone()),
                ("z".into(), ids),
            ])
            .unwrap_err()
            .to_string();
        assert!(err.contains("input 'z': no such input"), "{err}");
        assert_eq!(
            OrtSession::version()
                .as_deref()
                .map(|v| v.starts_with("1.")),
            Some(true)
        );
    }

    #[test]
    fn missing_model_is_an_io_error() {
        let err = OrtSession::load(Path::new("/nonexistent/m.onnx"), 1).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
