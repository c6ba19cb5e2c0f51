//! The only module of `kiln-cuda` with `unsafe` code: thin, checked wrappers over `libloading`
//! and cudarc's `sys`/`result` layers.
//!
//! The functions here are crate-private. Device pointers they take are plain `u64`s; the safe
//! types above (`DeviceBuffer`, `PinnedBuffer`, `Graph`, ...) uphold what each function states
//! under "Contract": the pointer belongs to a live allocation of at least the given length on the
//! context that is current, and host memory handed to an asynchronous copy outlives the copy.
//! Every function that reaches a cudarc binding is called only after `probe` found the library
//! and symbol, so cudarc's lazy loader cannot panic.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint};
use std::ptr::NonNull;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaFunction, CudaStream, DriverError, result, sys};

// ---------------------------------------------------------------------------------------------
// Shared libraries (probe)

/// Opens a shared library by file name (searched the way the dynamic loader searches).
pub(crate) fn open_library(name: &str) -> Result<libloading::Library, String> {
    // SAFETY: opening a library runs its initialisers. The names passed here are the sonames of
    // NVIDIA's CUDA libraries, whose initialisers have no preconditions on the caller.
    unsafe { libloading::Library::new(name) }.map_err(|e| e.to_string())
}

/// True when `lib` exports `symbol`.
pub(crate) fn has_symbol(lib: &libloading::Library, symbol: &str) -> bool {
    // SAFETY: the symbol is only looked up, typed as an opaque pointer, and never called here.
    unsafe { lib.get::<*const ()>(symbol.as_bytes()) }.is_ok()
}

/// Calls `name(c_uint) -> c_int` (cuInit).
pub(crate) fn call_uint_status(
    lib: &libloading::Library,
    name: &str,
    arg: c_uint,
) -> Option<c_int> {
    // SAFETY: only used with cuInit, whose C signature is `CUresult cuInit(unsigned int)`.
    unsafe {
        let f = lib
            .get::<unsafe extern "C" fn(c_uint) -> c_int>(name.as_bytes())
            .ok()?;
        Some(f(arg))
    }
}

/// Calls `name(int*) -> int` and returns (status, value): cuDriverGetVersion, cuDeviceGetCount.
pub(crate) fn call_int_out(lib: &libloading::Library, name: &str) -> Option<(c_int, c_int)> {
    // SAFETY: used with functions whose C signature is `status f(int *out)`; `out` is a valid,
    // writable int for the duration of the call.
    unsafe {
        let f = lib
            .get::<unsafe extern "C" fn(*mut c_int) -> c_int>(name.as_bytes())
            .ok()?;
        let mut out: c_int = 0;
        let status = f(&mut out);
        Some((status, out))
    }
}

/// Calls `name(int*, int*) -> int` (nvrtcVersion) and returns (status, a, b).
pub(crate) fn call_int2_out(
    lib: &libloading::Library,
    name: &str,
) -> Option<(c_int, c_int, c_int)> {
    // SAFETY: nvrtcVersion's C signature is `nvrtcResult nvrtcVersion(int*, int*)`; both
    // pointers are valid and writable during the call.
    unsafe {
        let f = lib
            .get::<unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int>(name.as_bytes())
            .ok()?;
        let (mut a, mut b): (c_int, c_int) = (0, 0);
        let status = f(&mut a, &mut b);
        Some((status, a, b))
    }
}

/// Calls `name(int, int*) -> int` (cublasGetProperty) and returns (status, value).
pub(crate) fn call_int_in_int_out(
    lib: &libloading::Library,
    name: &str,
    arg: c_int,
) -> Option<(c_int, c_int)> {
    // SAFETY: cublasGetProperty's C signature is `cublasStatus_t f(libraryPropertyType, int*)`,
    // where libraryPropertyType is a C enum (int-sized); `out` is valid and writable.
    unsafe {
        let f = lib
            .get::<unsafe extern "C" fn(c_int, *mut c_int) -> c_int>(name.as_bytes())
            .ok()?;
        let mut out: c_int = 0;
        let status = f(arg, &mut out);
        Some((status, out))
    }
}

/// Calls `name() -> size_t` (cudnnGetVersion, cublasLtGetVersion).
pub(crate) fn call_usize(lib: &libloading::Library, name: &str) -> Option<usize> {
    // SAFETY: both functions take no arguments, return size_t and have no preconditions.
    unsafe {
        let f = lib
            .get::<unsafe extern "C" fn() -> usize>(name.as_bytes())
            .ok()?;
        Some(f())
    }
}

// ---------------------------------------------------------------------------------------------
// Device memory and copies

