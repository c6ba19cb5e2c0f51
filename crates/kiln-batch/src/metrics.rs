//! Aggregate metrics: outcome counters, the batch-size histogram, throughput, and latency
//! percentiles (hdrhistogram), as a struct and in Prometheus text format (prometheus-client).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram as PromHistogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::request::RequestMetrics;

/// Percentiles of one latency (recorded in microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

/// Everything counted so far. Once the executor has drained (after shutdown),
/// `accepted == completed + timed_out + failed + cancelled`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Calls of submit / infer.
    pub submitted: u64,
    /// Requests taken into the queue.
    pub accepted: u64,
    /// Rejected at submission because the queue was full.
    pub rejected_queue_full: u64,
    /// Rejected at submission because the executor was shutting down.
    pub rejected_shutting_down: u64,
    /// Rejected at submission as not fitting the engine (or above max_batch).
    pub rejected_invalid: u64,
    /// Accepted and answered with outputs.
    pub completed: u64,
    /// Accepted and answered with a timeout (action `Reject`).
    pub timed_out: u64,
    /// Accepted and answered with an error of the backend or the pipeline.
    pub failed: u64,
    /// Accepted, then cancelled by the caller before running (never ran).
    pub cancelled: u64,
    /// Answers whose caller had dropped its future (counted in completed, failed or timed_out
    /// too). A dropped future is either `cancelled` (it never ran) or counted here.
    pub undelivered: u64,
    /// Accepted requests that ran after timing out (action `Delay`).
    pub delayed: u64,
    /// Requests waiting now.
    pub queue_depth: u64,
    /// Rows computed only to fill a CUDA-graph batch size (GPU path; their outputs are
    /// dropped). `padded_rows / (rows + padded_rows)` is the GPU work spent on padding.
    pub padded_rows: u64,
    pub batches: u64,
    /// `batch_sizes[rows]`: how many batches had that many rows.
    pub batch_sizes: Vec<u64>,
    pub elapsed: Duration,
    /// Completed requests per second since the executor started.
    pub throughput: f64,
    /// Acceptance to answer.
    pub latency: Percentiles,
    pub queue_time: Percentiles,
    pub compute_time: Percentiles,
}

impl MetricsSnapshot {
    /// Accepted requests not answered yet (in the queue or running).
    pub fn in_flight(&self) -> u64 {
        self.accepted - (self.completed + self.timed_out + self.failed + self.cancelled)
    }

    /// Mean rows per batch.
    pub fn mean_batch_size(&self) -> f64 {
        let rows: u64 = self
            .batch_sizes
            .iter()
            .enumerate()
            .map(|(r, &n)| r as u64 * n)
            .sum();
        if self.batches == 0 {
            0.0
        } else {
            rows as f64 / self.batches as f64
        }
    }
}

struct Hists {
    latency: Histogram<u64>,
    queue: Histogram<u64>,
    compute: Histogram<u64>,
    batch_sizes: Vec<u64>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub submitted: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected_queue_full: AtomicU64,
    pub rejected_shutting_down: AtomicU64,
    pub rejected_invalid: AtomicU64,
    pub completed: AtomicU64,
    pub timed_out: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub undelivered: AtomicU64,
    pub delayed: AtomicU64,
    pub batches: AtomicU64,
    pub padded_rows: AtomicU64,
}

pub(crate) struct Metrics {
    pub counters: Counters,
    start: Instant,
    hists: Mutex<Hists>,
    batch_hist: PromHistogram,
}

/// Largest latency the histograms hold exactly: an hour, in microseconds (longer ones count
/// as an hour).
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram of microseconds from 1 µs to [`MAX_MICROS`] at 3 significant figures. Bounded:
/// an auto-resizing one (`Histogram::new`) starts with a range up to 2, and
/// `saturating_record` clamps rather than grows, so every latency read 2 µs.
fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("1..=MAX_MICROS at 3 figures is valid")
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let us = |v: u64| Duration::from_micros(v);
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: us(h.value_at_quantile(0.5)),
        p90: us(h.value_at_quantile(0.9)),
        p99: us(h.value_at_quantile(0.99)),
        max: us(h.max()),
        mean: Duration::from_secs_f64(h.mean() / 1e6),
    }
}

impl Metrics {
    pub fn new(max_batch: usize) -> Metrics {
        let buckets = (usize::BITS - max_batch.leading_zeros()) as u16 + 1;
        Metrics {
            counters: Counters::default(),
            start: Instant::now(),
            hists: Mutex::new(Hists {
                latency: hist(),
                queue: hist(),
                compute: hist(),
                batch_sizes: vec![0; max_batch + 1],
            }),
            batch_hist: PromHistogram::new(exponential_buckets(1.0, 2.0, buckets)),
        }
    }

