//! Indexed reads along one axis: Gather and GatherElements.
//!
//! - Gather <https://onnx.ai/onnx/operators/onnx__Gather.html>: picks whole slices of `data`
//!   along `axis` (default 0) by `indices` (int32/int64, any rank, negative counts from the
//!   end); the output shape is `data.shape[..axis] ++ indices.shape ++ data.shape[axis+1..]`.
//!   Opset history: 1 introduces it; 11 allows negative indices and negative `axis`;
//!   13 widens the element types.
//! - GatherElements <https://onnx.ai/onnx/operators/onnx__GatherElements.html>: per element,
//!   `out[i..] = data[i.. with indices[i..] at axis]`; `indices` has the rank of `data` and
//!   the output its shape (dims other than `axis` may not exceed `data`'s). Opset history:
//!   11 introduces it; 13 widens the element types.

use ndarray::{ArrayD, Axis, Dimension, IxDyn};

use crate::error::Result;
use crate::map_array;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::{Elem, checked_numel, int_array, reshaped};

/// `i` (in `[-dim, dim)`) as an index into an axis of length `dim`.
fn norm_index(ctx: &OpCtx<'_>, i: i64, dim: usize, axis: usize) -> Result<usize> {
    let d = i64::try_from(dim).unwrap_or(i64::MAX);
    let j = if i < 0 { i.checked_add(d) } else { Some(i) };
    j.filter(|&j| j >= 0 && j < d)
        .and_then(|j| usize::try_from(j).ok())
        .ok_or_else(|| {
            ctx.err(
                format!("index {i} is out of range for axis {axis} of length {dim}"),
                format!("Give indices in [{}, {}]", -d, d - 1),
            )
        })
}

fn gather_typed<T: Elem>(
    ctx: &OpCtx<'_>,
    a: &ArrayD<T>,
    axis: usize,
    idx: &[usize],
    out: &[usize],
) -> Result<ArrayD<T>> {
    let picked = a.select(Axis(axis), idx);
    reshaped(ctx, picked.view(), out)
}

/// Gather: see the module doc.
pub(crate) fn gather(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let dims = x.shape();
    let axis = ctx.axis(ctx.attr_int("axis", 0)?, dims.len())?;
    let dim = dims.get(axis).copied().unwrap_or(0);
    let ind = int_array(ctx, 1)?;
    let idx = ind
        .iter()
        .map(|&i| norm_index(ctx, i, dim, axis))
        .collect::<Result<Vec<usize>>>()?;
    let mut out: Vec<usize> = dims.get(..axis).unwrap_or(&[]).to_vec();
    out.extend_from_slice(ind.shape());
    out.extend_from_slice(dims.get(axis + 1..).unwrap_or(&[]));
    checked_numel(ctx, &out)?;
    Ok(vec![
        map_array!(x, a => gather_typed(ctx, a, axis, &idx, &out)?),
    ])
}

fn gather_elements_typed<T: Elem>(
    ctx: &OpCtx<'_>,
    a: &ArrayD<T>,
    axis: usize,
    idx: &ArrayD<usize>,
) -> Result<ArrayD<T>> {
    let mut src = IxDyn(&vec![0; a.ndim()]);
    let vals: Vec<T> = idx
        .indexed_iter()
        .map(|(pos, &k)| {
            for (d, (s, p)) in src.slice_mut().iter_mut().zip(pos.slice()).enumerate() {
                *s = if d == axis { k } else { *p };
            }
            // Every index was checked against `a`'s shape, so `get` always finds an element.
            a.get(&src).cloned().unwrap_or_default()
        })
        .collect();
    ArrayD::from_shape_vec(idx.raw_dim(), vals).map_err(|e| {
        ctx.err(
            format!("internal shape error: {e}"),
            "Report this with the model",
        )
    })
}

