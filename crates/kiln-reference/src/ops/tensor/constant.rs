//! Ops that make a tensor from attributes: Constant and ConstantOfShape.
//!
//! - Constant <https://onnx.ai/onnx/operators/onnx__Constant.html>: exactly one attribute
//!   gives the value. Opset history: 1 and 9 have only `value` (a tensor); 11 adds
//!   `sparse_value`; 12 adds `value_float`, `value_floats` (f32, scalar / 1-D), `value_int`,
//!   `value_ints` (int64, scalar / 1-D), `value_string`, `value_strings`; 13, 19, 21, 23, 24,
//!   25 widen the element types. Sparse and string values are reported as unsupported.
//! - ConstantOfShape <https://onnx.ai/onnx/operators/onnx__ConstantOfShape.html>: a tensor of
//!   the shape given by the 1-D int64 input (empty: a scalar; zero dims allowed), filled with
//!   the one-element tensor attribute `value` (default f32 0) and of its element type.
//!   Opset history: 9 introduces it; 20, 21, 23, 24, 25 widen the element types.

use ndarray::{ArrayD, IxDyn, arr0, arr1};

use crate::error::Result;
use crate::map_array;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::{checked_numel, to_dims};

/// The attributes that can hold Constant's value.
const VALUE_ATTRS: [&str; 8] = [
    "value",
    "sparse_value",
    "value_float",
    "value_floats",
    "value_int",
    "value_ints",
    "value_string",
    "value_strings",
];

/// Constant: see the module doc.
pub(crate) fn constant(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let set: Vec<&str> = VALUE_ATTRS
        .iter()
        .copied()
        .filter(|n| ctx.node.attr(n).is_some())
        .collect();
    let name = match set.as_slice() {
        [one] => *one,
        [] => {
            return Err(ctx.err(
                "Constant has no value attribute",
                "Give exactly one of value, value_float(s), value_int(s)",
            ));
        }
        many => {
            return Err(ctx.err(
                format!("Constant has several value attributes: {many:?}"),
                "Give exactly one value attribute",
            ));
        }
    };
    let v = match name {
        "value" => {
            let t = ctx.node.attr_tensor("value")?.ok_or_else(|| {
                ctx.err("the 'value' attribute is missing", "Give a tensor 'value'")
            })?;
            Value::from_tensor(t)?
        }
        "value_float" => Value::F32(arr0(ctx.attr_float(name, 0.0)?).into_dyn()),
        "value_floats" => Value::F32(arr1(&ctx.attr_floats(name)?.unwrap_or_default()).into_dyn()),
        "value_int" => Value::I64(arr0(ctx.attr_int(name, 0)?).into_dyn()),
        "value_ints" => Value::I64(arr1(&ctx.attr_ints(name)?.unwrap_or_default()).into_dyn()),
        "sparse_value" => {
            return Err(ctx.err(
                "Constant holds a sparse tensor ('sparse_value'), which kiln does not support",
                "Store the constant as a dense tensor ('value' attribute or an initializer)",
            ));
        }
        _ => {
            return Err(ctx.err(
                format!("Constant holds strings ('{name}'); string tensors are not supported"),
                "Remove string constants from the model (kiln computes only numeric tensors)",
            ));
        }
    };
    Ok(vec![v])
}

