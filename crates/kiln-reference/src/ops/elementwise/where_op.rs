//! Where <https://onnx.ai/onnx/operators/onnx__Where.html>: `X` where `condition` is true, else
//! `Y`, the three broadcast together (numpy). 9, 16 (bf16). X and Y share any element type.

use super::broadcast::zip3;
use super::type_mismatch;
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

pub(crate) fn where_(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let c = match ctx.required(0)? {
        Value::Bool(c) => c,
        other => return Err(ctx.bad_dtype(0, other)),
    };
    let (x, y) = (ctx.required(1)?, ctx.required(2)?);
    let out = all_zip!(x, y, (a, b, wrap) => wrap(zip3(ctx, c, a, b, |p, u, v| if p { u } else { v })?),
        _ => return Err(type_mismatch(ctx, 1, x, 2, y)));
    Ok(vec![out])
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;

    #[test]
    fn broadcast_three() {
        let c = bools(&[2, 1], &[true, false]);
        let x = f32s(&[3], &[1.0, 2.0, 3.0]);
        let y = f32s(&[], &[-1.0]);
        let r = run(where_, "Where", 16, vec![], &[&c, &x, &y]).unwrap();
        assert_eq!(r, f32s(&[2, 3], &[1.0, 2.0, 3.0, -1.0, -1.0, -1.0]));
        let r = run(
            where_,
            "Where",
            9,
            vec![],
            &[
                &bools(&[2], &[false, true]),
                &i64s(&[2], &[1, 2]),
                &i64s(&[2], &[3, 4]),
            ],
        );
        assert_eq!(r.unwrap(), i64s(&[2], &[3, 2]));
        let b = run(
            where_,
            "Where",
            9,
            vec![],
            &[
                &bools(&[1], &[true]),
                &bools(&[2], &[false, true]),
                &bools(&[1], &[true]),
            ],
        );
        assert_eq!(b.unwrap(), bools(&[2], &[false, true]));
    }

    #[test]
    fn errors() {
        let x = f32s(&[1], &[1.0]);
        assert!(
            run(where_, "Where", 16, vec![], &[&x, &x, &x])
                .unwrap_err()
                .to_string()
                .contains("#0")
        );
        let e = run(
            where_,
            "Where",
            16,
            vec![],
            &[&bools(&[1], &[true]), &x, &i32s(&[1], &[1])],
        );
        assert!(e.unwrap_err().to_string().contains("same element type"));
        let e = run(
            where_,
            "Where",
            16,
            vec![],
            &[&bools(&[2], &[true, false]), &f32s(&[3], &[1.0; 3]), &x],
        );
        assert!(e.unwrap_err().to_string().contains("broadcast"));
    }
}