/// `cuMemAlloc` on `ctx`. Contract: none beyond a probed driver.
pub(crate) fn device_alloc(ctx: &CudaContext, bytes: usize) -> Result<u64, DriverError> {
    ctx.bind_to_thread()?;
    // SAFETY: the context is current; a zero-byte request is never made (callers round up).
    unsafe { result::malloc_sync(bytes.max(1)) }
}

/// `cuMemFree`. Contract: `ptr` came from [`device_alloc`] on `ctx`, is freed once, and no
/// queued work still uses it (the allocator synchronises the block's fence first).
pub(crate) fn device_free(ctx: &CudaContext, ptr: u64) -> Result<(), DriverError> {
    ctx.bind_to_thread()?;
    // SAFETY: see the contract above.
    unsafe { result::free_sync(ptr) }
}

/// Async host → device copy. Contract: `dst` has room for `src.len()` bytes; `src` stays alive
/// and unchanged until the stream passes this copy (pinned memory: the owner tracks an event;
/// pageable memory: the caller synchronises before returning).
pub(crate) fn htod_async(stream: &CudaStream, dst: u64, src: &[u8]) -> Result<(), DriverError> {
    stream.context().bind_to_thread()?;
    // SAFETY: see the contract above.
    unsafe { result::memcpy_htod_async(dst, src, stream.cu_stream()) }
}

/// Async device → host copy. Contract: `src` holds at least `dst.len()` bytes; `dst` stays
/// alive and unread until the stream passes this copy.
pub(crate) fn dtoh_async(stream: &CudaStream, dst: &mut [u8], src: u64) -> Result<(), DriverError> {
    stream.context().bind_to_thread()?;
    // SAFETY: see the contract above.
    unsafe { result::memcpy_dtoh_async(dst, src, stream.cu_stream()) }
}

/// Async device → device copy. Contract: both ranges are live allocations of `bytes` or more.
pub(crate) fn dtod_async(
    stream: &CudaStream,
    dst: u64,
    src: u64,
    bytes: usize,
) -> Result<(), DriverError> {
    stream.context().bind_to_thread()?;
    // SAFETY: see the contract above.
    unsafe { result::memcpy_dtod_async(dst, src, bytes, stream.cu_stream()) }
}

/// Async byte fill. Contract: `dst` is a live allocation of `bytes` or more.
pub(crate) fn memset_async(
    stream: &CudaStream,
    dst: u64,
    value: u8,
    bytes: usize,
) -> Result<(), DriverError> {
    stream.context().bind_to_thread()?;
    // SAFETY: see the contract above.
    unsafe { result::memset_d8_async(dst, value, bytes, stream.cu_stream()) }
}

// ---------------------------------------------------------------------------------------------
// Page-locked host memory

/// An owned page-locked host allocation (`cuMemHostAlloc`), freed on drop.
pub(crate) struct HostAlloc {
    ptr: NonNull<u8>,
    len: usize,
    ctx: Arc<CudaContext>,
}

// SAFETY: the allocation is plain host memory owned by this value; access goes through `&self`
// / `&mut self`, so Rust's aliasing rules apply as for a `Box<[u8]>`.
unsafe impl Send for HostAlloc {}
// SAFETY: shared access only hands out `&[u8]`.
unsafe impl Sync for HostAlloc {}

