//! The executor's configuration and its builder (Triton's dynamic-batcher vocabulary).

use std::sync::Arc;
use std::time::Duration;

use kiln_core::Engine;

use crate::error::BatchError;
use crate::executor::Executor;

/// What happens to a request that waits in the queue past its timeout (Triton's
/// `timeout_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeoutAction {
    /// Answer it at once with [`BatchError::TimedOut`].
    #[default]
    Reject,
    /// Keep it, but behind every request that has not timed out: it runs when nothing else
    /// waits.
    Delay,
}

/// Where an engine's instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Host memory: the instances call `execute_host` (the CPU backend, or any backend
    /// without device I/O).
    Host,
    /// GPU `ordinal`: when the engine's contexts support device I/O, the instances run the
    /// pinned-staging / copy-stream / compute-stream pipeline; otherwise `execute_host`.
    Gpu(usize),
}

/// One device and the engine built for it.
#[derive(Clone)]
pub struct DeviceEngine {
    pub placement: Placement,
    pub engine: Arc<dyn Engine>,
}

impl std::fmt::Debug for DeviceEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({} engine)", self.placement, self.engine.backend())
    }
}

impl DeviceEngine {
    /// An engine whose instances run on the host path.
    pub fn host(engine: Arc<dyn Engine>) -> DeviceEngine {
        DeviceEngine {
            placement: Placement::Host,
            engine,
        }
    }

    /// An engine built for GPU `ordinal`.
    pub fn gpu(ordinal: usize, engine: Arc<dyn Engine>) -> DeviceEngine {
        DeviceEngine {
            placement: Placement::Gpu(ordinal),
            engine,
        }
    }
}

/// SLO mode: a latency target the executor plans batch size and queue delay for.
#[derive(Debug, Clone, PartialEq)]
pub struct SloConfig {
    /// The end-to-end latency target (queue wait plus compute) for every request.
    pub target: Duration,
    /// Runs per batch size when measuring the engine (the median is used).
    pub runs_per_size: usize,
    /// The non-batch dims of each input (engine order) used to measure, where the engine's
    /// dims are symbolic; `None` takes the engine's known dims.
    pub sample_dims: Option<Vec<Vec<usize>>>,
}

impl SloConfig {
    /// A target with the default measurement (5 runs per size, the engine's known dims).
    pub fn new(target: Duration) -> SloConfig {
        SloConfig {
            target,
            runs_per_size: 5,
            sample_dims: None,
        }
    }
}

/// The executor's settings (see [`Builder`] for each).
#[derive(Debug, Clone)]
pub struct Config {
    pub max_batch: usize,
    pub max_queue_delay: Duration,
    pub preferred_batch_sizes: Vec<usize>,
    pub instances_per_device: usize,
    pub devices: Vec<DeviceEngine>,
    pub queue_capacity: usize,
    pub default_timeout: Option<Duration>,
    pub default_timeout_action: TimeoutAction,
    pub priority_levels: usize,
    pub default_priority: usize,
    pub preserve_ordering: bool,
    pub slo: Option<SloConfig>,
    pub cuda_graphs: bool,
    /// As given (empty: the default set, see [`Builder::graph_batch_sizes`]).
    pub graph_batch_sizes: Vec<usize>,
    pub warmup: bool,
    pub staging_threads: usize,
    pub idle_spin: Duration,
}

/// Builds an [`Executor`]; see each method for its default.
pub struct Builder {
    pub(crate) config: Config,
}

impl Builder {
    pub(crate) fn new(engine: Arc<dyn Engine>) -> Builder {
        Builder {
            config: Config {
                max_batch: 8,
                max_queue_delay: Duration::from_micros(100),
                preferred_batch_sizes: Vec::new(),
                instances_per_device: 1,
                devices: vec![DeviceEngine::host(engine)],
                queue_capacity: 1024,
                default_timeout: None,
                default_timeout_action: TimeoutAction::Reject,
                priority_levels: 1,
                default_priority: 0,
                preserve_ordering: false,
                slo: None,
                cuda_graphs: true,
                graph_batch_sizes: Vec::new(),
                warmup: true,
                staging_threads: 4,
                idle_spin: Duration::from_micros(50),
            },
        }
    }

    /// The largest batch (sum of the requests' batch dims) one run takes (default 8).
    /// Requests of any batch size from 1 to this are accepted.
    pub fn max_batch(mut self, n: usize) -> Builder {
        self.config.max_batch = n;
        self
    }

    /// How long the oldest request of a forming batch may wait for more before the batch goes
    /// out anyway (default 100 µs; zero sends whatever is queued at once).
    pub fn max_queue_delay(mut self, d: Duration) -> Builder {
        self.config.max_queue_delay = d;
        self
    }

