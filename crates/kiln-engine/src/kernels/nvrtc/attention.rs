//! Fused attention `O = softmax(scale · Q Kᵀ + M) V` for one (batch, head) per query tile,
//! flash-attention style: the scores never leave the chip. Each CTA takes one (b, h) and a
//! tile of queries, walks the keys in tiles and keeps, per query row, the running maximum and
//! sum of the softmax (f32) and an f32 accumulator of the output, rescaled whenever the
//! maximum grows ("online softmax"). The additive mask is read per element in f32 with
//! broadcast strides (0 on broadcast axes). Any `Sq, Sk ≥ 1` (tails are masked out).
//!
//! Q, K, V and O are addressed through 4-D strides in elements, in the logical order
//! `[B, H, S, D]` (K as `[B, H, Sk, D]`, whatever transposes the model wrote around it), so
//! the head transposes of a BERT export are just strides. The module source depends on the
//! element type and the head size `D` only (a module per `D`); B, H, S and the strides are
//! kernel parameters.
//!
//! Three kernels, each selectable ([`Stage`]):
//! - `kiln_attention_simt` (stage 1): CUDA cores, f32/f16/bf16, any strides. 4 warps, 16
//!   query rows per CTA (4 per warp), tiles of 32 keys held in shared memory as f32; lane j
//!   scores key j, lanes own output columns `lane + 32t`. The reference for stage 2 and the
//!   fallback.
//! - `kiln_attention_mma` (stage 2, f16/bf16, sm_80+): tensor cores through inline PTX
//!   `mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32`. 4 warps, 64 query rows
//!   per CTA (16 per warp), tiles of 64 keys loaded with `cp.async` (16-byte chunks, zero
//!   filled past the end) into padded shared memory; needs the D axis contiguous (stride 1),
//!   every other stride a multiple of 8 elements and 16-byte aligned base addresses. The
//!   scores (f32 accumulators of S = Q Kᵀ) become the A operand of P V in registers, rounded
//!   to the storage type; the softmax sum adds the rounded values, so the weights used are
//!   exactly normalised.
//! - `kiln_attention_mma_pipe` (stage 3, same requirements as stage 2; [`pipe`]): up to 128
//!   query rows per CTA (8 warps), K/V double-buffered with every load issued before it is
//!   waited for, Q fragments straight from global memory, `ldmatrix` for the K and V
//!   fragments, a row-constant mask staged per key tile, row sums on the tensor cores.
//!
//! mma.m16n8k16 fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
//! point type"); `g = lane >> 2` (groupID), `t = lane & 3` (threadID_in_group); each 32-bit
//! register holds two 16-bit values, the lower-indexed one in the low half:
//! - A (16×16, row-major, .f16x2 × 4): reg0 = (row g, cols 2t, 2t+1), reg1 = (row g+8, cols
//!   2t, 2t+1), reg2 = (row g, cols 2t+8, 2t+9), reg3 = (row g+8, cols 2t+8, 2t+9);
//! - B (16×8, "col": K×N, .f16x2 × 2): reg0 = (rows k = 2t, 2t+1, col n = g), reg1 = (rows
//!   k = 2t+8, 2t+9, col n = g);
//! - C/D (16×8, f32 × 4): c0 = (row g, col 2t), c1 = (row g, col 2t+1), c2 = (row g+8, col
//!   2t), c3 = (row g+8, col 2t+1).
//!
//! So for S = Q Kᵀ (M = queries, N = keys, K = head dims) the A registers are two adjacent
//! dims of one Q row and the B registers two adjacent dims of one K row (both 32-bit words
//! of a row-major tile); the C fragments of key n-tiles 2j and 2j+1 are exactly the A
//! fragment of k-step j of P V (reg0 = c0,c1 of tile 2j; reg1 = c2,c3 of tile 2j; reg2 =
//! c0,c1 of tile 2j+1; reg3 = c2,c3 of tile 2j+1); the B registers of P V (K = keys, N =
//! dims) pair two keys of one V column and are assembled from two 16-bit shared loads.

use kiln_core::{DataType, DevicePtr};
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{Dims, broadcast_strides, contiguous_strides};
use super::library::ModuleSpec;
use super::prelude::{ctype, module_source, type_defs};
use super::{KernelLibrary, Result, invalid, unsupported};

mod pipe;

const OP: &str = "attention";

/// Largest head size the kernels take.
pub const MAX_HEAD_DIM: usize = 128;

/// Which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// CUDA cores (any float type, any strides).
    Simt,
    /// Tensor cores (f16/bf16, sm_80+, D contiguous, 16-byte aligned rows), 64 query rows
    /// per CTA, one K/V tile in flight (stage 2).
    Mma,
    /// Tensor cores, same requirements as `Mma`: up to 128 query rows per CTA, K/V
    /// double-buffered, ldmatrix fragments (stage 3).
    MmaPipelined,
}

