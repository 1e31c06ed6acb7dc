//! One pruning job end to end, as every method runs (`crate::pipeline`): load, calibrate,
//! prune, check, recover, save, measure. The command line fills a [`PruneJob`] and prints the
//! [`PruneRun`]; nothing here knows about flags.

use super::recovery::{RecoveryOptions, RecoveryReport};
use super::report::{Exactness, MeasureOptions, PruneReport};
use super::{Criterion, Outcome, PruneOptions};
use crate::{Error, Result};
use edgeslim_data::calib::files::{self as calib_files, CalibFiles};
use edgeslim_data::calib::{CalibSpec, ModelInput};
use edgeslim_onnx::{OnnxModel, SaveOptions};
use edgeslim_runtime::input::ImagePrep;
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use std::path::PathBuf;

/// Everything a pruning run needs.
#[derive(Debug, Clone)]
pub struct PruneJob {
    pub model: PathBuf,
    pub output: PathBuf,
    pub options: PruneOptions,
    /// Calibration data: data SPECs (`ppocr-text`, `mnist`, `images:DIR`, `npy:FILE`) or
    /// image/.npy files and folders.
    pub calib: Vec<String>,
    /// At most this many calibration samples.
    pub calib_samples: usize,
    /// Image paths: windows cut from each image (0: the whole image, resized).
    pub crops: usize,
    /// Image paths: how pixels become inputs.
    pub prep: ImagePrep,
    /// Prove the rewrite before writing (`report::verify_exact`).
    pub verify_exact: bool,
    /// Recovery fine-tuning of the pruned model.
    pub recovery: Option<RecoveryOptions>,
    /// Measure and report (params, MACs, latency, fidelity); `None`: prune and save only.
    pub measure: Option<MeasureSettings>,
}

/// How a pruning report measures latency.
#[derive(Debug, Clone, Copy)]
pub struct MeasureSettings {
    /// Timed tract runs per model (0: no latency).
    pub runs: usize,
    pub threads: usize,
}

/// What a pruning job did.
pub struct PruneRun {
    pub outcome: Outcome,
    pub recovery: Option<RecoveryReport>,
    pub exactness: Option<Exactness>,
    /// With [`PruneJob::measure`].
    pub report: Option<PruneReport>,
}

/// Calibration (for scores) and evaluation (for fidelity) inputs.
pub struct PruneInputs {
    pub calib: Vec<Vec<TractTensor>>,
    /// Labels of `calib`, when every source has them (the `taylor` criterion's loss).
    pub calib_labels: Option<Vec<usize>>,
    /// The model's input name and shape.
    pub input: Option<(String, Vec<usize>)>,
    pub eval: Vec<Vec<TractTensor>>,
    /// Labels of `eval`, when every source has them.
    pub labels: Option<Vec<usize>>,
    pub description: String,
}

/// Run the job; `progress` hears each step.
pub fn run(job: &PruneJob, progress: &dyn Fn(&str)) -> Result<PruneRun> {
    super::select::check_ratio(job.options.ratio)?;
    edgeslim_runtime::fsutil::ensure_not_input(&job.output, &[&job.model])?;
    if let Some(r) = &job.recovery {
        r.data
            .parse::<edgeslim_data::DataSpec>()
            .map_err(|e| Error::option("finetune", e.to_string()))?;
    }
    let model = OnnxModel::load(&job.model)?;
    progress("loading calibration inputs");
    let inputs = load_inputs(job, &model)?;
    let mut taylor = None;
    if job.options.criterion == Criterion::Taylor {
        let (Some((input, shape)), Some(labels)) = (&inputs.input, &inputs.calib_labels) else {
            return Err(Error::option(
                "calib",
                "the taylor criterion needs labelled calibration data for its loss (mnist, \
                 ppocr-text; image files carry no labels)",
            ));
        };
        let samples = inputs
            .calib
            .iter()
            .map(|s| Ok(edgeslim_runtime::input::tensor_to_f32_vec(&s[0])?))
            .collect::<Result<Vec<_>>>()?;
        taylor = Some(super::taylor::EngineGradients {
            input: input.clone(),
            shape: shape.clone(),
            samples,
            labels: labels.clone(),
        });
        progress("gradients of the task loss with the training engine");
    } else {
        progress("analysing channel groups and pruning");
    }
    let grads = taylor.as_mut().map(|t| t as &mut dyn super::GradientSource);
    let mut outcome = super::prune(&model, &job.options, &inputs.calib, grads)?;
    let exactness = if job.verify_exact {
        progress("verifying: pruned model vs the original with the removed channels zeroed");
        let e = super::report::verify_exact(&outcome, &inputs.eval, &job.options.input_shapes)?;
        if !e.passed() {
            return Err(Error::Invalid(format!(
                "{}: pruning is not exact on this model: the pruned model differs from the \
                 original with the removed channels zeroed by {:.3e} ({:.3e} of the largest \
                 output, tolerance {:.0e}); nothing written. Please report this model.",
                job.model.display(),
                e.max_abs_diff,
                e.relative,
                e.tolerance
            )));
        }
        Some(e)
    } else {
        None
    };
    let recovery = match &job.recovery {
        Some(ro) => {
            progress(&format!(
                "fine-tuning the pruned model: {} epochs on {}",
                ro.epochs, ro.data
            ));
            let (tuned, r) = super::recover(&outcome.model, &outcome.analysis.model, ro)?;
            outcome.model = tuned;
            Some(r)
        }
        None => None,
    };
    // The preparation stored one copy of each shared constant per use (so each use could be
    // sliced on its own); the written model stores identical constants once again.
    let shared = outcome.model.share_identical_initializers();
    if shared > 0 {
        outcome
            .notes
            .push(format!("{shared} identical constants stored once"));
    }
    outcome.model.save(&job.output, &SaveOptions::default())?;
    let report = match job.measure {
        Some(m) => {
            let measure = MeasureOptions {
                runs: m.runs,
                threads: m.threads,
                inputs: inputs.eval,
                labels: inputs.labels,
                inputs_description: inputs.description,
            };
            let out = job.output.display().to_string();
            let mut r =
                super::report::build(&outcome, &job.options, Some(&out), &measure, progress)?;
            r.recovery = recovery.clone();
            r.exactness = exactness.clone();
            Some(r)
        }
        None => None,
    };
    Ok(PruneRun {
        outcome,
        recovery,
        exactness,
        report,
    })
}

