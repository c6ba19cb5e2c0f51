//! LayerNormalization (and kiln's fused Add → LayerNormalization), GroupNormalization and
//! InstanceNormalization, statistics in f32 (the mean, then the population variance around
//! it), as kiln-reference computes them. Also the row machinery [`softmax`](super::softmax)
//! shares: how a contiguous row maps onto threads ([`RowPlan`]) and the CUDA helpers that
//! move a row in 16-byte vectors.
//!
//! - LayerNorm: rows `prod(shape[..axis])` of `cols = prod(shape[axis..])`; `y = (x - mean) *
//!   inv * scale + bias` with `inv = 1 / sqrt(var + eps)`. Scale and bias hold a suffix of
//!   `shape[axis..]` (usually all of it; a shorter one repeats, as broadcasting does); a
//!   missing bias is address 0. Optional `Mean` / `InvStdDev` outputs in f32 (address 0: not
//!   written). The fused form reads `x = a + b` (rounded to the element type, as the separate
//!   Add would store it; `b` full-size or one row) and may write that sum as well.
//! - Rows of up to 1024 values run `g` threads per row (`g` a power of two up to a warp) with
//!   the row in registers: one read of `x`, one write of `y`, reductions by warp shuffles, no
//!   barriers; 16-byte loads and stores when the row length and every address allow it.
//!   Longer rows run one block per row, still from registers, up to 8192 vectors (65536 fp16
//!   values); longer still, a block per row reading the row three times.
//! - GroupNorm (and InstanceNorm as C groups): `X` as `[N, C, S]`, statistics per image and
//!   group of `C / G` channels; `y = (x - mean) / sqrt(var + eps) * scale + bias` with scale
//!   and bias per channel, or per group (opset 18's form).
//!
//! Every row kernel is a template instantiated for a fixed set of shapes (`v`: elements per
//! vector, `g`: threads per row, `n`: vectors per thread): the module's source depends only
//! on the element type, sizes are kernel parameters.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::library::ModuleSpec;
use super::prelude::{CType, ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, invalid, unsupported};

pub(crate) use super::rows::*;

// ---------------------------------------------------------------------------------------------
// CUDA

const LN_PARAMS: &str = "const A_s* pa, const A_s* pb, int b_full, const A_s* ps, \
    const A_s* pbias, A_s* py, A_s* psum, float* pmean, float* pinv, long long rows, int len, \
    int slen, int blen, int pfull, float eps";
const LN_NAMES: &str =
    "pa, pb, b_full, ps, pbias, py, psum, pmean, pinv, rows, len, slen, blen, pfull, eps";

const BODY: &str = r#"
// Scale or bias values k .. k+V of the row: one vector when the parameter covers the row
// (`full`), else element by element, repeating every `plen`.
template <int V>
__device__ __forceinline__ void kl_param(const A_s* p, int k, int plen, int full,
                                         float (&f)[V]) {
    if (full) {
        kr_load<V>(p + k, f);
    } else {
#pragma unroll
        for (int i = 0; i < V; ++i) f[i] = A_tof(A_ld(p, (k + i) % plen));
    }
}

// x = a (+ b, rounded to the element type; written to psum when given) for vector j of the
// row at `off`, into f.
template <int V>
__device__ __forceinline__ void kl_row_x(const A_s* pa, const A_s* pb, int b_full, A_s* psum,
                                         long long off, int k, float (&f)[V]) {
    kr_load<V>(pa + off + k, f);
    if (pb) {
        float w[V];
        kr_load<V>(pb + (b_full ? off : 0) + k, w);
#pragma unroll
        for (int i = 0; i < V; ++i) f[i] = kr_round(f[i] + w[i]);
        if (psum) kr_store<V>(psum + off + k, f);
    }
}

// y for one vector of x given the row's mean and inv.
template <int V>
__device__ __forceinline__ void kl_row_y(const float (&x)[V], float mean, float inv,
                                         const A_s* ps, const A_s* pbias, int k, int slen,
                                         int blen, int pfull, A_s* py, long long off) {
    float sc[V], y[V];
    kl_param<V>(ps, k, slen, pfull, sc);
#pragma unroll
    for (int i = 0; i < V; ++i) y[i] = (x[i] - mean) * inv * sc[i];
    if (pbias) {
        float bi[V];
        kl_param<V>(pbias, k, blen, pfull, bi);
#pragma unroll
        for (int i = 0; i < V; ++i) y[i] = y[i] + bi[i];
    }
    kr_store<V>(py + off + k, y);
}

