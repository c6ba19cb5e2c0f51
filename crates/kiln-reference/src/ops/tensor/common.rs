//! Helpers shared by the shape and data-movement ops of this folder: typed access to a
//! [`Value`]'s array, checked shape arithmetic, axis normalisation and numpy broadcasting.

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, IxDyn, Order};

use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

/// The most elements an op of this folder will allocate for one output (2^31, i.e. 8 GiB of
/// f32): a guard against shapes that would exhaust memory (the process would abort).
pub(crate) const MAX_ELEMENTS: usize = 1 << 31;

/// An element type of [`Value`], with typed access to the array inside a value.
pub(crate) trait Elem: Clone + Default + Send + Sync + 'static {
    /// The array of `v` if `v` holds this element type.
    fn get(v: &Value) -> Option<&ArrayD<Self>>;
    /// `a` as a value.
    fn wrap(a: ArrayD<Self>) -> Value;
    /// `x` converted as a C cast would (saturating for integers, `x != 0` for bool).
    fn from_f64(x: f64) -> Self;
}

macro_rules! elem_cast {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl Elem for $t {
            fn get(v: &Value) -> Option<&ArrayD<Self>> {
                match v {
                    Value::$v(a) => Some(a),
                    _ => None,
                }
            }
            fn wrap(a: ArrayD<Self>) -> Value {
                Value::$v(a)
            }
            fn from_f64(x: f64) -> Self {
                x as $t
            }
        }
    )*};
}
elem_cast!(f32 => F32, f64 => F64, i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8,
    u16 => U16, u32 => U32, u64 => U64);

impl Elem for f16 {
    fn get(v: &Value) -> Option<&ArrayD<Self>> {
        match v {
            Value::F16(a) => Some(a),
            _ => None,
        }
    }
    fn wrap(a: ArrayD<Self>) -> Value {
        Value::F16(a)
    }
    fn from_f64(x: f64) -> Self {
        f16::from_f64(x)
    }
}

impl Elem for bf16 {
    fn get(v: &Value) -> Option<&ArrayD<Self>> {
        match v {
            Value::BF16(a) => Some(a),
            _ => None,
        }
    }
    fn wrap(a: ArrayD<Self>) -> Value {
        Value::BF16(a)
    }
    fn from_f64(x: f64) -> Self {
        bf16::from_f64(x)
    }
}

impl Elem for bool {
    fn get(v: &Value) -> Option<&ArrayD<Self>> {
        match v {
            Value::Bool(a) => Some(a),
            _ => None,
        }
    }
    fn wrap(a: ArrayD<Self>) -> Value {
        Value::Bool(a)
    }
    fn from_f64(x: f64) -> Self {
        x != 0.0
    }
}

/// Input `i` as an array of `T`, or an error when its element type differs from `like`'s.
pub(crate) fn same_type<'a, T: Elem>(
    ctx: &OpCtx<'a>,
    i: usize,
    like: &Value,
) -> Result<&'a ArrayD<T>> {
    let v = ctx.required(i)?;
    T::get(v).ok_or_else(|| {
        ctx.err(
            format!(
                "input #{i} has element type {} but input #0 has {}",
                v.dtype(),
                like.dtype()
            ),
            "Give these inputs one element type (insert a Cast)",
        )
    })
}

/// A copy of `a` in standard (row-major, contiguous) layout.
pub(crate) fn standard<T: Clone>(a: ArrayViewD<'_, T>) -> ArrayD<T> {
    a.as_standard_layout().into_owned()
}

/// `a` reshaped (row-major order) to `shape`, whose element count the caller has checked.
pub(crate) fn reshaped<T: Clone>(
    ctx: &OpCtx<'_>,
    a: ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<ArrayD<T>> {
    a.to_shape((IxDyn(shape), Order::RowMajor))
        .map(|c| c.into_owned())
        .map_err(|e| {
            ctx.err(
                format!("cannot reshape {:?} to {shape:?}: {e}", a.shape()),
                "Give a shape with the same number of elements",
            )
        })
}

/// The element count of `dims`, or an error when it overflows or exceeds [`MAX_ELEMENTS`].
pub(crate) fn checked_numel(ctx: &OpCtx<'_>, dims: &[usize]) -> Result<usize> {
    match kiln_core::checked_element_count(dims) {
        Some(n) if n <= MAX_ELEMENTS => Ok(n),
        _ => Err(ctx.err(
            format!("the output shape {dims:?} has too many elements (the CPU reference allows {MAX_ELEMENTS})"),
            "Check the shape, repeats or pads that produce this output",
        )),
    }
}

/// Non-negative dims from ONNX int64s; `what` names them in the error.
pub(crate) fn to_dims(ctx: &OpCtx<'_>, v: &[i64], what: &str) -> Result<Vec<usize>> {
    v.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                ctx.err(
                    format!("{what} {v:?} holds the negative value {d}"),
                    format!("Give non-negative {what}"),
                )
            })
        })
        .collect()
}

/// ONNX axes (each in `[-rank, rank)`) as indices, rejecting duplicates.
pub(crate) fn norm_axes(ctx: &OpCtx<'_>, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let ax = ctx.axis(a, rank)?;
        if out.contains(&ax) {
            return Err(ctx.err(
                format!("axes {axes:?} name axis {ax} more than once"),
                "Give each axis once",
            ));
        }
        out.push(ax);
    }
    Ok(out)
}

