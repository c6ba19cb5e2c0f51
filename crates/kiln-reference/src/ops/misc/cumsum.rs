//! CumSum: cumulative sum along an axis.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__CumSum.html>.
//!
//! Opset history: 11 (axis as a rank-0 or rank-1 int32/int64 input; `exclusive` and `reverse`
//! attributes, default 0); 14 adds float16 and bfloat16.

use ndarray::Axis;

use super::common::{from_f64_like, to_f64_array};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

pub fn cum_sum(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let axes = ctx.input_i64s(1)?;
    let [axis] = axes[..] else {
        return Err(ctx.err(
            format!("axis input holds {} values", axes.len()),
            "Give exactly one axis",
        ));
    };
    let rank = x.shape().len();
    let axis = ctx.axis(axis, rank)?;
    let exclusive = ctx.attr_int("exclusive", 0)? != 0;
    let reverse = ctx.attr_int("reverse", 0)? != 0;
    let mut a = to_f64_array(x);
    for mut lane in a.lanes_mut(Axis(axis)) {
        let n = lane.len();
        let mut acc = 0.0;
        for k in 0..n {
            let i = if reverse { n - 1 - k } else { k };
            let v = lane[i];
            if exclusive {
                lane[i] = acc;
                acc += v;
            } else {
                acc += v;
                lane[i] = acc;
            }
        }
    }
    Ok(vec![from_f64_like(x, a)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::misc::test_util::{node, run_op};
    use ndarray::ArrayD;

    #[test]
    fn variants() {
        let x = Value::F64(ArrayD::from_shape_vec(vec![5], vec![1., 2., 3., 4., 5.]).unwrap());
        let ax = Value::I32(ArrayD::from_shape_vec(vec![], vec![0]).unwrap());
        let cases = [
            (0, 0, vec![1., 3., 6., 10., 15.]),
            (1, 0, vec![0., 1., 3., 6., 10.]),
            (0, 1, vec![15., 14., 12., 9., 5.]),
            (1, 1, vec![14., 12., 9., 5., 0.]),
        ];
        for (exclusive, reverse, want) in cases {
            let n = node(
                "CumSum",
                &[
                    ("exclusive", (exclusive as i64).into()),
                    ("reverse", (reverse as i64).into()),
                ],
            );
            let out = run_op(cum_sum, &n, 14, &[Some(&x), Some(&ax)]).unwrap();
            assert_eq!(
                out[0].to_f64_vec(),
                want,
                "exclusive {exclusive} reverse {reverse}"
            );
        }
    }

    #[test]
    fn along_axis_1_of_a_matrix() {
        let x = Value::I64(ArrayD::from_shape_vec(vec![2, 3], vec![1, 2, 3, 4, 5, 6]).unwrap());
        let ax = Value::I64(ArrayD::from_shape_vec(vec![1], vec![-1]).unwrap());
        let out = run_op(cum_sum, &node("CumSum", &[]), 14, &[Some(&x), Some(&ax)]).unwrap();
        assert_eq!(
            out[0],
            Value::I64(ArrayD::from_shape_vec(vec![2, 3], vec![1, 3, 6, 4, 9, 15]).unwrap())
        );
    }
}