// G threads per row, N vectors of V per thread; the loop bound is block-uniform so every
// lane reaches the shuffles.
template <int V, int G, int N>
__device__ __forceinline__ void kl_ln(const A_s* pa, const A_s* pb, int b_full,
    const A_s* ps, const A_s* pbias, A_s* py, A_s* psum, float* pmean, float* pinv,
    long long rows, int len, int slen, int blen, int pfull, float eps) {
    const int t = threadIdx.x & (G - 1);
    const int per_block = blockDim.x / G;
    const int nv = len / V;
    for (long long r0 = (long long)blockIdx.x * per_block; r0 < rows;
         r0 += (long long)gridDim.x * per_block) {
        const long long row = r0 + threadIdx.x / G;
        const bool ok = row < rows;
        const long long off = ok ? row * len : 0;
        float x[N][V];
        float s = 0.f;
#pragma unroll
        for (int c = 0; c < N; ++c) {
            const int j = c * G + t;
#pragma unroll
            for (int i = 0; i < V; ++i) x[c][i] = 0.f;
            if (ok && j < nv) {
                kl_row_x<V>(pa, pb, b_full, psum, off, j * V, x[c]);
#pragma unroll
                for (int i = 0; i < V; ++i) s += x[c][i];
            }
        }
        const float mean = kr_gsum<G>(s) / (float)len;
        float q = 0.f;
#pragma unroll
        for (int c = 0; c < N; ++c) {
            if (ok && c * G + t < nv) {
#pragma unroll
                for (int i = 0; i < V; ++i) {
                    const float d = x[c][i] - mean;
                    q += d * d;
                }
            }
        }
        const float inv = 1.f / sqrtf(kr_gsum<G>(q) / (float)len + eps);
#pragma unroll
        for (int c = 0; c < N; ++c) {
            const int j = c * G + t;
            if (ok && j < nv) kl_row_y<V>(x[c], mean, inv, ps, pbias, j * V, slen, blen, pfull, py, off);
        }
        if (ok && t == 0) {
            if (pmean) pmean[row] = mean;
            if (pinv) pinv[row] = inv;
        }
    }
}

// One block per row, N vectors of V per thread.
template <int V, int N>
__device__ __forceinline__ void kl_ln_block(const A_s* pa, const A_s* pb, int b_full,
    const A_s* ps, const A_s* pbias, A_s* py, A_s* psum, float* pmean, float* pinv,
    long long rows, int len, int slen, int blen, int pfull, float eps) {
    __shared__ float shm[32];
    const int t = threadIdx.x, nt = blockDim.x;
    const int nv = len / V;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const long long off = row * len;
        float x[N][V];
        float s = 0.f;
#pragma unroll
        for (int c = 0; c < N; ++c) {
            const int j = c * nt + t;
#pragma unroll
            for (int i = 0; i < V; ++i) x[c][i] = 0.f;
            if (j < nv) {
                kl_row_x<V>(pa, pb, b_full, psum, off, j * V, x[c]);
#pragma unroll
                for (int i = 0; i < V; ++i) s += x[c][i];
            }
        }
        const float mean = kiln_block_reduce<KSum>(s, shm) / (float)len;
        float q = 0.f;
#pragma unroll
        for (int c = 0; c < N; ++c) {
            if (c * nt + t < nv) {
#pragma unroll
                for (int i = 0; i < V; ++i) {
                    const float d = x[c][i] - mean;
                    q += d * d;
                }
            }
        }
        const float inv = 1.f / sqrtf(kiln_block_reduce<KSum>(q, shm) / (float)len + eps);
#pragma unroll
        for (int c = 0; c < N; ++c) {
            const int j = c * nt + t;
            if (j < nv) kl_row_y<V>(x[c], mean, inv, ps, pbias, j * V, slen, blen, pfull, py, off);
        }
        if (t == 0) {
            if (pmean) pmean[row] = mean;
            if (pinv) pinv[row] = inv;
        }
    }
}

// Rows too long to hold: the row is read three times (sum, squared deviations, output).
__device__ __forceinline__ float kl_x1(const A_s* pa, const A_s* pb, int b_full,
                                       long long off, long long k) {
    float x = A_tof(A_ld(pa, off + k));
    if (pb) x = kr_round(x + A_tof(A_ld(pb, (b_full ? off : 0) + k)));
    return x;
}

