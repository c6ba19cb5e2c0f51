//! MaxPool / AveragePool in 2-D (1-D as 2-D with a height of 1) and the global pools.
//!
//! The window geometry is kiln-reference's: input position of output `o`, tap `k` is
//! `o * stride - pad_begin + k * dilation`; taps outside the input are skipped. MaxPool keeps
//! the first maximum in window order (a NaN there stays; later NaNs are ignored), and an
//! output whose window holds no input element is 0. AveragePool sums in f32 and divides by
//! the taps inside the input, or with `count_include_pad` by the taps inside the input and
//! its explicit pads (not those that `ceil_mode` adds past the end). GlobalMaxPool propagates
//! NaN; GlobalAveragePool is the f32 mean. MaxPool's optional `Indices` (int64) are flat
//! positions in the whole input, row-major or with `storage_order = 1` column-major over the
//! spatial axes, -1 for an empty window.
//!
//! The NHWC variants ([`pool2d_nhwc`], [`global_pool_nhwc`], module [`nhwc_module`]) compute
//! the same values on `[N, H, W, C]` tensors for the NHWC regions of fp16/bf16 convolution
//! networks: one thread per output position and group of channels, so neighbouring threads
//! read neighbouring channels (coalesced), 16 bytes at a time when the channel count and both
//! addresses allow it (8 fp16/bf16 or 4 f32 values). They have no `Indices` output.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{BLOCK, grid_for};
use super::library::ModuleSpec;
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, invalid, unsupported};

const BODY: &str = r#"
extern "C" __global__ void kiln_pool2d(const A_s* px, A_s* py, long long n, long long H,
    long long W, long long OH, long long OW, long long KH, long long KW, long long SH,
    long long SW, long long DH, long long DW, long long PT, long long PL, long long PB,
    long long PR, int mode, long long* pidx, int col_major) {
    KILN_GRID_LOOP(i, n) {
        long long ow = i % OW, t = i / OW;
        long long oh = t % OH, nc = t / OH;
        const long long base = nc * H * W;
        float best = 0.f, sum = 0.f;
        int found = 0;
        long long cnt = 0, padded = 0, bh = 0, bw = 0;
        for (long long kh = 0; kh < KH; ++kh) {
            long long h = oh * SH - PT + kh * DH;
            for (long long kw = 0; kw < KW; ++kw) {
                long long w = ow * SW - PL + kw * DW;
                if (h >= -PT && h < H + PB && w >= -PL && w < W + PR) padded++;
                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                float v = A_tof(A_ld(px, base + h * W + w));
                if (mode == 0) {
                    if (!found || v > best) { best = v; found = 1; bh = h; bw = w; }
                } else {
                    sum += v;
                    cnt++;
                }
            }
        }
        float y;
        if (mode == 0) y = best;
        else y = sum / (float)(mode == 2 ? padded : cnt);
        A_st(py, i, A_fromf(y));
        if (pidx) pidx[i] = found ? base + (col_major ? bh + bw * H : bh * W + bw) : -1;
    }
}

extern "C" __global__ void kiln_global_pool(const A_s* px, A_s* py, long long rows,
    long long len, int is_max) {
    __shared__ float shm[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        float acc = is_max ? -kiln_inf() : 0.f;
        for (long long k = threadIdx.x; k < len; k += blockDim.x) {
            float v = A_tof(A_ld(px, r * len + k));
            acc = is_max ? kiln_maxf(acc, v) : acc + v;
        }
        float y;
        if (is_max) y = kiln_block_reduce<KMax>(acc, shm);
        else y = kiln_block_reduce<KSum>(acc, shm) / (float)len;
        if (threadIdx.x == 0) A_st(py, r, A_fromf(y));
    }
}
"#;

/// The pooling module for `dtype` (f32, f16, bf16).
pub fn module(dtype: DataType) -> Result<ModuleSpec> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("pooling", dtype))?;
    let mut body = type_defs("A", t);
    body.push_str(BODY);
    Ok(ModuleSpec {
        name: format!("pool_{}", t.tag),
        source: module_source(&body),
    })
}

/// What a 2-D pool computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Average { count_include_pad: bool },
}

/// A 2-D pooling window: per axis (height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window2d {
    pub input: [usize; 2],
    pub output: [usize; 2],
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub pad_begin: [usize; 2],
    pub pad_end: [usize; 2],
}