impl Stage {
    /// Whether the stage runs on tensor cores (f16/bf16, sm_80+, [`mma_fits`]).
    pub fn is_mma(self) -> bool {
        matches!(self, Stage::Mma | Stage::MmaPipelined)
    }
}

/// One operand as the node stores it: its dims and which of its axes holds each logical
/// `[B, H, S, D]` axis (`perm[i]` = stored axis of logical axis i).
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    pub dims: &'a [usize],
    pub perm: [usize; 4],
}

/// Sizes and strides (elements) of one attention call. Strides are in the logical order
/// `[B, H, S, D]` for q, k, v, o and `[B, H, Sq, Sk]` for the mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub heads: usize,
    pub sq: usize,
    pub sk: usize,
    pub d: usize,
    pub q: [i64; 4],
    pub k: [i64; 4],
    pub v: [i64; 4],
    pub o: [i64; 4],
    pub mask: Option<[i64; 4]>,
}

/// Logical dims and strides of a row-major tensor read through `perm`.
fn logical(what: &str, x: &Operand<'_>) -> Result<([usize; 4], [i64; 4])> {
    if x.dims.len() != 4 {
        return Err(invalid(
            OP,
            format!("{what} has rank {} (4 wanted)", x.dims.len()),
        ));
    }
    let mut seen = [false; 4];
    for &p in &x.perm {
        if p >= 4 || std::mem::replace(&mut seen[p], true) {
            return Err(invalid(
                OP,
                format!("{what}: {:?} is not a permutation", x.perm),
            ));
        }
    }
    let own = contiguous_strides(x.dims);
    let mut dims = [0usize; 4];
    let mut strides = [0i64; 4];
    for i in 0..4 {
        dims[i] = x.dims[x.perm[i]];
        strides[i] = own[x.perm[i]];
    }
    Ok((dims, strides))
}

/// The geometry of an attention over `q` `[B, H, Sq, D]`, `k` and `v` `[B, H, Sk, D]`, the
/// output `o` `[B, H, Sq, D]` and a mask broadcasting to `[B, H, Sq, Sk]` (all logical);
/// errors name what does not fit (including a head size the kernels do not take).
pub fn geometry(
    q: &Operand<'_>,
    k: &Operand<'_>,
    v: &Operand<'_>,
    o: &Operand<'_>,
    mask: Option<&[usize]>,
) -> Result<Geometry> {
    let (lq, qs) = logical("Q", q)?;
    let (lk, ks) = logical("K", k)?;
    let (lv, vs) = logical("V", v)?;
    let (lo, os) = logical("the output", o)?;
    let [b, h, sq, d] = lq;
    let sk = lk[2];
    if lk != [b, h, sk, d] || lv != [b, h, sk, d] || lo != [b, h, sq, d] {
        return Err(invalid(
            OP,
            format!(
                "Q {lq:?}, K {lk:?}, V {lv:?} and output {lo:?} (logical [B, H, S, D]) do not \
                 match"
            ),
        ));
    }
    if d == 0 || !d.is_multiple_of(8) || d > MAX_HEAD_DIM {
        return Err(invalid(
            OP,
            format!("head size {d} (a multiple of 8 up to {MAX_HEAD_DIM} wanted)"),
        ));
    }
    let mask = match mask {
        None => None,
        Some(m) => {
            let s = broadcast_strides(m, &[b, h, sq, sk]).ok_or_else(|| {
                invalid(
                    OP,
                    format!("mask {m:?} does not broadcast to {:?}", [b, h, sq, sk]),
                )
            })?;
            Some([s[0], s[1], s[2], s[3]])
        }
    };
    Ok(Geometry {
        batch: b,
        heads: h,
        sq,
        sk,
        d,
        q: qs,
        k: ks,
        v: vs,
        o: os,
        mask,
    })
}

/// Whether the tensor-core kernel takes this type and these strides (addresses are checked
/// at launch).
pub fn mma_fits(dtype: DataType, g: &Geometry) -> bool {
    let rows_ok = |s: &[i64; 4]| s[3] == 1 && s[..3].iter().all(|x| x % 8 == 0);
    matches!(dtype, DataType::F16 | DataType::BF16)
        && [&g.q, &g.k, &g.v, &g.o].into_iter().all(rows_ok)
}

/// Whether the kernels take element type `dtype`.
pub fn takes(dtype: DataType) -> bool {
    matches!(dtype, DataType::F32 | DataType::F16 | DataType::BF16)
}

fn module_name(dtype: DataType, d: usize) -> Result<String> {
    let t = ctype(dtype)
        .filter(|_| takes(dtype))
        .ok_or_else(|| unsupported(OP, dtype))?;
    Ok(format!("attention_{}_d{d}", t.tag))
}