/// GatherElements: see the module doc.
pub(crate) fn gather_elements(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let dims = x.shape();
    let axis = ctx.axis(ctx.attr_int("axis", 0)?, dims.len())?;
    let ind = int_array(ctx, 1)?;
    if ind.ndim() != dims.len() {
        return Err(ctx.err(
            format!(
                "indices have rank {} but data has rank {}",
                ind.ndim(),
                dims.len()
            ),
            "Give indices of the data's rank",
        ));
    }
    for (d, (&n, &m)) in ind.shape().iter().zip(dims).enumerate() {
        if d != axis && n > m {
            return Err(ctx.err(
                format!(
                    "indices shape {:?} exceeds data shape {dims:?} at axis {d}",
                    ind.shape()
                ),
                "Give indices no larger than the data outside the gather axis",
            ));
        }
    }
    let dim = dims.get(axis).copied().unwrap_or(0);
    let mut idx = ArrayD::<usize>::zeros(ind.raw_dim());
    for (o, &i) in idx.iter_mut().zip(ind.iter()) {
        *o = norm_index(ctx, i, dim, axis)?;
    }
    Ok(vec![
        map_array!(x, a => gather_elements_typed(ctx, a, axis, &idx)?),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use half::f16;

    #[test]
    fn gather_axes_and_ranks() {
        let x = iota(&[3, 2]);
        // numpy: np.take(np.arange(6).reshape(3,2), [[0,1],[1,2]], axis=0)
        let y = run1(
            gather,
            "Gather",
            13,
            vec![],
            &[Some(x.clone()), Some(i64s(&[2, 2], &[0, 1, 1, 2]))],
        );
        check(&y, &[2, 2, 2], &[0., 1., 2., 3., 2., 3., 4., 5.]);
        let y = run1(
            gather,
            "Gather",
            13,
            vec![("axis", a1(1))],
            &[Some(x.clone()), Some(ints(&[1, -2]))],
        );
        check(&y, &[3, 2], &[1., 0., 3., 2., 5., 4.]);
        // Scalar index drops the axis.
        let y = run1(
            gather,
            "Gather",
            13,
            vec![("axis", a1(-1))],
            &[Some(x.clone()), Some(i32s(&[], &[-1]))],
        );
        check(&y, &[3], &[1., 3., 5.]);
        // Empty indices.
        let y = run1(
            gather,
            "Gather",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[]))],
        );
        assert_eq!(y.shape(), &[0, 2]);
        let h = Value::F16(ArrayD::from_shape_vec(IxDyn(&[2]), vec![f16::ONE, f16::ZERO]).unwrap());
        let y = run1(
            gather,
            "Gather",
            13,
            vec![],
            &[Some(h), Some(ints(&[1, 1, 0]))],
        );
        check(&y, &[3], &[0., 0., 1.]);
    }

    #[test]
    fn gather_errors() {
        let x = iota(&[3, 2]);
        let e = run_err(
            gather,
            "Gather",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[3]))],
        );
        assert!(e.contains("out of range"), "{e}");
        let e = run_err(
            gather,
            "Gather",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[-4]))],
        );
        assert!(e.contains("out of range"), "{e}");
        let e = run_err(
            gather,
            "Gather",
            13,
            vec![("axis", a1(2))],
            &[Some(x.clone()), Some(ints(&[0]))],
        );
        assert!(e.contains("axis 2"), "{e}");
        let e = run_err(
            gather,
            "Gather",
            13,
            vec![],
            &[Some(x.clone()), Some(f32s(&[1], &[0.]))],
        );
        assert!(e.contains("element type"), "{e}");
        let e = run_err(
            gather,
            "Gather",
            13,
            vec![],
            &[Some(x), Some(ints(&[i64::MIN]))],
        );
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn gather_elements_spec() {
        // Spec examples: data [[1,2],[3,4]], indices [[0,0],[1,0]], axis 1 -> [[1,1],[4,3]].
        let d = i64s(&[2, 2], &[1, 2, 3, 4]);
        let y = run1(
            gather_elements,
            "GatherElements",
            13,
            vec![("axis", a1(1))],
            &[Some(d.clone()), Some(i64s(&[2, 2], &[0, 0, 1, 0]))],
        );
        check(&y, &[2, 2], &[1., 1., 4., 3.]);
        // data 3x3 1..9, indices [[1,2,0],[2,0,0]], axis 0 -> [[4,8,3],[7,2,3]].
        let d = i32s(&[3, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let y = run1(
            gather_elements,
            "GatherElements",
            13,
            vec![],
            &[Some(d.clone()), Some(i32s(&[2, 3], &[1, 2, 0, 2, 0, 0]))],
        );
        check(&y, &[2, 3], &[4., 8., 3., 7., 2., 3.]);
        // Negative indices: [[-1,-2,0],[-2,0,0]] -> [[7,5,3],[4,2,3]].
        let y = run1(
            gather_elements,
            "GatherElements",
            13,
            vec![("axis", a1(-2))],
            &[Some(d.clone()), Some(i64s(&[2, 3], &[-1, -2, 0, -2, 0, 0]))],
        );
        check(&y, &[2, 3], &[7., 5., 3., 4., 2., 3.]);
        let e = run_err(
            gather_elements,
            "GatherElements",
            13,
            vec![],
            &[Some(d.clone()), Some(ints(&[0]))],
        );
        assert!(e.contains("rank"), "{e}");
        let e = run_err(
            gather_elements,
            "GatherElements",
            13,
            vec![],
            &[Some(d.clone()), Some(i64s(&[1, 4], &[0; 4]))],
        );
        assert!(e.contains("exceeds"), "{e}");
        let e = run_err(
            gather_elements,
            "GatherElements",
            13,
            vec![],
            &[Some(d), Some(i64s(&[1, 1], &[3]))],
        );
        assert!(e.contains("out of range"), "{e}");
    }
}