impl PoolKind {
    /// The kernels' `mode` argument: 0 max, 1 average over the window's cells inside the
    /// input, 2 average counting the padding.
    fn mode(self) -> i32 {
        match self {
            PoolKind::Max => 0,
            PoolKind::Average {
                count_include_pad: false,
            } => 1,
            PoolKind::Average {
                count_include_pad: true,
            } => 2,
        }
    }
}

impl Window2d {
    /// The window's kernel arguments, shared by the NCHW and NHWC kernels: input and output
    /// height/width, kernel, strides, dilations, pads at the beginning and end, then `mode`.
    fn args(&self, kind: PoolKind) -> Vec<Arg> {
        let mut v: Vec<Arg> = [
            self.input,
            self.output,
            self.kernel,
            self.strides,
            self.dilations,
            self.pad_begin,
            self.pad_end,
        ]
        .iter()
        .flatten()
        .map(|&d| Arg::I64(d as i64))
        .collect();
        v.push(Arg::I32(kind.mode()));
        v
    }
}

impl Window2d {
    /// The ONNX output size of one axis with explicit pads (`ceil_mode` as the reference:
    /// the ceiling, less one when the last window would start in the end padding).
    pub fn output_len(
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        pads: (usize, usize),
        ceil_mode: bool,
    ) -> Option<usize> {
        let ek = (kernel.checked_sub(1)?).checked_mul(dilation)? + 1;
        let total = input + pads.0 + pads.1;
        let span = total.checked_sub(ek)?;
        if stride == 0 {
            return None;
        }
        let mut out = if ceil_mode {
            span.div_ceil(stride)
        } else {
            span / stride
        } + 1;
        if ceil_mode && (out - 1) * stride >= input + pads.0 {
            out -= 1;
        }
        Some(out)
    }
}

/// A 2-D pool over `nc` planes of a row-major `[N, C, H, W]` tensor.
#[allow(clippy::too_many_arguments)]
pub fn pool2d(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    kind: PoolKind,
    nc: usize,
    w: &Window2d,
    x: DevicePtr,
    y: DevicePtr,
) -> Result<()> {
    launch_pool2d(lib, stream, dtype, kind, nc, w, (x, y), None)
}

/// Where MaxPool writes its `Indices` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolIndices {
    /// int64, one per output element.
    pub ptr: DevicePtr,
    /// ONNX `storage_order = 1`: spatial positions counted column-major (`h + w * H`).
    pub column_major: bool,
}

/// MaxPool over `nc` planes that also writes `Indices`: flat positions in the whole input
/// `[N, C, H, W]` (`plane * H * W` plus the spatial position, row-major or column-major),
/// -1 where the window holds no input element (kiln-reference's convention).
#[allow(clippy::too_many_arguments)]
pub fn max_pool2d_with_indices(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    nc: usize,
    w: &Window2d,
    x: DevicePtr,
    y: DevicePtr,
    indices: PoolIndices,
) -> Result<()> {
    if indices.ptr.0 == 0 {
        return Err(invalid("max_pool", "the Indices address is 0"));
    }
    launch_pool2d(
        lib,
        stream,
        dtype,
        PoolKind::Max,
        nc,
        w,
        (x, y),
        Some(indices),
    )
}

#[allow(clippy::too_many_arguments)]
fn launch_pool2d(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    kind: PoolKind,
    nc: usize,
    w: &Window2d,
    (x, y): (DevicePtr, DevicePtr),
    indices: Option<PoolIndices>,
) -> Result<()> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("pooling", dtype))?;
    if w.kernel.contains(&0) || w.strides.contains(&0) || w.dilations.contains(&0) {
        return Err(invalid("pool", format!("window {w:?} has a zero size")));
    }
    let n = nc
        .checked_mul(w.output[0] * w.output[1])
        .ok_or_else(|| invalid("pool", "too large"))?;
    if n == 0 {
        return Ok(());
    }
    let mut args = vec![Arg::Ptr(x.0), Arg::Ptr(y.0), Arg::I64(n as i64)];
    args.extend(w.args(kind));
    args.push(Arg::Ptr(indices.map_or(0, |i| i.ptr.0)));
    args.push(Arg::I32(i32::from(indices.is_some_and(|i| i.column_major))));
    lib.launch(
        stream,
        &format!("pool_{}", t.tag),
        || module(dtype).map(|m| m.source).unwrap_or_default(),
        "kiln_pool2d",
        (grid_for(n), BLOCK, 0),
        &args,
    )
}

