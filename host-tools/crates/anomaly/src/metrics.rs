//! Anomaly-detection metrics: ROC AUC (images or pixels) and PRO (per-region overlap).
//!
//! AUROC is the probability that a random anomalous sample scores above a random normal one,
//! ties counting half (the Mann–Whitney statistic, exact, O(n log n)). PRO follows the MVTec
//! AD evaluation: ground-truth regions are the 8-connected components of the masks; at each
//! threshold the PRO is the mean over regions of the fraction of the region above threshold,
//! the FPR is the fraction of normal pixels above threshold; the curve is integrated up to
//! FPR 0.3 and divided by 0.3, so a perfect detector scores 1.

use edgeslim_data::pixels::components;

/// AUROC of `scores` with `labels` (true = anomalous). None when a class is missing.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum_pos, mut pos, mut neg) = (0.0f64, 0u64, 0u64);
    let mut i = 0;
    while i < idx.len() {
        // A run of tied scores shares the mean of its ranks (1-based).
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum_pos += mean_rank;
                pos += 1;
            } else {
                neg += 1;
            }
        }
        i = j + 1;
    }
    if pos == 0 || neg == 0 {
        return None;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n))
}

/// Pixels of all test images, for pixel AUROC and PRO.
#[derive(Default)]
pub struct PixelSet {
    scores: Vec<f32>,
    /// 0 = normal pixel, else a global region id (1-based).
    region: Vec<u32>,
    region_sizes: Vec<u64>,
}

impl PixelSet {
    /// Add one image: its anomaly map and ground-truth mask (all false for good images).
    pub fn add(&mut self, map: &[f32], mask: &[bool], w: usize, h: usize) {
        let (lab, n) = components(mask, w, h);
        let base = self.region_sizes.len() as u32;
        self.region_sizes.extend(std::iter::repeat_n(0, n as usize));
        for (i, &l) in lab.iter().enumerate() {
            let r = if l == 0 { 0 } else { base + l };
            if r > 0 {
                self.region_sizes[(r - 1) as usize] += 1;
            }
            self.region.push(r);
            self.scores.push(map[i]);
        }
    }

    pub fn auroc(&self) -> Option<f64> {
        let s: Vec<f64> = self.scores.iter().map(|&v| v as f64).collect();
        let l: Vec<bool> = self.region.iter().map(|&r| r > 0).collect();
        auroc(&s, &l)
    }

    /// PRO integrated up to `max_fpr` and normalised by it. None without regions or normal
    /// pixels.
    pub fn pro(&self, max_fpr: f64) -> Option<f64> {
        let regions = self.region_sizes.len();
        let normal = self.region.iter().filter(|&&r| r == 0).count();
        if regions == 0 || normal == 0 {
            return None;
        }
        let mut idx: Vec<usize> = (0..self.scores.len()).collect();
        idx.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]));
        // Sweep thresholds from high to low; PRO and FPR are step functions that change only
        // between distinct scores.
        let (mut fpr, mut pro) = (0.0f64, 0.0f64);
        let (mut area, mut last_fpr, mut last_pro) = (0.0, 0.0, 0.0);
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j < idx.len() && self.scores[idx[j]] == self.scores[idx[i]] {
                let r = self.region[idx[j]];
                if r == 0 {
                    fpr += 1.0 / normal as f64;
                } else {
                    pro += 1.0 / (self.region_sizes[(r - 1) as usize] as f64 * regions as f64);
                }
                j += 1;
            }
            if fpr >= max_fpr {
                // Interpolate the last segment up to max_fpr exactly.
                let t = (max_fpr - last_fpr) / (fpr - last_fpr).max(1e-300);
                let pro_at = last_pro + t * (pro - last_pro);
                area += (max_fpr - last_fpr) * (last_pro + pro_at) / 2.0;
                return Some(area / max_fpr);
            }
            area += (fpr - last_fpr) * (last_pro + pro) / 2.0;
            last_fpr = fpr;
            last_pro = pro;
            i = j;
        }
        Some(area / max_fpr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_pairs_and_ties() {
        assert_eq!(
            auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            auroc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        // One tie between classes counts half: pairs (p=0.5 vs n=0.5) ½, (p=0.9 vs n) 1 each.
        let a = auroc(&[0.5, 0.5, 0.9, 0.1], &[false, true, true, false]).unwrap();
        assert!((a - (0.5 + 1.0 + 1.0 + 1.0) / 4.0).abs() < 1e-12, "{a}");
        assert_eq!(auroc(&[1.0, 2.0], &[true, true]), None);
    }

    #[test]
    fn pro_of_perfect_and_inverted_maps() {
        let (w, h) = (4, 4);
        let mut mask = vec![false; 16];
        mask[5] = true;
        mask[6] = true;
        let good: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
        let mut s = PixelSet::default();
        s.add(&good, &mask, w, h);
        assert!((s.pro(0.3).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(s.auroc(), Some(1.0));
        let bad: Vec<f32> = good.iter().map(|v| 1.0 - v).collect();
        let mut s = PixelSet::default();
        s.add(&bad, &mask, w, h);
        assert!(s.pro(0.3).unwrap() < 1e-9);
    }

    #[test]
    fn pro_weights_regions_equally() {
        // A big region fully found and a small one missed: PRO 0.5 whatever their sizes.
        let (w, h) = (10, 10);
        let mut mask = vec![false; 100];
        let mut map = vec![0.5f32; 100];
        for p in 0..30 {
            mask[p] = true;
            map[p] = 1.0;
        }
        mask[99] = true;
        map[99] = 0.0;
        let mut s = PixelSet::default();
        s.add(&map, &mask, w, h);
        let pro = s.pro(0.3).unwrap();
        assert!((pro - 0.5).abs() < 0.02, "{pro}");
    }
}
