//! The cuBLASLt side of [`super`]: handle, descriptors, heuristics and the matmul call.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublaslt::sys as lt;
use kiln_core::DevicePtr;
use kiln_cuda::probe::{self, Library};
use kiln_cuda::{CudaError, Device, Stream};
use serde::{Deserialize, Serialize};

use super::{GemmDesc, LibError, LibResult, invalid};

/// The algorithm chosen for a [`GemmDesc`]: cuBLASLt's opaque algorithm and the workspace it
/// needs. Valid only for the same GPU and cuBLASLt version (the plan header checks both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GemmTactic {
    pub algo: [u64; 8],
    pub workspace: usize,
}

/// Pointers of one GEMM call. `c` defaults to `d`; `bias` is needed by bias epilogues.
#[derive(Debug, Clone, Copy)]
pub struct GemmArgs {
    pub a: DevicePtr,
    pub b: DevicePtr,
    pub c: Option<DevicePtr>,
    pub d: DevicePtr,
    pub bias: Option<DevicePtr>,
    pub workspace: DevicePtr,
    pub workspace_bytes: usize,
}

/// Most algorithms one heuristics query asks cuBLASLt for ("all" of the timed optimisation
/// level).
pub const MAX_CANDIDATES: usize = 64;

/// Symbols of libcublasLt that this module calls (checked before the first call).
pub const CUBLASLT_SYMBOLS: &[&str] = &[
    "cublasLtCreate",
    "cublasLtDestroy",
    "cublasLtGetVersion",
    "cublasLtMatmul",
    "cublasLtMatmulDescCreate",
    "cublasLtMatmulDescDestroy",
    "cublasLtMatmulDescSetAttribute",
    "cublasLtMatrixLayoutCreate",
    "cublasLtMatrixLayoutDestroy",
    "cublasLtMatrixLayoutSetAttribute",
    "cublasLtMatmulPreferenceCreate",
    "cublasLtMatmulPreferenceDestroy",
    "cublasLtMatmulPreferenceSetAttribute",
    "cublasLtMatmulAlgoGetHeuristic",
    "cublasLtMatmulAlgoCheck",
];

fn lt_err(call: &'static str) -> impl Fn(lt::cublasStatus_t) -> LibError {
    move |s| LibError::Call {
        library: "cuBLASLt",
        call,
        status: format!("{s:?}"),
        hint: if s == lt::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED {
            " (this problem, precision or epilogue is not supported by this GPU/cuBLASLt)"
        } else {
            ""
        },
    }
}

fn lt_ok(status: lt::cublasStatus_t, call: &'static str) -> LibResult<()> {
    if status == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(lt_err(call)(status))
    }
}

/// The raw cuBLASLt handle.
struct LtHandle(lt::cublasLtHandle_t);

// SAFETY: a cuBLASLt handle is not tied to a host thread; cuBLASLt documents the handle as
// safe to share between threads as long as each call gets its own workspace, which every
// `enqueue` takes from its caller.
unsafe impl Send for LtHandle {}
// SAFETY: as above: `cublasLtMatmul` and the heuristics only read the handle.
unsafe impl Sync for LtHandle {}

/// cuBLASLt on one device: the handle is created once and shared by every GEMM.
pub struct Blas {
    handle: LtHandle,
    device: Arc<Device>,
    version: usize,
}

impl std::fmt::Debug for Blas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Blas(cuBLASLt {}, device {})",
            self.version,
            self.device.info().index
        )
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        if self.device.cuda_context().bind_to_thread().is_err() {
            return;
        }
        // SAFETY: the handle was created by cublasLtCreate and is destroyed once, here.
        let status = unsafe { lt::cublasLtDestroy(self.handle.0) };
        if status != lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            tracing::warn!(?status, "cublasLtDestroy failed");
        }
    }
}

/// RAII owners of cuBLASLt descriptors.
struct Descs {
    op: lt::cublasLtMatmulDesc_t,
    layouts: [lt::cublasLtMatrixLayout_t; 3],
}

impl Drop for Descs {
    fn drop(&mut self) {
        // SAFETY: each non-null descriptor was created by its Create call and is freed once.
        unsafe {
            if !self.op.is_null() {
                lt::cublasLtMatmulDescDestroy(self.op);
            }
            for l in self.layouts {
                if !l.is_null() {
                    lt::cublasLtMatrixLayoutDestroy(l);
                }
            }
        }
    }
}