/// GlobalMaxPool / GlobalAveragePool: `rows = N * C` planes of `len` spatial elements.
#[allow(clippy::too_many_arguments)]
pub fn global_pool(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    max: bool,
    rows: usize,
    len: usize,
    x: DevicePtr,
    y: DevicePtr,
) -> Result<()> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("global pooling", dtype))?;
    if rows == 0 {
        return Ok(());
    }
    let args = [
        Arg::Ptr(x.0),
        Arg::Ptr(y.0),
        Arg::I64(rows as i64),
        Arg::I64(len as i64),
        Arg::I32(i32::from(max)),
    ];
    lib.launch(
        stream,
        &format!("pool_{}", t.tag),
        || module(dtype).map(|m| m.source).unwrap_or_default(),
        "kiln_global_pool",
        (
            rows.min(1 << 20) as u32,
            super::layout::row_block(len).min(256),
            0,
        ),
        &args,
    )
}

const NHWC_BODY: &str = r#"
// V channels per thread: 1, or KV (one 16-byte word) when C and both addresses allow it.
#define KV (16 / (int)sizeof(A_s))
struct alignas(16) KVec { A_s e[KV]; };

template <int V>
__device__ __forceinline__ void kiln_ldv(const A_s* p, float* f) {
    if (V == 1) {
        f[0] = A_tof(A_ld(p, 0));
    } else {
        KVec v = *reinterpret_cast<const KVec*>(p);
#pragma unroll
        for (int j = 0; j < V; ++j) f[j] = A_tof(A_ld(v.e, j));
    }
}

template <int V>
__device__ __forceinline__ void kiln_stv(A_s* p, const float* f) {
    if (V == 1) {
        A_st(p, 0, A_fromf(f[0]));
    } else {
        KVec v;
#pragma unroll
        for (int j = 0; j < V; ++j) A_st(v.e, j, A_fromf(f[j]));
        *reinterpret_cast<KVec*>(p) = v;
    }
}

// One thread per (n, oh, ow, group of V channels); taps as kiln_pool2d.
template <int V>
__device__ __forceinline__ void kiln_pool_nhwc(const A_s* px, A_s* py, long long n,
    long long C, long long H, long long W, long long OH, long long OW, long long KH,
    long long KW, long long SH, long long SW, long long DH, long long DW, long long PT,
    long long PL, long long PB, long long PR, int mode) {
    const long long CV = C / V;
    KILN_GRID_LOOP(i, n) {
        long long cv = i % CV, t = i / CV;
        long long ow = t % OW;
        t /= OW;
        long long oh = t % OH, b = t / OH;
        float acc[V];
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] = 0.f;
        int found = 0;
        long long cnt = 0, padded = 0;
        for (long long kh = 0; kh < KH; ++kh) {
            long long h = oh * SH - PT + kh * DH;
            for (long long kw = 0; kw < KW; ++kw) {
                long long w = ow * SW - PL + kw * DW;
                if (h >= -PT && h < H + PB && w >= -PL && w < W + PR) padded++;
                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                float v[V];
                kiln_ldv<V>(px + ((b * H + h) * W + w) * C + cv * V, v);
                if (mode == 0) {
#pragma unroll
                    for (int j = 0; j < V; ++j)
                        if (!found || v[j] > acc[j]) acc[j] = v[j];
                } else {
#pragma unroll
                    for (int j = 0; j < V; ++j) acc[j] += v[j];
                    cnt++;
                }
                found = 1;
            }
        }
        if (mode != 0) {
            const float d = (float)(mode == 2 ? padded : cnt);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] = acc[j] / d;
        }
        kiln_stv<V>(py + i * V, acc);
    }
}

extern "C" __global__ void kiln_pool2d_nhwc(const A_s* px, A_s* py, long long n, long long C,
    long long H, long long W, long long OH, long long OW, long long KH, long long KW,
    long long SH, long long SW, long long DH, long long DW, long long PT, long long PL,
    long long PB, long long PR, int mode) {
    kiln_pool_nhwc<1>(px, py, n, C, H, W, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL, PB, PR, mode);
}

