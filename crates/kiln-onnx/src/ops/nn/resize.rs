//! [Resize](https://onnx.ai/onnx/operators/onnx__Resize.html): 10, 11, 13, 18, 19.
//!
//! - 10: inputs X and `scales` (one per dim).
//! - 11: X, `roi`, `scales`, optional `sizes`; exactly one of scales and sizes is used (an
//!   empty scales tensor marks "use sizes"). `roi` matters only for
//!   `coordinate_transformation_mode` = tf_crop_and_resize.
//! - 13: roi and scales become optional too.
//! - 18: `axes` (the dims that scales/sizes/roi refer to; the others keep their size) and
//!   `keep_aspect_ratio_policy` for sizes: stretch (default), not_larger, not_smaller.
//! - 19: the half_pixel_symmetric coordinate mode (values only).
//!
//! Output dims: `sizes[i]` under stretch; else `round(scale * D)` with `scale` the min
//! (not_larger) or max (not_smaller) of `sizes[i] / D` over the axes, rounding halves up. From
//! scales: `floor(D * scale)`, times `roi_end - roi_start` under tf_crop_and_resize. Scales and
//! sizes are read from constants (sizes also from symbolic values such as `Shape -> Concat`);
//! when not known, the resized dims are unknown. A symbolic dim with scale 1 is kept.

use kiln_core::{Dim, Shape};

use super::common::{const_floats, expect_outputs, input_as_dims, normalize_axes, string_attr};
use crate::error::Result;
use crate::ops::{Fact, InferCtx, OpDef};

/// Whether optional input `i` is given and not an empty tensor.
fn given(ctx: &InferCtx<'_>, i: usize) -> bool {
    if ctx.input(i).is_none() {
        return false;
    }
    let empty_shape = ctx
        .input_shape(i)
        .is_some_and(|s| s.element_count().ok().flatten() == Some(0));
    let empty_const = ctx.const_input(i).is_some_and(|t| t.is_empty());
    !(empty_shape || empty_const)
}

/// Checks that scales/sizes/roi hold `want` values (`per` per axis).
fn check_len(ctx: &InferCtx<'_>, what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(ctx.err(
            format!("{what} has {got} values; {want} were expected (one per resized axis)"),
            format!("Give {what} one value per axis of X (or per entry of 'axes')"),
        ));
    }
    Ok(())
}

/// A float size as a dim, failing on NaN, infinities and negatives.
fn float_dim(ctx: &InferCtx<'_>, v: f32) -> Result<Dim> {
    if !(0.0..9.0e15).contains(&v) {
        return Err(ctx.err(
            format!("the output size computes to {v}"),
            "Fix the scales or sizes",
        ));
    }
    Ok(Dim::Known(v as usize))
}

