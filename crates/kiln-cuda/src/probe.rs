//! Run-time probes of the CUDA libraries, done before any cudarc call.
//!
//! cudarc loads its libraries and symbols lazily and panics when one is missing. kiln first opens
//! each library itself, under exactly the names cudarc will try (in the same order, so both land
//! on the same file), and looks up every symbol kiln calls. Anything absent becomes a
//! [`CudaError`] that names what was searched and how to fix it. Only after the driver probe has
//! passed do the safe types of this crate make cudarc calls.

use std::sync::OnceLock;

use serde::Serialize;

use crate::error::{CudaError, Result};
use crate::ffi;

/// The CUDA version whose headers the bindings were generated from (crate feature).
#[cfg(not(feature = "cuda-12"))]
pub const BUILT_FOR_CUDA: (u32, u32) = (13, 0);
/// The CUDA version whose headers the bindings were generated from (crate feature).
#[cfg(feature = "cuda-12")]
pub const BUILT_FOR_CUDA: (u32, u32) = (12, 8);

/// The libraries kiln loads at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Library {
    /// The driver API, `libcuda.so.1` (part of the NVIDIA driver, not the toolkit).
    Driver,
    /// The run-time compiler, `libnvrtc.so.13` / `.12`.
    Nvrtc,
    /// `libcublas.so.13` / `.12`.
    Cublas,
    /// `libcublasLt.so.13` / `.12`.
    CublasLt,
    /// `libcudnn.so.9`.
    Cudnn,
}

impl Library {
    /// All libraries, driver first.
    pub const ALL: [Library; 5] = [
        Library::Driver,
        Library::Nvrtc,
        Library::Cublas,
        Library::CublasLt,
        Library::Cudnn,
    ];

    /// Human name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Library::Driver => "libcuda (CUDA driver)",
            Library::Nvrtc => "libnvrtc (NVRTC)",
            Library::Cublas => "libcublas (cuBLAS)",
            Library::CublasLt => "libcublasLt (cuBLASLt)",
            Library::Cudnn => "libcudnn (cuDNN)",
        }
    }

    /// The stem cudarc derives its candidate file names from.
    fn stem(self) -> &'static [&'static str] {
        match self {
            Library::Driver => &["cuda", "nvcuda"],
            Library::Nvrtc => &["nvrtc"],
            Library::Cublas => &["cublas"],
            Library::CublasLt => &["cublasLt"],
            Library::Cudnn => &["cudnn"],
        }
    }

    /// File names searched, in cudarc's order (which includes the CUDA 13 and 12 sonames).
    pub fn candidates(self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for stem in self.stem() {
            for name in cudarc::get_lib_name_candidates(stem) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// What to do when the library is absent.
    pub fn fix(self) -> String {
        let (maj, _) = BUILT_FOR_CUDA;
        match self {
            Library::Driver => {
                "install the NVIDIA driver (libcuda.so.1 ships with it, not with the \
                 toolkit); in a container run with the NVIDIA container toolkit (`--gpus all`)"
                    .to_string()
            }
            Library::Cudnn => "install cuDNN 9 (e.g. `apt install libcudnn9-cuda-12` or the \
                 nvidia-cudnn wheel) and add its lib folder to LD_LIBRARY_PATH"
                .to_string(),
            _ => format!(
                "install the CUDA {maj} toolkit libraries and set \
                 LD_LIBRARY_PATH=/usr/local/cuda/lib64 (for CUDA 12 libraries, build kiln-cuda \
                 with `--no-default-features --features cuda-12`)"
            ),
        }
    }

    /// Symbols kiln calls in this library, as cudarc resolves them for the enabled CUDA version.
    pub fn required_symbols(self) -> &'static [&'static str] {
        match self {
            Library::Driver => DRIVER_SYMBOLS,
            Library::Nvrtc => &[
                "nvrtcVersion",
                "nvrtcCreateProgram",
                "nvrtcCompileProgram",
                "nvrtcDestroyProgram",
                "nvrtcGetPTXSize",
                "nvrtcGetPTX",
                "nvrtcGetCUBINSize",
                "nvrtcGetCUBIN",
                "nvrtcGetProgramLogSize",
                "nvrtcGetProgramLog",
            ],
            Library::Cublas => &[
                "cublasCreate_v2",
                "cublasDestroy_v2",
                "cublasSetStream_v2",
                "cublasGetProperty",
                "cublasGemmEx",
            ],
            Library::CublasLt => &[
                "cublasLtCreate",
                "cublasLtDestroy",
                "cublasLtGetVersion",
                "cublasLtMatmul",
            ],
            Library::Cudnn => &[
                "cudnnGetVersion",
                "cudnnCreate",
                "cudnnDestroy",
                "cudnnSetStream",
            ],
        }
    }
}