extern "C" __global__ void kiln_layer_norm(const A_s* pa, const A_s* pb, int b_full,
    const A_s* ps, const A_s* pbias, A_s* py, A_s* psum, float* pmean, float* pinv,
    long long rows, long long cols, long long slen, long long blen, float eps) {
    __shared__ float shm[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long off = r * cols;
        float s = 0.f;
        for (long long k = threadIdx.x; k < cols; k += blockDim.x)
            s += kl_x1(pa, pb, b_full, off, k);
        const float m = kiln_block_reduce<KSum>(s, shm) / (float)cols;
        float q = 0.f;
        for (long long k = threadIdx.x; k < cols; k += blockDim.x) {
            const float d = kl_x1(pa, pb, b_full, off, k) - m;
            q += d * d;
        }
        const float inv = 1.f / sqrtf(kiln_block_reduce<KSum>(q, shm) / (float)cols + eps);
        for (long long k = threadIdx.x; k < cols; k += blockDim.x) {
            const float x = kl_x1(pa, pb, b_full, off, k);
            if (psum) A_st(psum, off + k, A_fromf(x));
            float y = (x - m) * inv * A_tof(A_ld(ps, k % slen));
            if (pbias) y = y + A_tof(A_ld(pbias, k % blen));
            A_st(py, off + k, A_fromf(y));
        }
        if (threadIdx.x == 0) {
            if (pmean) pmean[r] = m;
            if (pinv) pinv[r] = inv;
        }
    }
}

__device__ void kiln_moments(const A_s* px, long long base, long long len, float* shm,
                             float* mean, float* var) {
    float s = 0.f;
    for (long long k = threadIdx.x; k < len; k += blockDim.x) s += A_tof(A_ld(px, base + k));
    float m = kiln_block_reduce<KSum>(s, shm) / (float)len;
    float q = 0.f;
    for (long long k = threadIdx.x; k < len; k += blockDim.x) {
        float d = A_tof(A_ld(px, base + k)) - m;
        q += d * d;
    }
    *mean = m;
    *var = kiln_block_reduce<KSum>(q, shm) / (float)len;
}

extern "C" __global__ void kiln_group_norm(const A_s* px, const A_s* ps, const A_s* pb, A_s* py,
    long long groups_total, long long channels, long long groups, long long spatial,
    int per_group_params, float eps) {
    __shared__ float shm[32];
    long long per = channels / groups;
    long long len = per * spatial;
    for (long long ng = blockIdx.x; ng < groups_total; ng += gridDim.x) {
        long long g = ng % groups;
        long long base = ng * len;
        float m, v;
        kiln_moments(px, base, len, shm, &m, &v);
        float sd = sqrtf(v + eps);
        for (long long k = threadIdx.x; k < len; k += blockDim.x) {
            long long c = per_group_params ? g : g * per + k / spatial;
            float y = (A_tof(A_ld(px, base + k)) - m) / sd * A_tof(A_ld(ps, c))
                      + A_tof(A_ld(pb, c));
            A_st(py, base + k, A_fromf(y));
        }
    }
}
"#;

/// Prefix of the LayerNorm row kernels.
const LN_PREFIX: &str = "kiln_ln";

fn float_type(op: &str, dtype: DataType) -> Result<CType> {
    ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported(op, dtype))
}

/// The normalisation module for `dtype` (f32, f16, bf16).
pub fn module(dtype: DataType) -> Result<ModuleSpec> {
    let t = float_type("normalization", dtype)?;
    let mut body = type_defs("A", t);
    body.push_str(&row_defs(t));
    body.push_str(BODY);
    body.push_str(&instantiate(
        LN_PREFIX,
        "kl_ln",
        vec_width(t),
        LN_PARAMS,
        LN_NAMES,
    ));
    Ok(ModuleSpec {
        name: format!("norm_{}", t.tag),
        source: module_source(&body),
    })
}

fn launch(
    lib: &KernelLibrary,
    stream: &Stream,
    t: CType,
    func: &str,
    (grid, block): (u32, u32),
    args: &[Arg],
) -> Result<()> {
    lib.launch(
        stream,
        &format!("norm_{}", t.tag),
        || module(t.dtype).map(|m| m.source).unwrap_or_default(),
        func,
        (grid, block, 0),
        args,
    )
}

/// Addresses of a LayerNormalization.
#[derive(Debug, Clone, Copy)]
pub struct LayerNormIo {
    pub x: DevicePtr,
    pub scale: DevicePtr,
    /// `DevicePtr(0)`: no bias.
    pub bias: DevicePtr,
    pub y: DevicePtr,
    /// f32 `[rows]`, or 0.
    pub mean: DevicePtr,
    /// f32 `[rows]`, or 0.
    pub inv_std: DevicePtr,
}

