//! MetaDOCK's kernel gates (§6): one real ζ per 2-D kernel of every convolution, ζ of block l
//! shaped `[out, in]`. The forward pass multiplies the kernel by the hard gate 1[σ(ζ) > 0.5]
//! (= 1[ζ > 0]); the backward pass is straight-through, as if the gate were σ(ζ). The inner
//! loop's gate step minimises CE + w_b·(active fraction − target)² + 1e-6·‖ζ‖₁ with the weights
//! frozen.

use crate::nets::NetConfig;
use crate::params::{cerr, to_f32};
use crate::Result;
use edgeslim_train::engine::candle_core::{DType, Device, Tensor, Var};

/// The gates of one network.
pub struct Gates {
    /// ζ of each block, `[out, in]`.
    pub zeta: Vec<Var>,
}

/// σ(x) = (1 + tanh(x/2)) / 2, differentiable. (The form 1/(1 + e^(−x)) overflows for
/// x < −88 in f32, and its gradient is then inf/inf = NaN.)
fn sigmoid(x: &Tensor) -> Result<Tensor> {
    x.affine(0.5, 0.0)
        .and_then(|t| t.tanh())
        .and_then(|t| t.affine(0.5, 0.5))
        .map_err(|e| cerr("sigmoid", e))
}

impl Gates {
    /// Gates drawn uniformly in [lo, hi] (lo > 0: every kernel active at the start; the spread
    /// breaks the tie between kernels).
    pub fn new(cfg: &NetConfig, lo: f64, hi: f64, seed: u64, dtype: DType) -> Result<Gates> {
        use rand::RngExt;
        let mut r = edgeslim_data::rng(seed, 0x9a7e_5eed);
        let zeta = cfg
            .convs()
            .iter()
            .map(|c| {
                let (o, i) = (c.cout, c.cin);
                let v: Vec<f64> = (0..o * i).map(|_| r.random_range(lo..=hi)).collect();
                Tensor::from_vec(v, (o, i), &Device::Cpu)
                    .and_then(|t| t.to_dtype(dtype))
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(|e| cerr("gates", e))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gates { zeta })
    }

    /// Gates with the given values (a saved meta-model), `[out, in]` per block.
    pub fn from_values(cfg: &NetConfig, values: &[Vec<f32>], dtype: DType) -> Result<Gates> {
        let kernels = cfg.kernels();
        if values.len() != kernels.len() || values.iter().zip(&kernels).any(|(v, &k)| v.len() != k)
        {
            return Err(crate::Error::Invalid(format!(
                "gates: {} blocks of {:?} values, the network has {kernels:?} kernels",
                values.len(),
                values.iter().map(Vec::len).collect::<Vec<_>>()
            )));
        }
        let zeta = values
            .iter()
            .zip(cfg.convs())
            .map(|(v, c)| {
                Tensor::from_vec(v.clone(), (c.cout, c.cin), &Device::Cpu)
                    .and_then(|t| t.to_dtype(dtype))
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(|e| cerr("gates", e))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gates { zeta })
    }

    pub fn values(&self) -> Result<Vec<Vec<f32>>> {
        self.zeta.iter().map(|z| to_f32(z.as_tensor())).collect()
    }

    /// Hard masks `[out, in, 1, 1]` (no gradient).
    pub fn hard(&self) -> Result<Vec<Tensor>> {
        self.zeta
            .iter()
            .map(|z| {
                let t = z.as_tensor().detach();
                t.gt(0.0)
                    .and_then(|m| m.to_dtype(t.dtype()))
                    .and_then(|m| m.unsqueeze(2))
                    .and_then(|m| m.unsqueeze(3))
                    .map_err(|e| cerr("hard gates", e))
            })
            .collect()
    }

    /// Masks equal to the hard ones in value whose gradient reaches ζ through σ(ζ):
    /// hard + (σ(ζ) − detach(σ(ζ))), whose second term is exactly zero.
    pub fn straight_through(&self) -> Result<Vec<Tensor>> {
        let hard = self.hard()?;
        self.zeta
            .iter()
            .zip(hard)
            .map(|(z, h)| {
                let s = sigmoid(z.as_tensor())?;
                (s.clone() - s.detach())
                    .and_then(|d| d.unsqueeze(2))
                    .and_then(|d| d.unsqueeze(3))
                    .and_then(|d| d + h)
                    .map_err(|e| cerr("straight-through gates", e))
            })
            .collect()
    }

    /// Active kernels per block.
    pub fn active(&self) -> Result<Vec<usize>> {
        self.values().map(|v| {
            v.iter()
                .map(|z| z.iter().filter(|&&x| x > 0.0).count())
                .collect()
        })
    }

    /// Share of all kernels that are active.
    pub fn active_fraction(&self) -> Result<f64> {
        let a: usize = self.active()?.iter().sum();
        let n: usize = self.zeta.iter().map(|z| z.elem_count()).sum();
        Ok(a as f64 / n.max(1) as f64)
    }

    /// w_b·(active fraction − target)² + l1·‖ζ‖₁ on straight-through masks: the gate step's
    /// regulariser (its gradient reaches ζ through σ).
    pub fn budget_loss(
        &self,
        masks: &[Tensor],
        target: f64,
        weight: f64,
        l1: f64,
    ) -> Result<Tensor> {
        let n: usize = masks.iter().map(|m| m.elem_count()).sum();
        let mut active: Option<Tensor> = None;
        for m in masks {
            let s = m.sum_all().map_err(|e| cerr("active kernels", e))?;
            active = Some(match active {
                None => s,
                Some(a) => (a + s).map_err(|e| cerr("active kernels", e))?,
            });
        }
        let active = active.ok_or_else(|| crate::Error::Invalid("no gates".into()))?;
        let dev = active
            .affine(1.0 / n.max(1) as f64, -target)
            .map_err(|e| cerr("budget", e))?;
        let budget = dev
            .sqr()
            .and_then(|d| d.affine(weight, 0.0))
            .map_err(|e| cerr("budget", e))?;
        let mut total = budget;
        if l1 > 0.0 {
            for z in &self.zeta {
                let s = z
                    .as_tensor()
                    .abs()
                    .and_then(|a| a.sum_all())
                    .and_then(|a| a.affine(l1, 0.0))
                    .map_err(|e| cerr("gate l1", e))?;
                total = (total + s).map_err(|e| cerr("gate l1", e))?;
            }
        }
        Ok(total)
    }

    /// Masks of all ones (a network without gates, or MetaDOCK switched off).
    pub fn ones(cfg: &NetConfig, dtype: DType) -> Result<Vec<Tensor>> {
        cfg.convs()
            .iter()
            .map(|c| {
                Tensor::ones((c.cout, c.cin, 1, 1), dtype, &Device::Cpu)
                    .map_err(|e| cerr("masks", e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gates far on either side give hard masks of 0 and 1 and finite gradients (σ written as
    /// 1/(1 + e^(−x)) gave NaN below −88).
    #[test]
    fn extreme_gates_keep_finite_gradients() {
        let cfg = NetConfig::conv4(1, 8, vec![3], 2, 0);
        let g = Gates::from_values(&cfg, &[vec![-200.0, 200.0, 0.5]], DType::F32).unwrap();
        let st = g.straight_through().unwrap();
        assert_eq!(to_f32(&st[0]).unwrap(), vec![0.0, 1.0, 1.0]);
        let loss = g.budget_loss(&st, 0.25, 50.0, 1e-6).unwrap();
        let grads = loss.backward().unwrap();
        let gz = to_f32(grads.get(g.zeta[0].as_tensor()).unwrap()).unwrap();
        assert!(gz.iter().all(|v| v.is_finite()), "{gz:?}");
        // Two of three active against a target of 1/4: the gate near 0 is pushed down.
        assert!(gz[2] > 0.0, "{gz:?}");
    }
}
