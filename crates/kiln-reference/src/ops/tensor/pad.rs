//! Pad <https://onnx.ai/onnx/operators/onnx__Pad.html>: adds (or, with negative counts,
//! removes) elements at both ends of each axis.
//!
//! Opset history: 1 takes the counts from the `paddings` attribute and the fill from `value`
//! (float, default 0); 2 renames `paddings` to `pads`; 11 moves `pads` to an int64 input and
//! the fill to the optional input `constant_value` (of the data's type, default 0/false);
//! 13 widens the element types; 18 adds the optional `axes` input (pads then covers only those
//! axes, negative axes allowed); 19 adds `mode = "wrap"`; 21, 23, 24, 25 widen the types.
//! Counts are laid out `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]`.
//!
//! Modes, as numpy's `pad`: `constant` fills with the value; `edge` repeats the border
//! element; `reflect` mirrors without repeating the border (periodically, for pads longer
//! than the axis; an axis of length 1 repeats its element); `wrap` tiles the axis as a torus.
//! Negative counts crop first; the modes then read the cropped axis.

use ndarray::{ArrayD, Dimension, IxDyn};

use crate::error::Result;
use crate::map_array;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::{Elem, checked_numel, norm_axes, same_type};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// For one axis of length `dim`: the source index of each output index (`None` = fill).
fn axis_table(
    ctx: &OpCtx<'_>,
    axis: usize,
    dim: usize,
    begin: i64,
    end: i64,
    mode: Mode,
) -> Result<Vec<Option<usize>>> {
    let too_big = || {
        ctx.err(
            format!("pads ({begin}, {end}) of axis {axis} are too large"),
            "Check the pads",
        )
    };
    let crop_b = usize::try_from(begin.min(0).unsigned_abs()).map_err(|_| too_big())?;
    let crop_e = usize::try_from(end.min(0).unsigned_abs()).map_err(|_| too_big())?;
    let add_b = usize::try_from(begin.max(0)).map_err(|_| too_big())?;
    let add_e = usize::try_from(end.max(0)).map_err(|_| too_big())?;
    let n = crop_b
        .checked_add(crop_e)
        .and_then(|c| dim.checked_sub(c))
        .ok_or_else(|| {
            ctx.err(
                format!("pads ({begin}, {end}) crop more than the {dim} elements of axis {axis}"),
                "Give negative pads that remove at most the axis length",
            )
        })?;
    let out = n
        .checked_add(add_b)
        .and_then(|x| x.checked_add(add_e))
        .ok_or_else(too_big)?;
    checked_numel(ctx, &[out])?;
    if n == 0 && out > 0 && mode != Mode::Constant {
        return Err(ctx.err(
            format!("axis {axis} is empty, so {mode:?} mode has nothing to pad with"),
            "Use constant mode for empty axes",
        ));
    }
    let (n_i, b_i) = (n as i128, add_b as i128);
    let table = (0..out)
        .map(|o| {
            let c = o as i128 - b_i; // index into the cropped axis
            let src = if (0..n_i).contains(&c) {
                Some(c)
            } else {
                match mode {
                    Mode::Constant => None,
                    Mode::Edge => Some(c.clamp(0, n_i - 1)),
                    Mode::Wrap => Some(c.rem_euclid(n_i)),
                    Mode::Reflect if n_i == 1 => Some(0),
                    Mode::Reflect => {
                        let p = 2 * (n_i - 1);
                        let m = c.rem_euclid(p);
                        Some(if m >= n_i { p - m } else { m })
                    }
                }
            };
            src.and_then(|s| usize::try_from(s).ok())
                .map(|s| s + crop_b)
        })
        .collect();
    Ok(table)
}

fn pad_typed<T: Elem>(a: &ArrayD<T>, tables: &[Vec<Option<usize>>], fill: T) -> ArrayD<T> {
    let shape: Vec<usize> = tables.iter().map(Vec::len).collect();
    let mut src = IxDyn(&vec![0; a.ndim()]);
    ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        for ((s, t), &o) in src.slice_mut().iter_mut().zip(tables).zip(idx.slice()) {
            match t.get(o).copied().flatten() {
                Some(i) => *s = i,
                None => return fill.clone(),
            }
        }
        // The tables index inside `a`, so `get` always finds an element.
        a.get(&src).cloned().unwrap_or_else(|| fill.clone())
    })
}

