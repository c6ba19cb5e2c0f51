//! Statistics of timing samples: min / mean / median / p90 / p95 / p99 / max, the coefficient
//! of variation, and histograms for the plot. Pure host code, tested on random data.
//!
//! Percentiles use the nearest-rank definition (trtexec's): the p-th percentile of n samples is
//! the smallest sample `v` such that at least `ceil(p / 100 * n)` samples are `<= v`. The median
//! is the usual one (the middle sample, or the mean of the two middle ones).

use serde::{Deserialize, Serialize};

/// The summary of one series of timings (milliseconds in the report).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub min: f64,
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Index (0-based) of the nearest-rank `p`-th percentile in a sorted series of `n` samples.
fn rank_index(p: f64, n: usize) -> usize {
    debug_assert!(n > 0);
    let rank = (p / 100.0 * n as f64).ceil() as usize;
    rank.clamp(1, n) - 1
}

/// The `k`-th smallest sample (0-based), by selection on a scratch copy (no full sort).
fn kth(scratch: &mut [f64], k: usize) -> f64 {
    let (_, v, _) = scratch.select_nth_unstable_by(k, f64::total_cmp);
    *v
}

/// The nearest-rank `p`-th percentile (0 < p <= 100) of `samples`; `None` when empty or when
/// a sample is not finite.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() || samples.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut scratch = samples.to_vec();
    Some(kth(&mut scratch, rank_index(p, samples.len())))
}

/// Arithmetic mean; `None` when empty.
pub fn mean(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    Some(samples.iter().sum::<f64>() / samples.len() as f64)
}

/// Coefficient of variation: population standard deviation over the mean (0.025 is 2.5 %).
/// `None` with fewer than two samples or a mean of zero.
pub fn coefficient_of_variation(samples: &[f64]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let m = mean(samples)?;
    if m == 0.0 || !m.is_finite() {
        return None;
    }
    let var = samples.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / samples.len() as f64;
    Some(var.sqrt() / m.abs())
}

impl Summary {
    /// Summarises `samples`; `None` when there are none or one is NaN or infinite.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let n = samples.len();
        let mut s = samples.to_vec();
        let median = if n % 2 == 1 {
            kth(&mut s, n / 2)
        } else {
            (kth(&mut s, n / 2 - 1) + kth(&mut s, n / 2)) / 2.0
        };
        let (min, max) = samples
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        Some(Summary {
            min,
            mean: mean(samples)?,
            median,
            p90: kth(&mut s, rank_index(90.0, n)),
            p95: kth(&mut s, rank_index(95.0, n)),
            p99: kth(&mut s, rank_index(99.0, n)),
            max,
        })
    }
}

/// Element-wise sum of series of equal length (H2D + D2H per iteration); `None` if the lengths
/// differ.
pub fn add(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    (a.len() == b.len()).then(|| a.iter().zip(b).map(|(x, y)| x + y).collect())
}

