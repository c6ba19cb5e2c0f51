//! BatchNormalization, InstanceNormalization, LayerNormalization, GroupNormalization.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__BatchNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__InstanceNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__LayerNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__GroupNormalization.html>.
//!
//! All use the population variance and `(x - mean) / sqrt(var + epsilon) * scale + bias`.
//!
//! BatchNormalization history: 1 (`consumed_inputs`, `is_test`, `spatial`), 6 (no
//! `consumed_inputs`), 7 (no `is_test`), 9 (no `spatial`: per-channel statistics only),
//! 14 (`training_mode`; outputs `Y, running_mean, running_var`), 15 (scale/bias and
//! mean/var may have their own float types). Inference uses the given `mean` and `var`, per
//! channel (or, with `spatial = 0` before 9, per element of `X.shape[1..]`). With
//! `training_mode = 1` (14+) the batch statistics over every axis but 1 normalise `X`, and
//! `running = input * momentum + batch * (1 - momentum)` (`momentum` 0.9). Before 14 only `Y`
//! is computed, from the given statistics (an opset 6 `is_test = 0` node asking for the
//! training outputs is refused).
//!
//! InstanceNormalization history: 1, 6 (no `consumed_inputs`), 22 (bfloat16): statistics per
//! image and channel over the spatial axes; `scale`, `B` are `[C]`.
//!
//! LayerNormalization (17): statistics over axes `axis..` (default -1); `Scale` and `B`
//! broadcast to `X`; optional outputs `Mean` and `InvStdDev` (shape `X.shape[..axis]` then
//! ones) in the stash type: `stash_type` 1 = float32 (default), 16 = bfloat16.
//!
//! GroupNormalization: 18 (`scale`, `bias` per group, `[num_groups]`), 21 (per channel,
//! `[C]`; `stash_type`). Statistics per image and group of `C / num_groups` channels.

use ndarray::{Array3, ArrayD, ArrayViewD, Axis, IxDyn, Zip};

use super::common::{Real, checked_product, float_op, real_input, real_input_opt};
use crate::error::Result;
use crate::ops::{OpCtx, from_f32_like};
use crate::value::Value;

/// Mean and population variance of a slice.
fn moments<T: Real>(v: &[T]) -> (T, T) {
    let n = T::from_usize(v.len());
    let mean = v.iter().fold(T::ZERO, |a, &x| a + x) / n;
    let var = v.iter().fold(T::ZERO, |a, &x| a + (x - mean) * (x - mean)) / n;
    (mean, var)
}

fn internal(ctx: &OpCtx<'_>, e: impl std::fmt::Display) -> crate::error::RefError {
    ctx.err(
        format!("internal: {e}"),
        "Please report this with the model",
    )
}

/// `X` as `[N, C, spatial]` (standard layout).
fn as_ncs<T: Real>(ctx: &OpCtx<'_>, x: ArrayViewD<'_, T>) -> Result<Array3<T>> {
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(ctx.err(
            format!("X has shape {shape:?}; it must be [N, C, ...]"),
            "Give X of rank >= 2",
        ));
    }
    let sp = checked_product(ctx, &shape[2..])?;
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((shape[0], shape[1], sp))
        .map_err(|e| internal(ctx, e))
}

/// A BatchNormalization parameter as an array broadcastable to `X`: `[C]` as
/// `[1, C, 1, ...]`, otherwise (`spatial = 0`) `X.shape[1..]`-like with a leading 1.
fn bn_param<'a, T: Real>(
    ctx: &OpCtx<'_>,
    p: &'a ArrayViewD<'a, T>,
    xs: &[usize],
    name: &str,
) -> Result<ArrayViewD<'a, T>> {
    let c = xs[1];
    let shaped: Vec<usize> = if p.ndim() == 1 && p.len() == c {
        (0..xs.len()).map(|i| if i == 1 { c } else { 1 }).collect()
    } else {
        std::iter::once(1)
            .chain(p.shape().iter().copied())
            .collect()
    };
    let view = p
        .view()
        .into_shape_with_order(IxDyn(&shaped))
        .ok()
        .filter(|v| v.broadcast(IxDyn(xs)).is_some());
    view.ok_or_else(|| {
        ctx.err(
            format!(
                "{name} has shape {:?}, which does not fit X {xs:?}",
                p.shape()
            ),
            format!("Give {name} one value per channel ([{c}])"),
        )
    })
}

