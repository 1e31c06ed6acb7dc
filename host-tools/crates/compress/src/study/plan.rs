//! What a study runs: methods (one compression or a chain such as `prune+int8`) crossed with
//! whole-model budgets, as a list of [`Variant`]s with stable ids (the resume key).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// One step of a method chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Graph optimisation only (`edgeslim optimize`: BatchNorm folding, fusions): what the
    /// original gains before any compression.
    Optimize,
    /// Structured pruning over channel dependency groups (L1 norms), the same share of each
    /// group.
    Prune,
    /// The same, with one global ranking of normalised channel importances: groups that
    /// matter less lose more.
    PruneGlobal,
    /// Truncated SVD of the weights.
    LowrankWeight,
    /// PCA of calibrated layer outputs, layer by layer.
    LowrankFeature,
    /// The same on the last layers only, as LLM-ROM places it ("compress the later layers
    /// first; early layers are the most sensitive"): each decomposed layer keeps half of its
    /// weights, and as many layers from the end are decomposed as the budget needs.
    LowrankLate,
    /// Feature-space low rank with the surgical rank search: from the last layer back, each
    /// layer's smallest rank keeping the task metric within one point on the calibration
    /// split (allocation by measured sensitivity; no budget).
    LowrankSearch,
    /// FLOAT16 weights, f32 compute.
    Fp16,
    /// int8 QOperator (QLinearConv/QLinearMatMul): tract's integer kernels.
    Int8,
    /// int8 QDQ (ONNX Runtime's form; tract computes it in float).
    Int8Qdq,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Optimize => "optimize",
            Step::Prune => "prune",
            Step::PruneGlobal => "prune-global",
            Step::LowrankWeight => "lowrank-weight",
            Step::LowrankFeature => "lowrank-feature",
            Step::LowrankLate => "lowrank-late",
            Step::LowrankSearch => "lowrank-search",
            Step::Fp16 => "fp16",
            Step::Int8 => "int8",
            Step::Int8Qdq => "int8-qdq",
        }
    }

    /// Steps that change the architecture and take a parameter budget.
    pub fn takes_budget(self) -> bool {
        matches!(
            self,
            Step::Prune
                | Step::PruneGlobal
                | Step::LowrankWeight
                | Step::LowrankFeature
                | Step::LowrankLate
        )
    }

    /// Steps that change the architecture (recovery follows them).
    pub fn architectural(self) -> bool {
        self.takes_budget() || self == Step::LowrankSearch
    }
}

impl FromStr for Step {
    type Err = Error;

    fn from_str(s: &str) -> Result<Step> {
        Ok(match s.trim() {
            "optimize" => Step::Optimize,
            "prune" => Step::Prune,
            "prune-global" => Step::PruneGlobal,
            "lowrank-search" => Step::LowrankSearch,
            "lowrank-weight" => Step::LowrankWeight,
            "lowrank-feature" | "lowrank" => Step::LowrankFeature,
            "lowrank-late" => Step::LowrankLate,
            "fp16" => Step::Fp16,
            "int8" => Step::Int8,
            "int8-qdq" => Step::Int8Qdq,
            other => {
                return Err(Error::option_value(
                    "methods",
                    other,
                    "expected optimize, prune, prune-global, lowrank-weight, lowrank-feature, \
                     lowrank-late, lowrank-search, fp16, int8 or int8-qdq, or a chain of them \
                     joined by '+'",
                ))
            }
        })
    }
}

/// A method: one step or a chain (`prune+int8`, `prune+lowrank-feature`). Architecture steps
/// come first, at most one precision step, last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Method {
    pub steps: Vec<Step>,
}

impl Method {
    pub fn name(&self) -> String {
        self.steps
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join("+")
    }

    pub fn takes_budget(&self) -> bool {
        self.steps.iter().any(|s| s.takes_budget())
    }

    /// The architecture steps, in order.
    pub fn architecture_steps(&self) -> Vec<Step> {
        self.steps
            .iter()
            .copied()
            .filter(|s| s.architectural())
            .collect()
    }

    /// The precision step at the end, if any.
    pub fn precision(&self) -> Option<Step> {
        self.steps
            .last()
            .copied()
            .filter(|s| !s.architectural() && *s != Step::Optimize)
    }
}

impl FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Method> {
        let steps = s
            .split('+')
            .map(str::parse)
            .collect::<Result<Vec<Step>>>()?;
        let bad = |why: &str| Err(Error::option_value("methods", s, why));
        if steps.iter().skip(1).any(|s| *s == Step::Optimize) {
            return bad("optimize comes first (every other step optimises the graph anyway)");
        }
        let precision_steps = steps
            .iter()
            .filter(|s| !s.architectural() && **s != Step::Optimize)
            .count();
        if precision_steps > 1 {
            return bad("a chain has at most one precision step (fp16, int8, int8-qdq)");
        }
        if precision_steps == 1 && steps.last().is_some_and(|l| l.architectural()) {
            return bad("the precision step comes last (e.g. prune+int8)");
        }
        let mut seen = steps.clone();
        seen.dedup();
        if seen.len() != steps.len() {
            return bad("a step appears twice in a row");
        }
        Ok(Method { steps })
    }
}

