//! Streams and a pool of them by priority.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cudarc::driver::{CudaStream, result};

use crate::device::Device;
use crate::error::{CudaError, DriverContext, Result};
use crate::event::Event;
use crate::ffi;

/// Scheduling priority of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    Low,
    Normal,
    High,
}

/// A non-blocking CUDA stream on a device.
#[derive(Debug)]
pub struct Stream {
    inner: Arc<CudaStream>,
    device: Arc<Device>,
    priority: i32,
}

impl Stream {
    /// A new stream of default priority.
    pub fn new(device: &Arc<Device>) -> Result<Arc<Stream>> {
        Self::with_priority(device, Priority::Normal)
    }

    /// A new stream of the given priority (mapped into the device's range).
    pub fn with_priority(device: &Arc<Device>, priority: Priority) -> Result<Arc<Stream>> {
        let ctx = device.cuda_context();
        ctx.bind_to_thread().op("cuCtxSetCurrent")?;
        let (least, greatest) =
            result::stream::get_priority_range().op("cuCtxGetStreamPriorityRange")?;
        let value = match priority {
            Priority::Low => least,
            Priority::Normal => (least + greatest) / 2,
            Priority::High => greatest,
        };
        let inner = ctx
            .new_stream_with_priority(value)
            .op("cuStreamCreateWithPriority")?;
        Ok(Arc::new(Stream {
            inner,
            device: device.clone(),
            priority: value,
        }))
    }

    /// Stable identity (the stream handle).
    pub fn id(&self) -> u64 {
        self.inner.cu_stream() as usize as u64
    }

    /// Numeric CUDA priority (lower is higher priority).
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// Blocks until the stream's work is done.
    pub fn synchronize(&self) -> Result<()> {
        self.inner.synchronize().op("cuStreamSynchronize")
    }

    /// Makes later work on this stream wait for `event`'s recorded work.
    pub fn wait(&self, event: &Event) -> Result<()> {
        self.inner.wait(event.cuda_event()).op("cuStreamWaitEvent")
    }

    /// Records a new (non-timing) event after the work queued so far.
    pub fn record(&self) -> Result<Event> {
        let e = Event::new(&self.device, false)?;
        e.record(self)?;
        Ok(e)
    }

    /// The cudarc stream, for libraries (cuBLAS, cuDNN) that take it.
    pub fn cuda_stream(&self) -> &Arc<CudaStream> {
        &self.inner
    }
}

/// A stream kiln did not create, known by its raw handle (`CUstream` as an integer, as
/// kiln-core's `StreamHandle` carries it): the stream of a caller, another library or the CUDA
/// runtime. Checked once, at [`ForeignStream::from_raw`], to belong to the device's context;
/// after that, ordering work against kiln's own streams with events is safe.
///
/// The value does not own the stream: it never destroys it.
#[derive(Debug)]
pub struct ForeignStream {
    handle: u64,
    device: Arc<Device>,
}

impl ForeignStream {
    /// Wraps the raw stream `handle` of `device` (0 is the legacy default stream). Fails
    /// (`CudaError::Invalid`) when the driver says the stream belongs to another context, e.g.
    /// another GPU.
    ///
    /// # Safety
    /// `handle` must be 0, `CU_STREAM_LEGACY` (1), `CU_STREAM_PER_THREAD` (2) or a stream
    /// created in this process (driver or runtime API) that is not destroyed while the
    /// returned value is used. The driver cannot check a handle: a destroyed or made-up one is
    /// undefined behaviour, here or in any later call.
    #[allow(unsafe_code)]
    pub unsafe fn from_raw(device: &Arc<Device>, handle: u64) -> Result<ForeignStream> {
        let ctx = device.cuda_context();
        // SAFETY: the caller promised a valid handle.
        let owner = unsafe { ffi::raw_stream_context(ctx, ffi::raw_stream(handle)) }
            .op("cuStreamGetCtx")?;
        if owner != ctx.cu_ctx() {
            return Err(CudaError::Invalid(format!(
                "stream {handle:#x} belongs to another CUDA context than device {} ({}); \
                 pass a stream of that device",
                device.info().index,
                device.info().name
            )));
        }
        Ok(ForeignStream {
            handle,
            device: device.clone(),
        })
    }

    /// The raw handle.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// Captures the work queued on this stream so far into `event` (an event of the same
    /// device).
    #[allow(unsafe_code)]
    pub fn record_into(&self, event: &Event) -> Result<()> {
        // SAFETY: `from_raw` checked the handle's context, and its caller keeps the stream
        // alive while `self` is used.
        unsafe { event.record_on_raw(self.handle) }
    }

    /// Records a new (non-timing) event after the work queued so far.
    pub fn record(&self) -> Result<Event> {
        let e = Event::new(&self.device, false)?;
        self.record_into(&e)?;
        Ok(e)
    }

    /// Makes later work on this stream wait for `event`'s recorded work.
    #[allow(unsafe_code)]
    pub fn wait(&self, event: &Event) -> Result<()> {
        // SAFETY: as in `record_into`.
        unsafe { event.wait_on_raw(self.handle) }
    }

    /// Blocks until the work queued on this stream is done.
    #[allow(unsafe_code)]
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: as in `record_into`; the stream belongs to the device's context.
        unsafe { ffi::synchronize_raw(self.device.cuda_context(), ffi::raw_stream(self.handle)) }
            .op("cuStreamSynchronize")
    }
}

/// A fixed set of streams per priority, handed out round-robin.
#[derive(Debug)]
pub struct StreamPool {
    pools: Vec<(Priority, Vec<Arc<Stream>>, AtomicUsize)>,
}

impl StreamPool {
    /// `per_priority` streams of each priority (at least one).
    pub fn new(device: &Arc<Device>, per_priority: usize) -> Result<StreamPool> {
        let n = per_priority.max(1);
        let mut pools = Vec::new();
        for p in [Priority::Low, Priority::Normal, Priority::High] {
            let streams = (0..n)
                .map(|_| Stream::with_priority(device, p))
                .collect::<Result<Vec<_>>>()?;
            pools.push((p, streams, AtomicUsize::new(0)));
        }
        Ok(StreamPool { pools })
    }

    /// The next stream of `priority`.
    pub fn get(&self, priority: Priority) -> Arc<Stream> {
        let (_, streams, next) = self
            .pools
            .iter()
            .find(|(p, _, _)| *p == priority)
            .unwrap_or(&self.pools[0]);
        let i = next.fetch_add(1, Ordering::Relaxed) % streams.len();
        streams[i].clone()
    }

    /// Blocks until every stream in the pool is idle.
    pub fn synchronize(&self) -> Result<()> {
        for (_, streams, _) in &self.pools {
            for s in streams {
                s.synchronize()?;
            }
        }
        Ok(())
    }
}
