//! The NHWC entry conversion: a row-major `[N, C, H, W]` tensor of one float type into
//! `[N, H, W, C']` of another (or the same) float type, with the channels `C..C'` zero.
//!
//! The NHWC regions (`builder::rewrite::nhwc`) enter through it: it replaces the strided
//! Transpose (slow with a narrow inner axis, such as an image's 3 channels), takes the f32
//! engine input directly (the boundary Cast is absorbed) and pads a channel count that is not
//! a multiple of 8 with zeros, which cuDNN's NHWC tensor-core convolutions want (the
//! convolution's weights get zero input channels to match, so results are unchanged).
//!
//! Three kernels, chosen on the host by [`entry_path`]:
//! - [`EntryPath::Vector`] (`C'` one or two 16-byte words of the output type, output
//!   aligned): one thread per position and word; its channels are read from their planes
//!   (consecutive threads read consecutive positions: coalesced) and stored as one 16-byte
//!   word (consecutive threads write consecutive words: coalesced).
//! - [`EntryPath::Position`] (`C' <= 16` otherwise): one thread per position, scalar stores.
//! - [`EntryPath::Tile`] (wider channels): a 32-channel × 32-position tile per block through
//!   shared memory, so both the plane reads and the channel writes are coalesced.
//!
//! Values are converted through f32 and rounded once on store (round to nearest even, as
//! Cast), so the same-type conversion is exact.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{BLOCK, grid_for};
use super::library::ModuleSpec;
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, invalid, unsupported};

const BODY: &str = r#"
#define KV (16 / (int)sizeof(D_s))
struct alignas(16) KVecD { D_s e[KV]; };

// total = N * HW * (CP / KV); thread i writes output word i.
extern "C" __global__ void kiln_nhwc_entry_vec(const S_s* px, D_s* py, long long total,
    long long C, long long HW, long long CP) {
    const long long G = CP / KV;
    KILN_GRID_LOOP(i, total) {
        long long q, n;
        const long long g = kiln_divmod(i, G, q);
        const long long p = kiln_divmod(q, HW, n);
        const S_s* src = px + n * C * HW + p;
        KVecD v;
#pragma unroll
        for (int j = 0; j < KV; ++j) {
            const long long c = g * KV + j;
            D_st(v.e, j, D_fromf(c < C ? S_tof(S_ld(src, c * HW)) : 0.f));
        }
        *reinterpret_cast<KVecD*>(py + i * KV) = v;
    }
}

// total = N * HW; thread i writes the CP channels of position i.
extern "C" __global__ void kiln_nhwc_entry_pos(const S_s* px, D_s* py, long long total,
    long long C, long long HW, long long CP) {
    KILN_GRID_LOOP(i, total) {
        long long n;
        const long long p = kiln_divmod(i, HW, n);
        const S_s* src = px + n * C * HW + p;
        D_s* dst = py + i * CP;
        for (long long c = 0; c < CP; ++c)
            D_st(dst, c, D_fromf(c < C ? S_tof(S_ld(src, c * HW)) : 0.f));
    }
}

// 256 threads; tiles = N * PT * CT (PT position tiles, CT channel tiles of 32).
extern "C" __global__ void kiln_nhwc_entry_tile(const S_s* px, D_s* py, long long tiles,
    long long C, long long HW, long long CP, long long PT, long long CT) {
    __shared__ float tile[32][33];
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    for (long long t = blockIdx.x; t < tiles; t += gridDim.x) {
        long long r, n;
        const long long ct = kiln_divmod(t, CT, r);
        const long long pt = kiln_divmod(r, PT, n);
        const long long p0 = pt * 32, c0 = ct * 32;
        const S_s* src = px + n * C * HW;
        D_s* dst = py + n * HW * CP;
#pragma unroll
        for (int k = ty; k < 32; k += 8) {
            const long long c = c0 + k, p = p0 + tx;
            tile[k][tx] = (c < C && p < HW) ? S_tof(S_ld(src, c * HW + p)) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int k = ty; k < 32; k += 8) {
            const long long p = p0 + k, c = c0 + tx;
            if (p < HW && c < CP) D_st(dst, p * CP + c, D_fromf(tile[tx][k]));
        }
        __syncthreads();
    }
}
"#;

/// The channel count the NHWC entry pads `c` to for cuDNN's tensor-core convolutions: the
/// next multiple of 8.
pub fn padded_channels(c: usize) -> usize {
    c.div_ceil(8) * 8
}

/// The entry module converting `src` to `dst` (f32, f16, bf16 each).
pub fn module(src: DataType, dst: DataType) -> Result<ModuleSpec> {
    let float = |dt: DataType| {
        ctype(dt)
            .filter(|_| is_float(dt))
            .ok_or_else(|| unsupported("NHWC entry", dt))
    };
    let (s, d) = (float(src)?, float(dst)?);
    let mut body = type_defs("S", s);
    body.push_str(&type_defs("D", d));
    body.push_str(BODY);
    Ok(ModuleSpec {
        name: format!("nhwc_entry_{}_{}", s.tag, d.tag),
        source: module_source(&body),
    })
}

