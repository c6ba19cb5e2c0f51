//! GatherND (opsets 11, 12, 13): the last dim of `indices` (length `k`) holds index tuples
//! that address dims `batch_dims .. batch_dims + k` of `data`; each tuple copies the
//! contiguous slice `data.shape[batch_dims + k..]` of its batch. Output shape:
//! `indices.shape[..-1] ++ data.shape[batch_dims + k..]`.
//!
//! The kernel sees `data` as `[batch, d_0, .., d_{k-1}, slice]` and the tuples as
//! `[batch, tuples, k]` (int64 or int32). Negative components count from the end of their
//! dim. A tuple with a component outside `[-d, d)` (which kiln-reference rejects) writes
//! zeros for its whole slice instead of reading out of bounds; when the indices are a
//! constant of the model the builder reports such a tuple at build time instead
//! (`builder::checks`). Kernels depend only on the element size, like Gather's. The loop
//! over a tuple is unrolled to the kernels' maximum rank, so `dims` and `strides` are indexed
//! with constants and stay in the parameter space.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{BLOCK, Dims, MAX_RANK, contiguous_strides, grid_for, numel};
use super::library::ModuleSpec;
use super::prelude::module_source;
use super::{DevicePtr, KernelLibrary, Result, invalid};

/// The GatherND module for elements of `size` bytes.
pub fn module(size: usize) -> Result<ModuleSpec> {
    let ty = match size {
        1 => "unsigned char",
        2 => "unsigned short",
        4 => "unsigned int",
        8 => "unsigned long long",
        _ => return Err(invalid("gather_nd", format!("element size {size}"))),
    };
    let mut body = format!("typedef {ty} E;\n");
    for (tag, ity) in [("i64", "long long"), ("i32", "int")] {
        body.push_str(&format!(
            "extern \"C\" __global__ void kiln_gather_nd_{tag}(const E* data, const {ity}* idx,\n    \
             E* out, long long n, long long slice, long long tuples, long long batch_elems,\n    \
             int k, KDims dims, KDims strides) {{\n    \
             KILN_GRID_LOOP(i, n) {{\n        \
             long long s = i % slice, t = i / slice;\n        \
             long long off = (t / tuples) * batch_elems + s;\n        \
             int ok = 1;\n        \
             #pragma unroll\n        \
             for (int j = 0; j < KILN_MAX_RANK; ++j) {{\n            \
             if (j >= k) continue;\n            \
             long long v = (long long)idx[t * k + j];\n            \
             long long d = dims.v[j];\n            \
             if (v < 0) v += d;\n            \
             if (v < 0 || v >= d) ok = 0;\n            \
             else off += v * strides.v[j];\n        }}\n        \
             out[i] = ok ? data[off] : (E)0;\n    }}\n}}\n"
        ));
    }
    Ok(ModuleSpec {
        name: format!("gather_nd_b{size}"),
        source: module_source(&body),
    })
}

/// The flattened geometry of one GatherND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherNdGeometry {
    /// Product of the batch dims (1 without batch dims).
    pub batch: usize,
    /// Index tuples per batch.
    pub tuples: usize,
    /// Length of each tuple (`indices.shape[-1]`).
    pub k: usize,
    /// The data dims the tuples address (`data.shape[batch_dims..batch_dims + k]`).
    pub indexed: Vec<usize>,
    /// Elements each tuple copies (`prod(data.shape[batch_dims + k..])`).
    pub slice: usize,
    /// The output shape.
    pub out_shape: Vec<usize>,
}

impl GatherNdGeometry {
    /// Checks the shapes as ONNX (and kiln-reference) do and flattens them.
    pub fn new(data: &[usize], indices: &[usize], batch_dims: i64) -> Result<GatherNdGeometry> {
        let (r, q) = (data.len(), indices.len());
        let b = usize::try_from(batch_dims)
            .ok()
            .filter(|&b| b < r.min(q))
            .ok_or_else(|| {
                invalid(
                    "gather_nd",
                    format!(
                        "batch_dims {batch_dims} is not in [0, min(rank(data) {r}, rank(indices) {q}))"
                    ),
                )
            })?;
        if data[..b] != indices[..b] {
            return Err(invalid(
                "gather_nd",
                format!("the first {b} dims of data {data:?} and indices {indices:?} differ"),
            ));
        }
        let k = indices[q - 1];
        if k == 0 || k > r - b {
            return Err(invalid(
                "gather_nd",
                format!(
                    "indices' last dim is {k}; with data of rank {r} and batch_dims {b} it must be \
                     in 1..={}",
                    r - b
                ),
            ));
        }
        if k > MAX_RANK {
            return Err(invalid(
                "gather_nd",
                format!("index tuples of length {k} exceed the kernel's limit of {MAX_RANK}"),
            ));
        }
        let mut out_shape = indices[..q - 1].to_vec();
        out_shape.extend_from_slice(&data[b + k..]);
        numel(data, "gather_nd")?;
        numel(indices, "gather_nd")?;
        numel(&out_shape, "gather_nd")?;
        Ok(GatherNdGeometry {
            batch: data[..b].iter().product(),
            tuples: indices[b..q - 1].iter().product(),
            k,
            indexed: data[b..b + k].to_vec(),
            slice: data[b + k..].iter().product(),
            out_shape,
        })
    }

    /// Elements of one batch of `data`.
    pub fn batch_elems(&self) -> usize {
        self.indexed.iter().product::<usize>() * self.slice
    }

    /// Elements of the output.
    pub fn out_elems(&self) -> usize {
        self.batch * self.tuples * self.slice
    }
}

