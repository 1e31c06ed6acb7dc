//! Build one variant: its architecture steps at the whole-model budget, recovery, then its
//! precision step, written into the study folder.

use super::budget;
use super::plan::{Step, Variant};
use super::recover::{self, RecoverSettings, RecoveryFacts, TeacherOutputs};
use crate::lowrank::{self, CompressOptions, RankRule};
use crate::prune::PruneOptions;
use crate::quantize::{self, Precision, QuantizeJob};
use crate::Result;
use edgeslim_data::calib::{CalibData, CalibSpec, ModelInput};
use edgeslim_onnx::{OnnxModel, SaveOptions};
use edgeslim_runtime::InputShape;
use std::path::Path;

/// Allowed drop of the rank search's metric (one point).
const SEARCH_TOLERANCE: f64 = 0.01;
/// Samples the rank search judges on.
const SEARCH_SAMPLES: usize = 500;

/// What the study shares with every variant it builds.
pub struct Context<'a> {
    pub original: &'a OnnxModel,
    /// What budgets are fractions of, and the original's count of it.
    pub budget_by: budget::BudgetBy,
    pub original_count: u64,
    pub input: &'a ModelInput,
    pub input_shapes: &'a [InputShape],
    pub spec: &'a CalibSpec,
    pub data: &'a CalibData,
    pub teacher: &'a TeacherOutputs,
    pub recover: &'a RecoverSettings,
}

/// A built variant before it is measured.
pub struct Built {
    /// The model before recovery, when there was one (to quote the quality recovery gained).
    pub compressed: Option<OnnxModel>,
    pub settings: Vec<String>,
    pub recovery: Option<RecoveryFacts>,
    pub notes: Vec<String>,
    /// Parameters before the precision step (quantisation changes their type, not their
    /// number; the float count alone would miss the int8 weights).
    pub params: u64,
}

/// The whole-model fraction each architecture step aims at: one step takes the budget; in a
/// chain of two the first takes its square root, so both cut by the same factor and the
/// chain ends at the budget.
fn step_fractions(n: usize, budget: f64) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![budget],
        _ => (1..=n).map(|i| budget.powf(i as f64 / n as f64)).collect(),
    }
}

/// Build `v` into `path` (written atomically by the savers).
pub fn build(v: &Variant, ctx: &Context, path: &Path, prefix: Option<Prefix>) -> Result<Built> {
    let (mut model, mut settings, mut notes, compressed, recovery) = match prefix {
        // The float part is an earlier row (prune@0.5 for prune+int8@0.5): reuse it,
        // recovery included, instead of pruning and training it again.
        Some(p) => (
            p.model,
            p.row.settings.clone(),
            vec![format!("float model of row {} reused", p.row.id)],
            None,
            p.row.recovery.clone(),
        ),
        None => float_part(v, ctx)?,
    };
    let params = model.float_constant_elements()?;
    precision_part(v, ctx, path, &mut model, &mut settings, &mut notes)?;
    Ok(Built {
        compressed,
        settings,
        recovery,
        notes,
        params,
    })
}

/// A finished row whose model is the float part of a chain.
pub struct Prefix<'a> {
    pub row: &'a super::Row,
    pub model: OnnxModel,
}

type FloatPart = (
    OnnxModel,
    Vec<String>,
    Vec<String>,
    Option<OnnxModel>,
    Option<RecoveryFacts>,
);

