//! Device memory: the CUDA backend of the caching allocator, owned buffers, and the arena.

use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::{CudaEvent, DriverError, sys::cudaError_enum};

use crate::alloc::{AllocStats, Block, CachingAllocator, RawAllocator, RawError};
use crate::arena::{Arena, Region};
use crate::device::Device;
use crate::error::{CudaError, DriverContext, Result};
use crate::ffi;
use crate::stream::Stream;

/// The thin CUDA implementation of [`RawAllocator`]: cuMemAlloc / cuMemFree, events as fences.
pub struct CudaRaw {
    device: Arc<Device>,
}

impl RawAllocator for CudaRaw {
    type Stream = Stream;
    type Fence = CudaEvent;

    fn stream_id(&self, stream: &Stream) -> u64 {
        stream.id()
    }

    fn alloc(&mut self, bytes: usize) -> Result<u64, RawError> {
        match ffi::device_alloc(self.device.cuda_context(), bytes) {
            Ok(ptr) => Ok(ptr),
            Err(DriverError(cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY)) => {
                Err(RawError::OutOfMemory)
            }
            Err(e) => Err(RawError::Other(CudaError::driver("cuMemAlloc", e))),
        }
    }

    fn free(&mut self, ptr: u64, _bytes: usize) -> Result<()> {
        ffi::device_free(self.device.cuda_context(), ptr).op("cuMemFree")
    }

    fn device_free_bytes(&self) -> usize {
        self.device.memory_info().map(|(free, _)| free).unwrap_or(0)
    }

    fn record(&mut self, stream: &Stream) -> Result<CudaEvent> {
        stream.cuda_stream().record_event(None).op("cuEventRecord")
    }

    fn is_done(&self, fence: &CudaEvent) -> bool {
        fence.try_is_complete().unwrap_or(false)
    }

    fn wait(&self, fence: &CudaEvent) -> Result<()> {
        fence.synchronize().op("cuEventSynchronize")
    }
}

/// A caching, stream-ordered device allocator shared by buffers (cheap to clone).
#[derive(Clone)]
pub struct DeviceAllocator {
    inner: Arc<Mutex<CachingAllocator<CudaRaw>>>,
    device: Arc<Device>,
}

impl std::fmt::Debug for DeviceAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAllocator")
            .field("device", &self.device.info().index)
            .field("stats", &self.stats())
            .finish()
    }
}

impl DeviceAllocator {
    /// A pool on `device` without a limit.
    pub fn new(device: &Arc<Device>) -> DeviceAllocator {
        Self::build(device, None)
    }

    /// A pool that never reserves more than `bytes`.
    pub fn with_limit(device: &Arc<Device>, bytes: usize) -> DeviceAllocator {
        Self::build(device, Some(bytes))
    }