/// Addresses of a fused Add → LayerNormalization: `x = a + b`.
#[derive(Debug, Clone, Copy)]
pub struct AddLayerNormIo {
    /// `[rows, cols]`.
    pub a: DevicePtr,
    /// `[rows, cols]` with `b_full`, else one row `[cols]` added to every row.
    pub b: DevicePtr,
    pub b_full: bool,
    pub scale: DevicePtr,
    /// `DevicePtr(0)`: no bias.
    pub bias: DevicePtr,
    pub y: DevicePtr,
    /// `[rows, cols]` receiving `a + b`, or 0.
    pub sum: DevicePtr,
}

/// Every address of one LayerNorm launch.
struct LnArgs {
    a: DevicePtr,
    b: DevicePtr,
    b_full: bool,
    scale: DevicePtr,
    bias: DevicePtr,
    y: DevicePtr,
    sum: DevicePtr,
    mean: DevicePtr,
    inv: DevicePtr,
}

/// LayerNormalization over rows of `cols` elements; `scale_len` and `bias_len` divide `cols`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    rows: usize,
    cols: usize,
    lens: (usize, usize),
    epsilon: f32,
    io: LayerNormIo,
) -> Result<()> {
    let args = LnArgs {
        a: io.x,
        b: DevicePtr(0),
        b_full: true,
        scale: io.scale,
        bias: io.bias,
        y: io.y,
        sum: DevicePtr(0),
        mean: io.mean,
        inv: io.inv_std,
    };
    ln(lib, stream, dtype, (rows, cols), lens, epsilon, &args)
}

/// kiln's AddLayerNorm: LayerNormalization of `a + b` over rows of `cols` elements (the sum
/// rounded to `dtype` as a separate Add would store it, and written to `io.sum` when given).
#[allow(clippy::too_many_arguments)]
pub fn add_layer_norm(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    rows: usize,
    cols: usize,
    lens: (usize, usize),
    epsilon: f32,
    io: AddLayerNormIo,
) -> Result<()> {
    if io.b.0 == 0 {
        return Err(invalid("add_layer_norm", "the second addend is missing"));
    }
    let args = LnArgs {
        a: io.a,
        b: io.b,
        b_full: io.b_full,
        scale: io.scale,
        bias: io.bias,
        y: io.y,
        sum: io.sum,
        mean: DevicePtr(0),
        inv: DevicePtr(0),
    };
    ln(lib, stream, dtype, (rows, cols), lens, epsilon, &args)
}

fn ln(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    (rows, cols): (usize, usize),
    (scale_len, bias_len): (usize, usize),
    epsilon: f32,
    io: &LnArgs,
) -> Result<()> {
    let t = float_type("layer_norm", dtype)?;
    let fits = |n: usize| n > 0 && cols.is_multiple_of(n);
    if !fits(scale_len) || (io.bias.0 != 0 && !fits(bias_len)) {
        return Err(invalid(
            "layer_norm",
            format!("scale ({scale_len}) and bias ({bias_len}) must divide the row length {cols}"),
        ));
    }
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let bias_len = if io.bias.0 == 0 { cols } else { bias_len };
    // Parameters covering the whole row are read as vectors like the row itself.
    let full = scale_len == cols && bias_len == cols;
    let mut ptrs = vec![io.a, io.b, io.y, io.sum];
    if full {
        ptrs.extend([io.scale, io.bias]);
    }
    let plan = row_plan(cols, vec_width(t), aligned16(&ptrs));
    let ptr = |p: DevicePtr| Arg::Ptr(p.0);
    let head = [
        ptr(io.a),
        ptr(io.b),
        Arg::I32(i32::from(io.b_full)),
        ptr(io.scale),
        ptr(io.bias),
        ptr(io.y),
        ptr(io.sum),
        ptr(io.mean),
        ptr(io.inv),
        Arg::I64(rows as i64),
    ];
    let launch_cfg = plan_launch(plan, rows);
    match plan_kernel(LN_PREFIX, plan) {
        Some(func) => {
            let mut args = head.to_vec();
            args.extend([
                Arg::I32(cols as i32),
                Arg::I32(scale_len as i32),
                Arg::I32(bias_len as i32),
                Arg::I32(i32::from(full)),
                Arg::F32(epsilon),
            ]);
            launch(lib, stream, t, &func, launch_cfg, &args)
        }
        None => {
            let mut args = head.to_vec();
            args.extend([
                Arg::I64(cols as i64),
                Arg::I64(scale_len as i64),
                Arg::I64(bias_len as i64),
                Arg::F32(epsilon),
            ]);
            let block = super::layout::row_block(cols).min(512);
            launch(
                lib,
                stream,
                t,
                "kiln_layer_norm",
                (launch_cfg.0, block),
                &args,
            )
        }
    }
}

