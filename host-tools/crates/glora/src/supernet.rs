//! GLoRA's one-shot supernet and evolutionary search (`shared/methods.md` §5).
//!
//! Every wrapped layer holds every option of every term at once — LoRA-r, vector and scalar
//! for A and B; LoRA-r and vector for C; vector and scalar for D and E — each multiplied by a
//! frozen gate. A training step samples one configuration per layer (the chosen option's gate
//! 1, the others 0; "none" closes them all), so all configurations share the trained factors.
//! The search then scores configurations with those shared weights: a population of random
//! configurations within the trainable-parameter budget, the top parents, mutations
//! (every term redrawn with probability p) and crossovers (every layer from either parent).

use crate::adapter::{self, gate_name, Adapter, Draw, TermForm};
use crate::layers::Layer;
use crate::support::{LayerSupport, Support};
use edgeslim_onnx::{Error, OnnxModel, Result};
use edgeslim_runtime::input::SplitMix64;
use edgeslim_train::engine::GraphModule;
use serde::{Deserialize, Serialize};

/// The options of one term at rank `r` (none is always possible).
pub fn options(term: char, r: usize) -> Vec<Support> {
    match term {
        'a' | 'b' => vec![
            Support::Lora(r),
            Support::Vector,
            Support::Scalar,
            Support::None,
        ],
        'c' => vec![Support::Lora(r), Support::Vector, Support::None],
        _ => vec![Support::Vector, Support::Scalar, Support::None],
    }
}

const TERMS: [char; 5] = ['a', 'b', 'c', 'd', 'e'];

fn get(s: &LayerSupport, t: char) -> Support {
    match t {
        'a' => s.a,
        'b' => s.b,
        'c' => s.c,
        'd' => s.d,
        _ => s.e,
    }
}

fn set(s: &mut LayerSupport, t: char, v: Support) {
    match t {
        'a' => s.a = v,
        'b' => s.b = v,
        'c' => s.c = v,
        'd' => s.d = v,
        _ => s.e = v,
    }
}

/// A configuration: one support per wrapped layer (in the supernet's order).
pub type Config = Vec<LayerSupport>;

/// The supernet's layers (its graph comes from [`Supernet::build`] beside it).
#[derive(Debug, Clone)]
pub struct Supernet {
    /// The wrapped layers (their `support` is the largest, bias terms dropped where the
    /// layer has no bias).
    pub adapters: Vec<Adapter>,
    pub rank: usize,
}

impl Supernet {
    /// The supernet graph of `layers` at LoRA rank `rank` (every gate open), and its layers.
    pub fn build(
        model: &OnnxModel,
        layers: &[Layer],
        rank: usize,
        seed: u64,
    ) -> Result<(OnnxModel, Supernet)> {
        let plan: Vec<(Layer, LayerSupport)> = layers
            .iter()
            .map(|l| (l.clone(), LayerSupport::glora_full(rank)))
            .collect();
        let adapters = adapter::plan_adapters(&plan)?;
        let mut m = model.clone();
        let mut draw = Draw::new(seed);
        let all: Vec<Vec<Support>> = TERMS.iter().map(|&t| options(t, rank)).collect();
        for a in &adapters {
            let bias = a.layer.bias.is_some();
            let forms = [0, 1, 2, 3, 4].map(|i| {
                if i >= 2 && !bias {
                    TermForm::One(Support::None)
                } else {
                    TermForm::Gated(&all[i])
                }
            });
            adapter::wire(&mut m, a, forms, &mut draw)?;
        }
        m.topo_sort()?;
        m.validate_references()?;
        Ok((m, Supernet { adapters, rank }))
    }

    /// The terms a layer can use (C, D, E only with a bias).
    fn terms(&self, layer: usize) -> &'static [char] {
        if self.adapters[layer].layer.bias.is_some() {
            &TERMS
        } else {
            &TERMS[..2]
        }
    }

    /// A configuration drawn uniformly, term by term.
    pub fn random(&self, rng: &mut SplitMix64) -> Config {
        (0..self.adapters.len())
            .map(|i| {
                let mut s = LayerSupport::NONE;
                for &t in self.terms(i) {
                    let o = options(t, self.rank);
                    set(&mut s, t, o[(rng.next_u64() % o.len() as u64) as usize]);
                }
                s
            })
            .collect()
    }

    /// Trainable adapter values of a configuration.
    pub fn params(&self, cfg: &Config) -> usize {
        self.adapters
            .iter()
            .zip(cfg)
            .map(|(a, s)| s.params(a.layer.outputs(), a.layer.fan_in()))
            .sum()
    }

    /// Every gate's value under `cfg`.
    pub fn gates(&self, cfg: &Config) -> Vec<(String, f32)> {
        let mut out = Vec::new();
        for (i, (a, s)) in self.adapters.iter().zip(cfg).enumerate() {
            for &t in self.terms(i) {
                let chosen = get(s, t);
                for o in options(t, self.rank) {
                    if o != Support::None {
                        let name = gate_name(&a.prefix, &t.to_string(), o);
                        out.push((name, if o == chosen { 1.0 } else { 0.0 }));
                    }
                }
            }
        }
        out
    }

    /// Switch the module (built from the supernet graph) to `cfg`.
    pub fn apply(&self, module: &GraphModule, cfg: &Config) -> Result<()> {
        for (name, v) in self.gates(cfg) {
            module.set_weight(&name, &[v])?;
        }
        Ok(())
    }

    /// Is this name a gate (kept frozen)?
    pub fn is_gate(name: &str) -> bool {
        name.ends_with(".gate")
    }
}

