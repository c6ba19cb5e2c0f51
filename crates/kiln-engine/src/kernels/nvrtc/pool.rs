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
    let mode = match kind {
        PoolKind::Max => 0,
        PoolKind::Average {
            count_include_pad: false,
        } => 1,
        PoolKind::Average {
            count_include_pad: true,
        } => 2,
    };
    let l = |v: usize| Arg::I64(v as i64);
    let args = [
        Arg::Ptr(x.0),
        Arg::Ptr(y.0),
        l(n),
        l(w.input[0]),
        l(w.input[1]),
        l(w.output[0]),
        l(w.output[1]),
        l(w.kernel[0]),
        l(w.kernel[1]),
        l(w.strides[0]),
        l(w.strides[1]),
        l(w.dilations[0]),
        l(w.dilations[1]),
        l(w.pad_begin[0]),
        l(w.pad_begin[1]),
        l(w.pad_end[0]),
        l(w.pad_end[1]),
        Arg::I32(mode),
        Arg::Ptr(indices.map_or(0, |i| i.ptr.0)),
        Arg::I32(i32::from(indices.is_some_and(|i| i.column_major))),
    ];
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
}
