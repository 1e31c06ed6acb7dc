//! The latency–quality trade-off: which variants no other variant beats on both counts, and
//! the fastest one within an allowed quality drop.

/// For each `(latency, quality)` point: is it on the Pareto front? A point is dominated when
/// another is at least as fast and at least as good, and strictly better in one of the two.
/// Points with a non-finite coordinate are never on the front.
pub fn front(points: &[(f64, f64)]) -> Vec<bool> {
    points
        .iter()
        .map(|&(l, q)| {
            l.is_finite()
                && q.is_finite()
                && !points.iter().any(|&(l2, q2)| {
                    l2.is_finite() && q2.is_finite() && l2 <= l && q2 >= q && (l2 < l || q2 > q)
                })
        })
        .collect()
}

/// The index of the fastest point whose quality is at least `floor` (ties: the better
/// quality, then the first).
pub fn fastest_within(points: &[(f64, f64)], floor: f64) -> Option<usize> {
    points
        .iter()
        .enumerate()
        .filter(|(_, (l, q))| l.is_finite() && q.is_finite() && *q >= floor)
        .min_by(|(_, a), (_, b)| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_of_a_hand_made_table() {
        // (ms, accuracy %): A slow and best, B faster and slightly worse, C dominated by B
        // (slower and worse), D fastest and worst, E ties B on latency but is worse, F NaN.
        let pts = [
            (10.0, 99.0),
            (6.0, 98.5),
            (7.0, 98.0),
            (2.0, 90.0),
            (6.0, 97.0),
            (1.0, f64::NAN),
        ];
        assert_eq!(front(&pts), [true, true, false, true, false, false]);
        // Duplicates do not dominate each other.
        assert_eq!(front(&[(1.0, 1.0), (1.0, 1.0)]), [true, true]);
    }

    #[test]
    fn fastest_within_a_drop() {
        let pts = [(10.0, 99.0), (6.0, 98.5), (7.0, 98.0), (2.0, 90.0)];
        assert_eq!(fastest_within(&pts, 98.0), Some(1));
        assert_eq!(fastest_within(&pts, 99.0), Some(0));
        assert_eq!(fastest_within(&pts, 85.0), Some(3));
        assert_eq!(fastest_within(&pts, 99.5), None);
    }
}
