//! The Reduce* family: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1,
//! ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__ReduceSum.html> (and `onnx__ReduceMean.html`,
//! ... one page per op).
//!
//! Opset history (the parts that change behaviour):
//! - 1: `axes` and `keepdims` (default 1) attributes; no `axes` = reduce over every axis.
//! - 11: negative axes allowed.
//! - 12 (Max/Min), 13 (the rest): more element types (int8/uint8, bfloat16).
//! - 13 (ReduceSum only) and 18 (all others): `axes` becomes an optional int64 input, and the
//!   attribute `noop_with_empty_axes` (default 0) appears: with empty axes, 1 means identity,
//!   0 means reduce over every axis.
//! - 18/20: ReduceMax/ReduceMin take bool (20); reductions over an empty set give the
//!   operation's identity (0 for sums, 1 for products, -inf / +inf for max / min).
//!
//! Values are accumulated in f64 and stored back in the input's element type (integers exact
//! below 2^53).

use ndarray::{ArrayD, Axis};

use super::common::{from_f64_like, to_f64_array};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSum,
    LogSumExp,
}

/// The reduction axes (sorted, deduplicated) or `None` for "identity" (noop with empty axes).
fn axes(ctx: &OpCtx<'_>, rank: usize, axes_input_since: i64) -> Result<Option<Vec<usize>>> {
    let raw: Option<Vec<i64>> = if ctx.opset >= axes_input_since {
        match ctx.input(1) {
            Some(_) => Some(ctx.input_i64s(1)?),
            None => None,
        }
    } else {
        ctx.attr_ints("axes")?
    };
    let noop = ctx.opset >= axes_input_since && ctx.attr_int("noop_with_empty_axes", 0)? != 0;
    let raw = match raw {
        Some(v) if !v.is_empty() => v,
        _ if noop => return Ok(None),
        _ => (0..rank as i64).collect(),
    };
    let mut out = Vec::with_capacity(raw.len());
    for a in raw {
        let ax = ctx.axis(a, rank)?;
        if out.contains(&ax) {
            return Err(ctx.err(
                format!("axis {a} is listed twice"),
                "List each reduction axis once",
            ));
        }
        out.push(ax);
    }
    out.sort_unstable();
    Ok(Some(out))
}

fn reduce(ctx: &OpCtx<'_>, kind: Kind) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let since = if ctx.node.op_type == "ReduceSum" {
        13
    } else {
        18
    };
    let rank = x.shape().len();
    let Some(axes) = axes(ctx, rank, since)? else {
        return Ok(vec![x.clone()]);
    };
    let keepdims = ctx.attr_int("keepdims", 1)? != 0;
    let mut a: ArrayD<f64> = to_f64_array(x);
    let count: usize = axes
        .iter()
        .map(|&ax| x.shape().get(ax).copied().unwrap_or(1))
        .product();
    if matches!(kind, Kind::L1) {
        a.mapv_inplace(f64::abs);
    }
    if matches!(kind, Kind::L2 | Kind::SumSquare) {
        a.mapv_inplace(|v| v * v);
    }
    // For LogSumExp, subtract the max over the reduced axes first (stable).
    let shift = if kind == Kind::LogSumExp {
        let mut m = a.clone();
        for &ax in axes.iter().rev() {
            m = m.fold_axis(Axis(ax), f64::NEG_INFINITY, |acc, &v| acc.max(v));
            m.insert_axis_inplace(Axis(ax));
        }
        let m = m.mapv(|v| if v.is_finite() { v } else { 0.0 });
        a = &a - &m;
        a.mapv_inplace(f64::exp);
        Some(m)
    } else {
        None
    };
    // Identities: what a reduction over an empty set gives (false / true for bools).
    let is_bool = x.dtype() == kiln_core::DataType::Bool;
    let (init, f): (f64, fn(f64, f64) -> f64) = match kind {
        Kind::Max if is_bool => (0.0, nan_max),
        Kind::Min if is_bool => (1.0, nan_min),
        Kind::Max => (f64::NEG_INFINITY, nan_max),
        Kind::Min => (f64::INFINITY, nan_min),
        Kind::Prod => (1.0, |acc, v| acc * v),
        _ => (0.0, |acc, v| acc + v),
    };
    for &ax in axes.iter().rev() {
        a = a.fold_axis(Axis(ax), init, |&acc, &v| f(acc, v));
        a.insert_axis_inplace(Axis(ax));
    }
    match kind {
        Kind::Mean => {
            let n = count as f64;
            a.mapv_inplace(|v| v / n);
        }
        Kind::L2 => a.mapv_inplace(f64::sqrt),
        Kind::LogSum => a.mapv_inplace(f64::ln),
        Kind::LogSumExp => {
            a.mapv_inplace(f64::ln);
            if let Some(m) = shift {
                a = &a + &m;
            }
        }
        _ => {}
    }
    if !keepdims {
        for &ax in axes.iter().rev() {
            a = a.remove_axis(Axis(ax));
        }
    }
    if !x.dtype().is_float() && matches!(kind, Kind::Mean) {
        a.mapv_inplace(f64::trunc);
    }
    Ok(vec![from_f64_like(x, a)])
}

