//! Data movement as strided copies: one kernel reads `src[soff + Σ c·ss]` and writes
//! `dst[doff + Σ c·ds]` over a copy shape, which covers Transpose (permuted source strides),
//! Slice with steps (offset start, strides times step, negative steps included), Expand
//! (0 strides), Concat and Split (destination or source strides of the big tensor with an
//! offset along the axis) and plain copies. Tile has its own kernel (coordinates modulo the
//! input's). Kernels depend only on the element size, so f16 and bf16 share one module.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{
    BLOCK, Dims, broadcast_strides, collapse, contiguous_strides, grid_for, numel,
};
use super::library::ModuleSpec;
use super::prelude::module_source;
use super::{DevicePtr, KernelLibrary, Result, invalid};

fn elem_type(size: usize) -> Result<&'static str> {
    Ok(match size {
        1 => "unsigned char",
        2 => "unsigned short",
        4 => "unsigned int",
        8 => "unsigned long long",
        16 => "kiln_w16",
        _ => return Err(invalid("copy", format!("element size {size}"))),
    })
}

/// Every movement module a copy of `size`-byte elements may launch: its own and those of the
/// wider words [`widen`] can choose.
pub fn modules(size: usize) -> Result<Vec<ModuleSpec>> {
    std::iter::once(size)
        .chain(
            [2, 4, 8, 16]
                .into_iter()
                .filter(|&w| w > size && w % size == 0),
        )
        .map(module)
        .collect()
}

/// The movement module for elements of `size` bytes.
pub fn module(size: usize) -> Result<ModuleSpec> {
    let ty = elem_type(size)?;
    let body = format!(
        "struct alignas(16) kiln_w16 {{ unsigned long long a, b; }};\n\
         typedef {ty} E;\n\
         extern \"C\" __global__ void kiln_copy(const E* src, E* dst, long long n, KDims shape,\n    \
         KDims ss, KDims ds, int rank, long long soff, long long doff) {{\n    \
         KILN_GRID_LOOP(i, n) {{\n        \
         long long so, dO;\n        \
         if (rank == 1) {{ so = i * ss.v[0]; dO = i * ds.v[0]; }}\n        \
         else {{ kiln_offset2(i, shape, ss, ds, rank, so, dO); }}\n        \
         dst[doff + dO] = src[soff + so];\n    }}\n}}\n\
         extern \"C\" __global__ void kiln_tile(const E* src, E* dst, long long n, KDims out_shape,\n    \
         KDims in_shape, KDims in_strides, int rank) {{\n    \
         KILN_GRID_LOOP(i, n) {{\n        \
         long long rest = i, off = 0;\n        \
         for (int d = rank - 1; d >= 0; --d) {{\n            \
         long long c = rest % out_shape.v[d]; rest /= out_shape.v[d];\n            \
         off += (c % in_shape.v[d]) * in_strides.v[d];\n        }}\n        \
         dst[i] = src[off];\n    }}\n}}\n"
    );
    Ok(ModuleSpec {
        name: format!("move_b{size}"),
        source: module_source(&body),
    })
}

/// One side of a strided copy: an address, an element offset and strides (in elements).
#[derive(Debug, Clone)]
pub struct Strided {
    pub ptr: DevicePtr,
    pub offset: i64,
    pub strides: Vec<i64>,
}

impl Strided {
    /// A row-major tensor of `shape` at `ptr`.
    pub fn contiguous(ptr: DevicePtr, shape: &[usize]) -> Strided {
        Strided {
            ptr,
            offset: 0,
            strides: contiguous_strides(shape),
        }
    }
}

/// Copies the elements of `shape` from `src` to `dst` (elements of `dtype`).
pub fn copy_strided(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    shape: &[usize],
    src: &Strided,
    dst: &Strided,
) -> Result<()> {
    if src.strides.len() != shape.len() || dst.strides.len() != shape.len() {
        return Err(invalid("copy", "strides and shape differ in rank"));
    }
    let n = numel(shape, "copy")?;
    if n == 0 {
        return Ok(());
    }
    let (cs, st) = collapse(shape, &[src.strides.clone(), dst.strides.clone()]);
    let w = widen(
        dtype.size_in_bytes(),
        cs,
        st,
        [src.offset, dst.offset],
        [src.ptr.0, dst.ptr.0],
    );
    let (size, cs, st) = (w.size, w.shape, w.strides);
    let n = numel(&cs, "copy")?;
    let args = [
        Arg::Ptr(src.ptr.0),
        Arg::Ptr(dst.ptr.0),
        Arg::I64(n as i64),
        Arg::Dims(Dims::shape(&cs, "copy")?),
        Arg::Dims(Dims::strides(&st[0], "copy")?),
        Arg::Dims(Dims::strides(&st[1], "copy")?),
        Arg::I32(cs.len() as i32),
        Arg::I64(w.offsets[0]),
        Arg::I64(w.offsets[1]),
    ];
    lib.launch(
        stream,
        &format!("move_b{size}"),
        || module(size).map(|m| m.source).unwrap_or_default(),
        "kiln_copy",
        (grid_for(n), BLOCK, 0),
        &args,
    )
}

