//! Per-node timing of tract's optimised plan, attributed back to the ONNX nodes.
//!
//! tract names every node it derives from an ONNX node `<onnx name>.<suffix>` (`Conv_3.pack_a`,
//! `p2o.Add.10.prefused`), so the longest dotted prefix that is an ONNX node name tells where a
//! plan node came from. Fusion muddies this: tract folds a Conv's matrix product into the
//! BatchNorm `Mul`/`Add` that follow it and names the fused kernel after the last one. A matrix
//! kernel attributed to a non-MAC op is therefore re-attributed to the MAC op (Conv, Gemm,
//! MatMul) feeding it, a few hops upstream.

use crate::macs::{is_mac_op, node_macs};
use crate::model::LoadedModel;
use crate::report::{NodeProfile, OpTypeProfile, Profile};
use std::collections::HashMap;

pub const ATTRIBUTION_NOTE: &str = "tract plan nodes are matched to ONNX nodes by the longest \
dotted name prefix; fused matrix kernels named after a following element-wise node are credited \
to the Conv/Gemm/MatMul feeding them; nodes tract created itself are listed as '(tract)'.";

/// For each node of the plan's model: the index of the ONNX node it came from.
pub fn attribute(model: &LoadedModel) -> Vec<Option<usize>> {
    let by_name: HashMap<&str, usize> = model
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    // Also match by every output tensor name: tract names a node after its first output,
    // and const-folded tensors keep their tensor names.
    let by_output: HashMap<&str, usize> = model
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let lookup = |name: &str| -> Option<usize> {
        let mut candidate = name;
        loop {
            if let Some(&i) = by_name.get(candidate).or_else(|| by_output.get(candidate)) {
                return Some(i);
            }
            candidate = &candidate[..candidate.rfind('.')?];
        }
    };
    let plan_model = model.plan.model();
    let mut owner: Vec<Option<usize>> =
        plan_model.nodes().iter().map(|n| lookup(&n.name)).collect();

    for node in plan_model.nodes() {
        let op = node.op().name();
        let is_kernel = op.contains("MatMul") || op.contains("Conv") || op.contains("Mmm");
        let onnx_is_mac = owner[node.id].is_some_and(|i| is_mac_op(&model.nodes[i].op_type));
        if !is_kernel || onnx_is_mac {
            continue;
        }
        // Breadth-first upstream over non-constant inputs, at most 4 hops.
        let mut frontier: Vec<usize> = node.inputs.iter().map(|o| o.node).collect();
        'search: for _ in 0..4 {
            let mut next = Vec::new();
            for id in frontier {
                let up = &plan_model.nodes()[id];
                if up.op().name() == "Const" {
                    continue;
                }
                if let Some(i) = owner[id].filter(|&i| is_mac_op(&model.nodes[i].op_type)) {
                    owner[node.id] = Some(i);
                    break 'search;
                }
                next.extend(up.inputs.iter().map(|o| o.node));
            }
            frontier = next;
        }
    }
    owner
}

