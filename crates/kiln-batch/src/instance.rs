//! One execution instance: a context on its own thread, running batches on the host path
//! (`execute_host`) or, for GPU engines with device I/O, through the [`GpuPipeline`].

use std::sync::Arc;

use kiln_core::{DataType, Engine, ExecutionContext, HostTensor};

use crate::config::{DeviceEngine, Placement};
use crate::error::BatchError;
use crate::gpu::GpuPipeline;
use crate::tensor::{concat, split};

pub(crate) struct Instance {
    pub id: usize,
    ctx: Box<dyn ExecutionContext>,
    gpu: Option<GpuPipeline>,
}

impl Instance {
    /// Creates the context (and on a GPU with device I/O, the pipeline's streams and buffers).
    pub fn new(id: usize, dev: &DeviceEngine) -> Result<Instance, BatchError> {
        let engine: Arc<dyn Engine> = dev.engine.clone();
        let outputs: Vec<(String, DataType)> = engine
            .outputs()
            .iter()
            .map(|o| (o.name.clone(), o.dtype))
            .collect();
        let ctx = engine
            .clone()
            .create_context()
            .map_err(|source| BatchError::Backend { batch: 0, source })?;
        let gpu = match dev.placement {
            Placement::Gpu(ordinal) if ctx.supports_device_io() => {
                Some(GpuPipeline::new(ordinal, outputs)?)
            }
            _ => None,
        };
        tracing::debug!(
            instance = id,
            placement = ?dev.placement,
            device_io = gpu.is_some(),
            "instance ready"
        );
        Ok(Instance { id, ctx, gpu })
    }

    pub fn context(&mut self) -> &mut dyn ExecutionContext {
        self.ctx.as_mut()
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
