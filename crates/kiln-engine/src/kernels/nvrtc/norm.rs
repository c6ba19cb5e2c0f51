//! LayerNormalization, GroupNormalization and InstanceNormalization: one block per row or
//! group, statistics in f32 (mean, then the population variance around it, both in the same
//! launch), as kiln-reference computes them.
//!
//! - LayerNorm: rows `prod(shape[..axis])` of `cols = prod(shape[axis..])`; `y = (x - mean) *
//!   inv * scale + bias` with `inv = 1 / sqrt(var + eps)`. Scale and bias hold a suffix of
//!   `shape[axis..]` (usually all of it; a shorter one repeats, as broadcasting does); a
//!   missing bias is address 0. Optional `Mean` / `InvStdDev` outputs in f32 (address 0: not
//!   written).
//! - GroupNorm (and InstanceNorm as C groups): `X` as `[N, C, S]`, statistics per image and
//!   group of `C / G` channels; `y = (x - mean) / sqrt(var + eps) * scale + bias` with scale
//!   and bias per channel, or per group (opset 18's form).

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::library::ModuleSpec;
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, invalid, unsupported};

const BODY: &str = r#"
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

extern "C" __global__ void kiln_layer_norm(const A_s* px, const A_s* ps, const A_s* pb, A_s* py,
    float* pmean, float* pinv, long long rows, long long cols, long long slen, long long blen,
    float eps) {
    __shared__ float shm[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        long long base = r * cols;
        float m, v;
        kiln_moments(px, base, cols, shm, &m, &v);
        float inv = 1.f / sqrtf(v + eps);
        for (long long k = threadIdx.x; k < cols; k += blockDim.x) {
            float y = (A_tof(A_ld(px, base + k)) - m) * inv;
            y = y * A_tof(A_ld(ps, k % slen));
            if (pb) y = y + A_tof(A_ld(pb, k % blen));
            A_st(py, base + k, A_fromf(y));
        }
        if (threadIdx.x == 0) {
            if (pmean) pmean[r] = m;
            if (pinv) pinv[r] = inv;
        }
    }
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

/// The normalisation module for `dtype` (f32, f16, bf16).
pub fn module(dtype: DataType) -> Result<ModuleSpec> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("normalization", dtype))?;
    let mut body = type_defs("A", t);
    body.push_str(BODY);
    Ok(ModuleSpec {
        name: format!("norm_{}", t.tag),
        source: module_source(&body),
    })
}

fn launch(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    func: &str,
    (blocks, len): (usize, usize),
    args: &[Arg],
) -> Result<()> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported(func, dtype))?;
    if blocks == 0 || len == 0 {
        return Ok(());
    }
    let block = super::layout::row_block(len).min(512);
    lib.launch(
        stream,
        &format!("norm_{}", t.tag),
        || module(dtype).map(|m| m.source).unwrap_or_default(),
        func,
        (blocks.min(1 << 20) as u32, block, 0),
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

/// LayerNormalization over rows of `cols` elements; `scale_len` and `bias_len` divide `cols`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    rows: usize,
    cols: usize,
    (scale_len, bias_len): (usize, usize),
    epsilon: f32,
    io: LayerNormIo,
) -> Result<()> {
    let fits = |n: usize| n > 0 && cols.is_multiple_of(n);
    if !fits(scale_len) || (io.bias.0 != 0 && !fits(bias_len)) {
        return Err(invalid(
            "layer_norm",
            format!("scale ({scale_len}) and bias ({bias_len}) must divide the row length {cols}"),
        ));
    }
    let args = [
        Arg::Ptr(io.x.0),
        Arg::Ptr(io.scale.0),
        Arg::Ptr(io.bias.0),
        Arg::Ptr(io.y.0),
        Arg::Ptr(io.mean.0),
        Arg::Ptr(io.inv_std.0),
        Arg::I64(rows as i64),
        Arg::I64(cols as i64),
        Arg::I64(scale_len as i64),
        Arg::I64(bias_len.max(1) as i64),
        Arg::F32(epsilon),
    ];
    launch(lib, stream, dtype, "kiln_layer_norm", (rows, cols), &args)
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
    if groups == 0 || !channels.is_multiple_of(groups) {
        return Err(invalid(
            "group_norm",
            format!("num_groups {groups} does not divide C = {channels}"),
        ));
    }
    let total = n * groups;
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
    launch(
        lib,
        stream,
        dtype,
        "kiln_group_norm",
        (total, channels / groups * spatial),
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
            assert!(m.source.contains("kiln_layer_norm(") && m.source.contains("kiln_group_norm("));
        }
        assert!(module(DataType::I64).is_err());
    }
}
