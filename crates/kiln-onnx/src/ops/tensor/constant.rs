//! `Constant`: a tensor fixed by an attribute.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Constant.html>. Opset history: 1 (`value`),
//! 9 (types), 11 (`sparse_value`), 12 (`value_float(s)`, `value_int(s)`, `value_string(s)`),
//! 13, 19, 21, 23, 24, 25 (types). Exactly one of the attributes must be set. Scalars
//! (`value_float`, `value_int`) are rank 0, lists rank 1. Strings and sparse tensors are not
//! computed with by kiln: their output stays unknown (the value is reported elsewhere).

use std::borrow::Cow;

use kiln_core::DataType;

use crate::attribute::AttrValue;
use crate::error::{OnnxError, Result};
use crate::graph::Node;
use crate::ops::util::{MAX_SYM_LEN, SymInt, sym_to_dims};
use crate::ops::{Fact, InferCtx, OpDef};
use crate::tensor::Tensor;

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Constant",
    domain: "",
    since_opset: 1,
    infer,
};

const VALUE_ATTRS: [&str; 8] = [
    "value",
    "value_float",
    "value_floats",
    "value_int",
    "value_ints",
    "value_string",
    "value_strings",
    "sparse_value",
];

/// The tensor a `Constant` node holds (borrowed for `value`, built for the scalar and list
/// forms); `None` for strings and sparse tensors. Fails unless exactly one value attribute is
/// set, or when it has the wrong kind.
pub(crate) fn constant_tensor(node: &Node) -> Result<Option<Cow<'_, Tensor>>> {
    let set: Vec<&str> = VALUE_ATTRS
        .into_iter()
        .filter(|a| node.attr(a).is_some())
        .collect();
    let [which] = set.as_slice() else {
        return Err(OnnxError::node(
            node.node_ref(),
            format!("has {} value attributes ({set:?})", set.len()),
            format!("Set exactly one of {VALUE_ATTRS:?}"),
        ));
    };
    let name = node.output(0).unwrap_or_default();
    let built = |r: Result<Tensor>| -> Result<Option<Cow<'_, Tensor>>> {
        r.map(|t| Some(Cow::Owned(t))).map_err(|e| {
            OnnxError::node(node.node_ref(), e.to_string(), "Fix the constant's value")
        })
    };
    match *which {
        "value" => Ok(node.attr_tensor("value")?.map(Cow::Borrowed)),
        "value_float" => {
            let v = node.attr_float("value_float")?.unwrap_or_default();
            Ok(Some(Cow::Owned(Tensor::scalar(name, v))))
        }
        "value_int" => {
            let v = node.attr_int("value_int")?.unwrap_or_default();
            Ok(Some(Cow::Owned(Tensor::scalar(name, v))))
        }
        "value_floats" => {
            let v = node
                .attr_floats("value_floats")?
                .unwrap_or_default()
                .to_vec();
            built(Tensor::from_vec(name, vec![v.len()], v))
        }
        "value_ints" => {
            let v = node.attr_ints("value_ints")?.unwrap_or_default().to_vec();
            built(Tensor::from_vec(name, vec![v.len()], v))
        }
        _ => {
            if let Some(AttrValue::Unsupported(k)) = node.attr(which) {
                tracing::debug!(node = %node.node_ref(), kind = k, "constant kind kiln does not hold");
            }
            Ok(None)
        }
    }
}

/// The fact of a constant tensor: its type, shape and, for small integer lists, its values.
pub(crate) fn fact_of_tensor(t: &Tensor) -> Fact {
    let mut f = Fact::tensor(t.dtype(), t.shape());
    if t.dims().len() <= 1
        && t.len() <= MAX_SYM_LEN
        && matches!(t.dtype(), DataType::I64 | DataType::I32)
        && let Ok(v) = t.to_i64_vec()
    {
        let v: Vec<SymInt> = v.into_iter().map(SymInt::Int).collect();
        f.sym_value = Some(sym_to_dims(&v));
    }
    f
}

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(0, 0)?;
    if ctx.opset < 12
        && let Some(a) = VALUE_ATTRS
            .iter()
            .skip(1)
            .find(|a| **a != "sparse_value" && ctx.node.attr(a).is_some())
    {
        return Err(ctx.err(
            format!(
                "attribute '{a}' needs opset 12 (the model imports {})",
                ctx.opset
            ),
            "Use the 'value' attribute, or import opset 12 or newer",
        ));
    }
    let fact = match constant_tensor(ctx.node)? {
        Some(t) => fact_of_tensor(&t),
        None => Fact::default(),
    };
    ctx.set_output(0, fact);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tensor::testutil::*;
    use kiln_core::{Dim, Shape};

    fn constant(attrs: Vec<(&str, AttrValue)>) -> Result<Vec<Fact>> {
        run(
            &DEF,
            13,
            &node("Constant", &[], &["c"], attrs),
            vec![],
            vec![],
        )
    }

    #[test]
    fn every_value_form() {
        let t = Tensor::from_vec("t", vec![2, 3], vec![0f32; 6]).unwrap();
        let out = constant(vec![("value", AttrValue::Tensor(t))]).unwrap();
        assert_eq!(out[0], Fact::tensor(DataType::F32, shape("2x3")));
        let out = constant(vec![("value_float", AttrValue::Float(1.5))]).unwrap();
        assert_eq!(out[0], Fact::tensor(DataType::F32, Shape::scalar()));
        let out = constant(vec![("value_floats", AttrValue::Floats(vec![1.0, 2.0]))]).unwrap();
        assert_eq!(out[0], Fact::tensor(DataType::F32, shape("2")));
        let out = constant(vec![("value_int", AttrValue::Int(7))]).unwrap();
        assert_eq!(out[0].shape, Some(Shape::scalar()));
        assert_eq!(out[0].sym_value, Some(vec![Dim::Known(7)]));
        let out = constant(vec![("value_ints", AttrValue::Ints(vec![-1, 4]))]).unwrap();
        assert_eq!(out[0].dtype, Some(DataType::I64));
        assert_eq!(out[0].sym_value, Some(vec![Dim::Unknown, Dim::Known(4)]));
        let out = constant(vec![("value_string", AttrValue::String(b"x".to_vec()))]).unwrap();
        assert_eq!(out[0], Fact::default());
        let out = constant(vec![(
            "sparse_value",
            AttrValue::Unsupported("SPARSE_TENSOR"),
        )])
        .unwrap();
        assert_eq!(out[0], Fact::default());
    }

    #[test]
    fn errors() {
        assert_err(constant(vec![]), "0 value attributes");
        assert_err(
            constant(vec![
                ("value_int", AttrValue::Int(1)),
                ("value_float", AttrValue::Float(1.0)),
            ]),
            "2 value attributes",
        );
        assert_err(constant(vec![("value_int", AttrValue::Float(1.0))]), "INT");
        let n = node(
            "Constant",
            &[],
            &["c"],
            vec![("value_int", AttrValue::Int(1))],
        );
        assert_err(run(&DEF, 11, &n, vec![], vec![]), "opset 12");
    }
}