/// Which entry kernel converts into `cp` channels of `dst` at address `y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPath {
    /// One thread per 16-byte output word.
    Vector,
    /// One thread per position.
    Position,
    /// 32 × 32 tiles through shared memory.
    Tile,
}

/// The kernel [`nchw_to_nhwc`] launches for `cp` output channels of `dst` at `y`.
pub fn entry_path(dst: DataType, cp: usize, y: DevicePtr) -> EntryPath {
    let v = 16 / dst.size_in_bytes().max(1);
    if cp.is_multiple_of(v) && cp / v <= 2 && y.0.is_multiple_of(16) {
        EntryPath::Vector
    } else if cp <= 16 {
        EntryPath::Position
    } else {
        EntryPath::Tile
    }
}

/// Converts `x`, row-major `[n, c, hw]` of `src`, into `y`, row-major `[n, hw, cp]` of `dst`,
/// with channels `c..cp` zero (`cp >= c`).
#[allow(clippy::too_many_arguments)]
pub fn nchw_to_nhwc(
    lib: &KernelLibrary,
    stream: &Stream,
    (src, dst): (DataType, DataType),
    n: usize,
    c: usize,
    hw: usize,
    cp: usize,
    x: DevicePtr,
    y: DevicePtr,
) -> Result<()> {
    let tag = |dt: DataType| {
        ctype(dt)
            .filter(|_| is_float(dt))
            .map(|t| t.tag)
            .ok_or_else(|| unsupported("NHWC entry", dt))
    };
    let name = format!("nhwc_entry_{}_{}", tag(src)?, tag(dst)?);
    if cp < c || c == 0 {
        return Err(invalid(
            "NHWC entry",
            format!("{c} channels cannot be padded to {cp}"),
        ));
    }
    let total = [n, hw, cp]
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .filter(|&t| {
            i64::try_from(t).is_ok() && c.checked_mul(hw).and_then(|v| v.checked_mul(n)).is_some()
        })
        .ok_or_else(|| invalid("NHWC entry", "too large"))?;
    if total == 0 {
        return Ok(());
    }
    let l = |v: usize| Arg::I64(v as i64);
    let path = entry_path(dst, cp, y);
    let (func, grid, args) = match path {
        EntryPath::Vector => {
            let words = total / (16 / dst.size_in_bytes());
            (
                "kiln_nhwc_entry_vec",
                grid_for(words),
                vec![Arg::Ptr(x.0), Arg::Ptr(y.0), l(words), l(c), l(hw), l(cp)],
            )
        }
        EntryPath::Position => (
            "kiln_nhwc_entry_pos",
            grid_for(n * hw),
            vec![Arg::Ptr(x.0), Arg::Ptr(y.0), l(n * hw), l(c), l(hw), l(cp)],
        ),
        EntryPath::Tile => {
            let (pt, ct) = (hw.div_ceil(32), cp.div_ceil(32));
            let tiles = n * pt * ct;
            (
                "kiln_nhwc_entry_tile",
                tiles.clamp(1, 1 << 20) as u32,
                vec![
                    Arg::Ptr(x.0),
                    Arg::Ptr(y.0),
                    l(tiles),
                    l(c),
                    l(hw),
                    l(cp),
                    l(pt),
                    l(ct),
                ],
            )
        }
    };
    lib.launch(
        stream,
        &name,
        || module(src, dst).map(|m| m.source).unwrap_or_default(),
        func,
        (grid, BLOCK, 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_paths_and_padding() {
        for s in [DataType::F32, DataType::F16, DataType::BF16] {
            for d in [DataType::F32, DataType::F16, DataType::BF16] {
                let m = module(s, d).unwrap();
                let tag = |dt| ctype(dt).unwrap().tag;
                assert_eq!(m.name, format!("nhwc_entry_{}_{}", tag(s), tag(d)));
                assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
                for k in [
                    "kiln_nhwc_entry_vec(",
                    "kiln_nhwc_entry_pos(",
                    "kiln_nhwc_entry_tile(",
                ] {
                    assert!(m.source.contains(k), "{k}");
                }
            }
        }
        assert!(module(DataType::I32, DataType::F16).is_err());
        assert!(module(DataType::F32, DataType::I64).is_err());
        assert_eq!(
            [1, 3, 4, 8, 13, 64].map(padded_channels),
            [8, 8, 8, 8, 16, 64]
        );
        let a = DevicePtr(0x1000);
        // ResNet's stem: 3 channels padded to 8 halves, one word per position
        assert_eq!(entry_path(DataType::F16, 8, a), EntryPath::Vector);
        assert_eq!(entry_path(DataType::BF16, 16, a), EntryPath::Vector);
        assert_eq!(entry_path(DataType::F32, 8, a), EntryPath::Vector);
        assert_eq!(entry_path(DataType::F32, 12, a), EntryPath::Position);
        assert_eq!(
            entry_path(DataType::F16, 8, DevicePtr(0x1008)),
            EntryPath::Position
        );
        assert_eq!(entry_path(DataType::F16, 13, a), EntryPath::Position);
        assert_eq!(entry_path(DataType::F16, 24, a), EntryPath::Tile);
        assert_eq!(entry_path(DataType::F16, 64, a), EntryPath::Tile);
    }
}
