//! The support of each GLoRA term (`shared/methods.md` §5): what shape the trainable tensor
//! of a term has in one layer.
//!
//! ```text
//! W' = W0 + W0 ⊙ A + B          A, B ∈ {LoRA-r, vector, scalar, none}
//! b' = b0 + b0 ⊙ D + E + W0 C   C ∈ {LoRA-r, vector, none} (d_in × 1);  D, E ∈ {vector, scalar, none}
//! ```
//! A *vector* of A, B, D or E has one value per output unit (broadcast over the inputs); C's
//! vector has one value per input (the weight's fan-in, `d_in·kh·kw` for a convolution).

use edgeslim_onnx::{Error, Result};
use serde::{Deserialize, Serialize};

/// One term's support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Support {
    /// Two factors of rank r whose product has the weight's shape (C: a `d_in × 1` column).
    Lora(usize),
    Vector,
    Scalar,
    None,
}

impl Support {
    pub fn parse(s: &str) -> Result<Support> {
        let s = s.trim();
        Ok(match s {
            "vector" | "v" => Support::Vector,
            "scalar" | "s" => Support::Scalar,
            "none" | "n" | "0" => Support::None,
            _ => match s.strip_prefix("lora") {
                Some(r) => {
                    let r: usize = r.trim_start_matches(['-', ':']).parse().map_err(|_| {
                        Error::option_value("support", s, "write lora-R with a rank R ≥ 1")
                    })?;
                    if r == 0 {
                        return Err(Error::option_value("support", s, "the rank must be ≥ 1"));
                    }
                    Support::Lora(r)
                }
                None => {
                    return Err(Error::option_value(
                        "support",
                        s,
                        "one of lora-R, vector, scalar, none",
                    ))
                }
            },
        })
    }

    pub fn label(self) -> String {
        match self {
            Support::Lora(r) => format!("lora-{r}"),
            Support::Vector => "vector".into(),
            Support::Scalar => "scalar".into(),
            Support::None => "none".into(),
        }
    }
}

/// The five terms of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerSupport {
    pub a: Support,
    pub b: Support,
    pub c: Support,
    pub d: Support,
    pub e: Support,
}

impl LayerSupport {
    /// Nothing trainable: the layer stays as it is.
    pub const NONE: LayerSupport = LayerSupport {
        a: Support::None,
        b: Support::None,
        c: Support::None,
        d: Support::None,
        e: Support::None,
    };

    /// LoRA (Hu et al.): W' = W0 + B with B of rank r; nothing else.
    pub fn lora(rank: usize) -> LayerSupport {
        LayerSupport {
            b: Support::Lora(rank),
            ..LayerSupport::NONE
        }
    }

    /// The largest GLoRA support: LoRA-r on A, B and C, vectors on D and E.
    pub fn glora_full(rank: usize) -> LayerSupport {
        LayerSupport {
            a: Support::Lora(rank),
            b: Support::Lora(rank),
            c: Support::Lora(rank),
            d: Support::Vector,
            e: Support::Vector,
        }
    }

    /// `A=lora-4,B=vector,C=none,D=scalar,E=vector` (terms not named: none).
    pub fn parse(s: &str) -> Result<LayerSupport> {
        let mut out = LayerSupport::NONE;
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::option_value("support", part, "write TERM=SUPPORT, e.g. A=lora-4")
            })?;
            let v = Support::parse(v)?;
            match k.trim().to_ascii_uppercase().as_str() {
                "A" => out.a = v,
                "B" => out.b = v,
                "C" => out.c = v,
                "D" => out.d = v,
                "E" => out.e = v,
                other => {
                    return Err(Error::option_value(
                        "support",
                        other,
                        "the terms are A, B, C, D, E",
                    ))
                }
            }
        }
        out.check()?;
        Ok(out)
    }

    /// C has no scalar form; D and E have no LoRA form.
    pub fn check(&self) -> Result<()> {
        if self.c == Support::Scalar {
            return Err(Error::option_value(
                "support",
                "C=scalar",
                "C is lora-R, vector or none (W0·C needs one value per input)",
            ));
        }
        for (t, s) in [("D", self.d), ("E", self.e)] {
            if let Support::Lora(_) = s {
                return Err(Error::option_value(
                    "support",
                    format!("{t}={}", s.label()),
                    "D and E are vector, scalar or none",
                ));
            }
        }
        Ok(())
    }

    /// The terms that touch the bias (C, D, E) dropped: a layer without a bias keeps none,
    /// so the merged graph has the input's nodes.
    pub fn without_bias_terms(self) -> LayerSupport {
        LayerSupport {
            c: Support::None,
            d: Support::None,
            e: Support::None,
            ..self
        }
    }

    pub fn is_none(&self) -> bool {
        *self == LayerSupport::NONE
    }

    /// Trainable values of this support on a layer with `outputs` units and fan-in `fan_in`.
    pub fn params(&self, outputs: usize, fan_in: usize) -> usize {
        let weight_term = |s: Support| match s {
            Support::Lora(r) => r * (outputs + fan_in),
            Support::Vector => outputs,
            Support::Scalar => 1,
            Support::None => 0,
        };
        let c = match self.c {
            Support::Lora(r) => r * (fan_in + 1),
            Support::Vector => fan_in,
            _ => 0,
        };
        weight_term(self.a) + weight_term(self.b) + c + weight_term(self.d) + weight_term(self.e)
    }

    pub fn label(&self) -> String {
        format!(
            "A={},B={},C={},D={},E={}",
            self.a.label(),
            self.b.label(),
            self.c.label(),
            self.d.label(),
            self.e.label()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supports_parse_and_count() {
        let s = LayerSupport::parse("A=lora-4,B=vector,C=lora2,D=scalar,E=v").unwrap();
        assert_eq!(s.a, Support::Lora(4));
        assert_eq!(s.c, Support::Lora(2));
        // 4·(8+6) + 8 + 2·(6+1) + 1 + 8 on a layer with 8 outputs and fan-in 6.
        assert_eq!(s.params(8, 6), 56 + 8 + 14 + 1 + 8);
        assert_eq!(LayerSupport::lora(2).params(8, 6), 28);
        assert!(LayerSupport::parse("C=scalar").is_err());
        assert!(LayerSupport::parse("D=lora-2").is_err());
        assert!(LayerSupport::parse("F=vector").is_err());
        assert!(LayerSupport::parse("A=lora-0").is_err());
        assert!(LayerSupport::parse("").unwrap().is_none());
    }
}
