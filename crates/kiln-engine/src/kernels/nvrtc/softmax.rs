//! Softmax and LogSoftmax along one axis, one block per lane, f32 accumulation.
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
