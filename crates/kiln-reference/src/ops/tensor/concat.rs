//! Concat <https://onnx.ai/onnx/operators/onnx__Concat.html>: joins inputs along an axis.
//!
//! Opset history: 1 has an optional `axis` (default 1); 4 makes `axis` required; 11 allows
//! a negative `axis` (`[-rank, rank)`); 13 widens the element types. All inputs share the
//! element type, the rank and every dim but `axis`; inputs empty along `axis` are allowed.

use ndarray::{ArrayD, ArrayViewD, Axis, concatenate};

use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;
use crate::with_array;

use super::common::{Elem, same_type};

/// Concat of inputs of `first`'s element type (input #0 is `first`, as `like`).
fn concat_typed<T: Elem>(
    ctx: &OpCtx<'_>,
    first: &ArrayD<T>,
    like: &Value,
    axis: usize,
) -> Result<Value> {
    let mut views: Vec<ArrayViewD<'_, T>> = Vec::with_capacity(ctx.num_inputs());
    views.push(first.view());
    for i in 1..ctx.num_inputs() {
        views.push(same_type::<T>(ctx, i, like)?.view());
    }
    concatenate(Axis(axis), &views).map(T::wrap).map_err(|e| {
        let shapes: Vec<&[usize]> = views.iter().map(|v| v.shape()).collect();
        ctx.err(
            format!("cannot concatenate shapes {shapes:?} along axis {axis}: {e}"),
            "Give inputs of one rank whose dims agree except along the axis",
        )
    })
}

/// Concat: see the module doc.
pub(crate) fn concat(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let first = ctx.required(0)?;
    let rank = first.shape().len();
    let axis = match ctx.node.attr_int("axis")? {
        Some(a) => a,
        None if ctx.opset < 4 => 1,
        None => {
            return Err(ctx.err(
                "Concat has no 'axis' attribute",
                "Give the 'axis' attribute (required from opset 4)",
            ));
        }
    };
    if axis < 0 && ctx.opset < 11 {
        return Err(ctx.err(
            format!("axis {axis} is negative at opset {}", ctx.opset),
            "Use a non-negative axis (negative axes need opset >= 11)",
        ));
    }
    if rank == 0 {
        return Err(ctx.err(
            "input #0 is a scalar",
            "Concat joins tensors of rank >= 1; Unsqueeze scalars first",
        ));
    }
    let axis = ctx.axis(axis, rank)?;
    for i in 0..ctx.num_inputs() {
        let r = ctx.required(i)?.shape().len();
        if r != rank {
            return Err(ctx.err(
                format!("input #{i} has rank {r} but input #0 has rank {rank}"),
                "Give inputs of one rank",
            ));
        }
    }
    Ok(vec![
        with_array!(first, a => concat_typed(ctx, a, first, axis)?),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use half::bf16;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn axes_and_empty() {
        let a = iota(&[2, 2]);
        let b = f32s(&[2, 1], &[9.0, 8.0]);
        let y = run1(
            concat,
            "Concat",
            13,
            vec![("axis", a1(1))],
            &[Some(a.clone()), Some(b.clone())],
        );
        check(&y, &[2, 3], &[0.0, 1.0, 9.0, 2.0, 3.0, 8.0]);
        let y = run1(
            concat,
            "Concat",
            13,
            vec![("axis", a1(-1))],
            &[Some(a.clone()), Some(b.clone())],
        );
        assert_eq!(y.shape(), &[2, 3]);
        let y = run1(
            concat,
            "Concat",
            13,
            vec![("axis", a1(0))],
            &[Some(a.clone()), Some(a.clone())],
        );
        check(&y, &[4, 2], &[0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0]);
        let empty = f32s(&[2, 0], &[]);
        let y = run1(
            concat,
            "Concat",
            13,
            vec![("axis", a1(1))],
            &[Some(empty.clone()), Some(b.clone())],
        );
        check(&y, &[2, 1], &[9.0, 8.0]);
        let y = run1(
            concat,
            "Concat",
            13,
            vec![("axis", a1(1))],
            &[Some(empty.clone()), Some(empty)],
        );
        assert_eq!(y.shape(), &[2, 0]);
        // Opset 1: axis defaults to 1.
        let y = run1(concat, "Concat", 1, vec![], &[Some(a.clone()), Some(b)]);
        assert_eq!(y.shape(), &[2, 3]);
        let y = run1(concat, "Concat", 13, vec![("axis", a1(0))], &[Some(a)]);
        assert_eq!(y.shape(), &[2, 2]);
    }

    #[test]
    fn other_types() {
        let a = Value::BF16(ArrayD::from_shape_vec(IxDyn(&[1]), vec![bf16::ONE]).unwrap());
        let y = run1(
            concat,
            "Concat",
            13,
            vec![("axis", a1(0))],
            &[Some(a.clone()), Some(a)],
        );
        check(&y, &[2], &[1.0, 1.0]);
        let b = Value::Bool(ArrayD::from_shape_vec(IxDyn(&[1]), vec![true]).unwrap());
        let c = Value::Bool(ArrayD::from_shape_vec(IxDyn(&[2]), vec![false, true]).unwrap());
        let y = run1(
            concat,
            "Concat",
            13,
            vec![("axis", a1(0))],
            &[Some(b), Some(c)],
        );
        check(&y, &[3], &[1.0, 0.0, 1.0]);
    }

    #[test]
    fn errors() {
        let a = iota(&[2, 2]);
        let e = run_err(concat, "Concat", 13, vec![], &[Some(a.clone())]);
        assert!(e.contains("'axis'"), "{e}");
        let e = run_err(
            concat,
            "Concat",
            13,
            vec![("axis", a1(2))],
            &[Some(a.clone())],
        );
        assert!(e.contains("out of range"), "{e}");
        let e = run_err(
            concat,
            "Concat",
            4,
            vec![("axis", a1(-1))],
            &[Some(a.clone())],
        );
        assert!(e.contains("opset >= 11"), "{e}");
        let i = i64s(&[2, 2], &[1, 2, 3, 4]);
        let e = run_err(
            concat,
            "Concat",
            13,
            vec![("axis", a1(0))],
            &[Some(a.clone()), Some(i)],
        );
        assert!(e.contains("element type"), "{e}");
        let c = iota(&[3, 3]);
        let e = run_err(
            concat,
            "Concat",
            13,
            vec![("axis", a1(0))],
            &[Some(a.clone()), Some(c)],
        );
        assert!(e.contains("cannot concatenate"), "{e}");
        let d = iota(&[4]);
        let e = run_err(
            concat,
            "Concat",
            13,
            vec![("axis", a1(0))],
            &[Some(a.clone()), Some(d)],
        );
        assert!(e.contains("rank"), "{e}");
        let s = f32s(&[], &[1.0]);
        let e = run_err(concat, "Concat", 13, vec![("axis", a1(0))], &[Some(s)]);
        assert!(e.contains("scalar"), "{e}");
        let e = run_err(
            concat,
            "Concat",
            13,
            vec![("axis", a1(0))],
            &[Some(a), None],
        );
        assert!(e.contains("missing"), "{e}");
    }
}
