//! The executor: accepts requests into the bounded queue, forms batches on the instances'
//! threads, runs them, answers each request exactly once (in acceptance order when asked),
//! and drains on shutdown.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use kiln_core::Engine;
use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::oneshot;

use crate::config::{Builder, Config, DeviceEngine, config_error};
use crate::error::BatchError;
use crate::instance::{Instance, InstanceOptions};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::queue::{Decision, Pending, Policy, Queue};
use crate::request::{Outcome, Request, RequestMetrics, Responder, Response, ResponseFuture};
use crate::slo::{self, SloPlan};
use crate::tensor::Layout;

struct State {
    queue: Queue,
    closing: bool,
    next_seq: u64,
}

/// Answers held back until every earlier request is answered (preserve_ordering).
struct Reorder {
    next: u64,
    held: BTreeMap<u64, Option<(Responder, Outcome)>>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    reorder: Option<Mutex<Reorder>>,
    pub(crate) metrics: Metrics,
    /// Requests accepted so far (an idle worker polls it before it sleeps).
    arrivals: AtomicU64,
    policy: Policy,
    config: Config,
    layout: Layout,
}

/// What shutdown reports: the final counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownReport {
    pub accepted: u64,
    pub completed: u64,
    pub timed_out: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub rejected: u64,
    /// Accepted requests left unanswered: always 0 (kept to make the guarantee checkable).
    pub lost: u64,
    pub metrics: MetricsSnapshot,
}

/// The dynamic batching executor over one engine per device.
pub struct Executor {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    slo_plan: Option<SloPlan>,
    report: Mutex<Option<ShutdownReport>>,
}

impl Executor {
    /// A builder over `engine`, its instances on the host path (see [`Builder::devices`] for
    /// GPUs).
    pub fn builder(engine: Arc<dyn Engine>) -> Builder {
        Builder::new(engine)
    }

