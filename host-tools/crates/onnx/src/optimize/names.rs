//! Give every unnamed node its first output's name, so reports, profiles and pruning groups
//! can refer to it (paddle2onnx leaves all names empty).

use super::PassReport;
use crate::OnnxModel;
use std::collections::HashSet;

pub fn name_unnamed_nodes(model: &mut OnnxModel) -> PassReport {
    let mut report = PassReport::new("unnamed nodes named");
    let mut used: HashSet<String> = model
        .graph()
        .node
        .iter()
        .filter(|n| !n.name.is_empty())
        .map(|n| n.name.clone())
        .collect();
    let mut count = 0usize;
    for n in model
        .graph_mut()
        .node
        .iter_mut()
        .filter(|n| n.name.is_empty())
    {
        let base = n
            .output
            .first()
            .filter(|o| !o.is_empty())
            .cloned()
            .unwrap_or_else(|| n.op_type.clone());
        let name = crate::model::fresh_name_in(&used, &base);
        used.insert(name.clone());
        n.name = name;
        count += 1;
    }
    if count > 0 {
        report.count = count;
        report
            .details
            .push(format!("{count} nodes named after their first output"));
    }
    report
}
