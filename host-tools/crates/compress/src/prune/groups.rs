//! Groups: the channel classes of the dependency graph, gathered by the set of members they
//! touch. All classes of a group move through the same layers (a Conv's output channels, its
//! BatchNorm, the activations and the next layers' inputs), so one ratio and one ranking
//! apply to them. This is the object a user prints (`analyze --groups`) to see what will
//! move together and why something is kept.

use super::graph::{DepGraph, Role};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// One layer's part in a group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Member {
    pub node: String,
    pub op: String,
    pub role: Role,
    /// The sliced constant and the axis it is sliced along.
    pub tensor: String,
    pub axis: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub id: usize,
    /// Number of removable units (channels; for attention, heads).
    pub channels: usize,
    /// Positions each unit spans in the widest member (1 for plain channels, H·W for a
    /// channel seen through Flatten, the head dimension for attention heads).
    pub width: usize,
    pub members: Vec<Member>,
    /// Activations that carry the group's channels.
    pub tensors: Vec<String>,
    /// Why the group is kept whole; empty when it can be pruned.
    pub excluded: Vec<String>,
    /// Union-find roots of the group's units, in channel order of the first member.
    #[serde(skip)]
    pub classes: Vec<usize>,
}

impl Group {
    pub fn prunable(&self) -> bool {
        self.excluded.is_empty()
    }

    /// Does any member node or tensor match?
    pub fn matches(&self, re: &regex::Regex) -> bool {
        self.members
            .iter()
            .any(|m| re.is_match(&m.node) || re.is_match(&m.tensor))
            || self.tensors.iter().any(|t| re.is_match(t))
    }
}

/// The groups of a model plus the dependency graph they come from.
#[derive(Debug, Clone)]
pub struct Groups {
    pub groups: Vec<Group>,
    pub graph: DepGraph,
    /// Class root → group id.
    pub class_group: HashMap<usize, usize>,
}

impl Groups {
    pub fn build(graph: DepGraph) -> Groups {
        let uf = &graph.units;
        let n_w = graph.weights.len();
        // Tensors in graph order, for stable member ids and listings.
        let mut tensors: Vec<(&String, &super::graph::Layout)> = graph.layouts.iter().collect();
        tensors.sort_by_key(|(t, _)| (graph.producer.get(*t).copied().unwrap_or(0), (*t).clone()));
        let mut members_of: HashMap<usize, BTreeSet<usize>> = HashMap::new();
        let mut order: Vec<usize> = Vec::new();
        let mut touch = |root: usize, id: usize, order: &mut Vec<usize>| {
            let e = members_of.entry(root).or_default();
            if e.is_empty() {
                order.push(root);
            }
            e.insert(id);
        };
        for (wi, w) in graph.weights.iter().enumerate() {
            for &u in &w.units {
                touch(uf.find(u), wi, &mut order);
            }
        }
        for (ti, (_, l)) in tensors.iter().enumerate() {
            for &u in &l.units {
                touch(uf.find(u), n_w + ti, &mut order);
            }
        }
        let mut by_sig: HashMap<Vec<usize>, usize> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut class_group = HashMap::new();
        for root in order {
            let sig: Vec<usize> = members_of[&root].iter().copied().collect();
            let gid = *by_sig.entry(sig.clone()).or_insert_with(|| {
                let mut members: Vec<Member> = Vec::new();
                let mut ts = Vec::new();
                for &id in &sig {
                    if id < n_w {
                        let w = &graph.weights[id];
                        let (node, op) = graph.nodes[w.node].clone();
                        members.push(Member {
                            node,
                            op,
                            role: w.role,
                            tensor: w.tensor.clone(),
                            axis: w.axis,
                        });
                    } else {
                        ts.push(tensors[id - n_w].0.clone());
                    }
                }
                groups.push(Group {
                    id: groups.len(),
                    channels: 0,
                    width: 1,
                    members,
                    tensors: ts,
                    excluded: Vec::new(),
                    classes: Vec::new(),
                });
                groups.len() - 1
            });
            let g = &mut groups[gid];
            g.classes.push(root);
            g.channels += 1;
            class_group.insert(root, gid);
            if let Some(reason) = uf.pinned(root) {
                if !g.excluded.iter().any(|r| r == reason) {
                    g.excluded.push(reason.to_string());
                }
            }
        }
        // Width: positions per unit in the widest member.
        for g in groups.iter_mut() {
            let mut width = 1;
            for (wi, w) in graph.weights.iter().enumerate() {
                let _ = wi;
                let hits = w
                    .units
                    .iter()
                    .filter(|&&u| class_group.get(&uf.find(u)) == Some(&g.id))
                    .count();
                if hits > 0 && g.channels > 0 {
                    width = width.max(hits / g.channels);
                }
            }
            g.width = width;
            if !g.members.iter().any(|m| m.role != Role::In) && g.prunable() {
                g.excluded
                    .push("no layer produces these channels (only consumers)".into());
            }
        }
        // Order groups by where they start in the graph.
        Groups {
            groups,
            graph,
            class_group,
        }
    }

    pub fn prunable(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter().filter(|g| g.prunable())
    }
}

/// The JSON form of the groups (`analyze --groups --json`).
#[derive(Debug, Clone, Serialize)]
pub struct GroupsSummary {
    pub groups: usize,
    pub prunable: usize,
    pub prunable_channels: usize,
    pub excluded: usize,
    pub list: Vec<Group>,
}

pub fn summary(g: &Groups) -> GroupsSummary {
    GroupsSummary {
        groups: g.groups.len(),
        prunable: g.prunable().count(),
        prunable_channels: g.prunable().map(|x| x.channels).sum(),
        excluded: g.groups.len() - g.prunable().count(),
        list: g.groups.clone(),
    }
}

/// The text listing: one block per group, members with their role, and why a group is kept.
pub fn render_groups(g: &Groups) -> String {
    use std::fmt::Write;
    let s = summary(g);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} channel groups: {} prunable ({} channels), {} kept whole",
        s.groups, s.prunable, s.prunable_channels, s.excluded
    );
    for grp in &g.groups {
        let status = if grp.prunable() {
            "prunable".to_string()
        } else {
            "kept".to_string()
        };
        let width = if grp.width > 1 {
            format!(" × {} positions", grp.width)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "\n#{:<3} {} channels{}  {}",
            grp.id, grp.channels, width, status
        );
        for m in &grp.members {
            let _ = writeln!(
                out,
                "      {:<5} {:<20} {}  ({} axis {})",
                m.role.as_str(),
                m.op,
                m.node,
                m.tensor,
                m.axis
            );
        }
        if !grp.tensors.is_empty() {
            let shown: Vec<&str> = grp.tensors.iter().take(6).map(String::as_str).collect();
            let more = if grp.tensors.len() > 6 {
                format!(" … (+{})", grp.tensors.len() - 6)
            } else {
                String::new()
            };
            let _ = writeln!(out, "      tensors: {}{more}", shown.join(", "));
        }
        for r in &grp.excluded {
            let _ = writeln!(out, "      kept because: {r}");
        }
    }
    out
}