fn batch_norm_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = real_input::<T>(ctx, 0)?;
    let scale = real_input::<T>(ctx, 1)?;
    let bias = real_input::<T>(ctx, 2)?;
    let mean = real_input::<T>(ctx, 3)?;
    let var = real_input::<T>(ctx, 4)?;
    let xs = x.shape().to_vec();
    if xs.len() < 2 {
        return Err(ctx.err(
            format!("X has shape {xs:?}; it must be [N, C, ...]"),
            "Give X of rank >= 2",
        ));
    }
    let eps = T::from_f64(f64::from(ctx.attr_float("epsilon", 1e-5)?));
    let training = ctx.opset >= 14 && ctx.attr_int("training_mode", 0)? != 0;
    let extra_outputs = ctx.node.outputs.iter().skip(1).any(|o| !o.is_empty());
    if ctx.opset < 14 && extra_outputs {
        return Err(ctx.err(
            format!(
                "opset {} BatchNormalization asks for its training outputs (mean, var, saved_*), \
                 which the reference does not compute",
                ctx.opset
            ),
            "Use the node for inference (only Y), or upgrade the model to opset 14+",
        ));
    }
    let (sv, bv, mv, vv) = (scale.view(), bias.view(), mean.view(), var.view());
    let s = bn_param(ctx, &sv, &xs, "scale")?;
    let b = bn_param(ctx, &bv, &xs, "B")?;
    let m = bn_param(ctx, &mv, &xs, "mean")?;
    let v = bn_param(ctx, &vv, &xs, "var")?;
    if !training {
        let mut y = ArrayD::<T>::zeros(IxDyn(&xs));
        Zip::from(&mut y)
            .and(&x)
            .and_broadcast(&s)
            .and_broadcast(&b)
            .and_broadcast(&m)
            .and_broadcast(&v)
            .for_each(|o, &x, &s, &b, &m, &v| *o = s * (x - m) / (v + eps).sqrt() + b);
        return Ok(vec![T::wrap(y)]);
    }
    // Training: per-channel batch statistics.
    let c = xs[1];
    if [&sv, &bv, &mv, &vv].iter().any(|p| p.shape() != [c]) {
        return Err(ctx.err(
            "training mode needs [C] scale, B, mean and var",
            "Give per-channel parameters",
        ));
    }
    let momentum = T::from_f64(f64::from(ctx.attr_float("momentum", 0.9)?));
    let x3 = as_ncs(ctx, x.view())?;
    let mut y = x3.clone();
    let mut run_mean = Vec::with_capacity(c);
    let mut run_var = Vec::with_capacity(c);
    for ci in 0..c {
        let lane: Vec<T> = x3.index_axis(Axis(1), ci).iter().copied().collect();
        let (bm, bvar) = moments(&lane);
        let (sc, bi) = (sv[[ci]], bv[[ci]]);
        y.index_axis_mut(Axis(1), ci)
            .mapv_inplace(|x| sc * (x - bm) / (bvar + eps).sqrt() + bi);
        run_mean.push(mv[[ci]] * momentum + bm * (T::ONE - momentum));
        run_var.push(vv[[ci]] * momentum + bvar * (T::ONE - momentum));
    }
    let y = y
        .into_shape_with_order(IxDyn(&xs))
        .map_err(|e| internal(ctx, e))?;
    Ok(vec![
        T::wrap(y),
        T::wrap(ArrayD::from_shape_vec(IxDyn(&[c]), run_mean).map_err(|e| internal(ctx, e))?),
        T::wrap(ArrayD::from_shape_vec(IxDyn(&[c]), run_var).map_err(|e| internal(ctx, e))?),
    ])
}

pub fn batch_normalization(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, batch_norm_t::<f32>, batch_norm_t::<f64>)
}