/// GatherND of `dtype` elements with `index_type` (int64 or int32) indices.
#[allow(clippy::too_many_arguments)]
pub fn gather_nd(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    index_type: DataType,
    geo: &GatherNdGeometry,
    data: DevicePtr,
    indices: DevicePtr,
    out: DevicePtr,
) -> Result<()> {
    let tag = match index_type {
        DataType::I64 => "i64",
        DataType::I32 => "i32",
        other => return Err(invalid("gather_nd", format!("indices of type {other}"))),
    };
    let n = geo.out_elems();
    if n == 0 {
        return Ok(());
    }
    // Strides of the indexed dims inside one batch, in elements.
    let mut inner = geo.indexed.clone();
    inner.push(geo.slice);
    let mut strides = contiguous_strides(&inner);
    strides.pop();
    let size = dtype.size_in_bytes();
    let args = [
        Arg::Ptr(data.0),
        Arg::Ptr(indices.0),
        Arg::Ptr(out.0),
        Arg::I64(n as i64),
        Arg::I64(geo.slice as i64),
        Arg::I64(geo.tuples as i64),
        Arg::I64(geo.batch_elems() as i64),
        Arg::I32(geo.k as i32),
        Arg::Dims(Dims::shape(&geo.indexed, "gather_nd")?),
        Arg::Dims(Dims::strides(&strides, "gather_nd")?),
    ];
    lib.launch(
        stream,
        &format!("gather_nd_b{size}"),
        || module(size).map(|m| m.source).unwrap_or_default(),
        &format!("kiln_gather_nd_{tag}"),
        (grid_for(n), BLOCK, 0),
        &args,
    )
}

/// The first index tuple of `indices` (flat, `geo.k` per tuple) outside the data, as
/// `(tuple, component, value, dim)`.
pub fn first_out_of_range(
    geo: &GatherNdGeometry,
    indices: &[i64],
) -> Option<(usize, usize, i64, usize)> {
    indices
        .chunks_exact(geo.k.max(1))
        .enumerate()
        .find_map(|(t, tuple)| {
            tuple
                .iter()
                .zip(&geo.indexed)
                .enumerate()
                .find_map(|(j, (&v, &d))| {
                    let d64 = i64::try_from(d).unwrap_or(i64::MAX);
                    let w = if v < 0 { v.saturating_add(d64) } else { v };
                    (w < 0 || w >= d64).then_some((t, j, v, d))
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules() {
        for size in [1, 2, 4, 8] {
            let m = module(size).unwrap();
            assert!(
                m.source.contains("kiln_gather_nd_i64(")
                    && m.source.contains("kiln_gather_nd_i32(")
            );
            assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
        }
        assert!(module(3).is_err());
    }

    #[test]
    fn geometry_follows_the_spec() {
        // batch_dims 0: [2, 3, 4] with tuples of 2 -> slices of 4
        let g = GatherNdGeometry::new(&[2, 3, 4], &[5, 2], 0).unwrap();
        assert_eq!(
            (g.batch, g.tuples, g.k, g.slice, g.batch_elems()),
            (1, 5, 2, 4, 24)
        );
        assert_eq!(g.indexed, vec![2, 3]);
        assert_eq!(g.out_shape, vec![5, 4]);
        // full tuples: scalars
        let g = GatherNdGeometry::new(&[2, 3], &[4, 1, 2], 0).unwrap();
        assert_eq!((g.tuples, g.slice), (4, 1));
        assert_eq!(g.out_shape, vec![4, 1]);
        // batch_dims 1 (the spec's example 5): data [2, 2, 2], indices [2, 1] -> [2, 2]
        let g = GatherNdGeometry::new(&[2, 2, 2], &[2, 1], 1).unwrap();
        assert_eq!((g.batch, g.tuples, g.k, g.slice), (2, 1, 1, 2));
        assert_eq!(g.out_shape, vec![2, 2]);
        assert_eq!(g.batch_elems(), 4);
        assert_eq!(g.out_elems(), 4);
        // batch_dims 2 over [2, 3, 5, 6] with indices [2, 3, 4, 1]
        let g = GatherNdGeometry::new(&[2, 3, 5, 6], &[2, 3, 4, 1], 2).unwrap();
        assert_eq!((g.batch, g.tuples, g.slice), (6, 4, 6));
        assert_eq!(g.out_shape, vec![2, 3, 4, 6]);
    }

    #[test]
    fn bad_geometries_are_errors() {
        let e = |d: &[usize], i: &[usize], b: i64| {
            GatherNdGeometry::new(d, i, b).unwrap_err().to_string()
        };
        assert!(e(&[2, 3], &[4, 3], 0).contains("last dim is 3"));
        assert!(e(&[2, 3], &[4, 0], 0).contains("last dim is 0"));
        assert!(e(&[2, 3], &[2, 1], 2).contains("batch_dims 2"));
        assert!(e(&[2, 3], &[2, 1], -1).contains("batch_dims -1"));
        assert!(e(&[2, 3, 4], &[3, 1], 1).contains("differ"));
        assert!(e(&[1; 10], &[9], 0).contains("limit"));
    }

    #[test]
    fn out_of_range_tuples_are_found() {
        let g = GatherNdGeometry::new(&[2, 3, 4], &[3, 2], 0).unwrap();
        assert_eq!(first_out_of_range(&g, &[1, 2, -2, -3, 0, 0]), None);
        assert_eq!(
            first_out_of_range(&g, &[1, 2, -3, 0, 0, 0]),
            Some((1, 0, -3, 2))
        );
        assert_eq!(
            first_out_of_range(&g, &[0, 0, 0, 0, 1, 3]),
            Some((2, 1, 3, 3))
        );
        assert_eq!(
            first_out_of_range(&g, &[i64::MIN, 0]),
            Some((0, 0, i64::MIN, 2))
        );
    }
}
