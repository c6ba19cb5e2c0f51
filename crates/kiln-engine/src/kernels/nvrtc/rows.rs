//! Row machinery shared by the normalisation and softmax kernels: how a contiguous row maps
//! onto threads ([`RowPlan`]), the fixed set of template instantiations per element type, and
//! the CUDA helpers that move a row in 16-byte vectors.

use kiln_core::DataType;

use super::DevicePtr;
use super::prelude::CType;

/// Threads per block of the warp-per-row kernels.
pub(crate) const WARP_BLOCK: u32 = 128;

/// Vectors per thread of the block-per-row kernels.
const BLOCK_CHUNKS: [usize; 4] = [1, 2, 4, 8];

/// How a kernel over contiguous rows of `len` elements maps a row onto threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowPlan {
    /// `g` threads per row (a power of two up to 32; `32 / g` rows per warp), each holding
    /// `chunks` vectors of `vec` elements (vector `c * g + t` of the row for thread `t`).
    Warp { vec: usize, g: usize, chunks: usize },
    /// One block of `threads` per row, each thread holding `chunks` vectors.
    Block {
        vec: usize,
        chunks: usize,
        threads: u32,
    },
    /// Too long to hold in registers: the multi-pass kernel.
    Generic,
}

/// Elements of `dtype` in 16 bytes.
pub(crate) fn vec_width(t: CType) -> usize {
    16 / t.dtype.size_in_bytes()
}

/// Vectors per thread of the full-warp plans: a full warp covers 1024 elements at most.
fn warp_chunks(vec: usize) -> &'static [usize] {
    match vec {
        1 => &[2, 4, 8, 16, 32],
        4 => &[2, 3, 4, 6, 8],
        _ => &[2, 3, 4],
    }
}

/// Every (vec, g, chunks) the warp kernels are instantiated for, at vector width `vw`.
pub(crate) fn warp_configs(vw: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for vec in [1, vw] {
        for g in [1, 2, 4, 8, 16, 32] {
            out.push((vec, g, 1));
        }
        for &c in warp_chunks(vec) {
            out.push((vec, 32, c));
        }
    }
    out
}

/// Every (vec, chunks) the block kernels are instantiated for, at vector width `vw`.
pub(crate) fn block_configs(vw: usize) -> Vec<(usize, usize)> {
    [1, vw]
        .into_iter()
        .flat_map(|v| BLOCK_CHUNKS.into_iter().map(move |c| (v, c)))
        .collect()
}

/// The plan of rows of `len` (> 0) elements: vectors of `vw` elements when `vectorise`
/// (every address 16-byte aligned) and `vw` divides `len`, single elements otherwise.
pub(crate) fn row_plan(len: usize, vw: usize, vectorise: bool) -> RowPlan {
    let vec = if vectorise && vw > 1 && len.is_multiple_of(vw) {
        vw
    } else {
        1
    };
    let nv = len / vec;
    if nv <= 32 {
        return RowPlan::Warp {
            vec,
            g: nv.max(1).next_power_of_two(),
            chunks: 1,
        };
    }
    if let Some(&chunks) = warp_chunks(vec).iter().find(|&&c| c * 32 >= nv) {
        return RowPlan::Warp { vec, g: 32, chunks };
    }
    let block = |chunks: usize, limit: usize| {
        let per = nv.div_ceil(chunks);
        (per <= limit).then(|| RowPlan::Block {
            vec,
            chunks,
            threads: per.div_ceil(32) as u32 * 32,
        })
    };
    BLOCK_CHUNKS
        .iter()
        .find_map(|&c| block(c, 512))
        .or_else(|| block(8, 1024))
        .unwrap_or(RowPlan::Generic)
}

/// The kernel name of a plan: `{prefix}_w_v{vec}_g{g}_n{chunks}` or `{prefix}_b_v{vec}_n{chunks}`.
pub(crate) fn plan_kernel(prefix: &str, plan: RowPlan) -> Option<String> {
    match plan {
        RowPlan::Warp { vec, g, chunks } => Some(format!("{prefix}_w_v{vec}_g{g}_n{chunks}")),
        RowPlan::Block { vec, chunks, .. } => Some(format!("{prefix}_b_v{vec}_n{chunks}")),
        RowPlan::Generic => None,
    }
}

/// Grid and block of a plan over `rows` rows.
pub(crate) fn plan_launch(plan: RowPlan, rows: usize) -> (u32, u32) {
    let cap = i32::MAX as usize;
    match plan {
        RowPlan::Warp { g, .. } => {
            let per_block = WARP_BLOCK as usize / g;
            (rows.div_ceil(per_block).clamp(1, cap) as u32, WARP_BLOCK)
        }
        RowPlan::Block { threads, .. } => (rows.clamp(1, cap) as u32, threads),
        RowPlan::Generic => (rows.clamp(1, 1 << 20) as u32, 256),
    }
}

/// Whether every present address (non-zero) is 16-byte aligned.
pub(crate) fn aligned16(ptrs: &[DevicePtr]) -> bool {
    ptrs.iter().all(|p| p.0 % 16 == 0)
}

