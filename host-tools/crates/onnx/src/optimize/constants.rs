//! `Constant` nodes (paddle2onnx puts every weight in one) become initializers, so every later
//! pass finds weights in one place.

use super::PassReport;
use crate::model::constant_node_value;
use crate::OnnxModel;
use crate::Result;

pub fn constants_to_initializers(model: &mut OnnxModel) -> Result<PassReport> {
    let mut report = PassReport::new("constants to initializers");
    let outputs = model.graph_output_names();
    let mut kept = Vec::new();
    let nodes = std::mem::take(&mut model.graph_mut().node);
    let mut converted = Vec::new();
    for node in nodes {
        let out = node.output.first().cloned().unwrap_or_default();
        // A Constant that is itself a graph output must stay a node: an initializer cannot
        // be a graph output in every engine.
        if node.op_type != "Constant" || out.is_empty() || outputs.contains(&out) {
            kept.push(node);
            continue;
        }
        match constant_node_value(&node) {
            Ok(t) => converted.push((out, t)),
            // Sparse or string constants: leave them as they are.
            Err(_) => kept.push(node),
        }
    }
    model.graph_mut().node = kept;
    for (name, t) in converted {
        report.note(format!("{name} {:?}", t.dims));
        model.set_initializer(&name, &t);
    }
    Ok(report)
}
