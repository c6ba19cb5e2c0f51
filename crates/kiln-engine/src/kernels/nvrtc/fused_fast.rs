//! The fast code path of the fused elementwise kernels ([`Variant::Fast`], the default;
//! `KILN_EW_FAST=0` selects [`Variant::Baseline`], the first generator's code, for A/B
//! timings).
//!
//! What the fast path changes:
//!
//! - Exact for every storage type: 16-bit words are unpacked and packed two at a time (PTX
//!   `mov.b32 {lo, hi}` + `cvt.f32.f16`, bf16 by shift/mask, and `cvt.rn.f16x2.f32` /
//!   `cvt.rn.bf16x2.f32` on sm_80+: round to nearest even as before; a bf16 NaN becomes the
//!   canonical NaN instead of keeping its payload), and the contiguous entry point runs a
//!   grid of [`BLOCKS_PER_SM`] blocks per SM (each thread loops over several vectors, so its
//!   setup is shared).
//! - Only when every input and the output are stored as f16/bf16 (their rounding, 2^-11 or
//!   2^-8 relative, dwarfs the changes): `erf` (and Gelu's erf) becomes [`erf_fast`], a rational
//!   approximation within [`ERF_FAST_MAX_REL`] relative of erf (instead of libdevice's
//!   two-branch erff with an exp2: about 25 instructions and divergence, now about 17 and
//!   none); division by a literal `c` becomes a multiplication by `1/c` rounded to f32
//!   (within 1.5 ulp of f32 of the correctly rounded quotient; IEEE division is about 8
//!   instructions with a range check). f32 storage keeps erff and IEEE division.
//!
//! The error of [`erf_fast`]: `erf(t) = t * P(t^2) / Q(t^2)` on `|t| <= 4` (P degree 6, Q
//! degree 4, fitted on the host by iteratively reweighted least squares on the relative
//! error of `erf(t)/t` over `t^2` in [0, 16], coefficients rounded to f32), `+-1` beyond (erf(4)
//! = 1 - 1.5e-8; the rational is computed for every x and the sign selected after, so NaN stays
//! NaN and nothing branches). Evaluated with fused multiply-adds and an exact division
//! (`erf_fast`, what the host tests measure on a dense grid against an f64 erf) it is within
//! [`ERF_FAST_HOST_MAX_REL`] relative; the device divides with `__fdividef` (at most 2 ulp, 2.4e-7
//! relative, for a divisor in [1, 200]), so the device value is within [`ERF_FAST_MAX_REL`].

use std::sync::OnceLock;

/// Which code the fused elementwise generator emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The first generator's code: per-element conversions, libdevice erff and IEEE division
    /// everywhere, one thread per vector.
    Baseline,
    /// See the module doc.
    Fast,
}

impl Variant {
    /// The process-wide choice: `KILN_EW_FAST=0` gives [`Variant::Baseline`], anything else
    /// (or nothing) [`Variant::Fast`]. Read once, so a plan's modules and its launches agree.
    pub fn from_env() -> Variant {
        static V: OnceLock<Variant> = OnceLock::new();
        *V.get_or_init(|| {
            let v = Variant::parse(std::env::var("KILN_EW_FAST").ok().as_deref());
            tracing::debug!(variant = ?v, "fused elementwise code path");
            v
        })
    }

    /// The variant named by a `KILN_EW_FAST` value.
    pub fn parse(value: Option<&str>) -> Variant {
        match value.map(str::trim) {
            Some("0") => Variant::Baseline,
            _ => Variant::Fast,
        }
    }
}

/// Blocks per SM of the fast contiguous entry point's grid (at 256 threads, several waves at
/// any occupancy, so the last partial wave is short).
pub const BLOCKS_PER_SM: u32 = 32;

/// Beyond this |t|, [`erf_fast`] is exactly +-1 (erf(4) = 1 - 1.5e-8).
pub const ERF_FAST_CLAMP: f32 = 4.0;

/// Bit patterns of P's coefficients, constant term first.
const ERF_P: [u32; 7] = [
    0x3f90_6eba,
    0x3e54_18d7,
    0x3d53_0bdc,
    0x3b82_c3a0,
    0x391a_712c,
    0xb602_58d2,
    0x32a4_2970,
];

/// Bit patterns of Q's coefficients, constant term (1) first.
const ERF_Q: [u32; 5] = [
    0x3f80_0000,
    0x3f04_5307,
    0x3df1_9acf,
    0x3c75_12f7,
    0x3a85_d725,
];

/// Relative error bound of [`erf_fast`] as the host evaluates it (exact final division);
/// asserted by the host tests on a dense grid.
pub const ERF_FAST_HOST_MAX_REL: f64 = 4.5e-7;

/// Relative error bound of the device's `kiln_erf_fast` (the host bound plus 2 ulp of f32 for
/// `__fdividef`).
pub const ERF_FAST_MAX_REL: f64 = 7e-7;

fn horner(coeffs: &[u32], s: f32) -> f32 {
    let mut it = coeffs.iter().rev().map(|&b| f32::from_bits(b));
    let top = it.next().unwrap_or(0.0);
    it.fold(top, |acc, c| acc.mul_add(s, c))
}

