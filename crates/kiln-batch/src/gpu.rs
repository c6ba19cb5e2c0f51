//! The GPU path of an instance: pinned staging buffers, H2D on the instance's copy stream,
//! compute on its compute stream (`ExecutionContext::bind` + `enqueue`), D2H back on the copy
//! stream, ordered by events. Each instance has its own pair of streams, so with several
//! instances per GPU one instance's copies overlap another's compute.
//!
//! Only taken when the engine's contexts report `supports_device_io()`; the CPU backend never
//! does, so this path is compiled everywhere but runs only on a GPU engine (kiln-engine).

use std::sync::Arc;

use kiln_core::{DataType, DevicePtr, ExecutionContext, HostTensor, StreamHandle};
use kiln_cuda::{Device, DeviceAllocator, DeviceBuffer, DeviceMemory, PinnedPool, Stream, copy};

use crate::error::BatchError;
use crate::tensor::split;

/// Pinned buffers kept per pool (staging for inputs and outputs of the last batches).
const PINNED_CACHED: usize = 16;

fn gpu_err(device: usize, e: impl std::fmt::Display) -> BatchError {
    BatchError::Gpu {
        device,
        message: e.to_string(),
    }
}

pub(crate) struct GpuPipeline {
    ordinal: usize,
    copy: Arc<Stream>,
    compute: Arc<Stream>,
    alloc: DeviceAllocator,
    pinned: PinnedPool,
    outputs: Vec<(String, DataType)>,
    inputs_dev: Vec<Option<DeviceBuffer>>,
    outputs_dev: Vec<Option<DeviceBuffer>>,
}

impl GpuPipeline {
    pub fn new(
        ordinal: usize,
        outputs: Vec<(String, DataType)>,
    ) -> Result<GpuPipeline, BatchError> {
        let err = |e: kiln_cuda::CudaError| BatchError::Gpu {
            device: ordinal,
            message: e.to_string(),
        };
        let device: Arc<Device> = Device::open(ordinal).map_err(err)?;
        let copy = Stream::new(&device).map_err(err)?;
        let compute = Stream::new(&device).map_err(err)?;
        let n_out = outputs.len();
        Ok(GpuPipeline {
            ordinal,
            alloc: DeviceAllocator::new(&device),
            pinned: PinnedPool::new(&device, PINNED_CACHED),
            copy,
            compute,
            outputs,
            inputs_dev: Vec::new(),
            outputs_dev: (0..n_out).map(|_| None).collect(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> BatchError {
        gpu_err(self.ordinal, e)
    }

    /// A device buffer of at least `bytes` in `slot`, grown when too small.
    fn ensure(
        alloc: &DeviceAllocator,
        slot: &mut Option<DeviceBuffer>,
        bytes: usize,
        stream: &Arc<Stream>,
    ) -> kiln_cuda::Result<()> {
        if slot.as_ref().is_none_or(|b| b.byte_len() < bytes) {
            *slot = None;
            *slot = Some(alloc.alloc(bytes.max(1), stream)?);
        }
        Ok(())
    }

    pub fn run(
        &mut self,
        ctx: &mut dyn ExecutionContext,
        parts: Vec<Vec<HostTensor>>,
        rows: &[usize],
    ) -> Result<Vec<Vec<HostTensor>>, BatchError> {
        let total: usize = rows.iter().sum();
        let backend = |source| BatchError::Backend {
            batch: total,
            source,
        };
        let n_in = parts[0].len();
        if self.inputs_dev.len() < n_in {
            self.inputs_dev.resize_with(n_in, || None);
        }
        // 1. Stage each input in pinned memory (the concatenation happens right there) and
        //    queue its H2D copy on the copy stream.
        let mut staged = Vec::with_capacity(n_in);
        for i in 0..n_in {
            let first = &parts[0][i];
            let bytes: usize = parts.iter().map(|p| p[i].data.len()).sum();
            let mut pin = self.pinned.get(bytes.max(1)).map_err(|e| self.err(e))?;
            {
                let host = pin.write().map_err(|e| self.err(e))?;
                let mut at = 0;
                for p in &parts {
                    let d = &p[i].data;
                    host[at..at + d.len()].copy_from_slice(d);
                    at += d.len();
                }
            }
            Self::ensure(&self.alloc, &mut self.inputs_dev[i], bytes, &self.compute)
                .map_err(|e| self.err(e))?;
            let ordinal = self.ordinal;
            let dbuf = self.inputs_dev[i].as_mut().expect("ensured");
            copy::htod_pinned(&self.copy, &mut pin, 0, dbuf, 0, bytes)
                .map_err(|e| gpu_err(ordinal, e))?;
            let mut dims = first.dims.clone();
            dims[0] = total;
            ctx.set_input_shape(&first.name, &dims).map_err(backend)?;
            ctx.bind(&first.name, DevicePtr(dbuf.device_ptr()))
                .map_err(backend)?;
            staged.push(pin);
        }
        let h2d_done = self.copy.record().map_err(|e| self.err(e))?;
        self.compute.wait(&h2d_done).map_err(|e| self.err(e))?;
        // 2. Bind outputs at the shapes the inputs imply, then enqueue the run.
        let mut out_meta = Vec::with_capacity(self.outputs.len());
        for (k, (name, dtype)) in self.outputs.iter().enumerate() {
            let dims = ctx.output_shape(name).map_err(backend)?;
            let bytes = kiln_core::checked_element_count(&dims)
                .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
                .ok_or_else(|| {
                    self.err(format!("output '{name}' of dims {dims:?} is too large"))
                })?;
            Self::ensure(&self.alloc, &mut self.outputs_dev[k], bytes, &self.compute)
                .map_err(|e| self.err(e))?;
            let ptr = self.outputs_dev[k].as_ref().expect("ensured").device_ptr();
            ctx.bind(name, DevicePtr(ptr)).map_err(backend)?;
            out_meta.push((name.clone(), *dtype, dims, bytes));
        }
        // SAFETY: every input and output is bound to a DeviceBuffer of this pipeline that is at
        // least the tensor's size at the shapes just set (ensured above); the buffers live in
        // `self` and nothing else writes them until the D2H copies below, which the copy stream
        // orders after this run's completion event, have been waited on (`read` below) before
        // `run` returns. `compute` is a live stream of the engine's device (opened by ordinal).
        unsafe { ctx.enqueue(StreamHandle(self.compute.id())) }.map_err(backend)?;
        let done = self.compute.record().map_err(|e| self.err(e))?;
        self.copy.wait(&done).map_err(|e| self.err(e))?;
        // 3. D2H into pinned buffers on the copy stream, then wait and unstage.
        let mut outputs = Vec::with_capacity(out_meta.len());
        let mut pins = Vec::with_capacity(out_meta.len());
        for (k, (_, _, _, bytes)) in out_meta.iter().enumerate() {
            let mut pin = self.pinned.get((*bytes).max(1)).map_err(|e| self.err(e))?;
            let dbuf = self.outputs_dev[k].as_ref().expect("ensured");
            copy::dtoh_pinned(&self.copy, dbuf, 0, &mut pin, 0, *bytes).map_err(|e| self.err(e))?;
            pins.push(pin);
        }
        for ((name, dtype, dims, bytes), mut pin) in out_meta.into_iter().zip(pins) {
            let data = pin.read().map_err(|e| self.err(e))?[..bytes].to_vec();
            outputs.push(HostTensor {
                name,
                dtype,
                dims,
                data,
            });
        }
        drop(staged);
        split(outputs, rows)
    }
}