/// A strided copy re-expressed in wider words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widened {
    /// Bytes per element copied (the element size, or a word of 2, 4, 8 or 16 bytes).
    pub size: usize,
    pub shape: Vec<usize>,
    /// Source and destination strides, in elements of `size`.
    pub strides: Vec<Vec<i64>>,
    pub offsets: [i64; 2],
}

/// Copies whose innermost (collapsed) axis is contiguous on both sides move whole words of up
/// to 16 bytes per thread instead of single elements: the widest word that divides the inner
/// run, every other stride, both offsets and both base addresses. A transpose keeping the last
/// axis (attention heads: `[b, s, h, d]` → `[b, h, s, d]`) then moves `d` fp16 values in a
/// few 16-byte loads and stores.
pub fn widen(
    size: usize,
    shape: Vec<usize>,
    strides: Vec<Vec<i64>>,
    offsets: [i64; 2],
    ptrs: [u64; 2],
) -> Widened {
    let keep = |shape, strides| Widened {
        size,
        shape,
        strides,
        offsets,
    };
    let Some(&inner) = shape.last() else {
        return keep(shape, strides);
    };
    let r = shape.len() - 1;
    if size == 0 || strides.iter().any(|s| s.get(r) != Some(&1)) {
        return keep(shape, strides);
    }
    for word in [16usize, 8, 4, 2] {
        if word <= size || word % size != 0 {
            continue;
        }
        let f = (word / size) as i64;
        let fits = (inner as i64) % f == 0
            && strides.iter().all(|s| s[..r].iter().all(|&v| v % f == 0))
            && offsets.iter().all(|&o| o % f == 0)
            && ptrs.iter().all(|&p| p % word as u64 == 0);
        if fits {
            let mut shape = shape;
            shape[r] = inner / f as usize;
            let strides = strides
                .into_iter()
                .map(|s| {
                    s.iter()
                        .enumerate()
                        .map(|(i, &v)| if i == r { 1 } else { v / f })
                        .collect()
                })
                .collect();
            return Widened {
                size: word,
                shape,
                strides,
                offsets: [offsets[0] / f, offsets[1] / f],
            };
        }
    }
    keep(shape, strides)
}

/// The output shape and source strides of Transpose with `perm` (empty: reversed axes).
pub fn transpose_plan(in_shape: &[usize], perm: &[usize]) -> Result<(Vec<usize>, Vec<i64>)> {
    let rank = in_shape.len();
    let perm: Vec<usize> = if perm.is_empty() {
        (0..rank).rev().collect()
    } else {
        perm.to_vec()
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(invalid(
            "transpose",
            format!("perm {perm:?} is not a permutation of {rank} axes"),
        ));
    }
    let s = contiguous_strides(in_shape);
    Ok((
        perm.iter().map(|&p| in_shape[p]).collect(),
        perm.iter().map(|&p| s[p]).collect(),
    ))
}

/// Transpose of a row-major tensor into a row-major output.
pub fn transpose(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    in_shape: &[usize],
    perm: &[usize],
    src: DevicePtr,
    dst: DevicePtr,
) -> Result<()> {
    let (out_shape, ss) = transpose_plan(in_shape, perm)?;
    let src = Strided {
        ptr: src,
        offset: 0,
        strides: ss,
    };
    copy_strided(
        lib,
        stream,
        dtype,
        &out_shape,
        &src,
        &Strided::contiguous(dst, &out_shape),
    )
}

/// ONNX Slice on one axis of length `dim`: (start, output length) for `start`, `end`, `step`
/// as the model gives them (negative counts from the end, out-of-range values clamped).
pub fn slice_axis(dim: usize, start: i64, end: i64, step: i64) -> Result<(i64, usize)> {
    if step == 0 {
        return Err(invalid("slice", "step 0"));
    }
    let d = dim as i128;
    let norm = |v: i64| -> i128 {
        let v = i128::from(v);
        if v < 0 { v + d } else { v }
    };
    let (s, e) = (norm(start), norm(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, d), e.clamp(0, d))
    } else {
        (s.clamp(0, (d - 1).max(0)), e.clamp(-1, d - 1))
    };
    let st = i128::from(step);
    let len = if step > 0 {
        ((e - s).max(0) + st - 1) / st
    } else {
        ((s - e).max(0) + (-st) - 1) / (-st)
    };
    let len = if dim == 0 { 0 } else { len };
    Ok((s as i64, len as usize))
}