/// The host evaluation of the device's `kiln_erf_fast` (same operations in the same order;
/// the device's last division is `__fdividef`, within 2 ulp of this one).
pub fn erf_fast(x: f32) -> f32 {
    if x.abs() > ERF_FAST_CLAMP {
        return 1f32.copysign(x);
    }
    let s = x * x;
    (x * horner(&ERF_P, s)) / horner(&ERF_Q, s)
}

/// An f32 constant as CUDA C (exact).
fn c(bits: u32) -> String {
    format!("__uint_as_float(0x{bits:08x}u)")
}

fn horner_c(name: &str, coeffs: &[u32]) -> String {
    let mut it = coeffs.iter().rev();
    let mut s = format!(
        "    float {name} = {};\n",
        c(it.next().copied().unwrap_or(0))
    );
    for &b in it {
        s.push_str(&format!("    {name} = fmaf({name}, s, {});\n", c(b)));
    }
    s
}

/// CUDA C of `kiln_erf_fast` (see the module doc).
pub fn erf_fast_source() -> String {
    format!(
        "// erf for half storage: x P(x^2) / Q(x^2) for |x| <= {clamp}, +-1 beyond (NaN kept), \
         within {rel:.0e} relative.\n\
         __device__ __forceinline__ float kiln_erf_fast(float x) {{\n    \
         const float s = x * x;\n{p}{q}    \
         const float r = __fdividef(x * p, q);\n    \
         return fabsf(x) > {cl} ? copysignf(1.f, x) : r;\n}}\n",
        clamp = ERF_FAST_CLAMP,
        rel = ERF_FAST_MAX_REL,
        cl = c(ERF_FAST_CLAMP.to_bits()),
        p = horner_c("p", &ERF_P),
        q = horner_c("q", &ERF_Q),
    )
}

/// The fast path's float formula of a unary kernel for half storage, where it differs.
pub fn half_formula(name: &str) -> Option<&'static str> {
    match name {
        "erf" => Some("kiln_erf_fast(x)"),
        // 0x3f3504f3 = 1/sqrt(2) rounded to f32.
        "gelu" => Some("0.5f * x * (1.f + kiln_erf_fast(x * __uint_as_float(0x3f3504f3u)))"),
        _ => None,
    }
}

/// `1/c` rounded to f32 when a division by the literal `c` may become a multiplication by it
/// (half storage): `c` finite and nonzero and `1/c` a normal f32.
pub fn reciprocal(c: f32) -> Option<f32> {
    let r = 1.0 / c;
    (c.is_finite() && c != 0.0 && r.is_normal()).then_some(r)
}

/// `P_ldv` / `P_stv` (see `fused::vector_defs`) of the fast path for a 16-bit float type:
/// the words of the loaded vector `q` (`uint4`/`uint2`/`unsigned int` fields) unpacked and
/// packed two elements at a time.
pub fn half_vector_defs(p: &str, bf16: bool, vt: &str, words: &[&str]) -> String {
    let mut ld = format!(
        "__device__ __forceinline__ void {p}_ldv(const {p}_s* p, long long e, float* v) {{\n    \
         const {vt} q = *reinterpret_cast<const {vt}*>(p + e);\n"
    );
    let mut st = format!(
        "__device__ __forceinline__ void {p}_stv({p}_s* p, long long e, const float* v) {{\n    \
         {vt} q;\n"
    );
    for (i, w) in words.iter().enumerate() {
        let (lo, hi) = (2 * i, 2 * i + 1);
        if bf16 {
            ld.push_str(&format!(
                "    v[{lo}] = __uint_as_float({w} << 16);\n    \
                 v[{hi}] = __uint_as_float({w} & 0xffff0000u);\n"
            ));
            st.push_str(&format!(
                "#if __CUDA_ARCH__ >= 800\n    \
                 asm(\"cvt.rn.bf16x2.f32 %0, %1, %2;\" : \"=r\"({w}) : \"f\"(v[{hi}]), \"f\"(v[{lo}]));\n\
                 #else\n    \
                 {w} = (unsigned int)kiln_f32_to_bf16(v[{lo}]) | ((unsigned int)kiln_f32_to_bf16(v[{hi}]) << 16);\n\
                 #endif\n"
            ));
        } else {
            ld.push_str(&format!(
                "    asm(\"{{ .reg .b16 lo, hi; mov.b32 {{lo, hi}}, %2; cvt.f32.f16 %0, lo; \
                 cvt.f32.f16 %1, hi; }}\" : \"=f\"(v[{lo}]), \"=f\"(v[{hi}]) : \"r\"({w}));\n"
            ));
            st.push_str(&format!(
                "#if __CUDA_ARCH__ >= 800\n    \
                 asm(\"cvt.rn.f16x2.f32 %0, %1, %2;\" : \"=r\"({w}) : \"f\"(v[{hi}]), \"f\"(v[{lo}]));\n\
                 #else\n    \
                 {w} = (unsigned int)kiln_f32_to_f16(v[{lo}]) | ((unsigned int)kiln_f32_to_f16(v[{hi}]) << 16);\n\
                 #endif\n"
            ));
        }
    }
    ld.push_str("}\n");
    st.push_str(&format!("    *reinterpret_cast<{vt}*>(p + e) = q;\n}}\n"));
    ld + &st
}