/// Optimisation, the architecture steps at their budgets, and recovery.
fn float_part(v: &Variant, ctx: &Context) -> Result<FloatPart> {
    let mut model = ctx.original.clone();
    let mut settings = Vec::new();
    let mut notes = Vec::new();
    // Every variant starts from the optimised graph (BatchNorm folded, activations fused),
    // as a user would deploy it: a method's row then shows what the method adds, and the
    // `optimize` row what the passes alone give.
    let changes = edgeslim_onnx::optimize::optimize(
        &mut model,
        &edgeslim_onnx::optimize::OptimizeOptions::default(),
    )?;
    if v.method.steps.first() == Some(&Step::Optimize) {
        let done: Vec<String> = changes
            .iter()
            .filter(|p| p.count > 0)
            .map(|p| format!("{} {}", p.pass, p.count))
            .collect();
        settings.push(format!("optimize: {}", done.join(", ")));
    }
    let steps = v.method.architecture_steps();
    let budgeted = steps.iter().filter(|s| s.takes_budget()).count();
    let mut fractions = step_fractions(budgeted, v.budget.unwrap_or(1.0)).into_iter();
    for step in &steps {
        let fraction = if step.takes_budget() {
            fractions.next().unwrap_or(1.0)
        } else {
            1.0
        };
        match step {
            Step::Prune | Step::PruneGlobal => {
                let global = *step == Step::PruneGlobal;
                let base = PruneOptions {
                    input_shapes: ctx.input_shapes.to_vec(),
                    global,
                    ..PruneOptions::default()
                };
                let (outcome, ratio) =
                    budget::prune_to(&model, &base, ctx.budget_by, ctx.original_count, fraction)?;
                settings.push(format!(
                    "prune ratio {ratio:.3} (L1, {})",
                    if global {
                        "global ranking"
                    } else {
                        "per group"
                    }
                ));
                notes.extend(outcome.notes.iter().cloned());
                model = outcome.model;
                model.share_identical_initializers();
            }
            Step::LowrankWeight | Step::LowrankFeature | Step::LowrankLate => {
                lowrank::prepare(&mut model)?;
                let layers = lowrank::selected_layers(&model, None)?;
                let by = ctx.budget_by;
                let total = by.count(&model, ctx.input_shapes)?;
                let costs = by.layer_costs(&model, &layers, ctx.input_shapes)?;
                let reference = ctx.original_count;
                let (method, b, pattern) = if *step == Step::LowrankLate {
                    let (k, b) =
                        budget::late_layers_for(total, &layers, &costs, by, reference, fraction)?;
                    settings.push(format!(
                        "lowrank-late: the last {k} of {} layers at per-layer budget {b:.3}",
                        layers.len()
                    ));
                    let names: Vec<String> = layers[layers.len() - k..]
                        .iter()
                        .map(|l| regex::escape(&l.name))
                        .collect();
                    let pattern = regex::Regex::new(&format!("^({})$", names.join("|")))
                        .map_err(|e| crate::Error::Other(format!("layer pattern: {e}")))?;
                    (lowrank::Method::Feature, b, Some(pattern))
                } else {
                    let b = budget::lowrank_budget_for(
                        total, &layers, &costs, by, reference, fraction,
                    )?;
                    settings.push(format!("{} per-layer budget {b:.3}", step.name()));
                    let method = if *step == Step::LowrankWeight {
                        lowrank::Method::Weight
                    } else {
                        lowrank::Method::Feature
                    };
                    (method, b, None)
                };
                let opts = CompressOptions {
                    method,
                    rule: RankRule::Budget(b),
                    layers: pattern,
                };
                lowrank::compress(
                    &mut model,
                    &opts,
                    Some(ctx.input),
                    Some(&ctx.data.calib),
                    &mut notes,
                )?;
            }
            Step::LowrankSearch => {
                lowrank::prepare(&mut model)?;
                let layers = lowrank::selected_layers(&model, None)?;
                // The search re-runs the split for every candidate rank of every layer: a
                // spread subset keeps it to minutes.
                let search_split = super::spread(&ctx.data.calib, SEARCH_SAMPLES);
                let (_, report) = lowrank::search::search(
                    &mut model,
                    &layers,
                    lowrank::Method::Feature,
                    &lowrank::search::SearchInputs {
                        input: ctx.input,
                        calib: Some(&ctx.data.calib),
                        search: &search_split,
                        tolerance: SEARCH_TOLERANCE,
                    },
                )?;
                settings.push(format!(
                    "rank search within {} point on {} calibration samples ({} → {:.3})",
                    100.0 * SEARCH_TOLERANCE,
                    search_split.len(),
                    report.baseline,
                    report.final_metric
                ));
            }
            _ => {}
        }
    }
    let mut compressed = None;
    let mut recovery = None;
    if !steps.is_empty() && ctx.recover.mode != recover::Recover::None {
        let tried = recover::recover_variant(
            &model,
            ctx.original,
            &ctx.input.name,
            ctx.data,
            ctx.teacher,
            ctx.recover,
        );
        match tried {
            Ok(recover::Recovered::Trained(tuned, facts)) => {
                compressed = Some(std::mem::replace(&mut model, tuned));
                recovery = Some(facts);
            }
            Ok(recover::Recovered::NotApplicable(why)) => {
                notes.push(format!("not recovered: {why}"));
            }
            // The training engine could not train this graph: the row keeps the compressed
            // weights and says why, the study goes on.
            Err(e) if !edgeslim_train::interrupt::requested() => {
                notes.push(format!("not recovered: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((model, settings, notes, compressed, recovery))
}

/// The precision step, if any, and the file.
fn precision_part(
    v: &Variant,
    ctx: &Context,
    path: &Path,
    model: &mut OnnxModel,
    settings: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<()> {
    match v.method.precision() {
        None => model.save(path, &SaveOptions::default())?,
        Some(p) => {
            // The quantiser works on files: the architecture steps' result goes beside the
            // variant for the moment it takes.
            let source = path.with_extension("float.onnx");
            model.save(&source, &SaveOptions::default())?;
            let precision = match p {
                Step::Fp16 => Precision::Fp16 { compute: false },
                _ => Precision::Int8 {
                    format: if p == Step::Int8 {
                        quantize::Int8Format::Qoperator
                    } else {
                        quantize::Int8Format::Qdq
                    },
                    per_channel: true,
                    reduce_range: false,
                    method: quantize::ranges::RangeMethod::Minmax,
                    percentile: 99.99,
                },
            };
            let job = QuantizeJob {
                model: source.clone(),
                output: path.to_path_buf(),
                input_shapes: ctx.input_shapes.to_vec(),
                precision,
                // Activation ranges from the whole calibration split (its first N could be
                // a few classes only).
                calib: Some(ctx.spec.clone()),
                calib_samples: None,
                eval: None,
                bench_runs: 0,
            };
            let r = quantize::run_quantize(&job);
            let _ = std::fs::remove_file(&source);
            let r = r?;
            settings.push(format!("{}: {}", p.name(), r.plan_after.verdict));
            notes.extend(r.warnings);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_steps_share_the_budget_geometrically() {
        assert_eq!(step_fractions(1, 0.25), vec![0.25]);
        let f = step_fractions(2, 0.25);
        assert!((f[0] - 0.5).abs() < 1e-12 && (f[1] - 0.25).abs() < 1e-12);
        assert!(step_fractions(0, 0.5).is_empty());
    }
}