/// The module of element type `dtype` and head size `d`: the CUDA-core kernel, and for
/// f16/bf16 the two tensor-core kernels (compiled to empty bodies below sm_80).
pub fn module(dtype: DataType, d: usize) -> Result<ModuleSpec> {
    let name = module_name(dtype, d)?;
    let t = ctype(dtype).ok_or_else(|| unsupported(OP, dtype))?;
    if d == 0 || !d.is_multiple_of(8) || d > MAX_HEAD_DIM {
        return Err(invalid(OP, format!("head size {d}")));
    }
    let dp = d.div_ceil(16) * 16;
    let mut body = type_defs("A", t);
    body.push_str(&format!(
        "#define KD {d}\n#define KDP {dp}\n#define KLDS {}\n",
        dp + 8
    ));
    body.push_str(SIMT);
    let mma = match dtype {
        DataType::F16 => Some(("f16", "kiln_f32_to_f16", "kiln_f16_to_f32")),
        DataType::BF16 => Some(("bf16", "kiln_f32_to_bf16", "kiln_bf16_to_f32")),
        _ => None,
    };
    if let Some((ab, to, from)) = mma {
        body.push_str(&format!(
            "#define KAB \"{ab}\"\n#define KTOH {to}\n#define KFROMH {from}\n"
        ));
        body.push_str(MMA);
        body.push_str(pipe::PIPE);
    }
    Ok(ModuleSpec {
        name,
        source: module_source(&body),
    })
}

/// Device addresses of one call (`mask` absent: no mask).
#[derive(Debug, Clone, Copy)]
pub struct Pointers {
    pub q: DevicePtr,
    pub k: DevicePtr,
    pub v: DevicePtr,
    pub mask: Option<DevicePtr>,
    pub o: DevicePtr,
}

impl Pointers {
    /// Whether q, k, v and o are 16-byte aligned (the tensor-core kernel's loads and stores).
    pub fn aligned16(&self) -> bool {
        [self.q, self.k, self.v, self.o]
            .iter()
            .all(|p| p.0 % 16 == 0)
    }
}

/// Queries per CTA and threads per CTA of each kernel for `sq` queries (stage 3: 8 warps of
/// 16 rows, 4 when `sq` ≤ 64).
pub fn launch_shape(stage: Stage, sq: usize) -> (usize, u32) {
    match stage {
        Stage::Simt => (16, 128),
        Stage::Mma => (64, 128),
        Stage::MmaPipelined if sq <= 64 => (64, 128),
        Stage::MmaPipelined => (128, 256),
    }
}

/// The mask argument of stage 3: 0 none, 1 the same for every query row (staged per key
/// tile in shared memory), 2 per element.
pub fn mask_mode(mask: Option<&[i64; 4]>) -> i32 {
    match mask {
        None => 0,
        Some(s) if s[2] == 0 => 1,
        Some(_) => 2,
    }
}

/// Queues the attention. The tensor-core stages fail unless [`mma_fits`] holds and the
/// addresses are 16-byte aligned (the caller picks the stage; the device must be sm_80 or
/// newer).
pub fn attention(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    g: &Geometry,
    p: &Pointers,
    scale: f32,
    stage: Stage,
) -> Result<()> {
    if g.mask.is_some() != p.mask.is_some() {
        return Err(invalid(OP, "mask strides and mask address disagree"));
    }
    if stage.is_mma() && !(mma_fits(dtype, g) && p.aligned16()) {
        return Err(invalid(
            OP,
            format!(
                "the tensor-core kernel needs f16/bf16, the head axis contiguous, rows of a \
                 multiple of 8 elements and 16-byte aligned addresses ({dtype}, strides \
                 {:?} {:?} {:?} {:?})",
                g.q, g.k, g.v, g.o
            ),
        ));
    }
    if g.batch == 0 || g.heads == 0 || g.sq == 0 {
        return Ok(());
    }
    if g.sk == 0 {
        return Err(invalid(
            OP,
            "no keys: the softmax of an empty row is undefined",
        ));
    }
    let name = module_name(dtype, g.d)?;
    let (rows, threads) = launch_shape(stage, g.sq);
    let qtiles = g.sq.div_ceil(rows);
    let grid = g
        .batch
        .checked_mul(g.heads)
        .and_then(|n| n.checked_mul(qtiles))
        .filter(|&n| n <= i32::MAX as usize)
        .ok_or_else(|| invalid(OP, "too many (batch, head, query tile) blocks for one grid"))?;
    let int = |x: usize| i32::try_from(x).map_err(|_| invalid(OP, "a size exceeds i32"));
    let dims = |s: &[i64; 4]| Dims::strides(s, OP);
    let args = [
        Arg::Ptr(p.q.0),
        Arg::Ptr(p.k.0),
        Arg::Ptr(p.v.0),
        Arg::Ptr(p.mask.map_or(0, |m| m.0)),
        Arg::Ptr(p.o.0),
        Arg::I32(int(g.heads)?),
        Arg::I32(int(g.sq)?),
        Arg::I32(int(g.sk)?),
        Arg::I32(int(qtiles)?),
        Arg::Dims(dims(&g.q)?),
        Arg::Dims(dims(&g.k)?),
        Arg::Dims(dims(&g.v)?),
        Arg::Dims(dims(&g.mask.unwrap_or([0; 4]))?),
        Arg::Dims(dims(&g.o)?),
        Arg::F32(scale),
        // Stages 1 and 2 take a has-mask flag, stage 3 the mask mode.
        Arg::I32(match stage {
            Stage::MmaPipelined => mask_mode(g.mask.as_ref()),
            _ => i32::from(g.mask.is_some()),
        }),
    ];
    let func = match stage {
        Stage::Simt => "kiln_attention_simt",
        Stage::Mma => "kiln_attention_mma",
        Stage::MmaPipelined => "kiln_attention_mma_pipe",
    };
    lib.launch(
        stream,
        &name,
        || module(dtype, g.d).map(|m| m.source).unwrap_or_default(),
        func,
        (grid as u32, threads, 0),
        &args,
    )
}

