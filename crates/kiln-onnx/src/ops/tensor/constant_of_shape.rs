//! `ConstantOfShape`: a tensor of the shape given by an int64 input, filled with `value` (a
//! one-element tensor attribute, default float 0).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__ConstantOfShape.html>. Opset history: 9, 20,
//! 21, 23, 24, 25 (more value types). Small integer results get a `sym_value`.

use kiln_core::DataType;

use crate::error::Result;
use crate::ops::util::{MAX_SYM_LEN, SymInt, shape_from_input, sym_to_dims};
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "ConstantOfShape",
    domain: "",
    since_opset: 9,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    ctx.required(0)?;
    let value = ctx.node.attr_tensor("value")?;
    let dtype = match value {
        None => DataType::F32,
        Some(t) if t.len() != 1 => {
            return Err(ctx.err(
                format!("value has {} elements", t.len()),
                "Give a one-element tensor as value",
            ));
        }
        Some(t) => t.dtype(),
    };
    if let Some(s) = ctx.input_shape(0)
        && s.rank() != 1
    {
        return Err(ctx.err(
            format!("the shape input has shape {s}"),
            "Give a 1-D int64 shape",
        ));
    }
    let shape = shape_from_input(ctx, 0);
    let mut fact = Fact::new(Some(dtype), shape.clone());
    if let (Some(s), Some(t)) = (&shape, value)
        && matches!(dtype, DataType::I64 | DataType::I32)
        && s.rank() <= 1
        && let Some(n) = s.as_known().map(|k| k.iter().product::<usize>())
        && n <= MAX_SYM_LEN
        && let Ok(v) = t.to_i64_vec()
        && let Some(&x) = v.first()
    {
        fact.sym_value = Some(sym_to_dims(&vec![SymInt::Int(x); n]));
    }
    ctx.set_output(0, fact);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;
    use crate::tensor::Tensor;
    use kiln_core::Dim;

    #[test]
    fn shape_and_value_type() {
        let n = node("ConstantOfShape", &["s"], &["y"], vec![]);
        let out = run(&DEF, 13, &n, vec![sym("batchx3")], vec![]).unwrap();
        assert_eq!(out[0], Fact::tensor(DataType::F32, shape("batchx3")));
        let v = Tensor::from_vec("v", vec![1], vec![1i64]).unwrap();
        let n = node(
            "ConstantOfShape",
            &["s"],
            &["y"],
            vec![("value", AttrValue::Tensor(v))],
        );
        let t = ints(&[3]);
        let out = run(&DEF, 13, &n, vec![fact_of(&t)], vec![Some(&t)]).unwrap();
        assert_eq!(out[0].dtype, Some(DataType::I64));
        assert_eq!(out[0].sym_value, Some(vec![Dim::Known(1); 3]));
    }

    #[test]
    fn errors() {
        let v = Tensor::from_vec("v", vec![2], vec![1f32, 2.0]).unwrap();
        let n = node(
            "ConstantOfShape",
            &["s"],
            &["y"],
            vec![("value", AttrValue::Tensor(v))],
        );
        assert_err(run(&DEF, 13, &n, vec![sym("3")], vec![]), "2 elements");
        let n = node("ConstantOfShape", &["s"], &["y"], vec![]);
        assert_err(run(&DEF, 13, &n, vec![f32s("2x2")], vec![]), "1-D");
    }
}
