//! What tract will actually execute: the optimised plan, node by node, with the kernel each
//! matrix product picked and the element-wise work it fused.
//!
//! This is how a user (and our tests) find out whether an int8 model runs integer kernels
//! (`avx2_mmm_i32_8x8`, `arm64simd_mmm_i32_8x8_dot`) or floats in disguise, and which
//! activations tract fused into a convolution and which still run as their own pass.

use crate::model::LoadedModel;
use serde::{Deserialize, Serialize};

/// One node of the optimised plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanNode {
    pub id: usize,
    pub name: String,
    /// tract's op name (`OptMatMul`, `DepthWise`, `OptBinChain`, `Im2col`, ...).
    pub op: String,
    /// tract's own description of the op: kernel names, fused micro-ops, shapes.
    pub info: Vec<String>,
    /// Output datum types and shapes, as tract prints facts (`1,16,24,96,F32`).
    pub outputs: Vec<String>,
}

/// Every node of the plan, in execution order, constants and sources left out.
pub fn plan_nodes(model: &LoadedModel) -> Vec<PlanNode> {
    let plan = model.plan.model();
    plan.eval_order()
        .unwrap_or_else(|_| (0..plan.nodes().len()).collect())
        .into_iter()
        .map(|id| &plan.nodes()[id])
        .filter(|n| !matches!(n.op().name().as_ref(), "Const" | "Source"))
        .map(|n| PlanNode {
            id: n.id,
            name: n.name.clone(),
            op: n.op().name().to_string(),
            info: n.op().info().unwrap_or_default(),
            outputs: n.outputs.iter().map(|o| format!("{:?}", o.fact)).collect(),
        })
        .collect()
}

/// The matrix-multiply kernel names the plan uses, each once, in order of first use
/// (`avx2_mmm_f32_16x6`, `avx2_mmm_i32_8x8`, ...). Taken from the ops' own descriptions.
pub fn kernel_names(nodes: &[PlanNode]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in nodes {
        for line in &n.info {
            for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.contains("_mmm_") && !out.iter().any(|k| k == word) {
                    out.push(word.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_found_once_in_order() {
        let node = |info: &[&str]| PlanNode {
            id: 0,
            name: "n".into(),
            op: "OptMatMul".into(),
            info: info.iter().map(|s| s.to_string()).collect(),
            outputs: vec![],
        };
        let nodes = vec![
            node(&["Mult: m:8 k:9 n:16 with [avx2_mmm_i32_8x8 (0)]"]),
            node(&["Mult: [fma_mmm_f32_16x6, avx2_mmm_i32_8x8]"]),
            node(&["Ops: AddMatMul >>> Store"]),
        ];
        assert_eq!(
            kernel_names(&nodes),
            vec!["avx2_mmm_i32_8x8".to_string(), "fma_mmm_f32_16x6".into()]
        );
    }
}