fn set_attr<A: Copy, T>(
    f: unsafe fn(*mut T, A, *const c_void, usize) -> lt::cublasStatus_t,
) -> impl Fn(*mut T, A, &[u8], &'static str) -> LibResult<()> {
    move |obj, attr, bytes, call| {
        // SAFETY: `obj` is a live descriptor; `bytes` is the attribute's value with the size
        // cuBLASLt documents for `attr` (callers pass the native integer/pointer types).
        lt_ok(
            unsafe { f(obj, attr, bytes.as_ptr().cast(), bytes.len()) },
            call,
        )
    }
}

fn bytes<T: bytemuck::NoUninit>(v: &T) -> &[u8] {
    bytemuck::bytes_of(v)
}

impl Blas {
    /// Probes libcublasLt (library and every symbol used here) and creates the handle.
    pub fn new(device: &Arc<Device>) -> LibResult<Arc<Blas>> {
        let info = probe::probe_library(Library::CublasLt)?;
        // SAFETY: the probe opened the library under the names cudarc tries, in its order, so
        // cudarc's loader finds the same file; symbols are only looked up, not called.
        let lib = unsafe { lt::culib() };
        for &symbol in CUBLASLT_SYMBOLS {
            // SAFETY: looking up a symbol's address has no side effect.
            if unsafe { lib.get::<*const ()>(symbol) }.is_err() {
                return Err(CudaError::SymbolMissing {
                    library: Library::CublasLt.name(),
                    path: info.file.clone(),
                    symbol,
                }
                .into());
            }
        }
        device
            .cuda_context()
            .bind_to_thread()
            .map_err(|e| CudaError::Driver {
                op: "cuCtxSetCurrent",
                message: e.to_string(),
            })?;
        // SAFETY: every symbol was checked above; cublasLtGetVersion takes no arguments.
        let version = unsafe { lt::cublasLtGetVersion() };
        let mut handle = std::ptr::null_mut();
        // SAFETY: `handle` is a valid out-pointer.
        lt_ok(unsafe { lt::cublasLtCreate(&mut handle) }, "cublasLtCreate")?;
        tracing::debug!(version, file = %info.file, "cuBLASLt handle created");
        Ok(Arc::new(Blas {
            handle: LtHandle(handle),
            device: device.clone(),
            version,
        }))
    }

    /// cuBLASLt's version number (`major*10000 + minor*100 + patch`).
    pub fn version(&self) -> usize {
        self.version
    }

    fn bind(&self) -> LibResult<()> {
        self.device.cuda_context().bind_to_thread().map_err(|e| {
            CudaError::Driver {
                op: "cuCtxSetCurrent",
                message: e.to_string(),
            }
            .into()
        })
    }

    /// Creates the descriptors of `desc` (bias pointer set at enqueue).
    fn descs(&self, desc: &GemmDesc) -> LibResult<Descs> {
        let p = desc.lt_problem()?;
        let mut d = Descs {
            op: std::ptr::null_mut(),
            layouts: [std::ptr::null_mut(); 3],
        };
        let dt = desc.math.lt_data_type();
        // SAFETY: `d.op` is a valid out-pointer.
        lt_ok(
            unsafe {
                lt::cublasLtMatmulDescCreate(
                    &mut d.op,
                    desc.math.lt_compute_type(),
                    lt::cudaDataType_t::CUDA_R_32F,
                )
            },
            "cublasLtMatmulDescCreate",
        )?;
        let set_op = set_attr(lt::cublasLtMatmulDescSetAttribute);
        use lt::cublasLtMatmulDescAttributes_t as D;
        let op = |t: bool| if t { 1i32 } else { 0i32 }; // CUBLAS_OP_T / CUBLAS_OP_N
        set_op(
            d.op,
            D::CUBLASLT_MATMUL_DESC_TRANSA,
            bytes(&op(p.trans_a)),
            "SetAttribute(TRANSA)",
        )?;
        set_op(
            d.op,
            D::CUBLASLT_MATMUL_DESC_TRANSB,
            bytes(&op(p.trans_b)),
            "SetAttribute(TRANSB)",
        )?;
        let epi = desc.epilogue.lt() as u32;
        set_op(
            d.op,
            D::CUBLASLT_MATMUL_DESC_EPILOGUE,
            bytes(&epi),
            "SetAttribute(EPILOGUE)",
        )?;
        let set_layout = set_attr(lt::cublasLtMatrixLayoutSetAttribute);
        use lt::cublasLtMatrixLayoutAttribute_t as L;
        for (slot, l) in d.layouts.iter_mut().zip([p.a, p.b, p.c]) {
            // SAFETY: `slot` is a valid out-pointer.
            lt_ok(
                unsafe { lt::cublasLtMatrixLayoutCreate(slot, dt, l.rows, l.cols, l.ld) },
                "cublasLtMatrixLayoutCreate",
            )?;
            if l.batch > 1 {
                let call = "cublasLtMatrixLayoutSetAttribute(BATCH)";
                set_layout(
                    *slot,
                    L::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    bytes(&l.batch),
                    call,
                )?;
                let off = L::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET;
                set_layout(*slot, off, bytes(&l.stride), call)?;
            }
        }
        Ok(d)
    }

