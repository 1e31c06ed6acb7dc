//! Losses built from differentiable candle ops (no fused kernels without gradients).

use crate::{Error, Result};
use candle_core::{DType, Tensor};

fn cerr(what: &str, e: candle_core::Error) -> Error {
    Error::Other(format!(
        "{what}: {}",
        e.to_string().lines().next().unwrap_or("")
    ))
}

/// log-softmax along `axis`, composed (stable: shifted by the detached maximum).
pub fn log_softmax(x: &Tensor, axis: usize) -> Result<Tensor> {
    super::ops::activation::softmax(x, axis, true)
        .map_err(|e| Error::Other(format!("log_softmax: {}", e.0)))
}

/// Mean cross-entropy of `logits` `[N, K]` against class indices `labels` `[N]` (u32 or i64).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let f = || -> candle_core::Result<Tensor> {
        let ls = log_softmax(logits, 1).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let idx = match labels.dtype() {
            DType::U32 | DType::I64 => labels.clone(),
            _ => labels.to_dtype(DType::I64)?,
        };
        let picked = ls.gather(&idx.unsqueeze(1)?.contiguous()?, 1)?;
        picked.mean_all()?.neg()
    };
    f().map_err(|e| cerr("cross_entropy", e))
}

/// Cross-entropy with label smoothing `eps`: `(1 − eps)·CE + eps·mean_k(−log p_k)` (the
/// target puts `eps/K` on every class besides `1 − eps` on the true one).
pub fn cross_entropy_smoothed(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    if eps == 0.0 {
        return cross_entropy(logits, labels);
    }
    let f = || -> candle_core::Result<Tensor> {
        let ls = log_softmax(logits, 1).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let idx = match labels.dtype() {
            DType::U32 | DType::I64 => labels.clone(),
            _ => labels.to_dtype(DType::I64)?,
        };
        let nll = ls
            .gather(&idx.unsqueeze(1)?.contiguous()?, 1)?
            .mean_all()?
            .neg()?;
        let uniform = ls.mean_all()?.neg()?;
        nll.affine(1.0 - eps, 0.0)? + uniform.affine(eps, 0.0)?
    };
    f().map_err(|e| cerr("cross_entropy", e))
}

/// Knowledge distillation: KL(teacher ‖ student) of the softened distributions at
/// `temperature`, times T² so gradients keep their scale (Hinton et al.).
pub fn distillation_kl(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    let f = || -> candle_core::Result<Tensor> {
        let t = temperature;
        let ls =
            log_softmax(&(student / t)?, 1).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let lt = log_softmax(&(teacher.detach() / t)?, 1)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let pt = lt.exp()?;
        let n = student.dim(0)? as f64;
        let kl = (pt * (lt - ls)?)?.sum_all()?;
        kl.affine(t * t / n, 0.0)
    };
    f().map_err(|e| cerr("distillation_kl", e))
}

/// Mean squared error.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (|| a.broadcast_sub(b)?.sqr()?.mean_all())().map_err(|e| cerr("mse", e))
}

/// Binary cross-entropy of logits `z` against soft targets `p` in [0, 1], averaged:
/// softplus(z) − p·z, written stably for large |z|. Its gradient σ(z) − p does not vanish
/// where the sigmoid saturates, and a background logit of −12 against the teacher's −6 costs
/// almost nothing (both are probability 0), where squared error on logits would chase it.
pub fn bce_with_logits(z: &Tensor, p: &Tensor) -> Result<Tensor> {
    (|| {
        let softplus = (z.relu()? + z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
        (softplus - (p * z)?)?.mean_all()
    })()
    .map_err(|e| cerr("bce_with_logits", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_k() {
        let logits = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32, 3, 1], &Device::Cpu).unwrap();
        let l = cross_entropy(&logits, &labels)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((l - 4f32.ln()).abs() < 1e-6, "{l}");
    }

    #[test]
    fn distillation_of_identical_logits_is_zero() {
        let x = Tensor::new(&[[1f32, 2., 3.], [0., -1., 5.]], &Device::Cpu).unwrap();
        let l = distillation_kl(&x, &x, 4.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(l.abs() < 1e-6, "{l}");
    }

    #[test]
    fn bce_with_logits_is_softplus_minus_target_times_logit() {
        let z = Tensor::new(&[0.0f32, 10.0, -30.0, 2.0], &Device::Cpu).unwrap();
        let p = Tensor::new(&[0.5f32, 1.0, 0.0, 0.25], &Device::Cpu).unwrap();
        let v = bce_with_logits(&z, &p).unwrap().to_scalar::<f32>().unwrap() as f64;
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let want = (sp(0.0) + (sp(10.0) - 10.0) + sp(-30.0) + (sp(2.0) - 0.5)) / 4.0;
        assert!((v - want).abs() < 1e-5, "{v} vs {want}");
    }
}
