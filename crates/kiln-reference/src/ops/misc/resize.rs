//! Resize: nearest, (multi-)linear and cubic interpolation.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Resize.html>.
//!
//! Opset history:
//! - 10: inputs X, scales; `mode` nearest | linear; coordinates as `asymmetric`, nearest
//!   rounds down.
//! - 11: inputs X, roi, scales, sizes (exactly one of scales / sizes); `mode` adds cubic;
//!   `coordinate_transformation_mode` (half_pixel default, pytorch_half_pixel, align_corners,
//!   asymmetric, tf_crop_and_resize), `nearest_mode` (round_prefer_floor default,
//!   round_prefer_ceil, floor, ceil), `cubic_coeff_a` (-0.75), `exclude_outside`,
//!   `extrapolation_value` (tf_crop_and_resize only).
//! - 13: roi and scales become optional; bfloat16.
//! - 18: `antialias` (linear and cubic: the kernel widens by 1/scale when downsampling), `axes`,
//!   `keep_aspect_ratio_policy` (stretch, not_larger, not_smaller, with `sizes`).
//! - 19: coordinate mode `half_pixel_symmetric`.
//!
//! Interpolation is separable: kiln resizes one axis at a time. Along an axis each output
//! position `x` maps to `x_ori` in the input; with `r = x_ori - xl` in (0, 1] (xl the integer
//! to its left, r = 1 when x_ori is an integer) the kernel's taps sit at `xl + j`; indices past
//! the edge are clamped (or dropped and the weights renormalised with `exclude_outside`).

use ndarray::{ArrayD, Axis, IxDyn};

use super::common::{from_f64_like, to_f64_array};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

/// What one output position along an axis reads.
enum Taps {
    Weights(Vec<(usize, f64)>),
    Extrapolate,
}

struct AxisPlan {
    in_len: usize,
    out_len: usize,
    scale: f64,
    roi: (f64, f64),
}

struct Settings {
    mode: Mode,
    coord: String,
    nearest: String,
    a: f64,
    exclude_outside: bool,
    antialias: bool,
    extrapolation: f64,
}

fn x_original(s: &Settings, p: &AxisPlan, x: f64) -> Option<f64> {
    let in_w = p.in_len as f64;
    let out_w = p.scale * in_w;
    let v = match s.coord.as_str() {
        "align_corners" => {
            if out_w == 1.0 {
                0.0
            } else {
                x * (in_w - 1.0) / (out_w - 1.0)
            }
        }
        "asymmetric" => x / p.scale,
        "tf_crop_and_resize" => {
            let (start, end) = p.roi;
            let v = if out_w == 1.0 {
                (end - start) * (in_w - 1.0) / 2.0
            } else {
                x * (end - start) * (in_w - 1.0) / (out_w - 1.0)
            } + start * (in_w - 1.0);
            if v < 0.0 || v > in_w - 1.0 {
                return None;
            }
            v
        }
        "pytorch_half_pixel" => {
            if out_w == 1.0 {
                -0.5
            } else {
                (x + 0.5) / p.scale - 0.5
            }
        }
        "half_pixel_symmetric" => {
            let adjustment = p.out_len as f64 / out_w;
            let center = in_w / 2.0;
            center * (1.0 - adjustment) + (x + 0.5) / p.scale - 0.5
        }
        _ => (x + 0.5) / p.scale - 0.5,
    };
    Some(v)
}

