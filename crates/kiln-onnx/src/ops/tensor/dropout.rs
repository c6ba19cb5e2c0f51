//! `Dropout`: at inference, the identity; the optional mask output is all true.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Dropout.html>. Opset history: 1, 6 (`is_test`
//! attribute), 7 (`is_test` removed, optional `mask` output of the input's type), 10 (`mask` is
//! bool), 12 (`ratio` and `training_mode` become inputs, `seed` attribute), 13, 22 (types).

use kiln_core::DataType;

use crate::error::Result;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Dropout",
    domain: "",
    since_opset: 7,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, if ctx.opset >= 12 { 3 } else { 1 })?;
    let data = ctx.required(0)?.clone();
    let mask_type = if ctx.opset >= 10 {
        Some(DataType::Bool)
    } else {
        data.dtype
    };
    let mask = Fact::new(mask_type, data.shape.clone());
    ctx.set_output(0, data);
    ctx.set_output(1, mask);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn output_and_mask() {
        let n = node("Dropout", &["x", "r"], &["y", "m"], vec![]);
        let out = run(&DEF, 13, &n, vec![f32s("batchx3"), f32s("")], vec![]).unwrap();
        assert_eq!(out[0], f32s("batchx3").unwrap());
        assert_eq!(out[1], fact(DataType::Bool, "batchx3").unwrap());
        let n = node("Dropout", &["x"], &["y", "m"], vec![]);
        let out = run(&DEF, 7, &n, vec![f32s("2")], vec![]).unwrap();
        assert_eq!(out[1], f32s("2").unwrap());
        let n = node("Dropout", &["x", "r"], &["y"], vec![]);
        assert_err(
            run(&DEF, 11, &n, vec![f32s("2"), f32s("")], vec![]),
            "inputs",
        );
    }
}
