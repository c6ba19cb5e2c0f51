//! The cuDNN side of [`super`]: handle, descriptors, algorithm choice and the calls.

use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::cudnn::sys as dnn;
use kiln_core::DevicePtr;
use kiln_cuda::probe::{self, Library};
use kiln_cuda::{CudaError, Device, Stream};
use serde::{Deserialize, Serialize};

use super::{ConvDesc, ConvKind, ConvLayout};
use crate::kernels::gemm::{LibError, LibResult, MathMode};

/// Symbols of libcudnn that this module calls (checked before the first call).
pub const CUDNN_SYMBOLS: &[&str] = &[
    "cudnnGetVersion",
    "cudnnCreate",
    "cudnnDestroy",
    "cudnnSetStream",
    "cudnnCreateTensorDescriptor",
    "cudnnSetTensor4dDescriptor",
    "cudnnDestroyTensorDescriptor",
    "cudnnCreateFilterDescriptor",
    "cudnnSetFilter4dDescriptor",
    "cudnnDestroyFilterDescriptor",
    "cudnnCreateConvolutionDescriptor",
    "cudnnSetConvolution2dDescriptor",
    "cudnnSetConvolutionGroupCount",
    "cudnnSetConvolutionMathType",
    "cudnnDestroyConvolutionDescriptor",
    "cudnnCreateActivationDescriptor",
    "cudnnSetActivationDescriptor",
    "cudnnDestroyActivationDescriptor",
    "cudnnGetConvolutionForwardAlgorithm_v7",
    "cudnnGetConvolutionForwardWorkspaceSize",
    "cudnnConvolutionForward",
    "cudnnConvolutionBiasActivationForward",
    "cudnnGetConvolutionBackwardDataAlgorithm_v7",
    "cudnnGetConvolutionBackwardDataWorkspaceSize",
    "cudnnConvolutionBackwardData",
    "cudnnAddTensor",
    "cudnnActivationForward",
];

/// The algorithm chosen for a [`ConvDesc`]: cuDNN's algorithm number (forward or
/// backward-data enum), its math type, the workspace it needs and whether bias/ReLU/residual
/// run fused in `cudnnConvolutionBiasActivationForward`. Valid for the same GPU and cuDNN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvTactic {
    pub algo: u32,
    pub math_type: u32,
    pub workspace: usize,
    pub fused: bool,
}

/// Pointers of one convolution call. `bias` is read when the description has a bias,
/// `residual` when it has a residual.
#[derive(Debug, Clone, Copy)]
pub struct ConvArgs {
    pub input: DevicePtr,
    pub weight: DevicePtr,
    pub output: DevicePtr,
    pub bias: Option<DevicePtr>,
    pub residual: Option<DevicePtr>,
    pub workspace: DevicePtr,
    pub workspace_bytes: usize,
}

fn dnn_err(call: &'static str, s: dnn::cudnnStatus_t) -> LibError {
    LibError::Call {
        library: "cuDNN",
        call,
        status: format!("{s:?}"),
        hint: if s == dnn::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED {
            " (cuDNN does not support this convolution configuration)"
        } else {
            ""
        },
    }
}

fn ok(s: dnn::cudnnStatus_t, call: &'static str) -> LibResult<()> {
    if s == dnn::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(dnn_err(call, s))
    }
}

/// The raw cuDNN handle; only used under [`Dnn`]'s mutex.
struct Handle(dnn::cudnnHandle_t);

// SAFETY: a cuDNN handle may be used from any host thread as long as calls are not
// concurrent; `Dnn` only touches it while holding its mutex.
unsafe impl Send for Handle {}

/// cuDNN on one device. The handle is created once; every call sets its stream under a mutex.
pub struct Dnn {
    handle: Mutex<Handle>,
    device: Arc<Device>,
    version: usize,
}

impl std::fmt::Debug for Dnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dnn(cuDNN {}, device {})",
            self.version,
            self.device.info().index
        )
    }
}

impl Drop for Dnn {
    fn drop(&mut self) {
        let h = self.handle.get_mut().unwrap_or_else(|p| p.into_inner());
        if self.device.cuda_context().bind_to_thread().is_ok() {
            // SAFETY: created by cudnnCreate, destroyed once.
            let s = unsafe { dnn::cudnnDestroy(h.0) };
            if s != dnn::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
                tracing::warn!(?s, "cudnnDestroy failed");
            }
        }
    }
}