    fn build(device: &Arc<Device>, limit: Option<usize>) -> DeviceAllocator {
        let mut pool = CachingAllocator::new(CudaRaw {
            device: device.clone(),
        });
        if let Some(bytes) = limit {
            pool = pool.with_limit(bytes);
        }
        DeviceAllocator {
            inner: Arc::new(Mutex::new(pool)),
            device: device.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CachingAllocator<CudaRaw>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of at least `bytes`, for use on `stream` (uninitialised contents).
    pub fn alloc(&self, bytes: usize, stream: &Arc<Stream>) -> Result<DeviceBuffer> {
        let block = self.lock().alloc(bytes, stream)?;
        Ok(DeviceBuffer {
            block,
            len: bytes,
            stream: stream.clone(),
            pool: self.inner.clone(),
        })
    }

    /// Counters of the pool.
    pub fn stats(&self) -> AllocStats {
        self.lock().stats()
    }

    /// Returns cached blocks to the driver.
    pub fn release_cached(&self) -> Result<()> {
        self.lock().release_cached()
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }
}

/// Device memory: an address and a length. Implemented by buffers and arena views.
pub trait DeviceMemory {
    /// Device address of the first byte.
    fn device_ptr(&self) -> u64;
    /// Length in bytes.
    fn byte_len(&self) -> usize;
}

/// An owned device buffer from a [`DeviceAllocator`]. On drop it goes back to the pool, freed
/// in the order of its stream (see [`DeviceBuffer::set_stream`]).
pub struct DeviceBuffer {
    block: Block,
    len: usize,
    stream: Arc<Stream>,
    pool: Arc<Mutex<CachingAllocator<CudaRaw>>>,
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer({:#x}, {} bytes)", self.block.ptr, self.len)
    }
}

impl DeviceBuffer {
    /// The stream whose order governs this buffer's release.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Declares that the buffer's last use is on `stream` (call it when handing the buffer to
    /// another stream, after ordering that stream behind the old one with an event).
    pub fn set_stream(&mut self, stream: &Arc<Stream>) {
        self.stream = stream.clone();
    }

    /// Bytes of the underlying block (size class), at least [`DeviceMemory::byte_len`].
    pub fn capacity(&self) -> usize {
        self.block.size
    }

    /// A view of `len` bytes at `offset`; errors when it does not fit.
    pub fn view(&self, offset: usize, len: usize) -> Result<DeviceView<'_>> {
        DeviceView::within(self.block.ptr, self.len, offset, len)
    }

    /// Fills the buffer with `value` bytes on its stream.
    pub fn fill(&mut self, value: u8) -> Result<()> {
        ffi::memset_async(self.stream.cuda_stream(), self.block.ptr, value, self.len)
            .op("cuMemsetD8Async")
    }
}

impl DeviceMemory for DeviceBuffer {
    fn device_ptr(&self) -> u64 {
        self.block.ptr
    }
    fn byte_len(&self) -> usize {
        self.len
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = pool.free(self.block, &self.stream) {
            tracing::warn!("returning a device buffer failed: {e}");
        }
    }
}

/// One device allocation per execution context, carved into aligned regions.
#[derive(Debug)]
pub struct DeviceArena {
    buffer: DeviceBuffer,
    arena: Arena,
}

/// A borrowed range of device memory (part of a buffer or an arena region), valid while its
/// owner is borrowed.
#[derive(Debug, Clone, Copy)]
pub struct DeviceView<'a> {
    ptr: u64,
    len: usize,
    _owner: std::marker::PhantomData<&'a ()>,
}

impl DeviceView<'_> {
    fn within(ptr: u64, total: usize, offset: usize, len: usize) -> Result<Self> {
        match offset.checked_add(len) {
            Some(end) if end <= total => Ok(DeviceView {
                ptr: ptr + offset as u64,
                len,
                _owner: std::marker::PhantomData,
            }),
            _ => Err(CudaError::Invalid(format!(
                "range {offset}..+{len} outside device memory of {total} bytes"
            ))),
        }
    }
}

impl DeviceMemory for DeviceView<'_> {
    fn device_ptr(&self) -> u64 {
        self.ptr
    }
    fn byte_len(&self) -> usize {
        self.len
    }
}

impl DeviceArena {
    /// Allocates `capacity` bytes from `alloc` for use on `stream`.
    pub fn new(alloc: &DeviceAllocator, capacity: usize, stream: &Arc<Stream>) -> Result<Self> {
        Ok(DeviceArena {
            buffer: alloc.alloc(capacity, stream)?,
            arena: Arena::new(capacity),
        })
    }

    /// Places `len` bytes at the next aligned offset.
    pub fn alloc(&mut self, len: usize) -> Result<Region> {
        self.arena.alloc(len)
    }

    /// Forgets all regions.
    pub fn reset(&mut self) {
        self.arena.reset();
    }

    /// A view of `region`; errors when it lies outside the arena.
    pub fn view(&self, region: Region) -> Result<DeviceView<'_>> {
        DeviceView::within(
            self.buffer.device_ptr(),
            self.arena.capacity(),
            region.offset,
            region.len,
        )
    }

    /// The bookkeeping.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }
}
