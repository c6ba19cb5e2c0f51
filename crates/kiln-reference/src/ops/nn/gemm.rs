//! Gemm and MatMul.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Gemm.html>,
//! <https://onnx.ai/onnx/operators/onnx__MatMul.html>.
//!
//! Gemm computes `Y = alpha * A' * B' + beta * C` with `A'` = `A` transposed when `transA`,
//! likewise `B'`; `alpha`, `beta` default 1, `transA`, `transB` default 0. Opset history:
//! - 1, 6: `C` required, with a `broadcast` attribute (0: `C` must be M x N);
//! - 7: `broadcast` removed, `C` broadcasts unidirectionally to M x N;
//! - 9: int32/int64/uint32/uint64 allowed;
//! - 11: `C` optional;
//! - 13: bfloat16.
//!
//! Every opset is computed with the since-7 semantics (unidirectional broadcast of `C`,
//! which also covers the old `broadcast = 0` case).
//!
//! MatMul is numpy's `matmul`: 2-D operands multiply as matrices; higher ranks are stacks of
//! matrices in the last two axes whose leading (batch) axes broadcast; a 1-D first operand is
//! a row vector and a 1-D second a column vector, the added axis removed from the result.
//! Opset history: 1 (float types), 9 (int32/int64/uint32/uint64), 13 (bfloat16).
//!
//! Floats go through ndarray's `.dot()` (matrixmultiply); integers wrap on overflow as
//! two's-complement arithmetic does.

use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2, IxDyn};

use super::common::{Real, float_op, real_input, real_input_opt};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

/// Integers multiplied with wrapping arithmetic.
trait WrapInt: Copy + Default + 'static {
    fn wmul(self, o: Self) -> Self;
    fn wadd(self, o: Self) -> Self;
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
}

macro_rules! wrap_int {
    ($($t:ty),*) => {$(
        impl WrapInt for $t {
            fn wmul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn wadd(self, o: Self) -> Self { self.wrapping_add(o) }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(x: f64) -> Self { x as $t }
        }
    )*};
}
wrap_int!(i8, i16, i32, i64, u8, u16, u32, u64);

fn int_dot<T: WrapInt>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Array2<T> {
    let (m, k) = a.dim();
    let n = b.ncols();
    Array2::from_shape_fn((m, n), |(i, j)| {
        (0..k).fold(T::default(), |acc, p| acc.wadd(a[(i, p)].wmul(b[(p, j)])))
    })
}

/// Matrix product of two 2-D views; the shapes were checked by the caller.
trait MatElem: Copy + Default + 'static {
    fn matmul(a: &ArrayView2<'_, Self>, b: &ArrayView2<'_, Self>) -> Array2<Self>;
}

impl MatElem for f32 {
    fn matmul(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> Array2<f32> {
        a.dot(b)
    }
}
impl MatElem for f64 {
    fn matmul(a: &ArrayView2<'_, f64>, b: &ArrayView2<'_, f64>) -> Array2<f64> {
        a.dot(b)
    }
}
macro_rules! mat_int {
    ($($t:ty),*) => {$(
        impl MatElem for $t {
            fn matmul(a: &ArrayView2<'_, $t>, b: &ArrayView2<'_, $t>) -> Array2<$t> {
                int_dot(a, b)
            }
        }
    )*};
}
mat_int!(i8, i16, i32, i64, u8, u16, u32, u64);

fn gemm_dims(ctx: &OpCtx<'_>, a: &[usize], b: &[usize]) -> Result<(bool, bool)> {
    if a.len() != 2 || b.len() != 2 {
        return Err(ctx.err(
            format!("A has shape {a:?} and B {b:?}; Gemm takes 2-D matrices"),
            "Reshape A and B to 2-D, or use MatMul",
        ));
    }
    let ta = ctx.attr_int("transA", 0)? != 0;
    let tb = ctx.attr_int("transB", 0)? != 0;
    let ka = if ta { a[0] } else { a[1] };
    let kb = if tb { b[1] } else { b[0] };
    if ka != kb {
        return Err(ctx.err(
            format!(
                "inner dimensions differ: A {a:?} (transA={}) and B {b:?} (transB={})",
                ta as u8, tb as u8
            ),
            "Fix the shapes or the transA/transB attributes",
        ));
    }
    Ok((ta, tb))
}

/// `C` broadcast unidirectionally to `[m, n]`.
fn broadcast_c<'a, T>(
    ctx: &OpCtx<'_>,
    c: &'a ndarray::ArrayViewD<'a, T>,
    m: usize,
    n: usize,
) -> Result<ndarray::ArrayView2<'a, T>> {
    let bc = c.broadcast(IxDyn(&[m, n])).ok_or_else(|| {
        ctx.err(
            format!(
                "C of shape {:?} does not broadcast to the output [{m}, {n}]",
                c.shape()
            ),
            "Give C a shape that broadcasts to M x N",
        )
    })?;
    bc.into_dimensionality::<Ix2>()
        .map_err(|e| ctx.err(format!("C: {e}"), "Give C a shape that broadcasts to M x N"))
}

