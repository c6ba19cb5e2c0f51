//! Elementwise ops over one or more inputs with numpy broadcasting: Min, Max, Sum, Mean.
//!
//! - [Min](https://onnx.ai/onnx/operators/onnx__Min.html),
//!   [Max](https://onnx.ai/onnx/operators/onnx__Max.html): 1, 6, 8, 12, 13
//! - [Sum](https://onnx.ai/onnx/operators/onnx__Sum.html),
//!   [Mean](https://onnx.ai/onnx/operators/onnx__Mean.html): 1, 6, 8, 13
//!
//! Opset 6 required inputs of one shape; 8 added numpy broadcasting, of which equal shapes are
//! a special case, so kiln implements both from 6 (1 differs only by the legacy
//! `consumed_inputs` hint). 12 and 13 widen the types. All inputs share one type.

use super::common::{expect_outputs, same_dtype};
use crate::error::Result;
use crate::ops::util::broadcast_all;
use crate::ops::{Fact, InferCtx, OpDef};

fn infer_variadic(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, usize::MAX)?;
    expect_outputs(ctx, 1, 1)?;
    let mut shapes = Vec::with_capacity(ctx.num_inputs());
    let mut dtype = None;
    for i in 0..ctx.num_inputs() {
        let f = ctx.required(i)?;
        shapes.push(f.shape.clone());
        dtype = dtype.or(f.dtype);
        same_dtype(ctx, 0, i)?;
    }
    let shape = match shapes.into_iter().collect::<Option<Vec<_>>>() {
        Some(all) => Some(broadcast_all(ctx, all.iter())?),
        None => None,
    };
    ctx.set_output(0, Fact::new(dtype, shape));
    Ok(())
}

macro_rules! variadic_ops {
    ($($name:ident = $op:literal since $v:literal),* $(,)?) => {
        $(
            #[doc = concat!("`", $op, "`")]
            pub(super) const $name: OpDef = OpDef {
                op_type: $op,
                domain: "",
                since_opset: $v,
                infer: infer_variadic,
            };
        )*
    };
}

variadic_ops!(
    MIN = "Min" since 6,
    MAX = "Max" since 6,
    SUM = "Sum" since 6,
    MEAN = "Mean" since 6,
);

#[cfg(test)]
mod tests {
    use kiln_core::DataType;

    use super::*;
    use crate::ops::nn::test_util::*;

    #[test]
    fn broadcasts_all_inputs() {
        for def in [&MIN, &MAX, &SUM, &MEAN] {
            let ins = vec![f32s("batchx1x4"), f32s("3x1"), f32s("")];
            let out = infer(def, 13, vec![], ins, 1).unwrap();
            assert_eq!(out_shape(&out), "[batch, 3, 4]", "{}", def.op_type);
            assert_eq!(out[0].dtype, Some(DataType::F32));
        }
        let out = infer(&SUM, 13, vec![], vec![f32s("2x2")], 1).unwrap();
        assert_eq!(out_shape(&out), "[2, 2]");
        let out = infer(
            &MAX,
            13,
            vec![],
            vec![f32s("2x2"), unranked(DataType::F32)],
            1,
        )
        .unwrap();
        assert_eq!(out[0].shape, None);
    }

    #[test]
    fn errors_name_the_node() {
        assert_err(
            infer(&MEAN, 13, vec![], vec![], 1),
            "Mean",
            &["has 0 inputs"],
        );
        assert_err(
            infer(&MAX, 13, vec![], vec![f32s("2"), f32s("2"), f32s("3")], 1),
            "Max",
            &["do not broadcast"],
        );
        assert_err(
            infer(&MIN, 13, vec![], vec![f32s("2"), t(DataType::I32, "2")], 1),
            "Min",
            &["i32"],
        );
    }
}
