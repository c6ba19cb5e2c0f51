//! Events: ordering between streams and GPU-side timing.

use std::sync::Arc;

use cudarc::driver::{CudaEvent, sys::CUevent_flags};

use crate::device::Device;
use crate::error::{CudaError, DriverContext, Result};
use crate::ffi;
use crate::stream::Stream;

/// A CUDA event. Timing events can measure [`Event::elapsed_ms`]; others are cheaper.
#[derive(Debug)]
pub struct Event {
    inner: CudaEvent,
    timing: bool,
}

impl Event {
    /// A new event; `timing` enables [`Event::elapsed_ms`].
    pub fn new(device: &Arc<Device>, timing: bool) -> Result<Event> {
        let flags = if timing {
            CUevent_flags::CU_EVENT_DEFAULT
        } else {
            CUevent_flags::CU_EVENT_DISABLE_TIMING
        };
        let inner = device
            .cuda_context()
            .new_event(Some(flags))
            .op("cuEventCreate")?;
        Ok(Event { inner, timing })
    }

    /// Captures the work queued on `stream` so far.
    pub fn record(&self, stream: &Stream) -> Result<()> {
        self.inner.record(stream.cuda_stream()).op("cuEventRecord")
    }

    /// Makes `stream` wait for this event.
    pub fn wait_on(&self, stream: &Stream) -> Result<()> {
        stream.wait(self)
    }

    /// Blocks the host until the recorded work is done.
    pub fn synchronize(&self) -> Result<()> {
        self.inner.synchronize().op("cuEventSynchronize")
    }

    /// Non-blocking completion check.
    pub fn is_done(&self) -> Result<bool> {
        self.inner.try_is_complete().op("cuEventQuery")
    }

    /// Milliseconds of GPU time from `self` to `end` (both timing events, both recorded).
    /// Waits for both.
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32> {
        if !self.timing || !end.timing {
            return Err(CudaError::Invalid(
                "elapsed_ms needs two events created with timing enabled".into(),
            ));
        }
        self.inner.elapsed_ms(&end.inner).op("cuEventElapsedTime")
    }

    /// Captures the work queued so far on a stream kiln did not create, given by its raw
    /// handle (`CUstream` as an integer; 0 is the legacy default stream). Prefer
    /// [`ForeignStream`](crate::ForeignStream), which checks the handle's device once and then
    /// offers this safely.
    ///
    /// # Safety
    /// `stream` must be 0, `CU_STREAM_LEGACY` (1), `CU_STREAM_PER_THREAD` (2) or a live stream
    /// (driver or runtime API) of this event's device context, and stay alive for the call.
    /// The driver does not validate the handle: a destroyed or made-up one is undefined
    /// behaviour, a stream of another context an error.
    #[allow(unsafe_code)]
    pub unsafe fn record_on_raw(&self, stream: u64) -> Result<()> {
        // SAFETY: the caller's contract is `record_on_raw`'s.
        unsafe { ffi::record_on_raw(&self.inner, ffi::raw_stream(stream)) }.op("cuEventRecord")
    }

    /// Makes later work on the raw `stream` wait for this event's recorded work.
    ///
    /// # Safety
    /// As for [`Event::record_on_raw`].
    #[allow(unsafe_code)]
    pub unsafe fn wait_on_raw(&self, stream: u64) -> Result<()> {
        // SAFETY: the caller's contract is `wait_on_raw`'s.
        unsafe { ffi::wait_on_raw(ffi::raw_stream(stream), &self.inner) }.op("cuStreamWaitEvent")
    }

    pub(crate) fn cuda_event(&self) -> &CudaEvent {
        &self.inner
    }
}