    pub(crate) fn start(mut config: Config) -> Result<Executor, BatchError> {
        config.validate()?;
        let layout = Layout::of(config.devices[0].engine.as_ref(), config.max_batch)?;
        for d in &config.devices[1..] {
            if Layout::of(d.engine.as_ref(), config.max_batch)? != layout {
                return Err(config_error(format!(
                    "the engine of {:?} has other inputs or outputs than the first device's",
                    d.placement
                )));
            }
        }
        let graph_sizes = config.graph_sizes();
        let opts = InstanceOptions {
            layout: &layout,
            max_batch: config.max_batch,
            cuda_graphs: config.cuda_graphs,
            graph_batch_sizes: &graph_sizes,
            warmup: config.warmup,
            staging_threads: config.staging_threads,
        };
        let mut instances = Vec::new();
        for dev in &config.devices {
            for _ in 0..config.instances_per_device {
                instances.push(Instance::new(instances.len(), dev, &opts)?);
            }
        }
        let mut policy = Policy {
            cap: config.max_batch,
            delay: config.max_queue_delay,
            preferred: {
                let mut p = config.preferred_batch_sizes.clone();
                p.sort_unstable();
                p.dedup();
                p
            },
        };
        let slo_plan = match &config.slo {
            None => None,
            Some(s) => {
                let mut sizes = slo::candidate_sizes(config.max_batch, &policy.preferred);
                sizes.dedup();
                let measured = slo::measure(&mut instances[0], &layout, &sizes, s)?;
                let plan = slo::plan(&measured, s.target, instances.len());
                tracing::info!(?plan, "SLO plan");
                policy = Policy {
                    cap: plan.batch_size,
                    delay: plan.queue_delay,
                    preferred: vec![plan.batch_size],
                };
                config.max_queue_delay = plan.queue_delay;
                config.preferred_batch_sizes = vec![plan.batch_size];
                Some(plan)
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Queue::new(config.priority_levels),
                closing: false,
                next_seq: 0,
            }),
            wake: Condvar::new(),
            reorder: config.preserve_ordering.then(|| {
                Mutex::new(Reorder {
                    next: 0,
                    held: BTreeMap::new(),
                })
            }),
            metrics: Metrics::new(config.max_batch),
            arrivals: AtomicU64::new(0),
            policy,
            layout,
            config,
        });
        let mut workers = Vec::new();
        for inst in instances {
            let shared = shared.clone();
            let name = format!("kiln-batch-{}", inst.id);
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker(shared, inst))
                .map_err(|e| config_error(format!("cannot start an instance thread: {e}")))?;
            workers.push(handle);
        }
        Ok(Executor {
            shared,
            workers: Mutex::new(workers),
            slo_plan,
            report: Mutex::new(None),
        })
    }

    /// The settings in force (after SLO planning).
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The SLO plan, in SLO mode.
    pub fn slo_plan(&self) -> Option<&SloPlan> {
        self.slo_plan.as_ref()
    }

    /// Submits a request; `Err` when it is rejected at once (queue full, shutting down, not
    /// fitting the engine). The request is then accepted: it will be answered exactly once.
    pub fn try_submit(&self, request: Request) -> Result<ResponseFuture, BatchError> {
        let sh = &self.shared;
        let c = &sh.metrics.counters;
        c.submitted.fetch_add(1, Ordering::Relaxed);
        let cfg = &sh.config;
        let priority = request.priority.unwrap_or(cfg.default_priority);
        if priority >= cfg.priority_levels {
            c.rejected_invalid.fetch_add(1, Ordering::Relaxed);
            return Err(BatchError::InvalidRequest {
                reason: format!(
                    "priority {priority} is not below the executor's {} levels",
                    cfg.priority_levels
                ),
            });
        }
        let (inputs, rows) = sh
            .layout
            .check(request.inputs, cfg.max_batch)
            .inspect_err(|_| {
                c.rejected_invalid.fetch_add(1, Ordering::Relaxed);
            })?;
        let timeout = request.timeout.or(cfg.default_timeout);
        let action = request.timeout_action.unwrap_or(cfg.default_timeout_action);
        let (tx, rx) = oneshot::channel();
        let mut st = sh.state.lock();
        if st.closing {
            c.rejected_shutting_down.fetch_add(1, Ordering::Relaxed);
            return Err(BatchError::ShuttingDown);
        }
        if st.queue.len() >= cfg.queue_capacity {
            c.rejected_queue_full.fetch_add(1, Ordering::Relaxed);
            return Err(BatchError::QueueFull {
                capacity: cfg.queue_capacity,
            });
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.queue.push(Pending {
            seq,
            inputs,
            rows,
            priority,
            enqueued: Instant::now(),
            timeout,
            action,
            delayed: false,
            tx,
        });
        c.accepted.fetch_add(1, Ordering::Relaxed);
        sh.arrivals.fetch_add(1, Ordering::Release);
        drop(st);
        sh.wake.notify_one();
        Ok(ResponseFuture::waiting(rx, seq, sh))
    }

    /// Submits a request; the future resolves to its outputs or to why not (a rejection at
    /// submission resolves at once). Dropping the future cancels the request.
    pub fn submit(&self, request: Request) -> ResponseFuture {
        match self.try_submit(request) {
            Ok(f) => f,
            Err(e) => ResponseFuture::ready(Err(e)),
        }
    }

    /// Submits and blocks until the answer (not from inside an async runtime).
    pub fn infer(&self, request: Request) -> Result<Response, BatchError> {
        self.try_submit(request)?.wait()
    }

    /// The metrics so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        let depth = self.shared.state.lock().queue.len();
        self.shared.metrics.snapshot(depth)
    }

    /// The metrics in Prometheus text exposition format.
    pub fn prometheus_text(&self) -> String {
        let s = self.metrics();
        self.shared.metrics.prometheus_text(&s)
    }

    /// Stops accepting, runs everything accepted (delays are not waited for), joins the
    /// instances and reports the counts. Later calls return the same report.
    pub fn shutdown(&self) -> ShutdownReport {
        let mut report = self.report.lock();
        if let Some(r) = report.as_ref() {
            return r.clone();
        }
        self.shared.state.lock().closing = true;
        self.shared.wake.notify_all();
        for w in self.workers.lock().drain(..) {
            if w.join().is_err() {
                tracing::error!("an instance thread panicked outside a batch");
            }
        }
        // Anything still queued (only if every instance died) is answered, never lost.
        let left: Vec<Pending> = {
            let mut st = self.shared.state.lock();
            let mut left = Vec::new();
            loop {
                let policy = Policy {
                    cap: usize::MAX,
                    ..self.shared.policy.clone()
                };
                match st.queue.decide(Instant::now(), &policy, true) {
                    (Decision::Dispatch(b), c) => {
                        left.extend(b);
                        left.extend(c);
                    }
                    (_, c) => {
                        left.extend(c);
                        break;
                    }
                }
            }
            left
        };
        for p in left {
            let e = BatchError::Internal {
                message: "no instance was left to run the request".into(),
            };
            self.shared.deliver(p.seq, p.tx, Err(e));
        }
        let m = self.metrics();
        let answered = m.completed + m.timed_out + m.failed + m.cancelled;
        let r = ShutdownReport {
            accepted: m.accepted,
            completed: m.completed,
            timed_out: m.timed_out,
            failed: m.failed,
            cancelled: m.cancelled,
            rejected: m.rejected_queue_full + m.rejected_shutting_down + m.rejected_invalid,
            lost: m.accepted.saturating_sub(answered),
            metrics: m,
        };
        tracing::info!(
            accepted = r.accepted,
            completed = r.completed,
            timed_out = r.timed_out,
            failed = r.failed,
            cancelled = r.cancelled,
            rejected = r.rejected,
            "kiln-batch executor shut down"
        );
        *report = Some(r.clone());
        r
    }

    /// The device engines the executor runs.
    pub fn devices(&self) -> &[DeviceEngine] {
        &self.shared.config.devices
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    /// Cancellation from a dropped future: a request still queued is removed and never runs.
    pub(crate) fn cancel(&self, seq: u64) {
        let removed = self.state.lock().queue.remove(seq);
        if let Some(p) = removed {
            self.cancelled(p);
        }
    }

    /// An answer that reached its future after the caller had stopped waiting.
    pub(crate) fn discarded(&self) {
        self.metrics
            .counters
            .undelivered
            .fetch_add(1, Ordering::Relaxed);
    }

    fn cancelled(&self, p: Pending) {
        self.metrics
            .counters
            .cancelled
            .fetch_add(1, Ordering::Relaxed);
        self.release(p.seq, None);
    }

    /// Answers one accepted request (exactly once: the responder is consumed).
    fn deliver(&self, seq: u64, tx: Responder, outcome: Outcome) {
        let c = &self.metrics.counters;
        match &outcome {
            Ok(_) => c.completed.fetch_add(1, Ordering::Relaxed),
            Err(BatchError::TimedOut { .. }) => c.timed_out.fetch_add(1, Ordering::Relaxed),
            Err(_) => c.failed.fetch_add(1, Ordering::Relaxed),
        };
        self.release(seq, Some((tx, outcome)));
    }

    fn release(&self, seq: u64, answer: Option<(Responder, Outcome)>) {
        let send = |(tx, outcome): (Responder, Outcome)| {
            if tx.send(outcome).is_err() {
                self.metrics
                    .counters
                    .undelivered
                    .fetch_add(1, Ordering::Relaxed);
            }
        };
        let Some(reorder) = &self.reorder else {
            answer.map(send);
            return;
        };
        let mut r = reorder.lock();
        r.held.insert(seq, answer);
        loop {
            let next = r.next;
            let Some(a) = r.held.remove(&next) else { break };
            r.next += 1;
            if let Some(a) = a {
                send(a);
            }
        }
    }

    fn timed_out(&self, p: Pending, now: Instant) {
        let waited = now - p.enqueued;
        let timeout = p.timeout.unwrap_or_default();
        self.deliver(p.seq, p.tx, Err(BatchError::TimedOut { waited, timeout }));
    }
}

