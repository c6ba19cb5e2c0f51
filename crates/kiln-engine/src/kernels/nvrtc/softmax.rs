//! Softmax and LogSoftmax along one axis, f32 accumulation.
//!
//! Contiguous rows (the last axis, `inner == 1`) of up to 1024 values run `g` threads per row
//! (a power of two up to a warp, see [`norm::RowPlan`](super::norm)) with the row in
//! registers: one read, one write, warp-shuffle reductions, 16-byte loads and stores when the
//! row length and the addresses allow; longer rows one block per row from registers (up to
//! 8192 vectors); other lanes (a strided axis, or rows longer still) one block per lane
//! reading the lane three times.
//!
//! As kiln-reference: the lane's maximum (ignoring NaN) is subtracted before exponentiating
//! (0 when the lane is all -inf), NaN propagates through the sum; LogSoftmax is
//! `x - max - ln(sum)`. Opset < 13 Softmax (the input coerced to 2-D at `axis`) is the same
//! kernel with `inner = 1` and `len = prod(shape[axis..])`.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::library::ModuleSpec;
use super::norm::{
    aligned16, instantiate, plan_kernel, plan_launch, row_defs, row_plan, vec_width,
};
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, invalid, unsupported};

/// Prefix of the contiguous-row kernels.
const PREFIX: &str = "kiln_softmax_rows";

/// Contiguous rows held in registers: `ks_rows<V, G, N>` (G threads per row, loop bound
/// block-uniform so every lane reaches the shuffles) and `ks_rows_block<V, N>`.
const ROWS: &str = r#"
template <int V, int N>
__device__ __forceinline__ void ks_load(const A_s* xr, int t, int step, int nv, bool ok,
                                        float (&v)[N][V], float& m) {
#pragma unroll
    for (int c = 0; c < N; ++c) {
        const int j = c * step + t;
        if (ok && j < nv) {
            kr_load<V>(xr + j * V, v[c]);
        } else {
#pragma unroll
            for (int i = 0; i < V; ++i) v[c][i] = -kiln_inf();
        }
#pragma unroll
        for (int i = 0; i < V; ++i) m = KMaxNum::op(m, v[c][i]);
    }
}

// exp(x - shift) in place (kept for Softmax), returning this thread's sum.
template <int V, int N>
__device__ __forceinline__ float ks_exp(int t, int step, int nv, bool ok, float shift,
                                        int log_out, float (&v)[N][V]) {
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < N; ++c) {
        if (ok && c * step + t < nv) {
#pragma unroll
            for (int i = 0; i < V; ++i) {
                const float e = expf(v[c][i] - shift);
                s += e;
                if (!log_out) v[c][i] = e;
            }
        }
    }
    return s;
}

template <int V, int N>
__device__ __forceinline__ void ks_store(A_s* yr, int t, int step, int nv, bool ok,
                                         float shift, float s, int log_out,
                                         float (&v)[N][V]) {
    const float ls = logf(s);
#pragma unroll
    for (int c = 0; c < N; ++c) {
        const int j = c * step + t;
        if (ok && j < nv) {
            float y[V];
#pragma unroll
            for (int i = 0; i < V; ++i) y[i] = log_out ? (v[c][i] - shift) - ls : v[c][i] / s;
            kr_store<V>(yr + j * V, y);
        }
    }
}

template <int V, int G, int N>
__device__ __forceinline__ void ks_rows(const A_s* px, A_s* py, long long rows, int len,
                                        int log_out) {
    const int t = threadIdx.x & (G - 1);
    const int per_block = blockDim.x / G;
    const int nv = len / V;
    for (long long r0 = (long long)blockIdx.x * per_block; r0 < rows;
         r0 += (long long)gridDim.x * per_block) {
        const long long row = r0 + threadIdx.x / G;
        const bool ok = row < rows;
        const long long off = ok ? row * len : 0;
        float v[N][V];
        float m = -kiln_inf();
        ks_load<V, N>(px + off, t, G, nv, ok, v, m);
        m = kr_gmax<G>(m);
        const float shift = (m == -kiln_inf()) ? 0.f : m;
        const float s = kr_gsum<G>(ks_exp<V, N>(t, G, nv, ok, shift, log_out, v));
        ks_store<V, N>(py + off, t, G, nv, ok, shift, s, log_out, v);
    }
}

template <int V, int N>
__device__ __forceinline__ void ks_rows_block(const A_s* px, A_s* py, long long rows, int len,
                                              int log_out) {
    __shared__ float shm[32];
    const int t = threadIdx.x, nt = blockDim.x;
    const int nv = len / V;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const long long off = row * len;
        float v[N][V];
        float m = -kiln_inf();
        ks_load<V, N>(px + off, t, nt, nv, true, v, m);
        m = kiln_block_reduce<KMaxNum>(m, shm);
        const float shift = (m == -kiln_inf()) ? 0.f : m;
        const float s =
            kiln_block_reduce<KSum>(ks_exp<V, N>(t, nt, nv, true, shift, log_out, v), shm);
        ks_store<V, N>(py + off, t, nt, nv, true, shift, s, log_out, v);
    }
}
"#;

/// The softmax module for `dtype` (f32, f16, bf16).
pub fn module(dtype: DataType) -> Result<ModuleSpec> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("softmax", dtype))?;
    let mut body = type_defs("A", t);
    body.push_str(&row_defs(t));
    body.push_str(ROWS);
    body.push_str(&instantiate(
        PREFIX,
        "ks_rows",
        vec_width(t),
        "const A_s* px, A_s* py, long long rows, int len, int log_out",
        "px, py, rows, len, log_out",
    ));
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
    let module_name = format!("softmax_{}", t.tag);
    let source = || module(dtype).map(|m| m.source).unwrap_or_default();
    if inner == 1 {
        let plan = row_plan(len, vec_width(t), aligned16(&[x, y]));
        if let Some(func) = plan_kernel(PREFIX, plan) {
            let args = [
                Arg::Ptr(x.0),
                Arg::Ptr(y.0),
                Arg::I64(lanes as i64),
                Arg::I32(len as i32),
                Arg::I32(i32::from(log)),
            ];
            let (grid, block) = plan_launch(plan, lanes);
            return lib.launch(stream, &module_name, source, &func, (grid, block, 0), &args);
        }
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
        &module_name,
        source,
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

    #[test]
    fn every_row_plan_has_its_kernel() {
        super::super::rows::assert_every_plan_has_its_kernel(module, PREFIX);
    }
}
