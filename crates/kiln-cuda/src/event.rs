//! Events: ordering between streams and GPU-side timing.

use std::sync::Arc;

use cudarc::driver::{CudaEvent, sys::CUevent_flags};

use crate::device::Device;
use crate::error::{CudaError, DriverContext, Result};
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

    pub(crate) fn cuda_event(&self) -> &CudaEvent {
        &self.inner
    }
}