impl HostAlloc {
    /// Allocates `len` page-locked bytes (at least one), zero-filled.
    pub(crate) fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<Self, DriverError> {
        ctx.bind_to_thread()?;
        let bytes = len.max(1);
        // SAFETY: the context is current; flags 0 means a plain portable-less pinned buffer.
        let raw = unsafe { result::malloc_host(bytes, 0) }?;
        let ptr = NonNull::new(raw.cast::<u8>())
            .ok_or(DriverError(sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY))?;
        // SAFETY: `ptr` points to `bytes` writable bytes just allocated; zeroing makes every
        // byte initialised, so the slices below are valid.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, bytes) };
        Ok(HostAlloc {
            ptr,
            len,
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HostAlloc {
    fn drop(&mut self) {
        if let Err(e) = self.ctx.bind_to_thread() {
            tracing::warn!("pinned buffer leaked: cannot bind context: {e}");
            return;
        }
        // SAFETY: `ptr` came from cuMemHostAlloc and is freed once; owners wait for pending
        // copies (their event) before dropping.
        if let Err(e) = unsafe { result::free_host(self.ptr.as_ptr().cast()) } {
            tracing::warn!("cuMemFreeHost failed: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// One kernel argument, passed by value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KernelArg {
    Ptr(u64),
    F32(f32),
    U32(u32),
}

/// Launches `func` on `stream`. Contract: `args` match the kernel's C parameter list in number
/// and type, and every pointer argument covers the range the kernel touches for the grid given.
pub(crate) fn launch(
    stream: &CudaStream,
    func: &CudaFunction,
    cfg: cudarc::driver::LaunchConfig,
    args: &[KernelArg],
) -> Result<(), DriverError> {
    use cudarc::driver::PushKernelArg;
    let mut builder = stream.launch_builder(func);
    for arg in args {
        match arg {
            KernelArg::Ptr(p) => builder.arg(p),
            KernelArg::F32(x) => builder.arg(x),
            KernelArg::U32(x) => builder.arg(x),
        };
    }
    // SAFETY: see the contract above; the argument values live in `args` until the launch call
    // returns (the driver copies them).
    unsafe { builder.launch(cfg) }.map(|_| ())
}

/// Compiles CUDA C with NVRTC. With `cubin`, returns the CUBIN for the `-arch=sm_XY` given in
/// `options`; else NUL-free PTX text as bytes. Errors carry the program log.
pub(crate) fn nvrtc_compile(
    src: &str,
    name: &str,
    options: &[String],
    cubin: bool,
) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result as nr, sys as ns};
    let c_src = std::ffi::CString::new(src).map_err(|e| e.to_string())?;
    let c_name = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    let prog = nr::create_program(&c_src, Some(&c_name)).map_err(|e| format!("{e:?}"))?;
    // SAFETY: `prog` was just created and is destroyed once, at the end of this block.
    unsafe {
        let out = match nr::compile_program(prog, options) {
            Err(e) => {
                let log = nr::get_program_log(prog).map(c_chars_to_string);
                Err(format!("{e:?}: {}", log.unwrap_or_default()))
            }
            Ok(()) if cubin => {
                let mut size = 0usize;
                let mut code = ns::nvrtcGetCUBINSize(prog, &mut size);
                let mut buf = vec![0u8; size];
                if code == ns::nvrtcResult::NVRTC_SUCCESS {
                    code = ns::nvrtcGetCUBIN(prog, buf.as_mut_ptr().cast::<c_char>());
                }
                if code == ns::nvrtcResult::NVRTC_SUCCESS && size > 0 {
                    Ok(buf)
                } else {
                    Err(format!("nvrtcGetCUBIN returned {code:?} (size {size})"))
                }
            }
            Ok(()) => nr::get_ptx(prog)
                .map(|p| c_chars_to_string(p).into_bytes())
                .map_err(|e| format!("{e:?}")),
        };
        let _ = nr::destroy_program(prog);
        out
    }
}

fn c_chars_to_string(chars: Vec<c_char>) -> String {
    let bytes: Vec<u8> = chars
        .into_iter()
        .map(|c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Raw stream handles (streams kiln did not create, e.g. kiln-core's `StreamHandle`)

/// A raw `CUstream` from its integer form (0 is the legacy default stream).
pub(crate) fn raw_stream(handle: u64) -> sys::CUstream {
    handle as usize as sys::CUstream
}

/// The context a raw stream belongs to (`cuStreamGetCtx`), asked with `ctx` current, so that
/// the special handles (null, `CU_STREAM_LEGACY`, `CU_STREAM_PER_THREAD`) name `ctx`.
///
/// # Safety
/// `stream` is null, a special handle, or a stream created (through the driver or the runtime
/// API) in this process and not yet destroyed. The driver does not check the handle: anything
/// else is undefined behaviour.
pub(crate) unsafe fn raw_stream_context(
    ctx: &CudaContext,
    stream: sys::CUstream,
) -> Result<sys::CUcontext, DriverError> {
    ctx.bind_to_thread()?;
    let mut out: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: `out` is a writable CUcontext for the duration of the call; `stream` is valid as
    // the caller promised.
    unsafe { sys::cuStreamGetCtx(stream, &mut out) }.result()?;
    Ok(out)
}

/// Records `event` after the work queued so far on the raw `stream` (`cuEventRecord`).
///
/// # Safety
/// `stream` is a live stream (or a special handle) of `event`'s context, as established by
/// [`raw_stream_context`], and stays alive for the call.
pub(crate) unsafe fn record_on_raw(
    event: &CudaEvent,
    stream: sys::CUstream,
) -> Result<(), DriverError> {
    event.context().bind_to_thread()?;
    // SAFETY: `event` is live (borrowed); `stream` as the caller promised.
    unsafe { result::event::record(event.cu_event(), stream) }
}

/// Makes later work on the raw `stream` wait for `event`'s recorded work (`cuStreamWaitEvent`).
///
/// # Safety
/// As for [`record_on_raw`].
pub(crate) unsafe fn wait_on_raw(
    stream: sys::CUstream,
    event: &CudaEvent,
) -> Result<(), DriverError> {
    event.context().bind_to_thread()?;
    // SAFETY: `event` is live (borrowed); `stream` as the caller promised.
    unsafe {
        result::stream::wait_event(
            stream,
            event.cu_event(),
            sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
        )
    }
}

/// Blocks until the work queued on the raw `stream` is done (`cuStreamSynchronize`).
///
/// # Safety
/// As for [`record_on_raw`], with `ctx` the stream's context.
pub(crate) unsafe fn synchronize_raw(
    ctx: &CudaContext,
    stream: sys::CUstream,
) -> Result<(), DriverError> {
    ctx.bind_to_thread()?;
    // SAFETY: `stream` as the caller promised.
    unsafe { result::stream::synchronize(stream) }
}

// ---------------------------------------------------------------------------------------------
// Graphs

/// An owned `CUgraph` (the captured, not yet instantiated graph).
pub(crate) struct RawGraph(sys::CUgraph);
/// An owned `CUgraphExec`.
pub(crate) struct RawGraphExec(sys::CUgraphExec);

// SAFETY: CUDA graph handles may move between threads; they are not `Sync`, and kiln's `Graph`
// needs `&mut self` for every call that touches them, which serialises access as CUDA requires.
unsafe impl Send for RawGraph {}
// SAFETY: as above.
unsafe impl Send for RawGraphExec {}

/// Starts capturing `stream` (thread-local mode: other threads' calls are not affected).
pub(crate) fn begin_capture(stream: &CudaStream) -> Result<(), DriverError> {
    stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
}

/// Ends the capture begun by [`begin_capture`] and returns the graph.
pub(crate) fn end_capture(stream: &CudaStream) -> Result<RawGraph, DriverError> {
    stream.context().bind_to_thread()?;
    // SAFETY: `stream` is a live stream; the driver reports an error if it was not capturing.
    let g = unsafe { result::stream::end_capture(stream.cu_stream()) }?;
    if g.is_null() {
        return Err(DriverError(
            sys::cudaError_enum::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        ));
    }
    Ok(RawGraph(g))
}

/// Instantiates `graph`.
pub(crate) fn instantiate(
    ctx: &CudaContext,
    graph: &RawGraph,
) -> Result<RawGraphExec, DriverError> {
    ctx.bind_to_thread()?;
    // SAFETY: `graph.0` is a live graph owned by `graph`.
    let exec = unsafe { result::graph::instantiate(graph.0, sys::CUgraphInstantiate_flags(0)) }?;
    Ok(RawGraphExec(exec))
}

/// Launches an instantiated graph on `stream`.
pub(crate) fn graph_launch(stream: &CudaStream, exec: &RawGraphExec) -> Result<(), DriverError> {
    stream.context().bind_to_thread()?;
    // SAFETY: `exec.0` is a live executable graph; `stream` is live.
    unsafe { result::graph::launch(exec.0, stream.cu_stream()) }
}

/// Uploads an instantiated graph so its first launch does no setup.
pub(crate) fn graph_upload(stream: &CudaStream, exec: &RawGraphExec) -> Result<(), DriverError> {
    stream.context().bind_to_thread()?;
    // SAFETY: as for `graph_launch`.
    unsafe { result::graph::upload(exec.0, stream.cu_stream()) }
}

/// `cuGraphExecUpdate_v2`: puts `graph`'s parameters into `exec`. Returns the driver's error and
/// the update result code on failure. Contract: the probe found `cuGraphExecUpdate_v2`.
pub(crate) fn graph_exec_update(
    ctx: &CudaContext,
    exec: &mut RawGraphExec,
    graph: &RawGraph,
) -> Result<(), (DriverError, String)> {
    ctx.bind_to_thread()
        .map_err(|e| (e, "context bind".to_string()))?;
    let mut info = std::mem::MaybeUninit::<sys::CUgraphExecUpdateResultInfo>::zeroed();
    // SAFETY: both handles are live and owned by the callers; `info` is writable.
    let status = unsafe { sys::cuGraphExecUpdate_v2(exec.0, graph.0, info.as_mut_ptr()) };
    match status.result() {
        Ok(()) => Ok(()),
        Err(e) => {
            // SAFETY: zero-initialised, and the driver fills `result` on failure.
            let info = unsafe { info.assume_init() };
            Err((e, format!("{:?}", info.result)))
        }
    }
}

impl Drop for RawGraph {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once.
        if let Err(e) = unsafe { result::graph::destroy(self.0) } {
            tracing::warn!("cuGraphDestroy failed: {e}");
        }
    }
}

impl Drop for RawGraphExec {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once.
        if let Err(e) = unsafe { result::graph::exec_destroy(self.0) } {
            tracing::warn!("cuGraphExecDestroy failed: {e}");
        }
    }
}