fn instance_norm_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = real_input::<T>(ctx, 0)?;
    let scale = real_input::<T>(ctx, 1)?;
    let bias = real_input::<T>(ctx, 2)?;
    let xs = x.shape().to_vec();
    let mut x3 = as_ncs(ctx, x.view())?;
    let c = xs[1];
    if scale.shape() != [c] || bias.shape() != [c] {
        return Err(ctx.err(
            format!(
                "scale {:?} and B {:?} must be [{c}]",
                scale.shape(),
                bias.shape()
            ),
            "Give scale and B one value per channel",
        ));
    }
    let eps = T::from_f64(f64::from(ctx.attr_float("epsilon", 1e-5)?));
    for mut img in x3.outer_iter_mut() {
        for (ci, mut lane) in img.outer_iter_mut().enumerate() {
            let v: Vec<T> = lane.iter().copied().collect();
            let (m, var) = moments(&v);
            let (s, b) = (scale[[ci]], bias[[ci]]);
            let inv = (var + eps).sqrt();
            lane.mapv_inplace(|x| (x - m) / inv * s + b);
        }
    }
    let y = x3
        .into_shape_with_order(IxDyn(&xs))
        .map_err(|e| internal(ctx, e))?;
    Ok(vec![T::wrap(y)])
}

pub fn instance_normalization(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, instance_norm_t::<f32>, instance_norm_t::<f64>)
}

/// LayerNormalization in `T`: `(Y, Mean, InvStdDev)`.
fn layer_norm_t<T: Real>(ctx: &OpCtx<'_>) -> Result<(ArrayD<T>, ArrayD<T>, ArrayD<T>)> {
    let x = real_input::<T>(ctx, 0)?;
    let scale = real_input::<T>(ctx, 1)?;
    let bias = real_input_opt::<T>(ctx, 2)?;
    let xs = x.shape().to_vec();
    let rank = xs.len();
    if rank == 0 {
        return Err(ctx.err("X is a scalar", "Give X of rank >= 1"));
    }
    let axis = ctx.axis(ctx.attr_int("axis", -1)?, rank)?;
    let eps = T::from_f64(f64::from(ctx.attr_float("epsilon", 1e-5)?));
    let rows = checked_product(ctx, &xs[..axis])?;
    let cols = checked_product(ctx, &xs[axis..])?;
    let mut x2 = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((rows, cols))
        .map_err(|e| internal(ctx, e))?;
    let mut means = Vec::with_capacity(rows);
    let mut invs = Vec::with_capacity(rows);
    for mut row in x2.outer_iter_mut() {
        let v: Vec<T> = row.iter().copied().collect();
        let (m, var) = moments(&v);
        let inv = T::ONE / (var + eps).sqrt();
        row.mapv_inplace(|x| (x - m) * inv);
        means.push(m);
        invs.push(inv);
    }
    let mut y = x2
        .into_shape_with_order(IxDyn(&xs))
        .map_err(|e| internal(ctx, e))?;
    let fit = |p: &ArrayViewD<'_, T>, name: &str| {
        p.broadcast(IxDyn(&xs))
            .map(|b| b.to_owned())
            .ok_or_else(|| {
                ctx.err(
                    format!(
                        "{name} of shape {:?} does not broadcast to X {xs:?}",
                        p.shape()
                    ),
                    format!("Give {name} the shape X.shape[axis..]"),
                )
            })
    };
    let s = fit(&scale.view(), "Scale")?;
    y = y * &s;
    if let Some(b) = &bias {
        y += &fit(&b.view(), "B")?;
    }
    let stat_shape: Vec<usize> = xs
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < axis { d } else { 1 })
        .collect();
    let mean = ArrayD::from_shape_vec(IxDyn(&stat_shape), means).map_err(|e| internal(ctx, e))?;
    let inv = ArrayD::from_shape_vec(IxDyn(&stat_shape), invs).map_err(|e| internal(ctx, e))?;
    Ok((y, mean, inv))
}

pub fn layer_normalization(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let stash = ctx.attr_int("stash_type", 1)?;
    if stash != 1 && stash != 16 {
        return Err(ctx.err(
            format!("stash_type {stash} is not supported"),
            "Use stash_type 1 (float32) or 16 (bfloat16)",
        ));
    }
    let stat = |a: ArrayD<f32>| -> Value {
        if stash == 16 {
            Value::BF16(a.mapv(half::bf16::from_f32))
        } else {
            Value::F32(a)
        }
    };
    match x {
        Value::F64(_) => {
            let (y, m, i) = layer_norm_t::<f64>(ctx)?;
            Ok(vec![
                Value::F64(y),
                stat(m.mapv(|v| v as f32)),
                stat(i.mapv(|v| v as f32)),
            ])
        }
        Value::F32(_) | Value::F16(_) | Value::BF16(_) => {
            let (y, m, i) = layer_norm_t::<f32>(ctx)?;
            Ok(vec![from_f32_like(x, y), stat(m), stat(i)])
        }
        other => Err(ctx.bad_dtype(0, other)),
    }
}