/// Stage 1: CUDA cores. 128 threads = 4 warps; warp w owns query rows 4w..4w+3 of the CTA's
/// 16; per tile of 32 keys lane j scores key j against each row (Q rows and the K tile in
/// shared memory as f32, K rows padded by one float against bank conflicts), the row's
/// maximum and sum go through warp shuffles, and lane l accumulates output columns
/// l, l+32, ... from the V tile with each key's weight broadcast by shuffle.
const SIMT: &str = r#"
#define S1_ROWS 16
#define S1_KEYS 32
#define S1_DW ((KD + 31) / 32)

__device__ __forceinline__ float katt_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = KMaxNum::op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float katt_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

extern "C" __global__ void __launch_bounds__(128) kiln_attention_simt(
        const A_s* __restrict__ q, const A_s* __restrict__ k, const A_s* __restrict__ v,
        const A_s* __restrict__ mask, A_s* __restrict__ o, int H, int Sq, int Sk, int qtiles,
        KDims qs, KDims ks, KDims vs, KDims ms, KDims os, float scale, int has_mask) {
    __shared__ float sq[S1_ROWS][KD];
    __shared__ float sk[S1_KEYS][KD + 1];
    __shared__ float sv[S1_KEYS][KD];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int qt = blockIdx.x % qtiles;
    const long long bh = blockIdx.x / qtiles;
    const long long b = bh / H, h = bh % H;
    const int q0 = qt * S1_ROWS;
    const A_s* qb = q + b * qs.v[0] + h * qs.v[1];
    const A_s* kb = k + b * ks.v[0] + h * ks.v[1];
    const A_s* vb = v + b * vs.v[0] + h * vs.v[1];
    const A_s* mb = has_mask ? mask + b * ms.v[0] + h * ms.v[1] : mask;
    A_s* ob = o + b * os.v[0] + h * os.v[1];
    for (int i = tid; i < S1_ROWS * KD; i += 128) {
        const int r = i / KD, c = i % KD, row = q0 + r;
        sq[r][c] = row < Sq ? A_tof(A_ld(qb, (long long)row * qs.v[2] + c * qs.v[3])) : 0.f;
    }
    float m[4], l[4], acc[4][S1_DW];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        m[i] = -kiln_inf();
        l[i] = 0.f;
#pragma unroll
        for (int t = 0; t < S1_DW; ++t) acc[i][t] = 0.f;
    }
    for (int k0 = 0; k0 < Sk; k0 += S1_KEYS) {
        __syncthreads();
        for (int i = tid; i < S1_KEYS * KD; i += 128) {
            const int r = i / KD, c = i % KD, key = k0 + r;
            const bool ok = key < Sk;
            sk[r][c] = ok ? A_tof(A_ld(kb, (long long)key * ks.v[2] + c * ks.v[3])) : 0.f;
            sv[r][c] = ok ? A_tof(A_ld(vb, (long long)key * vs.v[2] + c * vs.v[3])) : 0.f;
        }
        __syncthreads();
        const int key = k0 + lane;
        const bool kvalid = key < Sk;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int r = warp * 4 + i, row = q0 + r;
            float s = 0.f;
#pragma unroll 8
            for (int c = 0; c < KD; ++c) s += sq[r][c] * sk[lane][c];
            s *= scale;
            if (has_mask && kvalid && row < Sq)
                s += A_tof(A_ld(mb, (long long)row * ms.v[2] + (long long)key * ms.v[3]));
            if (!kvalid) s = -kiln_inf();
            const float mn = KMaxNum::op(m[i], katt_warp_max(s));
            // All scores so far -inf: shift by 0 as kiln-reference's softmax does.
            const float shift = (mn == -kiln_inf()) ? 0.f : mn;
            const float alpha = expf(m[i] - shift);
            const float p = kvalid ? expf(s - shift) : 0.f;
            l[i] = l[i] * alpha + katt_warp_sum(p);
            m[i] = mn;
#pragma unroll
            for (int t = 0; t < S1_DW; ++t) acc[i][t] *= alpha;
            for (int j = 0; j < S1_KEYS; ++j) {
                const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
                for (int t = 0; t < S1_DW; ++t) {
                    const int c = lane + 32 * t;
                    if (c < KD) acc[i][t] += pj * sv[j][c];
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int row = q0 + warp * 4 + i;
        if (row >= Sq) continue;
#pragma unroll
        for (int t = 0; t < S1_DW; ++t) {
            const int c = lane + 32 * t;
            if (c < KD)
                A_st(ob, (long long)row * os.v[2] + c * os.v[3], A_fromf(acc[i][t] / l[i]));
        }
    }
}
"#;

/// Stage 2: tensor cores (see the module doc for the fragment layouts). 128 threads = 4
/// warps; warp w owns query rows 16w..16w+15 of the CTA's 64. Shared memory: one K tile and
/// one V tile of 64 rows × KDP halves, rows padded to KLDS = KDP + 8 halves (16 bytes: the
/// 32-bit fragment reads of 8 rows × 4 words land in 32 distinct banks). KDP is D rounded up
/// to 16 for the k-steps of Q Kᵀ; the pad columns of the K buffer are zeroed once and never
/// written, so a head size of 8 mod 16 multiplies zeros there. The Q tile is staged through
/// the K buffer once into registers (A fragments); the output is staged through it at the
/// end for 16-byte stores.
///
/// Pipeline per key tile j: K(j) was issued before; issue V(j); wait for K(j); S = Q K(j)ᵀ
/// and the online softmax; wait for V(j) and sync (every warp is done with the K buffer);
/// issue K(j+1), which lands while O += P V(j) runs; sync before V(j+1) is issued.
const MMA: &str = r#"
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 800)
#define KATT_MMA 1
#endif
#define M_ROWS 64
#define M_KEYS 64
#define M_NT (M_KEYS / 8)
#define M_KS (KDP / 16)
#define M_DT (KD / 8)
#define M_CH (KD / 8)