/// Max that propagates NaN (numpy's `max`).
fn nan_max(acc: f64, v: f64) -> f64 {
    if acc.is_nan() || v.is_nan() {
        f64::NAN
    } else {
        acc.max(v)
    }
}

fn nan_min(acc: f64, v: f64) -> f64 {
    if acc.is_nan() || v.is_nan() {
        f64::NAN
    } else {
        acc.min(v)
    }
}

pub fn reduce_sum(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::Sum)
}
pub fn reduce_mean(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::Mean)
}
pub fn reduce_max(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::Max)
}
pub fn reduce_min(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::Min)
}
pub fn reduce_prod(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::Prod)
}
pub fn reduce_l1(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::L1)
}
pub fn reduce_l2(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::L2)
}
pub fn reduce_sum_square(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::SumSquare)
}
pub fn reduce_log_sum(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::LogSum)
}
pub fn reduce_log_sum_exp(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    reduce(ctx, Kind::LogSumExp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::misc::test_util::{node, run_op};

    fn x() -> Value {
        // [[1, 2, 3], [4, 5, 6]]
        Value::F32(ArrayD::from_shape_vec(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap())
    }

    fn axes(v: &[i64]) -> Value {
        Value::I64(ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).unwrap())
    }

    #[test]
    fn sum_over_axis_with_and_without_keepdims() {
        let n = node("ReduceSum", &[("keepdims", 0i64.into())]);
        let out = run_op(reduce_sum, &n, 13, &[Some(&x()), Some(&axes(&[1]))]).unwrap();
        assert_eq!(out[0].shape(), &[2]);
        assert_eq!(out[0].to_f64_vec(), vec![6.0, 15.0]);
        let n = node("ReduceSum", &[]);
        let out = run_op(reduce_sum, &n, 13, &[Some(&x()), Some(&axes(&[-2]))]).unwrap();
        assert_eq!(out[0].shape(), &[1, 3]);
        assert_eq!(out[0].to_f64_vec(), vec![5.0, 7.0, 9.0]);
    }

    #[test]
    fn attribute_axes_before_the_input_form() {
        let n = node("ReduceMean", &[("axes", vec![0i64].into())]);
        let out = run_op(reduce_mean, &n, 13, &[Some(&x())]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![2.5, 3.5, 4.5]);
    }

    #[test]
    fn empty_axes_reduce_all_or_noop() {
        let n = node("ReduceMax", &[]);
        let out = run_op(reduce_max, &n, 18, &[Some(&x())]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].to_f64_vec(), vec![6.0]);
        let n = node("ReduceMax", &[("noop_with_empty_axes", 1i64.into())]);
        let out = run_op(reduce_max, &n, 18, &[Some(&x())]).unwrap();
        assert_eq!(out[0], x());
    }

    #[test]
    fn norms_and_logs() {
        let n = node("ReduceL2", &[("keepdims", 0i64.into())]);
        let out = run_op(reduce_l2, &n, 18, &[Some(&x()), Some(&axes(&[1]))]).unwrap();
        let want = [14f64.sqrt(), 77f64.sqrt()];
        for (g, w) in out[0].to_f64_vec().iter().zip(want) {
            assert!((g - w).abs() < 1e-5);
        }
        let n = node("ReduceLogSumExp", &[("keepdims", 0i64.into())]);
        let out = run_op(reduce_log_sum_exp, &n, 18, &[Some(&x()), Some(&axes(&[1]))]).unwrap();
        let w0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((out[0].to_f64_vec()[0] - w0).abs() < 1e-5);
        let n = node("ReduceProd", &[("keepdims", 0i64.into())]);
        let out = run_op(reduce_prod, &n, 18, &[Some(&x()), Some(&axes(&[0]))]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![4.0, 10.0, 18.0]);
    }

    #[test]
    fn integer_types_stay_integer() {
        let xi = Value::I64(ArrayD::from_shape_vec(vec![2, 2], vec![1, 2, 3, 4]).unwrap());
        let n = node("ReduceSum", &[("keepdims", 0i64.into())]);
        let out = run_op(reduce_sum, &n, 13, &[Some(&xi), Some(&axes(&[0]))]).unwrap();
        assert_eq!(
            out[0],
            Value::I64(ArrayD::from_shape_vec(vec![2], vec![4, 6]).unwrap())
        );
    }

    #[test]
    fn bad_axes_are_errors() {
        let n = node("ReduceSum", &[]);
        assert!(run_op(reduce_sum, &n, 13, &[Some(&x()), Some(&axes(&[2]))]).is_err());
        assert!(run_op(reduce_sum, &n, 13, &[Some(&x()), Some(&axes(&[1, -1]))]).is_err());
        assert!(run_op(reduce_sum, &n, 13, &[None]).is_err());
    }
}
