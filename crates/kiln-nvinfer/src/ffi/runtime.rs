//! The run-time half of the checked layer: IRuntime, ICudaEngine, IExecutionContext.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::{Handle, Shared, cstring, dims, impl_slot, self_check, text};
use crate::error::{NvInferError, Result};
use crate::sys::{ALLOC_STATIC, Dims64};

/// Checks `getPImpl()` (slot 2 of the V class) returns the public object itself.
fn check_pimpl(sh: &Shared, h: &Handle, slot_name: &str, pimpl: *mut c_void) -> Result<()> {
    self_check(
        sh,
        pimpl == h.ptr(),
        format!(
            "{slot_name} did not return the object it was called on (mImpl at +8 or the table start is wrong)"
        ),
    )
}

pub(crate) struct Runtime {
    pub(crate) h: Arc<Handle>,
}

impl Runtime {
    pub(crate) fn new(sh: &Arc<Shared>) -> Result<Runtime> {
        let create = sh.api.create_runtime();
        // SAFETY: createInferRuntime_INTERNAL(ILogger*, int32) → IRuntime*; the logger
        // outlives the runtime (held in `sh`).
        let p = unsafe { create(sh.logger.as_ptr(), sh.api.api_version()) };
        let h = Handle::new(p, "createInferRuntime", sh)?;
        // SAFETY: getPImpl() → IRuntime*; getLogger() const → ILogger*.
        let (pimpl, logger) = unsafe {
            (
                vcall!(sh, h.ptr(), runtime_get_pimpl, () -> *mut c_void),
                vcall!(sh, h.ptr(), runtime_get_logger, () -> *mut c_void),
            )
        };
        check_pimpl(sh, &h, "IRuntime::getPImpl", pimpl)?;
        self_check(
            sh,
            logger == sh.logger.as_ptr(),
            "IRuntime::getLogger did not return kiln's logger".into(),
        )?;
        Ok(Runtime { h: Arc::new(h) })
    }

    pub(crate) fn deserialize(&self, plan: &[u8]) -> Result<CudaEngine> {
        let sh = &self.h.shared;
        // SAFETY: deserializeCudaEngine(void const*, size_t) → ICudaEngine*; the bytes live
        // across the call (TensorRT copies what it keeps).
        let p = unsafe {
            vcall!(sh, self.h.ptr(), runtime_deserialize, (*const c_void, usize) -> *mut c_void,
                plan.as_ptr().cast(), plan.len())
        };
        let h = Handle::new(p, "IRuntime::deserializeCudaEngine", sh)?;
        // SAFETY: getPImpl() → ICudaEngine*.
        let pimpl = unsafe { vcall!(sh, h.ptr(), engine_get_pimpl, () -> *mut c_void) };
        check_pimpl(sh, &h, "ICudaEngine::getPImpl", pimpl)?;
        Ok(CudaEngine {
            h: Arc::new(h),
            _runtime: self.h.clone(),
        })
    }
}

pub(crate) struct CudaEngine {
    pub(crate) h: Arc<Handle>,
    _runtime: Arc<Handle>,
}

impl CudaEngine {
    fn sh(&self) -> &Shared {
        &self.h.shared
    }

    pub(crate) fn nb_io_tensors(&self) -> Result<i32> {
        // SAFETY: getNbIOTensors() const → int32.
        Ok(unsafe { vcall!(self.sh(), self.h.ptr(), engine_nb_io, () -> i32) })
    }

    pub(crate) fn io_tensor_name(&self, i: i32) -> Result<String> {
        // SAFETY: getIOTensorName(int32) const → char const* owned by the engine.
        let p =
            unsafe { vcall!(self.sh(), self.h.ptr(), engine_io_name, (i32) -> *const c_char, i) };
        if p.is_null() {
            return Err(NvInferError::CallFailed {
                call: "ICudaEngine::getIOTensorName",
                detail: format!("index {i}"),
            });
        }
        // SAFETY: a NUL-terminated string owned by the engine.
        Ok(unsafe { text(p) })
    }

    pub(crate) fn tensor_shape(&self, name: &str) -> Result<Dims64> {
        let c = cstring(name)?;
        // SAFETY: getTensorShape(char const*) const → Dims by value (hidden return pointer).
        Ok(unsafe {
            vcall!(self.sh(), self.h.ptr(), engine_tensor_shape, (*const c_char) -> Dims64, c.as_ptr())
        })
    }

    pub(crate) fn tensor_dtype(&self, name: &str) -> Result<i32> {
        let c = cstring(name)?;
        // SAFETY: getTensorDataType(char const*) const → DataType (int32).
        Ok(unsafe {
            vcall!(self.sh(), self.h.ptr(), engine_tensor_dtype, (*const c_char) -> i32, c.as_ptr())
        })
    }

    pub(crate) fn tensor_io_mode(&self, name: &str) -> Result<i32> {
        let c = cstring(name)?;
        // SAFETY: getTensorIOMode(char const*) const → TensorIOMode (int32).
        Ok(unsafe {
            vcall!(self.sh(), self.h.ptr(), engine_tensor_io_mode, (*const c_char) -> i32, c.as_ptr())
        })
    }

