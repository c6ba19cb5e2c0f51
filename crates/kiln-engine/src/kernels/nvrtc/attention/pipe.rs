//! Stage 3 of the fused attention: `kiln_attention_mma_pipe`, the tensor-core kernel with
//! every global load in flight before it is needed. Appended to the module after stage 2's
//! source, whose helpers (`katt_cp16`, `katt_mma`, `katt_exp2`, ...) it uses.
//!
//! Differences from stage 2 (`kiln_attention_mma`), all aimed at BERT-like shapes (S ≈ 128,
//! D = 64) where stage 2 is bound by serialised load latency and instruction count:
//! - up to 8 warps = 128 query rows per CTA (the launch gives 128 threads when Sq ≤ 64), so
//!   K and V are read once per (batch, head) when Sq ≤ 128;
//! - K and V tiles double-buffered: tiles 0 and 1 are issued (cp.async) before anything
//!   waits, tile j + 2 as soon as tile j's buffer is free; Q goes straight from global memory
//!   into its A fragments (32-bit loads, no shared staging, no wait before the K/V issue);
//! - K and V fragments by `ldmatrix` (K: `.x4`, two key n-tiles per instruction; V:
//!   `.x4.trans`, two head n-tiles) instead of 32-bit and 16-bit shared loads;
//! - a mask that is constant over the query rows (`[B|1, H|1, 1, Sk]`, BERT's) is staged per
//!   key tile in shared memory as f32 already times log2(e), with -inf past Sk, so a score
//!   costs one FMA (`s · scale·log2(e) + m`); other masks add a per-element load as stage 2;
//! - the softmax row sums come from the tensor cores: one extra mma per 16 keys multiplies P
//!   by a column of ones (the sums of the rounded weights, like stage 2, without unpacking);
//! - P packed by `cvt.rn.{f16,bf16}x2.f32`; O staged through shared memory per warp (no CTA
//!   barrier) for 16-byte stores.
//!
//! Key tiles: 64 keys when the padded head size KDP ≤ 64, else 32 (static shared memory
//! stays under 48 KiB: 4 tiles of P_KEYS × KLDS halves + P_KEYS floats; D = 64: 37,120 B,
//! D = 128: 34,944 B). Registers: `__launch_bounds__(256, 2)` for KDP ≤ 64 (≤ 128 per
//! thread, 2 CTAs = 16 warps per SM), `(256, 1)` above.
//!
//! Fragment layouts are stage 2's (see the parent module doc). `ldmatrix.m8n8.x4` takes the
//! row addresses of matrix i from lanes 8i..8i+7 (row = lane & 7) and gives lane (g, t)
//! register i = (row g, cols 2t, 2t+1) of matrix i; with `.trans` register i = (rows 2t,
//! 2t+1, col g) of matrix i as stored. So for S = Q Kᵀ with K stored [key][dim], matrix
//! (keys 8n.., dims 16ks..) gives b0 of key n-tile n and (keys 8n.., dims 16ks + 8..) its
//! b1; for O += P V with V stored [key][dim], `.trans` of (keys 16kk.., dims 8dt..) gives b0
//! of head n-tile dt and (keys 16kk + 8.., dims 8dt..) its b1.
//!
//! Pipeline (per key tile j, buffer j & 1): wait for tile j (`cp.async.wait_group 1`: every
//! group but the newest), stage its mask values (loaded into a register one tile earlier),
//! barrier; S, softmax, P V; barrier (every warp is done with the buffer); issue tile j + 2
//! into it (an empty group when there is none, so the group count stays uniform).

/// CUDA C of the stage 3 kernel (needs stage 2's source before it in the module).
pub(super) const PIPE: &str = r#"
#if KDP > 64
#define P_KEYS 32
#define P_MINB 1
#else
#define P_KEYS 64
#define P_MINB 2
#endif
#define P_NT (P_KEYS / 8)
#define P_KK (P_KEYS / 16)
#define P_KS (KDP / 16)
#define P_DT (KD / 8)
#define P_CH (KD / 8)
#define P_TILE (P_KEYS * KLDS)

struct alignas(8) katt_f2 { float x, y; };

