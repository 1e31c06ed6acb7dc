//! The channel dependency graph: which channels of which tensors and weights are the same
//! channel, and so must be removed together.
//!
//! Every tensor the pruner follows has one *tracked axis* (channels for NCHW, features for
//! [.., D]) and, for each position on it, a *unit*. Units are joined in a union-find whenever
//! two positions must live or die together: a Conv's output channel and the next Conv's input
//! channel, both sides of a residual Add, a channel and its block of Flatten features, the
//! channels of one attention head. A union-find class is the atom of pruning; classes that
//! touch the same members form a group (see `groups.rs`). Units can be *pinned* (with the
//! reason): graph inputs and outputs, ops the pruner does not understand, grouped convs. A
//! pinned class is never removed, so an unknown pattern can only make pruning less
//! aggressive, never wrong.

use std::collections::HashMap;

/// Union-find over units, with a pin reason carried by each root.
#[derive(Debug, Default, Clone)]
pub struct Units {
    parent: Vec<usize>,
    pin: Vec<Option<String>>,
}

impl Units {
    /// `n` new units, each its own class.
    pub fn fresh(&mut self, n: usize) -> Vec<usize> {
        let start = self.parent.len();
        for i in start..start + n {
            self.parent.push(i);
            self.pin.push(None);
        }
        (start..start + n).collect()
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    pub fn find(&self, mut u: usize) -> usize {
        while self.parent[u] != u {
            u = self.parent[u];
        }
        u
    }

    fn find_compress(&mut self, u: usize) -> usize {
        let r = self.find(u);
        let mut x = u;
        while self.parent[x] != r {
            let next = self.parent[x];
            self.parent[x] = r;
            x = next;
        }
        r
    }

    pub fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find_compress(a), self.find_compress(b));
        if ra == rb {
            return;
        }
        // Keep the smaller id as root so results do not depend on hash order.
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[child] = root;
        if self.pin[root].is_none() {
            self.pin[root] = self.pin[child].take();
        }
    }

    pub fn pin(&mut self, u: usize, reason: &str) {
        let r = self.find_compress(u);
        if self.pin[r].is_none() {
            self.pin[r] = Some(reason.to_string());
        }
    }

    pub fn pin_all(&mut self, units: &[usize], reason: &str) {
        for &u in units {
            self.pin(u, reason);
        }
    }

    pub fn pinned(&self, u: usize) -> Option<&str> {
        self.pin[self.find(u)].as_deref()
    }
}

/// The tracked axis of a tensor and the unit of each position on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub axis: usize,
    pub units: Vec<usize>,
}

/// How a weight slice relates to the channels it holds (for reports and criteria).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Output channels of a layer (Conv/Gemm/MatMul rows, bias).
    Out,
    /// Input channels of a consuming layer.
    In,
    /// Per-channel parameters: BatchNorm, per-channel constants of element-wise ops,
    /// depthwise kernels.
    Param,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Out => "out",
            Role::In => "in",
            Role::Param => "param",
        }
    }
}

/// A constant tensor (an initializer after `prepare`) that is sliced along `axis`.
#[derive(Debug, Clone)]
pub struct WeightSlice {
    pub node: usize,
    pub tensor: String,
    pub axis: usize,
    /// Unit of each position along `axis`.
    pub units: Vec<usize>,
    pub role: Role,
}

/// A non-weight edit a node needs once channels go: attributes and shape constants.
#[derive(Debug, Clone)]
pub enum Fixup {
    /// Depthwise Conv/ConvTranspose: `group` = kept channels of input `tensor`.
    Group { node: usize, tensor: String },
    /// Reshape: entry `axis` of the shape constant becomes the kept count of output `tensor`.
    ReshapeDim {
        node: usize,
        shape: String,
        axis: usize,
        tensor: String,
    },
    /// Slice on the tracked axis: `starts`/`ends` entry `index` re-counted over kept positions
    /// of input `tensor`.
    SliceBounds {
        node: usize,
        tensor: String,
        index: usize,
        start: usize,
        end: usize,
    },
    /// Split on the tracked axis: sizes become the kept counts of each range of `tensor`.
    SplitSizes {
        node: usize,
        tensor: String,
        sizes: Vec<usize>,
    },
}

/// The dependency graph of one model: the result of `analyze`.
#[derive(Debug, Clone, Default)]
pub struct DepGraph {
    pub units: Units,
    pub layouts: HashMap<String, Layout>,
    pub weights: Vec<WeightSlice>,
    pub fixups: Vec<Fixup>,
    /// Shapes of every tensor at the analysed input shapes (tract's inference).
    pub shapes: HashMap<String, Vec<usize>>,
    /// Node index → (display name, op), for reports.
    pub nodes: Vec<(String, String)>,
    /// Tensor → producing node index.
    pub producer: HashMap<String, usize>,
}

impl DepGraph {
    /// Positions of `units` whose class survives.
    pub fn kept(&self, units: &[usize], removed: &dyn Fn(usize) -> bool) -> Vec<usize> {
        units
            .iter()
            .enumerate()
            .filter(|(_, &u)| !removed(self.units.find(u)))
            .map(|(p, _)| p)
            .collect()
    }
}