fn infer_resize(ctx: &mut InferCtx<'_>) -> Result<()> {
    match ctx.opset {
        ..=10 => ctx.expect_inputs(2, 2)?,
        11 | 12 => ctx.expect_inputs(3, 4)?,
        _ => ctx.expect_inputs(1, 4)?,
    }
    expect_outputs(ctx, 1, 1)?;
    let (roi_at, scales_at, sizes_at) = if ctx.opset <= 10 {
        (None, 1, 9)
    } else {
        (Some(1), 2, 3)
    };
    let mode = string_attr(ctx, "mode", "nearest")?;
    if !matches!(mode.as_str(), "nearest" | "linear" | "cubic") {
        return Err(ctx.err(
            format!("attribute 'mode' is '{mode}'"),
            "Use nearest, linear or cubic",
        ));
    }
    let crop =
        string_attr(ctx, "coordinate_transformation_mode", "half_pixel")? == "tf_crop_and_resize";
    let policy = if ctx.opset >= 18 {
        string_attr(ctx, "keep_aspect_ratio_policy", "stretch")?
    } else {
        "stretch".to_string()
    };
    if !matches!(policy.as_str(), "stretch" | "not_larger" | "not_smaller") {
        return Err(ctx.err(
            format!("attribute 'keep_aspect_ratio_policy' is '{policy}'"),
            "Use stretch, not_larger or not_smaller",
        ));
    }
    let x = ctx.required(0)?.clone();
    let (has_scales, has_sizes) = (given(ctx, scales_at), given(ctx, sizes_at));
    match (has_scales, has_sizes) {
        (true, true) => {
            return Err(ctx.err(
                "both scales and sizes are given",
                "Give only one of them (leave the other out or empty)",
            ));
        }
        (false, false) => {
            return Err(ctx.err(
                "neither scales nor sizes is given",
                "Give the output size as scales or sizes",
            ));
        }
        _ => {}
    }
    let Some(xs) = x.shape.clone() else {
        ctx.set_output(0, Fact::new(x.dtype, None));
        return Ok(());
    };
    let axes = match ctx.node.attr_ints("axes")? {
        Some(a) if ctx.opset >= 18 => normalize_axes(ctx, a, xs.rank())?,
        _ => (0..xs.rank()).collect(),
    };
    let mut dims = xs.0.clone();
    let in_dim = |a: usize| xs.dims().get(a).cloned().unwrap_or(Dim::Unknown);
    if has_sizes {
        let Some(sizes) = input_as_dims(ctx, sizes_at, "sizes")? else {
            for &a in &axes {
                set(&mut dims, a, Dim::Unknown);
            }
            ctx.set_output(0, Fact::new(x.dtype, Some(Shape(dims))));
            return Ok(());
        };
        check_len(ctx, "sizes", sizes.len(), axes.len())?;
        if policy == "stretch" {
            for (&a, s) in axes.iter().zip(sizes) {
                set(&mut dims, a, s);
            }
        } else {
            let ratios: Option<Vec<f32>> = axes
                .iter()
                .zip(&sizes)
                .map(|(&a, s)| Some(s.known()? as f32 / in_dim(a).known()? as f32))
                .collect();
            for &a in &axes {
                let d = match &ratios {
                    Some(r) => {
                        let fold = |f: fn(f32, f32) -> f32, init| r.iter().copied().fold(init, f);
                        let scale = if policy == "not_larger" {
                            fold(f32::min, f32::INFINITY)
                        } else {
                            fold(f32::max, 0.0)
                        };
                        let d = in_dim(a).known().unwrap_or(0) as f32;
                        float_dim(ctx, (scale * d + 0.5).floor())?
                    }
                    None => Dim::Unknown,
                };
                set(&mut dims, a, d);
            }
        }
    } else {
        let scales = const_floats(ctx, scales_at, "scales")?;
        let roi = match roi_at {
            Some(r) if crop && given(ctx, r) => const_floats(ctx, r, "roi")?,
            _ => None,
        };
        if let Some(s) = &scales {
            check_len(ctx, "scales", s.len(), axes.len())?;
            if let Some(bad) = s.iter().find(|v| v.is_nan() || **v <= 0.0) {
                return Err(ctx.err(
                    format!("scales hold {bad}; each must be positive"),
                    "Fix the scales",
                ));
            }
        }
        if let Some(r) = &roi {
            check_len(ctx, "roi", r.len(), axes.len().saturating_mul(2))?;
        }
        for (i, &a) in axes.iter().enumerate() {
            let scale = scales.as_ref().and_then(|s| s.get(i).copied());
            let extent = match (&roi, crop) {
                (_, false) => Some(1.0),
                (Some(r), true) => match (r.get(i), r.get(i + axes.len())) {
                    (Some(s), Some(e)) => Some(e - s),
                    _ => None,
                },
                (None, true) => None,
            };
            let d = match (scale, extent, in_dim(a)) {
                (Some(s), Some(e), Dim::Known(n)) => float_dim(ctx, (n as f32 * e * s).floor())?,
                (Some(s), Some(e), d) if s == 1.0 && e == 1.0 => d,
                _ => Dim::Unknown,
            };
            set(&mut dims, a, d);
        }
    }
    ctx.set_output(0, Fact::new(x.dtype, Some(Shape(dims))));
    Ok(())
}

fn set(dims: &mut [Dim], a: usize, d: Dim) {
    if let Some(slot) = dims.get_mut(a) {
        *slot = d;
    }
}

/// `Resize`
pub(super) const RESIZE: OpDef = OpDef {
    op_type: "Resize",
    domain: "",
    since_opset: 10,
    infer: infer_resize,
};

#[cfg(test)]
#[path = "resize_tests.rs"]
mod tests;
