//! `Identity`: the input, unchanged.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Identity.html>. Opset history: 1, 13, 14
//! (sequences), 16 (optionals), 19, 21, 23, 24, 25 (types only). kiln handles tensors; the
//! `sym_value` passes through.

use crate::error::Result;
use crate::ops::{InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Identity",
    domain: "",
    since_opset: 1,
    infer,
};

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    let f = ctx.required(0)?.clone();
    ctx.set_output(0, f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;

    #[test]
    fn passes_everything_through() {
        let n = node("Identity", &["x"], &["y"], vec![]);
        let out = run(&DEF, 13, &n, vec![sym("batchx3")], vec![]).unwrap();
        assert_eq!(out[0], sym("batchx3").unwrap());
        assert_err(
            run(
                &DEF,
                13,
                &node("Identity", &[], &["y"], vec![]),
                vec![],
                vec![],
            ),
            "inputs",
        );
    }
}