    pub(crate) fn nb_profiles(&self) -> Result<i32> {
        // SAFETY: getNbOptimizationProfiles() const → int32.
        Ok(unsafe { vcall!(self.sh(), self.h.ptr(), engine_nb_profiles, () -> i32) })
    }

    pub(crate) fn profile_shape(&self, name: &str, profile: i32, selector: i32) -> Result<Dims64> {
        let c = cstring(name)?;
        // SAFETY: getProfileShape(char const*, int32, OptProfileSelector) const → Dims.
        Ok(unsafe {
            vcall!(self.sh(), self.h.ptr(), engine_profile_shape, (*const c_char, i32, i32) -> Dims64,
                c.as_ptr(), profile, selector)
        })
    }

    pub(crate) fn device_memory_size(&self) -> Result<i64> {
        // SAFETY: getDeviceMemorySizeV2() const → int64 (10.1+, refused by the slot check).
        Ok(unsafe { vcall!(self.sh(), self.h.ptr(), engine_device_memory_v2, () -> i64) })
    }

    pub(crate) fn create_context(&self) -> Result<ExecContext> {
        let sh = self.sh();
        // SAFETY: createExecutionContext(ExecutionContextAllocationStrategy) →
        // IExecutionContext*.
        let p = unsafe {
            vcall!(sh, self.h.ptr(), engine_create_context, (i32) -> *mut c_void, ALLOC_STATIC)
        };
        let h = Handle::new(p, "ICudaEngine::createExecutionContext", &self.h.shared)?;
        // SAFETY: getPImpl() → IExecutionContext*; getEngine() const → ICudaEngine const&.
        let (pimpl, engine) = unsafe {
            (
                vcall!(sh, h.ptr(), context_get_pimpl, () -> *mut c_void),
                vcall!(sh, h.ptr(), context_get_engine, () -> *mut c_void),
            )
        };
        check_pimpl(sh, &h, "IExecutionContext::getPImpl", pimpl)?;
        self_check(
            sh,
            engine == self.h.ptr(),
            "IExecutionContext::getEngine did not return the engine".into(),
        )?;
        Ok(ExecContext {
            h,
            _engine: self.h.clone(),
            _not_sync: std::marker::PhantomData,
        })
    }
}

/// An execution context; `Send`, not `Sync` (one thread at a time).
pub(crate) struct ExecContext {
    h: Handle,
    _engine: Arc<Handle>,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl ExecContext {
    fn sh(&self) -> &Shared {
        &self.h.shared
    }

    pub(crate) fn set_input_shape(&mut self, name: &str, d: &[usize]) -> Result<bool> {
        let (c, d) = (cstring(name)?, dims(d)?);
        // SAFETY: setInputShape(char const*, Dims const&) → bool.
        Ok(unsafe {
            vcall!(self.sh(), self.h.ptr(), context_set_input_shape, (*const c_char, *const Dims64) -> bool,
                c.as_ptr(), &d)
        })
    }

    pub(crate) fn tensor_shape(&self, name: &str) -> Result<Dims64> {
        let c = cstring(name)?;
        // SAFETY: getTensorShape(char const*) const → Dims by value.
        Ok(unsafe {
            vcall!(self.sh(), self.h.ptr(), context_tensor_shape, (*const c_char) -> Dims64, c.as_ptr())
        })
    }

    pub(crate) fn set_tensor_address(&mut self, name: &str, address: u64) -> Result<bool> {
        let c = cstring(name)?;
        // SAFETY: setTensorAddress(char const*, void*) → bool; TensorRT only stores the
        // address (the caller of enqueue vouches for the memory).
        Ok(unsafe {
            vcall!(self.sh(), self.h.ptr(), context_set_tensor_address, (*const c_char, *mut c_void) -> bool,
                c.as_ptr(), address as usize as *mut c_void)
        })
    }

    /// Enqueues on `stream`, waits for it, and only then lets `buffers` go: the run-time path
    /// of `execute_host`, where every address set on the context is one of `buffers`.
    pub(crate) fn enqueue_and_wait(
        &mut self,
        stream: &kiln_cuda::Stream,
        buffers: &[kiln_cuda::DeviceBuffer],
    ) -> Result<bool> {
        // SAFETY: the caller set every tensor address to one of `buffers` (device memory of
        // the tensor's size), which stay borrowed until the stream has been synchronised
        // below; the stream is a live kiln-cuda stream.
        let ok = unsafe { self.enqueue_v3(stream.id())? };
        stream.synchronize()?;
        let _ = buffers;
        Ok(ok)
    }

    /// # Safety
    /// Every tensor address set must be valid device memory until the stream's work is done,
    /// and `stream` a live CUDA stream (or 0).
    pub(crate) unsafe fn enqueue_v3(&mut self, stream: u64) -> Result<bool> {
        // SAFETY: enqueueV3(cudaStream_t) → bool; the memory contract is the caller's.
        Ok(unsafe {
            vcall!(self.sh(), self.h.ptr(), context_enqueue_v3, (*mut c_void) -> bool,
                stream as usize as *mut c_void)
        })
    }
}
