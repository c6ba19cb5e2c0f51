//! See [`super`] for what this folder holds.
//!
//! Shared pieces: [`broadcast`] (numpy broadcasting of any number of inputs), `num` (element
//! traits: numpy-like casts, integer and float arithmetic, float math) and `dispatch` (`match`
//! helpers over element types).

#[macro_use]
mod dispatch;

mod activation;
mod arith;
pub(crate) mod broadcast;
mod cast;
mod clip;
mod compare;
mod dropout;
mod math;
mod num;
mod pow;
mod prelu;
mod shrink;
mod variadic;
mod where_op;

use ndarray::ArrayD;

use super::{OpCtx, OpFn, from_f32_like, to_f32};
use crate::error::{RefError, Result};
use crate::value::Value;

/// `(op_type, function)` for every op of this folder.
pub(crate) const OPS: &[(&str, OpFn)] = &[
    // activation.rs
    ("Relu", activation::relu),
    ("LeakyRelu", activation::leaky_relu),
    ("Sigmoid", activation::sigmoid),
    ("HardSigmoid", activation::hard_sigmoid),
    ("HardSwish", activation::hard_swish),
    ("Tanh", activation::tanh),
    ("Gelu", activation::gelu),
    ("Softplus", activation::softplus),
    ("Softsign", activation::softsign),
    ("Elu", activation::elu),
    ("Selu", activation::selu),
    ("Celu", activation::celu),
    ("ThresholdedRelu", activation::thresholded_relu),
    ("Mish", activation::mish),
    // prelu.rs
    ("PRelu", prelu::prelu),
    // math.rs
    ("Erf", math::erf),
    ("Sqrt", math::sqrt),
    ("Reciprocal", math::reciprocal),
    ("Exp", math::exp),
    ("Log", math::log),
    ("Abs", math::abs),
    ("Neg", math::neg),
    ("Sign", math::sign),
    ("Floor", math::floor),
    ("Ceil", math::ceil),
    ("Round", math::round),
    ("IsNaN", math::is_nan),
    ("IsInf", math::is_inf),
    ("Sin", math::sin),
    ("Cos", math::cos),
    ("Tan", math::tan),
    ("Asin", math::asin),
    ("Acos", math::acos),
    ("Atan", math::atan),
    ("Sinh", math::sinh),
    ("Cosh", math::cosh),
    ("Asinh", math::asinh),
    ("Acosh", math::acosh),
    ("Atanh", math::atanh),
    // clip.rs
    ("Clip", clip::clip),
    // shrink.rs
    ("Shrink", shrink::shrink),
    // arith.rs
    ("Add", arith::add),
    ("Sub", arith::sub),
    ("Mul", arith::mul),
    ("Div", arith::div),
    // pow.rs
    ("Pow", pow::pow),
    // variadic.rs
    ("Min", variadic::min),
    ("Max", variadic::max),
    ("Sum", variadic::sum),
    ("Mean", variadic::mean),
    // compare.rs
    ("Equal", compare::equal),
    ("Less", compare::less),
    ("Greater", compare::greater),
    ("LessOrEqual", compare::less_or_equal),
    ("GreaterOrEqual", compare::greater_or_equal),
    ("Not", compare::not),
    ("And", compare::and),
    ("Or", compare::or),
    ("Xor", compare::xor),
    // where_op.rs
    ("Where", where_op::where_),
    // cast.rs
    ("Cast", cast::cast),
    ("CastLike", cast::cast_like),
    ("Identity", cast::identity),
    // dropout.rs
    ("Dropout", dropout::dropout),
];

/// A float input mapped elementwise: f32 and f64 in their own precision, f16 and bf16 in f32
/// and rounded back.
pub(crate) fn map_float(
    ctx: &OpCtx<'_>,
    i: usize,
    f32op: impl Fn(f32) -> f32,
    f64op: impl Fn(f64) -> f64,
) -> Result<Value> {
    let v = ctx.required(i)?;
    Ok(match v {
        Value::F32(a) => Value::F32(a.mapv(f32op)),
        Value::F64(a) => Value::F64(a.mapv(f64op)),
        Value::F16(_) | Value::BF16(_) => {
            let a: ArrayD<f32> = to_f32(v).ok_or_else(|| ctx.bad_dtype(i, v))?;
            from_f32_like(v, a.mapv(f32op))
        }
        other => return Err(ctx.bad_dtype(i, other)),
    })
}

/// [`map_float`] of input 0 with one closure body for both precisions.
/// `|x: T| body` names the element type `T` (f32, then f64) for constants (`T::c(0.5)`).
macro_rules! float_unary {
    ($ctx:expr, |$x:ident : $T:ident| $body:expr) => {
        $crate::ops::elementwise::map_float(
            $ctx,
            0,
            |$x: f32| {
                #[allow(dead_code)]
                type $T = f32;
                $body
            },
            |$x: f64| {
                #[allow(dead_code)]
                type $T = f64;
                $body
            },
        )
    };
}
pub(crate) use float_unary;

