//! ViT-Slim on a Siamese tracker with a ViT backbone: the trunk both branches share is masked
//! once, sliced, and the pair rebuilt from the sliced shapes — checked by running the pairs
//! (template → kernel → search → response) in tract.

use edgeslim_compress::prune::tracker::{model_params, TrackerPair};
use edgeslim_compress::study::budget::BudgetBy;
use edgeslim_onnx::{OnnxModel, Tensor};
use edgeslim_runtime::input::{tensor_to_f32_vec, SplitMix64};
use edgeslim_runtime::tract_onnx::prelude::Tensor as TractTensor;
use edgeslim_runtime::{LoadOptions, LoadedModel};
use edgeslim_train::families::siamese::{self, SiameseConfig, SiameseVit};
use edgeslim_vitslim::masks::{self, MaskKind, MaskValues};
use edgeslim_vitslim::tracker::{self, fixed_as_constants, TrackerSlimOptions};
use edgeslim_vitslim::{budget, slice};
use std::path::{Path, PathBuf};

fn config(stem: &str) -> SiameseConfig {
    SiameseConfig {
        widths: [8, 8, 8, 12],
        stride: 8,
        seed: 5,
        vit: Some(SiameseVit {
            stem: stem.into(),
            stem_channels: 8,
            dim: 24,
            depth: 2,
            heads: 2,
            mlp: 40,
            blocks: Vec::new(),
        }),
        ..SiameseConfig::default()
    }
}

/// A pair built from the config, its weights perturbed so no channel is like another (the
/// builder's LayerNorm and bias initialisations are constant).
fn pair(stem: &str) -> TrackerPair {
    let cfg = config(stem);
    let mut template = siamese::build_template(&cfg).unwrap();
    let mut search = siamese::build_search(&cfg).unwrap();
    let mut r = SplitMix64(9);
    let names: Vec<String> = search
        .graph()
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .collect();
    for n in names {
        let t = Tensor::from_proto(search.initializer(&n).unwrap()).unwrap();
        let v: Vec<f32> = t
            .to_f32_vec()
            .iter()
            .map(|x| x + 0.2 * (r.next_f32() - 0.5))
            .collect();
        let t = Tensor::f32(t.dims.clone(), v).unwrap();
        search.set_initializer(&n, &t);
        if template.initializer(&n).is_some() {
            template.set_initializer(&n, &t);
        }
    }
    TrackerPair {
        dir: PathBuf::from("(built)"),
        template,
        search,
        config: cfg,
    }
}

fn load(m: &OnnxModel, shapes: &[&str]) -> LoadedModel {
    let opts = LoadOptions {
        input_shapes: shapes.iter().map(|s| s.parse().unwrap()).collect(),
        ..LoadOptions::default()
    };
    LoadedModel::from_bytes(m.to_bytes().unwrap(), Path::new("m"), None, &opts).unwrap()
}

