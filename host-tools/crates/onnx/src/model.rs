//! The graph IR every pass takes and returns: an ONNX `ModelProto` plus the helpers passes
//! need (producers, consumers, constants, renaming, topological order) and safe saving.
//!
//! We keep the protobuf itself as the IR rather than translating to a private one: unknown
//! fields, metadata and ops we do not touch survive a round trip byte for byte, and every
//! intermediate state is a valid ONNX model another engine can check.

use super::node::display_name;
use super::tensor::{stored_element_count, Tensor};
use crate::{Error, Result};
use edgeslim_runtime::fsutil;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{
    GraphProto, Message, ModelProto, NodeProto, StringStringEntryProto, TensorProto, ValueInfoProto,
};
use protobuf::EnumOrUnknown;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct OnnxModel {
    pub proto: ModelProto,
    /// Where it was read from (for messages and relative external data).
    pub path: Option<PathBuf>,
    /// The external-data files its tensors were read from: inputs too, never overwritten.
    pub external_files: Vec<PathBuf>,
}

/// How to write a model.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Store tensors of at least this many bytes in `<model file>.data` next to the model.
    pub external_data_threshold: Option<usize>,
}

impl OnnxModel {
    pub fn new(proto: ModelProto) -> OnnxModel {
        OnnxModel {
            proto,
            path: None,
            external_files: Vec::new(),
        }
    }