/// Error for two inputs that must share an element type but do not.
pub(crate) fn type_mismatch(ctx: &OpCtx<'_>, i: usize, a: &Value, j: usize, b: &Value) -> RefError {
    ctx.err(
        format!(
            "inputs #{i} ({}) and #{j} ({}) must have the same element type",
            a.dtype(),
            b.dtype()
        ),
        "Cast one of the inputs so both have the same type",
    )
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building nodes and running ops in this folder's tests.

    use half::{bf16, f16};
    use kiln_onnx::{AttrValue, Attribute, Node};
    use ndarray::{ArrayD, IxDyn};

    use crate::error::Result;
    use crate::ops::{OpCtx, OpFn};
    use crate::value::Value;

    pub fn node(op: &str, attrs: Vec<Attribute>) -> Node {
        Node {
            name: format!("{op}_0"),
            op_type: op.to_string(),
            outputs: vec!["y".to_string()],
            attributes: attrs,
            ..Node::default()
        }
    }

    pub fn af(name: &str, v: f32) -> Attribute {
        Attribute::new(name, AttrValue::Float(v))
    }

    pub fn ai(name: &str, v: i64) -> Attribute {
        Attribute::new(name, AttrValue::Int(v))
    }

    pub fn astr(name: &str, v: &str) -> Attribute {
        Attribute::new(name, AttrValue::String(v.as_bytes().to_vec()))
    }

    /// Runs `f` as op `op` at `opset` with `outputs` output names.
    pub fn run_n(
        f: OpFn,
        op: &str,
        opset: i64,
        attrs: Vec<Attribute>,
        inputs: &[Option<&Value>],
        outputs: usize,
    ) -> Result<Vec<Value>> {
        let mut n = node(op, attrs);
        n.outputs = (0..outputs).map(|i| format!("y{i}")).collect();
        n.inputs = inputs
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if v.is_some() {
                    format!("x{i}")
                } else {
                    String::new()
                }
            })
            .collect();
        let ctx = OpCtx::new(&n, opset, inputs.to_vec());
        f(&ctx)
    }

    /// Runs `f` on `inputs` (all present), one output.
    pub fn run(
        f: OpFn,
        op: &str,
        opset: i64,
        attrs: Vec<Attribute>,
        inputs: &[&Value],
    ) -> Result<Value> {
        let ins: Vec<Option<&Value>> = inputs.iter().map(|v| Some(*v)).collect();
        let mut out = run_n(f, op, opset, attrs, &ins, 1)?;
        Ok(out.remove(0))
    }

    pub fn arr<T: Clone>(shape: &[usize], data: &[T]) -> ArrayD<T> {
        ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap()
    }

    pub fn f32s(shape: &[usize], data: &[f32]) -> Value {
        Value::F32(arr(shape, data))
    }

    pub fn f64s(shape: &[usize], data: &[f64]) -> Value {
        Value::F64(arr(shape, data))
    }

    pub fn f16s(shape: &[usize], data: &[f32]) -> Value {
        Value::F16(arr(shape, data).mapv(f16::from_f32))
    }

    pub fn bf16s(shape: &[usize], data: &[f32]) -> Value {
        Value::BF16(arr(shape, data).mapv(bf16::from_f32))
    }

    pub fn i32s(shape: &[usize], data: &[i32]) -> Value {
        Value::I32(arr(shape, data))
    }

    pub fn i64s(shape: &[usize], data: &[i64]) -> Value {
        Value::I64(arr(shape, data))
    }

    pub fn bools(shape: &[usize], data: &[bool]) -> Value {
        Value::Bool(arr(shape, data))
    }

    /// Asserts `got` is `want` up to `tol` relative to max(1, |want|), same dtype and shape;
    /// NaNs must match NaNs.
    pub fn close(got: &Value, want: &Value, tol: f64) {
        assert_eq!(got.dtype(), want.dtype(), "dtype: {got:?} vs {want:?}");
        assert_eq!(got.shape(), want.shape(), "shape: {got:?} vs {want:?}");
        for (g, w) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
            if w.is_nan() {
                assert!(g.is_nan(), "{got:?} vs {want:?}");
            } else if w.is_infinite() {
                assert_eq!(*g, w, "{got:?} vs {want:?}");
            } else {
                assert!(
                    (g - w).abs() <= tol * w.abs().max(1.0),
                    "{g} vs {w}: {got:?} vs {want:?}"
                );
            }
        }
    }
}
