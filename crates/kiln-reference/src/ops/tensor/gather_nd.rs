//! GatherND <https://onnx.ai/onnx/operators/onnx__GatherND.html>: the last dim of `indices`
//! (length `k`) addresses the first `k` dims (after `batch_dims`) of `data`; each index tuple
//! picks one slice.
//!
//! With `data` of rank `r`, `indices` of rank `q`, `b = batch_dims`: the first `b` dims of both
//! must be equal; `k = indices.shape[-1]` must be in `1..=r - b`; the output shape is
//! `indices.shape[..q-1] ++ data.shape[b+k..]`. Negative indices count from the end.
//!
//! Opset history: 11 introduces it; 12 adds `batch_dims` (default 0); 13 widens the types.

use ndarray::{ArrayD, IxDyn};

use crate::error::Result;
use crate::map_array;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::{Elem, checked_numel, int_array};

fn gather_nd_typed<T: Elem>(
    data: &ArrayD<T>,
    starts: &[usize],
    slice_len: usize,
    out: &[usize],
) -> Option<ArrayD<T>> {
    // `data` in logical order: every slice is contiguous there.
    let flat: Vec<T> = data.iter().cloned().collect();
    let mut vals = Vec::with_capacity(starts.len() * slice_len);
    for &s in starts {
        vals.extend_from_slice(flat.get(s..s + slice_len)?);
    }
    ArrayD::from_shape_vec(IxDyn(out), vals).ok()
}

pub(crate) fn gather_nd(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let data = ctx.required(0)?;
    let dshape = data.shape().to_vec();
    let ind = int_array(ctx, 1)?;
    let ishape = ind.shape().to_vec();
    let (r, q) = (dshape.len(), ishape.len());
    let b = usize::try_from(ctx.attr_int("batch_dims", 0)?)
        .ok()
        .filter(|&b| b < q.min(r))
        .ok_or_else(|| {
            ctx.err(
                "batch_dims is negative or not below the ranks of data and indices",
                "Use 0 <= batch_dims < min(rank(data), rank(indices))",
            )
        })?;
    if dshape[..b] != ishape[..b] {
        return Err(ctx.err(
            format!("the first {b} dims of data {dshape:?} and indices {ishape:?} differ"),
            "Batch dims must be equal in both",
        ));
    }
    let k = ishape[q - 1];
    if k == 0 || k > r - b {
        return Err(ctx.err(
            format!("indices' last dim is {k}; with data of rank {r} and batch_dims {b} it must be in 1..={}", r - b),
            "Give index tuples that address the data's leading dims",
        ));
    }
    let mut out: Vec<usize> = ishape[..q - 1].to_vec();
    out.extend_from_slice(&dshape[b + k..]);
    checked_numel(ctx, &out)?;
    // Element strides of `data` in logical (row-major) order.
    let mut strides = vec![1usize; r];
    for d in (0..r.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * dshape[d + 1];
    }
    let slice_len: usize = dshape[b + k..].iter().product();
    let batch_count: usize = ishape[..b].iter().product();
    let tuples_per_batch: usize = ishape[b..q - 1].iter().product();
    let flat_idx: Vec<i64> = ind.iter().copied().collect();
    let mut starts = Vec::with_capacity(batch_count * tuples_per_batch);
    for bi in 0..batch_count {
        // Offset of batch `bi` in data: its batch coordinates times their strides.
        let mut rem = bi;
        let mut base = 0usize;
        for d in (0..b).rev() {
            base += (rem % dshape[d]) * strides[d];
            rem /= dshape[d];
        }
        for t in 0..tuples_per_batch {
            let tuple = &flat_idx[(bi * tuples_per_batch + t) * k..][..k];
            let mut off = base;
            for (j, &i) in tuple.iter().enumerate() {
                let dim = dshape[b + j];
                let d = i64::try_from(dim).unwrap_or(i64::MAX);
                let v = if i < 0 { i + d } else { i };
                if v < 0 || v >= d {
                    return Err(ctx.err(
                        format!(
                            "index {i} is out of range for dim {} of length {dim}",
                            b + j
                        ),
                        format!("Give indices in [{}, {}]", -d, d - 1),
                    ));
                }
                off += v as usize * strides[b + j];
            }
            starts.push(off);
        }
    }
    let v = map_array!(data, a => gather_nd_typed(a, &starts, slice_len, &out).ok_or_else(|| {
        ctx.err("indices address data outside the tensor", "Check the indices")
    })?);
    Ok(vec![v])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;

    // Expected values from the ONNX operator spec's examples (worked by hand).
    #[test]
    fn spec_examples() {
        let data = i64s(&[2, 2], &[0, 1, 2, 3]);
        let y = run1(
            gather_nd,
            "GatherND",
            13,
            vec![],
            &[Some(data.clone()), Some(i64s(&[2, 2], &[0, 0, 1, 1]))],
        );
        assert_eq!(y, i64s(&[2], &[0, 3]));
        let y = run1(
            gather_nd,
            "GatherND",
            13,
            vec![],
            &[Some(data), Some(i64s(&[2, 1], &[1, 0]))],
        );
        assert_eq!(y, i64s(&[2, 2], &[2, 3, 0, 1]));
        let data = i64s(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        let y = run1(
            gather_nd,
            "GatherND",
            13,
            vec![],
            &[Some(data.clone()), Some(i64s(&[2, 1, 2], &[0, 1, 1, 0]))],
        );
        assert_eq!(y, i64s(&[2, 1, 2], &[2, 3, 4, 5]));
        let y = run1(
            gather_nd,
            "GatherND",
            13,
            vec![("batch_dims", a1(1))],
            &[Some(data), Some(i64s(&[2, 1], &[1, 0]))],
        );
        assert_eq!(y, i64s(&[2, 2], &[2, 3, 4, 5]));
    }

    #[test]
    fn negative_and_bad_indices() {
        let data = i64s(&[3], &[10, 20, 30]);
        let y = run1(
            gather_nd,
            "GatherND",
            13,
            vec![],
            &[Some(data.clone()), Some(i64s(&[1, 1], &[-1]))],
        );
        assert_eq!(y, i64s(&[1], &[30]));
        let e = run_err(
            gather_nd,
            "GatherND",
            13,
            vec![],
            &[Some(data.clone()), Some(i64s(&[1, 1], &[3]))],
        );
        assert!(e.contains("out of range"), "{e}");
        let e = run_err(
            gather_nd,
            "GatherND",
            13,
            vec![],
            &[Some(data), Some(i64s(&[1, 2], &[0, 0]))],
        );
        assert!(e.contains("last dim"), "{e}");
    }
}
