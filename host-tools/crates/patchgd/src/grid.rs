//! The patch grid: an image of side S cut into m×m non-overlapping patches of side p = S/m,
//! numbered row-major (position j is row j / m, column j % m).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    pub channels: usize,
    /// Image side, pixels.
    pub side: usize,
    /// Patch side, pixels.
    pub patch: usize,
}

impl Grid {
    pub fn new(channels: usize, side: usize, patch: usize) -> Result<Grid> {
        if channels == 0 || patch == 0 || side == 0 || !side.is_multiple_of(patch) {
            return Err(Error::option_value(
                "patch",
                patch,
                format!("the patch side must divide the image side {side} (and neither be 0)"),
            ));
        }
        Ok(Grid {
            channels,
            side,
            patch,
        })
    }

    /// Patches per side (m).
    pub fn m(&self) -> usize {
        self.side / self.patch
    }

    /// Patches per image (m²).
    pub fn positions(&self) -> usize {
        self.m() * self.m()
    }

    /// Values in one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.side * self.side
    }

    /// Values in one patch.
    pub fn patch_len(&self) -> usize {
        self.channels * self.patch * self.patch
    }

    /// The patches at `positions` of every image of `images` (`[batch, C, S, S]` row-major),
    /// as `[batch · positions.len(), C, p, p]`, image-major.
    pub fn gather(&self, images: &[f32], batch: usize, positions: &[usize]) -> Result<Vec<f32>> {
        if images.len() != batch * self.image_len() {
            return Err(Error::Invalid(format!(
                "{} values for {batch} images of {}×{}×{}",
                images.len(),
                self.channels,
                self.side,
                self.side
            )));
        }
        let (m, p, s) = (self.m(), self.patch, self.side);
        let mut out = Vec::with_capacity(batch * positions.len() * self.patch_len());
        for b in 0..batch {
            let img = &images[b * self.image_len()..(b + 1) * self.image_len()];
            for &j in positions {
                if j >= m * m {
                    return Err(Error::Invalid(format!(
                        "patch position {j} outside the {m}×{m} grid"
                    )));
                }
                let (r, c) = (j / m, j % m);
                for ch in 0..self.channels {
                    let plane = &img[ch * s * s..(ch + 1) * s * s];
                    for y in 0..p {
                        let row = (r * p + y) * s + c * p;
                        out.extend_from_slice(&plane[row..row + p]);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_cut_row_major() {
        // One 4×4 image of values 0..16, patches of 2: position 1 is the top-right block.
        let g = Grid::new(1, 4, 2).unwrap();
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(g.gather(&img, 1, &[1]).unwrap(), vec![2.0, 3.0, 6.0, 7.0]);
        assert_eq!(
            g.gather(&img, 1, &[2, 0]).unwrap(),
            vec![8.0, 9.0, 12.0, 13.0, 0.0, 1.0, 4.0, 5.0]
        );
        assert!(g.gather(&img, 1, &[4]).is_err());
        assert!(Grid::new(1, 10, 4).is_err());
    }
}
