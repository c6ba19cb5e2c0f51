//! Softmax and LogSoftmax along one axis, f32 accumulation. Contiguous rows of up to
//! [`WARP_MAX_LEN`] values (attention scores) run one warp per row with the row held in
//! registers (one read, one write, no block barriers); other lanes run one block per lane.
//!
//! As kiln-reference: the lane's maximum (ignoring NaN) is subtracted before exponentiating
//! (0 when the lane is all -inf), NaN propagates through the sum; LogSoftmax is
//! `x - max - ln(sum)`. Opset < 13 Softmax (the input coerced to 2-D at `axis`) is the same
//! kernel with `inner = 1` and `len = prod(shape[axis..])`.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::library::ModuleSpec;
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, invalid, unsupported};

/// Longest contiguous row the one-warp-per-row kernel takes (32 values per thread).
pub const WARP_MAX_LEN: usize = 1024;

/// Rows per block of the one-warp-per-row kernel.
const WARP_ROWS: u32 = 8;

/// The softmax module for `dtype` (f32, f16, bf16).
pub fn module(dtype: DataType) -> Result<ModuleSpec> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("softmax", dtype))?;
    let mut body = type_defs("A", t);
    body.push_str(
        r#"
extern "C" __global__ void kiln_softmax(const A_s* px, A_s* py, long long lanes, long long len,
                                        long long inner, int log_out) {
    __shared__ float shm[32];
    for (long long lane = blockIdx.x; lane < lanes; lane += gridDim.x) {
        long long o = lane / inner, in = lane % inner;
        long long base = o * len * inner + in;
        float m = -kiln_inf();
        for (long long k = threadIdx.x; k < len; k += blockDim.x)
            m = KMaxNum::op(m, A_tof(A_ld(px, base + k * inner)));
        m = kiln_block_reduce<KMaxNum>(m, shm);
        float shift = (m == -kiln_inf()) ? 0.f : m;
        float s = 0.f;
        for (long long k = threadIdx.x; k < len; k += blockDim.x)
            s += expf(A_tof(A_ld(px, base + k * inner)) - shift);
        s = kiln_block_reduce<KSum>(s, shm);
        float ls = logf(s);
        for (long long k = threadIdx.x; k < len; k += blockDim.x) {
            float x = A_tof(A_ld(px, base + k * inner));
            float y = log_out ? (x - shift) - ls : expf(x - shift) / s;
            A_st(py, base + k * inner, A_fromf(y));
        }
    }
}

extern "C" __global__ void kiln_softmax_warp(const A_s* px, A_s* py, long long rows, int len,
                                             int log_out) {
    const int t = threadIdx.x & 31;
    const long long nw = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows;
         r += nw) {
        const long long base = r * len;
        float v[32];
        float m = -kiln_inf();
#pragma unroll
        for (int j = 0; j < 32; ++j) {
            int k = t + 32 * j;
            v[j] = (k < len) ? A_tof(A_ld(px, base + k)) : -kiln_inf();
            m = KMaxNum::op(m, v[j]);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) m = KMaxNum::op(m, __shfl_xor_sync(0xffffffffu, m, o));
        const float shift = (m == -kiln_inf()) ? 0.f : m;
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < 32; ++j)
            if (t + 32 * j < len) s += expf(v[j] - shift);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        const float ls = logf(s);
#pragma unroll
        for (int j = 0; j < 32; ++j) {
            int k = t + 32 * j;
            if (k < len) {
                float y = log_out ? (v[j] - shift) - ls : expf(v[j] - shift) / s;
                A_st(py, base + k, A_fromf(y));
            }
        }
    }
}
"#,
    );
    Ok(ModuleSpec {
        name: format!("softmax_{}", t.tag),
        source: module_source(&body),
    })
}

/// (outer, len, inner) of a softmax over `axis` of `shape`; with `coerce_2d` (opset < 13)
/// over every axis from `axis` on.
pub fn softmax_geometry(
    shape: &[usize],
    axis: usize,
    coerce_2d: bool,
) -> Result<(usize, usize, usize)> {
    if axis > shape.len() || (!coerce_2d && axis >= shape.len()) {
        return Err(invalid(
            "softmax",
            format!("axis {axis} for shape {shape:?}"),
        ));
    }
    let outer: usize = shape[..axis].iter().product();
    if coerce_2d {
        return Ok((outer, shape[axis..].iter().product(), 1));
    }
    Ok((outer, shape[axis], shape[axis + 1..].iter().product()))
}

/// Softmax (or LogSoftmax with `log`) over the lanes of a row-major tensor laid out as
/// `[outer, len, inner]`.
#[allow(clippy::too_many_arguments)]
pub fn softmax(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    (outer, len, inner): (usize, usize, usize),
    log: bool,
    x: DevicePtr,
    y: DevicePtr,
) -> Result<()> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("softmax", dtype))?;
    let lanes = outer
        .checked_mul(inner)
        .ok_or_else(|| invalid("softmax", "too large"))?;
    if lanes == 0 || len == 0 {
        return Ok(());
    }
    if inner == 1 && len <= WARP_MAX_LEN {
        let grid = lanes.div_ceil(WARP_ROWS as usize).min(1 << 16) as u32;
        let args = [
            Arg::Ptr(x.0),
            Arg::Ptr(y.0),
            Arg::I64(lanes as i64),
            Arg::I32(len as i32),
            Arg::I32(i32::from(log)),
        ];
        return lib.launch(
            stream,
            &format!("softmax_{}", t.tag),
            || module(dtype).map(|m| m.source).unwrap_or_default(),
            "kiln_softmax_warp",
            (grid, 32 * WARP_ROWS, 0),
            &args,
        );
    }
    let block = super::layout::row_block(len).min(256);
    let grid = lanes.min(1 << 20) as u32;
    let args = [
        Arg::Ptr(x.0),
        Arg::Ptr(y.0),
        Arg::I64(lanes as i64),
        Arg::I64(len as i64),
        Arg::I64(inner as i64),
        Arg::I32(i32::from(log)),
    ];
    lib.launch(
        stream,
        &format!("softmax_{}", t.tag),
        || module(dtype).map(|m| m.source).unwrap_or_default(),
        "kiln_softmax",
        (grid, block, 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        assert_eq!(softmax_geometry(&[2, 3, 4], 2, false).unwrap(), (6, 4, 1));
        assert_eq!(softmax_geometry(&[2, 3, 4], 1, false).unwrap(), (2, 3, 4));
        assert_eq!(softmax_geometry(&[2, 3, 4], 1, true).unwrap(), (2, 12, 1));
        assert_eq!(softmax_geometry(&[2, 3], 2, true).unwrap(), (6, 1, 1));
        assert!(softmax_geometry(&[2, 3], 2, false).is_err());
        assert!(module(DataType::I32).is_err());
        let m = module(DataType::BF16).unwrap();
        assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
    }
}
