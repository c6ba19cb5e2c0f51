//! The executor's behaviour on the CPU backend: split/concat, each policy, timeouts, ordering,
//! overload, cancellation, shutdown, metrics, SLO mode.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Slow, affine, affine_inputs, trivial, trivial_request};
use kiln_batch::{BatchError, DeviceEngine, Executor, Request, SloConfig, TimeoutAction};
use kiln_core::{Engine, HostTensor};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn value(r: &kiln_batch::Response) -> f32 {
    r.outputs[0].as_slice::<f32>().unwrap()[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_concat_equal_single_runs() {
    let width = 5;
    let engine = affine(width);
    let mut reference = engine.clone().create_context().unwrap();
    let ex = Executor::builder(engine)
        .max_batch(16)
        .max_queue_delay(ms(5))
        .instances_per_gpu(2)
        .queue_capacity(10_000)
        .build()
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut cases = Vec::new();
    for _ in 0..300 {
        let rows = rng.usize(1..=8);
        let inputs = affine_inputs(&mut rng, rows, width);
        let expect = reference.execute_host(&inputs).unwrap();
        // Shuffle the input order: the executor matches by name.
        let mut given = inputs.clone();
        given.reverse();
        cases.push((ex.submit(Request::new(given)), expect, rows));
    }
    let mut shared_batches = 0;
    for (fut, expect, rows) in cases {
        let r = fut.await.unwrap();
        assert_eq!(
            r.outputs, expect,
            "batched result differs from the single run"
        );
        assert_eq!(r.outputs[0].dims, vec![rows, width]);
        assert!(r.metrics.batch_size <= 16 && r.metrics.batch_size >= rows);
        if r.metrics.batch_requests > 1 {
            shared_batches += 1;
        }
    }
    assert!(
        shared_batches > 100,
        "only {shared_batches} requests shared a batch"
    );
    let report = ex.shutdown();
    assert_eq!(
        (report.accepted, report.completed, report.lost),
        (300, 300, 0)
    );
}

#[test]
fn max_queue_delay_gathers_and_zero_delay_does_not_wait() {
    let ex = Executor::builder(trivial())
        .max_batch(8)
        .max_queue_delay(ms(150))
        .build()
        .unwrap();
    let t = Instant::now();
    let futs: Vec<_> = (0..3)
        .map(|i| ex.submit(trivial_request(i as f32, 1)))
        .collect();
    let rs: Vec<_> = futs.into_iter().map(|f| f.wait().unwrap()).collect();
    assert!(
        t.elapsed() >= ms(140),
        "sent before the delay: {:?}",
        t.elapsed()
    );
    assert!(
        rs.iter()
            .all(|r| r.metrics.batch_requests == 3 && r.metrics.batch_size == 3)
    );
    assert_eq!(
        rs.iter().map(value).collect::<Vec<_>>(),
        vec![1.0, 3.0, 5.0]
    );

    let ex = Executor::builder(trivial())
        .max_batch(8)
        .max_queue_delay(Duration::ZERO)
        .build()
        .unwrap();
    let t = Instant::now();
    let r = ex.infer(trivial_request(4.0, 2)).unwrap();
    assert!(t.elapsed() < ms(100));
    assert_eq!(r.metrics.batch_size, 2);
    assert_eq!(&*r.outputs[0].as_slice::<f32>().unwrap(), &[9.0, 9.0]);
}

#[test]
fn full_and_preferred_batches_go_without_waiting_for_the_delay() {
    // A full batch (max_batch rows) goes at once.
    let ex = Executor::builder(trivial())
        .max_batch(4)
        .max_queue_delay(Duration::from_secs(30))
        .build()
        .unwrap();
    let t = Instant::now();
    let futs: Vec<_> = [1, 2, 1]
        .iter()
        .map(|&r| ex.submit(trivial_request(1.0, r)))
        .collect();
    for f in futs {
        assert_eq!(f.wait().unwrap().metrics.batch_size, 4);
    }
    assert!(t.elapsed() < Duration::from_secs(5));

    // A preferred size goes at once; the remainder waits for the delay (or shutdown).
    let ex = Executor::builder(trivial())
        .max_batch(8)
        .max_queue_delay(Duration::from_secs(30))
        .preferred_batch_sizes([3])
        .build()
        .unwrap();
    let t = Instant::now();
    let futs: Vec<_> = (0..3)
        .map(|i| ex.submit(trivial_request(i as f32, 1)))
        .collect();
    for f in futs {
        assert_eq!(f.wait().unwrap().metrics.batch_size, 3);
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    let mut last = ex.submit(trivial_request(7.0, 1));
    std::thread::sleep(ms(50));
    assert!(
        last.try_take().is_none(),
        "a non-preferred batch went before the delay"
    );
    let report = ex.shutdown();
    assert_eq!(value(&last.wait().unwrap()), 15.0);
    assert_eq!((report.completed, report.lost), (4, 0));
    assert_eq!(report.metrics.batch_sizes[3], 1);
    assert_eq!(report.metrics.batch_sizes[1], 1);
}

/// One instance kept busy by a first request, so what follows queues up.
fn busy(base: Duration) -> (Arc<Slow>, Arc<dyn Engine>) {
    let slow = Arc::new(Slow::new(trivial(), base));
    let e: Arc<dyn Engine> = slow.clone();
    (slow, e)
}

fn ran(slow: &Slow) -> Vec<f32> {
    slow.log.lock().iter().map(|r| r[0]).collect()
}

#[test]
fn priorities_run_high_first() {
    let (slow, engine) = busy(ms(30));
    let ex = Executor::builder(engine)
        .max_batch(1)
        .max_queue_delay(Duration::ZERO)
        .priority_levels(3)
        .default_priority(1)
        .build()
        .unwrap();
    let blocker = ex.submit(trivial_request(100.0, 1));
    std::thread::sleep(ms(10));
    let mut futs = Vec::new();
    for i in 0..3 {
        futs.push(ex.submit(trivial_request(20.0 + i as f32, 1).with_priority(2)));
        futs.push(ex.submit(trivial_request(10.0 + i as f32, 1)));
        futs.push(ex.submit(trivial_request(i as f32, 1).with_priority(0)));
    }
    blocker.wait().unwrap();
    for f in futs {
        f.wait().unwrap();
    }
    assert_eq!(
        ran(&slow),
        vec![100.0, 0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 20.0, 21.0, 22.0]
    );
    let e = ex
        .infer(trivial_request(1.0, 1).with_priority(3))
        .unwrap_err();
    assert!(e.to_string().contains("priority 3"), "{e}");
}

#[test]
fn timeouts_reject_or_delay() {
    let (slow, engine) = busy(ms(80));
    let ex = Executor::builder(engine)
        .max_batch(1)
        .max_queue_delay(Duration::ZERO)
        .build()
        .unwrap();
    let blocker = ex.submit(trivial_request(100.0, 1));
    std::thread::sleep(ms(10));
    let rejected = ex.submit(trivial_request(1.0, 1).with_timeout(ms(10), TimeoutAction::Reject));
    let delayed = ex.submit(trivial_request(2.0, 1).with_timeout(ms(10), TimeoutAction::Delay));
    let plain = ex.submit(trivial_request(3.0, 1));
    let generous = ex.submit(
        trivial_request(4.0, 1).with_timeout(Duration::from_secs(60), TimeoutAction::Reject),
    );
    blocker.wait().unwrap();
    match rejected.wait() {
        Err(BatchError::TimedOut { waited, timeout }) => {
            assert_eq!(timeout, ms(10));
            assert!(waited >= ms(10));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(value(&plain.wait().unwrap()), 7.0);
    assert_eq!(value(&generous.wait().unwrap()), 9.0);
    let d = delayed.wait().unwrap();
    assert!(d.metrics.delayed);
    assert_eq!(value(&d), 5.0);
    // The delayed request ran after the ones that had not timed out.
    assert_eq!(ran(&slow), vec![100.0, 3.0, 4.0, 2.0]);
    let r = ex.shutdown();
    assert_eq!((r.accepted, r.completed, r.timed_out, r.lost), (5, 4, 1, 0));
    assert_eq!(r.metrics.delayed, 1);

    // The default timeout applies to requests that set none.
    let (_, engine) = busy(ms(60));
    let ex = Executor::builder(engine)
        .max_batch(1)
        .default_timeout(ms(5), TimeoutAction::Reject)
        .build()
        .unwrap();
    let a = ex.submit(trivial_request(1.0, 1));
    let b = ex.submit(trivial_request(2.0, 1));
    assert!(a.wait().is_ok());
    assert!(matches!(b.wait(), Err(BatchError::TimedOut { .. })));
}

fn ready_prefix_holds(futs: &mut [Option<kiln_batch::ResponseFuture>], done: &mut [bool]) -> bool {
    // Walk from the last: once one is answered, every earlier one must be too (answers are
    // sent in order, so an earlier one checked later has had even more time).
    let mut seen = false;
    let mut ok = true;
    for i in (0..futs.len()).rev() {
        if !done[i]
            && let Some(f) = futs[i].as_mut()
            && let Some(r) = f.try_take()
        {
            r.unwrap();
            done[i] = true;
        }
        if done[i] {
            seen = true;
        } else if seen {
            ok = false;
        }
    }
    ok
}

fn ordering_run(preserve: bool) -> bool {
    let mut slow = Slow::new(trivial(), Duration::ZERO);
    slow.sleep_from_value = true;
    let ex = Executor::builder(Arc::new(slow))
        .max_batch(1)
        .max_queue_delay(Duration::ZERO)
        .instances_per_gpu(4)
        .preserve_ordering(preserve)
        .build()
        .unwrap();
    // Earlier requests sleep longer (value = milliseconds), so they finish later.
    let n = 12;
    let mut futs: Vec<_> = (0..n)
        .map(|i| Some(ex.submit(trivial_request(((n - i) * 8) as f32, 1))))
        .collect();
    let mut done = vec![false; n];
    let mut in_order = true;
    let t = Instant::now();
    while done.iter().any(|d| !d) && t.elapsed() < Duration::from_secs(10) {
        in_order &= ready_prefix_holds(&mut futs, &mut done);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(done.iter().all(|d| *d));
    in_order
}

#[test]
fn preserve_ordering_answers_in_acceptance_order() {
    assert!(ordering_run(true), "answers came out of order");
    // The control: without the option, later (shorter) requests are answered first.
    assert!(
        !ordering_run(false),
        "the ordering test cannot tell the difference"
    );
}

#[test]
fn a_full_queue_rejects_at_once_with_a_reason() {
    let (_, engine) = busy(ms(40));
    let ex = Executor::builder(engine)
        .max_batch(1)
        .max_queue_delay(Duration::ZERO)
        .queue_capacity(4)
        .build()
        .unwrap();
    let blocker = ex.submit(trivial_request(0.0, 1));
    std::thread::sleep(ms(10));
    let mut accepted = Vec::new();
    let mut rejected = 0;
    for i in 0..20 {
        let t = Instant::now();
        match ex.try_submit(trivial_request(i as f32, 1)) {
            Ok(f) => accepted.push(f),
            Err(e) => {
                assert!(t.elapsed() < ms(20), "rejection was not immediate");
                assert_eq!(e, BatchError::QueueFull { capacity: 4 });
                assert!(e.to_string().contains("queue is full"), "{e}");
                assert!(e.is_submit_rejection());
                rejected += 1;
            }
        }
    }
    assert_eq!((accepted.len(), rejected), (4, 16));
    // submit (the future form) resolves at once with the same reason.
    let mut f = ex.submit(trivial_request(1.0, 1));
    assert_eq!(
        f.try_take(),
        Some(Err(BatchError::QueueFull { capacity: 4 }))
    );
    blocker.wait().unwrap();
    for f in accepted {
        f.wait().unwrap();
    }
    let r = ex.shutdown();
    assert_eq!((r.accepted, r.completed, r.rejected, r.lost), (5, 5, 17, 0));
    assert_eq!(r.metrics.rejected_queue_full, 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_future_cancels_the_request() {
    let (slow, engine) = busy(ms(60));
    let ex = Executor::builder(engine)
        .max_batch(1)
        .max_queue_delay(Duration::ZERO)
        .queue_capacity(8)
        .build()
        .unwrap();
    let blocker = ex.submit(trivial_request(100.0, 1));
    tokio::time::sleep(ms(10)).await;
    let mut keep = Vec::new();
    for i in 0..8 {
        let f = ex.submit(trivial_request(i as f32, 1));
        if i % 2 == 0 {
            keep.push(f);
        } else {
            drop(f);
        }
    }
    // An async caller giving up: the timeout drops the future.
    let gave_up = tokio::time::timeout(ms(5), ex.submit(trivial_request(50.0, 1))).await;
    assert!(gave_up.is_err());
    // Cancelled requests free their queue slots at once.
    assert_eq!(ex.metrics().queue_depth, 4);
    blocker.await.unwrap();
    for f in keep {
        f.await.unwrap();
    }
    let r = ex.shutdown();
    assert_eq!(
        (r.accepted, r.completed, r.cancelled, r.lost),
        (10, 5, 5, 0)
    );
    assert_eq!(ran(&slow), vec![100.0, 0.0, 2.0, 4.0, 6.0]);
}

#[test]
fn shutdown_finishes_work_in_flight() {
    let mut slow = Slow::new(trivial(), ms(15));
    slow.per_row = Duration::from_micros(200);
    let ex = Arc::new(
        Executor::builder(Arc::new(slow))
            .max_batch(8)
            .max_queue_delay(Duration::from_secs(30))
            .instances_per_gpu(2)
            .queue_capacity(1000)
            .build()
            .unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let ex = ex.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let v = (t * 100 + i) as f32;
                        let f = ex.submit(trivial_request(v, 1 + i % 3));
                        (v, f)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let futs: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let t = Instant::now();
    let r = ex.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown waited for the delay"
    );
    assert_eq!((r.accepted, r.completed, r.lost), (100, 100, 0));
    for (v, f) in futs {
        let out = f.wait().unwrap();
        assert!(
            out.outputs[0]
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .all(|&y| y == 2.0 * v + 1.0)
        );
    }
    assert_eq!(
        ex.infer(trivial_request(1.0, 1)).unwrap_err(),
        BatchError::ShuttingDown
    );
    assert_eq!(ex.metrics().rejected_shutting_down, 1);
}

#[test]
fn invalid_requests_are_rejected_with_reasons() {
    let ex = Executor::builder(affine(2)).max_batch(4).build().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let good = affine_inputs(&mut rng, 2, 2);
    let check = |inputs: Vec<HostTensor>, needle: &str| {
        let e = ex.infer(Request::new(inputs)).unwrap_err();
        assert!(e.to_string().contains(needle), "'{e}' lacks '{needle}'");
        assert!(e.is_submit_rejection());
    };
    check(good[..1].to_vec(), "1 tensors given");
    let mut renamed = good.clone();
    renamed[0].name = "q".into();
    check(renamed, "no input 'q'");
    let mut twice = good.clone();
    twice[1] = twice[0].clone();
    check(twice, "given twice");
    let mut typed = good.clone();
    typed[0] = HostTensor::from_slice("x", &[2, 2], &[1i32, 2, 3, 4]).unwrap();
    check(typed, "i32");
    check(
        affine_inputs(&mut rng, 5, 2),
        "above the executor's max_batch of 4",
    );
    check(affine_inputs(&mut rng, 2, 3), "[batch, 2]");
    let mut mismatch = good.clone();
    mismatch[1] = affine_inputs(&mut rng, 3, 2).remove(1);
    check(mismatch, "disagree on the batch dim");
    assert_eq!(ex.metrics().rejected_invalid, 7);
    assert!(ex.infer(Request::new(good)).is_ok());
}

#[test]
fn bad_configurations_are_refused() {
    let e = |b: kiln_batch::Builder| b.build().err().unwrap().to_string();
    let t = || Executor::builder(trivial());
    assert!(e(t().max_batch(0)).contains("max_batch"));
    assert!(e(t().max_batch(4).preferred_batch_sizes([8])).contains("preferred batch size 8"));
    assert!(e(t().priority_levels(2).default_priority(2)).contains("default_priority"));
    assert!(e(t().queue_capacity(0)).contains("queue_capacity"));
    assert!(e(t().devices(Vec::new())).contains("at least one device"));
    assert!(
        e(t().devices([DeviceEngine::host(trivial()), DeviceEngine::host(affine(2))]))
            .contains("other inputs")
    );
}

#[test]
fn a_panicking_batch_is_answered_and_the_executor_goes_on() {
    let mut slow = Slow::new(trivial(), Duration::ZERO);
    slow.panic_on = Some(13.0);
    let ex = Executor::builder(Arc::new(slow))
        .max_batch(1)
        .build()
        .unwrap();
    let e = ex.infer(trivial_request(13.0, 1)).unwrap_err();
    assert!(matches!(e, BatchError::InstancePanicked { .. }), "{e}");
    assert_eq!(value(&ex.infer(trivial_request(1.0, 1)).unwrap()), 3.0);
    let r = ex.shutdown();
    assert_eq!((r.completed, r.failed, r.lost), (1, 1, 0));
}

#[test]
fn several_devices_and_instances_share_the_queue() {
    let (slow_a, a) = busy(ms(5));
    let (slow_b, b) = busy(ms(5));
    let ex = Executor::builder(a.clone())
        .devices([DeviceEngine::host(a), DeviceEngine::host(b)])
        .instances_per_gpu(2)
        .max_batch(2)
        .max_queue_delay(Duration::ZERO)
        .queue_capacity(1000)
        .build()
        .unwrap();
    let futs: Vec<_> = (0..80)
        .map(|i| ex.submit(trivial_request(i as f32, 1)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (i, f) in futs.into_iter().enumerate() {
        let r = f.wait().unwrap();
        assert_eq!(value(&r), 2.0 * i as f32 + 1.0);
        seen.insert(r.metrics.instance);
    }
    assert!(seen.len() >= 3, "instances used: {seen:?}");
    assert!(!slow_a.log.lock().is_empty() && !slow_b.log.lock().is_empty());
}

#[test]
fn metrics_as_struct_and_prometheus_text() {
    let ex = Executor::builder(trivial())
        .max_batch(4)
        .max_queue_delay(ms(2))
        .queue_capacity(1000)
        .build()
        .unwrap();
    let futs: Vec<_> = (0..200)
        .map(|i| ex.submit(trivial_request(i as f32, 1 + i % 2)))
        .collect();
    for f in futs {
        let r = f.wait().unwrap();
        assert!(r.metrics.compute_time > Duration::ZERO);
    }
    let m = ex.metrics();
    assert_eq!((m.accepted, m.completed, m.in_flight()), (200, 200, 0));
    assert_eq!(m.latency.count, 200);
    assert!(m.latency.p50 <= m.latency.p90 && m.latency.p90 <= m.latency.p99);
    assert!(m.latency.p99 <= m.latency.max);
    assert!(m.throughput > 0.0);
    let rows: u64 = m
        .batch_sizes
        .iter()
        .enumerate()
        .map(|(r, n)| r as u64 * n)
        .sum();
    assert_eq!(rows, 300);
    assert_eq!(m.batch_sizes.iter().sum::<u64>(), m.batches);
    assert!(m.mean_batch_size() > 1.0);
    let text = ex.prometheus_text();
    for needle in [
        "kiln_batch_requests_total{outcome=\"completed\"} 200",
        "kiln_batch_accepted_total 200",
        "# TYPE kiln_batch_batch_size histogram",
        "kiln_batch_batch_size_count",
        "kiln_batch_latency_seconds{kind=\"end_to_end\",quantile=\"0.99\"}",
        "kiln_batch_throughput_requests_per_second",
        "kiln_batch_queue_depth 0",
        "# EOF",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

#[test]
fn slo_mode_plans_batch_and_delay_from_measured_latency() {
    // c(b) = 2 ms + 0.5 ms per row.
    let mut slow = Slow::new(trivial(), ms(2));
    slow.per_row = Duration::from_micros(500);
    let mut slo = SloConfig::new(ms(24));
    slo.runs_per_size = 3;
    let ex = Executor::builder(Arc::new(slow))
        .max_batch(32)
        .slo(slo)
        .queue_capacity(1000)
        .build()
        .unwrap();
    let plan = ex.slo_plan().unwrap().clone();
    assert!(plan.meets_target, "{plan:?}");
    assert!(plan.predicted_worst_latency <= ms(24));
    // 2·c(b) <= 24 ms wants c(b) <= 12 ms: b = 16 (10 ms) on an idle machine; a loaded one
    // may measure more and pick 8.
    assert!(plan.batch_size == 16 || plan.batch_size == 8, "{plan:?}");
    assert_eq!(plan.measured.len(), 6);
    assert_eq!(ex.config().preferred_batch_sizes, vec![plan.batch_size]);
    assert_eq!(ex.config().max_queue_delay, plan.queue_delay);
    // Requests up to max_batch are still accepted; batches stay at the planned size.
    let futs: Vec<_> = (0..64)
        .map(|i| ex.submit(trivial_request(i as f32, 1)))
        .collect();
    for f in futs {
        assert!(f.wait().unwrap().metrics.batch_size <= plan.batch_size);
    }
    assert_eq!(
        ex.infer(trivial_request(1.0, 32))
            .unwrap()
            .metrics
            .batch_size,
        32
    );
}
