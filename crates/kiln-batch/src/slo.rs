//! SLO mode (beyond Triton): measure the engine's latency per batch size, then pick the batch
//! size and queue delay that maximise throughput while the worst-case latency stays under the
//! target.
//!
//! The latency model for batch size `b` with compute time `c(b)`: a request may wait up to the
//! queue delay `d` for its batch to form, then for one batch already running on its instance
//! (`c(b)`), then for its own run (`c(b)`): `d + 2·c(b) <= target`. Throughput at saturation
//! is `instances · b / c(b)`. The plan takes the `b` of highest throughput with
//! `2·c(b) <= target` and gives the rest of the target to the delay, capped at `c(b)` (waiting
//! longer than one run adds latency without adding throughput: by then an instance is free).

use std::time::{Duration, Instant};

use crate::config::{SloConfig, config_error};
use crate::error::BatchError;
use crate::instance::Instance;
use crate::tensor::{Layout, synthetic};

/// The chosen operating point and what it was chosen from.
#[derive(Debug, Clone, PartialEq)]
pub struct SloPlan {
    pub target: Duration,
    pub batch_size: usize,
    pub queue_delay: Duration,
    /// `queue_delay + 2·c(batch_size)`.
    pub predicted_worst_latency: Duration,
    /// Requests (rows) per second at saturation.
    pub predicted_throughput: f64,
    /// Whether some batch size meets the target; if not, the plan is batch 1 with no delay.
    pub meets_target: bool,
    /// Median latency measured per batch size.
    pub measured: Vec<(usize, Duration)>,
}

/// Batch sizes to measure: powers of two up to `max_batch`, `max_batch`, and the preferred.
pub(crate) fn candidate_sizes(max_batch: usize, preferred: &[usize]) -> Vec<usize> {
    let mut s: Vec<usize> = std::iter::successors(Some(1usize), |b| b.checked_mul(2))
        .take_while(|&b| b <= max_batch)
        .chain([max_batch])
        .chain(preferred.iter().copied())
        .collect();
    s.sort_unstable();
    s.dedup();
    s
}

/// Times `runs_per_size` runs per batch size through `inst` (the path requests take: on a
/// GPU the staging pipeline, with graphs when on), after one warm-up run, and keeps the
/// medians.
pub(crate) fn measure(
    inst: &mut Instance,
    layout: &Layout,
    sizes: &[usize],
    slo: &SloConfig,
) -> Result<Vec<(usize, Duration)>, BatchError> {
    let rest: Vec<Vec<usize>> = match &slo.sample_dims {
        Some(d) if d.len() == layout.names.len() => d.clone(),
        Some(d) => {
            return Err(config_error(format!(
                "SLO sample_dims gives {} inputs where the engine has {}",
                d.len(),
                layout.names.len()
            )));
        }
        None => layout.known_rest().map_err(|name| {
            config_error(format!(
                "input '{name}' has symbolic non-batch dims; give SloConfig::sample_dims"
            ))
        })?,
    };
    let runs = slo.runs_per_size.max(1);
    let mut out = Vec::with_capacity(sizes.len());
    for &b in sizes {
        let inputs = synthetic(layout, &rest, b)?;
        // Two untimed runs: the first specialises, the second captures a graph where on.
        for _ in 0..2 {
            inst.run(vec![inputs.clone()], &[b])?;
        }
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let parts = vec![inputs.clone()];
            let t = Instant::now();
            inst.run(parts, &[b])?;
            times.push(t.elapsed());
        }
        times.sort_unstable();
        out.push((b, times[times.len() / 2]));
    }
    Ok(out)
}

/// Chooses the operating point from measured latencies (see the module docs).
pub fn plan(measured: &[(usize, Duration)], target: Duration, instances: usize) -> SloPlan {
    let tput = |b: usize, c: Duration| instances as f64 * b as f64 / c.as_secs_f64().max(1e-12);
    let best = measured
        .iter()
        .filter(|(_, c)| *c * 2 <= target)
        .max_by(|a, b| tput(a.0, a.1).total_cmp(&tput(b.0, b.1)));
    match best {
        Some(&(b, c)) => {
            let delay = (target - c * 2).min(c);
            SloPlan {
                target,
                batch_size: b,
                queue_delay: delay,
                predicted_worst_latency: delay + c * 2,
                predicted_throughput: tput(b, c),
                meets_target: true,
                measured: measured.to_vec(),
            }
        }
        None => {
            let c = measured
                .iter()
                .find(|(b, _)| *b == 1)
                .map_or(Duration::ZERO, |m| m.1);
            tracing::warn!(
                ?target,
                "no batch size meets the SLO target; running batch 1 without delay"
            );
            SloPlan {
                target,
                batch_size: 1,
                queue_delay: Duration::ZERO,
                predicted_worst_latency: c * 2,
                predicted_throughput: tput(1, c),
                meets_target: false,
                measured: measured.to_vec(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1e3)
    }

    #[test]
    fn picks_the_fastest_batch_under_the_target() {
        // c(b) = 1 ms + 0.25 ms per row: bigger batches are more efficient.
        let m: Vec<_> = [1, 2, 4, 8, 16, 32]
            .iter()
            .map(|&b| (b, ms(1.0 + 0.25 * b as f64)))
            .collect();
        // 2·c(b) <= 10 ms allows c(b) <= 5 ms: b = 16 (c = 5 ms), no slack left for delay.
        let p = plan(&m, ms(10.0), 2);
        assert_eq!(p.batch_size, 16);
        assert!(p.meets_target);
        assert_eq!(p.queue_delay, Duration::ZERO);
        assert!(p.predicted_worst_latency <= ms(10.0));
        // 2·c(8) = 6 ms under a 7 ms target leaves 1 ms of delay.
        let p = plan(&m, ms(7.0), 1);
        assert_eq!(p.batch_size, 8);
        assert!((p.queue_delay.as_secs_f64() - 1e-3).abs() < 1e-9);
        assert!((p.predicted_throughput - 8.0 / 3e-3).abs() < 1e-6);
        // A huge target still caps the delay at one run.
        let p = plan(&m, ms(1000.0), 1);
        assert_eq!((p.batch_size, p.queue_delay), (32, ms(9.0)));
        // Nothing fits: batch 1, no delay, flagged.
        let p = plan(&m, ms(1.0), 1);
        assert!(!p.meets_target);
        assert_eq!((p.batch_size, p.queue_delay), (1, Duration::ZERO));
    }

    #[test]
    fn candidate_sizes_cover_powers_max_and_preferred() {
        assert_eq!(candidate_sizes(12, &[3]), vec![1, 2, 3, 4, 8, 12]);
        assert_eq!(candidate_sizes(1, &[]), vec![1]);
    }
}
