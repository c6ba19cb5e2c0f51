//! The CUDA C shared by every generated module, and the element types the kernels store.
//!
//! No CUDA header is included (NVRTC's include path differs between versions): f16 goes
//! through the PTX `cvt` instructions, bf16 through bit arithmetic (round to nearest even, NaN
//! kept quiet, as the `half` crate does), so f16/bf16 values are computed in f32 and rounded
//! once on store, exactly as kiln-reference does.

use kiln_core::DataType;

/// How one element type is stored and computed in the generated C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CType {
    pub dtype: DataType,
    /// C storage type.
    pub store: &'static str,
    /// C type arithmetic is done in (float for f32/f16/bf16; the type itself otherwise).
    pub compute: &'static str,
    /// Short tag used in module and function names.
    pub tag: &'static str,
}

/// The element types kiln's kernels store, with their C types; `None` for others.
pub fn ctype(dtype: DataType) -> Option<CType> {
    let (store, compute, tag) = match dtype {
        DataType::F32 => ("float", "float", "f32"),
        DataType::F16 => ("unsigned short", "float", "f16"),
        DataType::BF16 => ("unsigned short", "float", "bf16"),
        DataType::I32 => ("int", "int", "i32"),
        DataType::I64 => ("long long", "long long", "i64"),
        DataType::I8 => ("signed char", "int", "i8"),
        DataType::U8 => ("unsigned char", "int", "u8"),
        DataType::Bool => ("unsigned char", "int", "bool"),
        _ => return None,
    };
    Some(CType {
        dtype,
        store,
        compute,
        tag,
    })
}

/// True for the float types kernels compute in f32 (f32, f16, bf16).
pub fn is_float(dtype: DataType) -> bool {
    matches!(dtype, DataType::F32 | DataType::F16 | DataType::BF16)
}

/// C definitions for element type `t` under the prefix `p`: `p_s` (storage), `p_c` (compute),
/// `p_ld(ptr, i)`, `p_st(ptr, i, v)`, `p_tof(v)` (compute to float) and `p_fromf(f)` (float to
/// compute, with numpy's cast rules for integers).
pub fn type_defs(p: &str, t: CType) -> String {
    let (ld, st) = match t.dtype {
        DataType::F16 => ("kiln_f16_to_f32(q[i])", "kiln_f32_to_f16(v)"),
        DataType::BF16 => ("kiln_bf16_to_f32(q[i])", "kiln_f32_to_bf16(v)"),
        DataType::Bool => ("(int)(q[i] != 0)", "(unsigned char)(v != 0)"),
        _ => ("q[i]", "v"),
    };
    let st = format!("({}){st}", t.store);
    let fromf = if is_float(t.dtype) {
        "f".to_string()
    } else if t.dtype == DataType::Bool {
        "(int)(f != 0.f)".to_string()
    } else {
        format!("({})kiln_f2i(f)", t.compute)
    };
    format!(
        "typedef {s} {p}_s;\ntypedef {c} {p}_c;\n\
         __device__ __forceinline__ {p}_c {p}_ld(const {p}_s* q, long long i) {{ return {ld}; }}\n\
         __device__ __forceinline__ void {p}_st({p}_s* q, long long i, {p}_c v) {{ q[i] = {st}; }}\n\
         __device__ __forceinline__ float {p}_tof({p}_c v) {{ return (float)v; }}\n\
         __device__ __forceinline__ {p}_c {p}_fromf(float f) {{ return {fromf}; }}\n",
        s = t.store,
        c = t.compute,
    )
}

/// The code every module starts with.
pub const PRELUDE: &str = r#"
// ---- kiln prelude ----
#define KILN_MAX_RANK 8
struct KDims { long long v[KILN_MAX_RANK]; };