/// A histogram of `samples` over `[lo, hi]` in `bins` equal bins: the counts, samples at `hi`
/// in the last bin, samples outside the range ignored.
pub fn histogram(samples: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<usize> {
    let mut counts = vec![0usize; bins];
    if bins == 0 || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        if bins > 0 {
            counts[0] = samples.iter().filter(|v| **v == lo).count();
        }
        return counts;
    }
    let width = (hi - lo) / bins as f64;
    for &v in samples {
        if !(lo..=hi).contains(&v) {
            continue;
        }
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_series(seed: u64, n: usize) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // Latency-like: a positive base with a long right tail, plus a few repeated values.
        (0..n)
            .map(|i| {
                if i % 17 == 0 {
                    1.25
                } else {
                    let u: f64 = rng.random_range(0.0..1.0);
                    0.5 + rng.random_range(0.0..1.0) + 3.0 * u * u * u
                }
            })
            .collect()
    }

    /// The oracle: a fully sorted copy and the nearest-rank definition read off it.
    fn oracle(samples: &[f64], p: f64) -> f64 {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let k = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        sorted[k.min(n) - 1]
    }

    #[test]
    fn percentiles_match_a_sorted_vector_oracle() {
        for (seed, n) in [(1, 1), (2, 2), (3, 7), (4, 100), (5, 1001), (6, 4096)] {
            let s = random_series(seed, n);
            for p in [1.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
                let got = percentile(&s, p).unwrap();
                assert_eq!(got, oracle(&s, p), "n {n} p {p}");
                // The definition itself: enough samples at or below, too few strictly below.
                let need = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
                assert!(s.iter().filter(|v| **v <= got).count() >= need);
                assert!(s.iter().filter(|v| **v < got).count() < need);
            }
            let sum = Summary::of(&s).unwrap();
            let mut sorted = s.clone();
            sorted.sort_by(f64::total_cmp);
            let median = if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
            assert_eq!(sum.min, sorted[0]);
            assert_eq!(sum.max, sorted[n - 1]);
            assert_eq!(sum.median, median);
            assert_eq!(sum.p90, oracle(&s, 90.0));
            assert_eq!(sum.p95, oracle(&s, 95.0));
            assert_eq!(sum.p99, oracle(&s, 99.0));
            let m: f64 = sorted.iter().sum::<f64>() / n as f64;
            assert!((sum.mean - m).abs() <= 1e-12 * m.abs().max(1.0));
            assert!(sum.min <= sum.median && sum.median <= sum.p90 && sum.p90 <= sum.p95);
            assert!(sum.p95 <= sum.p99 && sum.p99 <= sum.max);
        }
    }

    #[test]
    fn empty_or_non_finite_series_have_no_summary() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
        assert!(percentile(&[], 50.0).is_none());
        assert!(percentile(&[f64::INFINITY], 50.0).is_none());
        assert!(coefficient_of_variation(&[3.0]).is_none());
        assert!(coefficient_of_variation(&[0.0, 0.0]).is_none());
    }

    #[test]
    fn coefficient_of_variation_of_random_data() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let base: f64 = rng.random_range(1.0..5.0);
        let spread: f64 = rng.random_range(0.01..0.2);
        // Two values base ± spread in equal numbers: std = spread exactly, mean = base.
        let s: Vec<f64> = (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    base + spread
                } else {
                    base - spread
                }
            })
            .collect();
        let cv = coefficient_of_variation(&s).unwrap();
        assert!(
            (cv - spread / base).abs() < 1e-12,
            "{cv} vs {}",
            spread / base
        );
        // A constant series has no variation; scaling does not change the CV.
        assert!(coefficient_of_variation(&[base; 10]).unwrap() < 1e-15);
        let r = random_series(9, 500);
        let scaled: Vec<f64> = r.iter().map(|v| v * 7.5).collect();
        let (a, b) = (
            coefficient_of_variation(&r).unwrap(),
            coefficient_of_variation(&scaled).unwrap(),
        );
        assert!((a - b).abs() < 1e-12 && a > 0.0);
    }

    #[test]
    fn histogram_counts_every_sample_in_range() {
        let s = random_series(11, 777);
        let (lo, hi) = (0.5, 4.5);
        let h = histogram(&s, lo, hi, 20);
        assert_eq!(h.len(), 20);
        let inside = s.iter().filter(|v| (lo..=hi).contains(*v)).count();
        assert_eq!(h.iter().sum::<usize>(), inside);
        // The bin of the repeated value 1.25 holds at least its copies.
        let bin = ((1.25 - lo) / ((hi - lo) / 20.0)) as usize;
        assert!(h[bin] >= s.iter().filter(|v| **v == 1.25).count());
        assert_eq!(histogram(&[2.0, 2.0], 2.0, 2.0, 4), vec![2, 0, 0, 0]);
        assert_eq!(add(&[1.0, 2.0], &[0.5, 0.25]).unwrap(), vec![1.5, 2.25]);
        assert!(add(&[1.0], &[]).is_none());
    }
}
