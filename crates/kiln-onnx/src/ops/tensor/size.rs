//! `Size`: the number of elements of a tensor, as an int64 scalar.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Size.html>. Opset history: 1, 13, 19, 21, 23,
//! 24, 25 (types only). The `sym_value` is the product of the dims when one dim names it.

use kiln_core::{DataType, Shape};

use crate::error::Result;
use crate::ops::util::dim_product;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Size",
    domain: "",
    since_opset: 1,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    let sym = ctx
        .required(0)?
        .shape
        .as_ref()
        .map(|s| vec![dim_product(s.dims())]);
    let mut f = Fact::tensor(DataType::I64, Shape::scalar());
    f.sym_value = sym;
    ctx.set_output(0, f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;
    use kiln_core::Dim;

    #[test]
    fn size_products() {
        let n = node("Size", &["x"], &["s"], vec![]);
        let out = run(&DEF, 13, &n, vec![f32s("2x3x4")], vec![]).unwrap();
        assert_eq!(out[0].shape, Some(Shape::scalar()));
        assert_eq!(out[0].sym_value, Some(vec![Dim::Known(24)]));
        let out = run(&DEF, 13, &n, vec![f32s("1xbatchx1")], vec![]).unwrap();
        assert_eq!(out[0].sym_value, Some(vec![Dim::symbol("batch")]));
        let out = run(&DEF, 13, &n, vec![f32s("2xbatch")], vec![]).unwrap();
        assert_eq!(out[0].sym_value, Some(vec![Dim::Unknown]));
    }
}