/// Descriptors of one call, destroyed on drop.
struct Descs {
    x: dnn::cudnnTensorDescriptor_t,
    y: dnn::cudnnTensorDescriptor_t,
    bias: dnn::cudnnTensorDescriptor_t,
    w: dnn::cudnnFilterDescriptor_t,
    conv: dnn::cudnnConvolutionDescriptor_t,
    act: dnn::cudnnActivationDescriptor_t,
}

impl Drop for Descs {
    fn drop(&mut self) {
        // SAFETY: each non-null descriptor was created by its Create call and is freed once.
        unsafe {
            for t in [self.x, self.y, self.bias] {
                if !t.is_null() {
                    dnn::cudnnDestroyTensorDescriptor(t);
                }
            }
            if !self.w.is_null() {
                dnn::cudnnDestroyFilterDescriptor(self.w);
            }
            if !self.conv.is_null() {
                dnn::cudnnDestroyConvolutionDescriptor(self.conv);
            }
            if !self.act.is_null() {
                dnn::cudnnDestroyActivationDescriptor(self.act);
            }
        }
    }
}

fn data_type(m: MathMode) -> dnn::cudnnDataType_t {
    match m {
        MathMode::Fp32 | MathMode::Tf32 => dnn::cudnnDataType_t::CUDNN_DATA_FLOAT,
        MathMode::Fp16 => dnn::cudnnDataType_t::CUDNN_DATA_HALF,
        MathMode::Bf16 => dnn::cudnnDataType_t::CUDNN_DATA_BFLOAT16,
    }
}

fn format(l: ConvLayout) -> dnn::cudnnTensorFormat_t {
    match l {
        ConvLayout::Nchw => dnn::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
        ConvLayout::Nhwc => dnn::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
    }
}

/// The math type requested before the heuristics: FMA only for strict fp32, tensor cores
/// otherwise.
fn requested_math(m: MathMode) -> dnn::cudnnMathType_t {
    match m {
        MathMode::Fp32 => dnn::cudnnMathType_t::CUDNN_FMA_MATH,
        _ => dnn::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
    }
}

fn math_from_u32(v: u32) -> Option<dnn::cudnnMathType_t> {
    use dnn::cudnnMathType_t as M;
    [
        M::CUDNN_DEFAULT_MATH,
        M::CUDNN_TENSOR_OP_MATH,
        M::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
        M::CUDNN_FMA_MATH,
    ]
    .into_iter()
    .find(|m| *m as u32 == v)
}

fn fwd_algo(v: u32) -> Option<dnn::cudnnConvolutionFwdAlgo_t> {
    use dnn::cudnnConvolutionFwdAlgo_t as A;
    [
        A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        A::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        A::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        A::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        A::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
    ]
    .into_iter()
    .find(|a| *a as u32 == v)
}

fn bwd_algo(v: u32) -> Option<dnn::cudnnConvolutionBwdDataAlgo_t> {
    use dnn::cudnnConvolutionBwdDataAlgo_t as A;
    [
        A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
        A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        A::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
    ]
    .into_iter()
    .find(|a| *a as u32 == v)
}

fn int(v: usize) -> LibResult<i32> {
    i32::try_from(v).map_err(|_| LibError::Unsupported {
        op: "conv",
        what: format!("dimension {v} beyond cuDNN's int range"),
    })
}

impl Dnn {
    /// Probes libcudnn (version 9, every symbol used here) and creates the handle.
    pub fn new(device: &Arc<Device>) -> LibResult<Arc<Dnn>> {
        let info = probe::probe_library(Library::Cudnn)?;
        // SAFETY: the probe opened the library under the names cudarc tries, in its order, so
        // cudarc's loader finds the same file; symbols are only looked up, not called.
        let lib = unsafe { dnn::culib() };
        for &symbol in CUDNN_SYMBOLS {
            // SAFETY: looking up a symbol's address has no side effect.
            if unsafe { lib.get::<*const ()>(symbol) }.is_err() {
                return Err(CudaError::SymbolMissing {
                    library: Library::Cudnn.name(),
                    path: info.file.clone(),
                    symbol,
                }
                .into());
            }
        }
        // SAFETY: checked above; no arguments.
        let version = unsafe { dnn::cudnnGetVersion() };
        if !(90_000..100_000).contains(&version) {
            return Err(LibError::Unsupported {
                op: "conv",
                what: format!(
                    "cuDNN version {version} in {} (kiln's bindings are for cuDNN 9): install \
                     cuDNN 9",
                    info.file
                ),
            });
        }
        bind(device)?;
        let mut h = std::ptr::null_mut();
        // SAFETY: `h` is a valid out-pointer; the device's context is current.
        ok(unsafe { dnn::cudnnCreate(&mut h) }, "cudnnCreate")?;
        tracing::debug!(version, file = %info.file, "cuDNN handle created");
        Ok(Arc::new(Dnn {
            handle: Mutex::new(Handle(h)),
            device: device.clone(),
            version,
        }))
    }