/// Slice of a row-major tensor: per axis (start, step) already normalised by [`slice_axis`],
/// with `out_shape` the lengths it gave.
#[allow(clippy::too_many_arguments)]
pub fn slice(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    in_shape: &[usize],
    starts: &[i64],
    steps: &[i64],
    out_shape: &[usize],
    src: DevicePtr,
    dst: DevicePtr,
) -> Result<()> {
    let r = in_shape.len();
    if starts.len() != r || steps.len() != r || out_shape.len() != r {
        return Err(invalid("slice", "starts, steps and shapes differ in rank"));
    }
    let s = contiguous_strides(in_shape);
    let offset = starts.iter().zip(&s).map(|(a, b)| a * b).sum();
    let strides = steps.iter().zip(&s).map(|(a, b)| a * b).collect();
    let src = Strided {
        ptr: src,
        offset,
        strides,
    };
    copy_strided(
        lib,
        stream,
        dtype,
        out_shape,
        &src,
        &Strided::contiguous(dst, out_shape),
    )
}

/// Expand (numpy broadcast of `in_shape` to `out_shape`).
pub fn expand(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    in_shape: &[usize],
    out_shape: &[usize],
    src: DevicePtr,
    dst: DevicePtr,
) -> Result<()> {
    let strides = broadcast_strides(in_shape, out_shape).ok_or_else(|| {
        invalid(
            "expand",
            format!("{in_shape:?} does not broadcast to {out_shape:?}"),
        )
    })?;
    let src = Strided {
        ptr: src,
        offset: 0,
        strides,
    };
    copy_strided(
        lib,
        stream,
        dtype,
        out_shape,
        &src,
        &Strided::contiguous(dst, out_shape),
    )
}

/// Concat of row-major inputs along `axis` into a row-major output.
pub fn concat(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    inputs: &[(DevicePtr, &[usize])],
    axis: usize,
    dst: DevicePtr,
) -> Result<()> {
    let Some((_, first)) = inputs.first() else {
        return Err(invalid("concat", "no inputs"));
    };
    let rank = first.len();
    if axis >= rank {
        return Err(invalid("concat", format!("axis {axis} for rank {rank}")));
    }
    let mut out_shape = first.to_vec();
    out_shape[axis] = 0;
    for (_, s) in inputs {
        let same = s.len() == rank && (0..rank).all(|i| i == axis || s[i] == first[i]);
        if !same {
            return Err(invalid(
                "concat",
                format!("shapes {first:?} and {s:?} do not fit"),
            ));
        }
        out_shape[axis] += s[axis];
    }
    let os = contiguous_strides(&out_shape);
    let mut at = 0i64;
    for (ptr, s) in inputs {
        let d = Strided {
            ptr: dst,
            offset: at * os[axis],
            strides: os.clone(),
        };
        copy_strided(lib, stream, dtype, s, &Strided::contiguous(*ptr, s), &d)?;
        at += s[axis] as i64;
    }
    Ok(())
}

/// Split of a row-major tensor along `axis` into row-major outputs of `sizes` along it.
#[allow(clippy::too_many_arguments)]
pub fn split(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    in_shape: &[usize],
    axis: usize,
    sizes: &[usize],
    src: DevicePtr,
    outputs: &[DevicePtr],
) -> Result<()> {
    if axis >= in_shape.len()
        || sizes.len() != outputs.len()
        || sizes.iter().sum::<usize>() != in_shape[axis]
    {
        return Err(invalid(
            "split",
            format!("sizes {sizes:?} do not split axis {axis} of {in_shape:?}"),
        ));
    }
    let is = contiguous_strides(in_shape);
    let mut at = 0i64;
    for (&len, &ptr) in sizes.iter().zip(outputs) {
        let mut shape = in_shape.to_vec();
        shape[axis] = len;
        let s = Strided {
            ptr: src,
            offset: at * is[axis],
            strides: is.clone(),
        };
        copy_strided(
            lib,
            stream,
            dtype,
            &shape,
            &s,
            &Strided::contiguous(ptr, &shape),
        )?;
        at += len as i64;
    }
    Ok(())
}