struct alignas(16) katt_v16 { unsigned int w[4]; };

#ifdef KATT_MMA
__device__ __forceinline__ unsigned int katt_smem(const void* p) {
    unsigned long long a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (unsigned int)a;
}
// 16 bytes global -> shared, asynchronously; ok = false writes 16 zero bytes instead.
__device__ __forceinline__ void katt_cp16(void* dst, const void* src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :: "r"(katt_smem(dst)), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void katt_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void katt_wait0() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
__device__ __forceinline__ void katt_wait1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }
__device__ __forceinline__ float katt_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
// Two floats as one .f16x2/.bf16x2 register, `lo` in the low half.
__device__ __forceinline__ unsigned int katt_pack(float lo, float hi) {
    return (unsigned int)KTOH(lo) | ((unsigned int)KTOH(hi) << 16);
}
__device__ __forceinline__ float katt_lo(unsigned int r) { return KFROMH((unsigned short)(r & 0xffffu)); }
__device__ __forceinline__ float katt_hi(unsigned int r) { return KFROMH((unsigned short)(r >> 16)); }
__device__ __forceinline__ unsigned int katt_ld32(const unsigned short* p) {
    return *reinterpret_cast<const unsigned int*>(p);
}
// c += A (16x16) * B (16x8), f32 accumulators.
__device__ __forceinline__ void katt_mma(float (&c)[4], unsigned int a0, unsigned int a1,
                                         unsigned int a2, unsigned int a3, unsigned int b0,
                                         unsigned int b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." KAB "." KAB ".f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// Rows s0.. of a [S, KD] operand (row stride `rs`, D contiguous) into a 64-row tile.
__device__ __forceinline__ void katt_tile(unsigned short* sm, const A_s* base, long long rs,
                                          int s0, int S) {
    for (int i = threadIdx.x; i < M_KEYS * M_CH; i += 128) {
        const int r = i / M_CH, c = (i % M_CH) * 8, row = s0 + r;
        const bool ok = row < S;
        katt_cp16(sm + r * KLDS + c, base + (long long)(ok ? row : 0) * rs + c, ok);
    }
}
#endif

extern "C" __global__ void __launch_bounds__(128) kiln_attention_mma(
        const A_s* __restrict__ q, const A_s* __restrict__ k, const A_s* __restrict__ v,
        const A_s* __restrict__ mask, A_s* __restrict__ o, int H, int Sq, int Sk, int qtiles,
        KDims qs, KDims ks, KDims vs, KDims ms, KDims os, float scale, int has_mask) {
#ifdef KATT_MMA
    // 16-byte words, so the tiles are aligned for cp.async and the output's vector reads.
    __shared__ katt_v16 sKw[M_KEYS * KLDS / 8];
    __shared__ katt_v16 sVw[M_KEYS * KLDS / 8];
    unsigned short* sK = reinterpret_cast<unsigned short*>(sKw);
    unsigned short* sV = reinterpret_cast<unsigned short*>(sVw);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int qt = blockIdx.x % qtiles;
    const long long bh = blockIdx.x / qtiles;
    const long long b = bh / H, h = bh % H;
    const int q0 = qt * M_ROWS;
    const int r0 = warp * 16;
    const A_s* qb = q + b * qs.v[0] + h * qs.v[1];
    const A_s* kb = k + b * ks.v[0] + h * ks.v[1];
    const A_s* vb = v + b * vs.v[0] + h * vs.v[1];
    const A_s* mb = has_mask ? mask + b * ms.v[0] + h * ms.v[1] : mask;
    A_s* ob = o + b * os.v[0] + h * os.v[1];
    const float LOG2E = 1.4426950408889634f;

    // Pad columns KD..KDP-1 of the K buffer: zero for the whole kernel.
    if (KDP > KD) {
        for (int i = tid; i < M_KEYS * (KDP - KD); i += 128)
            sK[(i / (KDP - KD)) * KLDS + KD + i % (KDP - KD)] = 0;
    }
    // Q tile through the K buffer into A fragments.
    katt_tile(sK, qb, qs.v[2], q0, Sq);
    katt_commit();
    katt_wait0();
    __syncthreads();
    unsigned int qf[M_KS][4];
#pragma unroll
    for (int ks_ = 0; ks_ < M_KS; ++ks_) {
        const int c = ks_ * 16 + 2 * t;
        qf[ks_][0] = katt_ld32(sK + (r0 + g) * KLDS + c);
        qf[ks_][1] = katt_ld32(sK + (r0 + g + 8) * KLDS + c);
        qf[ks_][2] = katt_ld32(sK + (r0 + g) * KLDS + c + 8);
        qf[ks_][3] = katt_ld32(sK + (r0 + g + 8) * KLDS + c + 8);
    }
    __syncthreads();

    float oacc[M_DT][4];
#pragma unroll
    for (int dt = 0; dt < M_DT; ++dt)
        oacc[dt][0] = oacc[dt][1] = oacc[dt][2] = oacc[dt][3] = 0.f;
    // Per thread: rows g (half 0) and g + 8 (half 1) of the warp's 16. Maxima are in the
    // log2 domain (scores times log2(e)) and agree across the 4 threads of a row; sums are
    // this thread's share until the end.
    float mrow[2] = {-kiln_inf(), -kiln_inf()};
    float lrow[2] = {0.f, 0.f};
    const int ntiles = (Sk + M_KEYS - 1) / M_KEYS;
    katt_tile(sK, kb, ks.v[2], 0, Sk);
    katt_commit();
    for (int j = 0; j < ntiles; ++j) {
        const int k0 = j * M_KEYS;
        katt_tile(sV, vb, vs.v[2], k0, Sk);
        katt_commit();
        katt_wait1();
        __syncthreads();
        // S = Q K^T for the warp's 16 rows x 64 keys.
        float s[M_NT][4];
#pragma unroll
        for (int nt = 0; nt < M_NT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int ks_ = 0; ks_ < M_KS; ++ks_) {
#pragma unroll
            for (int nt = 0; nt < M_NT; ++nt) {
                const unsigned short* kr = sK + (nt * 8 + g) * KLDS + ks_ * 16 + 2 * t;
                katt_mma(s[nt], qf[ks_][0], qf[ks_][1], qf[ks_][2], qf[ks_][3], katt_ld32(kr),
                         katt_ld32(kr + 8));
            }
        }
        // Scale, mask, tail; log2 domain.
#pragma unroll
        for (int nt = 0; nt < M_NT; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = q0 + r0 + g + ((e & 2) ? 8 : 0);
                const int key = k0 + nt * 8 + 2 * t + (e & 1);
                float x = s[nt][e] * scale;
                if (key >= Sk)
                    x = -kiln_inf();
                else if (has_mask && row < Sq)
                    x += A_tof(A_ld(mb, (long long)row * ms.v[2] + (long long)key * ms.v[3]));
                s[nt][e] = x * LOG2E;
            }
        }
        // Online softmax per row half.
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            float mx = -kiln_inf();
#pragma unroll
            for (int nt = 0; nt < M_NT; ++nt) {
                mx = KMaxNum::op(mx, s[nt][2 * hf]);
                mx = KMaxNum::op(mx, s[nt][2 * hf + 1]);
            }
            mx = KMaxNum::op(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = KMaxNum::op(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mn = KMaxNum::op(mrow[hf], mx);
            // All scores so far -inf: shift by 0 as kiln-reference's softmax does.
            const float shift = (mn == -kiln_inf()) ? 0.f : mn;
            const float alpha = katt_exp2(mrow[hf] - shift);
            mrow[hf] = mn;
            lrow[hf] *= alpha;
#pragma unroll
            for (int dt = 0; dt < M_DT; ++dt) {
                oacc[dt][2 * hf] *= alpha;
                oacc[dt][2 * hf + 1] *= alpha;
            }
#pragma unroll
            for (int nt = 0; nt < M_NT; ++nt) {
                s[nt][2 * hf] = katt_exp2(s[nt][2 * hf] - shift);
                s[nt][2 * hf + 1] = katt_exp2(s[nt][2 * hf + 1] - shift);
            }
        }
        // P as A fragments (k-step kk = keys 16kk..16kk+15), rounded; sums of the rounded.
        unsigned int pa[M_NT / 2][4];
#pragma unroll
        for (int kk = 0; kk < M_NT / 2; ++kk) {
            pa[kk][0] = katt_pack(s[2 * kk][0], s[2 * kk][1]);
            pa[kk][1] = katt_pack(s[2 * kk][2], s[2 * kk][3]);
            pa[kk][2] = katt_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[kk][3] = katt_pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            lrow[0] += katt_lo(pa[kk][0]) + katt_hi(pa[kk][0]) + katt_lo(pa[kk][2]) +
                       katt_hi(pa[kk][2]);
            lrow[1] += katt_lo(pa[kk][1]) + katt_hi(pa[kk][1]) + katt_lo(pa[kk][3]) +
                       katt_hi(pa[kk][3]);
        }
        katt_wait0();
        __syncthreads();
        if (j + 1 < ntiles) katt_tile(sK, kb, ks.v[2], k0 + M_KEYS, Sk);
        katt_commit();
        // O += P V: B registers pair keys (16kk + 2t, +1) and (+8, +9) of column 8dt + g.
#pragma unroll
        for (int kk = 0; kk < M_NT / 2; ++kk) {
            const unsigned short* vr = sV + (kk * 16 + 2 * t) * KLDS + g;
#pragma unroll
            for (int dt = 0; dt < M_DT; ++dt) {
                const unsigned short* p = vr + dt * 8;
                const unsigned int b0 = (unsigned int)p[0] | ((unsigned int)p[KLDS] << 16);
                const unsigned int b1 =
                    (unsigned int)p[8 * KLDS] | ((unsigned int)p[9 * KLDS] << 16);
                katt_mma(oacc[dt], pa[kk][0], pa[kk][1], pa[kk][2], pa[kk][3], b0, b1);
            }
        }
        __syncthreads();
    }
    katt_wait0();
    // Row sums over the 4 threads of each row, then O / l staged through the K buffer.
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        lrow[hf] += __shfl_xor_sync(0xffffffffu, lrow[hf], 1);
        lrow[hf] += __shfl_xor_sync(0xffffffffu, lrow[hf], 2);
    }
#pragma unroll
    for (int dt = 0; dt < M_DT; ++dt) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            unsigned short* d = sK + (r0 + g + 8 * hf) * KLDS + dt * 8 + 2 * t;
            d[0] = KTOH(oacc[dt][2 * hf] / lrow[hf]);
            d[1] = KTOH(oacc[dt][2 * hf + 1] / lrow[hf]);
        }
    }
    __syncthreads();
    for (int i = tid; i < M_ROWS * M_CH; i += 128) {
        const int r = i / M_CH, c = (i % M_CH) * 8, row = q0 + r;
        if (row < Sq)
            *reinterpret_cast<katt_v16*>(ob + (long long)row * os.v[2] + c) =
                *reinterpret_cast<const katt_v16*>(sK + r * KLDS + c);
    }
