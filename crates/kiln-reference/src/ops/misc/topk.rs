//! TopK: the k largest (or smallest) elements along an axis, and their indices.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__TopK.html>.
//!
//! Opset history: 1 (`k` attribute, `axis` default -1, largest only); 10 (`k` becomes an int64
//! input of shape [1]); 11 (`largest` default 1 and `sorted` default 1 attributes, negative
//! axis). Ties keep the lower index first. Outputs: values (input type) and indices (int64).
//! With `sorted` = 0 kiln still returns the elements sorted (an allowed order).

use ndarray::{ArrayD, Axis};

use super::common::{from_f64_like, to_f64_array};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

pub fn top_k(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let k = if ctx.opset >= 10 {
        let ks = ctx.input_i64s(1)?;
        match ks[..] {
            [k] => k,
            _ => {
                return Err(ctx.err(
                    format!("k input holds {} values", ks.len()),
                    "Give k as a one-element int64 tensor",
                ));
            }
        }
    } else {
        ctx.node.attr_int("k")?.ok_or_else(|| {
            ctx.err(
                "attribute 'k' is missing",
                "Set k (before opset 10 it is an attribute)",
            )
        })?
    };
    let rank = x.shape().len();
    let axis = ctx.axis(ctx.attr_int("axis", -1)?, rank)?;
    let largest = ctx.opset < 11 || ctx.attr_int("largest", 1)? != 0;
    let n = x.shape()[axis];
    let k = usize::try_from(k).ok().filter(|&k| k <= n).ok_or_else(|| {
        ctx.err(
            format!("k = {k} is outside [0, {n}] (the size of axis {axis})"),
            "Give k between 0 and the axis size",
        )
    })?;
    let a = to_f64_array(x);
    let mut out_shape = x.shape().to_vec();
    out_shape[axis] = k;
    let mut vals = ArrayD::<f64>::zeros(out_shape.clone());
    let mut idx = ArrayD::<i64>::zeros(out_shape);
    for ((lane, mut vl), mut il) in a
        .lanes(Axis(axis))
        .into_iter()
        .zip(vals.lanes_mut(Axis(axis)))
        .zip(idx.lanes_mut(Axis(axis)))
    {
        let mut order: Vec<usize> = (0..lane.len()).collect();
        // Stable sort: ties keep the lower index first. NaN sorts as the largest value.
        order.sort_by(|&i, &j| {
            let (a, b) = (lane[i], lane[j]);
            let ord = a
                .partial_cmp(&b)
                .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()));
            if largest { ord.reverse() } else { ord }
        });
        for (slot, &i) in order.iter().take(k).enumerate() {
            vl[slot] = lane[i];
            il[slot] = i as i64;
        }
    }
    Ok(vec![from_f64_like(x, vals), Value::I64(idx)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::misc::test_util::{node, run_op};

    #[test]
    fn largest_and_smallest_with_ties() {
        let x = Value::F32(
            ArrayD::from_shape_vec(vec![2, 4], vec![1., 3., 3., 2., 9., 8., 7., 9.]).unwrap(),
        );
        let k = Value::I64(ArrayD::from_shape_vec(vec![1], vec![2]).unwrap());
        let out = run_op(top_k, &node("TopK", &[]), 11, &[Some(&x), Some(&k)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![3., 3., 9., 9.]);
        assert_eq!(out[1].to_f64_vec(), vec![1., 2., 0., 3.]);
        let n = node("TopK", &[("largest", 0i64.into())]);
        let out = run_op(top_k, &n, 11, &[Some(&x), Some(&k)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![1., 2., 7., 8.]);
        assert_eq!(out[1].to_f64_vec(), vec![0., 3., 2., 1.]);
    }

    #[test]
    fn k_attribute_before_opset_10_and_bad_k() {
        let x = Value::F32(ArrayD::from_shape_vec(vec![3], vec![1., 3., 2.]).unwrap());
        let out = run_op(top_k, &node("TopK", &[("k", 1i64.into())]), 1, &[Some(&x)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![3.]);
        let k = Value::I64(ArrayD::from_shape_vec(vec![1], vec![4]).unwrap());
        assert!(run_op(top_k, &node("TopK", &[]), 11, &[Some(&x), Some(&k)]).is_err());
    }
}