    /// Read a model, pulling any external tensor data into memory.
    pub fn load(path: &Path) -> Result<OnnxModel> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut m = Self::from_bytes(&bytes, path)?;
        // The rules tract and our passes rely on, before any pass runs.
        check_semantics(&bytes, path)?;
        m.resolve_external_data(path.parent().unwrap_or(Path::new(".")))?;
        m.path = Some(path.to_path_buf());
        let history = crate::provenance::history(m.metadata(crate::provenance::KEY));
        crate::provenance::loaded(path, &bytes, history.unwrap_or_default());
        Ok(m)
    }

    /// Decode a model from bytes; `label` names it in errors.
    pub fn from_bytes(bytes: &[u8], label: &Path) -> Result<OnnxModel> {
        let not_onnx = |reason: String| Error::NotOnnx {
            path: label.to_path_buf(),
            reason,
        };
        if bytes.is_empty() {
            return Err(not_onnx("file is empty".into()));
        }
        let proto = ModelProto::parse_from_bytes(bytes)
            .map_err(|e| not_onnx(format!("protobuf decoding failed: {e}")))?;
        if proto.graph.is_none() {
            return Err(not_onnx("the file decodes but holds no graph".into()));
        }
        if proto.opset_import.is_empty() {
            return Err(not_onnx(
                "no opset_import: this is not an ONNX model".into(),
            ));
        }
        Ok(OnnxModel {
            proto,
            path: Some(label.to_path_buf()),
            external_files: Vec::new(),
        })
    }

    pub fn label(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(in memory)".into())
    }

    pub fn graph(&self) -> &GraphProto {
        // `from_bytes` and `new` callers guarantee a graph; the default instance is harmless.
        self.proto.graph.get_or_default()
    }

    pub fn graph_mut(&mut self) -> &mut GraphProto {
        self.proto.graph.mut_or_insert_default()
    }

    /// The default-domain opset version.
    pub fn opset(&self) -> i64 {
        self.proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(0)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.proto
            .write_to_bytes()
            .map_err(|e| Error::Other(format!("encoding the model: {e}")))
    }

    /// Write the model atomically (temporary file + rename), never over a file it was read
    /// from. With an external-data threshold, large tensors go to `<file>.<content hash>.data`.
    pub fn save(&self, path: &Path, opts: &SaveOptions) -> Result<()> {
        // The input is the model file and every external-data file it was read with.
        let inputs: Vec<&Path> = self
            .path
            .iter()
            .chain(self.external_files.iter())
            .map(|p| p.as_path())
            .collect();
        fsutil::ensure_not_input(path, &inputs)?;
        // The command that writes the file joins the history it carries (when the binary
        // records provenance).
        let stamped_copy;
        let this = match crate::provenance::stamped(self.metadata(crate::provenance::KEY), path) {
            Some(v) => {
                let mut c = self.clone();
                c.set_metadata(crate::provenance::KEY, &v);
                stamped_copy = c;
                &stamped_copy
            }
            None => self,
        };
        match opts.external_data_threshold {
            None => {
                let bytes = this.to_bytes()?;
                check_semantics(&bytes, path)?;
                fsutil::write_atomic(path, &bytes)?;
            }
            Some(threshold) => {
                let file_name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .ok_or_else(|| {
                        Error::Invalid(format!("{}: not a file path", path.display()))
                    })?;
                let mut copy = this.clone();
                let mut blob: Vec<u8> = Vec::new();
                let mut placed = Vec::new(); // (tensor index, offset, length)
                for (i, t) in copy.all_tensor_protos_mut().into_iter().enumerate() {
                    if t.raw_data.len() >= threshold {
                        // Align each tensor to 64 bytes, as onnx's own writer may, so a
                        // reader can map it directly.
                        while !blob.len().is_multiple_of(64) {
                            blob.push(0);
                        }
                        placed.push((i, blob.len(), t.raw_data.len()));
                        blob.extend_from_slice(&t.raw_data);
                    }
                }
                // The data file is named by its content: a new model never shares a name
                // with the data the old one still points at, so the pair switches with the
                // model's rename alone (atomic as a set), and readers of the old model keep
                // their data until the switch.
                let hash = edgeslim_runtime::model::file_sha256(&blob);
                let data_name = format!("{file_name}.{}.data", &hash[..12]);
                let data_path = path.with_file_name(&data_name);
                fsutil::ensure_not_input(&data_path, &inputs)?;
                let mut tensors = copy.all_tensor_protos_mut();
                for &(i, offset, length) in &placed {
                    let t = &mut tensors[i];
                    t.external_data = vec![
                        entry("location", &data_name),
                        entry("offset", &offset.to_string()),
                        entry("length", &length.to_string()),
                    ];
                    t.data_location = EnumOrUnknown::new(DataLocation::EXTERNAL);
                    t.raw_data.clear();
                }
                let bytes = copy.to_bytes()?;
                check_semantics(&bytes, path)?;
                let previous = data_files_of(path, &file_name);
                // Data first: a model file never points at data that is not there yet.
                if !placed.is_empty() {
                    fsutil::write_atomic(&data_path, &blob)?;
                }
                fsutil::write_atomic(path, &bytes)?;
                // The replaced model's own data files are garbage now (never an input's).
                for old in previous {
                    let old = path.with_file_name(old);
                    if old != data_path && !inputs.contains(&old.as_path()) {
                        let _ = std::fs::remove_file(&old);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every tensor proto of the main graph: initializers and `Constant` node values.
    fn all_tensor_protos_mut(&mut self) -> Vec<&mut TensorProto> {
        let g = self.graph_mut();
        let mut out: Vec<&mut TensorProto> = g.initializer.iter_mut().collect();
        for n in g.node.iter_mut() {
            for a in n.attribute.iter_mut() {
                if let Some(t) = a.t.as_mut() {
                    out.push(t);
                }
            }
        }
        out
    }

    fn resolve_external_data(&mut self, base: &Path) -> Result<()> {
        let label = self.label();
        let mut files: HashMap<String, Vec<u8>> = HashMap::new();
        let mut read_from = Vec::new();
        for t in self.all_tensor_protos_mut() {
            if t.data_location.enum_value() != Ok(DataLocation::EXTERNAL) {
                continue;
            }
            let get = |k: &str| {
                t.external_data
                    .iter()
                    .find(|e| e.key == k)
                    .map(|e| e.value.clone())
            };
            let location = get("location").ok_or_else(|| {
                Error::tensor(
                    &t.name,
                    format!("{label}: external data without a location"),
                )
            })?;
            if Path::new(&location).is_absolute() || location.contains("..") {
                return Err(Error::tensor(
                    &t.name,
                    format!("{label}: external data location '{location}' must be a relative path inside the model's folder"),
                ));
            }
            if !files.contains_key(&location) {
                let p = base.join(&location);
                let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
                files.insert(location.clone(), bytes);
                read_from.push(p);
            }
            let data = &files[&location];
            let parse = |k: &str| -> Result<Option<usize>> {
                get(k)
                    .map(|v| {
                        v.parse::<usize>().map_err(|_| {
                            Error::tensor(
                                &t.name,
                                format!("external data {k} '{v}' is not a number"),
                            )
                        })
                    })
                    .transpose()
            };
            let offset = parse("offset")?.unwrap_or(0);
            let length = parse("length")?.unwrap_or(data.len().saturating_sub(offset));
            let end = offset.checked_add(length).filter(|&e| e <= data.len()).ok_or_else(|| {
                Error::tensor(
                    &t.name,
                    format!(
                        "external data [{offset}, +{length}) is past the end of '{location}' ({} bytes)",
                        data.len()
                    ),
                )
            })?;
            t.raw_data = data[offset..end].to_vec();
            t.external_data.clear();
            t.data_location = EnumOrUnknown::new(DataLocation::DEFAULT);
        }
        self.external_files = read_from;
        Ok(())
    }

    // ---- queries -------------------------------------------------------------------------

    pub fn initializer(&self, name: &str) -> Option<&TensorProto> {
        self.graph().initializer.iter().find(|t| t.name == name)
    }

    /// Tensor name → index of the node producing it.
    pub fn producers(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (i, n) in self.graph().node.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                m.insert(o.clone(), i);
            }
        }
        m
    }

    /// Tensor name → (node index, input slot) of every use.
    pub fn consumers(&self) -> HashMap<String, Vec<(usize, usize)>> {
        let mut m: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (i, n) in self.graph().node.iter().enumerate() {
            for (slot, inp) in n.input.iter().enumerate() {
                if !inp.is_empty() {
                    m.entry(inp.clone()).or_default().push((i, slot));
                }
            }
            // Subgraphs (If/Loop/Scan) may capture outer tensors by name.
            for a in &n.attribute {
                for g in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
                    for name in captured_names(g) {
                        m.entry(name).or_default().push((i, usize::MAX));
                    }
                }
            }
        }
        m
    }

    pub fn graph_output_names(&self) -> HashSet<String> {
        self.graph().output.iter().map(|o| o.name.clone()).collect()
    }

    pub fn graph_input_names(&self) -> HashSet<String> {
        self.graph().input.iter().map(|o| o.name.clone()).collect()
    }

    /// Inputs that are real inputs, not initializers listed as inputs (old exporters).
    pub fn true_inputs(&self) -> Vec<&ValueInfoProto> {
        let inits: HashSet<&str> = self
            .graph()
            .initializer
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        self.graph()
            .input
            .iter()
            .filter(|i| !inits.contains(i.name.as_str()))
            .collect()
    }

    /// The value of a constant tensor: an initializer or the output of a `Constant` node.
    pub fn constant(&self, name: &str) -> Option<Result<Tensor>> {
        if let Some(t) = self.initializer(name) {
            // An initializer that is also a graph input can be overridden at run time.
            if self.graph_input_names().contains(name) {
                return None;
            }
            return Some(Tensor::from_proto(t));
        }
        let g = self.graph();
        let node = g
            .node
            .iter()
            .find(|n| n.op_type == "Constant" && n.output.first().is_some_and(|o| o == name))?;
        Some(constant_node_value(node))
    }

    /// Every name used for a tensor or node, to make fresh ones.
    pub fn used_names(&self) -> HashSet<String> {
        let g = self.graph();
        let mut s: HashSet<String> = HashSet::new();
        for n in &g.node {
            s.insert(n.name.clone());
            s.extend(n.input.iter().cloned());
            s.extend(n.output.iter().cloned());
        }
        s.extend(g.initializer.iter().map(|t| t.name.clone()));
        s.extend(g.input.iter().map(|t| t.name.clone()));
        s.extend(g.output.iter().map(|t| t.name.clone()));
        s
    }

    /// A name not used anywhere in the graph, derived from `base`.
    pub fn fresh_name(&self, base: &str) -> String {
        fresh_name_in(&self.used_names(), base)
    }

    // ---- edits ---------------------------------------------------------------------------

    /// Add an initializer, or replace the one with this name.
    pub fn set_initializer(&mut self, name: &str, t: &Tensor) {
        let proto = t.to_proto(name);
        let g = self.graph_mut();
        match g.initializer.iter_mut().find(|x| x.name == name) {
            Some(slot) => *slot = proto,
            None => g.initializer.push(proto),
        }
    }

    /// Store each distinct constant once: initializers with the same element type, dims and
    /// values become one, used by every node that used a copy (exporters share them through
    /// `Identity`; the pruner unshares them to slice each use on its own). Overridable
    /// initializers (also graph inputs), graph outputs, external data and models with
    /// subgraphs (which may name outer initializers) are left alone. Returns the number merged.
    pub fn share_identical_initializers(&mut self) -> usize {
        use sha2::{Digest, Sha256};
        let has_subgraphs = self.graph().node.iter().any(|n| {
            n.attribute
                .iter()
                .any(|a| a.g.is_some() || !a.graphs.is_empty())
        });
        if has_subgraphs {
            return 0;
        }
        let inputs = self.graph_input_names();
        let outputs = self.graph_output_names();
        let mut first: HashMap<[u8; 32], String> = HashMap::new();
        let mut merged: Vec<(String, String)> = Vec::new();
        for t in &self.graph().initializer {
            if inputs.contains(&t.name)
                || outputs.contains(&t.name)
                || t.data_location.enum_value() == Ok(DataLocation::EXTERNAL)
            {
                continue;
            }
            let mut key = t.clone();
            key.name.clear();
            key.doc_string.clear();
            let Ok(bytes) = key.write_to_bytes() else {
                continue;
            };
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            match first.get(&digest) {
                Some(keep) => merged.push((t.name.clone(), keep.clone())),
                None => {
                    first.insert(digest, t.name.clone());
                }
            }
        }
        for (from, to) in &merged {
            self.replace_uses(from, to);
        }
        let dropped: HashSet<&str> = merged.iter().map(|(f, _)| f.as_str()).collect();
        self.graph_mut()
            .initializer
            .retain(|t| !dropped.contains(t.name.as_str()));
        merged.len()
    }

    /// Replace every use of tensor `from` (node inputs, graph outputs, value_info) by `to`.
    pub fn replace_uses(&mut self, from: &str, to: &str) {
        let g = self.graph_mut();
        for n in g.node.iter_mut() {
            for i in n.input.iter_mut() {
                if i == from {
                    *i = to.to_string();
                }
            }
        }
        for o in g.output.iter_mut() {
            if o.name == from {
                o.name = to.to_string();
            }
        }
    }

    /// Rename a tensor everywhere: its producer's output, its uses, value_info.
    pub fn rename_tensor(&mut self, from: &str, to: &str) {
        self.replace_uses(from, to);
        let g = self.graph_mut();
        for n in g.node.iter_mut() {
            for o in n.output.iter_mut() {
                if o == from {
                    *o = to.to_string();
                }
            }
        }
        for v in g.value_info.iter_mut() {
            if v.name == from {
                v.name = to.to_string();
            }
        }
    }

    /// Replace node `index` by `nodes` (in order), keeping the rest of the order.
    pub fn replace_node(&mut self, index: usize, nodes: Vec<NodeProto>) {
        let g = self.graph_mut();
        g.node.splice(index..=index, nodes);
    }

    /// Sort nodes topologically (stable: keeps the existing order where it is valid).
    pub fn topo_sort(&mut self) -> Result<()> {
        let g = self.graph();
        let mut available: HashSet<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
        available.extend(g.initializer.iter().map(|t| t.name.as_str()));
        available.insert("");
        let n = g.node.len();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        let produced: HashSet<&str> = g
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(|s| s.as_str()))
            .collect();
        // Repeated passes keep the original relative order; graphs are small enough.
        loop {
            let mut progressed = false;
            for (i, node) in g.node.iter().enumerate() {
                if done[i] {
                    continue;
                }
                let ready = node
                    .input
                    .iter()
                    .all(|x| available.contains(x.as_str()) || !produced.contains(x.as_str()));
                if ready {
                    done[i] = true;
                    order.push(i);
                    available.extend(node.output.iter().map(|s| s.as_str()));
                    progressed = true;
                }
            }
            if order.len() == n {
                break;
            }
            if !progressed {
                let stuck = g
                    .node
                    .iter()
                    .enumerate()
                    .find(|(i, _)| !done[*i])
                    .map(|(_, n)| display_name(n))
                    .unwrap_or_default();
                return Err(Error::Graph(format!(
                    "cycle in the graph at node '{stuck}'"
                )));
            }
        }
        let nodes = std::mem::take(&mut self.graph_mut().node);
        let mut slots: Vec<Option<NodeProto>> = nodes.into_iter().map(Some).collect();
        self.graph_mut().node = order
            .into_iter()
            .map(|i| slots[i].take().expect("each index once"))
            .collect();
        Ok(())
    }

    /// Check that every tensor a node reads exists (input, initializer or earlier output).
    pub fn validate_references(&self) -> Result<()> {
        let g = self.graph();
        let mut available: HashSet<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
        available.extend(g.initializer.iter().map(|t| t.name.as_str()));
        for node in &g.node {
            for i in node.input.iter().filter(|i| !i.is_empty()) {
                if !available.contains(i.as_str()) {
                    return Err(Error::node(
                        node,
                        format!("reads tensor '{i}' which nothing before it produces"),
                    ));
                }
            }
            available.extend(node.output.iter().map(|s| s.as_str()));
        }
        for o in &g.output {
            if !available.contains(o.name.as_str()) {
                return Err(Error::Graph(format!(
                    "graph output '{}' is never produced",
                    o.name
                )));
            }
        }
        Ok(())
    }

    /// Parameters: elements of all floating-point constant tensors (initializers and
    /// `Constant` nodes), as `inspect` reports them.
    pub fn float_constant_elements(&self) -> Result<u64> {
        let g = self.graph();
        let mut total = 0u64;
        for t in &g.initializer {
            if super::tensor::is_float_type(t.data_type) {
                total += stored_element_count(t)? as u64;
            }
        }
        for n in g.node.iter().filter(|n| n.op_type == "Constant") {
            // value, value_float or value_floats: decode to know the type either way.
            if let Ok(t) = constant_node_value(n) {
                if t.is_float() {
                    total += t.len() as u64;
                }
            }
        }
        Ok(total)
    }

    /// Set or replace a metadata_props entry.
    pub fn set_metadata(&mut self, key: &str, value: &str) {
        self.proto.metadata_props.retain(|e| e.key != key);
        self.proto.metadata_props.push(entry(key, value));
    }

    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.proto
            .metadata_props
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }
}