    /// cuDNN's version number (`major*10000 + minor*100 + patch`).
    pub fn version(&self) -> usize {
        self.version
    }

    fn descs(&self, d: &ConvDesc, math: dnn::cudnnMathType_t) -> LibResult<Descs> {
        d.validate()?;
        let g = &d.geometry;
        let mut s = Descs {
            x: std::ptr::null_mut(),
            y: std::ptr::null_mut(),
            bias: std::ptr::null_mut(),
            w: std::ptr::null_mut(),
            conv: std::ptr::null_mut(),
            act: std::ptr::null_mut(),
        };
        let (dt, fmt) = (data_type(d.math), format(d.layout));
        let out = g.out_hw().unwrap_or([0, 0]);
        // The forward convolution's x and y (for a transpose: its output and input).
        let tensors = [
            (&mut s.x, [g.n, g.c, g.hw[0], g.hw[1]]),
            (&mut s.y, [g.n, g.k, out[0], out[1]]),
            (&mut s.bias, [1, d.bias_len(), 1, 1]),
        ];
        for (slot, [n, c, h, w]) in tensors {
            // SAFETY: valid out-pointer, then a live descriptor with int dims.
            unsafe {
                ok(
                    dnn::cudnnCreateTensorDescriptor(slot),
                    "cudnnCreateTensorDescriptor",
                )?;
                ok(
                    dnn::cudnnSetTensor4dDescriptor(
                        *slot,
                        fmt,
                        dt,
                        int(n)?,
                        int(c)?,
                        int(h)?,
                        int(w)?,
                    ),
                    "cudnnSetTensor4dDescriptor",
                )?;
            }
        }
        let [k, c, r, sz] = g.filter_dims();
        let conv_type = dnn::cudnnDataType_t::CUDNN_DATA_FLOAT; // f32 accumulation everywhere
        // SAFETY: valid out-pointers, then live descriptors with int arguments.
        unsafe {
            ok(
                dnn::cudnnCreateFilterDescriptor(&mut s.w),
                "cudnnCreateFilterDescriptor",
            )?;
            ok(
                dnn::cudnnSetFilter4dDescriptor(s.w, dt, fmt, int(k)?, int(c)?, int(r)?, int(sz)?),
                "cudnnSetFilter4dDescriptor",
            )?;
            ok(
                dnn::cudnnCreateConvolutionDescriptor(&mut s.conv),
                "cudnnCreateConvolutionDescriptor",
            )?;
            ok(
                dnn::cudnnSetConvolution2dDescriptor(
                    s.conv,
                    int(g.pads[0])?,
                    int(g.pads[1])?,
                    int(g.strides[0])?,
                    int(g.strides[1])?,
                    int(g.dilations[0])?,
                    int(g.dilations[1])?,
                    dnn::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    conv_type,
                ),
                "cudnnSetConvolution2dDescriptor",
            )?;
            ok(
                dnn::cudnnSetConvolutionGroupCount(s.conv, int(g.groups)?),
                "cudnnSetConvolutionGroupCount",
            )?;
            ok(
                dnn::cudnnSetConvolutionMathType(s.conv, math),
                "cudnnSetConvolutionMathType",
            )?;
            ok(
                dnn::cudnnCreateActivationDescriptor(&mut s.act),
                "cudnnCreateActivationDescriptor",
            )?;
            let mode = if d.relu {
                dnn::cudnnActivationMode_t::CUDNN_ACTIVATION_RELU
            } else {
                dnn::cudnnActivationMode_t::CUDNN_ACTIVATION_IDENTITY
            };
            ok(
                dnn::cudnnSetActivationDescriptor(
                    s.act,
                    mode,
                    dnn::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
                    0.0,
                ),
                "cudnnSetActivationDescriptor",
            )?;
        }
        Ok(s)
    }