fn cubic(a: f64, x: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

fn taps(s: &Settings, p: &AxisPlan, out_i: usize) -> Taps {
    let Some(x) = x_original(s, p, out_i as f64) else {
        return Taps::Extrapolate;
    };
    let fl = x.floor();
    let (xl, r) = if x == fl {
        (fl - 1.0, 1.0)
    } else {
        (fl, x - fl)
    };
    // (offset from xl, weight) pairs.
    let mut w: Vec<(i64, f64)> = match s.mode {
        Mode::Nearest => {
            let right = match s.nearest.as_str() {
                _ if r == 1.0 => true,
                "round_prefer_ceil" => r >= 0.5,
                "floor" => false,
                "ceil" => true,
                _ => r > 0.5,
            };
            vec![(if right { 1 } else { 0 }, 1.0)]
        }
        Mode::Linear if s.antialias && p.scale < 1.0 => {
            let k = p.scale;
            let start = (-1.0 / k).floor() as i64 + 1;
            let n = 2 - 2 * start;
            (start..start + n)
                .map(|j| (j, (1.0 - ((j as f64 - r) * k).abs()).clamp(0.0, 1.0)))
                .collect()
        }
        Mode::Linear => vec![(0, 1.0 - r), (1, r)],
        Mode::Cubic => {
            let k = if s.antialias { p.scale.min(1.0) } else { 1.0 };
            let start = (-2.0 / k).floor() as i64 + 1;
            let end = 2 - start;
            (start..end)
                .map(|j| (j, cubic(s.a, k * (j as f64 - r))))
                .collect()
        }
    };
    if s.antialias && s.mode != Mode::Nearest {
        let sum: f64 = w.iter().map(|(_, v)| v).sum();
        if sum != 0.0 {
            for (_, v) in &mut w {
                *v /= sum;
            }
        }
    }
    let last = p.in_len as i64 - 1;
    let xl = xl as i64;
    let mut out: Vec<(usize, f64)> = Vec::with_capacity(w.len());
    let mut kept = 0.0;
    for (j, v) in w {
        let idx = xl + j;
        if s.exclude_outside && (idx < 0 || idx > last) {
            continue;
        }
        kept += v;
        out.push((idx.clamp(0, last.max(0)) as usize, v));
    }
    if s.exclude_outside && kept != 0.0 {
        for (_, v) in &mut out {
            *v /= kept;
        }
    }
    Taps::Weights(out)
}

fn resize_axis(a: &ArrayD<f64>, axis: usize, s: &Settings, p: &AxisPlan) -> ArrayD<f64> {
    let mut shape = a.shape().to_vec();
    shape[axis] = p.out_len;
    let mut out = ArrayD::<f64>::zeros(IxDyn(&shape));
    let plan: Vec<Taps> = (0..p.out_len).map(|i| taps(s, p, i)).collect();
    for (lane_in, mut lane_out) in a
        .lanes(Axis(axis))
        .into_iter()
        .zip(out.lanes_mut(Axis(axis)))
    {
        for (o, t) in lane_out.iter_mut().zip(&plan) {
            *o = match t {
                Taps::Extrapolate => s.extrapolation,
                Taps::Weights(w) => w.iter().map(|&(i, v)| lane_in[i] * v).sum(),
            };
        }
    }
    out
}

fn floats(ctx: &OpCtx<'_>, i: usize) -> Result<Option<Vec<f64>>> {
    match ctx.input(i) {
        Some(v) if !v.is_empty() => {
            if !v.dtype().is_float() {
                return Err(ctx.bad_dtype(i, v));
            }
            Ok(Some(v.to_f64_vec()))
        }
        _ => Ok(None),
    }
}

pub fn resize(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let rank = x.shape().len();
    let in_shape = x.shape().to_vec();
    let old = ctx.opset < 11;
    let mode = match ctx.attr_string("mode", "nearest")?.as_str() {
        "nearest" => Mode::Nearest,
        "linear" | "bilinear" | "trilinear" => Mode::Linear,
        "cubic" | "bicubic" if !old => Mode::Cubic,
        other => {
            return Err(ctx.err(
                format!("mode '{other}' is unknown"),
                "Use nearest, linear or cubic",
            ));
        }
    };
    let s = Settings {
        mode,
        coord: if old {
            "asymmetric".into()
        } else {
            ctx.attr_string("coordinate_transformation_mode", "half_pixel")?
        },
        nearest: if old {
            "floor".into()
        } else {
            ctx.attr_string("nearest_mode", "round_prefer_floor")?
        },
        a: f64::from(ctx.attr_float("cubic_coeff_a", -0.75)?),
        exclude_outside: ctx.attr_int("exclude_outside", 0)? != 0,
        antialias: ctx.attr_int("antialias", 0)? != 0,
        extrapolation: f64::from(ctx.attr_float("extrapolation_value", 0.0)?),
    };
    let known_coords = [
        "half_pixel",
        "half_pixel_symmetric",
        "pytorch_half_pixel",
        "align_corners",
        "asymmetric",
        "tf_crop_and_resize",
    ];
    if !known_coords.contains(&s.coord.as_str()) {
        return Err(ctx.err(
            format!("coordinate_transformation_mode '{}' is unknown", s.coord),
            format!("Use one of {known_coords:?}"),
        ));
    }
    let axes: Vec<usize> = match ctx.attr_ints("axes")? {
        Some(v) if ctx.opset >= 18 => v
            .iter()
            .map(|&a| ctx.axis(a, rank))
            .collect::<Result<_>>()?,
        _ => (0..rank).collect(),
    };
    let (roi, scales, sizes) = if old {
        (None, floats(ctx, 1)?, None)
    } else {
        let sizes = match ctx.input(3) {
            Some(v) if !v.is_empty() => Some(ctx.input_i64s(3)?),
            _ => None,
        };
        (floats(ctx, 1)?, floats(ctx, 2)?, sizes)
    };
    let n = axes.len();
    let mut scale = vec![1.0f64; rank];
    let mut out_len = in_shape.clone();
    match (scales, sizes) {
        (Some(sc), None) => {
            if sc.len() != n {
                return Err(ctx.err(
                    format!("scales has {} values for {n} axes", sc.len()),
                    "Give one scale per resized axis",
                ));
            }
            for (k, &ax) in axes.iter().enumerate() {
                if sc[k].is_nan() || sc[k] <= 0.0 {
                    return Err(ctx.err(
                        format!("scale {} is not positive", sc[k]),
                        "Give positive scales",
                    ));
                }
                scale[ax] = sc[k];
                let o = (sc[k] * in_shape[ax] as f64).floor();
                if o > (1u64 << 32) as f64 {
                    return Err(ctx.err("the output is too large", "Use smaller scales"));
                }
                out_len[ax] = o as usize;
            }
        }
        (None, Some(sz)) => {
            if sz.len() != n {
                return Err(ctx.err(
                    format!("sizes has {} values for {n} axes", sz.len()),
                    "Give one size per resized axis",
                ));
            }
            for (k, &ax) in axes.iter().enumerate() {
                let o = usize::try_from(sz[k])
                    .ok()
                    .filter(|&o| o <= 1 << 32)
                    .ok_or_else(|| {
                        ctx.err(format!("size {} is invalid", sz[k]), "Give sizes >= 0")
                    })?;
                out_len[ax] = o;
                scale[ax] = o as f64 / in_shape[ax].max(1) as f64;
            }
            let policy = ctx.attr_string("keep_aspect_ratio_policy", "stretch")?;
            if policy != "stretch" {
                let pick = axes.iter().map(|&ax| scale[ax]);
                let sc = match policy.as_str() {
                    "not_larger" => pick.fold(f64::INFINITY, f64::min),
                    "not_smaller" => pick.fold(0.0, f64::max),
                    other => {
                        return Err(ctx.err(
                            format!("keep_aspect_ratio_policy '{other}' is unknown"),
                            "Use stretch, not_larger or not_smaller",
                        ));
                    }
                };
                for &ax in &axes {
                    scale[ax] = sc;
                    out_len[ax] = (sc * in_shape[ax] as f64 + 0.5) as usize;
                }
            }
        }
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                "both scales and sizes are given",
                "Give exactly one of them",
            ));
        }
        (None, None) => {
            return Err(ctx.err("neither scales nor sizes is given", "Give one of them"));
        }
    }
    let mut roi_per_axis = vec![(0.0, 1.0); rank];
    if s.coord == "tf_crop_and_resize" {
        let r = roi.ok_or_else(|| ctx.err("tf_crop_and_resize needs the roi input", "Give roi"))?;
        if r.len() != 2 * n {
            return Err(ctx.err(
                format!("roi has {} values for {n} axes", r.len()),
                "Give starts then ends, one per resized axis",
            ));
        }
        for (k, &ax) in axes.iter().enumerate() {
            roi_per_axis[ax] = (r[k], r[n + k]);
        }
    }
    let mut a = to_f64_array(x);
    for &ax in &axes {
        let p = AxisPlan {
            in_len: in_shape[ax],
            out_len: out_len[ax],
            scale: scale[ax],
            roi: roi_per_axis[ax],
        };
        let trivial = p.out_len == p.in_len && (p.scale - 1.0).abs() < 1e-12 && p.roi == (0.0, 1.0);
        if trivial {
            continue;
        }
        if p.in_len == 0 {
            return Err(ctx.err(format!("axis {ax} is empty"), "Resize needs non-empty axes"));
        }
        a = resize_axis(&a, ax, &s, &p);
    }
    Ok(vec![from_f64_like(x, a)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::misc::test_util::{node, run_op};

    fn img(v: Vec<f32>, h: usize, w: usize) -> Value {
        Value::F32(ArrayD::from_shape_vec(vec![1, 1, h, w], v).unwrap())
    }

    fn f(v: Vec<f32>) -> Value {
        Value::F32(ArrayD::from_shape_vec(vec![v.len()], v).unwrap())
    }

    #[test]
    fn nearest_upsample_by_two() {
        let x = img(vec![1., 2., 3., 4.], 2, 2);
        let sc = f(vec![1., 1., 2., 2.]);
        let out = run_op(
            resize,
            &node("Resize", &[]),
            13,
            &[Some(&x), None, Some(&sc)],
        )
        .unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 4, 4]);
        assert_eq!(
            out[0].to_f64_vec(),
            vec![
                1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.
            ]
        );
    }

    #[test]
    fn linear_half_pixel_and_align_corners() {
        let x = Value::F32(ArrayD::from_shape_vec(vec![2], vec![0., 4.]).unwrap());
        let sc = f(vec![2.0]);
        let n = node("Resize", &[("mode", "linear".into())]);
        let out = run_op(resize, &n, 13, &[Some(&x), None, Some(&sc)]).unwrap();
        // half_pixel: x_ori = -0.25, 0.25, 0.75, 1.25 -> clamped edges
        assert_eq!(out[0].to_f64_vec(), vec![0., 1., 3., 4.]);
        let n = node(
            "Resize",
            &[
                ("mode", "linear".into()),
                ("coordinate_transformation_mode", "align_corners".into()),
            ],
        );
        let sz = Value::I64(ArrayD::from_shape_vec(vec![1], vec![3]).unwrap());
        let out = run_op(resize, &n, 13, &[Some(&x), None, None, Some(&sz)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![0., 2., 4.]);
    }

    #[test]
    fn cubic_on_a_line_is_exact_inside() {
        // Cubic convolution reproduces linear data away from the edges.
        let x =
            Value::F64(ArrayD::from_shape_vec(vec![8], (0..8).map(f64::from).collect()).unwrap());
        let sc = f(vec![2.0]);
        let n = node(
            "Resize",
            &[
                ("mode", "cubic".into()),
                ("coordinate_transformation_mode", "asymmetric".into()),
            ],
        );
        let out = run_op(resize, &n, 13, &[Some(&x), None, Some(&sc)]).unwrap();
        let v = out[0].to_f64_vec();
        for (i, got) in v.iter().enumerate().take(12).skip(2) {
            assert!((got - i as f64 / 2.0).abs() < 1e-9, "{i}: {got}");
        }
    }

    #[test]
    fn bad_arguments() {
        let x = img(vec![1., 2., 3., 4.], 2, 2);
        let n = node("Resize", &[]);
        assert!(run_op(resize, &n, 13, &[Some(&x)]).is_err());
        let sc = f(vec![1., 2.]);
        assert!(run_op(resize, &n, 13, &[Some(&x), None, Some(&sc)]).is_err());
        let n = node("Resize", &[("mode", "area".into())]);
        let sc = f(vec![1., 1., 2., 2.]);
        assert!(run_op(resize, &n, 13, &[Some(&x), None, Some(&sc)]).is_err());
    }
}