/// Turn accumulated per-plan-node times into the report's profile.
///
/// `node_total_ms[i]` is the time plan node `i` took summed over `runs` runs, `run_total_ms`
/// the whole-run wall time summed over the same runs.
pub fn build_profile(
    model: &LoadedModel,
    owner: &[Option<usize>],
    node_total_ms: &[f64],
    run_total_ms: f64,
    runs: usize,
) -> Profile {
    let runs_f = runs.max(1) as f64;
    let plan_model = model.plan.model();

    struct Acc {
        onnx_op: String,
        tract_ops: Vec<String>,
        ms: f64,
        macs: u64,
        output_shape: Option<Vec<usize>>,
    }
    let mut per_node: HashMap<String, Acc> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut tract_ops: HashMap<String, (usize, f64)> = HashMap::new();

    for node in plan_model.nodes() {
        let ms = node_total_ms.get(node.id).copied().unwrap_or(0.0) / runs_f;
        let op = node.op().name().to_string();
        if op == "Const" || op == "Source" {
            continue;
        }
        let t = tract_ops.entry(op.clone()).or_default();
        t.0 += 1;
        t.1 += ms;
        let (key, onnx_op, macs, shape) = match owner.get(node.id).copied().flatten() {
            Some(i) => {
                let n = &model.nodes[i];
                let macs = node_macs(n, &model.tensor_shapes).unwrap_or(0);
                let shape = n
                    .outputs
                    .first()
                    .and_then(|o| model.tensor_shapes.get(o))
                    .cloned();
                (n.name.clone(), n.op_type.clone(), macs, shape)
            }
            None => (node.name.clone(), "(tract)".to_string(), 0, None),
        };
        let acc = per_node.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Acc {
                onnx_op,
                tract_ops: Vec::new(),
                ms: 0.0,
                macs,
                output_shape: shape,
            }
        });
        acc.ms += ms;
        if !acc.tract_ops.contains(&op) {
            acc.tract_ops.push(op);
        }
    }

    // A MAC node whose work tract fused into a node we could not credit back still did its
    // MACs: list it with zero time so per-node MACs add up to the model's total.
    for n in &model.nodes {
        if is_mac_op(&n.op_type) && !per_node.contains_key(&n.name) {
            order.push(n.name.clone());
            per_node.insert(
                n.name.clone(),
                Acc {
                    onnx_op: n.op_type.clone(),
                    tract_ops: Vec::new(),
                    ms: 0.0,
                    macs: node_macs(n, &model.tensor_shapes).unwrap_or(0),
                    output_shape: n
                        .outputs
                        .first()
                        .and_then(|o| model.tensor_shapes.get(o))
                        .cloned(),
                },
            );
        }
    }
    let node_sum: f64 = per_node.values().map(|a| a.ms).sum();
    let share = |ms: f64| if node_sum > 0.0 { ms / node_sum } else { 0.0 };
    let mut nodes: Vec<NodeProfile> = order
        .iter()
        .map(|k| {
            let a = &per_node[k];
            NodeProfile {
                name: k.clone(),
                onnx_op: a.onnx_op.clone(),
                tract_ops: a.tract_ops.clone(),
                mean_ms: a.ms,
                share: share(a.ms),
                macs: a.macs,
                output_shape: a.output_shape.clone(),
            }
        })
        .collect();
    nodes.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));

    let mut by_op: HashMap<String, OpTypeProfile> = HashMap::new();
    for n in &nodes {
        let e = by_op
            .entry(n.onnx_op.clone())
            .or_insert_with(|| OpTypeProfile {
                op: n.onnx_op.clone(),
                count: 0,
                mean_ms: 0.0,
                share: 0.0,
                macs: 0,
            });
        e.count += 1;
        e.mean_ms += n.mean_ms;
        e.macs += n.macs;
    }
    let mut op_types: Vec<OpTypeProfile> = by_op
        .into_values()
        .map(|mut o| {
            o.share = share(o.mean_ms);
            o
        })
        .collect();
    op_types.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));

    let mut tract_op_types: Vec<OpTypeProfile> = tract_ops
        .into_iter()
        .map(|(op, (count, ms))| OpTypeProfile {
            op,
            count,
            mean_ms: ms,
            share: share(ms),
            macs: 0,
        })
        .collect();
    tract_op_types.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));

    let run_mean_ms = run_total_ms / runs_f;
    let total_macs = total_macs(model);
    Profile {
        run_mean_ms,
        node_sum_mean_ms: node_sum,
        coverage: if run_mean_ms > 0.0 {
            node_sum / run_mean_ms
        } else {
            0.0
        },
        achieved_gflops: if run_mean_ms > 0.0 {
            2.0 * total_macs as f64 / (run_mean_ms * 1e-3) / 1e9
        } else {
            0.0
        },
        nodes,
        op_types,
        tract_op_types,
        attribution_note: ATTRIBUTION_NOTE.to_string(),
    }
}

/// MACs of the whole model from ONNX semantics (independent of tract's fusion).
pub fn total_macs(model: &LoadedModel) -> u64 {
    model
        .nodes
        .iter()
        .map(|n| node_macs(n, &model.tensor_shapes).unwrap_or(0))
        .sum()
}