/// The fill value of constant mode for data `a`: `value` attribute (before 11) or the
/// optional `constant_value` input (checked in every mode). `_a` fixes the element type.
fn fill_value<T: Elem>(ctx: &OpCtx<'_>, _a: &ArrayD<T>, data: &Value) -> Result<T> {
    if ctx.opset < 11 {
        return Ok(T::from_f64(f64::from(ctx.attr_float("value", 0.0)?)));
    }
    if ctx.input(2).is_none() {
        return Ok(T::default());
    }
    let c = same_type::<T>(ctx, 2, data)?;
    match c.len() {
        1 => Ok(c.iter().next().cloned().unwrap_or_default()),
        0 => Ok(T::default()),
        n => Err(ctx.err(
            format!("constant_value has {n} elements"),
            "Give constant_value as a scalar",
        )),
    }
}

/// Pad: see the module doc.
pub(crate) fn pad(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let dims = x.shape();
    let rank = dims.len();
    let mode = match ctx.attr_string("mode", "constant")?.as_str() {
        "constant" => Mode::Constant,
        "reflect" => Mode::Reflect,
        "edge" => Mode::Edge,
        "wrap" if ctx.opset >= 19 => Mode::Wrap,
        m => {
            return Err(ctx.err(
                format!("mode '{m}' is not a Pad mode at opset {}", ctx.opset),
                "Use 'constant', 'reflect' or 'edge' ('wrap' from opset 19)",
            ));
        }
    };
    let pads = if ctx.opset < 11 {
        let name = if ctx.opset < 2 { "paddings" } else { "pads" };
        ctx.attr_ints(name)?.ok_or_else(|| {
            ctx.err(
                format!("the '{name}' attribute is missing"),
                format!("Give '{name}' (opset < 11) or the pads input (opset >= 11)"),
            )
        })?
    } else {
        ctx.input_i64s(1)?
    };
    let axes: Vec<usize> = if ctx.opset >= 18 && ctx.input(3).is_some() {
        norm_axes(ctx, &ctx.input_i64s(3)?, rank)?
    } else {
        (0..rank).collect()
    };
    let k = axes.len();
    if pads.len() != 2 * k {
        return Err(ctx.err(
            format!("pads has {} entries for {k} axes", pads.len()),
            "Give a begin and an end count per padded axis: [begins..., ends...]",
        ));
    }
    let mut tables: Vec<Vec<Option<usize>>> =
        dims.iter().map(|&d| (0..d).map(Some).collect()).collect();
    for (j, &ax) in axes.iter().enumerate() {
        let (b, e) = (
            pads.get(j).copied().unwrap_or(0),
            pads.get(j + k).copied().unwrap_or(0),
        );
        let d = dims.get(ax).copied().unwrap_or(0);
        let t = axis_table(ctx, ax, d, b, e, mode)?;
        if let Some(slot) = tables.get_mut(ax) {
            *slot = t;
        }
    }
    let out: Vec<usize> = tables.iter().map(Vec::len).collect();
    checked_numel(ctx, &out)?;
    Ok(vec![
        map_array!(x, a => pad_typed(a, &tables, fill_value(ctx, a, x)?)),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use half::f16;
    use kiln_onnx::AttrValue;

    fn mode(m: &str) -> (&'static str, AttrValue) {
        ("mode", AttrValue::String(m.as_bytes().to_vec()))
    }

    fn spec_data() -> Value {
        f32s(&[3, 2], &[1.0, 1.2, 2.3, 3.4, 4.5, 5.7])
    }

    #[test]
    fn spec_examples() {
        let x = spec_data();
        let y = run1(
            pad,
            "Pad",
            13,
            vec![],
            &[
                Some(x.clone()),
                Some(ints(&[0, 2, 0, 0])),
                Some(f32s(&[], &[0.0])),
            ],
        );
        check(
            &y,
            &[3, 4],
            &[
                0.,
                0.,
                1.0,
                1.2f32 as f64,
                0.,
                0.,
                2.3f32 as f64,
                3.4f32 as f64,
                0.,
                0.,
                4.5,
                5.7f32 as f64,
            ],
        );
        let y = run1(
            pad,
            "Pad",
            13,
            vec![mode("reflect")],
            &[Some(x.clone()), Some(ints(&[0, 2, 0, 0]))],
        );
        let w: Vec<f64> = [
            1.0f32, 1.2, 1.0, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7, 4.5, 5.7,
        ]
        .iter()
        .map(|&v| v as f64)
        .collect();
        check(&y, &[3, 4], &w);
        let y = run1(
            pad,
            "Pad",
            13,
            vec![mode("edge")],
            &[Some(x.clone()), Some(ints(&[0, 2, 0, 0]))],
        );
        let w: Vec<f64> = [
            1.0f32, 1.0, 1.0, 1.2, 2.3, 2.3, 2.3, 3.4, 4.5, 4.5, 4.5, 5.7,
        ]
        .iter()
        .map(|&v| v as f64)
        .collect();
        check(&y, &[3, 4], &w);
        // numpy: np.pad(data, ((2,1),(1,1)), 'wrap').ravel()
        let y = run1(
            pad,
            "Pad",
            19,
            vec![mode("wrap")],
            &[Some(x.clone()), Some(ints(&[2, 1, 1, 1]))],
        );
        let w: Vec<f64> = [
            3.4f32, 2.3, 3.4, 2.3, 5.7, 4.5, 5.7, 4.5, 1.2, 1.0, 1.2, 1.0, 3.4, 2.3, 3.4, 2.3, 5.7,
            4.5, 5.7, 4.5, 1.2, 1.0, 1.2, 1.0,
        ]
        .iter()
        .map(|&v| v as f64)
        .collect();
        check(&y, &[6, 4], &w);
        let e = run_err(
            pad,
            "Pad",
            18,
            vec![mode("wrap")],
            &[Some(x), Some(ints(&[0, 0, 0, 0]))],
        );
        assert!(e.contains("'wrap'"), "{e}");
    }

    #[test]
    fn large_reflect_and_wrap() {
        // numpy: np.pad([1,2,3],(5,5),'reflect'), np.pad([1,2,3],(4,5),'wrap'), np.pad([7],(2,1),'reflect')
        let x = i64s(&[3], &[1, 2, 3]);
        let y = run1(
            pad,
            "Pad",
            19,
            vec![mode("reflect")],
            &[Some(x.clone()), Some(ints(&[5, 5]))],
        );
        check(
            &y,
            &[13],
            &[2., 1., 2., 3., 2., 1., 2., 3., 2., 1., 2., 3., 2.],
        );
        let y = run1(
            pad,
            "Pad",
            19,
            vec![mode("wrap")],
            &[Some(x.clone()), Some(ints(&[4, 5]))],
        );
        check(&y, &[12], &[3., 1., 2., 3., 1., 2., 3., 1., 2., 3., 1., 2.]);
        let y = run1(
            pad,
            "Pad",
            19,
            vec![mode("reflect")],
            &[Some(i64s(&[1], &[7])), Some(ints(&[2, 1]))],
        );
        check(&y, &[4], &[7.; 4]);
        // numpy: np.pad(np.arange(6).reshape(2,3), ((1,0),(2,1)), 'reflect').ravel()
        let y = run1(
            pad,
            "Pad",
            13,
            vec![mode("reflect")],
            &[Some(iota(&[2, 3])), Some(ints(&[1, 2, 0, 1]))],
        );
        check(
            &y,
            &[3, 6],
            &[
                5., 4., 3., 4., 5., 4., 2., 1., 0., 1., 2., 1., 5., 4., 3., 4., 5., 4.,
            ],
        );
    }

    #[test]
    fn constant_value_axes_and_negative() {
        let x = iota(&[2, 3]);
        // axes input (opset 18): pad only the last axis.
        let y = run1(
            pad,
            "Pad",
            18,
            vec![],
            &[
                Some(x.clone()),
                Some(ints(&[1, 0])),
                Some(f32s(&[], &[9.])),
                Some(ints(&[-1])),
            ],
        );
        check(&y, &[2, 4], &[9., 0., 1., 2., 9., 3., 4., 5.]);
        // Negative pads crop: numpy x[:, 1:][:, :] with one column added at the end.
        let y = run1(
            pad,
            "Pad",
            13,
            vec![],
            &[
                Some(x.clone()),
                Some(ints(&[0, -1, 0, 1])),
                Some(f32s(&[], &[7.])),
            ],
        );
        check(&y, &[2, 3], &[1., 2., 7., 4., 5., 7.]);
        let y = run1(
            pad,
            "Pad",
            13,
            vec![mode("edge")],
            &[Some(x.clone()), Some(ints(&[-1, 1, 0, 0]))],
        );
        check(&y, &[1, 4], &[3., 3., 4., 5.]);
        let e = run_err(
            pad,
            "Pad",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[-2, 0, -1, 0]))],
        );
        assert!(e.contains("crop more"), "{e}");
        // Opset 2 attributes, opset 1 paddings.
        let y = run1(
            pad,
            "Pad",
            2,
            vec![
                ("pads", ai(&[0, 1, 0, 0])),
                ("value", AttrValue::Float(1.5)),
            ],
            &[Some(x.clone())],
        );
        check(&y, &[2, 4], &[1.5, 0., 1., 2., 1.5, 3., 4., 5.]);
        let y = run1(
            pad,
            "Pad",
            1,
            vec![("paddings", ai(&[1, 0, 0, 0]))],
            &[Some(x.clone())],
        );
        assert_eq!(y.shape(), &[3, 3]);
        let e = run_err(
            pad,
            "Pad",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[1, 1]))],
        );
        assert!(e.contains("entries"), "{e}");
        let e = run_err(
            pad,
            "Pad",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[0; 4])), Some(i64s(&[], &[1]))],
        );
        assert!(e.contains("element type"), "{e}");
        let e = run_err(
            pad,
            "Pad",
            13,
            vec![mode("foo")],
            &[Some(x.clone()), Some(ints(&[0; 4]))],
        );
        assert!(e.contains("'foo'"), "{e}");
        let e = run_err(
            pad,
            "Pad",
            13,
            vec![],
            &[Some(x), Some(ints(&[0, 0, i64::MAX, 0]))],
        );
        assert!(e.contains("too"), "{e}");
        let e = run_err(
            pad,
            "Pad",
            13,
            vec![mode("edge")],
            &[Some(f32s(&[0], &[])), Some(ints(&[1, 0]))],
        );
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn other_types() {
        let b = Value::Bool(ArrayD::from_shape_vec(IxDyn(&[2]), vec![true, false]).unwrap());
        let y = run1(
            pad,
            "Pad",
            13,
            vec![],
            &[Some(b.clone()), Some(ints(&[1, 1]))],
        );
        check(&y, &[4], &[0., 1., 0., 0.]);
        let t = Value::Bool(ArrayD::from_shape_vec(IxDyn(&[]), vec![true]).unwrap());
        let y = run1(
            pad,
            "Pad",
            13,
            vec![],
            &[Some(b), Some(ints(&[1, 0])), Some(t)],
        );
        check(&y, &[3], &[1., 1., 0.]);
        let h = Value::F16(ArrayD::from_shape_vec(IxDyn(&[1]), vec![f16::ONE]).unwrap());
        let y = run1(
            pad,
            "Pad",
            2,
            vec![("pads", ai(&[1, 0])), ("value", AttrValue::Float(0.5))],
            &[Some(h)],
        );
        check(&y, &[2], &[0.5, 1.0]);
        let i = i32s(&[2], &[3, 4]);
        let y = run1(
            pad,
            "Pad",
            2,
            vec![("pads", ai(&[0, 1])), ("value", AttrValue::Float(-2.0))],
            &[Some(i)],
        );
        check(&y, &[3], &[3., 4., -2.]);
    }
}