#[cfg(not(feature = "cuda-12"))]
const ELAPSED: &str = "cuEventElapsedTime_v2";
#[cfg(feature = "cuda-12")]
const ELAPSED: &str = "cuEventElapsedTime";

const DRIVER_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceGetAttribute",
    "cuDeviceTotalMem_v2",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuCtxSynchronize",
    "cuCtxGetStreamPriorityRange",
    "cuStreamCreateWithPriority",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuStreamWaitEvent",
    "cuStreamGetCtx",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventQuery",
    "cuEventSynchronize",
    ELAPSED,
    "cuEventDestroy_v2",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemGetInfo_v2",
    "cuMemHostAlloc",
    "cuMemFreeHost",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemcpyDtoDAsync_v2",
    "cuMemsetD8Async",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuLaunchKernel",
    "cuStreamBeginCapture_v2",
    "cuStreamEndCapture",
    "cuGraphInstantiateWithFlags",
    "cuGraphLaunch",
    "cuGraphUpload",
    "cuGraphExecDestroy",
    "cuGraphDestroy",
];

/// Driver symbol that is optional: without it graphs work but cannot be updated in place.
pub const GRAPH_UPDATE_SYMBOL: &str = "cuGraphExecUpdate_v2";

/// One library that was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibraryInfo {
    pub library: Library,
    /// The file name that opened (the one cudarc will open too).
    pub file: String,
    /// Version as the library reports it, e.g. "13.0", "9.10.2"; None if it has no query.
    pub version: Option<String>,
}

/// Opens `lib` under its candidate names and checks its symbols.
pub fn probe_library(lib: Library) -> Result<LibraryInfo> {
    let (handle, file) = open_first(lib.name(), &lib.candidates(), lib.fix())?;
    check_symbols(lib.name(), &file, &handle, lib.required_symbols())?;
    let version = library_version(lib, &handle);
    std::mem::forget(handle); // keep it mapped: cudarc opens the same file and so do we, later
    Ok(LibraryInfo {
        library: lib,
        file,
        version,
    })
}

fn open_first(
    library: &'static str,
    candidates: &[String],
    fix: String,
) -> Result<(libloading::Library, String)> {
    let mut last_error = String::new();
    for name in candidates {
        match ffi::open_library(name) {
            Ok(handle) => {
                tracing::debug!(library, file = %name, "library found");
                return Ok((handle, name.clone()));
            }
            Err(e) => last_error = e,
        }
    }
    tracing::debug!(library, %last_error, "library not found");
    Err(CudaError::LibraryMissing {
        library,
        searched: candidates.to_vec(),
        fix,
    })
}

fn check_symbols(
    library: &'static str,
    file: &str,
    handle: &libloading::Library,
    symbols: &'static [&'static str],
) -> Result<()> {
    for &symbol in symbols {
        if !ffi::has_symbol(handle, symbol) {
            return Err(CudaError::SymbolMissing {
                library,
                path: file.to_string(),
                symbol,
            });
        }
    }
    Ok(())
}

fn library_version(lib: Library, h: &libloading::Library) -> Option<String> {
    match lib {
        Library::Driver => ffi::call_int_out(h, "cuDriverGetVersion")
            .filter(|(s, _)| *s == 0)
            .map(|(_, v)| format!("{}.{}", v / 1000, (v % 1000) / 10)),
        Library::Nvrtc => ffi::call_int2_out(h, "nvrtcVersion")
            .filter(|(s, _, _)| *s == 0)
            .map(|(_, a, b)| format!("{a}.{b}")),
        Library::Cublas => {
            let part = |p| ffi::call_int_in_int_out(h, "cublasGetProperty", p).filter(|r| r.0 == 0);
            Some(format!("{}.{}.{}", part(0)?.1, part(1)?.1, part(2)?.1))
        }
        Library::CublasLt => ffi::call_usize(h, "cublasLtGetVersion").map(decode_version),
        Library::Cudnn => ffi::call_usize(h, "cudnnGetVersion").map(decode_version),
    }
}