fn gemm_real<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let a = real_input::<T>(ctx, 0)?;
    let b = real_input::<T>(ctx, 1)?;
    let c = real_input_opt::<T>(ctx, 2)?;
    let (ta, tb) = gemm_dims(ctx, a.shape(), b.shape())?;
    let alpha = T::from_f64(f64::from(ctx.attr_float("alpha", 1.0)?));
    let beta = T::from_f64(f64::from(ctx.attr_float("beta", 1.0)?));
    let a2 = a
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| ctx.err(e.to_string(), "-"))?;
    let b2 = b
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| ctx.err(e.to_string(), "-"))?;
    let a2 = if ta { a2.reversed_axes() } else { a2 };
    let b2 = if tb { b2.reversed_axes() } else { b2 };
    let mut y = a2.dot(&b2);
    if alpha != T::ONE {
        y.mapv_inplace(|v| v * alpha);
    }
    if let Some(c) = &c {
        let cv = c.view();
        let cb = broadcast_c(ctx, &cv, y.nrows(), y.ncols())?;
        y.zip_mut_with(&cb, |v, &cv| *v += beta * cv);
    }
    Ok(vec![T::wrap(y.into_dyn())])
}

fn gemm_int<T: WrapInt + MatElem>(
    ctx: &OpCtx<'_>,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
) -> Result<ArrayD<T>> {
    let (ta, tb) = gemm_dims(ctx, a.shape(), b.shape())?;
    let alpha = f64::from(ctx.attr_float("alpha", 1.0)?);
    let beta = f64::from(ctx.attr_float("beta", 1.0)?);
    let a2 = a
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| ctx.err(e.to_string(), "-"))?;
    let b2 = b
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| ctx.err(e.to_string(), "-"))?;
    let a2 = if ta { a2.reversed_axes() } else { a2 };
    let b2 = if tb { b2.reversed_axes() } else { b2 };
    let mut y = int_dot(&a2, &b2);
    if alpha != 1.0 {
        y.mapv_inplace(|v| T::from_f64(alpha * v.to_f64()));
    }
    if let Some(cv) = ctx.input(2) {
        let c = int_view::<T>(cv).ok_or_else(|| {
            ctx.err(
                "C's element type differs from A's",
                "Give A, B and C one type",
            )
        })?;
        let cb = broadcast_c(ctx, &c, y.nrows(), y.ncols())?;
        if beta == 1.0 {
            y.zip_mut_with(&cb, |v, &c| *v = v.wadd(c));
        } else {
            y.zip_mut_with(&cb, |v, &c| {
                *v = T::from_f64(v.to_f64() + beta * c.to_f64())
            });
        }
    }
    Ok(y.into_dyn())
}

/// The array inside `v` when its element type is `T`.
fn int_view<T: 'static>(v: &Value) -> Option<ndarray::ArrayViewD<'_, T>> {
    fn cast<A: 'static, T: 'static>(a: &ArrayD<A>) -> Option<ndarray::ArrayViewD<'_, T>> {
        (a as &dyn std::any::Any)
            .downcast_ref::<ArrayD<T>>()
            .map(|a| a.view())
    }
    crate::with_array!(v, a => cast::<_, T>(a))
}

pub fn gemm(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let a = ctx.required(0)?;
    let b = ctx.required(1)?;
    macro_rules! int {
        ($($v:ident),*) => {
            match (a, b) {
                $((Value::$v(x), Value::$v(y)) => return Ok(vec![Value::$v(gemm_int(ctx, x, y)?)]),)*
                _ => {}
            }
        };
    }
    int!(I8, I16, I32, I64, U8, U16, U32, U64);
    if a.dtype() != b.dtype() {
        return Err(ctx.err(
            format!("A is {} but B is {}", a.dtype(), b.dtype()),
            "Give A, B and C one element type",
        ));
    }
    float_op(ctx, 0, gemm_real::<f32>, gemm_real::<f64>)
}

