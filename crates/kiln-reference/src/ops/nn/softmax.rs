//! Softmax and LogSoftmax.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Softmax.html>,
//! <https://onnx.ai/onnx/operators/onnx__LogSoftmax.html>.
//!
//! Opset history (both ops):
//! - 1, 11: the input is coerced to 2-D `[prod(shape[..axis]), prod(shape[axis..])]` and the
//!   op runs along the second axis; `axis` defaults to 1 (11 allows negative axes);
//! - 13: the op runs along the single axis `axis`, default -1; bfloat16 allowed.
//!
//! Numerically stable: the maximum of each slice is subtracted before exponentiating.

use ndarray::{ArrayD, Axis, IxDyn};

use super::common::{Real, float_op, real_input};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

fn compute<T: Real>(ctx: &OpCtx<'_>, log: bool) -> Result<Vec<Value>> {
    let x = real_input::<T>(ctx, 0)?;
    let shape = x.shape().to_vec();
    let rank = shape.len();
    let (mut work, ax): (ArrayD<T>, usize) = if ctx.opset < 13 {
        // The spec allows axis == rank for the coerced form (an empty trailing product).
        let raw = ctx.attr_int("axis", 1)?;
        let r = rank as i64;
        if raw < -r || raw > r {
            return Err(ctx.err(
                format!("axis {raw} is out of range for rank {rank}"),
                format!("Use an axis in [{}, {r}]", -r),
            ));
        }
        let a = if raw < 0 { raw + r } else { raw } as usize;
        let rows: usize = shape[..a].iter().product();
        let cols: usize = shape[a..].iter().product();
        let flat = x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[rows, cols]))
            .map_err(|e| ctx.err(format!("reshape: {e}"), "-"))?;
        (flat, 1)
    } else {
        if rank == 0 {
            return Err(ctx.err("input is a scalar", "Give a tensor of rank >= 1"));
        }
        let a = ctx.axis(ctx.attr_int("axis", -1)?, rank)?;
        (x.into_owned(), a)
    };
    for mut lane in work.lanes_mut(Axis(ax)) {
        let max = lane
            .iter()
            .copied()
            .fold(T::NEG_INFINITY, |m, v| if v > m { v } else { m });
        // An all -inf lane keeps max -inf; NaN propagates through the sum.
        let shift = if max == T::NEG_INFINITY { T::ZERO } else { max };
        let mut sum = T::ZERO;
        for v in lane.iter() {
            sum += (*v - shift).exp();
        }
        if log {
            let ls = sum.ln();
            lane.mapv_inplace(|v| v - shift - ls);
        } else {
            lane.mapv_inplace(|v| (v - shift).exp() / sum);
        }
    }
    let out = work
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| ctx.err(format!("reshape: {e}"), "-"))?;
    Ok(vec![T::wrap(out)])
}

fn softmax_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    compute::<T>(ctx, false)
}

fn log_softmax_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    compute::<T>(ctx, true)
}

pub fn softmax(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, softmax_t::<f32>, softmax_t::<f64>)
}

pub fn log_softmax(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, log_softmax_t::<f32>, log_softmax_t::<f64>)
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use kiln_onnx::AttrValue;

    // np.exp(x - x.max()) / sum for [0, 1, 2]
    const SM3: [f64; 3] = [0.09003057317038046, 0.24472847105479764, 0.6652409557748219];

    #[test]
    fn softmax_last_axis_13() {
        let x = f32s(&[2, 3], &[0., 1., 2., 1000., 1001., 1002.]);
        let y = run(softmax, &node("Softmax", &[]), 13, &[Some(&x)]).unwrap();
        let want: Vec<f64> = SM3.iter().chain(SM3.iter()).copied().collect();
        close(&y[0], &[2, 3], &want, 1e-6);
        let y = run(log_softmax, &node("LogSoftmax", &[]), 13, &[Some(&x)]).unwrap();
        let want: Vec<f64> = want.iter().map(|v| v.ln()).collect();
        close(&y[0], &[2, 3], &want, 1e-6);
    }

    #[test]
    fn softmax_axis0_13_and_f64() {
        let x = f64s(&[3, 1], &[0., 1., 2.]);
        let n = node("Softmax", &[("axis", AttrValue::Int(0))]);
        let y = run(softmax, &n, 13, &[Some(&x)]).unwrap();
        assert!(matches!(y[0], Value::F64(_)));
        close(&y[0], &[3, 1], &SM3, 1e-12);
        let n = node("Softmax", &[("axis", AttrValue::Int(2))]);
        assert!(run(softmax, &n, 13, &[Some(&x)]).is_err());
    }

    #[test]
    fn softmax_coerced_2d_before_13() {
        // Opset 11, default axis 1 on [1, 3, 1]: one softmax over all 3 elements... of 2 rows.
        let x = f32s(&[2, 1, 3], &[0., 1., 2., 0., 0., 0.]);
        let y = run(softmax, &node("Softmax", &[]), 11, &[Some(&x)]).unwrap();
        let third = 1.0 / 3.0;
        let want = [SM3[0], SM3[1], SM3[2], third, third, third];
        close(&y[0], &[2, 1, 3], &want, 1e-6);
        // axis 0: one softmax over all 6 elements. np: e = exp([0,1,2,0,0,0]); e / e.sum()
        let n = node("LogSoftmax", &[("axis", AttrValue::Int(0))]);
        let y = run(log_softmax, &n, 1, &[Some(&x)]).unwrap();
        let e: Vec<f64> = [0., 1., 2., 0., 0., 0.]
            .iter()
            .map(|v: &f64| v.exp())
            .collect();
        let s: f64 = e.iter().sum();
        let want: Vec<f64> = e.iter().map(|v| (v / s).ln()).collect();
        close(&y[0], &[2, 1, 3], &want, 1e-6);
        // Opset 13 default axis -1 on the same input differs: per last axis.
        let y = run(softmax, &node("Softmax", &[]), 13, &[Some(&x)]).unwrap();
        close(
            &y[0],
            &[2, 1, 3],
            &[SM3[0], SM3[1], SM3[2], third, third, third],
            1e-6,
        );
    }

    #[test]
    fn softmax_f16_and_errors() {
        let x = Value::F16(
            ndarray::ArrayD::from_shape_vec(
                IxDyn(&[3]),
                [0.0f32, 1., 2.]
                    .iter()
                    .map(|&v| half::f16::from_f32(v))
                    .collect(),
            )
            .unwrap(),
        );
        let y = run(softmax, &node("Softmax", &[]), 13, &[Some(&x)]).unwrap();
        assert!(matches!(y[0], Value::F16(_)));
        close(&y[0], &[3], &SM3, 1e-3);
        let i = Value::I32(ndarray::ArrayD::zeros(IxDyn(&[3])));
        assert!(run(softmax, &node("Softmax", &[]), 13, &[Some(&i)]).is_err());
        let inf = f32s(&[2], &[f32::NEG_INFINITY, 0.0]);
        let y = run(softmax, &node("Softmax", &[]), 13, &[Some(&inf)]).unwrap();
        close(&y[0], &[2], &[0.0, 1.0], 0.0);
    }
}
