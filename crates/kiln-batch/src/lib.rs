//! `kiln-batch`: a dynamic batching executor over any kiln-core [`Engine`](kiln_core::Engine),
//! with Triton's policies.
//!
//! ```text
//! submit ─► bounded queue (priority levels, delayed lane, deadlines)
//!              │  each idle instance forms a batch: max_queue_delay, preferred sizes, max_batch
//!              ▼
//!         instance threads (N per device, each its own context; on GPUs its own streams)
//!              │  host path: concat ─► execute_host ─► split
//!              │  GPU path: pinned staging ─► H2D (copy stream) ─► enqueue (compute stream)
//!              │            ─► D2H (copy stream) ─► split
//!              ▼
//!         answers (oneshot per request; in acceptance order with preserve_ordering)
//! ```
//!
//! - [`Executor::builder`] sets max_batch, max_queue_delay, preferred_batch_sizes,
//!   instances_per_gpu, devices, queue_capacity, default_timeout (reject or delay),
//!   priority_levels, preserve_ordering and SLO mode ([`SloConfig`], [`slo`]).
//! - [`Executor::submit`] returns a [`ResponseFuture`]; dropping it cancels a request still
//!   queued. [`Executor::infer`] blocks. [`Executor::try_submit`] says at once why a request is
//!   rejected (queue full, shutting down, not fitting the engine).
//! - Requests of any batch size from 1 to max_batch are concatenated along dim 0 (requests with
//!   the same non-batch dims only) and split back.
//! - Every accepted request is answered exactly once: with outputs, a timeout, or the batch's
//!   error; a cancelled one is counted and never runs. [`Executor::shutdown`] stops accepting,
//!   runs everything accepted and reports the counts ([`ShutdownReport`]).
//! - Metrics per request ([`RequestMetrics`]) and aggregate ([`MetricsSnapshot`]: outcome
//!   counters, batch-size histogram, throughput, p50/p90/p99 from hdrhistogram), also in
//!   Prometheus text format ([`Executor::prometheus_text`], through prometheus-client).
//!
//! Timeouts are checked whenever an instance looks at the queue (when idle, at the next
//! deadline; when all are busy, after their current batch).

mod config;
mod error;
mod executor;
mod gpu;
mod instance;
mod metrics;
mod queue;
mod request;
pub mod slo;
mod tensor;

pub use config::{Builder, Config, DeviceEngine, Placement, SloConfig, TimeoutAction};
pub use error::BatchError;
pub use executor::{Executor, ShutdownReport};
pub use metrics::{MetricsSnapshot, Percentiles};
pub use request::{Request, RequestMetrics, Response, ResponseFuture};
pub use slo::SloPlan;