fn group_norm_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = real_input::<T>(ctx, 0)?;
    let scale = real_input::<T>(ctx, 1)?;
    let bias = real_input::<T>(ctx, 2)?;
    let xs = x.shape().to_vec();
    let mut x3 = as_ncs(ctx, x.view())?;
    let c = xs[1];
    let Some(g) = ctx.node.attr_int("num_groups")? else {
        return Err(ctx.err(
            "attribute 'num_groups' is missing",
            "Give num_groups (it is required)",
        ));
    };
    let g = usize::try_from(g)
        .ok()
        .filter(|&g| g >= 1 && c % g == 0)
        .ok_or_else(|| {
            ctx.err(
                format!("num_groups = {g} does not divide C = {c}"),
                "Use a divisor of C",
            )
        })?;
    let per = c / g;
    // Opset 18 takes scale/bias per group; 21 per channel. A per-channel pair is accepted at
    // 18 too (exporters wrote it that way).
    let per_group = ctx.opset < 21 && scale.shape() == [g];
    let want = if per_group { g } else { c };
    if scale.shape() != [want] || bias.shape() != [want] {
        return Err(ctx.err(
            format!(
                "scale {:?} and bias {:?} must be [{want}]",
                scale.shape(),
                bias.shape()
            ),
            if ctx.opset < 21 {
                "Give scale and bias one value per group (opset 18)"
            } else {
                "Give scale and bias one value per channel (opset 21)"
            },
        ));
    }
    let eps = T::from_f64(f64::from(ctx.attr_float("epsilon", 1e-5)?));
    for mut img in x3.outer_iter_mut() {
        for gi in 0..g {
            let mut grp = img.slice_mut(ndarray::s![gi * per..(gi + 1) * per, ..]);
            let v: Vec<T> = grp.iter().copied().collect();
            let (m, var) = moments(&v);
            let sd = (var + eps).sqrt();
            for (k, mut lane) in grp.outer_iter_mut().enumerate() {
                let ci = if per_group { gi } else { gi * per + k };
                let (s, b) = (scale[[ci]], bias[[ci]]);
                lane.mapv_inplace(|x| (x - m) / sd * s + b);
            }
        }
    }
    let y = x3
        .into_shape_with_order(IxDyn(&xs))
        .map_err(|e| internal(ctx, e))?;
    Ok(vec![T::wrap(y)])
}