/// numpy `matmul` of two arrays of one element type.
fn matmul_arrays<T: MatElem>(
    ctx: &OpCtx<'_>,
    a: ndarray::ArrayViewD<'_, T>,
    b: ndarray::ArrayViewD<'_, T>,
) -> Result<ArrayD<T>> {
    let (ra, rb) = (a.ndim(), b.ndim());
    if ra == 0 || rb == 0 {
        return Err(ctx.err("MatMul of a scalar", "Give MatMul operands of rank >= 1"));
    }
    // Promote 1-D operands.
    let a = if ra == 1 { a.insert_axis(Axis(0)) } else { a };
    let b = if rb == 1 { b.insert_axis(Axis(1)) } else { b };
    let (na, nb) = (a.ndim(), b.ndim());
    let (m, k) = (a.shape()[na - 2], a.shape()[na - 1]);
    let (k2, n) = (b.shape()[nb - 2], b.shape()[nb - 1]);
    if k != k2 {
        return Err(ctx.err(
            format!(
                "inner dimensions differ: A {:?} and B {:?}",
                a.shape(),
                b.shape()
            ),
            "Make A's last axis match B's second-to-last",
        ));
    }
    // Broadcast the batch axes.
    let (ba, bb) = (&a.shape()[..na - 2], &b.shape()[..nb - 2]);
    let rank = ba.len().max(bb.len());
    let mut batch = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = if i + ba.len() >= rank {
            ba[i + ba.len() - rank]
        } else {
            1
        };
        let db = if i + bb.len() >= rank {
            bb[i + bb.len() - rank]
        } else {
            1
        };
        batch.push(match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(ctx.err(
                    format!("batch axes {ba:?} and {bb:?} do not broadcast"),
                    "Give MatMul operands whose leading axes broadcast (numpy rules)",
                ));
            }
        });
    }
    let count: usize = batch.iter().product();
    let stack = |x: ndarray::ArrayViewD<'_, T>, r: usize, c: usize| -> Result<ndarray::Array3<T>> {
        let full: Vec<usize> = batch.iter().copied().chain([r, c]).collect();
        let bx = x.broadcast(IxDyn(&full)).ok_or_else(|| {
            ctx.err(
                "operand does not broadcast",
                "Give MatMul operands that broadcast",
            )
        })?;
        bx.as_standard_layout()
            .into_owned()
            .into_shape_with_order((count, r, c))
            .map_err(|e| ctx.err(format!("reshape: {e}"), "-"))
    };
    let single =
        |x: &ndarray::ArrayViewD<'_, T>| x.shape()[..x.ndim() - 2].iter().product::<usize>() == 1;
    let mut out = ndarray::Array3::<T>::default((count, m, n));
    if single(&b) {
        // Every batch of A times one B: one tall GEMM.
        let b2 = b
            .to_shape((k, n))
            .map_err(|e| ctx.err(format!("{e}"), "-"))?;
        let a3 = stack(a, m, k)?;
        let tall = a3
            .into_shape_with_order((count * m, k))
            .map_err(|e| ctx.err(format!("{e}"), "-"))?;
        let y = T::matmul(&tall.view(), &b2.view());
        out = y
            .into_shape_with_order((count, m, n))
            .map_err(|e| ctx.err(format!("{e}"), "-"))?;
    } else {
        let a3 = stack(a, m, k)?;
        let b3 = stack(b, k, n)?;
        for ((mut o, x), y) in out
            .outer_iter_mut()
            .zip(a3.outer_iter())
            .zip(b3.outer_iter())
        {
            o.assign(&T::matmul(&x, &y));
        }
    }
    let mut shape = batch;
    if ra > 1 {
        shape.push(m);
    }
    if rb > 1 {
        shape.push(n);
    }
    out.into_shape_with_order(IxDyn(&shape))
        .map_err(|e| ctx.err(format!("reshape: {e}"), "-"))
}

