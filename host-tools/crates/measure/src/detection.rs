//! Text-detection quality of a probability map against a reference map, the way PP-OCR's DB
//! post-processing turns a map into boxes: binarise at 0.3, take each 8-connected region,
//! keep it when its mean probability is at least 0.6 and both sides of its bounding box are at
//! least 3 pixels (DB's `thresh`, `box_thresh` and `min_size` defaults). The polygon
//! "unclip" step is left out: it grows both models' boxes alike and does not change which
//! boxes match.
//!
//! A candidate's boxes are matched one to one with the reference's, greedily by IoU; a pair
//! with IoU ≥ 0.5 is a hit. Precision, recall and F1 are pooled over all maps (an image with
//! no text in either map adds nothing), as text-detection benchmarks report them; the pixel
//! IoU of the binarised maps is pooled the same way.

use edgeslim_data::pixels::components;
use serde::{Deserialize, Serialize};

/// DB's binarisation threshold.
pub const BINARY_THRESHOLD: f32 = 0.3;
/// DB's box threshold: a region's mean probability.
pub const BOX_THRESHOLD: f32 = 0.6;
/// DB's smallest box side, in map pixels.
pub const MIN_SIDE: usize = 3;
/// IoU at which a box matches.
pub const MATCH_IOU: f64 = 0.5;

/// An axis-aligned box in map pixels, `x0..x1 × y0..y1` (exclusive ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl TextBox {
    fn area(&self) -> usize {
        (self.x1 - self.x0) * (self.y1 - self.y0)
    }

    pub fn iou(&self, o: &TextBox) -> f64 {
        let w = self.x1.min(o.x1).saturating_sub(self.x0.max(o.x0));
        let h = self.y1.min(o.y1).saturating_sub(self.y0.max(o.y0));
        let inter = (w * h) as f64;
        let union = (self.area() + o.area()) as f64 - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// The boxes of one `h × w` probability map.
pub fn boxes(map: &[f32], w: usize, h: usize) -> Vec<TextBox> {
    let mask: Vec<bool> = map.iter().map(|&p| p > BINARY_THRESHOLD).collect();
    let (labels, n) = components(&mask, w, h);
    // Per region: bounding box and probability sum.
    let mut acc = vec![(usize::MAX, usize::MAX, 0usize, 0usize, 0.0f64, 0usize); n as usize];
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let (x, y) = (i % w, i / w);
        let a = &mut acc[l as usize - 1];
        a.0 = a.0.min(x);
        a.1 = a.1.min(y);
        a.2 = a.2.max(x + 1);
        a.3 = a.3.max(y + 1);
        a.4 += map[i] as f64;
        a.5 += 1;
    }
    acc.into_iter()
        .filter(|a| a.5 > 0 && a.4 / a.5 as f64 >= BOX_THRESHOLD as f64)
        .map(|(x0, y0, x1, y1, _, _)| TextBox { x0, y0, x1, y1 })
        .filter(|b| b.x1 - b.x0 >= MIN_SIDE && b.y1 - b.y0 >= MIN_SIDE)
        .collect()
}

