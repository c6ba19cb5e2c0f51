//! MaxPool, AveragePool, GlobalMaxPool and GlobalAveragePool over any number of spatial axes.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__MaxPool.html>,
//! <https://onnx.ai/onnx/operators/onnx__AveragePool.html>,
//! <https://onnx.ai/onnx/operators/onnx__GlobalMaxPool.html>,
//! <https://onnx.ai/onnx/operators/onnx__GlobalAveragePool.html>.
//!
//! MaxPool opset history: 1 (`kernel_shape`, `pads`, `strides`, `auto_pad`); 8 (optional
//! `Indices` output, `storage_order`); 10 (`ceil_mode`, `dilations`); 11 (output-shape rules
//! clarified); 12 (int8/uint8); 22 (bfloat16). `Indices` are flat indices into the whole
//! input `[N, C, D1, ...]` (padding not counted), row-major, or with `storage_order = 1`
//! column-major over the spatial axes (`n * C + c` times the spatial size, plus
//! `h + w * H` in 2-D). The first maximum in window order wins.
//!
//! AveragePool opset history: 1; 7 (`count_include_pad`, default 0); 10 (`ceil_mode`); 11;
//! 19 (`dilations`); 22 (bfloat16). With `count_include_pad` the divisor counts the taps that
//! fall in the input or its explicit (or auto) pads, but not those past the end padding that
//! `ceil_mode` adds; without it only taps inside the input count.
//!
//! The global pools (opset 1, 22: bfloat16) reduce every spatial axis to size 1; the max
//! propagates NaN.
//!
//! Window geometry (output size, `auto_pad`, `ceil_mode`) is [`super::common::window`].

use ndarray::{Array2, ArrayD, Axis, IxDyn};

use super::common::{OUTSIDE, Real, Window, checked_product, float_op, real_input, window};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

/// `X`'s shape split as (N, C, spatial), with the window of the node's attributes.
fn pool_window(ctx: &OpCtx<'_>, shape: &[usize], ceil: bool) -> Result<Window> {
    if shape.len() < 3 {
        return Err(ctx.err(
            format!("X has shape {shape:?}; pooling needs [N, C, D1, ...]"),
            "Give X of rank >= 3",
        ));
    }
    let Some(k) = ctx.attr_ints("kernel_shape")? else {
        return Err(ctx.err(
            "attribute 'kernel_shape' is missing",
            "Give kernel_shape (it is required)",
        ));
    };
    let kernel = k
        .iter()
        .map(|&v| usize::try_from(v).ok().filter(|&v| v >= 1))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| ctx.err(format!("kernel_shape {k:?}"), "Use kernel sizes >= 1"))?;
    let ceil = ceil && ctx.attr_int("ceil_mode", 0)? != 0;
    let win = window(ctx, &shape[2..], &kernel, ceil)?;
    checked_product(ctx, &[win.kernel_size(), win.output_size()])?;
    Ok(win)
}

fn out_shape(shape: &[usize], win: &Window) -> Vec<usize> {
    shape[..2].iter().chain(&win.output).copied().collect()
}

