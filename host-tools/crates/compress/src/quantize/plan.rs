//! Does tract really run int8 (or f16) kernels for a model, or float with extra work?
//!
//! We load the model as the board would (tract's optimiser, planned) and read the optimised
//! plan: op names, and for every matrix-product node (tract fuses Conv and MatMul into
//! `OptMatMul`/`Mmm`-style ops after lowering convolutions) the element types of its inputs.
//! A product that reads i8/u8 tensors is an integer kernel; one that reads f32 after a
//! DequantizeLinear was folded is float.

use crate::Result;
use edgeslim_onnx::OnnxModel;
use edgeslim_runtime::tract_onnx::prelude::*;
use edgeslim_runtime::{InputShape, LoadOptions, LoadedModel};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub nodes: usize,
    /// tract op name → count.
    pub ops: BTreeMap<String, usize>,
    /// Matrix-product / convolution nodes and the element types they read.
    pub matmul_nodes: usize,
    pub integer_matmul_nodes: usize,
    pub f16_matmul_nodes: usize,
    /// Distinct signatures of the product nodes, `op(input types) -> output types`, so the
    /// verdict can be checked by eye.
    pub product_signatures: Vec<String>,
    /// Plan tensors holding 8-bit integers (quantized activations or weights still in int8).
    pub int8_tensors: usize,
    /// The matrix-multiply kernels tract picked (`avx2_mmm_i32_8x8` is an integer one).
    pub kernels: Vec<String>,
    /// One line for the report.
    pub verdict: String,
}

fn is_product(op: &str) -> bool {
    let l = op.to_ascii_lowercase();
    l.contains("matmul")
        || l.contains("mmm")
        || l.contains("conv")
        || l.contains("einsum")
        || l.contains("gemm")
}

pub fn summarize(model: &OnnxModel, input_shapes: &[InputShape]) -> Result<PlanSummary> {
    let opts = LoadOptions {
        input_shapes: input_shapes.to_vec(),
        ..LoadOptions::default()
    };
    let label = model.label();
    let loaded = LoadedModel::from_bytes(model.to_bytes()?, Path::new(&label), None, &opts)?;
    let plan = loaded.plan.model();
    let mut ops = BTreeMap::new();
    let (mut mm, mut int, mut half) = (0, 0, 0);
    let mut signatures: Vec<String> = Vec::new();
    let is_8bit = |t: &DatumType| {
        matches!(
            t,
            DatumType::I8 | DatumType::U8 | DatumType::QI8(_) | DatumType::QU8(_)
        )
    };
    let mut int8_tensors = 0;
    for n in plan.nodes() {
        let name = n.op().name().to_string();
        *ops.entry(name.clone()).or_insert(0) += 1;
        int8_tensors += n
            .outputs
            .iter()
            .filter(|o| is_8bit(&o.fact.datum_type))
            .count();
        if !is_product(&name) {
            continue;
        }
        mm += 1;
        let types: Vec<DatumType> = n
            .inputs
            .iter()
            .filter_map(|o| plan.outlet_fact(*o).ok().map(|f| f.datum_type))
            .collect();
        let outs: Vec<DatumType> = n.outputs.iter().map(|o| o.fact.datum_type).collect();
        let sig = format!("{name}({types:?}) -> {outs:?}");
        if !signatures.contains(&sig) {
            signatures.push(sig);
        }
        let integer = types.iter().any(is_8bit);
        if integer {
            int += 1;
        } else if types.contains(&DatumType::F16) {
            half += 1;
        }
    }
    let verdict = if mm == 0 {
        "no matrix-product nodes in tract's plan".to_string()
    } else if int == mm {
        format!("tract runs all {mm} matrix products as integer kernels")
    } else if int > 0 {
        format!("tract runs {int} of {mm} matrix products as integer kernels, the rest in float")
    } else if half > 0 {
        format!("tract runs {half} of {mm} matrix products in f16")
    } else {
        format!("tract runs all {mm} matrix products in f32: no integer kernels (QDQ is dequantized to float)")
    };
    Ok(PlanSummary {
        nodes: plan.nodes().len(),
        ops,
        matmul_nodes: mm,
        integer_matmul_nodes: int,
        f16_matmul_nodes: half,
        product_signatures: signatures,
        int8_tensors,
        kernels: edgeslim_runtime::plan::kernel_names(&edgeslim_runtime::plan::plan_nodes(&loaded)),
        verdict,
    })
}
