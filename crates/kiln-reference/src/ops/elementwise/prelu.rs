//! PRelu <https://onnx.ai/onnx/operators/onnx__PRelu.html>: `x` where `x > 0`, else
//! `slope * x`; `slope` broadcasts unidirectionally to X's shape (the output has X's shape).
//!
//! Opset history: 1 (`consumed_inputs`), 6, 7 (unidirectional broadcasting), 9 (int32/int64,
//! uint32/uint64), 16 (bf16). Integers wrap; f16/bf16 are computed in f32.

use super::broadcast::{broadcast_shapes, zip2};
use super::num::Arith;
use super::type_mismatch;
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

pub(crate) fn prelu(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let (x, slope) = (ctx.required(0)?, ctx.required(1)?);
    // Before opset 7 a 1-D slope of C values is per channel (axis 1).
    let per_channel;
    let slope = if ctx.opset < 7
        && slope.shape().len() == 1
        && x.shape().len() >= 2
        && slope.shape()[0] == x.shape()[1]
        && slope.shape()[0] != 1
    {
        let mut s = vec![slope.shape()[0]];
        s.resize(x.shape().len() - 1, 1);
        per_channel = crate::map_array!(slope, a => ndarray::ArrayD::from_shape_vec(
            ndarray::IxDyn(&s),
            a.iter().cloned().collect(),
        )
        .map_err(|e| ctx.err(format!("slope: {e}"), "Check the slope's shape"))?);
        &per_channel
    } else {
        slope
    };
    let shape = broadcast_shapes(ctx, &[x.shape(), slope.shape()])?;
    if shape != x.shape() {
        return Err(ctx.err(
            format!(
                "slope of shape {:?} does not broadcast unidirectionally to X's shape {:?}",
                slope.shape(),
                x.shape()
            ),
            "Give a slope whose shape broadcasts to X's (e.g. [C, 1, 1] for NCHW)",
        ));
    }
    let y = numeric_zip!(x, slope,
    (a, s, wrap) => wrap(zip2(ctx, a, s, |v, k| if v > Arith::ZERO { v } else { v.mul(k) })?),
    _ => return Err(if x.dtype() == slope.dtype() {
        ctx.bad_dtype(0, x)
    } else {
        type_mismatch(ctx, 0, x, 1, slope)
    }));
    Ok(vec![y])
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    // Expected values by hand.
    #[test]
    fn values() {
        let x = f32s(&[2, 3], &[-1.0, 2.0, -3.0, 4.0, -5.0, 0.0]);
        let s = f32s(&[3], &[0.1, 0.2, 0.3]);
        let y = run(prelu, "PRelu", 16, vec![], &[&x, &s]).unwrap();
        close(
            &y,
            &f32s(&[2, 3], &[-0.1, 2.0, -0.90000004, 4.0, -1.0, 0.0]),
            1e-7,
        );
        let s = f32s(&[2, 1], &[0.5, 2.0]);
        let y = run(prelu, "PRelu", 9, vec![], &[&x, &s]).unwrap();
        assert_eq!(y, f32s(&[2, 3], &[-0.5, 2.0, -1.5, 4.0, -10.0, 0.0]));
        let y = run(
            prelu,
            "PRelu",
            9,
            vec![],
            &[&i64s(&[3], &[-4, 0, 5]), &i64s(&[1], &[3])],
        );
        assert_eq!(y.unwrap(), i64s(&[3], &[-12, 0, 5]));
        let y = run(
            prelu,
            "PRelu",
            16,
            vec![],
            &[&f16s(&[2], &[-2.0, 1.0]), &f16s(&[], &[0.25])],
        );
        assert_eq!(y.unwrap(), f16s(&[2], &[-0.5, 1.0]));
    }

    #[test]
    fn errors() {
        let x = f32s(&[3], &[1.0, 2.0, 3.0]);
        let e = run(prelu, "PRelu", 16, vec![], &[&x, &f32s(&[2, 3], &[0.0; 6])]);
        assert!(e.unwrap_err().to_string().contains("unidirectionally"));
        let e = run(prelu, "PRelu", 16, vec![], &[&x, &f32s(&[2], &[0.0; 2])]);
        assert!(e.unwrap_err().to_string().contains("broadcast"));
        let e = run(prelu, "PRelu", 16, vec![], &[&x, &f64s(&[1], &[0.0])]);
        assert!(e.unwrap_err().to_string().contains("same element type"));
    }
}
