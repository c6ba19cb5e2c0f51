//! Per-model statistics in the shape of the protocol's statistics extension (Triton's
//! `ModelStatistics`): cumulative counts and nanoseconds for success, fail, queue,
//! compute_input (decoding and checking the request), compute_infer (the batch run, shared
//! out among the batch's requests) and compute_output (encoding the answer is done by the
//! transport and not counted), per-batch-size execution counts from kiln-batch's histogram.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_batch::RequestMetrics;
use parking_lot::Mutex;
use serde::Serialize;

/// A count and its cumulative duration.
#[derive(Debug, Default)]
struct Counter {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Counter {
    fn add(&self, d: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
    fn get(&self) -> StatDuration {
        StatDuration {
            count: self.count.load(Ordering::Relaxed),
            ns: self.ns.load(Ordering::Relaxed),
        }
    }
}

/// The live counters of one model version.
#[derive(Debug, Default)]
pub struct ModelStats {
    success: Counter,
    fail: Counter,
    queue: Counter,
    compute_input: Counter,
    compute_infer: Counter,
    inference_count: AtomicU64,
    last_inference_ms: AtomicU64,
    /// Per batch size: the nanoseconds of its runs (each request adds its share).
    batch_ns: Mutex<BTreeMap<usize, f64>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl ModelStats {
    /// A request that was decoded and checked in `input`, answered after `total`, with
    /// `rows` rows and the executor's metrics.
    pub fn success(&self, total: Duration, input: Duration, rows: usize, m: &RequestMetrics) {
        self.success.add(total);
        self.compute_input.add(input);
        self.queue.add(m.queue_time);
        self.compute_infer.add(m.compute_time);
        self.inference_count
            .fetch_add(rows as u64, Ordering::Relaxed);
        self.last_inference_ms.store(now_ms(), Ordering::Relaxed);
        let share = m.compute_time.as_nanos() as f64 / m.batch_requests.max(1) as f64;
        *self.batch_ns.lock().entry(m.batch_size).or_default() += share;
    }

    /// A request that failed after `total`.
    pub fn fail(&self, total: Duration) {
        self.fail.add(total);
        self.last_inference_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The statistics, with execution counts from kiln-batch's batch histogram
    /// (`batch_sizes[rows]` = batches of that many rows).
    pub fn report(&self, name: &str, version: u64, batch_sizes: &[u64]) -> ModelStatistics {
        let ns = self.batch_ns.lock().clone();
        let batch_stats: Vec<BatchStatistics> = batch_sizes
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(size, &n)| {
                let total = ns.get(&size).copied().unwrap_or(0.0);
                BatchStatistics {
                    batch_size: size as u64,
                    compute_input: StatDuration::default(),
                    compute_infer: StatDuration {
                        count: n,
                        ns: total.round() as u64,
                    },
                    compute_output: StatDuration::default(),
                }
            })
            .collect();
        ModelStatistics {
            name: name.to_string(),
            version: version.to_string(),
            last_inference: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: batch_sizes.iter().sum(),
            inference_stats: InferStatistics {
                success: self.success.get(),
                fail: self.fail.get(),
                queue: self.queue.get(),
                compute_input: self.compute_input.get(),
                compute_infer: self.compute_infer.get(),
                compute_output: StatDuration::default(),
                cache_hit: StatDuration::default(),
                cache_miss: StatDuration::default(),
            },
            batch_stats,
        }
    }
}

/// `{"count": N, "ns": T}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatDuration {
    pub count: u64,
    pub ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InferStatistics {
    pub success: StatDuration,
    pub fail: StatDuration,
    pub queue: StatDuration,
    pub compute_input: StatDuration,
    pub compute_infer: StatDuration,
    pub compute_output: StatDuration,
    pub cache_hit: StatDuration,
    pub cache_miss: StatDuration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchStatistics {
    pub batch_size: u64,
    pub compute_input: StatDuration,
    pub compute_infer: StatDuration,
    pub compute_output: StatDuration,
}

/// One model version's statistics, as the HTTP statistics endpoint returns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelStatistics {
    pub name: String,
    pub version: String,
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStatistics,
    pub batch_stats: Vec<BatchStatistics>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_shares_add_up() {
        let s = ModelStats::default();
        let m = |batch_size, batch_requests, us| RequestMetrics {
            queue_time: Duration::from_micros(10),
            compute_time: Duration::from_micros(us),
            batch_size,
            batch_requests,
            instance: 0,
            delayed: false,
        };
        // One batch of 3 rows from two requests (2 + 1 rows) taking 300 µs.
        s.success(
            Duration::from_micros(400),
            Duration::from_micros(5),
            2,
            &m(3, 2, 300),
        );
        s.success(
            Duration::from_micros(420),
            Duration::from_micros(5),
            1,
            &m(3, 2, 300),
        );
        s.fail(Duration::from_micros(50));
        let mut sizes = vec![0; 9];
        sizes[3] = 1;
        let r = s.report("m", 1, &sizes);
        assert_eq!(r.inference_count, 3);
        assert_eq!(r.execution_count, 1);
        assert_eq!(
            r.inference_stats.success,
            StatDuration {
                count: 2,
                ns: 820_000
            }
        );
        assert_eq!(r.inference_stats.fail.count, 1);
        assert_eq!(r.batch_stats.len(), 1);
        assert_eq!(r.batch_stats[0].batch_size, 3);
        assert_eq!(
            r.batch_stats[0].compute_infer,
            StatDuration {
                count: 1,
                ns: 300_000
            }
        );
        assert!(r.last_inference > 0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["inference_stats"]["queue"]["count"], 2);
    }
}
