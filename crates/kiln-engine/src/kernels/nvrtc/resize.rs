//! Resize with `nearest` and (multi-)`linear` modes, every coordinate transformation but
//! `tf_crop_and_resize`, every `nearest_mode`, and `exclude_outside`; coordinates and weights
//! in f64 as kiln-reference computes them (cubic and antialiasing are not offered on the GPU).
//!
//! Per axis, output `x` maps to `x_ori`; with `xl` the integer left of it (one less when
//! `x_ori` is an integer, so `r` lies in (0, 1]) linear taps are `xl` (weight `1 - r`) and
//! `xl + 1` (weight `r`), nearest picks one of them; indices past the edge are clamped (or
//! dropped and the weights renormalised with `exclude_outside`). An axis whose size and scale
//! are unchanged is copied.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{BLOCK, Dims, contiguous_strides, grid_for, numel};
use super::library::ModuleSpec;
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, invalid, unsupported};

/// Interpolation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    Nearest,
    Linear,
}

/// `coordinate_transformation_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordMode {
    HalfPixel = 0,
    PytorchHalfPixel = 1,
    AlignCorners = 2,
    Asymmetric = 3,
    HalfPixelSymmetric = 4,
}

/// `nearest_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor = 0,
    RoundPreferCeil = 1,
    Floor = 2,
    Ceil = 3,
}

/// Settings of one Resize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResizeSettings {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub nearest: NearestMode,
    pub exclude_outside: bool,
}

const BODY: &str = r#"
struct KScales { double v[KILN_MAX_RANK]; };
__device__ double kiln_x_ori(int coord, double x, double in_w, double out_len, double scale) {
    double out_w = scale * in_w;
    switch (coord) {
    case 1: return out_w == 1.0 ? -0.5 : (x + 0.5) / scale - 0.5;
    case 2: return out_w == 1.0 ? 0.0 : x * (in_w - 1.0) / (out_w - 1.0);
    case 3: return x / scale;
    case 4: {
        double adj = out_len / out_w;
        double center = in_w / 2.0;
        return center * (1.0 - adj) + (x + 0.5) / scale - 0.5;
    }
    default: return (x + 0.5) / scale - 0.5;
    }
}

// Taps of output position x on one axis: count (1 or 2), indices and weights.
__device__ int kiln_taps(int linear, int coord, int nearest, int excl, long long x,
                         long long in_len, long long out_len, double scale,
                         long long* idx, double* w) {
    if (fabs(scale - 1.0) < 1e-12 && in_len == out_len) { idx[0] = x; w[0] = 1.0; return 1; }
    double xo = kiln_x_ori(coord, (double)x, (double)in_len, (double)out_len, scale);
    double fl = floor(xo);
    double xl, r;
    if (xo == fl) { xl = fl - 1.0; r = 1.0; } else { xl = fl; r = xo - fl; }
    long long last = in_len - 1;
    long long base = (long long)xl;
    int n;
    long long j[2];
    double v[2];
    if (!linear) {
        int right;
        if (r == 1.0) right = 1;
        else if (nearest == 1) right = r >= 0.5;
        else if (nearest == 2) right = 0;
        else if (nearest == 3) right = 1;
        else right = r > 0.5;
        j[0] = base + right; v[0] = 1.0; n = 1;
    } else {
        j[0] = base; v[0] = 1.0 - r; j[1] = base + 1; v[1] = r; n = 2;
    }
    int k = 0;
    double kept = 0.0;
    for (int t = 0; t < n; ++t) {
        if (excl && (j[t] < 0 || j[t] > last)) continue;
        long long c = j[t] < 0 ? 0 : (j[t] > last ? last : j[t]);
        idx[k] = c; w[k] = v[t]; kept += v[t]; ++k;
    }
    if (excl && kept != 0.0) for (int t = 0; t < k; ++t) w[t] /= kept;
    return k;
}

