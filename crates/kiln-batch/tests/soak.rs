//! Soak: many threads (blocking `infer`/`try_submit`) and async tasks (`submit().await`), with
//! priorities, timeouts, cancellation and overload, then exact accounting: every accepted
//! request answered exactly once, with its own outputs.
//!
//! Size: `KILN_SOAK_REQUESTS`, default 1,000,000 (about 10 s in a debug build on 2 shared
//! cores, 224 callers in flight against a queue of 160, so some are rejected as full).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{trivial, trivial_request};
use kiln_batch::{BatchError, Executor, ResponseFuture, TimeoutAction};

#[derive(Default)]
struct Tally {
    submitted: AtomicU64,
    accepted: AtomicU64,
    rejected_full: AtomicU64,
    ok: AtomicU64,
    timed_out: AtomicU64,
    dropped: AtomicU64,
}

struct Check {
    tally: Tally,
    /// Per request id: how many answers it got.
    answers: Vec<AtomicU8>,
}

impl Check {
    fn request(&self, id: u64) -> kiln_batch::Request {
        let rows = 1 + (id % 4) as usize;
        let mut r = trivial_request(id as f32, rows).with_priority((id % 3) as usize);
        if id.is_multiple_of(97) {
            r = r.with_timeout(Duration::from_micros(50), TimeoutAction::Reject);
        } else if id.is_multiple_of(89) {
            r = r.with_timeout(Duration::from_micros(50), TimeoutAction::Delay);
        }
        r
    }

    fn answer(&self, id: u64, outcome: Result<kiln_batch::Response, BatchError>) {
        let before = self.answers[id as usize].fetch_add(1, Ordering::Relaxed);
        assert_eq!(before, 0, "request {id} answered twice");
        match outcome {
            Ok(r) => {
                let y = r.outputs[0].as_slice::<f32>().unwrap();
                assert_eq!(y.len(), 1 + (id % 4) as usize, "request {id}: wrong rows");
                assert!(
                    y.iter().all(|&v| v == 2.0 * id as f32 + 1.0),
                    "request {id} got another request's outputs: {y:?}"
                );
                self.tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(BatchError::TimedOut { .. }) => {
                assert_eq!(id % 97, 0, "request {id} timed out without a timeout");
                self.tally.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("request {id}: unexpected error {e}"),
        }
    }

    /// Submits `id`; returns the future when accepted (rejections are tallied here).
    fn submit(&self, ex: &Executor, id: u64) -> Option<ResponseFuture> {
        self.tally.submitted.fetch_add(1, Ordering::Relaxed);
        match ex.try_submit(self.request(id)) {
            Ok(f) => {
                self.tally.accepted.fetch_add(1, Ordering::Relaxed);
                Some(f)
            }
            Err(BatchError::QueueFull { .. }) => {
                self.tally.rejected_full.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => panic!("request {id}: unexpected rejection {e}"),
        }
    }

    fn settle(&self, id: u64, f: ResponseFuture) {
        if id.is_multiple_of(53) {
            self.tally.dropped.fetch_add(1, Ordering::Relaxed);
            drop(f);
        } else {
            self.answer(id, f.wait());
        }
    }
}

#[test]
fn soak_exact_accounting() {
    let total: u64 = std::env::var("KILN_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let threads = 6u64;
    let tasks = 32u64;
    let ex = Arc::new(
        Executor::builder(trivial())
            .max_batch(64)
            .max_queue_delay(Duration::from_micros(200))
            .preferred_batch_sizes([32, 64])
            .instances_per_gpu(2)
            .priority_levels(3)
            .queue_capacity(160)
            .build()
            .unwrap(),
    );
    let check = Arc::new(Check {
        tally: Tally::default(),
        answers: (0..total).map(|_| AtomicU8::new(0)).collect(),
    });
    let t0 = Instant::now();
    // Ids are dealt round-robin over threads (half of the ids) and tasks (the other half).
    let half = total / 2;
    let mut handles = Vec::new();
    for t in 0..threads {
        let (ex, check) = (ex.clone(), check.clone());
        handles.push(std::thread::spawn(move || {
            // Windows of 32 in flight per thread, settled in order.
            let mut window = std::collections::VecDeque::new();
            let mut id = t;
            while id < half {
                if let Some(f) = check.submit(&ex, id) {
                    window.push_back((id, f));
                }
                if window.len() >= 32 {
                    let (i, f) = window.pop_front().unwrap();
                    check.settle(i, f);
                }
                id += threads;
            }
            for (i, f) in window {
                check.settle(i, f);
            }
        }));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for k in 0..tasks {
            let (ex, check) = (ex.clone(), check.clone());
            set.spawn(async move {
                let mut id = half + k;
                while id < total {
                    match check.submit(&ex, id) {
                        Some(f) if id.is_multiple_of(53) => {
                            check.tally.dropped.fetch_add(1, Ordering::Relaxed);
                            drop(f);
                        }
                        Some(f) => {
                            let outcome = f.await;
                            check.answer(id, outcome);
                        }
                        None => tokio::task::yield_now().await,
                    }
                    id += tasks;
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    for h in handles {
        h.join().unwrap();
    }
    let report = ex.shutdown();
    let elapsed = t0.elapsed();
    let t = &check.tally;
    let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
    let m = &report.metrics;
    eprintln!(
        "soak: {total} requests in {elapsed:.2?} ({:.0}/s submitted); accepted {}, completed {}, \
         timed out {}, cancelled {}, undelivered {}, delayed {}, rejected (queue full) {}; \
         {} batches, mean {:.1} rows; latency p50 {:?} p90 {:?} p99 {:?}",
        total as f64 / elapsed.as_secs_f64(),
        report.accepted,
        report.completed,
        report.timed_out,
        report.cancelled,
        m.undelivered,
        m.delayed,
        m.rejected_queue_full,
        m.batches,
        m.mean_batch_size(),
        m.latency.p50,
        m.latency.p90,
        m.latency.p99,
    );
    eprintln!(
        "callers: submitted {}, accepted {}, rejected {}, ok {}, timed out {}, dropped {}",
        get(&t.submitted),
        get(&t.accepted),
        get(&t.rejected_full),
        get(&t.ok),
        get(&t.timed_out),
        get(&t.dropped)
    );
    // Exact accounting.
    assert_eq!(get(&t.submitted), total);
    assert_eq!(m.submitted, total);
    assert_eq!(get(&t.accepted), report.accepted);
    assert_eq!(get(&t.rejected_full), m.rejected_queue_full);
    assert_eq!(report.rejected, m.rejected_queue_full);
    assert_eq!(report.accepted + report.rejected, total);
    assert_eq!(report.lost, 0);
    assert_eq!(report.failed, 0);
    assert_eq!(
        report.accepted,
        report.completed + report.timed_out + report.failed + report.cancelled
    );
    // What callers received plus what they dropped matches what the executor answered.
    assert_eq!(
        get(&t.ok) + get(&t.timed_out) + m.undelivered,
        report.completed + report.timed_out
    );
    assert_eq!(get(&t.dropped), report.cancelled + m.undelivered);
    // Every accepted request that was not dropped was answered exactly once.
    let answered = check
        .answers
        .iter()
        .filter(|a| a.load(Ordering::Relaxed) == 1)
        .count() as u64;
    assert_eq!(answered, get(&t.accepted) - get(&t.dropped));
    assert!(check.answers.iter().all(|a| a.load(Ordering::Relaxed) <= 1));
    assert!(elapsed < Duration::from_secs(120), "soak took {elapsed:?}");
}