/// The numpy broadcast of two shapes (aligned at the right; equal dims or one of them 1).
pub(crate) fn broadcast_shapes(ctx: &OpCtx<'_>, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        // Dim i of the result, counted from the left; missing leading dims act as 1.
        let pick = |s: &[usize]| {
            (i + s.len())
                .checked_sub(r)
                .and_then(|j| s.get(j).copied())
                .unwrap_or(1)
        };
        let (x, y) = (pick(a), pick(b));
        *o = if x == y || y == 1 {
            x
        } else if x == 1 {
            y
        } else {
            return Err(ctx.err(
                format!("shapes {a:?} and {b:?} do not broadcast (dim {x} vs {y})"),
                "Give shapes whose dims are equal or 1 when aligned at the right",
            ));
        };
    }
    Ok(out)
}

/// Integer input `i` (any integer type) as an i64 array of its shape: indices.
pub(crate) fn int_array(ctx: &OpCtx<'_>, i: usize) -> Result<ArrayD<i64>> {
    let v = ctx.required(i)?;
    Ok(match v {
        Value::I64(a) => a.clone(),
        Value::I32(a) => a.mapv(i64::from),
        Value::I16(a) => a.mapv(i64::from),
        Value::I8(a) => a.mapv(i64::from),
        Value::U8(a) => a.mapv(i64::from),
        Value::U16(a) => a.mapv(i64::from),
        Value::U32(a) => a.mapv(i64::from),
        Value::U64(a) => {
            let v: Vec<i64> = a
                .iter()
                .map(|&x| i64::try_from(x).unwrap_or(i64::MAX))
                .collect();
            ArrayD::from_shape_vec(a.raw_dim(), v).map_err(|e| {
                ctx.err(
                    format!("input #{i}: {e}"),
                    "Give a well-formed integer tensor",
                )
            })?
        }
        other => return Err(ctx.bad_dtype(i, other)),
    })
}

/// The single element of a one-element input (a scalar or shape `[1]`), as i64s.
pub(crate) fn scalar_i64(ctx: &OpCtx<'_>, i: usize, what: &str) -> Result<i64> {
    let v = ctx.input_i64s(i)?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(ctx.err(
            format!(
                "input '{what}' has {} elements where one was expected",
                v.len()
            ),
            format!("Give '{what}' as a scalar"),
        )),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Building one node and running one op function on it.

    use kiln_onnx::{AttrValue, Attribute, Node};
    use ndarray::{ArrayD, IxDyn};

    use crate::error::Result;
    use crate::ops::{OpCtx, OpFn};
    use crate::value::Value;

    pub fn node(op: &str, attrs: Vec<(&str, AttrValue)>, n_in: usize, n_out: usize) -> Node {
        Node {
            name: format!("{op}_test"),
            op_type: op.to_string(),
            inputs: (0..n_in).map(|i| format!("in{i}")).collect(),
            outputs: (0..n_out).map(|i| format!("out{i}")).collect(),
            attributes: attrs
                .into_iter()
                .map(|(n, v)| Attribute::new(n, v))
                .collect(),
            ..Node::default()
        }
    }

    /// Runs `f` on a node with `attrs`, `inputs` (None = omitted) and `n_out` outputs.
    pub fn run(
        f: OpFn,
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttrValue)>,
        inputs: &[Option<Value>],
        n_out: usize,
    ) -> Result<Vec<Value>> {
        let n = node(op, attrs, inputs.len(), n_out);
        let ctx = OpCtx::new(&n, opset, inputs.iter().map(Option::as_ref).collect());
        f(&ctx)
    }

    /// Like [`run`] with one output, returned alone; panics (in tests) on error.
    pub fn run1(
        f: OpFn,
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttrValue)>,
        inputs: &[Option<Value>],
    ) -> Value {
        let mut v = run(f, op, opset, attrs, inputs, 1).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    /// The error message of a run expected to fail.
    pub fn run_err(
        f: OpFn,
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttrValue)>,
        inputs: &[Option<Value>],
    ) -> String {
        match run(f, op, opset, attrs, inputs, 1) {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    pub fn f32s(shape: &[usize], v: &[f32]) -> Value {
        Value::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    pub fn i64s(shape: &[usize], v: &[i64]) -> Value {
        Value::I64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    pub fn i32s(shape: &[usize], v: &[i32]) -> Value {
        Value::I32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    /// A 1-D int64 value.
    pub fn ints(v: &[i64]) -> Value {
        i64s(&[v.len()], v)
    }

    /// `0, 1, 2, ...` as f32 in `shape`.
    pub fn iota(shape: &[usize]) -> Value {
        let n: usize = shape.iter().product();
        Value::F32(
            ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|x| x as f32).collect()).unwrap(),
        )
    }

    pub fn ai(v: &[i64]) -> AttrValue {
        AttrValue::Ints(v.to_vec())
    }

    pub fn a1(v: i64) -> AttrValue {
        AttrValue::Int(v)
    }

    /// Asserts `v` has `shape` and the elements `want` (compared as f64).
    pub fn check(v: &Value, shape: &[usize], want: &[f64]) {
        assert_eq!(v.shape(), shape, "shape of {v:?}");
        assert_eq!(v.to_f64_vec(), want, "values of {v:?}");
    }
}
