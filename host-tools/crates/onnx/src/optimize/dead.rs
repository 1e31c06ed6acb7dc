//! Nodes that no graph output depends on, and initializers nothing reads, are dropped.

use super::PassReport;
use crate::node::display_name;
use crate::OnnxModel;
use crate::Result;
use std::collections::HashSet;

pub fn remove_dead(model: &mut OnnxModel) -> Result<PassReport> {
    let mut report = PassReport::new("dead nodes and unused initializers removed");
    let mut needed: HashSet<String> = model.graph_output_names();
    let consumers = model.consumers();
    let g = model.graph();
    let mut live = vec![false; g.node.len()];
    // Walk backwards: a node is live if something needed comes out of it.
    for (i, n) in g.node.iter().enumerate().rev() {
        if n.output.iter().any(|o| needed.contains(o)) {
            live[i] = true;
            needed.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
        }
    }
    // Subgraph captures count as uses (consumers() records them with slot usize::MAX).
    for (name, uses) in &consumers {
        if uses.iter().any(|(i, slot)| *slot == usize::MAX && live[*i]) {
            needed.insert(name.clone());
        }
    }
    let dead_names: Vec<String> = g
        .node
        .iter()
        .zip(&live)
        .filter(|(_, l)| !**l)
        .map(|(n, _)| format!("node {}", display_name(n)))
        .collect();
    let mut keep = live.into_iter();
    model
        .graph_mut()
        .node
        .retain(|_| keep.next().unwrap_or(true));
    for d in dead_names {
        report.note(d);
    }
    let g = model.graph_mut();
    let before: Vec<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    g.initializer.retain(|t| needed.contains(&t.name));
    let inits: HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    // Initializers listed as graph inputs (old exporters) go with them.
    g.input
        .retain(|i| !before.contains(&i.name) || inits.contains(&i.name));
    let produced: HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .collect();
    g.value_info.retain(|v| produced.contains(&v.name));
    for name in before.into_iter().filter(|n| !inits.contains(n)) {
        report.note(format!("initializer {name}"));
    }
    Ok(report)
}