/// Tile: the output repeats the input `repeats[d]` times along each axis.
pub fn tile(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    in_shape: &[usize],
    repeats: &[usize],
    src: DevicePtr,
    dst: DevicePtr,
) -> Result<()> {
    if repeats.len() != in_shape.len() {
        return Err(invalid("tile", "repeats and shape differ in rank"));
    }
    let out_shape: Vec<usize> = in_shape.iter().zip(repeats).map(|(a, b)| a * b).collect();
    let n = numel(&out_shape, "tile")?;
    if n == 0 {
        return Ok(());
    }
    let size = dtype.size_in_bytes();
    let args = [
        Arg::Ptr(src.0),
        Arg::Ptr(dst.0),
        Arg::I64(n as i64),
        Arg::Dims(Dims::shape(&out_shape, "tile")?),
        Arg::Dims(Dims::shape(in_shape, "tile")?),
        Arg::Dims(Dims::strides(&contiguous_strides(in_shape), "tile")?),
        Arg::I32(in_shape.len() as i32),
    ];
    lib.launch(
        stream,
        &format!("move_b{size}"),
        || module(size).map(|m| m.source).unwrap_or_default(),
        "kiln_tile",
        (grid_for(n), BLOCK, 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_widen_to_the_largest_word_that_divides_everything() {
        // [2, 3, 8] fp16 with the last axis contiguous: 8 halves = one 16-byte word.
        let w = widen(
            2,
            vec![2, 3, 8],
            vec![vec![8, 16, 1], vec![24, 8, 1]],
            [0, 0],
            [256, 512],
        );
        assert_eq!(w.size, 16);
        assert_eq!(w.shape, vec![2, 3, 1]);
        assert_eq!(w.strides, vec![vec![1, 2, 1], vec![3, 1, 1]]);
        // an odd offset allows only the element itself
        let w = widen(
            2,
            vec![4, 6],
            vec![vec![6, 1], vec![6, 1]],
            [1, 0],
            [256, 256],
        );
        assert_eq!((w.size, w.shape.clone()), (2, vec![4, 6]));
        // 6 halves: 4-byte words (3 per row)
        let w = widen(
            2,
            vec![4, 6],
            vec![vec![12, 1], vec![6, 1]],
            [0, 0],
            [256, 256],
        );
        assert_eq!((w.size, w.shape.clone()), (4, vec![4, 3]));
        assert_eq!(w.strides, vec![vec![6, 1], vec![3, 1]]);
        // a base address aligned to 8 only
        let w = widen(
            4,
            vec![2, 4],
            vec![vec![4, 1], vec![4, 1]],
            [0, 0],
            [264, 256],
        );
        assert_eq!(w.size, 8);
        // inner axis strided: unchanged
        let w = widen(
            2,
            vec![4, 8],
            vec![vec![1, 4], vec![8, 1]],
            [0, 0],
            [256, 256],
        );
        assert_eq!((w.size, w.shape.clone()), (2, vec![4, 8]));
        // 8-byte elements move as 16-byte pairs
        let w = widen(
            8,
            vec![3, 2],
            vec![vec![2, 1], vec![2, 1]],
            [2, 0],
            [256, 256],
        );
        assert_eq!(
            (w.size, w.shape.clone(), w.offsets),
            (16, vec![3, 1], [1, 0])
        );
    }

    #[test]
    fn transpose_plans() {
        let (s, st) = transpose_plan(&[2, 3, 4], &[2, 0, 1]).unwrap();
        assert_eq!(s, vec![4, 2, 3]);
        assert_eq!(st, vec![1, 12, 4]);
        let (s, _) = transpose_plan(&[2, 3], &[]).unwrap();
        assert_eq!(s, vec![3, 2]);
        assert!(transpose_plan(&[2, 3], &[0, 0]).is_err());
        assert!(transpose_plan(&[2, 3], &[0]).is_err());
    }

    #[test]
    fn slice_axis_follows_onnx() {
        assert_eq!(slice_axis(10, 2, 8, 1).unwrap(), (2, 6));
        assert_eq!(slice_axis(10, 2, 8, 3).unwrap(), (2, 2));
        assert_eq!(slice_axis(10, -3, i64::MAX, 1).unwrap(), (7, 3));
        assert_eq!(slice_axis(10, i64::MAX, i64::MIN, -1).unwrap(), (9, 10));
        assert_eq!(slice_axis(10, 8, 2, -2).unwrap(), (8, 3));
        assert_eq!(slice_axis(10, 5, 2, 1).unwrap(), (5, 0));
        assert_eq!(slice_axis(0, 0, 5, 1).unwrap().1, 0);
        assert_eq!(slice_axis(4, -100, 100, 1).unwrap(), (0, 4));
        assert!(slice_axis(4, 0, 4, 0).is_err());
    }

    #[test]
    fn modules_per_size() {
        for s in [1, 2, 4, 8, 16] {
            let m = module(s).unwrap();
            assert_eq!(m.name, format!("move_b{s}"));
            assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
        }
        assert!(module(3).is_err() && module(32).is_err());
        let names: Vec<String> = modules(2).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["move_b2", "move_b4", "move_b8", "move_b16"]);
        assert_eq!(modules(16).unwrap().len(), 1);
    }
}
