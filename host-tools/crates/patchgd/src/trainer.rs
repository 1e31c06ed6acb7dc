//! PatchGD's training step over the two graphs, on the training engine (candle autograd).
//!
//! Z is kept as `[B, d, m²]` (positions row-major). Writing recomputed patches into Z is one
//! concatenation and one index selection, so the gradient of the head's loss flows into
//! exactly the recomputed patches' backbone passes and nowhere else.

use crate::grid::Grid;
use crate::nets::{FEATURE, LOGITS, PATCH_INPUT, Z_INPUT};
use crate::{Error, Result};
use edgeslim_onnx::OnnxModel;
use edgeslim_train::classify::labels_tensor;
use edgeslim_train::engine::candle_core::backprop::GradStore;
use edgeslim_train::engine::candle_core::{DType, Device, Tensor, Var};
use edgeslim_train::engine::loss::cross_entropy;
use edgeslim_train::engine::{EngineOptions, GraphModule, Mode};
use rand::seq::SliceRandom;

fn cerr(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("PatchGD {what}: {e}"))
}

/// The backbone and the head, compiled for training, with the grid they work on.
pub struct PatchGd {
    pub backbone: GraphModule,
    pub head: GraphModule,
    pub grid: Grid,
    /// The feature dimension d.
    pub dim: usize,
    /// Positions per backbone pass when Z is filled without gradients (bounds the fill's
    /// memory; the inner steps' group is the sampled fraction).
    pub fill_group: usize,
}

/// What one mini-batch of PatchGD did.
pub struct Minibatch {
    /// The inner steps' gradients, each inner loss divided by k, summed.
    pub grads: GradStore,
    /// Mean of the inner steps' losses.
    pub loss: f64,
    /// Patches recomputed with gradients per inner step and image.
    pub sampled: usize,
}

impl PatchGd {
    pub fn new(
        backbone: &OnnxModel,
        head: &OnnxModel,
        grid: Grid,
        opts: &EngineOptions,
    ) -> Result<PatchGd> {
        let backbone = GraphModule::from_onnx(backbone, opts)?;
        let head = GraphModule::from_onnx(head, opts)?;
        let mut net = PatchGd {
            backbone,
            head,
            grid,
            dim: 0,
            fill_group: grid.m(),
        };
        // d from one zero patch.
        let probe = net.features(&vec![0.0; grid.image_len()], 1, &[0], false)?;
        net.dim = probe.dims()[1];
        Ok(net)
    }

    /// Trained weights of both graphs.
    pub fn params(&self) -> Vec<(String, Var)> {
        let mut p = self.backbone.trainable();
        p.extend(self.head.trainable());
        p
    }

    /// Backbone features of the patches at `positions` of every image: `[batch, d, |positions|]`.
    fn features(
        &self,
        images: &[f32],
        batch: usize,
        positions: &[usize],
        grad: bool,
    ) -> Result<Tensor> {
        let g = &self.grid;
        let px = g.gather(images, batch, positions)?;
        let x = Tensor::from_vec(
            px,
            (batch * positions.len(), g.channels, g.patch, g.patch),
            &Device::Cpu,
        )
        .map_err(|e| cerr("patches", e))?;
        let out = if grad {
            self.backbone
                .forward(&[(PATCH_INPUT, x)], Mode::Train, &[])?
        } else {
            self.backbone.forward_inference(&[(PATCH_INPUT, x)], &[])?
        };
        let f = out
            .get(FEATURE)
            .ok_or_else(|| Error::Invalid(format!("the backbone has no output '{FEATURE}'")))?;
        let d = f.dims().get(1).copied().unwrap_or(0);
        f.reshape((batch, positions.len(), d))
            .and_then(|t| t.transpose(1, 2))
            .and_then(|t| t.contiguous())
            .map_err(|e| cerr("features", e))
    }

