//! Reductions over any set of axes (ReduceSum, Mean, Max, Min, Prod, L1, L2, SumSquare,
//! LogSum, LogSumExp) and ArgMax / ArgMin along one axis; one block per output element,
//! f32 accumulation.
//!
//! As kiln-reference: Max/Min propagate NaN, an empty reduction gives the identity (0, 1,
//! -inf, +inf; Mean 0/0), LogSumExp subtracts the finite maximum first. ArgMax/ArgMin return
//! int64 indices: a NaN counts as the extreme (the first NaN wins), ties go to the first index
//! or, with `select_last_index`, the last.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{Dims, collapse, contiguous_strides, numel, row_block};
use super::library::ModuleSpec;
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, invalid, unsupported};

/// A reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSum,
    LogSumExp,
}

/// (name, block op, value before accumulation, result from the accumulated `acc` and count `R`).
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("sum", "KSum", "v", "acc"),
    ("mean", "KSum", "v", "acc / (float)R"),
    ("max", "KMax", "v", "acc"),
    ("min", "KMin", "v", "acc"),
    ("prod", "KProd", "v", "acc"),
    ("l1", "KSum", "fabsf(v)", "acc"),
    ("l2", "KSum", "v * v", "sqrtf(acc)"),
    ("sum_square", "KSum", "v * v", "acc"),
    ("log_sum", "KSum", "v", "logf(acc)"),
];

impl ReduceOp {
    pub fn name(self) -> &'static str {
        use ReduceOp::*;
        match self {
            Sum => "sum",
            Mean => "mean",
            Max => "max",
            Min => "min",
            Prod => "prod",
            L1 => "l1",
            L2 => "l2",
            SumSquare => "sum_square",
            LogSum => "log_sum",
            LogSumExp => "log_sum_exp",
        }
    }
}

const ARG_BODY: &str = r#"
__device__ __forceinline__ void kiln_arg_combine(float& v, long long& i, float v2, long long i2,
                                                 int is_max, int last) {
    bool take;
    bool n1 = v != v, n2 = v2 != v2;
    if (i2 < 0) take = false;
    else if (i < 0) take = true;
    else if (n1 || n2) take = n2 && (!n1 || i2 < i);
    else if (v2 != v) take = is_max ? (v2 > v) : (v2 < v);
    else take = last ? (i2 > i) : (i2 < i);
    if (take) { v = v2; i = i2; }
}

extern "C" __global__ void kiln_arg(const A_s* px, long long* py, long long lanes, long long len,
                                    long long inner, int is_max, int last) {
    __shared__ float sv[32];
    __shared__ long long si[32];
    for (long long lane = blockIdx.x; lane < lanes; lane += gridDim.x) {
        long long o = lane / inner, in = lane % inner;
        long long base = o * len * inner + in;
        float v = 0.f;
        long long idx = -1;
        for (long long k = threadIdx.x; k < len; k += blockDim.x)
            kiln_arg_combine(v, idx, A_tof(A_ld(px, base + k * inner)), k, is_max, last);
        for (int s = 16; s > 0; s >>= 1) {
            float v2 = __shfl_xor_sync(0xffffffffu, v, s);
            long long i2 = __shfl_xor_sync(0xffffffffu, idx, s);
            kiln_arg_combine(v, idx, v2, i2, is_max, last);
        }
        int w = threadIdx.x >> 5, l = threadIdx.x & 31;
        __syncthreads();
        if (l == 0) { sv[w] = v; si[w] = idx; }
        __syncthreads();
        if (w == 0) {
            int nw = (blockDim.x + 31) >> 5;
            v = l < nw ? sv[l] : 0.f;
            idx = l < nw ? si[l] : -1;
            for (int s = 16; s > 0; s >>= 1) {
                float v2 = __shfl_xor_sync(0xffffffffu, v, s);
                long long i2 = __shfl_xor_sync(0xffffffffu, idx, s);
                kiln_arg_combine(v, idx, v2, i2, is_max, last);
            }
            if (l == 0) py[lane] = idx < 0 ? 0 : idx;
        }
    }
}
"#;

