//! Apply a plan: slice every member's weights along its channel axis, fix `group`
//! attributes, reshape targets, slice bounds and split sizes, and drop stale value_info.
//! Graph inputs and outputs are pinned by the analysis, so their shapes never change.

use super::graph::Fixup;
use super::groups::Groups;
use super::select::Plan;
use crate::{Error, Result};
use edgeslim_onnx::node::{attr_ints, int, ints, set_attr};
use edgeslim_onnx::tensor::{Tensor, TensorData};
use edgeslim_onnx::OnnxModel;
use std::collections::{BTreeMap, HashSet};

fn take<T: Clone>(v: &[T], dims: &[usize], axis: usize, keep: &[usize]) -> Vec<T> {
    let c = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let s = (o * c + k) * inner;
            out.extend_from_slice(&v[s..s + inner]);
        }
    }
    out
}

/// `t` with only the positions `keep` along `axis`.
pub fn slice_axis(t: &Tensor, axis: usize, keep: &[usize]) -> Result<Tensor> {
    if axis >= t.dims.len() || keep.iter().any(|&k| k >= t.dims[axis]) {
        return Err(Error::tensor(
            "(slice)",
            format!("axis {axis} of {:?}", t.dims),
        ));
    }
    let d = &t.dims;
    let data = match &t.data {
        TensorData::F32(v) => TensorData::F32(take(v, d, axis, keep)),
        TensorData::F64(v) => TensorData::F64(take(v, d, axis, keep)),
        TensorData::F16(v) => TensorData::F16(take(v, d, axis, keep)),
        TensorData::I64(v) => TensorData::I64(take(v, d, axis, keep)),
        TensorData::I32(v) => TensorData::I32(take(v, d, axis, keep)),
        TensorData::I8(v) => TensorData::I8(take(v, d, axis, keep)),
        TensorData::U8(v) => TensorData::U8(take(v, d, axis, keep)),
        TensorData::Bool(v) => TensorData::Bool(take(v, d, axis, keep)),
    };
    let mut dims = t.dims.clone();
    dims[axis] = keep.len();
    Tensor::new(dims, data)
}

fn set_i64_entry(model: &mut OnnxModel, name: &str, index: usize, value: i64) -> Result<()> {
    let t = model
        .constant(name)
        .ok_or_else(|| Error::tensor(name, "expected a constant"))??;
    let data = match t.data {
        TensorData::I64(mut v) if index < v.len() => {
            v[index] = value;
            TensorData::I64(v)
        }
        TensorData::I32(mut v) if index < v.len() => {
            v[index] = value as i32;
            TensorData::I32(v)
        }
        _ => return Err(Error::tensor(name, format!("no integer entry {index}"))),
    };
    model.set_initializer(name, &Tensor::new(t.dims, data)?);
    Ok(())
}