pub fn matmul(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let a = ctx.required(0)?;
    let b = ctx.required(1)?;
    macro_rules! go {
        ($($v:ident),*) => {
            match (a, b) {
                $((Value::$v(x), Value::$v(y)) => {
                    return Ok(vec![Value::$v(matmul_arrays(ctx, x.view(), y.view())?)]);
                })*
                _ => {}
            }
        };
    }
    go!(F32, F64, I8, I16, I32, I64, U8, U16, U32, U64);
    if a.dtype() != b.dtype() {
        return Err(ctx.err(
            format!("A is {} but B is {}", a.dtype(), b.dtype()),
            "Give A and B one element type",
        ));
    }
    // f16 / bf16: in f32, rounded back.
    let (Some(x), Some(y)) = (crate::ops::to_f32(a), crate::ops::to_f32(b)) else {
        return Err(ctx.bad_dtype(0, a));
    };
    let r = matmul_arrays(ctx, x.view(), y.view())?;
    Ok(vec![crate::ops::from_f32_like(a, r)])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use kiln_onnx::AttrValue;

    #[test]
    fn gemm_plain_and_trans() {
        let a = iota(&[2, 3]);
        let b = iota(&[3, 2]);
        let n = node("Gemm", &[]);
        let y = run(gemm, &n, 13, &[Some(&a), Some(&b)]).unwrap();
        // [[0,1,2],[3,4,5]] @ [[0,1],[2,3],[4,5]] by hand.
        close(&y[0], &[2, 2], &[10., 13., 28., 40.], 0.0);
        // transA/transB: A^T (3x2)^T... A' = [[0,3],[1,4],[2,5]], B' = [[0,2,4],[1,3,5]].
        let n = node(
            "Gemm",
            &[
                ("transA", AttrValue::Int(1)),
                ("transB", AttrValue::Int(1)),
                ("alpha", AttrValue::Float(0.5)),
                ("beta", AttrValue::Float(2.0)),
            ],
        );
        let c = f32s(&[3], &[1., 2., 3.]);
        let y = run(gemm, &n, 13, &[Some(&a), Some(&b), Some(&c)]).unwrap();
        // checked with numpy: 0.5 * (a.T @ b.T) + 2 * [1, 2, 3].
        close(
            &y[0],
            &[3, 3],
            &[3.5, 8.5, 13.5, 4., 11., 18., 4.5, 13.5, 22.5],
            1e-6,
        );
    }

    #[test]
    fn gemm_c_broadcast_and_errors() {
        let a = iota(&[2, 3]);
        let b = iota(&[3, 2]);
        let n = node("Gemm", &[]);
        let c = f32s(&[2, 1], &[1., -1.]);
        let y = run(gemm, &n, 7, &[Some(&a), Some(&b), Some(&c)]).unwrap();
        close(&y[0], &[2, 2], &[11., 14., 27., 39.], 0.0);
        let bad = f32s(&[3], &[1., 2., 3.]);
        assert!(run(gemm, &n, 13, &[Some(&a), Some(&b), Some(&bad)]).is_err());
        assert!(run(gemm, &n, 13, &[Some(&a), Some(&a)]).is_err());
        let b64 = f64s(&[3, 2], &[0., 1., 2., 3., 4., 5.]);
        assert!(run(gemm, &n, 13, &[Some(&a), Some(&b64)]).is_err());
    }

    #[test]
    fn gemm_f64_f16_int() {
        let a = f64s(&[1, 2], &[1.5, 2.0]);
        let b = f64s(&[2, 1], &[2.0, 0.25]);
        let n = node("Gemm", &[("beta", AttrValue::Float(3.0))]);
        let c = f64s(&[], &[1.0]);
        let y = run(gemm, &n, 13, &[Some(&a), Some(&b), Some(&c)]).unwrap();
        assert!(matches!(y[0], Value::F64(_)));
        close(&y[0], &[1, 1], &[6.5], 0.0);
        let h = |v: &[f32], s: &[usize]| {
            Value::F16(
                ArrayD::from_shape_vec(
                    IxDyn(s),
                    v.iter().map(|&x| half::f16::from_f32(x)).collect(),
                )
                .unwrap(),
            )
        };
        let y = run(
            gemm,
            &node("Gemm", &[]),
            13,
            &[Some(&h(&[1., 2.], &[1, 2])), Some(&h(&[3., 4.], &[2, 1]))],
        )
        .unwrap();
        assert!(matches!(y[0], Value::F16(_)));
        close(&y[0], &[1, 1], &[11.], 0.0);
        let ia = Value::I32(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![2, 3]).unwrap());
        let ib = Value::I32(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![4, 5]).unwrap());
        let ic = Value::I32(ArrayD::from_shape_vec(IxDyn(&[1]), vec![-1]).unwrap());
        let y = run(
            gemm,
            &node("Gemm", &[]),
            13,
            &[Some(&ia), Some(&ib), Some(&ic)],
        )
        .unwrap();
        assert_eq!(
            y[0],
            Value::I32(ArrayD::from_shape_vec(IxDyn(&[1, 1]), vec![22]).unwrap())
        );
    }

    #[test]
    fn matmul_shapes() {
        let n = node("MatMul", &[]);
        // 1-D x 1-D: dot product -> scalar.
        let v = iota(&[3]);
        let y = run(matmul, &n, 13, &[Some(&v), Some(&v)]).unwrap();
        close(&y[0], &[], &[5.], 0.0);
        // 1-D x 2-D -> 1-D.
        let m = iota(&[3, 2]);
        let y = run(matmul, &n, 13, &[Some(&v), Some(&m)]).unwrap();
        close(&y[0], &[2], &[10., 13.], 0.0);
        // 2-D x 1-D -> 1-D.
        let m2 = iota(&[2, 3]);
        let y = run(matmul, &n, 13, &[Some(&m2), Some(&v)]).unwrap();
        close(&y[0], &[2], &[5., 14.], 0.0);
        // batched with broadcasting: (2,1,2,3) x (3,3,2) -> (2,3,2,2); checked with numpy:
        // np.matmul(np.arange(12).reshape(2,1,2,3), np.arange(18).reshape(3,3,2))[1,2]
        let a = iota(&[2, 1, 2, 3]);
        let b = iota(&[3, 3, 2]);
        let y = run(matmul, &n, 13, &[Some(&a), Some(&b)]).unwrap();
        assert_eq!(y[0].shape(), &[2, 3, 2, 2]);
        let all = y[0].to_f64_vec();
        assert_eq!(&all[20..24], &[298., 319., 424., 454.]);
        // stack x single matrix.
        let y = run(matmul, &n, 13, &[Some(&a), Some(&m)]).unwrap();
        close(
            &y[0],
            &[2, 1, 2, 2],
            &[10., 13., 28., 40., 46., 67., 64., 94.],
            0.0,
        );
        // single matrix x stack.
        let y = run(matmul, &n, 13, &[Some(&m2), Some(&b)]).unwrap();
        assert_eq!(y[0].shape(), &[3, 2, 2]);
        assert!(run(matmul, &n, 13, &[Some(&m2), Some(&m2)]).is_err());
        let bb = iota(&[2, 3, 2]);
        let aa = iota(&[3, 2, 3]);
        assert!(run(matmul, &n, 13, &[Some(&aa), Some(&bb)]).is_err());
    }

    #[test]
    fn matmul_int_and_half() {
        let n = node("MatMul", &[]);
        let a =
            Value::I64(ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1, 2, 3, i64::MAX]).unwrap());
        let b = Value::I64(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, 2]).unwrap());
        let y = run(matmul, &n, 13, &[Some(&a), Some(&b)]).unwrap();
        // 3 + 2*MAX wraps to 1.
        assert_eq!(
            y[0],
            Value::I64(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![5, 1]).unwrap())
        );
        let h = Value::BF16(
            ArrayD::from_shape_vec(
                IxDyn(&[1, 2]),
                vec![half::bf16::from_f32(1.5), half::bf16::from_f32(2.0)],
            )
            .unwrap(),
        );
        let h2 = Value::BF16(
            ArrayD::from_shape_vec(
                IxDyn(&[2]),
                vec![half::bf16::from_f32(2.0), half::bf16::from_f32(1.0)],
            )
            .unwrap(),
        );
        let y = run(matmul, &n, 13, &[Some(&h), Some(&h2)]).unwrap();
        assert!(matches!(y[0], Value::BF16(_)));
        close(&y[0], &[1], &[5.], 0.0);
        let f = f64s(&[2], &[1., 2.]);
        let y = run(matmul, &n, 13, &[Some(&f), Some(&f)]).unwrap();
        assert_eq!(y[0], f64s(&[], &[5.]));
        let bo = Value::Bool(ArrayD::from_elem(IxDyn(&[1]), true));
        assert!(run(matmul, &n, 13, &[Some(&bo), Some(&bo)]).is_err());
    }
}