#ifdef KATT_MMA
// Four 8x8 b16 matrices from shared memory (row addresses from lanes 8i..8i+7 for matrix i).
__device__ __forceinline__ void katt_ldm4(unsigned int (&r)[4], const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(katt_smem(p)) : "memory");
}
__device__ __forceinline__ void katt_ldm4t(unsigned int (&r)[4], const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(katt_smem(p)) : "memory");
}
// Two matrices (addresses from lanes 0..15; the other lanes' are ignored).
__device__ __forceinline__ void katt_ldm2t(unsigned int (&r)[2], const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(katt_smem(p)) : "memory");
}
// Two floats rounded into one .f16x2/.bf16x2 register, `lo` in the low half.
__device__ __forceinline__ unsigned int katt_pack2(float lo, float hi) {
    unsigned int r;
    asm("cvt.rn." KAB "x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
// Rows s0.. of a [S, KD] operand (row stride `rs`, D contiguous) into a P_KEYS-row tile.
__device__ __forceinline__ void katt_ptile(unsigned short* sm, const A_s* base, long long rs,
                                           int s0, int S, int nthr) {
    for (int i = threadIdx.x; i < P_KEYS * P_CH; i += nthr) {
        const int r = i / P_CH, c = (i % P_CH) * 8, row = s0 + r;
        const bool ok = row < S;
        katt_cp16(sm + r * KLDS + c, base + (long long)(ok ? row : 0) * rs + c, ok);
    }
}
// The staged mask value of key `key` (log2 domain): -inf past Sk, the row-constant mask
// times log2(e) when mask_mode is 1, else 0.
__device__ __forceinline__ float katt_pmask(const A_s* mb, long long kstride, int key, int Sk,
                                            int mask_mode) {
    if (key >= Sk) return -kiln_inf();
    if (mask_mode == 1) return A_tof(A_ld(mb, (long long)key * kstride)) * 1.4426950408889634f;
    return 0.f;
}
#endif

#ifdef KATT_MMA
// The kernel's body; ROWMASK: the mask varies over query rows (mask_mode 2), a separate
// instantiation so that the per-element mask loads cost the common path no registers.
// `smw`: buffers K(0), V(0), K(1), V(1), P_TILE halves each, contiguous (the output staging
// uses the first 16 rows per warp of the whole area); `smk2`: the staged mask of one tile.
template <bool ROWMASK>
__device__ __forceinline__ void katt_pipe_body(
        katt_v16* smw, katt_f2* smk2, const A_s* __restrict__ q, const A_s* __restrict__ k,
        const A_s* __restrict__ v, const A_s* __restrict__ mask, A_s* __restrict__ o, int H,
        int Sq, int Sk, int qtiles, const KDims& qs, const KDims& ks, const KDims& vs,
        const KDims& ms, const KDims& os, float scale, int mask_mode) {
    unsigned short* sm = reinterpret_cast<unsigned short*>(smw);
    float* smk = reinterpret_cast<float*>(smk2);
    const int nthr = blockDim.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int qt = blockIdx.x % qtiles;
    const long long bh = blockIdx.x / qtiles;
    const long long b = bh / H, h = bh % H;
    const int q0 = qt * (nthr / 2);
    const int r0 = warp * 16;
    const A_s* qb = q + b * qs.v[0] + h * qs.v[1];
    const A_s* kb = k + b * ks.v[0] + h * ks.v[1];
    const A_s* vb = v + b * vs.v[0] + h * vs.v[1];
    const A_s* mb = mask_mode ? mask + b * ms.v[0] + h * ms.v[1] : mask;
    A_s* ob = o + b * os.v[0] + h * os.v[1];
    const float LOG2E = 1.4426950408889634f;
    const float sl2 = scale * LOG2E;
    const int ntiles = (Sk + P_KEYS - 1) / P_KEYS;

    // Tiles 0 and 1 in flight first (one commit group each, empty when there is no tile 1).
    katt_ptile(sm, kb, ks.v[2], 0, Sk, nthr);
    katt_ptile(sm + P_TILE, vb, vs.v[2], 0, Sk, nthr);
    katt_commit();
    if (ntiles > 1) {
        katt_ptile(sm + 2 * P_TILE, kb, ks.v[2], P_KEYS, Sk, nthr);
        katt_ptile(sm + 3 * P_TILE, vb, vs.v[2], P_KEYS, Sk, nthr);
    }
    katt_commit();
    // The mask of tile 0 (threads < P_KEYS hold one key each, one tile ahead).
    float mk = tid < P_KEYS ? katt_pmask(mb, ms.v[3], tid, Sk, mask_mode) : 0.f;
    // Pad columns KD..KDP-1 of every buffer: zero for the whole kernel (read by Q K^T's last
    // k-step; cp.async never writes them).
    if (KDP > KD) {
        const int pad = KDP > KD ? KDP - KD : 1;  // (no division by zero when KDP == KD)
        for (int i = tid; i < 4 * P_KEYS * pad; i += nthr)
            sm[(i / pad) * KLDS + KD + i % pad] = 0;
    }
    // Q's A fragments straight from global memory; rows past Sq and columns past KD are 0.
    unsigned int qf[P_KS][4];
    {
        const int ra = q0 + r0 + g, rb = ra + 8;
        const A_s* pa = qb + (long long)(ra < Sq ? ra : 0) * qs.v[2];
        const A_s* pb = qb + (long long)(rb < Sq ? rb : 0) * qs.v[2];
#pragma unroll
        for (int ks_ = 0; ks_ < P_KS; ++ks_) {
            const int c = ks_ * 16 + 2 * t;
            const bool hi = ks_ * 16 + 8 < KD;
            qf[ks_][0] = ra < Sq ? *reinterpret_cast<const unsigned int*>(pa + c) : 0u;
            qf[ks_][1] = rb < Sq ? *reinterpret_cast<const unsigned int*>(pb + c) : 0u;
            qf[ks_][2] = (hi && ra < Sq) ? *reinterpret_cast<const unsigned int*>(pa + c + 8) : 0u;
            qf[ks_][3] = (hi && rb < Sq) ? *reinterpret_cast<const unsigned int*>(pb + c + 8) : 0u;
        }
    }

    float oacc[P_DT][4];
#pragma unroll
    for (int dt = 0; dt < P_DT; ++dt)
        oacc[dt][0] = oacc[dt][1] = oacc[dt][2] = oacc[dt][3] = 0.f;
    // Row sums (P times a column of ones): lacc[0..1] row g, lacc[2..3] row g + 8.
    float lacc[4] = {0.f, 0.f, 0.f, 0.f};
    // Row maxima in the log2 domain, rows g (half 0) and g + 8 (half 1).
    float mrow[2] = {-kiln_inf(), -kiln_inf()};
    const unsigned int one = katt_pack2(1.f, 1.f);
    const int lr = lane & 7, lm = lane >> 3;
    for (int j = 0; j < ntiles; ++j) {
        const int k0 = j * P_KEYS;
        const unsigned short* sK = sm + (j & 1) * 2 * P_TILE;
        const unsigned short* sV = sK + P_TILE;
        katt_wait1();
        if (tid < P_KEYS) {
            smk[tid] = mk;
            mk = katt_pmask(mb, ms.v[3], k0 + P_KEYS + tid, Sk, mask_mode);
        }
        __syncthreads();
        // S = Q K^T: ldmatrix.x4 matrices (keys 16np + 8(m >> 1).., dims 16ks + 8(m & 1)..)
        // = b0, b1 of key n-tile 2np, then b0, b1 of n-tile 2np + 1.
        float s[P_NT][4];
#pragma unroll
        for (int nt = 0; nt < P_NT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int ks_ = 0; ks_ < P_KS; ++ks_) {
#pragma unroll
            for (int np = 0; np < P_NT / 2; ++np) {
                unsigned int kf[4];
                katt_ldm4(kf, sK + (16 * np + 8 * (lm >> 1) + lr) * KLDS + ks_ * 16 + 8 * (lm & 1));
                katt_mma(s[2 * np], qf[ks_][0], qf[ks_][1], qf[ks_][2], qf[ks_][3], kf[0], kf[1]);
                katt_mma(s[2 * np + 1], qf[ks_][0], qf[ks_][1], qf[ks_][2], qf[ks_][3], kf[2],
                         kf[3]);
            }
        }
        // Scale and mask in the log2 domain: c0/c2 are key 2t, c1/c3 key 2t + 1 of the n-tile.
#pragma unroll
        for (int nt = 0; nt < P_NT; ++nt) {
            const katt_f2 mv = smk2[nt * 4 + t];
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float x = fmaf(s[nt][e], sl2, (e & 1) ? mv.y : mv.x);
                if (ROWMASK) {
                    const int row = q0 + r0 + g + ((e & 2) ? 8 : 0);
                    const int key = k0 + nt * 8 + 2 * t + (e & 1);
                    if (row < Sq && key < Sk)
                        x += LOG2E * A_tof(A_ld(mb, (long long)row * ms.v[2] +
                                                        (long long)key * ms.v[3]));
                }
                s[nt][e] = x;
            }
        }
        // Online softmax per row half.
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            float mx = -kiln_inf();
#pragma unroll
            for (int nt = 0; nt < P_NT; ++nt) {
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
            lacc[2 * hf] *= alpha;
            lacc[2 * hf + 1] *= alpha;
#pragma unroll
            for (int dt = 0; dt < P_DT; ++dt) {
                oacc[dt][2 * hf] *= alpha;
                oacc[dt][2 * hf + 1] *= alpha;
            }
#pragma unroll
            for (int nt = 0; nt < P_NT; ++nt) {
                s[nt][2 * hf] = katt_exp2(s[nt][2 * hf] - shift);
                s[nt][2 * hf + 1] = katt_exp2(s[nt][2 * hf + 1] - shift);
            }
        }
        // P as A fragments (k-step kk = keys 16kk..16kk+15), rounded; row sums by mma.
        unsigned int pf[P_KK][4];
#pragma unroll
        for (int kk = 0; kk < P_KK; ++kk) {
            pf[kk][0] = katt_pack2(s[2 * kk][0], s[2 * kk][1]);
            pf[kk][1] = katt_pack2(s[2 * kk][2], s[2 * kk][3]);
            pf[kk][2] = katt_pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pf[kk][3] = katt_pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            katt_mma(lacc, pf[kk][0], pf[kk][1], pf[kk][2], pf[kk][3], one, one);
        }
        // O += P V: ldmatrix.x4.trans matrices (keys 16kk + 8(m & 1).., dims 16dp +
        // 8(m >> 1)..) = b0, b1 of head n-tile 2dp, then b0, b1 of n-tile 2dp + 1.
#pragma unroll
        for (int kk = 0; kk < P_KK; ++kk) {
#pragma unroll
            for (int dp = 0; dp < P_DT / 2; ++dp) {
                unsigned int vf[4];
                katt_ldm4t(vf, sV + (16 * kk + 8 * (lm & 1) + lr) * KLDS + 16 * dp + 8 * (lm >> 1));
                katt_mma(oacc[2 * dp], pf[kk][0], pf[kk][1], pf[kk][2], pf[kk][3], vf[0], vf[1]);
                katt_mma(oacc[2 * dp + 1], pf[kk][0], pf[kk][1], pf[kk][2], pf[kk][3], vf[2],
                         vf[3]);
            }
            if (P_DT & 1) {
                unsigned int vf[2];
                katt_ldm2t(vf, sV + (16 * kk + 8 * (lm & 1) + lr) * KLDS + 8 * (P_DT - 1));
                katt_mma(oacc[P_DT - 1], pf[kk][0], pf[kk][1], pf[kk][2], pf[kk][3], vf[0],
                         vf[1]);
            }
        }
        __syncthreads();
        if (j + 2 < ntiles) {
            unsigned short* dK = sm + (j & 1) * 2 * P_TILE;
            katt_ptile(dK, kb, ks.v[2], k0 + 2 * P_KEYS, Sk, nthr);
            katt_ptile(dK + P_TILE, vb, vs.v[2], k0 + 2 * P_KEYS, Sk, nthr);
        }
        katt_commit();
    }
    katt_wait0();
    // O / l into the warp's own 16 rows of the (now idle) buffer area, then 16-byte stores.
    const float inv[2] = {1.f / lacc[0], 1.f / lacc[2]};
#pragma unroll
    for (int dt = 0; dt < P_DT; ++dt) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            *reinterpret_cast<unsigned int*>(sm + (r0 + g + 8 * hf) * KLDS + dt * 8 + 2 * t) =
                katt_pack2(oacc[dt][2 * hf] * inv[hf], oacc[dt][2 * hf + 1] * inv[hf]);
        }
    }
    __syncwarp();
    for (int i = lane; i < 16 * P_CH; i += 32) {
        const int r = i / P_CH, c = (i % P_CH) * 8, row = q0 + r0 + r;
        if (row < Sq)
            *reinterpret_cast<katt_v16*>(ob + (long long)row * os.v[2] + c) =
                *reinterpret_cast<const katt_v16*>(sm + (r0 + r) * KLDS + c);
    }
}
#endif

// mask_mode: 0 none, 1 constant over query rows (staged per tile), 2 per element.
extern "C" __global__ void __launch_bounds__(256, P_MINB) kiln_attention_mma_pipe(
        const A_s* __restrict__ q, const A_s* __restrict__ k, const A_s* __restrict__ v,
        const A_s* __restrict__ mask, A_s* __restrict__ o, int H, int Sq, int Sk, int qtiles,
        KDims qs, KDims ks, KDims vs, KDims ms, KDims os, float scale, int mask_mode) {
#ifdef KATT_MMA
    __shared__ katt_v16 smw[4 * P_TILE / 8];
    __shared__ katt_f2 smk2[P_KEYS / 2];
    if (mask_mode == 2)
        katt_pipe_body<true>(smw, smk2, q, k, v, mask, o, H, Sq, Sk, qtiles, qs, ks, vs, ms, os,
                             scale, mask_mode);
    else
        katt_pipe_body<false>(smw, smk2, q, k, v, mask, o, H, Sq, Sk, qtiles, qs, ks, vs, ms,
                              os, scale, mask_mode);
#endif
}
"#;
