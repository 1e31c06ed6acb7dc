//! `--input-shape NAME=1,3,224,224` parsing.

use crate::error::{Result, RuntimeError};
use std::str::FromStr;

/// A user-given input shape, optionally naming the input it applies to. Without a name it
/// applies to the first input whose shape is not already fixed by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputShape {
    pub name: Option<String>,
    pub dims: Vec<usize>,
}

impl FromStr for InputShape {
    type Err = RuntimeError;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason: &str| RuntimeError::BadShapeSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        // The name may itself contain ':' or '.', so split on the last '='.
        let (name, dims_text) = match spec.rsplit_once('=') {
            Some((n, d)) if !n.is_empty() => (Some(n.to_string()), d),
            Some(_) => return Err(bad("empty input name before '='")),
            None => (None, spec),
        };
        let dims = dims_text
            .split([',', 'x'])
            .map(|d| {
                let d = d.trim();
                d.parse::<usize>()
                    .map_err(|_| bad(&format!("'{d}' is not a non-negative integer dimension")))
            })
            .collect::<Result<Vec<usize>>>()?;
        if dims.is_empty() {
            return Err(bad("no dimensions"));
        }
        if dims.contains(&0) {
            return Err(bad("dimensions must be at least 1"));
        }
        Ok(InputShape { name, dims })
    }
}

impl std::fmt::Display for InputShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims = self
            .dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",");
        match &self.name {
            Some(n) => write!(f, "{n}={dims}"),
            None => write!(f, "{dims}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_and_positional_shapes() {
        let s: InputShape = "x=1,3,48,192".parse().unwrap();
        assert_eq!(s.name.as_deref(), Some("x"));
        assert_eq!(s.dims, vec![1, 3, 48, 192]);
        let s: InputShape = "1x3x640x640".parse().unwrap();
        assert_eq!(s.name, None);
        assert_eq!(s.dims, vec![1, 3, 640, 640]);
        let s: InputShape = "a=b=2,2".parse().unwrap();
        assert_eq!(s.name.as_deref(), Some("a=b"));
    }

    #[test]
    fn rejects_bad_shapes_with_reason() {
        for bad in ["x=", "x=1,-3", "=1,2", "x=1,0", "x=1,a"] {
            let err = bad.parse::<InputShape>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("input shape '{bad}'")), "{err}");
        }
    }
}