/// cuDNN 9 and cuBLASLt encode versions as `major*10000 + minor*100 + patch` (cuDNN 8 used
/// `major*1000 + minor*100 + patch`).
fn decode_version(v: usize) -> String {
    if v >= 10_000 {
        format!("{}.{}.{}", v / 10_000, (v / 100) % 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v / 100) % 10, v % 100)
    }
}

/// What the probe found: the plan header records these.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    /// CUDA version the driver supports, e.g. (13, 0).
    pub driver_version: (u32, u32),
    /// CUDA version of the bindings (crate feature).
    pub built_for: (u32, u32),
    /// Number of visible devices (at least one).
    pub device_count: usize,
    /// Whether the driver can update instantiated graphs in place.
    pub graph_update: bool,
    /// Every library that was found, driver first.
    pub found: Vec<LibraryInfo>,
    /// Libraries that were not found (or lack symbols), with the error message.
    pub missing: Vec<(Library, String)>,
}

impl Probe {
    /// Probes the driver (required: no driver or no device is an error) and then each other
    /// library (optional here: absent ones are listed in `missing`; use [`Probe::require`]).
    pub fn run() -> Result<Probe> {
        let driver = driver_probe()?.clone();
        let mut found = vec![driver.info.clone()];
        let mut missing = Vec::new();
        for lib in &Library::ALL[1..] {
            match probe_library(*lib) {
                Ok(info) => found.push(info),
                Err(e) => missing.push((*lib, e.to_string())),
            }
        }
        Ok(Probe {
            driver_version: driver.version,
            built_for: BUILT_FOR_CUDA,
            device_count: driver.device_count,
            graph_update: driver.graph_update,
            found,
            missing,
        })
    }

    /// The found library's info, or the error that says how to install it.
    pub fn require(&self, lib: Library) -> Result<&LibraryInfo> {
        match self.found.iter().find(|i| i.library == lib) {
            Some(info) => Ok(info),
            None => Err(probe_library(lib).err().unwrap_or_else(|| {
                CudaError::Invalid(format!("{} appeared after the probe", lib.name()))
            })),
        }
    }

    /// Version string of a found library.
    pub fn version(&self, lib: Library) -> Option<&str> {
        self.found
            .iter()
            .find(|i| i.library == lib)
            .and_then(|i| i.version.as_deref())
    }
}

/// The driver probe's result, computed once per process.
#[derive(Debug, Clone)]
pub(crate) struct DriverProbe {
    pub info: LibraryInfo,
    pub version: (u32, u32),
    pub device_count: usize,
    pub graph_update: bool,
}

/// Probes the driver once; every safe type calls this before its first cudarc call.
pub(crate) fn driver_probe() -> Result<&'static DriverProbe> {
    static DRIVER: OnceLock<Result<DriverProbe>> = OnceLock::new();
    DRIVER
        .get_or_init(probe_driver_uncached)
        .as_ref()
        .map_err(Clone::clone)
}

/// Ensures `lib` was found (cached per library) before cudarc touches it.
pub(crate) fn ensure(lib: Library) -> Result<()> {
    static CACHE: [OnceLock<Result<()>>; 5] = [const { OnceLock::new() }; 5];
    let idx = Library::ALL.iter().position(|l| *l == lib).unwrap_or(0);
    CACHE[idx]
        .get_or_init(|| {
            if lib == Library::Driver {
                driver_probe().map(|_| ())
            } else {
                probe_library(lib).map(|_| ())
            }
        })
        .clone()
}

