//! LRN: local response normalisation across channels.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__LRN.html>.
//!
//! Opset history: 1 (first version), 13 (bfloat16). Attributes `size` (required), `alpha`
//! (1e-4), `beta` (0.75), `bias` (1.0). For channel `c` of `X` `[N, C, D1, ...]`,
//! `square_sum` adds `x^2` over channels `c - floor((size - 1) / 2)` to
//! `c + ceil((size - 1) / 2)` (clipped to `[0, C)`), and
//! `y = x / (bias + alpha / size * square_sum) ^ beta`.

use ndarray::{Array3, IxDyn, s};

use super::common::{Real, checked_product, float_op, real_input};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

fn lrn_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = real_input::<T>(ctx, 0)?;
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(ctx.err(
            format!("X has shape {shape:?}; LRN needs [N, C, ...]"),
            "Give X of rank >= 2",
        ));
    }
    let Some(size) = ctx.node.attr_int("size")? else {
        return Err(ctx.err("attribute 'size' is missing", "Give size (it is required)"));
    };
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s >= 1)
        .ok_or_else(|| ctx.err(format!("size = {size}"), "Use size >= 1"))?;
    let alpha = T::from_f64(f64::from(ctx.attr_float("alpha", 1e-4)?));
    let beta = T::from_f64(f64::from(ctx.attr_float("beta", 0.75)?));
    let bias = T::from_f64(f64::from(ctx.attr_float("bias", 1.0)?));
    let (n, c) = (shape[0], shape[1]);
    let sp = checked_product(ctx, &shape[2..])?;
    let x3 = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, c, sp))
        .map_err(|e| ctx.err(format!("internal: {e}"), "Please report this"))?;
    let sq = x3.mapv(|v| v * v);
    let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let scale = alpha / T::from_usize(size);
    let mut y = Array3::<T>::zeros((n, c, sp));
    for ci in 0..c {
        let begin = ci.saturating_sub(lo);
        let end = ci.saturating_add(hi).saturating_add(1).min(c);
        let sum = sq.slice(s![.., begin..end, ..]).sum_axis(ndarray::Axis(1));
        let mut yc = y.slice_mut(s![.., ci, ..]);
        ndarray::Zip::from(&mut yc)
            .and(&x3.slice(s![.., ci, ..]))
            .and(&sum)
            .for_each(|o, &v, &q| *o = v / (bias + scale * q).powf(beta));
    }
    let y = y
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| ctx.err(format!("internal: {e}"), "Please report this"))?;
    Ok(vec![T::wrap(y)])
}

pub fn lrn(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, lrn_t::<f32>, lrn_t::<f64>)
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use kiln_onnx::AttrValue;

    #[test]
    fn lrn_sizes() {
        // By hand, size 3 (one neighbour each side): x / (1 + 1/3 * sum)^0.5 with alpha 1.
        let x = f64s(&[1, 3, 1], &[1., 2., 3.]);
        let n = node(
            "LRN",
            &[
                ("size", AttrValue::Int(3)),
                ("alpha", AttrValue::Float(1.0)),
                ("beta", AttrValue::Float(0.5)),
            ],
        );
        let y = run(lrn, &n, 13, &[Some(&x)]).unwrap();
        let want = [
            1. / (1. + 5. / 3.0f64).sqrt(),
            2. / (1. + 14. / 3.0f64).sqrt(),
            3. / (1. + 13. / 3.0f64).sqrt(),
        ];
        close(&y[0], &[1, 3, 1], &want, 1e-12);
        // size 2: channels c and c + 1, defaults alpha 1e-4, beta 0.75, bias 1.
        let n = node("LRN", &[("size", AttrValue::Int(2))]);
        let y = run(lrn, &n, 13, &[Some(&x)]).unwrap();
        let f = |v: f64, s: f64| v / (1.0 + 1e-4 / 2.0 * s).powf(0.75);
        close(&y[0], &[1, 3, 1], &[f(1., 5.), f(2., 13.), f(3., 9.)], 1e-7);
        assert!(run(lrn, &node("LRN", &[]), 13, &[Some(&x)]).is_err());
        let z = node("LRN", &[("size", AttrValue::Int(0))]);
        assert!(run(lrn, &z, 13, &[Some(&x)]).is_err());
    }
}