    /// Asks cuBLASLt's heuristics for the best algorithm that needs at most `workspace_limit`
    /// bytes of workspace and relies on no more than `desc.min_align` pointer alignment.
    pub fn select(&self, desc: &GemmDesc, workspace_limit: usize) -> LibResult<GemmTactic> {
        const WANT: usize = 8;
        self.candidates(desc, workspace_limit, WANT)?
            .into_iter()
            .next()
            .ok_or_else(|| LibError::NoAlgorithm {
                library: "cuBLASLt",
                problem: format!("{desc:?}"),
                limit: workspace_limit,
            })
    }

    /// cuBLASLt's heuristic top `want` algorithms (best first) that succeed, need at most
    /// `workspace_limit` bytes of workspace and rely on no more than `desc.min_align` pointer
    /// alignment; empty when the heuristics know none (`NOT_SUPPORTED`).
    pub fn candidates(
        &self,
        desc: &GemmDesc,
        workspace_limit: usize,
        want: usize,
    ) -> LibResult<Vec<GemmTactic>> {
        let want = want.clamp(1, MAX_CANDIDATES);
        self.bind()?;
        let d = self.descs(desc)?;
        let mut pref = std::ptr::null_mut();
        // SAFETY: `pref` is a valid out-pointer.
        lt_ok(
            unsafe { lt::cublasLtMatmulPreferenceCreate(&mut pref) },
            "cublasLtMatmulPreferenceCreate",
        )?;
        struct Pref(lt::cublasLtMatmulPreference_t);
        impl Drop for Pref {
            fn drop(&mut self) {
                // SAFETY: created above, destroyed once.
                unsafe { lt::cublasLtMatmulPreferenceDestroy(self.0) };
            }
        }
        let pref = Pref(pref);
        let set = set_attr(lt::cublasLtMatmulPreferenceSetAttribute);
        use lt::cublasLtMatmulPreferenceAttributes_t as P;
        let ws = workspace_limit as u64;
        let call = "cublasLtMatmulPreferenceSetAttribute";
        set(
            pref.0,
            P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            bytes(&ws),
            call,
        )?;
        let align = desc.min_align.min(256) as u32;
        for a in [
            P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
            P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
            P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
        ] {
            set(pref.0, a, bytes(&align), call)?;
        }
        // SAFETY: a zeroed heuristic result is a valid value of this plain C struct.
        let zero: lt::cublasLtMatmulHeuristicResult_t = unsafe { std::mem::zeroed() };
        let mut results = vec![zero; want];
        let mut found = 0i32;
        // SAFETY: all descriptors are live; `results` has room for `want` entries (≤ 64, so
        // the count fits an i32).
        let status = unsafe {
            lt::cublasLtMatmulAlgoGetHeuristic(
                self.handle.0,
                d.op,
                d.layouts[0],
                d.layouts[1],
                d.layouts[2],
                d.layouts[2],
                pref.0,
                want as i32,
                results.as_mut_ptr(),
                &mut found,
            )
        };
        if status == lt::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED {
            return Ok(Vec::new());
        }
        lt_ok(status, "cublasLtMatmulAlgoGetHeuristic")?;
        let found = (found.max(0) as usize).min(want);
        Ok(results[..found]
            .iter()
            .filter(|r| {
                r.state == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS
                    && r.workspaceSize <= workspace_limit
            })
            .map(|r| GemmTactic {
                algo: r.algo.data,
                workspace: r.workspaceSize,
            })
            .collect())
    }

