//! Identity and inference-time Dropout are no-ops: wire their consumers to their input.

use super::PassReport;
use crate::node::display_name;
use crate::OnnxModel;
use crate::Result;

fn is_removable(model: &OnnxModel, node: &onnx_protobuf::NodeProto) -> bool {
    match node.op_type.as_str() {
        "Identity" => node.input.len() == 1,
        "Dropout" => {
            // The mask output must be unused, and training_mode (opset 12+) absent or false.
            let mask_unused = node.output.get(1).is_none_or(|m| m.is_empty());
            let training_off = match node.input.get(2).filter(|s| !s.is_empty()) {
                None => true,
                Some(t) => model
                    .constant(t)
                    .and_then(|r| r.ok())
                    .is_some_and(|v| v.to_f32_vec().iter().all(|&x| x == 0.0)),
            };
            mask_unused && training_off
        }
        _ => false,
    }
}

pub fn remove_identities(model: &mut OnnxModel) -> Result<PassReport> {
    let mut report = PassReport::new("Identity/Dropout removed");
    loop {
        let graph_outputs = model.graph_output_names();
        let graph_inputs = model.graph_input_names();
        let producers = model.producers();
        let consumers = model.consumers();
        let found = model.graph().node.iter().enumerate().find_map(|(i, n)| {
            if !is_removable(model, n) {
                return None;
            }
            let (x, y) = (n.input[0].clone(), n.output.first()?.clone());
            if !graph_outputs.contains(&y) {
                return Some((i, x, y, false));
            }
            // y is a graph output: keep its name by renaming x's producer output to y, which
            // is only safe if x is an ordinary intermediate used by nobody else.
            let x_is_private = producers.contains_key(&x)
                && !graph_outputs.contains(&x)
                && !graph_inputs.contains(&x)
                && consumers.get(&x).is_some_and(|c| c.len() == 1);
            x_is_private.then_some((i, x, y, true))
        });
        let Some((i, x, y, rename_producer)) = found else {
            break;
        };
        let name = display_name(&model.graph().node[i]);
        model.graph_mut().node.remove(i);
        if rename_producer {
            model.rename_tensor(&x, &y);
        } else {
            model.replace_uses(&y, &x);
        }
        report.note(name);
    }
    Ok(report)
}
