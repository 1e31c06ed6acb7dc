//! PatchGD reduces to plain gradient descent when every patch is recomputed in one inner step
//! (s = 1, k = 1); Z filled patch group by patch group is the backbone run on each patch; a
//! few PatchGD steps with s < 1 and k > 1 fit a small batch.

use edgeslim_patchgd::nets::{backbone, head};
use edgeslim_patchgd::{Grid, PatchGd, PatchNetConfig};
use edgeslim_train::engine::candle_core::{DType, Device, Tensor};
use edgeslim_train::engine::EngineOptions;
use edgeslim_train::optim::{AdamW, AdamWConfig, DecayPolicy, Optimizer};

fn cfg() -> PatchNetConfig {
    PatchNetConfig {
        in_channels: 1,
        patch: 8,
        grid: 4,
        widths: vec![4, 8],
        head_width: 8,
        classes: 3,
        seed: 3,
    }
}

fn net(c: &PatchNetConfig) -> PatchGd {
    let grid = Grid::new(c.in_channels, c.patch * c.grid, c.patch).unwrap();
    PatchGd::new(
        &backbone(c).unwrap(),
        &head(c).unwrap(),
        grid,
        &EngineOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap()
}

fn images(n: usize, len: usize, seed: u64) -> Vec<f32> {
    let mut r = edgeslim_train::engine::gradcheck::random(&[n * len], seed, -1.0, 1.0);
    r = r.to_dtype(DType::F32).unwrap();
    r.to_vec1().unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn patchgd_with_every_patch_in_one_step_is_full_image_gradient_descent() {
    let c = cfg();
    let p = net(&c);
    let x = images(2, p.grid.image_len(), 11);
    let labels = [2usize, 0];
    let full = p.full_loss(&x, &labels).unwrap();
    let g_full = p.backbone.backward(&full).unwrap();
    let mut rng = edgeslim_data::rng(5, 0);
    let mb = p.minibatch(&x, &labels, 1, 1.0, &mut rng).unwrap();
    assert_eq!(mb.sampled, 16);
    let lf = values(&full)[0] as f64;
    assert!((mb.loss - lf).abs() < 1e-5, "{} vs {lf}", mb.loss);
    let mut compared = 0;
    for (name, v) in p.params() {
        let a = values(g_full.get(v.as_tensor()).unwrap());
        let b = values(mb.grads.get(v.as_tensor()).unwrap());
        let scale = a.iter().map(|x| x.abs()).fold(1e-6f32, f32::max);
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-4 * scale, "{name}: {diff} (scale {scale})");
        compared += 1;
    }
    // Both graphs' weights: 2 backbone convs and 2 head convs (weight, bias), the classifier.
    assert_eq!(compared, 10);

    // With half the patches the gradient is a different one (the test can fail).
    let half = p.minibatch(&x, &labels, 1, 0.5, &mut rng).unwrap();
    let (_, v) = &p.params()[0];
    let a = values(g_full.get(v.as_tensor()).unwrap());
    let b = values(half.grads.get(v.as_tensor()).unwrap());
    assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-4));
}

#[test]
fn z_filled_by_groups_is_the_backbone_on_each_patch() {
    let c = cfg();
    let mut p = net(&c);
    let x = images(2, p.grid.image_len(), 12);
    p.fill_group = 16;
    let whole = values(&p.fill_z(&x, 2).unwrap());
    p.fill_group = 3;
    let groups = values(&p.fill_z(&x, 2).unwrap());
    assert_eq!(whole.len(), 2 * 8 * 16);
    // Each patch alone through the backbone graph.
    let (d, m2) = (8, 16);
    for b in 0..2 {
        for j in 0..m2 {
            let patch = p.grid.gather(&x, 2, &[j]).unwrap();
            let one = &patch[b * 64..(b + 1) * 64];
            let t = Tensor::from_vec(one.to_vec(), (1, 1, 8, 8), &Device::Cpu).unwrap();
            let out = p.backbone.forward_inference(&[("patch", t)], &[]).unwrap();
            let f = values(&out["feature"]);
            for (k, fk) in f.iter().enumerate().take(d) {
                let at = b * d * m2 + k * m2 + j;
                assert!(
                    (whole[at] - fk).abs() < 1e-5,
                    "image {b} patch {j} channel {k}"
                );
                assert!((groups[at] - fk).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn patchgd_steps_fit_a_small_batch() {
    let c = cfg();
    let p = net(&c);
    let x = images(3, p.grid.image_len(), 13);
    let labels = [0usize, 1, 2];
    let mut opt = AdamW::new(
        p.params(),
        AdamWConfig {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        },
        &DecayPolicy::all(),
    )
    .unwrap();
    let mut rng = edgeslim_data::rng(9, 0);
    let first = values(&p.full_loss(&x, &labels).unwrap())[0];
    for _ in 0..40 {
        let mb = p.minibatch(&x, &labels, 2, 0.25, &mut rng).unwrap();
        assert_eq!(mb.sampled, 4);
        opt.step(&mb.grads).unwrap();
    }
    let last = values(&p.full_loss(&x, &labels).unwrap())[0];
    assert!(last < 0.5 * first, "loss {first} → {last}");
    assert_eq!(p.predict(&x, 3).unwrap(), labels);
}