extern "C" __global__ void kiln_pool2d_nhwc_vec(const A_s* px, A_s* py, long long n,
    long long C, long long H, long long W, long long OH, long long OW, long long KH,
    long long KW, long long SH, long long SW, long long DH, long long DW, long long PT,
    long long PL, long long PB, long long PR, int mode) {
    kiln_pool_nhwc<KV>(px, py, n, C, H, W, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL, PB, PR, mode);
}

// One thread per (n, group of V channels), summing or maxing over the HW positions.
template <int V>
__device__ __forceinline__ void kiln_global_nhwc(const A_s* px, A_s* py, long long n,
    long long HW, long long C, int is_max) {
    const long long CV = C / V;
    KILN_GRID_LOOP(i, n) {
        long long cv = i % CV, b = i / CV;
        const A_s* p = px + b * HW * C + cv * V;
        float acc[V];
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] = is_max ? -kiln_inf() : 0.f;
#pragma unroll 4
        for (long long k = 0; k < HW; ++k) {
            float v[V];
            kiln_ldv<V>(p + k * C, v);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] = is_max ? kiln_maxf(acc[j], v[j]) : acc[j] + v[j];
        }
        if (!is_max) {
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] = acc[j] / (float)HW;
        }
        kiln_stv<V>(py + i * V, acc);
    }
}

extern "C" __global__ void kiln_global_pool_nhwc(const A_s* px, A_s* py, long long n,
    long long HW, long long C, int is_max) {
    kiln_global_nhwc<1>(px, py, n, HW, C, is_max);
}

extern "C" __global__ void kiln_global_pool_nhwc_vec(const A_s* px, A_s* py, long long n,
    long long HW, long long C, int is_max) {
    kiln_global_nhwc<KV>(px, py, n, HW, C, is_max);
}
"#;

/// The NHWC pooling module for `dtype` (f32, f16, bf16): [`pool2d_nhwc`] and
/// [`global_pool_nhwc`].
pub fn nhwc_module(dtype: DataType) -> Result<ModuleSpec> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("NHWC pooling", dtype))?;
    let mut body = type_defs("A", t);
    body.push_str(NHWC_BODY);
    Ok(ModuleSpec {
        name: format!("pool_nhwc_{}", t.tag),
        source: module_source(&body),
    })
}

/// Channels one thread of the vector NHWC kernels handles (one 16-byte word), when `c`
/// channels and both addresses allow it; 1 otherwise.
pub fn nhwc_vector(dtype: DataType, c: usize, ptrs: [DevicePtr; 2]) -> usize {
    let size = dtype.size_in_bytes();
    if size == 0 || 16 % size != 0 {
        return 1;
    }
    let v = 16 / size;
    if c.is_multiple_of(v) && ptrs.iter().all(|p| p.0.is_multiple_of(16)) {
        v
    } else {
        1
    }
}

/// A 2-D pool over a row-major `[N, H, W, C]` tensor into `[N, OH, OW, C]` (the window's
/// input and output are `H, W` and `OH, OW`). Same semantics as [`pool2d`]; each thread
/// handles one output position and 16 bytes of channels when `c` and the addresses allow it,
/// so loads and stores are coalesced over the channels.
#[allow(clippy::too_many_arguments)]
pub fn pool2d_nhwc(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    kind: PoolKind,
    n: usize,
    c: usize,
    w: &Window2d,
    x: DevicePtr,
    y: DevicePtr,
) -> Result<()> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("NHWC pooling", dtype))?;
    if w.kernel.contains(&0) || w.strides.contains(&0) || w.dilations.contains(&0) {
        return Err(invalid("pool", format!("window {w:?} has a zero size")));
    }
    let v = nhwc_vector(dtype, c, [x, y]);
    let total = [n, c, w.output[0], w.output[1]]
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .filter(|&t| i64::try_from(t).is_ok())
        .ok_or_else(|| invalid("pool", "too large"))?;
    let threads = total / v;
    if threads == 0 {
        return Ok(());
    }
    let mut args = vec![
        Arg::Ptr(x.0),
        Arg::Ptr(y.0),
        Arg::I64(threads as i64),
        Arg::I64(c as i64),
    ];
    args.extend(w.args(kind));
    lib.launch(
        stream,
        &format!("pool_nhwc_{}", t.tag),
        || nhwc_module(dtype).map(|m| m.source).unwrap_or_default(),
        if v > 1 {
            "kiln_pool2d_nhwc_vec"
        } else {
            "kiln_pool2d_nhwc"
        },
        (grid_for(threads), BLOCK, 0),
        &args,
    )
}