fn max_pool_t<T: Copy + PartialOrd + Default>(
    ctx: &OpCtx<'_>,
    x: &ArrayD<T>,
) -> Result<(ArrayD<T>, ArrayD<i64>)> {
    let shape = x.shape().to_vec();
    let win = pool_window(ctx, &shape, ctx.opset >= 10)?;
    let col_major = ctx.attr_int("storage_order", 0)? != 0;
    let (k, l) = (win.kernel_size(), win.output_size());
    let spatial = checked_product(ctx, &shape[2..])?;
    let chans = checked_product(ctx, &shape[..2])?;
    let table = win.table();
    let xs = x.as_standard_layout();
    let flat = xs.as_slice().unwrap_or(&[]);
    let mut y = Vec::with_capacity(chans * l);
    let mut idx = Vec::with_capacity(chans * l);
    // Column-major position of each row-major spatial offset (for storage_order = 1).
    let remap = |t: usize| -> usize {
        if !col_major {
            return t;
        }
        let (mut rest, mut out, mut mul) = (t, 0usize, 1usize);
        let dims = &shape[2..];
        let mut coords = vec![0usize; dims.len()];
        for i in (0..dims.len()).rev() {
            coords[i] = rest % dims[i].max(1);
            rest /= dims[i].max(1);
        }
        for (c, d) in coords.iter().zip(dims) {
            out += c * mul;
            mul *= d;
        }
        out
    };
    let mut best: Vec<(T, usize)> = vec![(T::default(), OUTSIDE); l];
    for ch in 0..chans {
        let chan = flat.get(ch * spatial..(ch + 1) * spatial).unwrap_or(&[]);
        best.fill((T::default(), OUTSIDE));
        for kf in 0..k {
            let taps = table.get(kf * l..(kf + 1) * l).unwrap_or(&[]);
            for (b, &t) in best.iter_mut().zip(taps) {
                if t == OUTSIDE {
                    continue;
                }
                if let Some(&v) = chan.get(t)
                    && (b.1 == OUTSIDE || v > b.0)
                {
                    *b = (v, t);
                }
            }
        }
        for &(v, t) in &best {
            y.push(v);
            idx.push(if t == OUTSIDE {
                -1
            } else {
                i64::try_from(ch * spatial + remap(t)).unwrap_or(i64::MAX)
            });
        }
    }
    let os = out_shape(&shape, &win);
    let err = |e: ndarray::ShapeError| ctx.err(format!("internal: {e}"), "Please report this");
    Ok((
        ArrayD::from_shape_vec(IxDyn(&os), y).map_err(err)?,
        ArrayD::from_shape_vec(IxDyn(&os), idx).map_err(err)?,
    ))
}

pub fn max_pool(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    macro_rules! go {
        ($($v:ident),*) => {
            match x {
                $(Value::$v(a) => {
                    let (y, i) = max_pool_t(ctx, a)?;
                    Ok(vec![Value::$v(y), Value::I64(i)])
                })*
                other => Err(ctx.bad_dtype(0, other)),
            }
        };
    }
    go!(F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64)
}

fn average_pool_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = real_input::<T>(ctx, 0)?;
    let shape = x.shape().to_vec();
    let win = pool_window(ctx, &shape, ctx.opset >= 10)?;
    let include_pad = ctx.opset >= 7 && ctx.attr_int("count_include_pad", 0)? != 0;
    let (k, l) = (win.kernel_size(), win.output_size());
    let spatial = checked_product(ctx, &shape[2..])?;
    let chans = checked_product(ctx, &shape[..2])?;
    let table = win.table();
    let padded = if include_pad {
        win.padded_counts()
    } else {
        Vec::new()
    };
    let xs = x.as_standard_layout();
    let flat = xs.as_slice().unwrap_or(&[]);
    let mut y = Array2::<T>::zeros((chans, l));
    let mut count = vec![0usize; l];
    for (ch, mut row) in y.outer_iter_mut().enumerate() {
        let chan = flat.get(ch * spatial..(ch + 1) * spatial).unwrap_or(&[]);
        count.fill(0);
        for kf in 0..k {
            let taps = table.get(kf * l..(kf + 1) * l).unwrap_or(&[]);
            for ((acc, n), &t) in row.iter_mut().zip(count.iter_mut()).zip(taps) {
                if let Some(&v) = chan.get(t) {
                    *acc += v;
                    *n += 1;
                }
            }
        }
        let div = if include_pad { &padded } else { &count };
        for (acc, &n) in row.iter_mut().zip(div) {
            *acc = *acc / T::from_usize(n);
        }
    }
    let y = y
        .into_shape_with_order(IxDyn(&out_shape(&shape, &win)))
        .map_err(|e| ctx.err(format!("internal: {e}"), "Please report this"))?;
    Ok(vec![T::wrap(y)])
}

