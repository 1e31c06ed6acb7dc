//! Named layers on a [`GraphBuilder`], PyTorch-style names so tools can find them:
//!
//! - a layer called `name` is a node called `name` whose output tensor is also `name`
//!   (a linear layer is two nodes: the `MatMul` named `name` and the bias `Add` named
//!   `name.add_bias`; its output tensor is `name`);
//! - learned tensors are initializers `name.weight`, `name.bias`; BatchNorm adds
//!   `name.running_mean`, `name.running_var`;
//! - fixed numbers (shapes, √2, the attention scale) are `Constant` nodes, never initializers,
//!   so "every float initializer is a parameter" holds for the engine and for `inspect`.
//!
//! Weight layouts: `Conv` `[out, in/groups, kh, kw]`; `Gemm` (transB = 1) `[out, in]` as in
//! PyTorch; `MatMul` linear layers `[in, out]` (the transpose of PyTorch's `nn.Linear`).

use super::init::Init;
use edgeslim_onnx::builder::GraphBuilder;
use edgeslim_onnx::node::{float, int, ints, tensor};
use edgeslim_onnx::Tensor;

/// A graph under construction with its weight initialiser.
pub struct Net {
    pub b: GraphBuilder,
    pub init: Init,
}

impl Net {
    pub fn new(name: &str, seed: u64) -> Net {
        Net {
            b: GraphBuilder::new(name, super::OPSET),
            init: Init::new(seed),
        }
    }

    fn op(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<onnx_protobuf::AttributeProto>,
    ) -> String {
        self.b.node_named(op, name, inputs, &[name], attrs);
        name.to_string()
    }

    /// A fixed tensor as a `Constant` node named `name`.
    pub fn constant(&mut self, name: &str, t: &Tensor) -> String {
        self.b
            .node_named("Constant", name, &[], &[name], vec![tensor("value", t)]);
        name.to_string()
    }

    pub fn const_i64(&mut self, name: &str, v: &[i64]) -> String {
        let t = Tensor::i64(vec![v.len()], v.to_vec()).expect("1-D volume");
        self.constant(name, &t)
    }

    pub fn const_scalar(&mut self, name: &str, v: f32) -> String {
        self.constant(name, &Tensor::scalar_f32(v))
    }

