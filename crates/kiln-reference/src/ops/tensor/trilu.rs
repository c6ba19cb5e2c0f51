//! Trilu <https://onnx.ai/onnx/operators/onnx__Trilu.html>: keeps the upper or lower
//! triangle of the last two dims (batched over the leading dims), zeroing the rest.
//!
//! Opset history: 14 introduces it, with the `upper` attribute (default 1) and the optional
//! int64 scalar input `k` (default 0), the diagonal offset. Element `(i, j)` is kept when
//! `j - i >= k` (upper) or `j - i <= k` (lower).

use ndarray::{ArrayD, Dimension};

use crate::error::Result;
use crate::map_array;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::{Elem, scalar_i64};

fn trilu_typed<T: Elem>(a: &ArrayD<T>, upper: bool, k: i64) -> ArrayD<T> {
    let r = a.ndim();
    let mut out = a.as_standard_layout().into_owned();
    for (idx, x) in out.indexed_iter_mut() {
        let s = idx.slice();
        let (i, j) = match (s.get(r.wrapping_sub(2)), s.get(r.wrapping_sub(1))) {
            (Some(&i), Some(&j)) => (i as i128, j as i128),
            _ => continue,
        };
        let diff = j - i;
        let keep = if upper {
            diff >= i128::from(k)
        } else {
            diff <= i128::from(k)
        };
        if !keep {
            *x = T::default();
        }
    }
    out
}

/// Trilu: see the module doc.
pub(crate) fn trilu(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    if x.shape().len() < 2 {
        return Err(ctx.err(
            format!("the input has rank {}", x.shape().len()),
            "Give a tensor of rank >= 2 (a matrix or a batch of matrices)",
        ));
    }
    let upper = ctx.attr_int("upper", 1)? != 0;
    let k = match ctx.input(1) {
        Some(_) => scalar_i64(ctx, 1, "k")?,
        None => 0,
    };
    Ok(vec![map_array!(x, a => trilu_typed(a, upper, k))])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use ndarray::IxDyn;

    fn tri(x: &Value, upper: i64, k: Option<i64>) -> Value {
        run1(
            trilu,
            "Trilu",
            14,
            vec![("upper", a1(upper))],
            &[Some(x.clone()), k.map(|k| i64s(&[], &[k]))],
        )
    }

    #[test]
    fn upper_lower_k() {
        // numpy: np.triu / np.tril of np.arange(1, 13).reshape(3, 4) with k.
        let x = i64s(&[3, 4], &(1..=12).collect::<Vec<_>>());
        check(
            &tri(&x, 1, None),
            &[3, 4],
            &[1., 2., 3., 4., 0., 6., 7., 8., 0., 0., 11., 12.],
        );
        check(
            &tri(&x, 1, Some(1)),
            &[3, 4],
            &[0., 2., 3., 4., 0., 0., 7., 8., 0., 0., 0., 12.],
        );
        check(
            &tri(&x, 1, Some(-1)),
            &[3, 4],
            &[1., 2., 3., 4., 5., 6., 7., 8., 0., 10., 11., 12.],
        );
        check(
            &tri(&x, 0, None),
            &[3, 4],
            &[1., 0., 0., 0., 5., 6., 0., 0., 9., 10., 11., 0.],
        );
        check(
            &tri(&x, 0, Some(2)),
            &[3, 4],
            &[1., 2., 3., 0., 5., 6., 7., 8., 9., 10., 11., 12.],
        );
        check(
            &tri(&x, 0, Some(-2)),
            &[3, 4],
            &[0., 0., 0., 0., 0., 0., 0., 0., 9., 0., 0., 0.],
        );
        check(&tri(&x, 1, Some(i64::MAX)), &[3, 4], &[0.; 12]);
        check(
            &tri(&x, 1, Some(i64::MIN)),
            &[3, 4],
            &(1..=12).map(f64::from).collect::<Vec<_>>(),
        );
        // Default upper = 1.
        let y = run1(trilu, "Trilu", 14, vec![], &[Some(x.clone())]);
        assert_eq!(y, tri(&x, 1, None));
    }

    #[test]
    fn batched_and_types() {
        let x = iota(&[2, 2, 2]);
        check(
            &tri(&x, 0, None),
            &[2, 2, 2],
            &[0., 0., 2., 3., 4., 0., 6., 7.],
        );
        let b = Value::Bool(ArrayD::from_elem(IxDyn(&[2, 2]), true));
        check(&tri(&b, 1, None), &[2, 2], &[1., 1., 0., 1.]);
        let e = f32s(&[0, 3], &[]);
        assert_eq!(tri(&e, 1, None).shape(), &[0, 3]);
        let err = run_err(trilu, "Trilu", 14, vec![], &[Some(iota(&[3]))]);
        assert!(err.contains("rank"), "{err}");
        let err = run_err(
            trilu,
            "Trilu",
            14,
            vec![],
            &[Some(iota(&[2, 2])), Some(ints(&[1, 2]))],
        );
        assert!(err.contains("'k'"), "{err}");
    }
}
