//! Multiply-accumulate counts of the ops that dominate inference, from ONNX semantics and the
//! inferred shapes. Element-wise ops count zero: they are memory-bound, not MAC-bound.

use crate::model::OnnxNode;
use std::collections::HashMap;

fn prod(dims: &[usize]) -> u64 {
    dims.iter().map(|&d| d as u64).product()
}

/// MACs of one node, or `None` when a shape it needs is unknown.
pub fn node_macs(node: &OnnxNode, shapes: &HashMap<String, Vec<usize>>) -> Option<u64> {
    let input = |i: usize| {
        node.inputs
            .get(i)
            .filter(|n| !n.is_empty())
            .and_then(|n| shapes.get(n))
    };
    let output = |i: usize| node.outputs.get(i).and_then(|n| shapes.get(n));
    match node.op_type.as_str() {
        // Integer forms count the same products; QLinearConv's weight is its fourth input
        // (x, x_scale, x_zero_point, w, ...).
        "Conv" | "ConvInteger" | "QLinearConv" => {
            // out [N, M, *S], W [M, C/g, *K]: every output element sums C/g·ΠK products.
            let y = output(0)?;
            let w = input(if node.op_type == "QLinearConv" { 3 } else { 1 })?;
            (w.len() >= 2).then(|| prod(y) * prod(&w[1..]))
        }
        "ConvTranspose" => {
            // X [N, C, *S_in], W [C, M/g, *K]: every input element scatters (M/g)·ΠK products.
            let x = input(0)?;
            let w = input(1)?;
            (w.len() >= 2).then(|| prod(x) * prod(&w[1..]))
        }
        "Gemm" => {
            let a = input(0)?;
            let y = output(0)?;
            let trans_a = node.int_attrs.get("transA").copied().unwrap_or(0) != 0;
            let k = if trans_a { *a.first()? } else { *a.get(1)? };
            Some(prod(y) * k as u64)
        }
        "MatMul" | "MatMulInteger" | "QLinearMatMul" => {
            let a = input(0)?;
            let y = output(0)?;
            Some(prod(y) * *a.last()? as u64)
        }
        // Groups need no special case: W's second dimension is already C/g (or M/g).
        _ => Some(0),
    }
}

/// Is this op one whose cost is MACs (so fused kernels should be attributed to it)?
pub fn is_mac_op(op_type: &str) -> bool {
    matches!(
        op_type,
        "Conv"
            | "ConvTranspose"
            | "Gemm"
            | "MatMul"
            | "ConvInteger"
            | "QLinearConv"
            | "MatMulInteger"
            | "QLinearMatMul"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, i64)]) -> OnnxNode {
        OnnxNode {
            name: outputs[0].into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            int_attrs: attrs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn integer_forms_count_the_same_products() {
        let mut s = HashMap::new();
        s.insert("x".to_string(), vec![1, 8, 10, 10]);
        s.insert("w".to_string(), vec![16, 8, 3, 3]);
        s.insert("y".to_string(), vec![1, 16, 10, 10]);
        let float = node("Conv", &["x", "w"], &["y"], &[]);
        let q = node(
            "QLinearConv",
            &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
            &["y"],
            &[],
        );
        assert_eq!(node_macs(&q, &s), node_macs(&float, &s));
        assert_eq!(node_macs(&q, &s), Some(1600 * 72));
        s.insert("a".to_string(), vec![1, 5, 32]);
        s.insert("o".to_string(), vec![1, 5, 64]);
        let mm = node("QLinearMatMul", &["a", "as", "az", "b"], &["o"], &[]);
        assert_eq!(node_macs(&mm, &s), Some(5 * 64 * 32));
    }

    #[test]
    fn conv_gemm_matmul_by_hand() {
        let mut s = HashMap::new();
        s.insert("x".to_string(), vec![1, 8, 10, 10]);
        s.insert("w".to_string(), vec![16, 4, 3, 3]); // groups = 2
        s.insert("y".to_string(), vec![1, 16, 8, 8]);
        let conv = node("Conv", &["x", "w"], &["y"], &[("group", 2)]);
        assert_eq!(node_macs(&conv, &s), Some(16 * 64 * 4 * 9));

        s.insert("a".to_string(), vec![5, 7]);
        s.insert("g".to_string(), vec![5, 3]);
        let gemm = node("Gemm", &["a", "b"], &["g"], &[]);
        assert_eq!(node_macs(&gemm, &s), Some(5 * 3 * 7));
        s.insert("at".to_string(), vec![7, 5]);
        let gemm_t = node("Gemm", &["at", "b"], &["g"], &[("transA", 1)]);
        assert_eq!(node_macs(&gemm_t, &s), Some(5 * 3 * 7));

        s.insert("q".to_string(), vec![2, 4, 6, 8]);
        s.insert("m".to_string(), vec![2, 4, 6, 6]);
        let mm = node("MatMul", &["q", "k"], &["m"], &[]);
        assert_eq!(node_macs(&mm, &s), Some(2 * 4 * 6 * 6 * 8));

        s.insert("ti".to_string(), vec![1, 4, 5, 5]);
        s.insert("tw".to_string(), vec![4, 2, 2, 2]);
        let convt = node("ConvTranspose", &["ti", "tw"], &["to"], &[]);
        assert_eq!(node_macs(&convt, &s), Some(100 * 8));

        let relu = node("Relu", &["y"], &["r"], &[]);
        assert_eq!(node_macs(&relu, &s), Some(0));
        let unknown = node("Conv", &["nope", "w"], &["nope2"], &[]);
        assert_eq!(node_macs(&unknown, &s), None);
    }
}