/// The reduction module for `dtype` (f32, f16, bf16).
pub fn module(dtype: DataType) -> Result<ModuleSpec> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("reduction", dtype))?;
    let mut body = type_defs("A", t);
    let head = "(const A_s* px, A_s* py, long long nout, long long R, KDims kshape, KDims kstr,\n    \
                int krank, KDims rshape, KDims rstr, int rrank)";
    let lp = "long long base = kiln_offset(o, kshape, kstr, krank);";
    let val = "A_tof(A_ld(px, base + kiln_offset(r, rshape, rstr, rrank)))";
    for (name, op, pre, post) in KINDS {
        body.push_str(&format!(
            "extern \"C\" __global__ void kiln_reduce_{name}{head} {{\n    \
             __shared__ float shm[32];\n    \
             for (long long o = blockIdx.x; o < nout; o += gridDim.x) {{\n        {lp}\n        \
             float acc = {op}::id();\n        \
             for (long long r = threadIdx.x; r < R; r += blockDim.x) {{ float v = {val}; acc = {op}::op(acc, {pre}); }}\n        \
             acc = kiln_block_reduce<{op}>(acc, shm);\n        \
             if (threadIdx.x == 0) A_st(py, o, A_fromf({post}));\n    }}\n}}\n"
        ));
    }
    body.push_str(&format!(
        "extern \"C\" __global__ void kiln_reduce_log_sum_exp{head} {{\n    \
         __shared__ float shm[32];\n    \
         for (long long o = blockIdx.x; o < nout; o += gridDim.x) {{\n        {lp}\n        \
         float m = -kiln_inf();\n        \
         for (long long r = threadIdx.x; r < R; r += blockDim.x) {{ float v = {val}; m = KMaxNum::op(m, v); }}\n        \
         m = kiln_block_reduce<KMaxNum>(m, shm);\n        \
         if (m == kiln_inf() || m == -kiln_inf()) m = 0.f;\n        \
         float acc = 0.f;\n        \
         for (long long r = threadIdx.x; r < R; r += blockDim.x) {{ float v = {val}; acc += expf(v - m); }}\n        \
         acc = kiln_block_reduce<KSum>(acc, shm);\n        \
         if (threadIdx.x == 0) A_st(py, o, A_fromf(logf(acc) + m));\n    }}\n}}\n"
    ));
    body.push_str(ARG_BODY);
    Ok(ModuleSpec {
        name: format!("reduce_{}", t.tag),
        source: module_source(&body),
    })
}

/// How a reduction indexes its input: kept axes (the output, row-major) and reduced axes,
/// each collapsed, with their input strides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReducePlan {
    pub n_out: usize,
    pub count: usize,
    pub kept_shape: Vec<usize>,
    pub kept_strides: Vec<i64>,
    pub red_shape: Vec<usize>,
    pub red_strides: Vec<i64>,
}

/// Plans a reduction of a row-major `shape` over `axes` (sorted or not, no repeats).
pub fn plan(shape: &[usize], axes: &[usize]) -> Result<ReducePlan> {
    let rank = shape.len();
    let mut seen = vec![false; rank];
    for &a in axes {
        if a >= rank || std::mem::replace(&mut seen[a], true) {
            return Err(invalid("reduce", format!("axes {axes:?} for rank {rank}")));
        }
    }
    let st = contiguous_strides(shape);
    let pick = |want: bool| -> (Vec<usize>, Vec<i64>) {
        let idx: Vec<usize> = (0..rank).filter(|&i| seen[i] == want).collect();
        let s: Vec<usize> = idx.iter().map(|&i| shape[i]).collect();
        let t: Vec<i64> = idx.iter().map(|&i| st[i]).collect();
        let (s, t) = collapse(&s, &[t]);
        (s, t.into_iter().next().unwrap_or_default())
    };
    let (kept_shape, kept_strides) = pick(false);
    let (red_shape, red_strides) = pick(true);
    let n_out = numel(&kept_shape, "reduce")?;
    let count = numel(&red_shape, "reduce")?;
    if kept_shape.len() > super::MAX_RANK || red_shape.len() > super::MAX_RANK {
        return Err(invalid("reduce", "too many axes"));
    }
    Ok(ReducePlan {
        n_out,
        count,
        kept_shape,
        kept_strides,
        red_shape,
        red_strides,
    })
}

