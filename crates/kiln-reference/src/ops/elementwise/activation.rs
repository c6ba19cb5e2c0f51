//! Activations: one float tensor in, one of the same type and shape out.
//!
//! f32 and f64 are computed in their own precision, f16 and bf16 in f32 (rounded back).
//! Float attributes are ONNX FLOATs (f32), widened for f64 inputs.
//!
//! - Relu <https://onnx.ai/onnx/operators/onnx__Relu.html>: `max(0, x)` (NaN stays NaN).
//!   1, 6 (drops `consumed_inputs`), 13 (bf16), 14 (int8/16/32/64 too).
//! - LeakyRelu <https://onnx.ai/onnx/operators/onnx__LeakyRelu.html>: `x` if `x > 0` else
//!   `alpha * x`, `alpha` = 0.01. 1, 6, 16 (bf16).
//! - Sigmoid <https://onnx.ai/onnx/operators/onnx__Sigmoid.html>: `1 / (1 + exp(-x))`,
//!   computed without overflow on both sides. 1, 6, 13 (bf16).
//! - HardSigmoid <https://onnx.ai/onnx/operators/onnx__HardSigmoid.html>:
//!   `max(0, min(1, alpha * x + beta))`, `alpha` = 0.2, `beta` = 0.5. 1, 6, 22 (bf16).
//! - HardSwish <https://onnx.ai/onnx/operators/onnx__HardSwish.html>: `x * max(0, min(1, x/6 +
//!   0.5))`. 14, 22 (bf16).
//! - Tanh <https://onnx.ai/onnx/operators/onnx__Tanh.html>: 1, 6, 13 (bf16).
//! - Gelu <https://onnx.ai/onnx/operators/onnx__Gelu.html>: `0.5 x (1 + erf(x / sqrt 2))`, or with
//!   `approximate` = "tanh" `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`. 20.
//! - Softplus <https://onnx.ai/onnx/operators/onnx__Softplus.html>: `ln(1 + exp(x))`, computed
//!   as `max(x, 0) + ln1p(exp(-|x|))` (numpy's `logaddexp(0, x)`). 1, 22 (bf16).
//! - Softsign <https://onnx.ai/onnx/operators/onnx__Softsign.html>: `x / (1 + |x|)`. 1, 22.
//! - Elu <https://onnx.ai/onnx/operators/onnx__Elu.html>: `x` if `x > 0` else
//!   `alpha * (exp(x) - 1)`, `alpha` = 1. 1, 6, 22 (bf16).
//! - Selu <https://onnx.ai/onnx/operators/onnx__Selu.html>: `gamma * (x if x > 0 else
//!   alpha * (exp(x) - 1))`; defaults `alpha` = 1.67326319217681884765625, `gamma` =
//!   1.05070102214813232421875 (opset 1 had 1.6732 and 1.0507). 1, 6, 22 (bf16).
//! - Celu <https://onnx.ai/onnx/operators/onnx__Celu.html>: `max(0, x) + min(0, alpha *
//!   (exp(x / alpha) - 1))`, `alpha` = 1. 12, 28 (more float types).
//! - ThresholdedRelu <https://onnx.ai/onnx/operators/onnx__ThresholdedRelu.html>: `x` if
//!   `x > alpha` else 0, `alpha` = 1. 10, 22 (bf16).
//! - Mish <https://onnx.ai/onnx/operators/onnx__Mish.html>: `x * tanh(softplus(x))`. 18, 22.

use super::float_unary;
use super::num::{Arith, Float};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

pub(crate) fn relu(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let y = numeric!(x, (a, wrap) => wrap(a.mapv(|v| v.max_nan(Arith::ZERO))),
        other => return Err(ctx.bad_dtype(0, other)));
    Ok(vec![y])
}

pub(crate) fn leaky_relu(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let alpha = f64::from(ctx.attr_float("alpha", 0.01)?);
    Ok(vec![float_unary!(ctx, |x: T| if x > T::c(0.0) {
        x
    } else {
        T::c(alpha) * x
    })?])
}

fn sigmoid_of<T: Float>(x: T) -> T {
    let one = T::c(1.0);
    if x > T::c(0.0) {
        one / (one + (-x).exp())
    } else {
        let e = x.exp();
        e / (one + e)
    }
}

pub(crate) fn sigmoid(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![float_unary!(ctx, |x: T| sigmoid_of(x))?])
}

fn hard_sigmoid_of<T: Float>(x: T, alpha: f64, beta: f64) -> T {
    (T::c(alpha) * x + T::c(beta))
        .min_nan(T::c(1.0))
        .max_nan(T::c(0.0))
}

pub(crate) fn hard_sigmoid(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let alpha = f64::from(ctx.attr_float("alpha", 0.2)?);
    let beta = f64::from(ctx.attr_float("beta", 0.5)?);
    Ok(vec![float_unary!(ctx, |x: T| hard_sigmoid_of(
        x, alpha, beta
    ))?])
}