/// Boxes of `candidate` that match a box of `reference` one to one (greedy by IoU).
pub fn matches(reference: &[TextBox], candidate: &[TextBox]) -> usize {
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (i, r) in reference.iter().enumerate() {
        for (j, c) in candidate.iter().enumerate() {
            let iou = r.iou(c);
            if iou >= MATCH_IOU {
                pairs.push((iou, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_r, mut used_c) = (vec![false; reference.len()], vec![false; candidate.len()]);
    let mut hits = 0;
    for (_, i, j) in pairs {
        if !used_r[i] && !used_c[j] {
            used_r[i] = true;
            used_c[j] = true;
            hits += 1;
        }
    }
    hits
}

/// A candidate detector's maps against the reference's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxAgreement {
    pub maps: usize,
    pub reference_boxes: usize,
    pub candidate_boxes: usize,
    pub matched: usize,
    pub precision: f64,
    pub recall: f64,
    /// 1 when neither model finds a box anywhere (they agree there is no text).
    pub f1: f64,
    /// Pixel IoU of the binarised maps, pooled (1 when both are empty everywhere).
    pub map_iou: f64,
}

/// Compare maps of `h × w` values each (`reference[i]` against `candidate[i]`).
pub fn agreement(
    reference: &[Vec<f32>],
    candidate: &[Vec<f32>],
    w: usize,
    h: usize,
) -> BoxAgreement {
    let (mut nr, mut nc, mut hit) = (0usize, 0usize, 0usize);
    let (mut inter, mut union) = (0u64, 0u64);
    let mut maps = 0;
    for (r, c) in reference.iter().zip(candidate) {
        if r.len() != w * h || c.len() != w * h {
            continue;
        }
        maps += 1;
        let (br, bc) = (boxes(r, w, h), boxes(c, w, h));
        nr += br.len();
        nc += bc.len();
        hit += matches(&br, &bc);
        for (&a, &b) in r.iter().zip(c) {
            let (a, b) = (a > BINARY_THRESHOLD, b > BINARY_THRESHOLD);
            inter += (a && b) as u64;
            union += (a || b) as u64;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(hit, nc), ratio(hit, nr));
    let f1 = if nr + nc == 0 {
        1.0
    } else {
        2.0 * hit as f64 / (nr + nc) as f64
    };
    BoxAgreement {
        maps,
        reference_boxes: nr,
        candidate_boxes: nc,
        matched: hit,
        precision,
        recall,
        f1,
        map_iou: if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 × 10 map with two text blobs.
    fn two_words() -> Vec<f32> {
        let mut m = vec![0.0f32; 200];
        for y in 2..6 {
            for x in 1..8 {
                m[y * 20 + x] = 0.9;
            }
            for x in 11..18 {
                m[y * 20 + x] = 0.8;
            }
        }
        m
    }

    #[test]
    fn regions_become_boxes_with_db_thresholds() {
        let mut m = two_words();
        // A faint region (mean 0.4 < 0.6) and a 2-pixel-high one are not boxes.
        for x in 1..10 {
            m[8 * 20 + x] = 0.4;
        }
        m[9 * 20 + 15] = 0.9;
        m[9 * 20 + 16] = 0.9;
        let b = boxes(&m, 20, 10);
        assert_eq!(
            b,
            vec![
                TextBox {
                    x0: 1,
                    y0: 2,
                    x1: 8,
                    y1: 6
                },
                TextBox {
                    x0: 11,
                    y0: 2,
                    x1: 18,
                    y1: 6
                }
            ]
        );
    }

    #[test]
    fn f1_counts_matched_missed_and_extra_boxes() {
        let r = two_words();
        let one = std::slice::from_ref(&r);
        assert_eq!(agreement(one, one, 20, 10).f1, 1.0);
        // The candidate loses the second word and shifts the first by one pixel (IoU 6/8).
        let mut c = vec![0.0f32; 200];
        for y in 2..6 {
            for x in 2..9 {
                c[y * 20 + x] = 0.9;
            }
        }
        let a = agreement(one, &[c], 20, 10);
        assert_eq!((a.reference_boxes, a.candidate_boxes, a.matched), (2, 1, 1));
        assert!((a.f1 - 2.0 / 3.0).abs() < 1e-12, "{}", a.f1);
        assert_eq!((a.precision, a.recall), (1.0, 0.5));
        // Pixels: 24 shared of 28 + 28 + ... = inter 24, union 28 (first word) + 28 (second).
        assert!((a.map_iou - 24.0 / 60.0).abs() < 1e-12, "{}", a.map_iou);
        // No text anywhere in either: full agreement.
        let z = vec![0.0f32; 200];
        let z = std::slice::from_ref(&z);
        assert_eq!(agreement(z, z, 20, 10).f1, 1.0);
    }

    #[test]
    fn a_box_matches_only_once() {
        let r = [TextBox {
            x0: 0,
            y0: 0,
            x1: 10,
            y1: 4,
        }];
        let c = [
            r[0],
            TextBox {
                x0: 1,
                y0: 0,
                x1: 10,
                y1: 4,
            },
        ];
        assert_eq!(matches(&r, &c), 1);
    }
}