extern "C" __global__ void kiln_resize(const A_s* px, A_s* py, long long n, KDims in_shape,
    KDims out_shape, KDims in_strides, int rank, KScales scales, int linear, int coord,
    int nearest, int excl) {
    KILN_GRID_LOOP(i, n) {
        long long idx[KILN_MAX_RANK][2];
        double w[KILN_MAX_RANK][2];
        int cnt[KILN_MAX_RANK];
        long long rest = i;
        int combos = 1;
        for (int d = rank - 1; d >= 0; --d) {
            long long c = rest % out_shape.v[d];
            rest /= out_shape.v[d];
            cnt[d] = kiln_taps(linear, coord, nearest, excl, c, in_shape.v[d], out_shape.v[d],
                               scales.v[d], idx[d], w[d]);
            combos *= cnt[d];
        }
        double acc = 0.0;
        for (int m = 0; m < combos; ++m) {
            int q = m;
            long long off = 0;
            double wt = 1.0;
            for (int d = rank - 1; d >= 0; --d) {
                int t = q % cnt[d];
                q /= cnt[d];
                off += idx[d][t] * in_strides.v[d];
                wt *= w[d][t];
            }
            acc += (double)A_tof(A_ld(px, off)) * wt;
        }
        A_st(py, i, A_fromf((float)acc));
    }
}
"#;

/// The Resize module for `dtype` (f32, f16, bf16).
pub fn module(dtype: DataType) -> Result<ModuleSpec> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("resize", dtype))?;
    let mut body = type_defs("A", t);
    body.push_str(BODY);
    Ok(ModuleSpec {
        name: format!("resize_{}", t.tag),
        source: module_source(&body),
    })
}

/// Resizes a row-major tensor; `scales` has one f64 per axis (1.0 for untouched axes), as
/// the reference derives them (from `scales`, or `sizes` over the input sizes).
#[allow(clippy::too_many_arguments)]
pub fn resize(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    settings: ResizeSettings,
    in_shape: &[usize],
    out_shape: &[usize],
    scales: &[f64],
    x: DevicePtr,
    y: DevicePtr,
) -> Result<()> {
    let t = ctype(dtype)
        .filter(|_| is_float(dtype))
        .ok_or_else(|| unsupported("resize", dtype))?;
    if in_shape.len() != out_shape.len() || scales.len() != in_shape.len() {
        return Err(invalid("resize", "input and output ranks differ"));
    }
    if in_shape
        .iter()
        .zip(out_shape)
        .any(|(&i, &o)| i == 0 && o != 0)
    {
        return Err(invalid("resize", "an empty axis cannot be resized"));
    }
    let n = numel(out_shape, "resize")?;
    if n == 0 {
        return Ok(());
    }
    if scales.len() > super::MAX_RANK || scales.iter().any(|&s| s.is_nan() || s <= 0.0) {
        return Err(invalid("resize", format!("scales {scales:?}")));
    }
    let mut sc = [1.0f64; super::MAX_RANK];
    sc[..scales.len()].copy_from_slice(scales);
    let args = [
        Arg::Ptr(x.0),
        Arg::Ptr(y.0),
        Arg::I64(n as i64),
        Arg::Dims(Dims::shape(in_shape, "resize")?),
        Arg::Dims(Dims::shape(out_shape, "resize")?),
        Arg::Dims(Dims::strides(&contiguous_strides(in_shape), "resize")?),
        Arg::I32(in_shape.len() as i32),
        Arg::F64x8(sc),
        Arg::I32(i32::from(settings.mode == ResizeMode::Linear)),
        Arg::I32(settings.coord as i32),
        Arg::I32(settings.nearest as i32),
        Arg::I32(i32::from(settings.exclude_outside)),
    ];
    lib.launch(
        stream,
        &format!("resize_{}", t.tag),
        || module(dtype).map(|m| m.source).unwrap_or_default(),
        "kiln_resize",
        (grid_for(n), BLOCK, 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_compiles_as_text() {
        let m = module(DataType::F32).unwrap();
        assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
        assert!(module(DataType::I64).is_err());
        assert_eq!(CoordMode::HalfPixelSymmetric as i32, 4);
        assert_eq!(NearestMode::Ceil as i32, 3);
    }
}