    /// Z of every image without gradients, `fill_group` positions per backbone pass.
    pub fn fill_z(&self, images: &[f32], batch: usize) -> Result<Tensor> {
        let all: Vec<usize> = (0..self.grid.positions()).collect();
        let parts = all
            .chunks(self.fill_group.max(1))
            .map(|c| self.features(images, batch, c, false))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 2)
            .and_then(|t| t.contiguous())
            .map_err(|e| cerr("Z", e))
    }

    /// Z with the positions `positions` replaced by `feats` (`[B, d, |positions|]`).
    fn substitute(&self, z: &Tensor, feats: &Tensor, positions: &[usize]) -> Result<Tensor> {
        let m2 = self.grid.positions();
        let mut index: Vec<u32> = (0..m2 as u32).collect();
        for (t, &j) in positions.iter().enumerate() {
            index[j] = (m2 + t) as u32;
        }
        let ids = Tensor::from_vec(index, m2, &Device::Cpu).map_err(|e| cerr("index", e))?;
        Tensor::cat(&[z, feats], 2)
            .and_then(|t| t.contiguous())
            .and_then(|t| t.index_select(&ids, 2))
            .map_err(|e| cerr("writing patches into Z", e))
    }

    /// The head's logits on Z (`[B, d, m²]`).
    pub fn logits(&self, z: &Tensor) -> Result<Tensor> {
        let (b, d, _) = z.dims3().map_err(|e| cerr("Z", e))?;
        let m = self.grid.m();
        let z = z.reshape((b, d, m, m)).map_err(|e| cerr("Z", e))?;
        let out = self.head.forward(&[(Z_INPUT, z)], Mode::Train, &[])?;
        out.get(LOGITS)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("the head has no output '{LOGITS}'")))
    }

    /// One mini-batch of PatchGD: Z filled without gradients, then `inner_steps` times a
    /// random `fraction` of the positions (the same for every image of the batch) recomputed
    /// with gradients and written into Z, the head's loss (divided by `inner_steps`)
    /// back-propagated, the gradients summed, and Z keeping the recomputed features.
    pub fn minibatch(
        &self,
        images: &[f32],
        labels: &[usize],
        inner_steps: usize,
        fraction: f64,
        rng: &mut edgeslim_data::Rng,
    ) -> Result<Minibatch> {
        let batch = labels.len();
        if inner_steps == 0 || !(fraction > 0.0 && fraction <= 1.0) {
            return Err(Error::Invalid(format!(
                "PatchGD needs k ≥ 1 inner steps and a fraction in (0, 1] (k {inner_steps}, s {fraction})"
            )));
        }
        let m2 = self.grid.positions();
        let sampled = ((fraction * m2 as f64).round() as usize).clamp(1, m2);
        let y = labels_tensor(labels)?;
        let params = self.params();
        let mut z = self.fill_z(images, batch)?;
        let mut acc: Option<GradStore> = None;
        let mut total = 0.0;
        for _ in 0..inner_steps {
            let mut order: Vec<usize> = (0..m2).collect();
            order.shuffle(rng);
            order.truncate(sampled);
            let feats = self.features(images, batch, &order, true)?;
            let zp = self.substitute(&z, &feats, &order)?;
            let loss = cross_entropy(&self.logits(&zp)?, &y)?;
            total += loss
                .to_dtype(DType::F64)
                .and_then(|l| l.to_scalar::<f64>())
                .map_err(|e| cerr("loss", e))?;
            let scaled = loss
                .affine(1.0 / inner_steps as f64, 0.0)
                .map_err(|e| cerr("loss", e))?;
            let grads = self.backbone.backward(&scaled)?;
            acc = Some(match acc {
                None => grads,
                Some(mut a) => {
                    add_grads(&mut a, &grads, &params)?;
                    a
                }
            });
            z = zp.detach();
        }
        Ok(Minibatch {
            grads: acc.ok_or_else(|| Error::Invalid("no inner step ran".into()))?,
            loss: total / inner_steps as f64,
            sampled,
        })
    }

    /// The loss of plain gradient descent through the same two graphs: every patch of every
    /// image through the backbone with gradients, then the head. PatchGD with s = 1 and k = 1
    /// computes exactly its gradient.
    pub fn full_loss(&self, images: &[f32], labels: &[usize]) -> Result<Tensor> {
        let all: Vec<usize> = (0..self.grid.positions()).collect();
        let z = self.features(images, labels.len(), &all, true)?;
        cross_entropy(&self.logits(&z)?, &labels_tensor(labels)?)
    }

    /// Predicted class per image (Z filled patch group by patch group, one head pass).
    pub fn predict(&self, images: &[f32], batch: usize) -> Result<Vec<usize>> {
        let z = self.fill_z(images, batch)?;
        let (b, d, _) = z.dims3().map_err(|e| cerr("Z", e))?;
        let m = self.grid.m();
        let z = z.reshape((b, d, m, m)).map_err(|e| cerr("Z", e))?;
        let out = self.head.forward_inference(&[(Z_INPUT, z)], &[])?;
        let logits = out
            .get(LOGITS)
            .ok_or_else(|| Error::Invalid(format!("the head has no output '{LOGITS}'")))?;
        let v: Vec<Vec<f32>> = logits
            .to_dtype(DType::F32)
            .and_then(|t| t.to_vec2())
            .map_err(|e| cerr("logits", e))?;
        Ok(v.iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                    .0
            })
            .collect())
    }
}

/// `acc += new` for every parameter's gradient.
fn add_grads(acc: &mut GradStore, new: &GradStore, params: &[(String, Var)]) -> Result<()> {
    for (name, v) in params {
        if let Some(g) = new.get(v.as_tensor()) {
            let sum = match acc.get(v.as_tensor()) {
                Some(a) => (a + g).map_err(|e| cerr(&format!("accumulating '{name}'"), e))?,
                None => g.clone(),
            };
            acc.insert(v.as_tensor(), sum);
        }
    }
    Ok(())
}