/// GroupNormalization of `X` as `[n, channels, spatial]` in `groups` groups; scale and bias
/// hold `channels` values, or `groups` with `per_group_params`. InstanceNormalization is
/// `groups == channels`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    (n, channels, spatial): (usize, usize, usize),
    groups: usize,
    per_group_params: bool,
    epsilon: f32,
    (x, scale, bias, y): (DevicePtr, DevicePtr, DevicePtr, DevicePtr),
) -> Result<()> {
    let t = float_type("group_norm", dtype)?;
    if groups == 0 || !channels.is_multiple_of(groups) {
        return Err(invalid(
            "group_norm",
            format!("num_groups {groups} does not divide C = {channels}"),
        ));
    }
    let total = n * groups;
    let len = channels / groups * spatial;
    if total == 0 || len == 0 {
        return Ok(());
    }
    let args = [
        Arg::Ptr(x.0),
        Arg::Ptr(scale.0),
        Arg::Ptr(bias.0),
        Arg::Ptr(y.0),
        Arg::I64(total as i64),
        Arg::I64(channels as i64),
        Arg::I64(groups as i64),
        Arg::I64(spatial as i64),
        Arg::I32(i32::from(per_group_params)),
        Arg::F32(epsilon),
    ];
    let block = super::layout::row_block(len).min(512);
    launch(
        lib,
        stream,
        t,
        "kiln_group_norm",
        (total.min(1 << 20) as u32, block),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules() {
        for dt in [DataType::F32, DataType::F16, DataType::BF16] {
            let m = module(dt).unwrap();
            assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
            assert_eq!(m.source.matches('(').count(), m.source.matches(')').count());
            assert!(m.source.contains("kiln_layer_norm(") && m.source.contains("kiln_group_norm("));
        }
        assert!(module(DataType::I64).is_err());
    }

    fn widths() -> [usize; 2] {
        [4, 8]
    }

    #[test]
    fn every_plan_has_its_kernel_in_the_module() {
        super::super::rows::assert_every_plan_has_its_kernel(module, LN_PREFIX);
    }

    #[test]
    fn plans_cover_the_row() {
        for vw in widths() {
            for len in 1..=70_000usize {
                for vectorise in [false, true] {
                    let plan = row_plan(len, vw, vectorise);
                    let (vec, cap) = match plan {
                        RowPlan::Warp { vec, g, chunks } => {
                            assert!(g.is_power_of_two() && g <= 32, "{len}");
                            (vec, vec * g * chunks)
                        }
                        RowPlan::Block {
                            vec,
                            chunks,
                            threads,
                        } => {
                            assert!(threads % 32 == 0 && (32..=1024).contains(&threads));
                            assert!(len > 1024, "{len} fits a warp");
                            (vec, vec * chunks * threads as usize)
                        }
                        RowPlan::Generic => {
                            assert!(len > 8192, "{len}");
                            continue;
                        }
                    };
                    assert!(cap >= len && len.is_multiple_of(vec), "{len} {plan:?}");
                    assert_eq!(vec > 1, vectorise && len.is_multiple_of(vw), "{len}");
                    if len <= 1024 {
                        assert!(matches!(plan, RowPlan::Warp { .. }), "{len} {plan:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn bert_rows_plan() {
        // BERT-base hidden rows (768 fp16, aligned): a full warp, three 16-byte vectors each.
        assert_eq!(
            row_plan(768, 8, true),
            RowPlan::Warp {
                vec: 8,
                g: 32,
                chunks: 3
            }
        );
        // attention scores (128 fp16): half a warp per row, one vector per thread
        assert_eq!(
            row_plan(128, 8, true),
            RowPlan::Warp {
                vec: 8,
                g: 16,
                chunks: 1
            }
        );
        assert_eq!(
            row_plan(7, 8, true),
            RowPlan::Warp {
                vec: 1,
                g: 8,
                chunks: 1
            }
        );
        assert_eq!(
            row_plan(4096, 8, true),
            RowPlan::Block {
                vec: 8,
                chunks: 1,
                threads: 512
            }
        );
        assert_eq!(plan_launch(row_plan(768, 8, true), 16384), (4096, 128));
        assert!(aligned16(&[DevicePtr(0), DevicePtr(32)]));
        assert!(!aligned16(&[DevicePtr(8)]));
    }
}
