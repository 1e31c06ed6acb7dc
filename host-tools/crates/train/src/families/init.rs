//! Seeded initial weights (ChaCha8 streams, so a seed gives the same model everywhere).
//!
//! - convolutions: Kaiming/He uniform, `U(−b, b)` with `b = sqrt(6 / fan_in)` (ReLU gain);
//! - linear layers: truncated normal, std 0.02, cut at ±2 std (ViT) or Xavier/Glorot uniform
//!   `b = sqrt(6 / (fan_in + fan_out))` (CNN head);
//! - biases 0; BatchNorm γ = 1, β = 0, running mean 0, running var 1; LayerNorm γ = 1, β = 0;
//! - ViT class token and position embeddings: truncated normal, std 0.02.

use edgeslim_data::Rng;
use edgeslim_onnx::Tensor;
use rand::RngExt;
use rand_distr::StandardNormal;

pub struct Init {
    rng: Rng,
}

fn tensor(dims: &[usize], data: Vec<f32>) -> Tensor {
    // The volume is computed from `dims` right here, so this cannot fail.
    Tensor::f32(dims.to_vec(), data).expect("tensor volume matches its dims")
}

impl Init {
    pub fn new(seed: u64) -> Init {
        Init {
            rng: edgeslim_data::rng(seed, 0x494e_4954),
        }
    }

    pub fn uniform(&mut self, dims: &[usize], bound: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v = (0..n)
            .map(|_| self.rng.random_range(-bound..=bound))
            .collect();
        tensor(dims, v)
    }

    /// Kaiming/He uniform for a weight whose fan-in is the product of all dims but the first.
    pub fn kaiming_uniform(&mut self, dims: &[usize]) -> Tensor {
        let fan_in: usize = dims[1..].iter().product();
        self.uniform(dims, (6.0 / fan_in.max(1) as f32).sqrt())
    }

    pub fn xavier_uniform(&mut self, dims: &[usize], fan_in: usize, fan_out: usize) -> Tensor {
        self.uniform(dims, (6.0 / (fan_in + fan_out).max(1) as f32).sqrt())
    }

    /// Normal(0, std) redrawn outside ±2 std.
    pub fn trunc_normal(&mut self, dims: &[usize], std: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v = (0..n)
            .map(|_| loop {
                let z: f32 = self.rng.sample(StandardNormal);
                if z.abs() <= 2.0 {
                    break z * std;
                }
            })
            .collect();
        tensor(dims, v)
    }

    pub fn constant(dims: &[usize], value: f32) -> Tensor {
        let n: usize = dims.iter().product();
        tensor(dims, vec![value; n])
    }

    pub fn zeros(dims: &[usize]) -> Tensor {
        Self::constant(dims, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaiming_bound_and_seeding() {
        let mut a = Init::new(1);
        let t = a.kaiming_uniform(&[16, 8, 3, 3]);
        let v = t.to_f32_vec();
        let b = (6.0f32 / 72.0).sqrt();
        assert!(v.iter().all(|x| x.abs() <= b));
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(max > 0.9 * b, "spans its range: {max} vs {b}");
        assert_eq!(v, Init::new(1).kaiming_uniform(&[16, 8, 3, 3]).to_f32_vec());
        let tn = Init::new(2).trunc_normal(&[1000], 0.02).to_f32_vec();
        assert!(tn.iter().all(|x| x.abs() <= 0.04));
        let std = (tn.iter().map(|x| x * x).sum::<f32>() / 1000.0).sqrt();
        assert!((0.015..0.02).contains(&std), "{std}");
    }
}
