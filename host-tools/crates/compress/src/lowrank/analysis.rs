//! `edgeslim analyze`: which layers are intrinsically low-rank.
//!
//! Per Linear-like layer: singular values of W (energy σ²) and, with calibration data, the
//! eigen-spectrum of the covariance of its outputs on that data (energy = variance); the rank
//! holding 90/95/99% of each energy. The ranking uses the share of the layer's weights that
//! two factors at the 95% rank would need, r95/κ: below 1 the layer compresses while keeping
//! 95% of the energy, and the smaller the better. Feature space when there is data (the
//! outputs are what the next layer sees), weight space otherwise.

use super::budget::kappa;
use super::calibration::{groups_within, output_covariances};
use super::layers::LinearLayer;
use super::svd::{cumulative_energy, rank_for_energy, singular_values};
use crate::Result;
use edgeslim_data::calib::{Dataset, ModelInput};
use edgeslim_onnx::OnnxModel;
use serde::Serialize;

/// Energy shares the analysis reports ranks for.
pub const SHARES: [f64; 3] = [0.90, 0.95, 0.99];

/// Accumulators of one analysis pass stay under this many bytes (d² f64 per layer).
const GROUP_BYTES: usize = 256 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct EnergyRanks {
    pub r90: usize,
    pub r95: usize,
    pub r99: usize,
}

impl EnergyRanks {
    fn of(values_energy: &[f64]) -> EnergyRanks {
        let c = cumulative_energy(values_energy);
        EnergyRanks {
            r90: rank_for_energy(&c, SHARES[0]),
            r95: rank_for_energy(&c, SHARES[1]),
            r99: rank_for_energy(&c, SHARES[2]),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerSpectrum {
    pub name: String,
    pub kind: String,
    pub d_in: usize,
    pub d_out: usize,
    pub full_rank: usize,
    pub kappa: f64,
    pub params: usize,
    pub decomposable: bool,
    pub note: Option<String>,
    /// Largest first.
    pub weight_singular_values: Vec<f64>,
    pub weight_ranks: EnergyRanks,
    /// Variances along the principal directions of the outputs, largest first.
    pub feature_eigenvalues: Option<Vec<f64>>,
    pub feature_ranks: Option<EnergyRanks>,
    pub feature_samples: Option<u64>,
    /// r95 / κ in the space the ranking uses: the share of the weights two factors keeping
    /// 95% of the energy would need.
    pub weights_needed_95: f64,
    pub ranking_space: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub model: String,
    pub calib: Option<String>,
    pub split_rule: Option<String>,
    pub calib_samples: Option<usize>,
    pub layers: Vec<LayerSpectrum>,
    /// Indices into `layers`, most low-rank first (decomposable layers only).
    pub ranking: Vec<usize>,
}

/// Analyse every Linear-like layer of a `prepare`d model.
pub fn analyze(
    model: &OnnxModel,
    layers: &[LinearLayer],
    data: Option<(&ModelInput, &Dataset)>,
) -> Result<Vec<LayerSpectrum>> {
    let mut covs = vec![None; layers.len()];
    if let Some((input, calib)) = data {
        let refs: Vec<&LinearLayer> = layers.iter().collect();
        let mut at = 0;
        for group in groups_within(&refs, GROUP_BYTES) {
            let got = output_covariances(model, input, &group, calib, "calibrating outputs")?;
            for c in got {
                covs[at] = Some(c);
                at += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(layers.len());
    for (l, cov) in layers.iter().zip(covs) {
        let sv = singular_values(&l.weight, l.d_out, l.d_in, &format!("layer '{}'", l.name))?;
        let sq: Vec<f64> = sv.iter().map(|s| s * s).collect();
        let weight_ranks = EnergyRanks::of(&sq);
        let (eig, feature_ranks, samples) = match cov {
            Some(c) => {
                let spec = c.spectrum(&format!("layer '{}'", l.name))?;
                let ranks = EnergyRanks::of(&spec.values);
                (Some(spec.values), Some(ranks), Some(c.samples))
            }
            None => (None, None, None),
        };
        let k = kappa(l.d_in, l.d_out);
        let (r95, space) = match &feature_ranks {
            Some(f) => (f.r95, "feature"),
            None => (weight_ranks.r95, "weight"),
        };
        out.push(LayerSpectrum {
            name: l.name.clone(),
            kind: l.kind_label(),
            d_in: l.d_in,
            d_out: l.d_out,
            full_rank: l.full_rank(),
            kappa: k,
            params: l.params(),
            decomposable: l.not_decomposable.is_none(),
            note: l.not_decomposable.clone(),
            weight_singular_values: sv,
            weight_ranks,
            feature_eigenvalues: eig,
            feature_ranks,
            feature_samples: samples,
            weights_needed_95: if k > 0.0 {
                r95 as f64 / k
            } else {
                f64::INFINITY
            },
            ranking_space: space.into(),
        });
    }
    Ok(out)
}

/// Decomposable layers, most low-rank first (ties: larger layers first, they matter more).
pub fn ranking(layers: &[LayerSpectrum]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..layers.len())
        .filter(|&i| layers[i].decomposable)
        .collect();
    idx.sort_by(|&a, &b| {
        layers[a]
            .weights_needed_95
            .total_cmp(&layers[b].weights_needed_95)
            .then(layers[b].params.cmp(&layers[a].params))
    });
    idx
}

/// `edgeslim analyze` end to end: load and prepare the model, load calibration data, analyse.
pub fn run(
    path: &std::path::Path,
    calib: Option<&edgeslim_data::calib::CalibSpec>,
    calib_samples: Option<usize>,
    pattern: Option<&regex::Regex>,
    input_shapes: &[edgeslim_runtime::InputShape],
) -> Result<Analysis> {
    let mut model = OnnxModel::load(path)?;
    super::prepare(&mut model)?;
    let layers = super::selected_layers(&model, pattern)?;
    let data = match calib {
        Some(spec) => {
            let input = ModelInput::resolve(&model, input_shapes)?;
            let d = edgeslim_data::calib::load(spec, &input, calib_samples)?;
            Some((input, d))
        }
        None => None,
    };
    let spectra = analyze(&model, &layers, data.as_ref().map(|(i, d)| (i, &d.calib)))?;
    Ok(Analysis {
        model: path.display().to_string(),
        calib: calib.map(|c| c.to_string()),
        split_rule: data
            .as_ref()
            .map(|(_, d)| format!("{}: {}", d.calib.name, d.split_rule)),
        calib_samples: data.as_ref().map(|(_, d)| d.calib.len()),
        ranking: ranking(&spectra),
        layers: spectra,
    })
}
