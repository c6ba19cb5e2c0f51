//! One execution instance: a context on its own thread, running batches on the host path
//! (`execute_host`) or, for GPU engines with device I/O, through the [`GpuPipeline`].

use std::sync::Arc;
use std::time::Instant;

use kiln_core::{DataType, Engine, ExecutionContext, HostTensor};

use crate::config::{DeviceEngine, Placement};
use crate::error::BatchError;
use crate::gpu::GpuPipeline;
use crate::tensor::{Layout, concat, split, synthetic};

/// What every instance is made with (from the executor's configuration).
pub(crate) struct InstanceOptions<'a> {
    pub layout: &'a Layout,
    pub max_batch: usize,
    /// CUDA-graph replay on GPU contexts that support it.
    pub cuda_graphs: bool,
    /// The sizes GPU batches run at with graphs on (ascending, the last `max_batch`).
    pub graph_batch_sizes: &'a [usize],
    /// Run every graph batch size at start (largest first), so no request pays for
    /// specialisation, allocation or capture.
    pub warmup: bool,
    /// Threads that copy a large batch into pinned staging (GPU path).
    pub staging_threads: usize,
}

pub(crate) struct Instance {
    pub id: usize,
    ctx: Box<dyn ExecutionContext>,
    gpu: Option<GpuPipeline>,
}

impl Instance {
    /// Creates the context (and on a GPU with device I/O, the pipeline's streams and buffers),
    /// then warms it up when asked.
    pub fn new(
        id: usize,
        dev: &DeviceEngine,
        opts: &InstanceOptions<'_>,
    ) -> Result<Instance, BatchError> {
        let engine: Arc<dyn Engine> = dev.engine.clone();
        let outputs: Vec<(String, DataType)> = engine
            .outputs()
            .iter()
            .map(|o| (o.name.clone(), o.dtype))
            .collect();
        let mut ctx = engine
            .clone()
            .create_context()
            .map_err(|source| BatchError::Backend { batch: 0, source })?;
        let mut graphs = false;
        let gpu = match dev.placement {
            Placement::Gpu(ordinal) if ctx.supports_device_io() => {
                graphs = opts.cuda_graphs && ctx.set_cuda_graphs(true);
                let buckets = if graphs {
                    opts.graph_batch_sizes.to_vec()
                } else {
                    Vec::new()
                };
                Some(GpuPipeline::new(
                    ordinal,
                    outputs,
                    buckets,
                    opts.max_batch,
                    opts.staging_threads,
                )?)
            }
            _ => None,
        };
        let mut inst = Instance { id, ctx, gpu };
        if opts.warmup && inst.gpu.is_some() {
            inst.warm_up(opts, graphs)?;
        }
        tracing::debug!(
            instance = id,
            placement = ?dev.placement,
            device_io = inst.gpu.is_some(),
            cuda_graphs = graphs,
            "instance ready"
        );
        Ok(inst)
    }

    /// Runs each size the GPU pipeline will run at, largest first (the arena and staging are
    /// then sized once): twice with graphs (a run, then its capture), once without. Inputs with
    /// symbolic non-batch dims cannot be made up: those engines warm up on their first
    /// requests instead.
    fn warm_up(&mut self, opts: &InstanceOptions<'_>, graphs: bool) -> Result<(), BatchError> {
        let rest = match opts.layout.known_rest() {
            Ok(rest) => rest,
            Err(input) => {
                tracing::info!(
                    instance = self.id,
                    input,
                    "no warm-up: the input has symbolic non-batch dims"
                );
                return Ok(());
            }
        };
        let sizes: Vec<usize> = if graphs {
            opts.graph_batch_sizes.iter().rev().copied().collect()
        } else {
            vec![opts.max_batch]
        };
        let started = Instant::now();
        for &b in &sizes {
            for _ in 0..if graphs { 2 } else { 1 } {
                let inputs = synthetic(opts.layout, &rest, b)?;
                self.run(vec![inputs], &[b])?;
            }
        }
        if let Some(gpu) = &mut self.gpu {
            gpu.padded_rows = 0;
        }
        tracing::info!(
            instance = self.id,
            sizes = ?sizes,
            cuda_graphs = graphs,
            seconds = started.elapsed().as_secs_f64(),
            "instance warmed up"
        );
        Ok(())
    }

    /// Rows computed only to fill a graph batch size so far (GPU path).
    pub fn padded_rows(&self) -> u64 {
        self.gpu.as_ref().map_or(0, |g| g.padded_rows)
    }

    /// Runs one batch: the requests' inputs (engine order) with their row counts; returns each
    /// request's outputs.
    pub fn run(
        &mut self,
        parts: Vec<Vec<HostTensor>>,
        rows: &[usize],
    ) -> Result<Vec<Vec<HostTensor>>, BatchError> {
        let total: usize = rows.iter().sum();
        match &mut self.gpu {
            Some(gpu) => gpu.run(self.ctx.as_mut(), parts, rows),
            None => {
                let inputs = concat(parts, total);
                let outputs =
                    self.ctx
                        .execute_host(&inputs)
                        .map_err(|source| BatchError::Backend {
                            batch: total,
                            source,
                        })?;
                split(outputs, rows)
            }
        }
    }
}
