//! Ops that describe their input: Shape and Size (both return int64).
//!
//! - Shape <https://onnx.ai/onnx/operators/onnx__Shape.html>: the dims as a 1-D int64
//!   tensor. Opset history: 1 introduces it; 13 widens the element types; 15 adds `start`
//!   (default 0) and `end` (default rank) to return a range of the dims (negative values
//!   count from the back; both are clamped to `[0, rank]`, an empty range gives `[]`);
//!   19, 21, 23, 24, 25 widen the element types.
//! - Size <https://onnx.ai/onnx/operators/onnx__Size.html>: the element count as an int64
//!   scalar. Opset history: 1 introduces it; 13, 19, 21, 23, 24, 25 widen the element types.

use ndarray::{ArrayD, IxDyn, arr0};

use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

fn to_i64(ctx: &OpCtx<'_>, n: usize) -> Result<i64> {
    i64::try_from(n).map_err(|_| ctx.err(format!("{n} does not fit int64"), "Use a smaller tensor"))
}

/// Shape: see the module doc.
pub(crate) fn shape(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let dims = ctx.required(0)?.shape();
    let rank = to_i64(ctx, dims.len())?;
    let (start, end) = if ctx.opset >= 15 {
        (ctx.attr_int("start", 0)?, ctx.attr_int("end", rank)?)
    } else {
        (0, rank)
    };
    let clamp = |v: i64| {
        let v = if v < 0 { v.saturating_add(rank) } else { v };
        usize::try_from(v.clamp(0, rank)).unwrap_or(0)
    };
    let (s, e) = (clamp(start), clamp(end));
    let picked = dims.get(s..e.max(s)).unwrap_or(&[]);
    let v = picked
        .iter()
        .map(|&d| to_i64(ctx, d))
        .collect::<Result<Vec<i64>>>()?;
    let n = v.len();
    let a = ArrayD::from_shape_vec(IxDyn(&[n]), v).map_err(|e| {
        ctx.err(
            format!("internal shape error: {e}"),
            "Report this with the model",
        )
    })?;
    Ok(vec![Value::I64(a)])
}

/// Size: see the module doc.
pub(crate) fn size(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let n = ctx.required(0)?.len();
    Ok(vec![Value::I64(arr0(to_i64(ctx, n)?).into_dyn())])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;

    #[test]
    fn shape_start_end() {
        let x = iota(&[2, 3, 4]);
        let y = run1(shape, "Shape", 13, vec![], &[Some(x.clone())]);
        assert_eq!(y, ints(&[2, 3, 4]));
        let cases: &[(Option<i64>, Option<i64>, &[i64])] = &[
            (Some(1), None, &[3, 4]),
            (None, Some(-1), &[2, 3]),
            (Some(-2), Some(-1), &[3]),
            (Some(-10), Some(10), &[2, 3, 4]),
            (Some(2), Some(1), &[]),
            (Some(3), None, &[]),
        ];
        for &(s, e, want) in cases {
            let mut attrs = vec![];
            if let Some(s) = s {
                attrs.push(("start", a1(s)));
            }
            if let Some(e) = e {
                attrs.push(("end", a1(e)));
            }
            let y = run1(shape, "Shape", 15, attrs, &[Some(x.clone())]);
            assert_eq!(y, ints(want), "start {s:?} end {e:?}");
        }
        // Before opset 15, start/end are not part of the op.
        let y = run1(shape, "Shape", 13, vec![("start", a1(1))], &[Some(x)]);
        assert_eq!(y, ints(&[2, 3, 4]));
        let s = f32s(&[], &[1.0]);
        let y = run1(shape, "Shape", 15, vec![], &[Some(s)]);
        assert_eq!(y, ints(&[]));
    }

    #[test]
    fn size_counts() {
        let y = run1(size, "Size", 13, vec![], &[Some(iota(&[2, 3, 4]))]);
        assert_eq!(y, i64s(&[], &[24]));
        let b = Value::Bool(ArrayD::from_shape_vec(IxDyn(&[0, 3]), vec![]).unwrap());
        let y = run1(size, "Size", 13, vec![], &[Some(b)]);
        assert_eq!(y, i64s(&[], &[0]));
        let e = run_err(size, "Size", 13, vec![], &[None]);
        assert!(e.contains("missing"), "{e}");
    }
}