/// Extern wrappers instantiating `template` (a device function taking `params`' names) for
/// every warp and block plan: `{prefix}_w_…` with `template<V, G, N>` and `{prefix}_b_…`
/// with `template_block<V, N>`.
pub(crate) fn instantiate(
    prefix: &str,
    template: &str,
    vw: usize,
    params: &str,
    names: &str,
) -> String {
    let mut s = String::new();
    for (v, g, n) in warp_configs(vw) {
        s.push_str(&format!(
            "extern \"C\" __global__ void __launch_bounds__({WARP_BLOCK}) \
             {prefix}_w_v{v}_g{g}_n{n}({params}) {{ {template}<{v}, {g}, {n}>({names}); }}\n"
        ));
    }
    for (v, n) in block_configs(vw) {
        s.push_str(&format!(
            "extern \"C\" __global__ void __launch_bounds__(1024) \
             {prefix}_b_v{v}_n{n}({params}) {{ {template}_block<{v}, {n}>({names}); }}\n"
        ));
    }
    s
}

/// CUDA helpers of the row kernels for element type `t` (after `type_defs("A", t)`):
/// `kr_load<V>` / `kr_store<V>` move V elements (one 16-byte vector when V > 1) as floats,
/// `kr_round` rounds a float to the element type and back, `kr_gsum<G>` / `kr_gmax<G>`
/// reduce over aligned groups of G lanes (every lane of the warp must call them).
pub(crate) fn row_defs(t: CType) -> String {
    let (get, put, round) = match t.dtype {
        DataType::F16 => (
            "kiln_f16_to_f32((unsigned short)(w[i >> 1] >> ((i & 1) * 16)))",
            "unsigned int h = kiln_f32_to_f16(f); \
             w[i >> 1] = (i & 1) ? (w[i >> 1] | (h << 16)) : h;",
            "kiln_f16_to_f32(kiln_f32_to_f16(f))",
        ),
        DataType::BF16 => (
            "__uint_as_float((i & 1) ? (w[i >> 1] & 0xffff0000u) : (w[i >> 1] << 16))",
            "unsigned int h = kiln_f32_to_bf16(f); \
             w[i >> 1] = (i & 1) ? (w[i >> 1] | (h << 16)) : h;",
            "kiln_bf16_to_f32(kiln_f32_to_bf16(f))",
        ),
        _ => ("__uint_as_float(w[i])", "w[i] = __float_as_uint(f);", "f"),
    };
    format!(
        r#"
struct alignas(16) kr_v16 {{ unsigned int w[4]; }};
__device__ __forceinline__ float kr_get(const unsigned int (&w)[4], int i) {{ return {get}; }}
__device__ __forceinline__ void kr_put(unsigned int (&w)[4], int i, float f) {{ {put} }}
__device__ __forceinline__ float kr_round(float f) {{ return {round}; }}
template <int V>
__device__ __forceinline__ void kr_load(const A_s* p, float (&f)[V]) {{
    if constexpr (V == 1) {{
        f[0] = A_tof(A_ld(p, 0));
    }} else {{
        const kr_v16 u = *reinterpret_cast<const kr_v16*>(p);
#pragma unroll
        for (int i = 0; i < V; ++i) f[i] = kr_get(u.w, i);
    }}
}}
template <int V>
__device__ __forceinline__ void kr_store(A_s* p, const float (&f)[V]) {{
    if constexpr (V == 1) {{
        A_st(p, 0, A_fromf(f[0]));
    }} else {{
        kr_v16 u;
#pragma unroll
        for (int i = 0; i < 4; ++i) u.w[i] = 0u;
#pragma unroll
        for (int i = 0; i < V; ++i) kr_put(u.w, i, f[i]);
        *reinterpret_cast<kr_v16*>(p) = u;
    }}
}}
template <int G>
__device__ __forceinline__ float kr_gsum(float v) {{
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}}
template <int G>
__device__ __forceinline__ float kr_gmax(float v) {{
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) v = KMaxNum::op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}}
"#
    )
}

/// Test helper: every row plan of lengths 1..=70000 (vectorised or not) names a kernel that
/// `module`'s source defines, for each float type.
#[cfg(test)]
pub(crate) fn assert_every_plan_has_its_kernel(
    module: fn(DataType) -> super::Result<super::library::ModuleSpec>,
    prefix: &str,
) {
    for dt in [DataType::F32, DataType::F16, DataType::BF16] {
        let t = super::prelude::ctype(dt).unwrap();
        let src = module(dt).unwrap().source;
        let names: std::collections::BTreeSet<String> = (1..=70_000usize)
            .flat_map(|len| [false, true].map(|v| row_plan(len, vec_width(t), v)))
            .filter_map(|plan| plan_kernel(prefix, plan))
            .collect();
        assert!(names.len() > 10);
        for name in names {
            assert!(src.contains(&format!(" {name}(")), "{dt}: {name}");
        }
    }
}
