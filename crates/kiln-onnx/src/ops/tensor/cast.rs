//! `Cast`: converts elements to the type `to` (an ONNX `TensorProto.DataType` code).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Cast.html>. Opset history: 1 (`to` as a type
//! name string; not implemented), 6 (`to` as a code), 9, 13, 19 (`saturate` for float8), 21,
//! 23, 24, 25 (types), 28 (`round_mode`). A cast between integer types keeps the `sym_value`.
//! A target kiln does not support (string, float8, ...) leaves the output's type unknown.

use kiln_core::DataType;

use crate::error::Result;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Cast",
    domain: "",
    since_opset: 6,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    let x = ctx.required(0)?.clone();
    let to = ctx
        .node
        .attr_int("to")?
        .ok_or_else(|| ctx.err("has no 'to' attribute", "Set the target type code"))?;
    let dtype = i32::try_from(to).ok().and_then(DataType::from_onnx_code);
    if dtype.is_none() {
        let name = i32::try_from(to).map_or("unknown", DataType::onnx_code_name);
        tracing::debug!(node = %ctx.node.node_ref(), to, name, "cast to a type kiln does not compute with");
    }
    let mut fact = Fact::new(dtype, x.shape.clone());
    if let (Some(from), Some(to)) = (x.dtype, dtype)
        && from.is_integer()
        && to.is_integer()
    {
        fact.sym_value = x.sym_value;
    }
    ctx.set_output(0, fact);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn cast_types() {
        let n = node("Cast", &["x"], &["y"], vec![("to", AttrValue::Int(10))]);
        let out = run(&DEF, 13, &n, vec![f32s("batchx3")], vec![]).unwrap();
        assert_eq!(out[0], fact(DataType::F16, "batchx3").unwrap());
        let n = node("Cast", &["x"], &["y"], vec![("to", AttrValue::Int(6))]);
        let out = run(&DEF, 13, &n, vec![sym("batchx3")], vec![]).unwrap();
        assert_eq!(out[0].dtype, Some(DataType::I32));
        assert_eq!(out[0].sym_value, Some(dims("batchx3")));
        let n = node("Cast", &["x"], &["y"], vec![("to", AttrValue::Int(1))]);
        let out = run(&DEF, 13, &n, vec![sym("batchx3")], vec![]).unwrap();
        assert_eq!(out[0].sym_value, None);
        let n = node("Cast", &["x"], &["y"], vec![("to", AttrValue::Int(8))]);
        let out = run(&DEF, 13, &n, vec![f32s("2")], vec![]).unwrap();
        assert_eq!(out[0].dtype, None);
        assert_eq!(out[0].shape, Some(shape("2")));
        let n = node("Cast", &["x"], &["y"], vec![]);
        assert_err(run(&DEF, 13, &n, vec![f32s("2")], vec![]), "'to'");
    }
}