pub fn average_pool(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, average_pool_t::<f32>, average_pool_t::<f64>)
}

fn global_t<T: Real>(ctx: &OpCtx<'_>, max: bool) -> Result<Vec<Value>> {
    let x = real_input::<T>(ctx, 0)?;
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(ctx.err(
            format!("X has shape {shape:?}; global pooling needs [N, C, ...]"),
            "Give X of rank >= 2",
        ));
    }
    let chans = checked_product(ctx, &shape[..2])?;
    let spatial = checked_product(ctx, &shape[2..])?;
    let x2 = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((chans, spatial))
        .map_err(|e| ctx.err(format!("internal: {e}"), "Please report this"))?;
    let y = x2.map_axis(Axis(1), |lane| {
        if max {
            lane.iter().fold(T::NEG_INFINITY, |m, &v| {
                if m.is_nan() {
                    m
                } else if v.is_nan() || v > m {
                    v
                } else {
                    m
                }
            })
        } else {
            let s = lane.iter().fold(T::ZERO, |a, &v| a + v);
            s / T::from_usize(spatial)
        }
    });
    let os: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < 2 { d } else { 1 })
        .collect();
    let y = y
        .into_shape_with_order(IxDyn(&os))
        .map_err(|e| ctx.err(format!("internal: {e}"), "Please report this"))?;
    Ok(vec![T::wrap(y)])
}

fn global_max_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    global_t::<T>(ctx, true)
}

fn global_avg_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    global_t::<T>(ctx, false)
}

pub fn global_max_pool(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, global_max_t::<f32>, global_max_t::<f64>)
}