    /// Conv with Kaiming-uniform weight and a zero bias (`bias` false: none).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        x: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> String {
        let w = self.init.kaiming_uniform(&[cout, cin, k, k]);
        let w = self.b.init(&format!("{name}.weight"), &w);
        let mut inputs = vec![x.to_string(), w];
        if bias {
            inputs.push(self.b.init(&format!("{name}.bias"), &Init::zeros(&[cout])));
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let (k, s, p) = (k as i64, stride as i64, pad as i64);
        self.op(
            "Conv",
            name,
            &inputs,
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[s, s]),
                ints("pads", &[p, p, p, p]),
            ],
        )
    }

    /// BatchNormalization (ε = 1e-5, momentum 0.9 = PyTorch's 0.1) with γ 1, β 0, mean 0, var 1.
    pub fn batchnorm(&mut self, name: &str, x: &str, c: usize) -> String {
        let g = self
            .b
            .init(&format!("{name}.weight"), &Init::constant(&[c], 1.0));
        let be = self.b.init(&format!("{name}.bias"), &Init::zeros(&[c]));
        let m = self
            .b
            .init(&format!("{name}.running_mean"), &Init::zeros(&[c]));
        let v = self
            .b
            .init(&format!("{name}.running_var"), &Init::constant(&[c], 1.0));
        self.op(
            "BatchNormalization",
            name,
            &[x, &g, &be, &m, &v],
            vec![float("epsilon", 1e-5), float("momentum", 0.9)],
        )
    }

    pub fn relu(&mut self, name: &str, x: &str) -> String {
        self.op("Relu", name, &[x], vec![])
    }

    pub fn maxpool(&mut self, name: &str, x: &str, k: usize, stride: usize) -> String {
        self.op(
            "MaxPool",
            name,
            &[x],
            vec![
                ints("kernel_shape", &[k as i64, k as i64]),
                ints("strides", &[stride as i64, stride as i64]),
            ],
        )
    }

    /// `Gemm(x, W, b)` with `transB = 1`, `W [out, in]`: given weight, zero bias. The output
    /// tensor is `out` (a graph output such as `logits`), the node is `name`.
    pub fn gemm(&mut self, name: &str, out: &str, x: &str, w: &Tensor, dout: usize) -> String {
        let w = self.b.init(&format!("{name}.weight"), w);
        let bias = self.b.init(&format!("{name}.bias"), &Init::zeros(&[dout]));
        self.b.node_named(
            "Gemm",
            name,
            &[x, &w, &bias],
            &[out],
            vec![int("transB", 1)],
        );
        out.to_string()
    }

    /// `MatMul(x, W) + b` on the last axis, `W [in, out]` truncated-normal (std 0.02).
    pub fn linear(&mut self, name: &str, x: &str, din: usize, dout: usize) -> String {
        let w = self.init.trunc_normal(&[din, dout], 0.02);
        let w = self.b.init(&format!("{name}.weight"), &w);
        let bias = self.b.init(&format!("{name}.bias"), &Init::zeros(&[dout]));
        let mm = format!("{name}.matmul");
        self.b.node_named("MatMul", name, &[x, &w], &[&mm], vec![]);
        self.b.node_named(
            "Add",
            &format!("{name}.add_bias"),
            &[&mm, &bias],
            &[name],
            vec![],
        );
        name.to_string()
    }

    /// LayerNormalization over the last axis (ε = 1e-6), γ 1, β 0.
    pub fn layer_norm(&mut self, name: &str, x: &str, d: usize) -> String {
        let g = self
            .b
            .init(&format!("{name}.weight"), &Init::constant(&[d], 1.0));
        let be = self.b.init(&format!("{name}.bias"), &Init::zeros(&[d]));
        self.op(
            "LayerNormalization",
            name,
            &[x, &g, &be],
            vec![int("axis", -1), float("epsilon", 1e-6)],
        )
    }

    /// Exact GELU, `x · 0.5 · (1 + erf(x / √2))`, from opset-13 ops (Div, Erf, Add, Mul).
    pub fn gelu(&mut self, name: &str, x: &str) -> String {
        let sqrt2 = self.const_scalar(&format!("{name}.sqrt2"), std::f32::consts::SQRT_2);
        let one = self.const_scalar(&format!("{name}.one"), 1.0);
        let half = self.const_scalar(&format!("{name}.half"), 0.5);
        let d = self.op("Div", &format!("{name}.div"), &[x, &sqrt2], vec![]);
        let e = self.op("Erf", &format!("{name}.erf"), &[&d], vec![]);
        let a = self.op("Add", &format!("{name}.add"), &[&e, &one], vec![]);
        let m = self.op("Mul", &format!("{name}.mul"), &[x, &a], vec![]);
        self.op("Mul", name, &[&m, &half], vec![])
    }

    pub fn add(&mut self, name: &str, a: &str, b: &str) -> String {
        self.op("Add", name, &[a, b], vec![])
    }

    pub fn mul(&mut self, name: &str, a: &str, b: &str) -> String {
        self.op("Mul", name, &[a, b], vec![])
    }

    pub fn matmul(&mut self, name: &str, a: &str, b: &str) -> String {
        self.op("MatMul", name, &[a, b], vec![])
    }

    pub fn reshape(&mut self, name: &str, x: &str, shape: &[i64]) -> String {
        let s = self.const_i64(&format!("{name}.shape"), shape);
        self.op("Reshape", name, &[x, &s], vec![])
    }

    pub fn transpose(&mut self, name: &str, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", name, &[x], vec![ints("perm", perm)])
    }

    pub fn softmax(&mut self, name: &str, x: &str, axis: i64) -> String {
        self.op("Softmax", name, &[x], vec![int("axis", axis)])
    }

    pub fn flatten(&mut self, name: &str, x: &str) -> String {
        self.op("Flatten", name, &[x], vec![int("axis", 1)])
    }

    /// Raw access for ops without a helper.
    pub fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<onnx_protobuf::AttributeProto>,
    ) -> String {
        self.op(op, name, inputs, attrs)
    }
}