/// The response map of the pair on a fixed template and two search crops, in tract.
fn respond(cfg: &SiameseConfig, template: &OnnxModel, search: &OnnxModel) -> Vec<f32> {
    let (t, s) = (cfg.template_size, cfg.search_size);
    let mut r = SplitMix64(4);
    let z: Vec<f32> = (0..3 * t * t).map(|_| r.next_f32() * 2.0 - 1.0).collect();
    let x: Vec<f32> = (0..2 * 3 * s * s)
        .map(|_| r.next_f32() * 2.0 - 1.0)
        .collect();
    let tm = load(template, &[]);
    let kernel = tm
        .run(vec![TractTensor::from_shape(&[1, 3, t, t], &z).unwrap()])
        .unwrap()
        .remove(0);
    let sm = load(search, &[&format!("search=2,3,{s},{s}")]);
    let out = sm
        .run(vec![
            TractTensor::from_shape(&[2, 3, s, s], &x).unwrap(),
            kernel,
        ])
        .unwrap();
    tensor_to_f32_vec(&out[0]).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// The pair with `trunk` spliced into both branches, neck and head from `pair`.
fn pair_with_trunk(pair: &TrackerPair, trunk: &OnnxModel) -> (OnnxModel, OnnxModel) {
    let mut t = siamese::build_template_with(&pair.config, Some(trunk)).unwrap();
    let mut s = siamese::build_search_with(&pair.config, Some(trunk)).unwrap();
    for m in [&mut t, &mut s] {
        siamese::copy_weights_by_name(
            m,
            &[&pair.search],
            |n| n.starts_with("neck.") || n.starts_with("head."),
            "pair",
        )
        .unwrap();
    }
    (t, s)
}

fn random_values(ms: &[masks::Mask], seed: u64) -> MaskValues {
    let mut r = SplitMix64(seed);
    ms.iter()
        .map(|m| {
            (
                m.name.clone(),
                (0..m.len).map(|_| r.next_f32() * 2.0).collect(),
            )
        })
        .collect()
}

#[test]
fn the_trunk_of_both_stems_is_recognised_and_masks_at_one_change_nothing() {
    for stem in ["patch", "hybrid"] {
        let p = pair(stem);
        let want = respond(&p.config, &p.template, &p.search);
        let tr = tracker::trunk(&p).unwrap();
        let s = &tr.prepared.structure;
        assert_eq!(s.attentions.len(), 2, "{stem}: {}", s.describe());
        assert_eq!(s.mlps.len(), 2);
        for a in &s.attentions {
            assert_eq!((a.heads, a.head_dim), (2, 12));
        }
        // The pair rebuilt around the prepared trunk, and around the masked one (all ones).
        let plain = fixed_as_constants(&tr.prepared.model, &tr.weights).unwrap();
        let (t, sg) = pair_with_trunk(&p, &plain);
        assert!(
            max_diff(&want, &respond(&p.config, &t, &sg)) <= 1e-5,
            "{stem}"
        );
        for kinds in [
            vec![MaskKind::HeadDims, MaskKind::Mlp],
            vec![MaskKind::Heads, MaskKind::Mlp],
        ] {
            let (masked, ms) = masks::insert(&tr.prepared.model, s, &kinds).unwrap();
            let masked = fixed_as_constants(&masked, &tr.weights).unwrap();
            // One mask per block and type, shared by the template and the search branch.
            assert_eq!(ms.len(), 4);
            let (t, sg) = pair_with_trunk(&p, &masked);
            let d = max_diff(&want, &respond(&p.config, &t, &sg));
            assert!(d <= 1e-5, "{stem} {kinds:?}: {d}");
        }
    }
}

/// Random masks folded, half of them sliced away, the pair rebuilt from the sliced shapes:
/// the same responses as the unsliced pair with the dropped channels zeroed.
#[test]
fn the_rebuilt_sliced_pair_equals_the_zeroed_pair_and_meets_the_budget() {
    for stem in ["patch", "hybrid"] {
        let p = pair(stem);
        let tr = tracker::trunk(&p).unwrap();
        let (s, shapes) = (&tr.prepared.structure, &tr.prepared.shapes);
        for kinds in [
            vec![MaskKind::HeadDims, MaskKind::Mlp],
            vec![MaskKind::Heads, MaskKind::Mlp],
        ] {
            let (mut masked, ms) = masks::insert(&tr.prepared.model, s, &kinds).unwrap();
            let values = random_values(&ms, 13);
            for m in &ms {
                let dims = masked.constant(&m.name).unwrap().unwrap().dims;
                let t = Tensor::f32(dims, values[&m.name].clone()).unwrap();
                masked.set_initializer(&m.name, &t);
            }
            let folded = masks::fold(&masked, s, &ms, &values).unwrap();
            let keep = budget::keep_at(s, &ms, &values, 0.5, 1);
            let zeroed = slice::zero_dropped(&folded, s, &keep).unwrap();
            let zeroed = fixed_as_constants(&zeroed, &tr.weights).unwrap();
            let (zt, zs) = pair_with_trunk(&p, &zeroed);

            let sliced = slice::slice(&folded, s, &keep, shapes).unwrap();
            let cfg = tracker::sliced_config(&p.config, s, &keep).unwrap();
            let (st, ss) = tracker::rebuild_pair(&cfg, &sliced, &[&p.search]).unwrap();
            let d = max_diff(&respond(&p.config, &zt, &zs), &respond(&cfg, &st, &ss));
            assert!(d <= 1e-5, "{stem} {kinds:?}: {d}");
            assert!(model_params(&ss) < model_params(&p.search));

            // The planned budget holds on the rebuilt search graph, and is tight.
            for f in [0.8, 0.6] {
                let (kept, _, c) = tracker::plan(
                    p.config.clone(),
                    s,
                    &ms,
                    &values,
                    (BudgetBy::Params, f),
                    1,
                    &p.search,
                )
                .unwrap();
                let ratio = model_params(&siamese::build_search(&c).unwrap()) as f64
                    / model_params(&p.search) as f64;
                assert!(
                    ratio <= f && ratio > f - 0.1,
                    "{stem} {f}: {ratio} ({kept})"
                );
            }
        }
    }
}

#[test]
fn cnn_trackers_and_token_masks_are_refused() {
    let cnn = SiameseConfig::default();
    let p = TrackerPair {
        dir: PathBuf::from("models/siamese-tracker"),
        template: siamese::build_template(&cnn).unwrap(),
        search: siamese::build_search(&cnn).unwrap(),
        config: cnn,
    };
    let e = tracker::run(&p, &TrackerSlimOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("compress prune") && e.contains("conv1..conv4"),
        "{e}"
    );
    let opts = TrackerSlimOptions {
        kinds: vec![MaskKind::HeadDims, MaskKind::Tokens],
        ..TrackerSlimOptions::default()
    };
    let e = tracker::run(&pair("patch"), &opts)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("token map"), "{e}");
}
