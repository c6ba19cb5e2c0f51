//! Copies between host and device on a stream, and the copy/compute overlap helper.
//!
//! Pinned copies are asynchronous (the [`PinnedBuffer`] tracks them). Pageable copies
//! synchronise the stream before returning, so the borrowed slice is free afterwards.

use std::sync::Arc;

use bytemuck::Pod;

use crate::error::{CudaError, DriverContext, Result};
use crate::event::Event;
use crate::ffi;
use crate::memory::{DeviceAllocator, DeviceBuffer, DeviceMemory};
use crate::pinned::PinnedBuffer;
use crate::stream::Stream;

fn check_range(what: &'static str, offset: usize, len: usize, total: usize) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= total => Ok(()),
        _ => Err(CudaError::SizeMismatch {
            what,
            left: offset.saturating_add(len),
            right: total,
        }),
    }
}

/// Async copy of `bytes` from `src[src_off..]` (pinned) to `dst[dst_off..]`.
pub fn htod_pinned(
    stream: &Stream,
    src: &mut PinnedBuffer,
    src_off: usize,
    dst: &mut impl DeviceMemory,
    dst_off: usize,
    bytes: usize,
) -> Result<()> {
    check_range("H2D source (pinned)", src_off, bytes, src.len())?;
    check_range("H2D destination (device)", dst_off, bytes, dst.byte_len())?;
    let dptr = dst.device_ptr() + dst_off as u64;
    src.enqueue(stream, |host| {
        ffi::htod_async(stream.cuda_stream(), dptr, &host[src_off..src_off + bytes])
            .op("cuMemcpyHtoDAsync")
    })
}

/// Async copy of `bytes` from `src[src_off..]` (device) into `dst[dst_off..]` (pinned).
pub fn dtoh_pinned(
    stream: &Stream,
    src: &impl DeviceMemory,
    src_off: usize,
    dst: &mut PinnedBuffer,
    dst_off: usize,
    bytes: usize,
) -> Result<()> {
    check_range("D2H source (device)", src_off, bytes, src.byte_len())?;
    check_range("D2H destination (pinned)", dst_off, bytes, dst.len())?;
    let sptr = src.device_ptr() + src_off as u64;
    dst.enqueue(stream, |host| {
        ffi::dtoh_async(
            stream.cuda_stream(),
            &mut host[dst_off..dst_off + bytes],
            sptr,
        )
        .op("cuMemcpyDtoHAsync")
    })
}

/// Copies a pageable host slice to the start of `dst`; returns once the copy is done.
pub fn htod<T: Pod>(stream: &Stream, src: &[T], dst: &mut impl DeviceMemory) -> Result<()> {
    let bytes: &[u8] = bytemuck::cast_slice(src);
    check_range("H2D destination (device)", 0, bytes.len(), dst.byte_len())?;
    ffi::htod_async(stream.cuda_stream(), dst.device_ptr(), bytes).op("cuMemcpyHtoDAsync")?;
    stream.synchronize()
}

/// Copies the start of `src` into a pageable host slice; returns once the copy is done.
pub fn dtoh<T: Pod>(stream: &Stream, src: &impl DeviceMemory, dst: &mut [T]) -> Result<()> {
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(dst);
    check_range("D2H source (device)", 0, bytes.len(), src.byte_len())?;
    ffi::dtoh_async(stream.cuda_stream(), bytes, src.device_ptr()).op("cuMemcpyDtoHAsync")?;
    stream.synchronize()
}

/// Async device-to-device copy of `bytes`.
pub fn dtod(
    stream: &Stream,
    src: &impl DeviceMemory,
    src_off: usize,
    dst: &mut impl DeviceMemory,
    dst_off: usize,
    bytes: usize,
) -> Result<()> {
    check_range("D2D source", src_off, bytes, src.byte_len())?;
    check_range("D2D destination", dst_off, bytes, dst.byte_len())?;
    ffi::dtod_async(
        stream.cuda_stream(),
        dst.device_ptr() + dst_off as u64,
        src.device_ptr() + src_off as u64,
        bytes,
    )
    .op("cuMemcpyDtoDAsync")
}

/// A chunk of the staged input, handed to the compute callback of [`Overlap::run`].
#[derive(Debug)]
pub struct Chunk<'a> {
    /// Chunk number, from 0.
    pub index: usize,
    /// Byte offset of the chunk in the host array.
    pub offset: usize,
    /// The chunk's bytes on the device (a staging buffer; valid during the callback's work).
    pub data: &'a DeviceBuffer,
    /// Bytes in this chunk (the last one may be short).
    pub len: usize,
}

/// Copy/compute overlap with double buffering: chunk `i+1` goes host→device on the copy stream
/// while the compute stream works on chunk `i`. Events order the two streams: a staging buffer
/// is refilled only after the compute that read it has finished.
pub struct Overlap {
    copy: Arc<Stream>,
    compute: Arc<Stream>,
    chunk_bytes: usize,
    staging: [DeviceBuffer; 2],
    copied: [Event; 2],
    consumed: [Event; 2],
}

impl Overlap {
    /// Two staging buffers of `chunk_bytes` from `alloc`.
    pub fn new(
        alloc: &DeviceAllocator,
        copy: &Arc<Stream>,
        compute: &Arc<Stream>,
        chunk_bytes: usize,
    ) -> Result<Overlap> {
        if chunk_bytes == 0 {
            return Err(CudaError::Invalid("overlap chunk size must be > 0".into()));
        }
        let dev = alloc.device();
        let mut staging = [
            alloc.alloc(chunk_bytes, copy)?,
            alloc.alloc(chunk_bytes, copy)?,
        ];
        for s in &mut staging {
            // Their last user is the compute stream; release them in its order.
            s.set_stream(compute);
        }
        Ok(Overlap {
            copy: copy.clone(),
            compute: compute.clone(),
            chunk_bytes,
            staging,
            copied: [Event::new(dev, false)?, Event::new(dev, false)?],
            consumed: [Event::new(dev, false)?, Event::new(dev, false)?],
        })
    }

    /// Streams `host` to the device chunk by chunk; `compute` enqueues work for each chunk on
    /// the compute stream (it must not block). Returns after all compute work has finished.
    pub fn run(
        &mut self,
        host: &mut PinnedBuffer,
        mut compute: impl FnMut(&Stream, Chunk<'_>) -> Result<()>,
    ) -> Result<()> {
        let total = host.len();
        let chunks = total.div_ceil(self.chunk_bytes);
        // Before the first use of each staging buffer, order the copy stream after the compute
        // stream's earlier work (the buffers may have served an earlier run).
        for e in &self.consumed {
            e.record(&self.compute)?;
        }
        for i in 0..chunks {
            let slot = i % 2;
            let offset = i * self.chunk_bytes;
            let len = self.chunk_bytes.min(total - offset);
            self.copy.wait(&self.consumed[slot])?;
            htod_pinned(&self.copy, host, offset, &mut self.staging[slot], 0, len)?;
            self.copied[slot].record(&self.copy)?;
            self.compute.wait(&self.copied[slot])?;
            compute(
                &self.compute,
                Chunk {
                    index: i,
                    offset,
                    data: &self.staging[slot],
                    len,
                },
            )?;
            self.consumed[slot].record(&self.compute)?;
        }
        self.compute.synchronize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_without_overflow() {
        assert!(check_range("x", 0, 10, 10).is_ok());
        assert!(check_range("x", 1, 10, 10).is_err());
        let err = check_range("x", usize::MAX, 2, 10).unwrap_err();
        assert!(matches!(err, CudaError::SizeMismatch { .. }));
    }
}