__device__ __forceinline__ float kiln_f16_to_f32(unsigned short h) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ unsigned short kiln_f32_to_f16(float f) {
    unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ float kiln_bf16_to_f32(unsigned short h) {
    return __uint_as_float(((unsigned int)h) << 16);
}
__device__ __forceinline__ unsigned short kiln_f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}
__device__ __forceinline__ float kiln_nan() { return __int_as_float(0x7fffffff); }
__device__ __forceinline__ float kiln_inf() { return __int_as_float(0x7f800000); }
// numpy's minimum/maximum: NaN if either is NaN.
__device__ __forceinline__ float kiln_maxf(float a, float b) {
    return (a != a) ? a : ((b != b || b > a) ? b : a);
}
__device__ __forceinline__ float kiln_minf(float a, float b) {
    return (a != a) ? a : ((b != b || b < a) ? b : a);
}
// numpy's float -> integer cast: truncation toward zero, NaN -> 0, saturation at 64 bits
// (then the caller's narrowing wraps).
__device__ __forceinline__ long long kiln_f2i(float f) {
    if (f != f) return 0;
    if (f < 0.f) return (long long)f;
    return (long long)(unsigned long long)f;
}
__device__ __forceinline__ long long kiln_d2i(double f) {
    if (f != f) return 0;
    if (f < 0.0) return (long long)f;
    return (long long)(unsigned long long)f;
}
// Offsets of row-major linear index i of `shape` (rank r) under two stride sets (in
// elements). The loop is unrolled over KILN_MAX_RANK with a guard, so every KDims is read at
// a constant index: a run-time index would copy the by-value parameters to local memory in
// every thread (that made these kernels ~15x slower than a plain copy). Division is 32-bit
// while the values fit, 64-bit division being several times dearer.
__device__ __forceinline__ long long kiln_divmod(long long i, long long s, long long& q) {
    if (((unsigned long long)i | (unsigned long long)s) < 0x80000000ULL) {
        unsigned int ui = (unsigned int)i, us = (unsigned int)s, uq = ui / us;
        q = uq;
        return (long long)(ui - uq * us);
    }
    q = i / s;
    return i - q * s;
}
__device__ __forceinline__ void kiln_offset2(long long i, const KDims& shape,
                                             const KDims& s1, const KDims& s2, int r,
                                             long long& o1, long long& o2) {
    o1 = 0;
    o2 = 0;
#pragma unroll
    for (int k = 0; k < KILN_MAX_RANK; ++k) {
        const int d = KILN_MAX_RANK - 1 - k;
        if (d < r) {
            long long q;
            long long c = kiln_divmod(i, shape.v[d], q);
            i = q;
            o1 += c * s1.v[d];
            o2 += c * s2.v[d];
        }
    }
}
__device__ __forceinline__ long long kiln_offset(long long i, const KDims& shape,
                                                 const KDims& strides, int r) {
    long long off = 0;
#pragma unroll
    for (int k = 0; k < KILN_MAX_RANK; ++k) {
        const int d = KILN_MAX_RANK - 1 - k;
        if (d < r) {
            long long q;
            long long c = kiln_divmod(i, shape.v[d], q);
            i = q;
            off += c * strides.v[d];
        }
    }
    return off;
}
#define KILN_GRID_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)gridDim.x * blockDim.x)

struct KSum { __device__ static float id() { return 0.f; }
              __device__ static float op(float a, float b) { return a + b; } };
struct KProd { __device__ static float id() { return 1.f; }
               __device__ static float op(float a, float b) { return a * b; } };
struct KMax { __device__ static float id() { return -kiln_inf(); }
              __device__ static float op(float a, float b) { return kiln_maxf(a, b); } };
struct KMin { __device__ static float id() { return kiln_inf(); }
              __device__ static float op(float a, float b) { return kiln_minf(a, b); } };
// Max that ignores NaN (Softmax's shift).
struct KMaxNum { __device__ static float id() { return -kiln_inf(); }
                 __device__ static float op(float a, float b) { return b > a ? b : a; } };

// Reduces v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets
// the result. `shm` holds 32 floats.
template <class Op>
__device__ float kiln_block_reduce(float v, float* shm) {
    for (int o = 16; o > 0; o >>= 1) v = Op::op(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shm[w] = v;
    __syncthreads();
    int nw = (blockDim.x + 31) >> 5;
    v = (lane < nw) ? shm[lane] : Op::id();
    for (int o = 16; o > 0; o >>= 1) v = Op::op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// ---- end of prelude ----
"#;

/// A module's full source: the prelude, then `body`.
pub fn module_source(body: &str) -> String {
    let mut s = String::with_capacity(PRELUDE.len() + body.len() + 1);
    s.push_str(PRELUDE);
    s.push_str(body);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_type_has_a_ctype() {
        for dt in [
            DataType::F32,
            DataType::F16,
            DataType::BF16,
            DataType::I32,
            DataType::I64,
            DataType::I8,
            DataType::U8,
            DataType::Bool,
        ] {
            let t = ctype(dt).unwrap();
            assert_eq!(t.dtype, dt);
            let d = type_defs("X", t);
            assert!(d.contains("X_ld") && d.contains("X_st") && d.contains("X_fromf"));
        }
        assert!(ctype(DataType::F64).is_none());
        assert!(ctype(DataType::U64).is_none());
    }

    #[test]
    fn half_types_convert_through_f32() {
        let d = type_defs("A", ctype(DataType::F16).unwrap());
        assert!(d.contains("typedef float A_c;"));
        assert!(d.contains("kiln_f32_to_f16(v)"));
        let d = type_defs("B", ctype(DataType::BF16).unwrap());
        assert!(d.contains("kiln_bf16_to_f32(q[i])"));
        let d = type_defs("C", ctype(DataType::I64).unwrap());
        assert!(d.contains("(long long)kiln_f2i(f)"));
    }

    #[test]
    fn prelude_braces_balance() {
        let src = module_source("extern \"C\" __global__ void k() {}\n");
        let open = src.matches('{').count();
        let close = src.matches('}').count();
        assert_eq!(open, close);
    }
}
