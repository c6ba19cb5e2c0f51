//! Elementwise two-input arithmetic with numpy broadcasting: Add, Sub, Mul, Div, Pow.
//!
//! - [Add](https://onnx.ai/onnx/operators/onnx__Add.html),
//!   [Sub](https://onnx.ai/onnx/operators/onnx__Sub.html),
//!   [Mul](https://onnx.ai/onnx/operators/onnx__Mul.html),
//!   [Div](https://onnx.ai/onnx/operators/onnx__Div.html): 1, 6, 7, 13, 14
//! - [Pow](https://onnx.ai/onnx/operators/onnx__Pow.html): 1, 7, 12, 13, 15
//!
//! Opsets 1 and 6 broadcast only with the `broadcast`/`axis` attributes (B aligned at `axis`);
//! numpy broadcasting replaced them at 7, the oldest version kiln implements. Later versions
//! widen the types; from Pow-12 the exponent may have another type than the base, and the
//! output has the base's type. Add/Sub/Mul/Div need both inputs of one type.
//!
//! Integer values known to inference (shape arithmetic such as `Shape -> Gather -> Div`) are
//! carried to the output when both sides are known numbers, or when one side is the identity
//! (`x + 0`, `x - 0`, `x * 1`, `x / 1`), so a symbolic `batch` survives.

use kiln_core::Dim;

use super::common::expect_outputs;
use crate::error::Result;
use crate::ops::util::broadcast;
use crate::ops::{Fact, InferCtx, OpDef};

#[derive(Clone, Copy, PartialEq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

fn infer_binary(ctx: &mut InferCtx<'_>, op: Arith) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    expect_outputs(ctx, 1, 1)?;
    let a = ctx.required(0)?.clone();
    let b = ctx.required(1)?.clone();
    if op != Arith::Pow {
        super::common::same_dtype(ctx, 0, 1)?;
    }
    let dtype = a.dtype.or(if op == Arith::Pow { None } else { b.dtype });
    // Before opset 7, B broadcasts into A only with `broadcast` = 1 (A's shape wins);
    // otherwise the shapes are equal.
    let legacy = ctx.opset < 7;
    let shape = match (&a.shape, &b.shape) {
        (Some(x), _) if legacy && super::common::int_attr(ctx, "broadcast", 0)? != 0 => {
            Some(x.clone())
        }
        (Some(x), Some(y)) => Some(broadcast(ctx, x, y)?),
        _ => None,
    };
    let mut fact = Fact::new(dtype, shape);
    if dtype.is_some_and(|d| d.is_integer()) {
        fact.sym_value = match (int_values(ctx, 0), int_values(ctx, 1)) {
            (Some(x), Some(y)) => combine(op, &x, &y),
            _ => None,
        };
    }
    ctx.set_output(0, fact);
    Ok(())
}

/// The elements of integer input `i` (rank 0 or 1) when inference knows them.
fn int_values(ctx: &InferCtx<'_>, i: usize) -> Option<Vec<Dim>> {
    if let Some(v) = ctx.input(i).and_then(|f| f.sym_value.clone()) {
        return Some(v);
    }
    let t = ctx.const_input(i)?;
    if t.dims().len() > 1 {
        return None;
    }
    let v = t.to_i64_vec().ok()?;
    v.into_iter()
        .map(|x| usize::try_from(x).ok().map(Dim::Known))
        .collect()
}

/// Elementwise `x op y` with broadcasting of length-1 operands; `None` when any element is
/// not derivable (a symbol that is not an identity case, a negative or fractional result).
fn combine(op: Arith, x: &[Dim], y: &[Dim]) -> Option<Vec<Dim>> {
    let n = match (x.len(), y.len()) {
        (a, b) if a == b => a,
        (1, b) => b,
        (a, 1) => a,
        _ => return None,
    };
    (0..n)
        .map(|i| {
            let l = x.get(if x.len() == 1 { 0 } else { i })?;
            let r = y.get(if y.len() == 1 { 0 } else { i })?;
            one(op, l, r)
        })
        .collect()
}

fn one(op: Arith, l: &Dim, r: &Dim) -> Option<Dim> {
    match (op, l, r) {
        (_, Dim::Known(a), Dim::Known(b)) => {
            let (a, b) = (*a, *b);
            let v = match op {
                Arith::Add => a.checked_add(b),
                Arith::Sub => a.checked_sub(b),
                Arith::Mul => a.checked_mul(b),
                Arith::Div => a.checked_div(b),
                Arith::Pow => u32::try_from(b).ok().and_then(|e| a.checked_pow(e)),
            }?;
            Some(Dim::Known(v))
        }
        (Arith::Add, d, Dim::Known(0)) | (Arith::Add, Dim::Known(0), d) => Some(d.clone()),
        (Arith::Sub, d, Dim::Known(0)) => Some(d.clone()),
        (Arith::Mul, d, Dim::Known(1)) | (Arith::Mul, Dim::Known(1), d) => Some(d.clone()),
        (Arith::Div, d, Dim::Known(1)) => Some(d.clone()),
        (Arith::Pow, d, Dim::Known(1)) => Some(d.clone()),
        _ => None,
    }
}