fn entry(k: &str, v: &str) -> StringStringEntryProto {
    let mut e = StringStringEntryProto::new();
    e.key = k.into();
    e.value = v.into();
    e
}

pub fn fresh_name_in(used: &HashSet<String>, base: &str) -> String {
    if !used.contains(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}_{i}"))
        .find(|c| !used.contains(c))
        .expect("an unused suffix exists")
}

/// Names a subgraph reads from its enclosing scope.
fn captured_names(g: &GraphProto) -> Vec<String> {
    let mut defined: HashSet<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
    defined.extend(g.initializer.iter().map(|t| t.name.as_str()));
    let mut out = Vec::new();
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(i.as_str()) {
                out.push(i.clone());
            }
        }
        defined.extend(n.output.iter().map(|s| s.as_str()));
    }
    out
}

/// The tensor a `Constant` node produces, from whichever `value*` attribute it uses.
pub fn constant_node_value(node: &NodeProto) -> Result<Tensor> {
    let a = node
        .attribute
        .first()
        .ok_or_else(|| Error::node(node, "Constant without a value attribute"))?;
    let t = match a.name.as_str() {
        "value" => {
            let p =
                a.t.as_ref()
                    .ok_or_else(|| Error::node(node, "value attribute holds no tensor"))?;
            Tensor::from_proto(p).map_err(|e| Error::node(node, e.to_string()))?
        }
        "value_float" => Tensor::scalar_f32(a.f),
        "value_floats" => Tensor::f32(vec![a.floats.len()], a.floats.clone())?,
        "value_int" => Tensor::i64(vec![], vec![a.i])?,
        "value_ints" => Tensor::i64(vec![a.ints.len()], a.ints.clone())?,
        other => {
            return Err(Error::node(
                node,
                format!("Constant with '{other}' is not supported"),
            ))
        }
    };
    Ok(t)
}