fn probe_driver_uncached() -> Result<DriverProbe> {
    let lib = Library::Driver;
    let (handle, file) = open_first(lib.name(), &lib.candidates(), lib.fix())?;
    check_symbols(lib.name(), &file, &handle, lib.required_symbols())?;
    let graph_update = ffi::has_symbol(&handle, GRAPH_UPDATE_SYMBOL);
    let status = ffi::call_uint_status(&handle, "cuInit", 0).unwrap_or(-1);
    if status != 0 {
        let reason = match status {
            100 => "cuInit reports CUDA_ERROR_NO_DEVICE (100)".to_string(),
            34 => format!(
                "{file} is the toolkit's stub library (CUDA_ERROR_STUB_LIBRARY); remove \
                 the stubs folder from LD_LIBRARY_PATH"
            ),
            35 => "cuInit reports CUDA_ERROR_INSUFFICIENT_DRIVER (35): the kernel driver is older \
                 than libcuda"
                .to_string(),
            s => format!("cuInit failed with CUresult {s}"),
        };
        return Err(CudaError::NoDevice { reason });
    }
    let count = match ffi::call_int_out(&handle, "cuDeviceGetCount") {
        Some((0, n)) if n > 0 => n as usize,
        Some((0, _)) => {
            return Err(CudaError::NoDevice {
                reason: "the driver sees 0 devices".into(),
            });
        }
        other => {
            return Err(CudaError::NoDevice {
                reason: format!("cuDeviceGetCount failed: {other:?}"),
            });
        }
    };
    let raw = ffi::call_int_out(&handle, "cuDriverGetVersion")
        .filter(|(s, _)| *s == 0)
        .map(|(_, v)| v)
        .unwrap_or(0);
    let version = ((raw / 1000) as u32, ((raw % 1000) / 10) as u32);
    check_driver_version(version)?;
    let info = LibraryInfo {
        library: lib,
        file,
        version: Some(format!("{}.{}", version.0, version.1)),
    };
    std::mem::forget(handle);
    tracing::info!(driver = ?version, devices = count, graph_update, "CUDA driver probed");
    Ok(DriverProbe {
        info,
        version,
        device_count: count,
        graph_update,
    })
}

/// The bindings for CUDA N call entry points that need a driver supporting CUDA N.
pub(crate) fn check_driver_version(driver: (u32, u32)) -> Result<()> {
    let need = BUILT_FOR_CUDA.0;
    if driver.0 < need {
        return Err(CudaError::Unsupported {
            feature: "kiln-cuda's CUDA bindings",
            detail: format!(
                "the driver supports CUDA {}.{} but kiln-cuda was built for CUDA {}.{}; build \
                 with `--no-default-features --features cuda-12` or install a newer driver",
                driver.0, driver.1, BUILT_FOR_CUDA.0, BUILT_FOR_CUDA.1
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_driver() -> bool {
        Library::Driver
            .candidates()
            .iter()
            .any(|c| ffi::open_library(c).is_ok())
    }

    #[test]
    fn missing_library_is_an_error_naming_it() {
        let err = open_first(
            "libkiln_nothing",
            &["libkiln_nothing.so.7".into()],
            "fix it".into(),
        )
        .expect_err("must not open");
        let text = err.to_string();
        assert!(text.contains("libkiln_nothing"), "{text}");
        assert!(text.contains("libkiln_nothing.so.7"), "{text}");
        assert!(text.contains("fix it"), "{text}");
    }

    #[test]
    fn candidates_cover_cuda_13_and_12_sonames() {
        assert!(
            Library::Driver
                .candidates()
                .contains(&"libcuda.so.1".to_string())
        );
        let nvrtc = Library::Nvrtc.candidates();
        assert!(nvrtc.contains(&"libnvrtc.so.12".to_string()), "{nvrtc:?}");
        assert!(
            Library::Cudnn
                .candidates()
                .contains(&"libcudnn.so.9".to_string())
        );
    }

    #[test]
    fn present_library_without_symbols_is_symbol_missing() {
        let Ok((h, file)) = open_first("libc", &["libc.so.6".into()], String::new()) else {
            return; // not glibc: nothing to check
        };
        let err = check_symbols("libc", &file, &h, &["cuInit"]).unwrap_err();
        assert!(
            matches!(
                err,
                CudaError::SymbolMissing {
                    symbol: "cuInit",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn probe_without_cuda_is_an_err_not_a_panic() {
        for lib in Library::ALL {
            match probe_library(lib) {
                Ok(info) => eprintln!("{} found as {}", lib.name(), info.file),
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("searched") || text.contains("lacks"),
                        "{text}"
                    );
                }
            }
        }
        if !has_driver() {
            let err = Probe::run().unwrap_err();
            assert!(matches!(err, CudaError::LibraryMissing { .. }), "{err}");
            assert!(err.to_string().contains("libcuda.so.1"), "{err}");
            assert!(ensure(Library::Driver).is_err());
        }
    }

    #[test]
    fn old_driver_is_rejected_with_a_fix() {
        let err = check_driver_version((BUILT_FOR_CUDA.0 - 1, 9)).unwrap_err();
        assert!(err.to_string().contains("cuda-12"), "{err}");
        assert!(check_driver_version(BUILT_FOR_CUDA).is_ok());
    }

    #[test]
    fn versions_decode() {
        assert_eq!(decode_version(91002), "9.10.2");
        assert_eq!(decode_version(8907), "8.9.7");
    }
}