impl TryFrom<String> for Method {
    type Error = Error;
    fn try_from(s: String) -> Result<Method> {
        s.parse()
    }
}

impl From<Method> for String {
    fn from(m: Method) -> String {
        m.name()
    }
}

/// The methods a study runs when none are named.
pub const DEFAULT_METHODS: &str = "optimize,prune,prune-global,lowrank-weight,\
lowrank-feature,lowrank-search,fp16,int8,prune+int8";
/// The whole-model parameter budgets when none are given.
pub const DEFAULT_BUDGETS: [f64; 3] = [0.75, 0.5, 0.25];

/// One row of a study: a method, at a budget when it takes one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// `prune@0.5`, `int8`, `prune+int8@0.25`: the row's key and its file name.
    pub id: String,
    pub method: Method,
    /// Fraction of the original model's parameters kept (architecture steps only).
    pub budget: Option<f64>,
}

impl Variant {
    pub fn new(method: Method, budget: Option<f64>) -> Variant {
        let id = match budget {
            Some(b) => format!("{}@{b}", method.name()),
            None => method.name(),
        };
        Variant { id, method, budget }
    }

    /// A file name for the variant's model.
    pub fn file_name(&self) -> String {
        format!("{}.onnx", self.id.replace(['@', '+'], "_"))
    }
}

/// Parse a comma-separated method list.
pub fn parse_methods(list: &str) -> Result<Vec<Method>> {
    let methods: Vec<Method> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_>>()?;
    if methods.is_empty() {
        return Err(Error::option_value(
            "methods",
            list,
            "name at least one method",
        ));
    }
    Ok(methods)
}

/// Every method at every budget (methods without a budget once), in the order given.
pub fn variants(methods: &[Method], budgets: &[f64]) -> Result<Vec<Variant>> {
    for &b in budgets {
        if !(b > 0.0 && b < 1.0) {
            return Err(Error::option_value(
                "budgets",
                b,
                "a budget is the fraction of parameters kept, in (0, 1)",
            ));
        }
    }
    let mut out: Vec<Variant> = Vec::new();
    for m in methods {
        if m.takes_budget() {
            if budgets.is_empty() {
                return Err(Error::option(
                    "budgets",
                    format!("method '{}' needs at least one budget", m.name()),
                ));
            }
            out.extend(budgets.iter().map(|&b| Variant::new(m.clone(), Some(b))));
        } else {
            out.push(Variant::new(m.clone(), None));
        }
    }
    let mut ids: Vec<&str> = out.iter().map(|v| v.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    if ids.len() != out.len() {
        return Err(Error::option(
            "methods",
            "a method or budget is listed twice",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_parse_and_name_themselves() {
        let m: Method = "prune+int8".parse().unwrap();
        assert_eq!(m.steps, vec![Step::Prune, Step::Int8]);
        assert_eq!(m.name(), "prune+int8");
        assert_eq!(m.precision(), Some(Step::Int8));
        assert!(m.takes_budget());
        assert!("int8+prune".parse::<Method>().is_err());
        assert!("fp16+int8".parse::<Method>().is_err());
        assert!("prune+prune".parse::<Method>().is_err());
        assert!("svd".parse::<Method>().is_err());
        assert!("prune+optimize".parse::<Method>().is_err());
        let s: Method = "lowrank-search+int8".parse().unwrap();
        assert_eq!(s.architecture_steps(), vec![Step::LowrankSearch]);
        assert!(
            !s.takes_budget(),
            "the search allocates by sensitivity, not by a budget"
        );
        assert!("int8+lowrank-search".parse::<Method>().is_err());
        let o: Method = "optimize".parse().unwrap();
        assert_eq!((o.precision(), o.takes_budget()), (None, false));
    }

    #[test]
    fn variants_cross_budgets_and_keep_precision_rows_single() {
        let methods = parse_methods("prune,fp16,prune+int8").unwrap();
        let v = variants(&methods, &[0.5, 0.25]).unwrap();
        let ids: Vec<&str> = v.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "prune@0.5",
                "prune@0.25",
                "fp16",
                "prune+int8@0.5",
                "prune+int8@0.25"
            ]
        );
        assert_eq!(v[3].file_name(), "prune_int8_0.5.onnx");
        assert!(variants(&methods, &[1.0]).is_err());
        assert!(variants(&parse_methods("prune,prune").unwrap(), &[0.5]).is_err());
    }
}