/// The runtime's semantic checks (operator rules, stored tensors, declared sizes) on encoded
/// model bytes: what a file must pass to be read, and what we check before writing one, so an
/// invalid model is refused on the way in and never produced on the way out.
fn check_semantics(bytes: &[u8], label: &Path) -> Result<()> {
    let proto = edgeslim_runtime::model::decode_proto(label, bytes)?;
    if let Some(graph) = &proto.graph {
        edgeslim_runtime::graph_check::check_graph(
            label,
            graph,
            edgeslim_runtime::model::DEFAULT_MAX_TENSOR_BYTES,
        )?;
    }
    Ok(())
}

/// The external-data files a model already at `path` uses that belong to it by name
/// (`<file>.*.data` or `<file>.data` beside it): what replacing it leaves unused.
fn data_files_of(path: &Path, file_name: &str) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let Ok(old) = OnnxModel::from_bytes(&bytes, path) else {
        return Vec::new();
    };
    let mut old = old;
    let mut names: Vec<String> = old
        .all_tensor_protos_mut()
        .iter()
        .flat_map(|t| t.external_data.iter())
        .filter(|e| e.key == "location")
        .map(|e| e.value.clone())
        .filter(|l| {
            !l.contains('/')
                && !l.contains('\\')
                && l.starts_with(&format!("{file_name}."))
                && l.ends_with(".data")
        })
        .collect();
    names.sort();
    names.dedup();
    names
}