    /// cuDNN's heuristic list for `d`, best first: `(algorithm, math type, estimated
    /// workspace)` of the entries that succeed and, for strict fp32, use no tensor cores.
    fn heuristics(&self, h: &Handle, d: &ConvDesc) -> LibResult<Vec<(u32, u32, usize)>> {
        let s = self.descs(d, requested_math(d.math))?;
        let strict = d.math == MathMode::Fp32;
        const WANT: usize = 16;
        let mut found = 0i32;
        let mut cands: Vec<(u32, u32, usize)> = Vec::new();
        match d.kind {
            ConvKind::Forward => {
                // SAFETY: zeroed perf structs are valid plain C values.
                let mut perf: [dnn::cudnnConvolutionFwdAlgoPerf_t; WANT] =
                    unsafe { std::mem::zeroed() };
                // SAFETY: descriptors are live; `perf` holds WANT entries.
                ok(
                    unsafe {
                        dnn::cudnnGetConvolutionForwardAlgorithm_v7(
                            h.0,
                            s.x,
                            s.w,
                            s.conv,
                            s.y,
                            WANT as i32,
                            &mut found,
                            perf.as_mut_ptr(),
                        )
                    },
                    "cudnnGetConvolutionForwardAlgorithm_v7",
                )?;
                for p in &perf[..(found.max(0) as usize).min(WANT)] {
                    if p.status == dnn::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
                        cands.push((p.algo as u32, p.mathType as u32, p.memory));
                    }
                }
            }
            ConvKind::Transpose => {
                // SAFETY: zeroed perf structs are valid plain C values.
                let mut perf: [dnn::cudnnConvolutionBwdDataAlgoPerf_t; WANT] =
                    unsafe { std::mem::zeroed() };
                // SAFETY: descriptors are live; `perf` holds WANT entries.
                ok(
                    unsafe {
                        dnn::cudnnGetConvolutionBackwardDataAlgorithm_v7(
                            h.0,
                            s.w,
                            s.y,
                            s.conv,
                            s.x,
                            WANT as i32,
                            &mut found,
                            perf.as_mut_ptr(),
                        )
                    },
                    "cudnnGetConvolutionBackwardDataAlgorithm_v7",
                )?;
                for p in &perf[..(found.max(0) as usize).min(WANT)] {
                    if p.status == dnn::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
                        cands.push((p.algo as u32, p.mathType as u32, p.memory));
                    }
                }
            }
        }
        let tensor_op = dnn::cudnnMathType_t::CUDNN_TENSOR_OP_MATH as u32;
        let convert = dnn::cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION as u32;
        cands.retain(|&(_, m, _)| !(strict && (m == tensor_op || m == convert)));
        Ok(cands)
    }

    /// The workspace `algo` needs under its own math type (the heuristics only estimate).
    fn exact_workspace(&self, h: &Handle, d: &ConvDesc, algo: u32, math: u32) -> LibResult<usize> {
        let math_t = math_from_u32(math).unwrap_or(requested_math(d.math));
        let s = self.descs(d, math_t)?;
        let mut exact = 0usize;
        // SAFETY: descriptors are live; algo values come from cuDNN's own enumeration.
        let status = unsafe {
            match d.kind {
                ConvKind::Forward => dnn::cudnnGetConvolutionForwardWorkspaceSize(
                    h.0,
                    s.x,
                    s.w,
                    s.conv,
                    s.y,
                    fwd_algo(algo).ok_or_else(|| bad_algo(algo))?,
                    &mut exact,
                ),
                ConvKind::Transpose => dnn::cudnnGetConvolutionBackwardDataWorkspaceSize(
                    h.0,
                    s.w,
                    s.y,
                    s.conv,
                    s.x,
                    bwd_algo(algo).ok_or_else(|| bad_algo(algo))?,
                    &mut exact,
                ),
            }
        };
        ok(status, "cudnnGetConvolution*WorkspaceSize")?;
        Ok(exact)
    }

    /// Picks the first algorithm of cuDNN's heuristics (best first) that succeeds, needs at
    /// most `workspace_limit` bytes and, for strict fp32, uses no tensor cores.
    pub fn select(&self, d: &ConvDesc, workspace_limit: usize) -> LibResult<ConvTactic> {
        let h = self.lock()?;
        let mut cands = self.heuristics(&h, d)?;
        cands.retain(|&(_, _, ws)| ws <= workspace_limit);
        // Fuse when the best algorithm allows it, or when one of the three best does (a
        // saved pass over the output).
        let pick = match cands.first() {
            Some(best) if fusable(d, best.0) => Some(*best),
            Some(best) => Some(
                cands
                    .iter()
                    .take(3)
                    .copied()
                    .find(|c| fusable(d, c.0))
                    .unwrap_or(*best),
            ),
            None => None,
        };
        let Some((algo, math, ws)) = pick else {
            return Err(LibError::NoAlgorithm {
                library: "cuDNN",
                problem: format!("{d:?}"),
                limit: workspace_limit,
            });
        };
        let ws = ws.max(self.exact_workspace(&h, d, algo, math)?);
        if ws > workspace_limit {
            return Err(LibError::NoAlgorithm {
                library: "cuDNN",
                problem: format!("{d:?} (algorithm {algo} needs {ws} bytes)"),
                limit: workspace_limit,
            });
        }
        Ok(ConvTactic {
            algo,
            math_type: math,
            workspace: ws,
            fused: fusable(d, algo),
        })
    }

    /// cuDNN's heuristic top `want` algorithms (best first) as the tactics [`Dnn::enqueue`]
    /// would run: each with its exact workspace (those over `workspace_limit` left out) and
    /// fused exactly when `cudnnConvolutionBiasActivationForward` takes it. For timing.
    pub fn candidates(
        &self,
        d: &ConvDesc,
        workspace_limit: usize,
        want: usize,
    ) -> LibResult<Vec<ConvTactic>> {
        let h = self.lock()?;
        let mut out = Vec::new();
        for (algo, math, est) in self.heuristics(&h, d)? {
            if out.len() >= want.max(1) {
                break;
            }
            if est > workspace_limit {
                continue;
            }
            let ws = est.max(self.exact_workspace(&h, d, algo, math)?);
            if ws > workspace_limit {
                continue;
            }
            out.push(ConvTactic {
                algo,
                math_type: math,
                workspace: ws,
                fused: fusable(d, algo),
            });
        }
        Ok(out)
    }

    fn lock(&self) -> LibResult<std::sync::MutexGuard<'_, Handle>> {
        let h = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        bind(&self.device)?;
        Ok(h)
    }

    /// Queues the convolution on `stream`. Pointers must be live device allocations on this
    /// device holding the packed tensors of [`ConvDesc::input_dims`] / `output_dims` (in the
    /// description's layout), the filter, `bias_len` bias values and a residual of the
    /// output's shape; all of the description's storage type.
    pub fn enqueue(
        &self,
        stream: &Stream,
        d: &ConvDesc,
        t: &ConvTactic,
        a: &ConvArgs,
    ) -> LibResult<()> {
        if stream.device().info().index != self.device.info().index {
            return Err(invalid("stream is on another device than the handle"));
        }
        let bias = match (d.bias, a.bias) {
            (true, Some(b)) => Some(b),
            (true, None) => return Err(invalid("bias expected")),
            (false, _) => None,
        };
        let residual = match (d.residual, a.residual) {
            (true, Some(r)) => Some(r),
            (true, None) => return Err(invalid("residual expected")),
            (false, _) => None,
        };
        for (name, p) in [
            ("input", a.input),
            ("weight", a.weight),
            ("output", a.output),
        ] {
            if p.0 == 0 || p.0 % d.math.elem_bytes() as u64 != 0 {
                return Err(invalid(format!(
                    "{name} pointer {:#x} null or misaligned",
                    p.0
                )));
            }
        }
        if a.workspace_bytes < t.workspace || (t.workspace > 0 && a.workspace.0 == 0) {
            return Err(invalid(format!(
                "workspace of {} bytes, the tactic needs {}",
                a.workspace_bytes, t.workspace
            )));
        }
        let math = math_from_u32(t.math_type)
            .ok_or_else(|| invalid(format!("math type {}", t.math_type)))?;
        let h = self.lock()?;
        let s = self.descs(d, math)?;
        // SAFETY: the handle is live and held under the mutex; the stream belongs to its device.
        ok(
            unsafe {
                dnn::cudnnSetStream(h.0, stream.cuda_stream().cu_stream() as dnn::cudaStream_t)
            },
            "cudnnSetStream",
        )?;
        let p = |x: DevicePtr| x.0 as usize as *const c_void;
        let out = a.output.0 as usize as *mut c_void;
        let ws = a.workspace.0 as usize as *mut c_void;
        let (one, zero) = (1.0f32, 0.0f32);
        let one_p = (&one as *const f32).cast::<c_void>();
        let zero_p = (&zero as *const f32).cast::<c_void>();
        match d.kind {
            ConvKind::Forward => {
                let algo = fwd_algo(t.algo).ok_or_else(|| bad_algo(t.algo))?;
                if t.fused {
                    let (z, alpha2) = match residual {
                        Some(r) => (p(r), one_p),
                        None => (out.cast_const(), zero_p),
                    };
                    let bias_p = p(bias.ok_or_else(|| invalid("fused tactic without a bias"))?);
                    // SAFETY: descriptors and handle are live; pointers are device allocations
                    // the caller sized per the descriptors (documented above); alpha1/alpha2
                    // are host f32 scalars as float-accumulating convolutions require.
                    return ok(
                        unsafe {
                            dnn::cudnnConvolutionBiasActivationForward(
                                h.0,
                                one_p,
                                s.x,
                                p(a.input),
                                s.w,
                                p(a.weight),
                                s.conv,
                                algo,
                                ws,
                                a.workspace_bytes,
                                alpha2,
                                s.y,
                                z,
                                s.bias,
                                bias_p,
                                s.act,
                                s.y,
                                out,
                            )
                        },
                        "cudnnConvolutionBiasActivationForward",
                    );
                }
                // SAFETY: as above.
                ok(
                    unsafe {
                        dnn::cudnnConvolutionForward(
                            h.0,
                            one_p,
                            s.x,
                            p(a.input),
                            s.w,
                            p(a.weight),
                            s.conv,
                            algo,
                            ws,
                            a.workspace_bytes,
                            zero_p,
                            s.y,
                            out,
                        )
                    },
                    "cudnnConvolutionForward",
                )?;
                if let Some(r) = residual {
                    // SAFETY: residual and output have the output descriptor's shape.
                    ok(
                        unsafe { dnn::cudnnAddTensor(h.0, one_p, s.y, p(r), one_p, s.y, out) },
                        "cudnnAddTensor",
                    )?;
                }
            }
            ConvKind::Transpose => {
                let algo = bwd_algo(t.algo).ok_or_else(|| bad_algo(t.algo))?;
                // SAFETY: as above; dy is the transpose's input (forward y), dx its output.
                ok(
                    unsafe {
                        dnn::cudnnConvolutionBackwardData(
                            h.0,
                            one_p,
                            s.w,
                            p(a.weight),
                            s.y,
                            p(a.input),
                            s.conv,
                            algo,
                            ws,
                            a.workspace_bytes,
                            zero_p,
                            s.x,
                            out,
                        )
                    },
                    "cudnnConvolutionBackwardData",
                )?;
            }
        }
        let out_desc = if d.kind == ConvKind::Forward {
            s.y
        } else {
            s.x
        };
        if let Some(b) = bias {
            // SAFETY: the bias descriptor is 1×C×1×1 of the output's channels; broadcast add.
            ok(
                unsafe { dnn::cudnnAddTensor(h.0, one_p, s.bias, p(b), one_p, out_desc, out) },
                "cudnnAddTensor",
            )?;
        }
        if d.relu {
            // SAFETY: in-place activation on the output tensor is allowed by cuDNN.
            ok(
                unsafe {
                    dnn::cudnnActivationForward(
                        h.0,
                        s.act,
                        one_p,
                        out_desc,
                        out.cast_const(),
                        zero_p,
                        out_desc,
                        out,
                    )
                },
                "cudnnActivationForward",
            )?;
        }
        Ok(())
    }
}

/// Whether [`Dnn::enqueue`] runs `algo` through `cudnnConvolutionBiasActivationForward`: it
/// reads a bias and runs any algorithm with ReLU, only IMPLICIT_PRECOMP_GEMM with the identity.
fn fusable(d: &ConvDesc, algo: u32) -> bool {
    let precomp =
        dnn::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM as u32;
    d.kind == ConvKind::Forward && d.bias && (d.relu || algo == precomp)
}

fn bad_algo(v: u32) -> LibError {
    invalid(format!("unknown cuDNN algorithm {v}; rebuild the plan"))
}

fn invalid(what: impl Into<String>) -> LibError {
    LibError::Invalid {
        op: "conv",
        what: what.into(),
    }
}

fn bind(device: &Device) -> LibResult<()> {
    device.cuda_context().bind_to_thread().map_err(|e| {
        CudaError::Driver {
            op: "cuCtxSetCurrent",
            message: e.to_string(),
        }
        .into()
    })
}