/// The pruned copy of `model` (which must be the prepared model the groups were built on).
pub fn apply(model: &OnnxModel, groups: &Groups, plan: &Plan) -> Result<OnnxModel> {
    let g = &groups.graph;
    let removed: HashSet<usize> = plan.removed.values().flatten().copied().collect();
    for (gid, classes) in &plan.removed {
        let grp = &groups.groups[*gid];
        if !grp.prunable() {
            return Err(Error::Graph(format!(
                "group #{gid} is kept whole and cannot be pruned"
            )));
        }
        if classes.len() >= grp.channels {
            return Err(Error::Graph(format!(
                "group #{gid}: removing all {} channels would empty it",
                grp.channels
            )));
        }
    }
    let is_removed = |r: usize| removed.contains(&r);
    let mut out = model.clone();
    // Per constant, per axis, the positions kept. Every slice of one (tensor, axis) comes from
    // the same units, so they must agree.
    let mut cuts: BTreeMap<&str, BTreeMap<usize, Vec<usize>>> = BTreeMap::new();
    for w in &g.weights {
        let keep = g.kept(&w.units, &is_removed);
        let e = cuts.entry(w.tensor.as_str()).or_default();
        match e.get(&w.axis) {
            Some(k) if *k != keep => {
                return Err(Error::tensor(
                    &w.tensor,
                    format!("two channel groups disagree on axis {}", w.axis),
                ))
            }
            _ => {
                e.insert(w.axis, keep);
            }
        }
    }
    for (name, axes) in cuts {
        let mut t = out
            .constant(name)
            .ok_or_else(|| Error::tensor(name, "expected a constant weight"))??;
        let mut changed = false;
        for (axis, keep) in axes {
            if keep.len() != t.dims[axis] {
                t = slice_axis(&t, axis, &keep).map_err(|e| Error::tensor(name, e.to_string()))?;
                changed = true;
            }
        }
        if changed {
            out.set_initializer(name, &t);
        }
    }
    let kept_of = |t: &str| -> Result<Vec<usize>> {
        let l = g
            .layouts
            .get(t)
            .ok_or_else(|| Error::tensor(t, "no channel layout (internal)"))?;
        Ok(g.kept(&l.units, &is_removed))
    };
    for f in &g.fixups {
        match f {
            Fixup::Group { node, tensor } => {
                let k = kept_of(tensor)?.len() as i64;
                set_attr(&mut out.graph_mut().node[*node], int("group", k));
            }
            Fixup::ReshapeDim {
                shape,
                axis,
                tensor,
                ..
            } => {
                let k = kept_of(tensor)?.len() as i64;
                set_i64_entry(&mut out, shape, *axis, k)?;
            }
            Fixup::SliceBounds {
                node,
                tensor,
                index,
                start,
                end,
            } => {
                let kept = kept_of(tensor)?;
                let ns = kept.iter().filter(|&&p| p < *start).count() as i64;
                let ne = kept.iter().filter(|&&p| p < *end).count() as i64;
                let n = out.graph().node[*node].clone();
                if n.input.len() > 1 {
                    set_i64_entry(&mut out, &n.input[1], *index, ns)?;
                    set_i64_entry(&mut out, &n.input[2], *index, ne)?;
                } else {
                    let node = &mut out.graph_mut().node[*node];
                    for (attr, v) in [("starts", ns), ("ends", ne)] {
                        let mut vals = attr_ints(node, attr).unwrap_or_default();
                        if let Some(x) = vals.get_mut(*index) {
                            *x = v;
                        }
                        set_attr(node, ints(attr, &vals));
                    }
                }
            }
            Fixup::SplitSizes {
                node,
                tensor,
                sizes,
            } => {
                let kept = kept_of(tensor)?;
                let mut new = Vec::new();
                let mut off = 0;
                for &s in sizes {
                    new.push(kept.iter().filter(|&&p| p >= off && p < off + s).count() as i64);
                    off += s;
                }
                if new.contains(&0) {
                    return Err(Error::Graph(format!(
                        "Split '{}': a part would lose all its channels",
                        g.nodes[*node].0
                    )));
                }
                let n = out.graph().node[*node].clone();
                match n.input.get(1).filter(|s| !s.is_empty()) {
                    Some(s) => {
                        let t = Tensor::new(vec![new.len()], TensorData::I64(new))?;
                        out.set_initializer(s, &t);
                    }
                    None if out.opset() >= 13 => {
                        let name = out.fresh_name(&format!("{}.split", g.nodes[*node].0));
                        let t = Tensor::new(vec![new.len()], TensorData::I64(new))?;
                        out.set_initializer(&name, &t);
                        let node = &mut out.graph_mut().node[*node];
                        node.input.resize(1, String::new());
                        node.input.push(name);
                    }
                    None => set_attr(&mut out.graph_mut().node[*node], ints("split", &new)),
                }
            }
        }
    }
    // Declared intermediate shapes are stale now; engines infer them again.
    out.graph_mut().value_info.clear();
    Ok(out)
}