    /// Batch sizes to prefer: a batch that reaches one goes out without waiting for the delay,
    /// and a full queue is cut at the largest one it can form (default none).
    pub fn preferred_batch_sizes(mut self, sizes: impl Into<Vec<usize>>) -> Builder {
        self.config.preferred_batch_sizes = sizes.into();
        self
    }

    /// Execution contexts (each on its own thread, and on GPUs its own streams) per device
    /// (default 1).
    pub fn instances_per_gpu(mut self, n: usize) -> Builder {
        self.config.instances_per_device = n;
        self
    }

    /// The devices and the engine built for each (replaces the builder's engine on the host).
    /// Use [`DeviceEngine::gpu`] for every GPU of the host.
    pub fn devices(mut self, devices: impl Into<Vec<DeviceEngine>>) -> Builder {
        self.config.devices = devices.into();
        self
    }

    /// How many accepted requests may wait; past it `submit` rejects at once with
    /// [`BatchError::QueueFull`] (default 1024).
    pub fn queue_capacity(mut self, n: usize) -> Builder {
        self.config.queue_capacity = n;
        self
    }

    /// The queue timeout of requests that set none, and what happens past it (default none).
    pub fn default_timeout(mut self, timeout: Duration, action: TimeoutAction) -> Builder {
        self.config.default_timeout = Some(timeout);
        self.config.default_timeout_action = action;
        self
    }

    /// Priority levels, 0 the highest (default 1); requests that set none get
    /// [`Builder::default_priority`].
    pub fn priority_levels(mut self, n: usize) -> Builder {
        self.config.priority_levels = n;
        self
    }

    /// The priority of requests that set none (default 0).
    pub fn default_priority(mut self, p: usize) -> Builder {
        self.config.default_priority = p;
        self
    }

    /// Answer requests in the order they were accepted, whatever order batches finish in
    /// (default off).
    pub fn preserve_ordering(mut self, on: bool) -> Builder {
        self.config.preserve_ordering = on;
        self
    }

    /// SLO mode: measure the engine's latency per batch size at build and choose the batch size
    /// and queue delay that maximise throughput under the target (they replace
    /// `preferred_batch_sizes` and `max_queue_delay`; `max_batch` stays the largest request
    /// accepted). See [`crate::slo`].
    pub fn slo(mut self, slo: SloConfig) -> Builder {
        self.config.slo = Some(slo);
        self
    }

    /// CUDA-graph replay on GPU instances whose backend supports it (default on; kiln-engine
    /// does). Each instance then runs a batch at the smallest graph batch size that holds it
    /// (see [`Builder::graph_batch_sizes`]), so a handful of captured graphs serve every
    /// batch and a run costs one launch on the host instead of one call per layer. Off: each
    /// batch runs at its own size, step by step. The padding rows cost GPU time, not host
    /// time; models whose rows depend on each other (anything mixing across the batch dim)
    /// must turn this off or list every size they accept.
    pub fn cuda_graphs(mut self, on: bool) -> Builder {
        self.config.cuda_graphs = on;
        self
    }

    /// The batch sizes GPU batches run at with CUDA graphs (each within 1..=max_batch;
    /// max_batch is always added). Default: powers of two below max_batch, the preferred batch
    /// sizes and max_batch (for max_batch 64: 1, 2, 4, 8, 16, 32, 64; at most 2x the rows of
    /// a batch are computed). List every size from 1 to max_batch for no padding at all (one
    /// graph each).
    pub fn graph_batch_sizes(mut self, sizes: impl Into<Vec<usize>>) -> Builder {
        self.config.graph_batch_sizes = sizes.into();
        self
    }

    /// Whether `build` runs every graph batch size on each GPU instance before returning
    /// (largest first: specialisation, staging, arena and graph capture happen there, not on
    /// the first requests). Default on; engines with symbolic non-batch dims skip it.
    pub fn warmup(mut self, on: bool) -> Builder {
        self.config.warmup = on;
        self
    }

    /// Threads (the instance's own included) that copy one large batch (4 MiB and more) into
    /// pinned staging memory on the GPU path (default 4). One thread copies about 10 GB/s: a
    /// batch of 64 ResNet-50 images (38.5 MB of f32) would take it ~4 ms, twice what the
    /// engine needs to run the batch on an H100.
    pub fn staging_threads(mut self, n: usize) -> Builder {
        self.config.staging_threads = n;
        self
    }

    /// How long an idle instance polls the queue before it sleeps (default 50 µs; zero never
    /// polls). A request arriving within it is picked up without a thread wake-up, which on
    /// an idle (virtual) CPU costs tens of µs; the price is up to this much CPU time per idle
    /// period per instance.
    pub fn idle_spin(mut self, d: Duration) -> Builder {
        self.config.idle_spin = d;
        self
    }

