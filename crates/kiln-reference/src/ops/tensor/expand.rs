//! Ops that repeat data: Expand and Tile.
//!
//! - Expand <https://onnx.ai/onnx/operators/onnx__Expand.html>: broadcasts the input with the
//!   int64 `shape` input, numpy style in both directions (the output shape is the broadcast of
//!   both, so a 1 in `shape` keeps the input dim). Opset history: 8 introduces it; 13 widens
//!   the element types.
//! - Tile <https://onnx.ai/onnx/operators/onnx__Tile.html>: opset 1 repeats along one `axis`
//!   input `tiles` times (both scalar inputs); from 6 the int64 `repeats` input has one count
//!   per axis (like `numpy.tile` without broadcasting); 13 widens the element types.

use ndarray::{ArrayD, IxDyn, Order};

use crate::error::Result;
use crate::map_array;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::{
    Elem, broadcast_shapes, checked_numel, reshaped, scalar_i64, standard, to_dims,
};

fn expand_typed<T: Elem>(ctx: &OpCtx<'_>, a: &ArrayD<T>, out: &[usize]) -> Result<ArrayD<T>> {
    let b = a.broadcast(IxDyn(out)).ok_or_else(|| {
        ctx.err(
            format!("cannot broadcast {:?} to {out:?}", a.shape()),
            "Give a shape that broadcasts with the input",
        )
    })?;
    Ok(standard(b))
}

/// Expand: see the module doc.
pub(crate) fn expand(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let shape = ctx.input_i64s(1)?;
    let shape = to_dims(ctx, &shape, "shape")?;
    let out = broadcast_shapes(ctx, x.shape(), &shape)?;
    checked_numel(ctx, &out)?;
    Ok(vec![map_array!(x, a => expand_typed(ctx, a, &out)?)])
}

/// `a` repeated `reps[i]` times along each axis `i` (`reps.len() == a.ndim()`).
fn tile_typed<T: Elem>(ctx: &OpCtx<'_>, a: &ArrayD<T>, reps: &[usize]) -> Result<ArrayD<T>> {
    // View a as [1, d0, 1, d1, ...], broadcast to [r0, d0, r1, d1, ...], then merge pairs.
    let mut inter = Vec::with_capacity(2 * reps.len());
    let mut wide = Vec::with_capacity(2 * reps.len());
    let mut out = Vec::with_capacity(reps.len());
    for (&r, &d) in reps.iter().zip(a.shape()) {
        inter.extend([1, d]);
        wide.extend([r, d]);
        out.push(r.saturating_mul(d));
    }
    checked_numel(ctx, &out)?;
    let bad = |e: String| {
        ctx.err(
            format!("cannot tile {:?}: {e}", a.shape()),
            "Check the repeats",
        )
    };
    let v = a
        .to_shape((IxDyn(&inter), Order::RowMajor))
        .map_err(|e| bad(e.to_string()))?;
    let b = v
        .broadcast(IxDyn(&wide))
        .ok_or_else(|| bad("broadcast failed".into()))?;
    reshaped(ctx, b, &out)
}

/// Tile: see the module doc.
pub(crate) fn tile(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let rank = x.shape().len();
    let reps: Vec<i64> = if ctx.opset < 6 {
        let tiles = scalar_i64(ctx, 1, "tiles")?;
        let axis = ctx.axis(scalar_i64(ctx, 2, "axis")?, rank)?;
        (0..rank)
            .map(|i| if i == axis { tiles } else { 1 })
            .collect()
    } else {
        ctx.input_i64s(1)?
    };
    if reps.len() != rank {
        return Err(ctx.err(
            format!(
                "repeats {reps:?} has {} entries for an input of rank {rank}",
                reps.len()
            ),
            "Give one repeat count per input axis",
        ));
    }
    let reps = to_dims(ctx, &reps, "repeats")?;
    Ok(vec![map_array!(x, a => tile_typed(ctx, a, &reps)?)])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;

    #[test]
    fn expand_bidirectional() {
        let x = f32s(&[3, 1], &[1., 2., 3.]);
        let y = run1(
            expand,
            "Expand",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[2, 1, 4]))],
        );
        assert_eq!(y.shape(), &[2, 3, 4]);
        assert_eq!(&y.to_f64_vec()[..8], &[1., 1., 1., 1., 2., 2., 2., 2.]);
        // Shape smaller than the input: the input dims stay.
        let y = run1(
            expand,
            "Expand",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[1, 1]))],
        );
        check(&y, &[3, 1], &[1., 2., 3.]);
        let y = run1(
            expand,
            "Expand",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[]))],
        );
        assert_eq!(y.shape(), &[3, 1]);
        let y = run1(
            expand,
            "Expand",
            8,
            vec![],
            &[Some(x.clone()), Some(ints(&[3, 0]))],
        );
        assert_eq!(y.shape(), &[3, 0]);
        let b = Value::Bool(ArrayD::from_shape_vec(IxDyn(&[]), vec![true]).unwrap());
        let y = run1(expand, "Expand", 13, vec![], &[Some(b), Some(ints(&[2]))]);
        check(&y, &[2], &[1., 1.]);
        let e = run_err(
            expand,
            "Expand",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[2, 2]))],
        );
        assert!(e.contains("do not broadcast"), "{e}");
        let e = run_err(
            expand,
            "Expand",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[-1]))],
        );
        assert!(e.contains("negative"), "{e}");
        let e = run_err(
            expand,
            "Expand",
            13,
            vec![],
            &[Some(x), Some(ints(&[1 << 40, 1 << 40, 3, 1]))],
        );
        assert!(e.contains("too many"), "{e}");
    }

    #[test]
    fn tile_repeats() {
        // numpy: np.tile([[1,2],[3,4]], (2,3)).ravel()
        let x = i64s(&[2, 2], &[1, 2, 3, 4]);
        let y = run1(
            tile,
            "Tile",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[2, 3]))],
        );
        check(
            &y,
            &[4, 6],
            &[
                1., 2., 1., 2., 1., 2., 3., 4., 3., 4., 3., 4., 1., 2., 1., 2., 1., 2., 3., 4., 3.,
                4., 3., 4.,
            ],
        );
        let y = run1(
            tile,
            "Tile",
            6,
            vec![],
            &[Some(x.clone()), Some(ints(&[0, 1]))],
        );
        assert_eq!(y.shape(), &[0, 2]);
        // Opset 1: tiles and axis scalars.
        let y = run1(
            tile,
            "Tile",
            1,
            vec![],
            &[
                Some(x.clone()),
                Some(i64s(&[], &[2])),
                Some(i64s(&[], &[1])),
            ],
        );
        check(&y, &[2, 4], &[1., 2., 1., 2., 3., 4., 3., 4.]);
        let s = f32s(&[], &[5.]);
        let y = run1(tile, "Tile", 13, vec![], &[Some(s), Some(ints(&[]))]);
        check(&y, &[], &[5.]);
        let e = run_err(
            tile,
            "Tile",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[2]))],
        );
        assert!(e.contains("one repeat count"), "{e}");
        let e = run_err(
            tile,
            "Tile",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[2, -1]))],
        );
        assert!(e.contains("negative"), "{e}");
        let e = run_err(
            tile,
            "Tile",
            13,
            vec![],
            &[Some(x), Some(ints(&[1 << 62, 4]))],
        );
        assert!(e.contains("too many"), "{e}");
    }
}