/// An instance's thread: form a batch, run it, answer it; until shutdown drains the queue.
fn worker(shared: Arc<Shared>, mut inst: Instance) {
    let spin = shared.config.idle_spin;
    loop {
        // Once per idle period the worker polls for new requests for `idle_spin` before it
        // sleeps: a request arriving then costs no thread wake-up.
        let mut spun = spin.is_zero();
        let batch = {
            let mut st = shared.state.lock();
            loop {
                let now = Instant::now();
                for p in st.queue.expire(now) {
                    shared.timed_out(p, now);
                }
                let closing = st.closing;
                let (decision, cancelled) = st.queue.decide(now, &shared.policy, closing);
                for p in cancelled {
                    shared.cancelled(p);
                }
                match decision {
                    Decision::Dispatch(b) => {
                        if !st.queue.is_empty() {
                            shared.wake.notify_one();
                        }
                        break b;
                    }
                    Decision::Empty if closing => return,
                    Decision::Empty => match st.queue.next_deadline() {
                        Some(t) => {
                            shared.wake.wait_until(&mut st, t);
                        }
                        None if !spun => {
                            spun = true;
                            let seen = shared.arrivals.load(Ordering::Acquire);
                            MutexGuard::unlocked(&mut st, || {
                                let t0 = Instant::now();
                                while shared.arrivals.load(Ordering::Acquire) == seen
                                    && t0.elapsed() < spin
                                {
                                    std::hint::spin_loop();
                                }
                            });
                        }
                        None => shared.wake.wait(&mut st),
                    },
                    Decision::Wait(until) => {
                        let t = st.queue.next_deadline().map_or(until, |d| d.min(until));
                        shared.wake.wait_until(&mut st, t);
                    }
                }
            }
        };
        run_batch(&shared, &mut inst, batch);
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn run_batch(shared: &Shared, inst: &mut Instance, batch: Vec<Pending>) {
    let start = Instant::now();
    let rows: Vec<usize> = batch.iter().map(|p| p.rows).collect();
    let total: usize = rows.iter().sum();
    let mut meta = Vec::with_capacity(batch.len());
    let mut parts = Vec::with_capacity(batch.len());
    for p in batch {
        meta.push((p.seq, p.tx, p.enqueued, p.delayed));
        parts.push(p.inputs);
    }
    let padded_before = inst.padded_rows();
    let result = catch_unwind(AssertUnwindSafe(|| inst.run(parts, &rows))).unwrap_or_else(|p| {
        Err(BatchError::InstancePanicked {
            instance: inst.id,
            message: panic_message(p.as_ref()),
        })
    });
    let compute_time = start.elapsed();
    let padded = inst.padded_rows().saturating_sub(padded_before);
    if padded > 0 {
        shared
            .metrics
            .counters
            .padded_rows
            .fetch_add(padded, Ordering::Relaxed);
    }
    let n = meta.len();
    let metrics: Vec<RequestMetrics> = meta
        .iter()
        .map(|&(_, _, enqueued, delayed)| RequestMetrics {
            queue_time: start.saturating_duration_since(enqueued),
            compute_time,
            batch_size: total,
            batch_requests: n,
            instance: inst.id,
            delayed,
        })
        .collect();
    let delayed = metrics.iter().filter(|m| m.delayed).count() as u64;
    if delayed > 0 {
        shared
            .metrics
            .counters
            .delayed
            .fetch_add(delayed, Ordering::Relaxed);
    }
    match result {
        Ok(outputs) if outputs.len() == n => {
            shared.metrics.record_batch(total, metrics.iter());
            for (((seq, tx, _, _), outputs), m) in meta.into_iter().zip(outputs).zip(metrics) {
                shared.deliver(
                    seq,
                    tx,
                    Ok(Response {
                        outputs,
                        metrics: m,
                    }),
                );
            }
        }
        other => {
            let e = match other {
                Err(e) => e,
                Ok(_) => BatchError::Internal {
                    message: "the batch returned outputs for another number of requests".into(),
                },
            };
            tracing::warn!(instance = inst.id, rows = total, "batch failed: {e}");
            shared.metrics.record_batch(total, std::iter::empty());
            for (seq, tx, _, _) in meta {
                shared.deliver(seq, tx, Err(e.clone()));
            }
        }
    }
}
