//! Pad (constant, edge, reflect, wrap) with numpy's rules as kiln-reference applies them:
//! negative counts crop first, the modes then read the cropped axis; reflect mirrors without
//! repeating the border (periodically for long pads; an axis of length 1 repeats its
//! element); wrap tiles the axis.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{BLOCK, Dims, contiguous_strides, grid_for, numel};
use super::library::ModuleSpec;
use super::prelude::module_source;
use super::{DevicePtr, KernelLibrary, Result, invalid};

/// Pad modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// The Pad module for elements of `size` bytes.
pub fn module(size: usize) -> Result<ModuleSpec> {
    let ty = match size {
        1 => "unsigned char",
        2 => "unsigned short",
        4 => "unsigned int",
        8 => "unsigned long long",
        _ => return Err(invalid("pad", format!("element size {size}"))),
    };
    let body = format!(
        "typedef {ty} E;\n{}",
        r#"
// mode: 0 constant, 1 reflect, 2 edge, 3 wrap
extern "C" __global__ void kiln_pad(const E* src, E* dst, long long n, KDims out_shape,
    KDims in_strides, KDims add_b, KDims crop_b, KDims kept, int rank, int mode,
    unsigned long long fill_bits) {
    KILN_GRID_LOOP(i, n) {
        long long rest = i, off = 0;
        int fill = 0;
        for (int d = rank - 1; d >= 0; --d) {
            long long c = rest % out_shape.v[d];
            rest /= out_shape.v[d];
            long long len = kept.v[d];
            long long s = c - add_b.v[d];
            if (s < 0 || s >= len) {
                if (mode == 0 || len == 0) { fill = 1; break; }
                if (mode == 2) s = s < 0 ? 0 : len - 1;
                else if (mode == 3) { s %= len; if (s < 0) s += len; }
                else if (len == 1) s = 0;
                else {
                    long long p = 2 * (len - 1);
                    long long m = s % p; if (m < 0) m += p;
                    s = m >= len ? p - m : m;
                }
            }
            off += (s + crop_b.v[d]) * in_strides.v[d];
        }
        dst[i] = fill ? (E)fill_bits : src[off];
    }
}
"#
    );
    Ok(ModuleSpec {
        name: format!("pad_b{size}"),
        source: module_source(&body),
    })
}

/// Per axis: (elements added at the beginning, cropped at the beginning, kept length) and
/// the output shape, from `pads` = `[begin_0, ..., begin_r, end_0, ..., end_r]`.
#[allow(clippy::type_complexity)]
pub fn pad_plan(
    in_shape: &[usize],
    pads: &[i64],
) -> Result<(Vec<i64>, Vec<i64>, Vec<i64>, Vec<usize>)> {
    let r = in_shape.len();
    if pads.len() != 2 * r {
        return Err(invalid("pad", format!("{} pads for rank {r}", pads.len())));
    }
    let (mut add, mut crop, mut kept, mut out) = (vec![], vec![], vec![], vec![]);
    for (d, &dim) in in_shape.iter().enumerate() {
        let (b, e) = (pads[d], pads[r + d]);
        let k = dim as i64 - (-b).max(0) - (-e).max(0);
        let o = k + b.max(0) + e.max(0);
        if k < 0 || o < 0 {
            return Err(invalid(
                "pad",
                format!("pads ({b}, {e}) crop more than axis {d} ({dim})"),
            ));
        }
        add.push(b.max(0));
        crop.push((-b).max(0));
        kept.push(k);
        out.push(o as usize);
    }
    Ok((add, crop, kept, out))
}

/// Pads a row-major tensor of `dtype`; `fill` is the constant's little-endian bytes (the
/// element's size; zeros if shorter).
#[allow(clippy::too_many_arguments)]
pub fn pad(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    in_shape: &[usize],
    pads: &[i64],
    mode: PadMode,
    fill: &[u8],
    src: DevicePtr,
    dst: DevicePtr,
) -> Result<()> {
    let (add, crop, kept, out_shape) = pad_plan(in_shape, pads)?;
    let n = numel(&out_shape, "pad")?;
    if n == 0 {
        return Ok(());
    }
    let size = dtype.size_in_bytes();
    let mut bits = [0u8; 8];
    for (b, f) in bits.iter_mut().zip(fill.iter().take(size)) {
        *b = *f;
    }
    let m = match mode {
        PadMode::Constant => 0,
        PadMode::Reflect => 1,
        PadMode::Edge => 2,
        PadMode::Wrap => 3,
    };
    let args = [
        Arg::Ptr(src.0),
        Arg::Ptr(dst.0),
        Arg::I64(n as i64),
        Arg::Dims(Dims::shape(&out_shape, "pad")?),
        Arg::Dims(Dims::strides(&contiguous_strides(in_shape), "pad")?),
        Arg::Dims(Dims::strides(&add, "pad")?),
        Arg::Dims(Dims::strides(&crop, "pad")?),
        Arg::Dims(Dims::strides(&kept, "pad")?),
        Arg::I32(in_shape.len() as i32),
        Arg::I32(m),
        Arg::I64(i64::from_le_bytes(bits)),
    ];
    lib.launch(
        stream,
        &format!("pad_b{size}"),
        || module(size).map(|m| m.source).unwrap_or_default(),
        "kiln_pad",
        (grid_for(n), BLOCK, 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let (add, crop, kept, out) = pad_plan(&[3, 4], &[1, -1, 2, 0]).unwrap();
        assert_eq!(add, vec![1, 0]);
        assert_eq!(crop, vec![0, 1]);
        assert_eq!(kept, vec![3, 3]);
        assert_eq!(out, vec![6, 3]);
        assert!(pad_plan(&[3], &[-2, -2]).is_err());
        assert!(pad_plan(&[3], &[1]).is_err());
        let m = module(2).unwrap();
        assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
    }
}