/// GlobalMaxPool / GlobalAveragePool of a row-major `[N, H, W, C]` tensor (`hw = H * W`)
/// into `[N, 1, 1, C]` (the bytes of `[N, C, 1, 1]`): one thread per image and 16 bytes of
/// channels when `c` and the addresses allow it, f32 accumulation, NaN propagated by max.
#[allow(clippy::too_many_arguments)]
pub fn global_pool_nhwc(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    max: bool,
    n: usize,
    hw: usize,
    c: usize,
    x: DevicePtr,
    y: DevicePtr,
) -> Result<()> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("NHWC global pooling", dtype))?;
    let v = nhwc_vector(dtype, c, [x, y]);
    let threads = n
        .checked_mul(c)
        .filter(|&t| i64::try_from(t).is_ok() && hw.checked_mul(t).is_some())
        .ok_or_else(|| invalid("global pool", "too large"))?
        / v;
    if threads == 0 {
        return Ok(());
    }
    let args = [
        Arg::Ptr(x.0),
        Arg::Ptr(y.0),
        Arg::I64(threads as i64),
        Arg::I64(hw as i64),
        Arg::I64(c as i64),
        Arg::I32(i32::from(max)),
    ];
    lib.launch(
        stream,
        &format!("pool_nhwc_{}", t.tag),
        || nhwc_module(dtype).map(|m| m.source).unwrap_or_default(),
        if v > 1 {
            "kiln_global_pool_nhwc_vec"
        } else {
            "kiln_global_pool_nhwc"
        },
        (grid_for(threads), BLOCK, 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lengths() {
        // ResNet's stem: 112 -> 56 with k3 s2 p1
        assert_eq!(Window2d::output_len(112, 3, 2, 1, (1, 1), false), Some(56));
        // ceil_mode: 5 with k2 s2: floor 2, ceil 3
        assert_eq!(Window2d::output_len(5, 2, 2, 1, (0, 0), false), Some(2));
        assert_eq!(Window2d::output_len(5, 2, 2, 1, (0, 0), true), Some(3));
        // the last window would start in the padding: dropped
        assert_eq!(Window2d::output_len(4, 2, 2, 1, (0, 1), true), Some(2));
        assert_eq!(Window2d::output_len(2, 3, 1, 1, (0, 0), false), None);
        assert_eq!(Window2d::output_len(7, 3, 1, 2, (0, 0), false), Some(3));
        let m = module(DataType::F16).unwrap();
        assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
        assert!(m.source.contains("long long* pidx, int col_major"));
    }

    #[test]
    fn nhwc_module_and_vector_width() {
        for dt in [DataType::F32, DataType::F16, DataType::BF16] {
            let m = nhwc_module(dt).unwrap();
            assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
            for k in [
                "kiln_pool2d_nhwc(",
                "kiln_pool2d_nhwc_vec(",
                "kiln_global_pool_nhwc(",
                "kiln_global_pool_nhwc_vec(",
            ] {
                assert!(m.source.contains(k), "{k}");
            }
        }
        assert!(nhwc_module(DataType::I64).is_err());
        let (a, b) = (DevicePtr(0x1000), DevicePtr(0x2010));
        assert_eq!(nhwc_vector(DataType::F16, 64, [a, b]), 8);
        assert_eq!(nhwc_vector(DataType::BF16, 24, [a, b]), 8);
        assert_eq!(nhwc_vector(DataType::F32, 64, [a, b]), 4);
        // channels not a multiple of the word, or a misaligned address: scalar
        assert_eq!(nhwc_vector(DataType::F16, 12, [a, b]), 1);
        assert_eq!(nhwc_vector(DataType::F16, 3, [a, b]), 1);
        assert_eq!(nhwc_vector(DataType::F16, 64, [a, DevicePtr(0x2008)]), 1);
    }
}