#endif
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn op(dims: &[usize], perm: [usize; 4]) -> Operand<'_> {
        Operand { dims, perm }
    }

    #[test]
    fn bert_layout_strides() {
        // Q and V: [B, S, H, D] read as [B, H, S, D]; K: [B, S, H, D] read as Kᵀ [B, H, D, S]
        // by the model, i.e. K [B, H, S, D] through perm [0, 2, 1, 3]; output [B, S, H, D].
        let x = [2usize, 7, 3, 32];
        let g = geometry(
            &op(&x, [0, 2, 1, 3]),
            &op(&x, [0, 2, 1, 3]),
            &op(&x, [0, 2, 1, 3]),
            &op(&x, [0, 2, 1, 3]),
            Some(&[2, 1, 1, 7]),
        )
        .unwrap();
        assert_eq!((g.batch, g.heads, g.sq, g.sk, g.d), (2, 3, 7, 7, 32));
        assert_eq!(g.q, [7 * 3 * 32, 32, 3 * 32, 1]);
        assert_eq!(g.o, g.q);
        assert_eq!(g.mask, Some([7, 0, 0, 1]));
        assert!(mma_fits(DataType::F16, &g));
        assert!(!mma_fits(DataType::F32, &g));
    }

    #[test]
    fn rejects_what_the_kernels_do_not_take() {
        let x = [2usize, 3, 5, 12];
        let p = [0, 1, 2, 3];
        assert!(geometry(&op(&x, p), &op(&x, p), &op(&x, p), &op(&x, p), None).is_err());
        let x = [2usize, 3, 5, 136];
        assert!(geometry(&op(&x, p), &op(&x, p), &op(&x, p), &op(&x, p), None).is_err());
        let x = [2usize, 3, 5, 16];
        let y = [2usize, 3, 6, 16];
        // V with another key count, a mask that does not broadcast, a bad permutation.
        assert!(geometry(&op(&x, p), &op(&x, p), &op(&y, p), &op(&x, p), None).is_err());
        assert!(
            geometry(
                &op(&x, p),
                &op(&x, p),
                &op(&x, p),
                &op(&x, p),
                Some(&[4, 5])
            )
            .is_err()
        );
        assert!(
            geometry(
                &op(&x, [0, 0, 2, 3]),
                &op(&x, p),
                &op(&x, p),
                &op(&x, p),
                None
            )
            .is_err()
        );
        // D not contiguous: CUDA cores only.
        let g = geometry(
            &op(&x, p),
            &op(&[2, 3, 16, 5], [0, 1, 3, 2]),
            &op(&x, p),
            &op(&x, p),
            Some(&[5, 5]),
        )
        .unwrap();
        assert_eq!(g.k, [3 * 16 * 5, 16 * 5, 1, 5]);
        assert_eq!(g.mask, Some([0, 0, 5, 1]));
        assert!(!mma_fits(DataType::BF16, &g));
    }

    #[test]
    fn stage3_launch_and_mask_mode() {
        assert_eq!(launch_shape(Stage::MmaPipelined, 128), (128, 256));
        assert_eq!(launch_shape(Stage::MmaPipelined, 65), (128, 256));
        assert_eq!(launch_shape(Stage::MmaPipelined, 64), (64, 128));
        assert_eq!(launch_shape(Stage::MmaPipelined, 1), (64, 128));
        assert_eq!(launch_shape(Stage::Mma, 128), (64, 128));
        assert_eq!(launch_shape(Stage::Simt, 128), (16, 128));
        assert!(Stage::Mma.is_mma() && Stage::MmaPipelined.is_mma() && !Stage::Simt.is_mma());
        // BERT's [B, 1, 1, S] mask is row-constant (staged); [B, 1, S, S] is per element.
        assert_eq!(mask_mode(None), 0);
        assert_eq!(mask_mode(Some(&[7, 0, 0, 1])), 1);
        assert_eq!(mask_mode(Some(&[0, 0, 0, 0])), 1);
        assert_eq!(mask_mode(Some(&[49, 0, 7, 1])), 2);
        assert_eq!(mask_mode(Some(&[0, 0, 1, 0])), 2);
    }

    #[test]
    fn modules_per_type_and_head_size() {
        for (dt, mma) in [
            (DataType::F32, false),
            (DataType::F16, true),
            (DataType::BF16, true),
        ] {
            for d in [8usize, 24, 64, 128] {
                let m = module(dt, d).unwrap();
                assert!(m.name.ends_with(&format!("_d{d}")), "{}", m.name);
                assert_eq!(m.source.contains("kiln_attention_mma("), mma);
                assert_eq!(m.source.contains("kiln_attention_mma_pipe("), mma);
                assert!(m.source.contains("kiln_attention_simt"));
                assert!(
                    m.source
                        .contains(&format!("#define KDP {}", d.div_ceil(16) * 16))
                );
                assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
            }
        }
        let bf = module(DataType::BF16, 64).unwrap().source;
        assert!(bf.contains("#define KAB \"bf16\""));
        assert!(module(DataType::I32, 64).is_err());
        assert!(module(DataType::F16, 12).is_err());
        assert!(module(DataType::F16, 256).is_err());
    }
}