macro_rules! binary_ops {
    ($($name:ident = $op:literal, $f:ident, $kind:ident since $v:literal;)*) => {
        $(
            fn $f(ctx: &mut InferCtx<'_>) -> Result<()> {
                infer_binary(ctx, Arith::$kind)
            }
            #[doc = concat!("`", $op, "`")]
            pub(super) const $name: OpDef = OpDef {
                op_type: $op,
                domain: "",
                since_opset: $v,
                infer: $f,
            };
        )*
    };
}

binary_ops!(
    ADD = "Add", infer_add, Add since 1;
    SUB = "Sub", infer_sub, Sub since 1;
    MUL = "Mul", infer_mul, Mul since 1;
    DIV = "Div", infer_div, Div since 1;
    POW = "Pow", infer_pow, Pow since 1;
);

#[cfg(test)]
mod tests {
    use kiln_core::DataType;

    use super::*;
    use crate::ops::nn::test_util::*;

    #[test]
    fn numpy_broadcasting_keeps_symbols() {
        for def in [&ADD, &SUB, &MUL, &DIV, &POW] {
            let out = infer(def, 14, vec![], vec![f32s("batchx3x1x5"), f32s("4x1")], 1).unwrap();
            assert_eq!(out_shape(&out), "[batch, 3, 4, 5]", "{}", def.op_type);
            assert_eq!(out[0].dtype, Some(DataType::F32));
        }
        let out = infer(&ADD, 14, vec![], vec![f32s("batchx8"), f32s("")], 1).unwrap();
        assert_eq!(out_shape(&out), "[batch, 8]");
        let out = infer(&MUL, 14, vec![], vec![f32s("batchx1"), f32s("1x768")], 1).unwrap();
        assert_eq!(out_shape(&out), "[batch, 768]");
        let out = infer(
            &MUL,
            14,
            vec![],
            vec![f32s("?x4"), unranked(DataType::F32)],
            1,
        )
        .unwrap();
        assert_eq!(out[0].shape, None);
    }

    #[test]
    fn mismatched_shapes_and_types_are_errors() {
        assert_err(
            infer(&ADD, 14, vec![], vec![f32s("2x3"), f32s("4x3")], 1),
            "Add",
            &["do not broadcast", "2 vs 4"],
        );
        assert_err(
            infer(&MUL, 14, vec![], vec![f32s("3"), t(DataType::F16, "3")], 1),
            "Mul",
            &["f32", "f16", "Cast"],
        );
        assert_err(
            infer(&SUB, 14, vec![], vec![f32s("3")], 1),
            "Sub",
            &["has 1 inputs"],
        );
        // Pow may raise to another type; the output is the base's.
        let out = infer(
            &POW,
            15,
            vec![],
            vec![t(DataType::F16, "3"), t(DataType::I64, "")],
            1,
        );
        assert_eq!(out.unwrap()[0].dtype, Some(DataType::F16));
    }

    #[test]
    fn shape_values_flow_through_arithmetic() {
        let b = Dim::symbol("batch");
        let n = node(&DIV, 2, 1, vec![]);
        let eight = Tensor::scalar("c", 8i64);
        let out = run(
            &DIV,
            &n,
            13,
            vec![sym(vec![b.clone(), Dim::Known(768)]), t(DataType::I64, "")],
            vec![None, Some(&eight)],
        )
        .unwrap();
        assert_eq!(out[0].sym_value, None, "batch / 8 is not derivable");
        let out = run(
            &MUL,
            &node(&MUL, 2, 1, vec![]),
            13,
            vec![
                sym(vec![Dim::Known(12), Dim::Known(64)]),
                sym(vec![Dim::Known(2)]),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(
            out[0].sym_value,
            Some(vec![Dim::Known(24), Dim::Known(128)])
        );
        let one = Tensor::scalar("c", 1i64);
        let out = run(
            &MUL,
            &n,
            13,
            vec![sym(vec![b.clone()]), t(DataType::I64, "")],
            vec![None, Some(&one)],
        )
        .unwrap();
        assert_eq!(out[0].sym_value, Some(vec![b.clone()]));
        let out = run(
            &DIV,
            &n,
            13,
            vec![sym(vec![Dim::Known(768)]), t(DataType::I64, "")],
            vec![None, Some(&eight)],
        )
        .unwrap();
        assert_eq!(out[0].sym_value, Some(vec![Dim::Known(96)]));
        // 3 - 5 is negative: no value.
        let five = Tensor::scalar("c", 5i64);
        let out = run(
            &SUB,
            &n,
            13,
            vec![sym(vec![Dim::Known(3)]), t(DataType::I64, "")],
            vec![None, Some(&five)],
        )
        .unwrap();
        assert_eq!(out[0].sym_value, None);
        // Float tensors carry no values.
        let out = run(&ADD, &n, 13, vec![f32s("2"), f32s("2")], vec![]).unwrap();
        assert_eq!(out[0].sym_value, None);
    }

    use crate::tensor::Tensor;
}