/// The evolutionary search's settings (the paper's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchOptions {
    pub population: usize,
    pub generations: usize,
    pub parents: usize,
    pub mutations: usize,
    pub crossovers: usize,
    pub mutation_probability: f64,
    /// Most trainable adapter values a configuration may have.
    pub budget: Option<usize>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            population: 50,
            generations: 20,
            parents: 10,
            mutations: 25,
            crossovers: 25,
            mutation_probability: 0.2,
            budget: None,
        }
    }
}

/// One generation's best and mean fitness.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    pub generation: usize,
    pub best: f64,
    pub mean: f64,
    pub best_params: usize,
}

pub struct Found {
    pub config: Config,
    pub fitness: f64,
    pub history: Vec<Generation>,
    pub evaluations: usize,
}

/// Evolve configurations under the budget; `fitness` scores one (higher is better). Each
/// distinct configuration is scored once.
pub fn evolve(
    sn: &Supernet,
    opts: &SearchOptions,
    seed: u64,
    mut fitness: impl FnMut(&Config) -> Result<f64>,
) -> Result<Found> {
    let mut rng = SplitMix64(seed ^ 0xe701);
    let fits = |c: &Config| opts.budget.is_none_or(|b| sn.params(c) <= b);
    // Draw until valid; a budget no configuration meets is refused (all-none always fits).
    let draw_valid = |rng: &mut SplitMix64, make: &mut dyn FnMut(&mut SplitMix64) -> Config| {
        for _ in 0..10_000 {
            let c = make(rng);
            if fits(&c) {
                return Some(c);
            }
        }
        None
    };
    let none: Config = vec![LayerSupport::NONE; sn.adapters.len()];
    let mut population: Vec<Config> = (0..opts.population)
        .map(|_| draw_valid(&mut rng, &mut |r| sn.random(r)).unwrap_or_else(|| none.clone()))
        .collect();
    let mut scored: std::collections::HashMap<Config, f64> = std::collections::HashMap::new();
    let mut history = Vec::new();
    let mut best: Option<(Config, f64)> = None;
    for g in 0..opts.generations.max(1) {
        if edgeslim_train::interrupt::requested() {
            return Err(Error::Invalid(format!(
                "interrupted in generation {}",
                g + 1
            )));
        }
        let mut ranked: Vec<(Config, f64)> = Vec::with_capacity(population.len());
        for c in &population {
            let f = match scored.get(c) {
                Some(f) => *f,
                None => {
                    let f = fitness(c)?;
                    scored.insert(c.clone(), f);
                    f
                }
            };
            ranked.push((c.clone(), f));
        }
        // Best first; ties to the smaller configuration.
        ranked.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then(sn.params(&a.0).cmp(&sn.params(&b.0)))
        });
        let mean = ranked.iter().map(|r| r.1).sum::<f64>() / ranked.len().max(1) as f64;
        if best.as_ref().is_none_or(|b| ranked[0].1 > b.1) {
            best = Some(ranked[0].clone());
        }
        history.push(Generation {
            generation: g + 1,
            best: ranked[0].1,
            mean,
            best_params: sn.params(&ranked[0].0),
        });
        log::info!(
            "GLoRA search generation {}: best {:.4}, mean {:.4}",
            g + 1,
            ranked[0].1,
            mean
        );
        let parents: Vec<Config> = ranked
            .iter()
            .take(opts.parents.max(1))
            .map(|r| r.0.clone())
            .collect();
        let mut next = Vec::with_capacity(opts.mutations + opts.crossovers);
        let p = opts.mutation_probability;
        for _ in 0..opts.mutations {
            let parent = &parents[(rng.next_u64() % parents.len() as u64) as usize];
            let child = draw_valid(&mut rng, &mut |r| {
                let fresh = sn.random(r);
                let mut c = parent.clone();
                for (i, s) in c.iter_mut().enumerate() {
                    for &t in sn.terms(i) {
                        if (r.next_f32() as f64) < p {
                            set(s, t, get(&fresh[i], t));
                        }
                    }
                }
                c
            });
            next.extend(child);
        }
        for _ in 0..opts.crossovers {
            let a = &parents[(rng.next_u64() % parents.len() as u64) as usize];
            let b = &parents[(rng.next_u64() % parents.len() as u64) as usize];
            let child = draw_valid(&mut rng, &mut |r| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| if r.next_u64() % 2 == 0 { *x } else { *y })
                    .collect()
            });
            next.extend(child);
        }
        if next.is_empty() {
            next = parents;
        }
        population = next;
    }
    let (config, fitness) =
        best.ok_or_else(|| Error::Invalid("the search scored nothing".into()))?;
    Ok(Found {
        config,
        fitness,
        history,
        evaluations: scored.len(),
    })
}
