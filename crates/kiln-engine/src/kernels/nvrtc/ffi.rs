//! The only `unsafe` code of the NVRTC kernels: compiling with NVRTC, and launching a kernel
//! with its arguments. Callers probe NVRTC (kiln-cuda's probe) before [`compile`], so cudarc's
//! lazy loader cannot panic; a device exists before any launch (a `Stream` needs one).
#![allow(unsafe_code)]

use std::ffi::{CString, c_char};

use cudarc::driver::{CudaFunction, DeviceRepr, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{result as nr, sys as ns};

use super::layout::Dims;

// SAFETY: `Dims` is `#[repr(C)]`, eight i64 with no padding, the exact layout of the C
// `struct KDims { long long v[8]; }` every module declares; any bit pattern is valid.
unsafe impl DeviceRepr for Dims {}

/// One kernel argument, passed by value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg {
    /// A device address (`T*` in C).
    Ptr(u64),
    I64(i64),
    I32(i32),
    F32(f32),
    Dims(Dims),
    /// Eight doubles by value (`struct { double v[8]; }` in C).
    F64x8([f64; 8]),
}

/// Compiles `src` with NVRTC. With `cubin`, returns the CUBIN for the `sm_XY` in `options`;
/// otherwise PTX text (without its NUL). Errors carry NVRTC's log.
pub(crate) fn compile(
    src: &str,
    name: &str,
    options: &[String],
    cubin: bool,
) -> Result<Vec<u8>, String> {
    let c_src = CString::new(src).map_err(|e| e.to_string())?;
    let c_name = CString::new(name).map_err(|e| e.to_string())?;
    let prog = nr::create_program(&c_src, Some(&c_name)).map_err(|e| format!("{e:?}"))?;
    // SAFETY: `prog` was created above, is used only inside this block and destroyed once at
    // its end; every out-pointer handed to NVRTC points to live, writable memory of the size
    // NVRTC reported.
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
                if code == ns::nvrtcResult::NVRTC_SUCCESS && size > 0 {
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
        if let Err(e) = nr::destroy_program(prog) {
            tracing::warn!("nvrtcDestroyProgram failed: {e:?}");
        }
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

/// Queues `func` on `stream`.
///
/// Contract (upheld by the launch functions of this module): `args` match the kernel's C
/// parameter list in number, order and type, and every `Ptr` covers the elements the kernel
/// touches for the sizes passed alongside it.
pub(crate) fn launch(
    stream: &kiln_cuda::Stream,
    func: &CudaFunction,
    cfg: LaunchConfig,
    args: &[Arg],
) -> Result<(), cudarc::driver::DriverError> {
    let cu = stream.cuda_stream();
    let mut builder = cu.launch_builder(func);
    for arg in args {
        match arg {
            Arg::Ptr(p) => builder.arg(p),
            Arg::I64(x) => builder.arg(x),
            Arg::I32(x) => builder.arg(x),
            Arg::F32(x) => builder.arg(x),
            Arg::Dims(x) => builder.arg(x),
            Arg::F64x8(x) => builder.arg(x),
        };
    }
    // SAFETY: see the contract above; the argument values live in `args` until the launch
    // call returns (the driver copies them). `launch` binds the stream's context first.
    unsafe { builder.launch(cfg) }.map(|_| ())
}
