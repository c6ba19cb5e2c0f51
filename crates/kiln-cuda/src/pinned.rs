//! Page-locked host memory: buffers that track their in-flight copies, and a pool of them.
//!
//! A pinned buffer can be the source or target of truly asynchronous copies, so the host must
//! not touch it while a copy is in flight. Each [`PinnedBuffer`] remembers an event per queued
//! copy: host access ([`PinnedBuffer::read`], [`PinnedBuffer::write`]) first waits for them, a new
//! copy first makes its stream wait for them, and drop waits too. Typed views go through
//! `bytemuck` (any `Pod` type, including `half::f16` and `half::bf16`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytemuck::Pod;
use cudarc::driver::CudaEvent;

use crate::alloc::size_class;
use crate::device::Device;
use crate::error::{CudaError, DriverContext, Result};
use crate::ffi::HostAlloc;
use crate::stream::Stream;

/// A page-locked host buffer.
pub struct PinnedBuffer {
    alloc: Option<HostAlloc>,
    len: usize,
    pending: Vec<CudaEvent>,
    home: Option<Arc<PoolInner>>,
}

impl std::fmt::Debug for PinnedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PinnedBuffer({} bytes, {} copies pending)",
            self.len,
            self.pending.len()
        )
    }
}

impl PinnedBuffer {
    /// A zeroed page-locked buffer of `len` bytes (not from a pool).
    pub fn new(device: &Arc<Device>, len: usize) -> Result<PinnedBuffer> {
        let alloc = HostAlloc::new(device.cuda_context(), len).op("cuMemHostAlloc")?;
        Ok(PinnedBuffer {
            alloc: Some(alloc),
            len,
            pending: Vec::new(),
            home: None,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Blocks until every copy queued on this buffer has finished.
    pub fn wait(&mut self) -> Result<()> {
        for e in self.pending.drain(..) {
            e.synchronize().op("cuEventSynchronize")?;
        }
        Ok(())
    }

    /// The bytes, after pending copies finish.
    pub fn read(&mut self) -> Result<&[u8]> {
        self.wait()?;
        Ok(self.bytes())
    }

    /// The bytes for writing, after pending copies finish.
    pub fn write(&mut self) -> Result<&mut [u8]> {
        self.wait()?;
        Ok(self.bytes_mut())
    }

    /// Typed view, after pending copies finish.
    pub fn read_as<T: Pod>(&mut self) -> Result<&[T]> {
        cast(self.read()?)
    }

    /// Typed mutable view, after pending copies finish.
    pub fn write_as<T: Pod>(&mut self) -> Result<&mut [T]> {
        cast_mut(self.write()?)
    }

    fn bytes(&self) -> &[u8] {
        match &self.alloc {
            Some(a) => &a.as_slice()[..self.len],
            None => &[],
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        match &mut self.alloc {
            Some(a) => &mut a.as_mut_slice()[..len],
            None => &mut [],
        }
    }

    /// Queues an async copy that touches this buffer on `stream`: the stream first waits for
    /// earlier copies of the buffer, then `f` enqueues the copy on the raw bytes, then an event
    /// marks its end. The host never blocks here.
    pub(crate) fn enqueue(
        &mut self,
        stream: &Stream,
        f: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<()> {
        self.pending.retain(|e| !e.is_complete());
        for e in &self.pending {
            stream.cuda_stream().wait(e).op("cuStreamWaitEvent")?;
        }
        f(self.bytes_mut())?;
        let e = stream
            .cuda_stream()
            .record_event(None)
            .op("cuEventRecord")?;
        self.pending.push(e);
        Ok(())
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        if let Err(e) = self.wait() {
            tracing::warn!("pinned buffer dropped while a copy failed: {e}");
        }
        if let (Some(home), Some(alloc)) = (self.home.take(), self.alloc.take()) {
            home.give_back(alloc);
        }
    }
}

/// Reinterprets bytes as `T`s; errors on a length or alignment mismatch.
pub fn cast<T: Pod>(bytes: &[u8]) -> Result<&[T]> {
    bytemuck::try_cast_slice(bytes).map_err(|e| cast_error::<T>(bytes.len(), e))
}

/// Mutable form of [`cast`].
pub fn cast_mut<T: Pod>(bytes: &mut [u8]) -> Result<&mut [T]> {
    let len = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| cast_error::<T>(len, e))
}

fn cast_error<T>(len: usize, e: bytemuck::PodCastError) -> CudaError {
    CudaError::Invalid(format!(
        "cannot view {len} bytes as {} ({e:?}): the length must be a multiple of {} and the \
         start aligned to {}",
        std::any::type_name::<T>(),
        size_of::<T>(),
        align_of::<T>()
    ))
}

struct PoolInner {
    device: Arc<Device>,
    free: Mutex<BTreeMap<usize, Vec<HostAlloc>>>,
    max_cached: usize,
}

impl PoolInner {
    fn give_back(&self, alloc: HostAlloc) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let cached: usize = free.values().flatten().map(HostAlloc::len).sum();
        if cached + alloc.len() <= self.max_cached {
            free.entry(alloc.len()).or_default().push(alloc);
        }
    }
}

/// A pool of page-locked buffers (pinning is slow: reuse beats re-allocating).
#[derive(Clone)]
pub struct PinnedPool {
    inner: Arc<PoolInner>,
}

impl PinnedPool {
    /// A pool that keeps at most `max_cached` bytes of idle buffers.
    pub fn new(device: &Arc<Device>, max_cached: usize) -> PinnedPool {
        PinnedPool {
            inner: Arc::new(PoolInner {
                device: device.clone(),
                free: Mutex::new(BTreeMap::new()),
                max_cached,
            }),
        }
    }

    /// A buffer of `len` bytes (contents unspecified when reused); returns to the pool on drop.
    pub fn get(&self, len: usize) -> Result<PinnedBuffer> {
        let class = size_class(len).ok_or(CudaError::Invalid(format!(
            "pinned request of {len} bytes is too large"
        )))?;
        let reused = {
            let mut free = self.inner.free.lock().unwrap_or_else(|p| p.into_inner());
            free.get_mut(&class).and_then(Vec::pop)
        };
        let alloc = match reused {
            Some(a) => a,
            None => HostAlloc::new(self.inner.device.cuda_context(), class).op("cuMemHostAlloc")?,
        };
        Ok(PinnedBuffer {
            alloc: Some(alloc),
            len,
            pending: Vec::new(),
            home: Some(self.inner.clone()),
        })
    }

    /// Bytes of idle buffers held.
    pub fn cached_bytes(&self) -> usize {
        let free = self.inner.free.lock().unwrap_or_else(|p| p.into_inner());
        free.values().flatten().map(HostAlloc::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn typed_views() {
        let mut raw = vec![0u32; 4];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut raw);
        let halves: &mut [f16] = cast_mut(bytes).unwrap();
        assert_eq!(halves.len(), 8);
        halves[1] = f16::from_f32(1.5);
        let floats: &[f32] = cast(bytemuck::cast_slice(&raw)).unwrap();
        assert_eq!(floats.len(), 4);
        let odd = &bytemuck::cast_slice::<u32, u8>(&raw)[..6];
        let err = cast::<f32>(odd).unwrap_err();
        assert!(err.to_string().contains("multiple of 4"), "{err}");
    }
}