/// Reduces a row-major tensor of `shape` over `axes`; the output (row-major over the kept
/// axes, keepdims or not: the same bytes) has `x`'s type.
#[allow(clippy::too_many_arguments)]
pub fn reduce(
    lib: &KernelLibrary,
    stream: &Stream,
    op: ReduceOp,
    dtype: DataType,
    shape: &[usize],
    axes: &[usize],
    x: DevicePtr,
    y: DevicePtr,
) -> Result<()> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported(op.name(), dtype))?;
    let p = plan(shape, axes)?;
    if p.n_out == 0 {
        return Ok(());
    }
    let args = [
        Arg::Ptr(x.0),
        Arg::Ptr(y.0),
        Arg::I64(p.n_out as i64),
        Arg::I64(p.count as i64),
        Arg::Dims(Dims::shape(&p.kept_shape, "reduce")?),
        Arg::Dims(Dims::strides(&p.kept_strides, "reduce")?),
        Arg::I32(p.kept_shape.len() as i32),
        Arg::Dims(Dims::shape(&p.red_shape, "reduce")?),
        Arg::Dims(Dims::strides(&p.red_strides, "reduce")?),
        Arg::I32(p.red_shape.len() as i32),
    ];
    lib.launch(
        stream,
        &format!("reduce_{}", t.tag),
        || module(dtype).map(|m| m.source).unwrap_or_default(),
        &format!("kiln_reduce_{}", op.name()),
        (p.n_out.min(1 << 20) as u32, row_block(p.count).min(256), 0),
        &args,
    )
}

/// ArgMax (`max`) or ArgMin of a tensor laid out `[outer, len, inner]` around the axis; `y`
/// is int64 `[outer, inner]`.
#[allow(clippy::too_many_arguments)]
pub fn arg_extreme(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    max: bool,
    select_last_index: bool,
    (outer, len, inner): (usize, usize, usize),
    x: DevicePtr,
    y: DevicePtr,
) -> Result<()> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("argmax", dtype))?;
    if len == 0 {
        return Err(invalid("argmax", "the axis has size 0"));
    }
    let lanes = outer * inner;
    if lanes == 0 {
        return Ok(());
    }
    let args = [
        Arg::Ptr(x.0),
        Arg::Ptr(y.0),
        Arg::I64(lanes as i64),
        Arg::I64(len as i64),
        Arg::I64(inner as i64),
        Arg::I32(i32::from(max)),
        Arg::I32(i32::from(select_last_index)),
    ];
    lib.launch(
        stream,
        &format!("reduce_{}", t.tag),
        || module(dtype).map(|m| m.source).unwrap_or_default(),
        "kiln_arg",
        (lanes.min(1 << 20) as u32, row_block(len).min(256), 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let p = plan(&[2, 3, 4], &[2]).unwrap();
        assert_eq!((p.n_out, p.count), (6, 4));
        assert_eq!(
            (p.kept_shape.clone(), p.kept_strides.clone()),
            (vec![6], vec![4])
        );
        assert_eq!(
            (p.red_shape.clone(), p.red_strides.clone()),
            (vec![4], vec![1])
        );
        let p = plan(&[2, 3, 4], &[0, 2]).unwrap();
        assert_eq!(
            (p.kept_shape.clone(), p.kept_strides.clone()),
            (vec![3], vec![4])
        );
        assert_eq!(
            (p.red_shape.clone(), p.red_strides.clone()),
            (vec![2, 4], vec![12, 1])
        );
        let p = plan(&[2, 3], &[]).unwrap();
        assert_eq!((p.n_out, p.count), (6, 1));
        let p = plan(&[2, 3], &[0, 1]).unwrap();
        assert_eq!((p.n_out, p.count), (1, 6));
        assert!(plan(&[2, 3], &[1, 1]).is_err());
        assert!(plan(&[2, 3], &[2]).is_err());
    }

    #[test]
    fn module_has_every_kind() {
        let src = module(DataType::F32).unwrap().source;
        for op in [
            ReduceOp::Sum,
            ReduceOp::Mean,
            ReduceOp::Max,
            ReduceOp::Min,
            ReduceOp::Prod,
            ReduceOp::L1,
            ReduceOp::L2,
            ReduceOp::SumSquare,
            ReduceOp::LogSum,
            ReduceOp::LogSumExp,
        ] {
            assert!(
                src.contains(&format!("kiln_reduce_{}(", op.name())),
                "{op:?}"
            );
        }
        assert!(src.contains("kiln_arg("));
        assert_eq!(src.matches('{').count(), src.matches('}').count());
    }
}