pub fn group_normalization(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, group_norm_t::<f32>, group_norm_t::<f64>)
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use kiln_onnx::{AttrValue, Node};

    // Expected values: onnx 1.23.2's numpy reference (ReferenceEvaluator) on the same inputs,
    // or numpy directly for GroupNormalization (a function op without a reference kernel).
    fn bn_inputs() -> [Value; 5] {
        [
            f32s(&[2, 2, 2], &[1., 2., 3., 5., 0., -1., 4., 8.]),
            f32s(&[2], &[1.5, -1.]),
            f32s(&[2], &[0.5, 2.]),
            f32s(&[2], &[1., 4.]),
            f32s(&[2], &[0.25, 4.]),
        ]
    }

    fn with_outputs(mut n: Node, k: usize) -> Node {
        n.outputs = (0..k).map(|i| format!("o{i}")).collect();
        n
    }

    #[test]
    fn batch_norm_inference_and_training() {
        let i = bn_inputs();
        let args: Vec<Option<&Value>> = i.iter().map(Some).collect();
        let n = node("BatchNormalization", &[("epsilon", AttrValue::Float(0.0))]);
        let y = run(batch_normalization, &n, 15, &args).unwrap();
        close(
            &y[0],
            &[2, 2, 2],
            &[0.5, 3.5, 2.5, 1.5, -2.5, -5.5, 2.0, 0.0],
            1e-6,
        );
        // Opset 6/7/9 inference gives the same Y.
        for op in [6, 7, 9] {
            let y = run(batch_normalization, &n, op, &args).unwrap();
            close(
                &y[0],
                &[2, 2, 2],
                &[0.5, 3.5, 2.5, 1.5, -2.5, -5.5, 2.0, 0.0],
                1e-6,
            );
        }
        // Training outputs before 14 are refused.
        assert!(run(batch_normalization, &with_outputs(n.clone(), 5), 9, &args).is_err());
        let n = node(
            "BatchNormalization",
            &[
                ("training_mode", AttrValue::Int(1)),
                ("momentum", AttrValue::Float(0.5)),
            ],
        );
        let y = run(batch_normalization, &n, 15, &args).unwrap();
        #[rustfmt::skip]
        let want = [1.1708177, 2.5124533, 3.0690434, 2.0, -0.17081773, -1.5124533, 2.5345216, 0.39643478];
        close(&y[0], &[2, 2, 2], &want, 1e-5);
        close(&y[1], &[2], &[0.75, 4.5], 1e-6);
        close(&y[2], &[2], &[0.75, 3.75], 1e-6);
    }

    #[test]
    fn batch_norm_spatial0_f64_and_errors() {
        // spatial = 0 (opset 7): parameters per element of X.shape[1..]; by hand.
        let x = f64s(&[1, 2, 2], &[1., 2., 3., 4.]);
        let p = |v: [f64; 4]| f64s(&[2, 2], &v);
        let (s, b, m, v) = (p([1., 2., 3., 4.]), p([0.; 4]), p([1.; 4]), p([1.; 4]));
        let n = node(
            "BatchNormalization",
            &[
                ("spatial", AttrValue::Int(0)),
                ("epsilon", AttrValue::Float(0.0)),
            ],
        );
        let y = run(
            batch_normalization,
            &n,
            7,
            &[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)],
        )
        .unwrap();
        assert_eq!(y[0], f64s(&[1, 2, 2], &[0., 2., 6., 12.]));
        let bad = f64s(&[3], &[1., 1., 1.]);
        assert!(
            run(
                batch_normalization,
                &n,
                15,
                &[Some(&x), Some(&bad), Some(&b), Some(&m), Some(&v)]
            )
            .is_err()
        );
        assert!(run(batch_normalization, &n, 15, &[Some(&x), Some(&s)]).is_err());
    }

    #[test]
    fn instance_norm() {
        let i = bn_inputs();
        let n = node("InstanceNormalization", &[]);
        let y = run(
            instance_normalization,
            &n,
            6,
            &[Some(&i[0]), Some(&i[1]), Some(&i[2])],
        )
        .unwrap();
        #[rustfmt::skip]
        let want = [-0.99996996, 1.99997, 2.999995, 1.000005, 1.99997, -0.99996996, 2.9999988, 1.0000012];
        close(&y[0], &[2, 2, 2], &want, 1e-5);
        assert!(
            run(
                instance_normalization,
                &n,
                6,
                &[Some(&i[0]), Some(&i[0]), Some(&i[2])]
            )
            .is_err()
        );
    }

    #[test]
    fn layer_norm_axes_outputs_types() {
        let Value::F32(a) = iota(&[2, 3, 2]) else {
            panic!()
        };
        let x = Value::F32(a * &ndarray::arr1(&[1.0f32, -2.0]));
        let s = f32s(&[2], &[1., 2.]);
        let b = f32s(&[2], &[0., 1.]);
        let n = node("LayerNormalization", &[]);
        let y = run(layer_normalization, &n, 17, &[Some(&x), Some(&s), Some(&b)]).unwrap();
        let want: Vec<f64> = (0..6).flat_map(|_| [1.0, -1.0]).collect();
        close(&y[0], &[2, 3, 2], &want, 1e-5);
        close(&y[1], &[2, 3, 1], &[-1., -2., -3., -4., -5., -6.], 1e-6);
        #[rustfmt::skip]
        let inv = [0.999995, 0.24999994, 0.14285712, 0.1, 0.07692307, 0.0625];
        close(&y[2], &[2, 3, 1], &inv, 1e-6);
        let s = f32s(&[3, 1], &[1., 2., 3.]);
        let n = node(
            "LayerNormalization",
            &[
                ("axis", AttrValue::Int(1)),
                ("epsilon", AttrValue::Float(0.5)),
            ],
        );
        let y = run(layer_normalization, &n, 17, &[Some(&x), Some(&s)]).unwrap();
        #[rustfmt::skip]
        let want = [0.41552603, 0.0, 1.6621041, -1.6621041, 3.7397342, -4.9863124, 0.8287639,
                    -0.67807955, 1.9588964, -1.9588964, 3.3903975, -3.8424506];
        close(&y[0], &[2, 3, 2], &want, 1e-5);
        close(&y[1], &[2, 1, 1], &[-2., -5.], 1e-6);
        close(&y[2], &[2, 1, 1], &[0.20776302, 0.07534217], 1e-6);
        // f16 X: Y is f16, the statistics float32 (stash_type 1); stash_type 16: bfloat16.
        let Value::F32(a) = &x else { panic!() };
        let h = Value::F16(a.mapv(half::f16::from_f32));
        let n = node("LayerNormalization", &[("stash_type", AttrValue::Int(16))]);
        let y = run(
            layer_normalization,
            &n,
            17,
            &[Some(&h), Some(&f32s(&[2], &[1., 1.]))],
        )
        .unwrap();
        assert!(matches!(y[0], Value::F16(_)) && matches!(y[1], Value::BF16(_)));
        let xd = f64s(&[1, 2], &[1., 3.]);
        let y = run(
            layer_normalization,
            &node("LayerNormalization", &[]),
            17,
            &[Some(&xd), Some(&f64s(&[2], &[1., 1.]))],
        )
        .unwrap();
        assert!(matches!(y[0], Value::F64(_)) && matches!(y[1], Value::F32(_)));
        close(&y[0], &[1, 2], &[-0.999995, 0.999995], 1e-6);
        let bad = f32s(&[3], &[1., 1., 1.]);
        assert!(
            run(
                layer_normalization,
                &node("LayerNormalization", &[]),
                17,
                &[Some(&x), Some(&bad)]
            )
            .is_err()
        );
        let n = node("LayerNormalization", &[("stash_type", AttrValue::Int(11))]);
        assert!(run(layer_normalization, &n, 17, &[Some(&x), Some(&s)]).is_err());
    }

    #[test]
    fn group_norm_18_and_21() {
        let x = f64s(&[1, 4, 2], &[0., 1., 2., 3., 4., 6., 8., 10.]);
        let n = node("GroupNormalization", &[("num_groups", AttrValue::Int(2))]);
        let (s, b) = (f64s(&[2], &[2., -1.]), f64s(&[2], &[1., 0.]));
        let y = run(group_normalization, &n, 18, &[Some(&x), Some(&s), Some(&b)]).unwrap();
        #[rustfmt::skip]
        let want = [-1.6832708399378538, 0.105576386687382, 1.894423613312618, 3.6832708399378538,
                    1.3416394448610998, 0.4472131482870333, -0.4472131482870333, -1.3416394448610998];
        close(&y[0], &[1, 4, 2], &want, 1e-12);
        // Per-group parameters are refused at 21.
        assert!(run(group_normalization, &n, 21, &[Some(&x), Some(&s), Some(&b)]).is_err());
        let (s, b) = (f64s(&[4], &[1., 2., 3., 4.]), f64s(&[4], &[0., 0., 1., 1.]));
        let y = run(group_normalization, &n, 21, &[Some(&x), Some(&s), Some(&b)]).unwrap();
        #[rustfmt::skip]
        let want = [-1.3416354199689269, -0.447211806656309, 0.894423613312618, 2.6832708399378538,
                    -3.0249183345832993, -0.34163944486109976, 2.788852593148133, 6.366557779444399];
        close(&y[0], &[1, 4, 2], &want, 1e-12);
        let n3 = node("GroupNormalization", &[("num_groups", AttrValue::Int(3))]);
        assert!(
            run(
                group_normalization,
                &n3,
                21,
                &[Some(&x), Some(&s), Some(&b)]
            )
            .is_err()
        );
        let n0 = node("GroupNormalization", &[]);
        assert!(
            run(
                group_normalization,
                &n0,
                21,
                &[Some(&x), Some(&s), Some(&b)]
            )
            .is_err()
        );
    }
}