    /// Checks the configuration against the engines, creates every instance and starts them.
    pub fn build(self) -> Result<Executor, BatchError> {
        Executor::start(self.config)
    }
}

pub(crate) fn config_error(reason: impl Into<String>) -> BatchError {
    BatchError::Config {
        reason: reason.into(),
    }
}

impl Config {
    /// Checks what can be checked without the engines.
    pub(crate) fn validate(&self) -> Result<(), BatchError> {
        if self.max_batch == 0 {
            return Err(config_error("max_batch must be at least 1"));
        }
        if self.instances_per_device == 0 {
            return Err(config_error("instances_per_gpu must be at least 1"));
        }
        if self.devices.is_empty() {
            return Err(config_error("devices must name at least one device"));
        }
        if self.staging_threads == 0 {
            return Err(config_error("staging_threads must be at least 1"));
        }
        if self.queue_capacity == 0 {
            return Err(config_error("queue_capacity must be at least 1"));
        }
        if self.priority_levels == 0 {
            return Err(config_error("priority_levels must be at least 1"));
        }
        if self.default_priority >= self.priority_levels {
            return Err(config_error(format!(
                "default_priority {} is not below priority_levels {}",
                self.default_priority, self.priority_levels
            )));
        }
        if let Some(&p) = self
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p == 0 || p > self.max_batch)
        {
            return Err(config_error(format!(
                "preferred batch size {p} is not within 1..={}",
                self.max_batch
            )));
        }
        if let Some(&g) = self
            .graph_batch_sizes
            .iter()
            .find(|&&g| g == 0 || g > self.max_batch)
        {
            return Err(config_error(format!(
                "graph batch size {g} is not within 1..={}",
                self.max_batch
            )));
        }
        Ok(())
    }

    /// The sizes GPU batches run at with CUDA graphs, ascending; the last is max_batch.
    pub fn graph_sizes(&self) -> Vec<usize> {
        let mut s: Vec<usize> = if self.graph_batch_sizes.is_empty() {
            std::iter::successors(Some(1usize), |b| b.checked_mul(2))
                .take_while(|&b| b < self.max_batch)
                .chain(self.preferred_batch_sizes.iter().copied())
                .collect()
        } else {
            self.graph_batch_sizes.clone()
        };
        s.push(self.max_batch);
        s.retain(|&b| (1..=self.max_batch).contains(&b));
        s.sort_unstable();
        s.dedup();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_batch: usize, preferred: &[usize], graphs: &[usize]) -> Config {
        let engine: Arc<dyn Engine> = Arc::new(NoEngine);
        let mut c = Builder::new(engine).config;
        c.max_batch = max_batch;
        c.preferred_batch_sizes = preferred.to_vec();
        c.graph_batch_sizes = graphs.to_vec();
        c
    }

    struct NoEngine;
    impl Engine for NoEngine {
        fn backend(&self) -> &str {
            "none"
        }
        fn inputs(&self) -> &[kiln_core::TensorSpec] {
            &[]
        }
        fn outputs(&self) -> &[kiln_core::TensorSpec] {
            &[]
        }
        fn profiles(&self) -> &[kiln_core::OptimizationProfile] {
            &[]
        }
        fn device_memory_size(
            &self,
            _: &[(&str, &[usize])],
        ) -> Result<usize, kiln_core::BackendError> {
            Ok(0)
        }
        fn create_context(
            self: Arc<Self>,
        ) -> Result<Box<dyn kiln_core::ExecutionContext>, kiln_core::BackendError> {
            Err(kiln_core::BackendError::Unsupported {
                backend: "none".into(),
                what: "contexts".into(),
            })
        }
    }

    #[test]
    fn default_graph_sizes_are_powers_of_two_preferred_and_max() {
        assert_eq!(config(64, &[], &[]).graph_sizes(), [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(
            config(48, &[12], &[]).graph_sizes(),
            [1, 2, 4, 8, 12, 16, 32, 48]
        );
        assert_eq!(config(1, &[], &[]).graph_sizes(), [1]);
        // Given sizes replace the default set; max_batch is always there.
        assert_eq!(config(64, &[], &[16, 8, 16]).graph_sizes(), [8, 16, 64]);
    }

    #[test]
    fn graph_sizes_outside_the_batch_range_are_refused() {
        for bad in [0, 65] {
            let e = config(64, &[], &[8, bad]).validate().unwrap_err();
            assert!(
                e.to_string().contains(&format!("graph batch size {bad}")),
                "{e}"
            );
        }
        assert!(config(64, &[], &[1, 64]).validate().is_ok());
    }
}