    /// Checks that a stored tactic still runs `desc` here (`cublasLtMatmulAlgoCheck`).
    pub fn check(&self, desc: &GemmDesc, tactic: &GemmTactic) -> LibResult<()> {
        self.bind()?;
        let d = self.descs(desc)?;
        let algo = lt::cublasLtMatmulAlgo_t { data: tactic.algo };
        // SAFETY: a zeroed result is a valid value of this plain C struct.
        let mut result: lt::cublasLtMatmulHeuristicResult_t = unsafe { std::mem::zeroed() };
        // SAFETY: descriptors are live; `algo` and `result` are valid for the call.
        let status = unsafe {
            lt::cublasLtMatmulAlgoCheck(
                self.handle.0,
                d.op,
                d.layouts[0],
                d.layouts[1],
                d.layouts[2],
                d.layouts[2],
                &algo,
                &mut result,
            )
        };
        lt_ok(status, "cublasLtMatmulAlgoCheck")?;
        if result.workspaceSize > tactic.workspace {
            return Err(invalid(
                "gemm",
                format!(
                    "stored tactic needs {} bytes of workspace, the plan reserved {}; rebuild",
                    result.workspaceSize, tactic.workspace
                ),
            ));
        }
        Ok(())
    }

    /// Queues `desc` with `tactic` on `stream`. Pointers must be live device allocations of
    /// at least [`GemmDesc::spans`] elements, aligned to `desc.min_align`, on this device.
    pub fn enqueue(
        &self,
        stream: &Stream,
        desc: &GemmDesc,
        tactic: &GemmTactic,
        args: &GemmArgs,
    ) -> LibResult<()> {
        if stream.device().info().index != self.device.info().index {
            return Err(invalid(
                "gemm",
                "stream is on another device than the handle",
            ));
        }
        let c = args.c.unwrap_or(args.d);
        let mut ptrs = vec![("a", args.a), ("b", args.b), ("c", c), ("d", args.d)];
        match (desc.epilogue.has_bias(), args.bias) {
            (true, Some(b)) => ptrs.push(("bias", b)),
            (true, None) => return Err(invalid("gemm", "bias epilogue without a bias pointer")),
            (false, _) => {}
        }
        for (name, p) in &ptrs {
            if p.0 == 0 || p.0 % desc.min_align as u64 != 0 {
                return Err(invalid(
                    "gemm",
                    format!(
                        "pointer {name} = {:#x} is null or not {}-byte aligned",
                        p.0, desc.min_align
                    ),
                ));
            }
        }
        if args.workspace_bytes < tactic.workspace
            || (tactic.workspace > 0
                && (args.workspace.0 == 0 || !args.workspace.0.is_multiple_of(16)))
        {
            return Err(invalid(
                "gemm",
                format!(
                    "workspace {:#x} of {} bytes, the tactic needs {} (16-byte aligned)",
                    args.workspace.0, args.workspace_bytes, tactic.workspace
                ),
            ));
        }
        self.bind()?;
        let d = self.descs(desc)?;
        if let Some(bias) = args.bias.filter(|_| desc.epilogue.has_bias()) {
            let set_op = set_attr(lt::cublasLtMatmulDescSetAttribute);
            set_op(
                d.op,
                lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                bytes(&bias.0),
                "cublasLtMatmulDescSetAttribute(BIAS_POINTER)",
            )?;
        }
        let algo = lt::cublasLtMatmulAlgo_t { data: tactic.algo };
        let (alpha, beta) = (desc.alpha, desc.beta);
        let ptr = |p: DevicePtr| p.0 as usize as *const c_void;
        // SAFETY: descriptors are live; the caller guarantees (documented above) that the
        // pointers are device allocations covering the spans, which `validate` bounded; alpha
        // and beta are host f32 scalars as the f32 scale type requires; the workspace holds
        // at least the tactic's bytes; the stream belongs to the handle's device.
        let status = unsafe {
            lt::cublasLtMatmul(
                self.handle.0,
                d.op,
                (&alpha as *const f32).cast(),
                ptr(args.b),
                d.layouts[0],
                ptr(args.a),
                d.layouts[1],
                (&beta as *const f32).cast(),
                ptr(c),
                d.layouts[2],
                args.d.0 as usize as *mut c_void,
                d.layouts[2],
                &algo,
                args.workspace.0 as usize as *mut c_void,
                args.workspace_bytes,
                stream.cuda_stream().cu_stream() as lt::cudaStream_t,
            )
        };
        lt_ok(status, "cublasLtMatmul")
    }
}
