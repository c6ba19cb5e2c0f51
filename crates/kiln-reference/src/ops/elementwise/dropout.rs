//! Dropout <https://onnx.ai/onnx/operators/onnx__Dropout.html>, for inference: the output is the
//! input, the optional `mask` output all true (kept).
//!
//! Opset history: 1 and 6 (`is_test`), 7 (`ratio` attribute, 0.5; mask of X's type), 10 (mask
//! is bool), 12 (`ratio` and `training_mode` are optional inputs 1 and 2; `seed` attribute),
//! 13 (bf16), 22 (bf16 ratio). With `training_mode` true and a non-zero ratio the spec drops
//! elements at random; the reference interpreter refuses that (its results are not
//! reproducible), as it does `is_test` = 0 before opset 7.

use kiln_core::DataType;
use ndarray::ArrayD;

use super::cast::cast_value;
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

fn random_refused(ctx: &OpCtx<'_>) -> crate::error::RefError {
    ctx.err(
        "is in training mode with a non-zero ratio, which drops elements at random",
        "Run the model for inference (training_mode false, or is_test = 1 before opset 7)",
    )
}

pub(crate) fn dropout(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    if !x.dtype().is_float() {
        return Err(ctx.bad_dtype(0, x));
    }
    if ctx.opset < 7 && ctx.attr_int("is_test", 0)? == 0 {
        return Err(random_refused(ctx));
    }
    if ctx.opset >= 12 {
        let training = match ctx.input(2) {
            None => false,
            Some(Value::Bool(t)) => t.iter().any(|&b| b),
            Some(other) => return Err(ctx.bad_dtype(2, other)),
        };
        let ratio = match ctx.input(1) {
            None => 0.5,
            Some(r) if r.dtype().is_float() => r.to_f64_vec().first().copied().unwrap_or(0.5),
            Some(other) => return Err(ctx.bad_dtype(1, other)),
        };
        if training && ratio != 0.0 {
            return Err(random_refused(ctx));
        }
    }
    let mut out = vec![x.clone()];
    if ctx.node.output(1).is_some() {
        let ones = Value::Bool(ArrayD::from_elem(x.shape(), true));
        out.push(if ctx.opset < 10 {
            cast_value(&ones, x.dtype())
        } else {
            cast_value(&ones, DataType::Bool)
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    #[test]
    fn inference() {
        let x = f32s(&[2], &[1.0, -2.0]);
        let y = run_n(
            dropout,
            "Dropout",
            7,
            vec![af("ratio", 0.3)],
            &[Some(&x)],
            2,
        )
        .unwrap();
        assert_eq!(y, vec![x.clone(), f32s(&[2], &[1.0, 1.0])]);
        let y = run_n(dropout, "Dropout", 10, vec![], &[Some(&x)], 2).unwrap();
        assert_eq!(y, vec![x.clone(), bools(&[2], &[true, true])]);
        let y = run_n(dropout, "Dropout", 13, vec![], &[Some(&x)], 1).unwrap();
        assert_eq!(y, vec![x.clone()]);
        let r = f32s(&[], &[0.5]);
        let off = bools(&[], &[false]);
        let y = run_n(
            dropout,
            "Dropout",
            13,
            vec![],
            &[Some(&x), Some(&r), Some(&off)],
            2,
        );
        assert_eq!(y.unwrap(), vec![x.clone(), bools(&[2], &[true, true])]);
        // Training with ratio 0 keeps everything.
        let on = bools(&[], &[true]);
        let zero = f32s(&[], &[0.0]);
        let y = run_n(
            dropout,
            "Dropout",
            13,
            vec![],
            &[Some(&x), Some(&zero), Some(&on)],
            2,
        );
        assert_eq!(y.unwrap(), vec![x.clone(), bools(&[2], &[true, true])]);
        let y = run_n(
            dropout,
            "Dropout",
            6,
            vec![ai("is_test", 1)],
            &[Some(&x)],
            1,
        );
        assert_eq!(y.unwrap(), vec![x]);
    }

    #[test]
    fn training_refused() {
        let x = f32s(&[2], &[1.0, -2.0]);
        let r = f32s(&[], &[0.5]);
        let on = bools(&[], &[true]);
        let e = run_n(
            dropout,
            "Dropout",
            13,
            vec![],
            &[Some(&x), Some(&r), Some(&on)],
            1,
        );
        assert!(e.unwrap_err().to_string().contains("training"));
        let e = run_n(
            dropout,
            "Dropout",
            13,
            vec![],
            &[Some(&x), None, Some(&on)],
            1,
        );
        assert!(e.is_err());
        assert!(run_n(dropout, "Dropout", 6, vec![], &[Some(&x)], 1).is_err());
        assert!(
            run_n(
                dropout,
                "Dropout",
                13,
                vec![],
                &[Some(&i32s(&[1], &[1]))],
                1
            )
            .is_err()
        );
    }
}
