//! ArgMax and ArgMin.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__ArgMax.html>,
//! <https://onnx.ai/onnx/operators/onnx__ArgMin.html>.
//!
//! Opset history: 1 (`axis` default 0, `keepdims` default 1); 11 negative axes;
//! 12 `select_last_index` (default 0: the first index of the extreme value wins); 13 bfloat16.
//! The output is int64. A NaN counts as the extreme value (numpy's argmax/argmin).

use ndarray::{ArrayD, Axis};

use super::common::to_f64_array;
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

fn arg(ctx: &OpCtx<'_>, max: bool) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    if x.dtype() == kiln_core::DataType::Bool {
        return Err(ctx.bad_dtype(0, x));
    }
    let rank = x.shape().len();
    let axis = ctx.axis(ctx.attr_int("axis", 0)?, rank.max(1))?;
    if rank == 0 {
        return Err(ctx.err("input is a scalar", "Give a tensor of rank >= 1"));
    }
    let keepdims = ctx.attr_int("keepdims", 1)? != 0;
    let last = ctx.attr_int("select_last_index", 0)? != 0;
    if x.shape()[axis] == 0 {
        return Err(ctx.err(
            format!("axis {axis} has size 0"),
            "ArgMax/ArgMin need at least one element along the axis",
        ));
    }
    let a = to_f64_array(x);
    let better = |cand: f64, best: f64| -> bool {
        if best.is_nan() {
            return false;
        }
        if cand.is_nan() {
            return true;
        }
        if max { cand > best } else { cand < best }
    };
    let mut out: ArrayD<i64> = a.map_axis(Axis(axis), |lane| {
        let mut best_i = 0usize;
        let mut best = f64::NAN;
        for (i, &v) in lane.iter().enumerate() {
            let take = i == 0 || better(v, best) || (last && v == best && !best.is_nan());
            if take {
                best = v;
                best_i = i;
            }
        }
        best_i as i64
    });
    if keepdims {
        out.insert_axis_inplace(Axis(axis));
    }
    Ok(vec![Value::I64(out)])
}

pub fn arg_max(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    arg(ctx, true)
}

pub fn arg_min(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    arg(ctx, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::misc::test_util::{node, run_op};

    #[test]
    fn first_or_last_index_of_ties() {
        let x =
            Value::F32(ArrayD::from_shape_vec(vec![2, 3], vec![1., 5., 5., 7., 2., 7.]).unwrap());
        let n = node(
            "ArgMax",
            &[("axis", 1i64.into()), ("keepdims", 0i64.into())],
        );
        let out = run_op(arg_max, &n, 13, &[Some(&x)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![1.0, 0.0]);
        let n = node(
            "ArgMax",
            &[
                ("axis", 1i64.into()),
                ("keepdims", 0i64.into()),
                ("select_last_index", 1i64.into()),
            ],
        );
        let out = run_op(arg_max, &n, 13, &[Some(&x)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![2.0, 2.0]);
        let n = node("ArgMin", &[]);
        let out = run_op(arg_min, &n, 13, &[Some(&x)]).unwrap();
        assert_eq!(out[0].shape(), &[1, 3]);
        assert_eq!(out[0].to_f64_vec(), vec![0.0, 1.0, 0.0]);
    }

    #[test]
    fn bad_axis_is_an_error() {
        let x = Value::F32(ArrayD::from_shape_vec(vec![2], vec![1., 2.]).unwrap());
        let n = node("ArgMax", &[("axis", 3i64.into())]);
        assert!(run_op(arg_max, &n, 13, &[Some(&x)]).is_err());
    }
}