fn tensors(shape: &[usize], samples: &[Vec<f32>]) -> Result<Vec<Vec<TractTensor>>> {
    samples
        .iter()
        .map(|s| {
            TractTensor::from_shape(shape, s)
                .map(|t| vec![t])
                .map_err(|e| Error::Invalid(format!("a sample of shape {shape:?}: {e}")))
        })
        .collect()
}

/// Calibration and evaluation inputs from the job's `calib` entries: data SPECs give their
/// calibration and held-out splits; image/.npy paths are used for both.
pub fn load_inputs(job: &PruneJob, model: &OnnxModel) -> Result<PruneInputs> {
    let mut out = PruneInputs {
        calib: Vec::new(),
        calib_labels: Some(Vec::new()),
        input: None,
        eval: Vec::new(),
        labels: Some(Vec::new()),
        description: String::new(),
    };
    if job.calib.is_empty() {
        return Ok(out);
    }
    let inputs = model.true_inputs();
    let [vi] = inputs.as_slice() else {
        return Err(Error::option(
            "calib",
            format!(
                "calibration data fills one input; this model has {}",
                inputs.len()
            ),
        ));
    };
    let name = vi.name.clone();
    let shapes = super::prepare::infer_shapes(model, &job.options.input_shapes)?;
    let shape = shapes.get(&name).cloned().ok_or_else(|| {
        Error::option(
            "input_shape",
            format!("input '{name}': shape unknown; give it"),
        )
    })?;
    let mut files = Vec::new();
    let mut said = Vec::new();
    for c in &job.calib {
        match c.parse::<CalibSpec>() {
            Ok(spec) => {
                let input = ModelInput {
                    name: name.clone(),
                    shape: shape.clone(),
                };
                let data = edgeslim_data::calib::load(&spec, &input, Some(job.calib_samples))?;
                out.calib.extend(tensors(&shape, &data.calib.samples)?);
                match (&mut out.calib_labels, &data.calib.labels) {
                    (Some(all), Some(l)) => all.extend(l.iter().copied()),
                    _ => out.calib_labels = None,
                }
                // Held-out samples judge fidelity; without any, the calibration ones do.
                let judged = if data.held_out.is_empty() {
                    &data.calib
                } else {
                    &data.held_out
                };
                out.eval.extend(tensors(&shape, &judged.samples)?);
                match (&mut out.labels, &judged.labels) {
                    (Some(all), Some(l)) => all.extend(l.iter().copied()),
                    _ => out.labels = None,
                }
                said.push(format!(
                    "{} ({} calibration, {} held out: {})",
                    data.spec,
                    data.calib.len(),
                    data.held_out.len(),
                    data.split_rule
                ));
            }
            Err(_) => files.push(PathBuf::from(c)),
        }
    }
    if !files.is_empty() {
        let mut spec = CalibFiles::new(files.clone());
        spec.crops = job.crops;
        spec.limit = job.calib_samples;
        spec.prep = job.prep.clone();
        let t = calib_files::load_inputs(&spec, &shape)?;
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        said.push(format!(
            "{} inputs from {}{}",
            t.len(),
            names.join(", "),
            if job.crops > 0 {
                format!(" ({} crops per image)", job.crops)
            } else {
                String::new()
            }
        ));
        out.calib.extend(t.iter().cloned());
        out.eval.extend(t);
        out.labels = None;
        out.calib_labels = None;
    }
    out.input = Some((name, shape));
    if out
        .labels
        .as_ref()
        .is_some_and(|l| l.len() != out.eval.len())
    {
        out.labels = None;
    }
    out.description = said.join("; ");
    Ok(out)
}