pub(crate) fn hard_swish(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![float_unary!(ctx, |x: T| x * hard_sigmoid_of(
        x,
        1.0 / 6.0,
        0.5
    ))?])
}

pub(crate) fn tanh(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![float_unary!(ctx, |x: T| x.tanh())?])
}

pub(crate) fn gelu(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let approximate = ctx.attr_string("approximate", "none")?;
    let y = match approximate.as_str() {
        "none" => float_unary!(ctx, |x: T| T::c(0.5)
            * x
            * (T::c(1.0) + (x / T::c(std::f64::consts::SQRT_2)).error_fn()))?,
        "tanh" => float_unary!(ctx, |x: T| {
            let k = T::c((2.0 / std::f64::consts::PI).sqrt());
            let inner = k * (x + T::c(0.044715) * x * x * x);
            T::c(0.5) * x * (T::c(1.0) + inner.tanh())
        })?,
        other => {
            return Err(ctx.err(
                format!("attribute approximate = '{other}' is not one of 'none', 'tanh'"),
                "Set approximate to 'none' or 'tanh'",
            ));
        }
    };
    Ok(vec![y])
}

fn softplus_of<T: Float>(x: T) -> T {
    if x.is_nan() {
        return x;
    }
    let zero = T::c(0.0);
    let m = if x > zero { x } else { zero };
    m + (-x.abs()).exp().ln_1p()
}

pub(crate) fn softplus(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![float_unary!(ctx, |x: T| softplus_of(x))?])
}

pub(crate) fn softsign(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![float_unary!(ctx, |x: T| x / (T::c(1.0) + x.abs()))?])
}

pub(crate) fn elu(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let alpha = f64::from(ctx.attr_float("alpha", 1.0)?);
    Ok(vec![float_unary!(ctx, |x: T| if x > T::c(0.0) {
        x
    } else {
        T::c(alpha) * x.exp_m1()
    })?])
}

pub(crate) fn selu(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let (da, dg) = if ctx.opset < 6 {
        (1.6732, 1.0507)
    } else {
        (1.673_263_2, 1.050_701)
    };
    let alpha = f64::from(ctx.attr_float("alpha", da)?);
    let gamma = f64::from(ctx.attr_float("gamma", dg)?);
    Ok(vec![float_unary!(ctx, |x: T| T::c(gamma)
        * if x > T::c(0.0) {
            x
        } else {
            T::c(alpha) * x.exp_m1()
        })?])
}

pub(crate) fn celu(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let alpha = f64::from(ctx.attr_float("alpha", 1.0)?);
    Ok(vec![float_unary!(ctx, |x: T| {
        let zero = T::c(0.0);
        let a = T::c(alpha);
        let neg = a * (x / a).exp_m1();
        x.max_nan(zero) + neg.min_nan(zero)
    })?])
}

pub(crate) fn thresholded_relu(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let alpha = f64::from(ctx.attr_float("alpha", 1.0)?);
    Ok(vec![float_unary!(ctx, |x: T| if x > T::c(alpha) {
        x
    } else {
        T::c(0.0)
    })?])
}