pub fn global_average_pool(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, global_avg_t::<f32>, global_avg_t::<f64>)
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use kiln_onnx::AttrValue;

    // Expected values come from onnx 1.23.2's numpy reference (ReferenceEvaluator) on the
    // same inputs unless marked "by hand".
    fn x55() -> Value {
        #[rustfmt::skip]
        let v = [3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5., 8., 9., 7., 9., 3., 2., 3., 8., 4.,
                 6., 2., 6., 4., 3.];
        f32s(&[1, 1, 5, 5], &v)
    }

    fn idx(v: &Value) -> Vec<f64> {
        v.to_f64_vec()
    }

    #[test]
    fn max_pool_ceil_storage_order_dilation_same() {
        let x = x55();
        let n = node(
            "MaxPool",
            &[
                ("kernel_shape", ints(&[2, 2])),
                ("strides", ints(&[2, 2])),
                ("ceil_mode", AttrValue::Int(1)),
            ],
        );
        let y = run(max_pool, &n, 12, &[Some(&x)]).unwrap();
        close(
            &y[0],
            &[1, 1, 3, 3],
            &[9., 6., 5., 8., 9., 9., 6., 6., 3.],
            0.0,
        );
        assert_eq!(idx(&y[1]), [5., 7., 4., 11., 12., 14., 20., 22., 24.]);
        // ceil_mode is not an attribute before opset 10.
        let y = run(max_pool, &n, 8, &[Some(&x)]).unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 2, 2]);
        let n = node(
            "MaxPool",
            &[
                ("kernel_shape", ints(&[2, 2])),
                ("strides", ints(&[2, 2])),
                ("storage_order", AttrValue::Int(1)),
            ],
        );
        let y = run(max_pool, &n, 12, &[Some(&x)]).unwrap();
        close(&y[0], &[1, 1, 2, 2], &[9., 6., 8., 9.], 0.0);
        assert_eq!(idx(&y[1]), [1., 11., 7., 12.]);
        let n = node(
            "MaxPool",
            &[
                ("kernel_shape", ints(&[2, 2])),
                ("pads", ints(&[1, 1, 1, 1])),
                ("dilations", ints(&[2, 2])),
                ("strides", ints(&[1, 2])),
            ],
        );
        let y = run(max_pool, &n, 12, &[Some(&x)]).unwrap();
        let want = [2., 5., 5., 8., 8., 7., 2., 8., 8., 8., 8., 7., 2., 8., 8.];
        close(&y[0], &[1, 1, 5, 3], &want, 0.0);
        let want_i = [
            6., 8., 8., 11., 11., 13., 6., 18., 18., 11., 11., 13., 16., 18., 18.,
        ];
        assert_eq!(idx(&y[1]), want_i);
        let n = node(
            "MaxPool",
            &[
                ("kernel_shape", ints(&[3, 3])),
                ("strides", ints(&[2, 2])),
                ("auto_pad", s("SAME_UPPER")),
            ],
        );
        let y = run(max_pool, &n, 12, &[Some(&x)]).unwrap();
        close(
            &y[0],
            &[1, 1, 3, 3],
            &[9., 6., 5., 9., 9., 9., 6., 8., 8.],
            0.0,
        );
    }

    #[test]
    fn max_pool_3d_int_and_errors() {
        // By hand: -(d*9 + h*3 + w); the max of a window is its smallest in-bounds position.
        let Value::F32(a) = iota(&[1, 1, 2, 3, 3]) else {
            panic!()
        };
        let x = Value::F32(a.mapv(|v| -v));
        let n = node(
            "MaxPool",
            &[
                ("kernel_shape", ints(&[2, 2, 2])),
                ("pads", ints(&[0, 1, 0, 0, 0, 1])),
            ],
        );
        let y = run(max_pool, &n, 12, &[Some(&x)]).unwrap();
        close(
            &y[0],
            &[1, 1, 1, 3, 3],
            &[0., -1., -2., 0., -1., -2., -3., -4., -5.],
            0.0,
        );
        assert_eq!(idx(&y[1]), [0., 1., 2., 0., 1., 2., 3., 4., 5.]);
        // int8 with 2 channels: indices count the channel offset.
        let xi = Value::I8(
            ndarray::ArrayD::from_shape_vec(IxDyn(&[1, 2, 3]), vec![1, 3, 2, -5, -7, -6]).unwrap(),
        );
        let n = node("MaxPool", &[("kernel_shape", ints(&[2]))]);
        let y = run(max_pool, &n, 12, &[Some(&xi)]).unwrap();
        assert_eq!(
            y[0],
            Value::I8(
                ndarray::ArrayD::from_shape_vec(IxDyn(&[1, 2, 2]), vec![3, 3, -5, -6]).unwrap()
            )
        );
        assert_eq!(idx(&y[1]), [1., 1., 3., 5.]);
        assert!(run(max_pool, &node("MaxPool", &[]), 12, &[Some(&xi)]).is_err());
        let big = node("MaxPool", &[("kernel_shape", ints(&[4]))]);
        assert!(run(max_pool, &big, 12, &[Some(&xi)]).is_err());
        let b = Value::Bool(ndarray::ArrayD::from_elem(IxDyn(&[1, 1, 2]), true));
        assert!(run(max_pool, &n, 12, &[Some(&b)]).is_err());
        let r2 = f32s(&[1, 2], &[1., 2.]);
        assert!(run(max_pool, &n, 12, &[Some(&r2)]).is_err());
    }

    #[test]
    fn average_pool_variants() {
        let x = x55();
        let k3 = || {
            [
                ("kernel_shape", ints(&[3, 3])),
                ("pads", ints(&[1, 1, 1, 1])),
                ("strides", ints(&[2, 2])),
            ]
        };
        let y = run(average_pool, &node("AveragePool", &k3()), 11, &[Some(&x)]).unwrap();
        let want = [
            3.75, 3.1666667, 3.5, 4.8333335, 5.5555553, 6.0, 3.25, 4.1666665, 4.75,
        ];
        close(&y[0], &[1, 1, 3, 3], &want, 1e-6);
        let mut a = k3().to_vec();
        a.push(("count_include_pad", AttrValue::Int(1)));
        let y = run(average_pool, &node("AveragePool", &a), 11, &[Some(&x)]).unwrap();
        let want = [
            1.6666666, 2.1111112, 1.5555556, 3.2222223, 5.5555553, 4.0, 1.4444444, 2.7777777,
            2.1111112,
        ];
        close(&y[0], &[1, 1, 3, 3], &want, 1e-6);
        let n = node(
            "AveragePool",
            &[
                ("kernel_shape", ints(&[2, 2])),
                ("strides", ints(&[2, 2])),
                ("ceil_mode", AttrValue::Int(1)),
                ("count_include_pad", AttrValue::Int(1)),
                ("pads", ints(&[0, 0, 1, 0])),
            ],
        );
        let y = run(average_pool, &n, 11, &[Some(&x)]).unwrap();
        close(
            &y[0],
            &[1, 1, 3, 3],
            &[3.75, 4.0, 4.0, 4.5, 6.75, 6.5, 2.0, 2.5, 1.5],
            1e-6,
        );
        let n = node(
            "AveragePool",
            &[
                ("kernel_shape", ints(&[2, 2])),
                ("auto_pad", s("SAME_LOWER")),
            ],
        );
        let y = run(average_pool, &n, 11, &[Some(&x)]).unwrap();
        #[rustfmt::skip]
        let want = [3.0, 2.0, 2.5, 2.5, 3.0, 6.0, 3.75, 3.25, 4.0, 3.5, 7.0, 6.0, 6.25, 6.75, 6.0,
                    4.0, 4.5, 5.5, 6.75, 7.0, 4.5, 3.25, 3.25, 5.25, 4.75];
        close(&y[0], &[1, 1, 5, 5], &want, 1e-6);
        let n = node(
            "AveragePool",
            &[
                ("kernel_shape", ints(&[2, 2])),
                ("dilations", ints(&[2, 2])),
                ("strides", ints(&[3, 1])),
            ],
        );
        let y = run(average_pool, &n, 19, &[Some(&x)]).unwrap();
        close(&y[0], &[1, 1, 1, 3], &[5.25, 4.25, 6.75], 1e-6);
        let n = node(
            "AveragePool",
            &[
                ("kernel_shape", ints(&[2])),
                ("strides", ints(&[2])),
                ("ceil_mode", AttrValue::Int(1)),
            ],
        );
        let x1 = f64s(&[1, 2, 5], &[0., 1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let y = run(average_pool, &n, 11, &[Some(&x1)]).unwrap();
        assert_eq!(y[0], f64s(&[1, 2, 3], &[0.5, 2.5, 4.0, 5.5, 7.5, 9.0]));
    }

    #[test]
    fn global_pools() {
        let x = f32s(&[1, 2, 2, 2], &[1., 2., 3., 6., -1., -2., f32::NAN, 0.]);
        let y = run(
            global_average_pool,
            &node("GlobalAveragePool", &[]),
            1,
            &[Some(&x)],
        )
        .unwrap();
        close(&y[0], &[1, 2, 1, 1], &[3.0, f64::NAN], 0.0);
        let y = run(global_max_pool, &node("GlobalMaxPool", &[]), 1, &[Some(&x)]).unwrap();
        close(&y[0], &[1, 2, 1, 1], &[6.0, f64::NAN], 0.0);
        let h = Value::F16(
            ndarray::ArrayD::from_shape_vec(
                IxDyn(&[1, 1, 3]),
                [1.0f32, 2., 6.].map(half::f16::from_f32).to_vec(),
            )
            .unwrap(),
        );
        let y = run(
            global_average_pool,
            &node("GlobalAveragePool", &[]),
            22,
            &[Some(&h)],
        )
        .unwrap();
        assert!(matches!(y[0], Value::F16(_)));
        close(&y[0], &[1, 1, 1], &[3.0], 0.0);
        assert!(
            run(
                global_max_pool,
                &node("GlobalMaxPool", &[]),
                1,
                &[Some(&f32s(&[2], &[1., 2.]))]
            )
            .is_err()
        );
    }
}