    /// Records one batch and the requests answered from it.
    pub fn record_batch<'a>(
        &self,
        rows: usize,
        requests: impl Iterator<Item = &'a RequestMetrics>,
    ) {
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_hist.observe(rows as f64);
        let mut h = self.hists.lock();
        if h.batch_sizes.len() <= rows {
            h.batch_sizes.resize(rows + 1, 0);
        }
        h.batch_sizes[rows] += 1;
        for m in requests {
            h.queue.saturating_record(micros(m.queue_time));
            h.compute.saturating_record(micros(m.compute_time));
            h.latency
                .saturating_record(micros(m.queue_time + m.compute_time));
        }
    }

    pub fn snapshot(&self, queue_depth: usize) -> MetricsSnapshot {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let elapsed = self.start.elapsed();
        let h = self.hists.lock();
        let completed = get(&c.completed);
        MetricsSnapshot {
            submitted: get(&c.submitted),
            accepted: get(&c.accepted),
            rejected_queue_full: get(&c.rejected_queue_full),
            rejected_shutting_down: get(&c.rejected_shutting_down),
            rejected_invalid: get(&c.rejected_invalid),
            completed,
            timed_out: get(&c.timed_out),
            failed: get(&c.failed),
            cancelled: get(&c.cancelled),
            undelivered: get(&c.undelivered),
            delayed: get(&c.delayed),
            queue_depth: queue_depth as u64,
            padded_rows: get(&c.padded_rows),
            batches: get(&c.batches),
            batch_sizes: h.batch_sizes.clone(),
            elapsed,
            throughput: completed as f64 / elapsed.as_secs_f64().max(1e-9),
            latency: percentiles(&h.latency),
            queue_time: percentiles(&h.queue),
            compute_time: percentiles(&h.compute),
        }
    }

    /// The snapshot in Prometheus text exposition format.
    pub fn prometheus_text(&self, s: &MetricsSnapshot) -> String {
        type Labels = Vec<(String, String)>;
        let mut reg = Registry::with_prefix("kiln_batch");
        let requests = Family::<Labels, Counter>::default();
        for (outcome, n) in [
            ("completed", s.completed),
            ("timed_out", s.timed_out),
            ("failed", s.failed),
            ("cancelled", s.cancelled),
            ("rejected_queue_full", s.rejected_queue_full),
            ("rejected_shutting_down", s.rejected_shutting_down),
            ("rejected_invalid", s.rejected_invalid),
        ] {
            requests
                .get_or_create(&vec![("outcome".into(), outcome.into())])
                .inc_by(n);
        }
        reg.register("requests", "Requests by outcome", requests);
        let accepted = Counter::<u64>::default();
        accepted.inc_by(s.accepted);
        reg.register("accepted", "Requests accepted into the queue", accepted);
        let batches = Counter::<u64>::default();
        batches.inc_by(s.batches);
        reg.register("batches", "Batches run", batches);
        let padded = Counter::<u64>::default();
        padded.inc_by(s.padded_rows);
        reg.register(
            "padded_rows",
            "Rows computed only to fill a CUDA-graph batch size",
            padded,
        );
        reg.register("batch_size", "Rows per batch", self.batch_hist.clone());
        let depth = Gauge::<i64>::default();
        depth.set(s.queue_depth as i64);
        reg.register("queue_depth", "Requests waiting", depth);
        let tput = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        tput.set(s.throughput);
        reg.register(
            "throughput_requests_per_second",
            "Completed requests per second since start",
            tput,
        );
        let lat = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (kind, p) in [
            ("end_to_end", &s.latency),
            ("queue", &s.queue_time),
            ("compute", &s.compute_time),
        ] {
            for (q, v) in [("0.5", p.p50), ("0.9", p.p90), ("0.99", p.p99)] {
                lat.get_or_create(&vec![
                    ("kind".into(), kind.into()),
                    ("quantile".into(), q.into()),
                ])
                .set(v.as_secs_f64());
            }
        }
        reg.register(
            "latency_seconds",
            "Latency percentiles (hdrhistogram) by kind",
            lat,
        );
        let mut out = String::new();
        encode(&mut out, &reg).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod hist_tests {
    use super::*;

    #[test]
    fn latencies_keep_their_values() {
        let mut h = hist();
        for us in [40_000u64, 2_000, 2_000, 150, 7_200_000_000] {
            h.saturating_record(us);
        }
        let p = percentiles(&h);
        assert_eq!(p.count, 5);
        // 3 significant figures: within 0.1 %
        let near = |d: Duration, us: u64| (d.as_micros() as f64 / us as f64 - 1.0).abs() < 1e-3;
        assert!(near(p.p50, 2_000), "{p:?}");
        assert!(near(p.max, MAX_MICROS), "{p:?}");
        assert!(p.p90 >= Duration::from_millis(39), "{p:?}");
    }
}
