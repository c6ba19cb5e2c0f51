//! Logical and comparison ops: bool outputs, numpy broadcasting of two inputs.
//!
//! - `Not` (<https://onnx.ai/onnx/operators/onnx__Not.html>): opset 1, bool in and out.
//! - `And`, `Or` (<https://onnx.ai/onnx/operators/onnx__And.html>,
//!   <https://onnx.ai/onnx/operators/onnx__Or.html>): 1 (legacy `broadcast` attribute; not
//!   implemented), 7 (numpy broadcasting). Bool inputs.
//! - `Equal`, `Less`, `Greater` (<https://onnx.ai/onnx/operators/onnx__Equal.html>,
//!   <https://onnx.ai/onnx/operators/onnx__Less.html>,
//!   <https://onnx.ai/onnx/operators/onnx__Greater.html>): 1 (legacy broadcast; not
//!   implemented), 7 (numpy broadcasting), then more input types (Equal 11, 13, 19; Less and
//!   Greater 9, 13). Both inputs of one type.
//! - `IsNaN` (<https://onnx.ai/onnx/operators/onnx__IsNaN.html>): 9, 13, 20 (types); float in.

use kiln_core::DataType;

use crate::error::Result;
use crate::ops::util::broadcast;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEFS: [OpDef; 7] = [
    OpDef {
        op_type: "Not",
        domain: "",
        since_opset: 1,
        infer: infer_not,
    },
    OpDef {
        op_type: "And",
        domain: "",
        since_opset: 7,
        infer: infer_bool_binary,
    },
    OpDef {
        op_type: "Or",
        domain: "",
        since_opset: 7,
        infer: infer_bool_binary,
    },
    OpDef {
        op_type: "Equal",
        domain: "",
        since_opset: 7,
        infer: infer_compare,
    },
    OpDef {
        op_type: "Less",
        domain: "",
        since_opset: 7,
        infer: infer_compare,
    },
    OpDef {
        op_type: "Greater",
        domain: "",
        since_opset: 7,
        infer: infer_compare,
    },
    OpDef {
        op_type: "IsNaN",
        domain: "",
        since_opset: 9,
        infer: infer_isnan,
    },
];

fn expect_type(ctx: &InferCtx<'_>, i: usize, ok: fn(DataType) -> bool, want: &str) -> Result<()> {
    if let Some(dt) = ctx.input_dtype(i)
        && !ok(dt)
    {
        return Err(ctx.err(format!("input #{i} is {dt}"), format!("Give {want} inputs")));
    }
    Ok(())
}

fn is_bool(d: DataType) -> bool {
    d == DataType::Bool
}

fn infer_not(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    let s = ctx.required(0)?.shape.clone();
    expect_type(ctx, 0, is_bool, "bool")?;
    ctx.set_output(0, Fact::new(Some(DataType::Bool), s));
    Ok(())
}

fn infer_isnan(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    let s = ctx.required(0)?.shape.clone();
    expect_type(ctx, 0, DataType::is_float, "floating-point")?;
    ctx.set_output(0, Fact::new(Some(DataType::Bool), s));
    Ok(())
}

fn binary(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    let a = ctx.required(0)?.shape.clone();
    let b = ctx.required(1)?.shape.clone();
    let shape = match (a, b) {
        (Some(a), Some(b)) => Some(broadcast(ctx, &a, &b)?),
        _ => None,
    };
    ctx.set_output(0, Fact::new(Some(DataType::Bool), shape));
    Ok(())
}

fn infer_bool_binary(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    expect_type(ctx, 0, is_bool, "bool")?;
    expect_type(ctx, 1, is_bool, "bool")?;
    binary(ctx)
}

fn infer_compare(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    if let (Some(a), Some(b)) = (ctx.input_dtype(0), ctx.input_dtype(1))
        && a != b
    {
        return Err(ctx.err(
            format!("inputs are {a} and {b}"),
            "Compare values of one type (Cast one)",
        ));
    }
    binary(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;

    fn def(op: &str) -> &'static OpDef {
        DEFS.iter().find(|d| d.op_type == op).unwrap()
    }

    #[test]
    fn bool_outputs_broadcast() {
        let n = node("Less", &["a", "b"], &["y"], vec![]);
        let out = run(
            def("Less"),
            13,
            &n,
            vec![f32s("batchx1x4"), f32s("3x1")],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0], fact(DataType::Bool, "batchx3x4").unwrap());
        let n = node("And", &["a", "b"], &["y"], vec![]);
        let out = run(
            def("And"),
            7,
            &n,
            vec![fact(DataType::Bool, "2"), fact(DataType::Bool, "")],
            vec![],
        )
        .unwrap();
        assert_eq!(out[0], fact(DataType::Bool, "2").unwrap());
        let n = node("IsNaN", &["a"], &["y"], vec![]);
        let out = run(def("IsNaN"), 13, &n, vec![f32s("seq")], vec![]).unwrap();
        assert_eq!(out[0], fact(DataType::Bool, "seq").unwrap());
        let n = node("Not", &["a"], &["y"], vec![]);
        let out = run(def("Not"), 1, &n, vec![fact(DataType::Bool, "seq")], vec![]).unwrap();
        assert_eq!(out[0], fact(DataType::Bool, "seq").unwrap());
    }

    #[test]
    fn errors() {
        let n = node("Equal", &["a", "b"], &["y"], vec![]);
        assert_err(
            run(
                def("Equal"),
                13,
                &n,
                vec![f32s("2"), fact(DataType::I64, "2")],
                vec![],
            ),
            "inputs are f32 and i64",
        );
        assert_err(
            run(def("Equal"), 13, &n, vec![f32s("2"), f32s("3")], vec![]),
            "broadcast",
        );
        let n = node("Or", &["a", "b"], &["y"], vec![]);
        assert_err(
            run(
                def("Or"),
                13,
                &n,
                vec![f32s("2"), fact(DataType::Bool, "2")],
                vec![],
            ),
            "bool",
        );
        let n = node("Not", &["a"], &["y"], vec![]);
        assert_err(run(def("Not"), 13, &n, vec![f32s("2")], vec![]), "bool");
        let n = node("IsNaN", &["a"], &["y"], vec![]);
        assert_err(
            run(def("IsNaN"), 13, &n, vec![fact(DataType::I64, "2")], vec![]),
            "floating-point",
        );
        let n = node("Greater", &["a"], &["y"], vec![]);
        assert_err(
            run(def("Greater"), 13, &n, vec![f32s("2")], vec![]),
            "inputs",
        );
    }
}