pub(crate) fn mish(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    Ok(vec![float_unary!(ctx, |x: T| x * softplus_of(x).tanh())?])
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    const X: [f32; 7] = [-3.0, -1.0, -0.25, 0.0, 0.5, 2.0, 8.0];

    fn check(f: crate::ops::OpFn, op: &str, attrs: Vec<kiln_onnx::Attribute>, want: &[f32]) {
        let y = run(f, op, 22, attrs, &[&f32s(&[7], &X)]).unwrap();
        close(&y, &f32s(&[7], want), 2e-6);
    }

    // Expected values: numpy/math in f64 (python one-liners), rounded to f32.
    #[test]
    fn f32_values() {
        check(
            sigmoid,
            "Sigmoid",
            vec![],
            &[
                0.047425874,
                0.26894143,
                0.4378235,
                0.5,
                0.62245935,
                0.8807971,
                0.99966466,
            ],
        );
        check(
            hard_sigmoid,
            "HardSigmoid",
            vec![],
            &[0.0, 0.3, 0.45, 0.5, 0.6, 0.9, 1.0],
        );
        check(
            hard_sigmoid,
            "HardSigmoid",
            vec![af("alpha", 0.5), af("beta", 0.0)],
            &[0.0, 0.0, 0.0, 0.0, 0.25, 1.0, 1.0],
        );
        check(
            hard_swish,
            "HardSwish",
            vec![],
            &[
                0.0,
                -0.33333331,
                -0.114583336,
                0.0,
                0.29166666,
                1.6666667,
                8.0,
            ],
        );
        check(
            tanh,
            "Tanh",
            vec![],
            &[
                -0.9950548,
                -0.7615942,
                -0.24491866,
                0.0,
                0.4621172,
                0.9640276,
                0.99999976,
            ],
        );
        check(
            gelu,
            "Gelu",
            vec![],
            &[
                -0.004049694,
                -0.15865526,
                -0.10032342,
                0.0,
                0.34573123,
                1.9544997,
                8.0,
            ],
        );
        check(
            gelu,
            "Gelu",
            vec![astr("approximate", "tanh")],
            &[
                -0.003637392,
                -0.15880801,
                -0.100324646,
                0.0,
                0.345714,
                1.9545977,
                8.0,
            ],
        );
        check(
            softplus,
            "Softplus",
            vec![],
            &[
                0.048587352,
                0.3132617,
                0.5759394,
                0.6931472,
                0.974077,
                2.126928,
                8.000336,
            ],
        );
        check(
            mish,
            "Mish",
            vec![],
            &[
                -0.14564747,
                -0.30340147,
                -0.12992696,
                0.0,
                0.3752452,
                1.943959,
                7.999998,
            ],
        );
        check(
            elu,
            "Elu",
            vec![af("alpha", 0.5)],
            &[-0.47510648, -0.31606028, -0.11059961, 0.0, 0.5, 2.0, 8.0],
        );
        check(
            selu,
            "Selu",
            vec![],
            &[
                -1.6705687, -1.1113307, -0.3888902, 0.0, 0.5253505, 2.101402, 8.405608,
            ],
        );
        check(
            celu,
            "Celu",
            vec![af("alpha", 2.0)],
            &[-1.5537397, -0.78693867, -0.2350062, 0.0, 0.5, 2.0, 8.0],
        );
        check(
            softsign,
            "Softsign",
            vec![],
            &[-0.75, -0.5, -0.2, 0.0, 0.33333334, 0.6666667, 0.8888889],
        );
        check(
            leaky_relu,
            "LeakyRelu",
            vec![],
            &[-0.03, -0.01, -0.0025, 0.0, 0.5, 2.0, 8.0],
        );
        check(
            leaky_relu,
            "LeakyRelu",
            vec![af("alpha", 0.5)],
            &[-1.5, -0.5, -0.125, 0.0, 0.5, 2.0, 8.0],
        );
        check(
            thresholded_relu,
            "ThresholdedRelu",
            vec![],
            &[0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 8.0],
        );
        check(
            thresholded_relu,
            "ThresholdedRelu",
            vec![af("alpha", 0.25)],
            &[0.0, 0.0, 0.0, 0.0, 0.5, 2.0, 8.0],
        );
        check(relu, "Relu", vec![], &[0.0, 0.0, 0.0, 0.0, 0.5, 2.0, 8.0]);
    }

    #[test]
    fn relu_types_and_nan() {
        let y = run(relu, "Relu", 14, vec![], &[&i32s(&[3], &[-4, 0, 7])]).unwrap();
        assert_eq!(y, i32s(&[3], &[0, 0, 7]));
        let y = run(relu, "Relu", 14, vec![], &[&f32s(&[2], &[f32::NAN, -1.0])]).unwrap();
        close(&y, &f32s(&[2], &[f32::NAN, 0.0]), 0.0);
        assert!(run(relu, "Relu", 14, vec![], &[&bools(&[1], &[true])]).is_err());
    }

    #[test]
    fn other_precisions() {
        // f64: math.erf-based gelu in f64 (python).
        let y = run(gelu, "Gelu", 20, vec![], &[&f64s(&[2], &[-1.0, 0.5])]).unwrap();
        close(
            &y,
            &f64s(&[2], &[-0.15865525393145707, 0.34573123063700656]),
            1e-15,
        );
        // 1/(1+exp(-x)) in f64.
        let y = run(
            sigmoid,
            "Sigmoid",
            13,
            vec![],
            &[&f64s(&[2], &[-800.0, 0.5])],
        )
        .unwrap();
        close(&y, &f64s(&[2], &[0.0, 0.6224593312018546]), 1e-15);
        // f16: np.float16(np.tanh(np.float32(np.float16(0.3)))) = 0.2913
        let y = run(tanh, "Tanh", 13, vec![], &[&f16s(&[1], &[0.3])]).unwrap();
        assert_eq!(y, f16s(&[1], &[0.2913]));
        let y = run(
            softplus,
            "Softplus",
            22,
            vec![],
            &[&bf16s(&[2], &[100.0, -100.0])],
        )
        .unwrap();
        close(&y, &bf16s(&[2], &[100.0, 0.0]), 1e-6);
    }

    #[test]
    fn errors() {
        let e = run(
            gelu,
            "Gelu",
            20,
            vec![astr("approximate", "erf")],
            &[&f32s(&[1], &[1.0])],
        );
        assert!(e.unwrap_err().to_string().contains("approximate"));
        let e = run(sigmoid, "Sigmoid", 13, vec![], &[&i64s(&[1], &[1])]);
        assert!(e.unwrap_err().to_string().contains("i64"));
        let e = run_n(sigmoid, "Sigmoid", 13, vec![], &[None], 1);
        assert!(e.unwrap_err().to_string().contains("missing"));
    }
}