/// ConstantOfShape: see the module doc.
pub(crate) fn constant_of_shape(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let shape = ctx.input_i64s(0)?;
    if ctx.required(0)?.shape().len() > 1 {
        return Err(ctx.err(
            format!(
                "the shape input has rank {}",
                ctx.required(0)?.shape().len()
            ),
            "Give the shape as a 1-D int64 tensor",
        ));
    }
    let dims = to_dims(ctx, &shape, "shape")?;
    checked_numel(ctx, &dims)?;
    let value = match ctx.node.attr_tensor("value")? {
        Some(t) => Value::from_tensor(t)?,
        None => Value::F32(arr0(0.0f32).into_dyn()),
    };
    if value.len() != 1 {
        return Err(ctx.err(
            format!("the 'value' attribute has {} elements", value.len()),
            "Give 'value' as a one-element tensor",
        ));
    }
    Ok(vec![map_array!(&value, a => {
        let x = a.iter().next().cloned().unwrap_or_default();
        ArrayD::from_elem(IxDyn(&dims), x)
    })])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use kiln_onnx::{AttrValue, Tensor};

    #[test]
    fn constant_attribute_kinds() {
        let t = Tensor::from_vec("t", vec![2], vec![1i32, 2]).unwrap();
        let y = run1(
            constant,
            "Constant",
            13,
            vec![("value", AttrValue::Tensor(t))],
            &[],
        );
        assert_eq!(y, i32s(&[2], &[1, 2]));
        let y = run1(
            constant,
            "Constant",
            13,
            vec![("value_float", AttrValue::Float(1.5))],
            &[],
        );
        assert_eq!(y, f32s(&[], &[1.5]));
        let y = run1(
            constant,
            "Constant",
            13,
            vec![("value_floats", AttrValue::Floats(vec![1.0, 2.0]))],
            &[],
        );
        assert_eq!(y, f32s(&[2], &[1.0, 2.0]));
        let y = run1(constant, "Constant", 13, vec![("value_int", a1(-3))], &[]);
        assert_eq!(y, i64s(&[], &[-3]));
        let y = run1(
            constant,
            "Constant",
            13,
            vec![("value_ints", ai(&[4, 5, 6]))],
            &[],
        );
        assert_eq!(y, ints(&[4, 5, 6]));
        let y = run1(constant, "Constant", 13, vec![("value_ints", ai(&[]))], &[]);
        assert_eq!(y, ints(&[]));
        let b = Tensor::from_bools("b", vec![1], &[true]).unwrap();
        let y = run1(
            constant,
            "Constant",
            13,
            vec![("value", AttrValue::Tensor(b))],
            &[],
        );
        check(&y, &[1], &[1.0]);
    }

    #[test]
    fn constant_errors() {
        let e = run_err(constant, "Constant", 13, vec![], &[]);
        assert!(e.contains("no value"), "{e}");
        let e = run_err(
            constant,
            "Constant",
            13,
            vec![("value_int", a1(1)), ("value_float", AttrValue::Float(1.0))],
            &[],
        );
        assert!(e.contains("several"), "{e}");
        let e = run_err(
            constant,
            "Constant",
            13,
            vec![("sparse_value", AttrValue::Unsupported("SPARSE_TENSOR"))],
            &[],
        );
        assert!(e.contains("sparse"), "{e}");
        let e = run_err(
            constant,
            "Constant",
            13,
            vec![("value_string", AttrValue::String(b"hi".to_vec()))],
            &[],
        );
        assert!(e.contains("string tensors are not supported"), "{e}");
        let e = run_err(
            constant,
            "Constant",
            13,
            vec![("value_strings", AttrValue::Strings(vec![]))],
            &[],
        );
        assert!(e.contains("string"), "{e}");
        let e = run_err(
            constant,
            "Constant",
            13,
            vec![("value", AttrValue::Int(3))],
            &[],
        );
        assert!(e.contains("TENSOR"), "{e}");
    }

    #[test]
    fn constant_of_shape_values() {
        let y = run1(
            constant_of_shape,
            "ConstantOfShape",
            20,
            vec![],
            &[Some(ints(&[2, 3]))],
        );
        check(&y, &[2, 3], &[0.0; 6]);
        assert_eq!(y.dtype(), kiln_core::DataType::F32);
        let t = Tensor::from_vec("v", vec![1], vec![7i32]).unwrap();
        let y = run1(
            constant_of_shape,
            "ConstantOfShape",
            9,
            vec![("value", AttrValue::Tensor(t))],
            &[Some(ints(&[2]))],
        );
        assert_eq!(y, i32s(&[2], &[7, 7]));
        let y = run1(
            constant_of_shape,
            "ConstantOfShape",
            20,
            vec![],
            &[Some(ints(&[]))],
        );
        check(&y, &[], &[0.0]);
        let y = run1(
            constant_of_shape,
            "ConstantOfShape",
            20,
            vec![],
            &[Some(ints(&[0, 4]))],
        );
        assert_eq!(y.shape(), &[0, 4]);
        let b = Tensor::from_bools("b", vec![1], &[true]).unwrap();
        let y = run1(
            constant_of_shape,
            "ConstantOfShape",
            20,
            vec![("value", AttrValue::Tensor(b))],
            &[Some(ints(&[1, 2]))],
        );
        check(&y, &[1, 2], &[1.0, 1.0]);
    }

    #[test]
    fn constant_of_shape_errors() {
        let e = run_err(
            constant_of_shape,
            "ConstantOfShape",
            20,
            vec![],
            &[Some(ints(&[2, -1]))],
        );
        assert!(e.contains("negative"), "{e}");
        let e = run_err(
            constant_of_shape,
            "ConstantOfShape",
            20,
            vec![],
            &[Some(ints(&[1 << 40, 1 << 40]))],
        );
        assert!(e.contains("too many"), "{e}");
        let t = Tensor::from_vec("v", vec![2], vec![1.0f32, 2.0]).unwrap();
        let e = run_err(
            constant_of_shape,
            "ConstantOfShape",
            20,
            vec![("value", AttrValue::Tensor(t))],
            &[Some(ints(&[2]))],
        );
        assert!(e.contains("one-element"), "{e}");
        let e = run_err(
            constant_of_shape,
            "ConstantOfShape",
            20,
            vec![],
            &[Some(f32s(&[1], &[2.0]))],
        );
        assert!(e.contains("element type"), "{e}");
    }
}
