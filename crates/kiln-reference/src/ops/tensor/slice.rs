//! Slice <https://onnx.ai/onnx/operators/onnx__Slice.html>: a strided window along some axes.
//!
//! Opset history: 1 takes `starts`, `ends` and optional `axes` as attributes (step 1);
//! 10 moves them to inputs (`starts`, `ends`, optional `axes`, optional `steps`, int32 or
//! int64) and adds negative steps; 11 allows negative axes; 13 widens the element types.
//!
//! Per axis of length `dim`, a negative start or end has `dim` added; then, for a positive
//! step, start and end are clamped to `[0, dim]`; for a negative step, start to `[0, dim-1]`
//! and end to `[-1, dim-1]` (so `INT_MIN` as end runs to the first element). The output
//! length is `max(0, ceil((end - start) / step))`.

use ndarray::Slice;

use crate::error::Result;
use crate::map_array;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::{norm_axes, standard};

/// The ndarray slice of one axis of length `dim` for ONNX `start`, `end`, `step` (not 0).
fn axis_slice(dim: usize, start: i64, end: i64, step: i64) -> Slice {
    let d = i128::try_from(dim).unwrap_or(i128::MAX);
    let (start, end, step) = (i128::from(start), i128::from(end), i128::from(step));
    let adj = |v: i128| if v < 0 { v + d } else { v };
    let (s, e) = if step > 0 {
        (adj(start).clamp(0, d), adj(end).clamp(0, d))
    } else {
        (
            adj(start).clamp(0, (d - 1).max(0)),
            adj(end).clamp(-1, d - 1),
        )
    };
    // ceil(num / den) for num >= 0, den > 0.
    let ceil_div = |num: i128, den: i128| (num + den - 1) / den;
    let n = if step > 0 {
        ceil_div((e - s).max(0), step)
    } else {
        ceil_div((s - e).max(0), -step)
    };
    if n == 0 || d == 0 {
        return Slice::new(0, Some(0), 1);
    }
    let to_isize = |v: i128| isize::try_from(v).unwrap_or(0);
    // Indices s, s+step, ..., s+(n-1)*step, all inside [0, dim).
    let last = s + (n - 1) * step;
    if step > 0 {
        Slice::new(to_isize(s), Some(to_isize(last + 1)), to_isize(step))
    } else {
        // ndarray walks a negative-step range from its end: last+1..s+1 backwards from s.
        let st = isize::try_from(step).unwrap_or(isize::MIN);
        Slice::new(to_isize(last), Some(to_isize(s + 1)), st)
    }
}

/// Slice: see the module doc.
pub(crate) fn slice(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let dims = x.shape();
    let rank = dims.len();
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        let need = |name: &str| {
            ctx.attr_ints(name)?.ok_or_else(|| {
                ctx.err(
                    format!("Slice-1 has no '{name}' attribute"),
                    format!("Give the '{name}' attribute"),
                )
            })
        };
        (need("starts")?, need("ends")?, ctx.attr_ints("axes")?, None)
    } else {
        let opt = |i: usize| match ctx.input(i) {
            Some(_) => ctx.input_i64s(i).map(Some),
            None => Ok(None),
        };
        (ctx.input_i64s(1)?, ctx.input_i64s(2)?, opt(3)?, opt(4)?)
    };
    let n = starts.len();
    let axes = match axes {
        Some(a) => a,
        None => (0..n as i64).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if ends.len() != n || axes.len() != n || steps.len() != n {
        return Err(ctx.err(
            format!(
                "starts, ends, axes and steps have {n}, {}, {}, {} entries",
                ends.len(),
                axes.len(),
                steps.len()
            ),
            "Give starts, ends, axes and steps of one length",
        ));
    }
    let axes = norm_axes(ctx, &axes, rank)?;
    let mut slices: Vec<Slice> = vec![Slice::from(..); rank];
    for (k, &ax) in axes.iter().enumerate() {
        let (st, en, sp) = match (starts.get(k), ends.get(k), steps.get(k)) {
            (Some(&a), Some(&b), Some(&c)) => (a, b, c),
            _ => continue,
        };
        if sp == 0 {
            return Err(ctx.err(format!("step for axis {ax} is 0"), "Give non-zero steps"));
        }
        if let (Some(slot), Some(&d)) = (slices.get_mut(ax), dims.get(ax)) {
            *slot = axis_slice(d, st, en, sp);
        }
    }
    Ok(vec![map_array!(x, a => standard(a.slice_each_axis(|ad| {
        slices.get(ad.axis.index()).copied().unwrap_or(Slice::from(..))
    })))])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn sl(
        x: &Value,
        starts: &[i64],
        ends: &[i64],
        axes: Option<&[i64]>,
        steps: Option<&[i64]>,
    ) -> Value {
        run1(
            slice,
            "Slice",
            13,
            vec![],
            &[
                Some(x.clone()),
                Some(ints(starts)),
                Some(ints(ends)),
                axes.map(ints),
                steps.map(ints),
            ],
        )
    }

    #[test]
    fn spec_examples() {
        let x = f32s(&[2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let y = sl(&x, &[1, 0], &[2, 3], Some(&[0, 1]), Some(&[1, 2]));
        check(&y, &[1, 2], &[5.0, 7.0]);
        let y = sl(&x, &[0, 1], &[-1, 1000], None, None);
        check(&y, &[1, 3], &[2.0, 3.0, 4.0]);
        // Opset 1 attributes.
        let y = run1(
            slice,
            "Slice",
            1,
            vec![
                ("starts", ai(&[1, 0])),
                ("ends", ai(&[2, 3])),
                ("axes", ai(&[0, 1])),
            ],
            &[Some(x.clone())],
        );
        check(&y, &[1, 3], &[5.0, 6.0, 7.0]);
        let y = run1(
            slice,
            "Slice",
            9,
            vec![("starts", ai(&[1])), ("ends", ai(&[2]))],
            &[Some(x)],
        );
        check(&y, &[1, 4], &[5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn negative_steps_and_clamping() {
        // numpy: np.arange(10)[a:b:c] for each case, pasted.
        let x = iota(&[10]);
        let m = i64::MAX;
        let mn = i64::MIN;
        let cases: &[(i64, i64, i64, &[f64])] = &[
            (-1, mn, -1, &[9., 8., 7., 6., 5., 4., 3., 2., 1., 0.]), // x[::-1]
            (m, mn, -1, &[9., 8., 7., 6., 5., 4., 3., 2., 1., 0.]),
            (8, 2, -2, &[8., 6., 4.]),                         // x[8:2:-2]
            (20, -20, -3, &[9., 6., 3., 0.]),                  // x[20:-20:-3]
            (2, 8, 3, &[2., 5.]),                              // x[2:8:3]
            (-3, m, 1, &[7., 8., 9.]),                         // x[-3:]
            (5, 2, 1, &[]),                                    // x[5:2]
            (2, 5, -1, &[]),                                   // x[2:5:-1]
            (0, -1, 1, &[0., 1., 2., 3., 4., 5., 6., 7., 8.]), // x[0:-1]
            (-100, 100, m, &[0.]),
            (9, mn, mn, &[9.]),
            (0, 1, mn, &[]),
        ];
        for &(s, e, st, want) in cases {
            let y = sl(&x, &[s], &[e], None, Some(&[st]));
            check(&y, &[want.len()], want);
        }
    }

    #[test]
    fn axes_negative_and_types() {
        let x = Value::I32(ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1, 2, 3, 4, 5, 6]).unwrap());
        let y = sl(&x, &[-1], &[i64::MIN], Some(&[-1]), Some(&[-1]));
        check(&y, &[2, 3], &[3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
        // int32 starts/ends.
        let y = run1(
            slice,
            "Slice",
            13,
            vec![],
            &[
                Some(x.clone()),
                Some(i32s(&[1], &[1])),
                Some(i32s(&[1], &[2])),
            ],
        );
        check(&y, &[1, 3], &[4.0, 5.0, 6.0]);
        let b = Value::Bool(ArrayD::from_shape_vec(IxDyn(&[3]), vec![true, false, true]).unwrap());
        let y = sl(&b, &[1], &[3], None, None);
        check(&y, &[2], &[0.0, 1.0]);
        // An i64::MIN step on an outer axis with a stride > 1 picks one row.
        let x34 = iota(&[3, 4]);
        let y = sl(&x34, &[-1], &[i64::MIN], Some(&[0]), Some(&[i64::MIN]));
        check(&y, &[1, 4], &[8.0, 9.0, 10.0, 11.0]);
        let y = sl(
            &x34,
            &[0, 3],
            &[i64::MAX, 0],
            Some(&[0, 1]),
            Some(&[i64::MAX, -2]),
        );
        check(&y, &[1, 2], &[3.0, 1.0]);
        // Empty input axis.
        let e = f32s(&[0, 2], &[]);
        let y = sl(&e, &[0], &[-1], None, Some(&[-1]));
        assert_eq!(y.shape(), &[0, 2]);
    }

    #[test]
    fn errors() {
        let x = iota(&[4]);
        let e = run_err(
            slice,
            "Slice",
            13,
            vec![],
            &[
                Some(x.clone()),
                Some(ints(&[0])),
                Some(ints(&[2])),
                None,
                Some(ints(&[0])),
            ],
        );
        assert!(e.contains("is 0"), "{e}");
        let e = run_err(
            slice,
            "Slice",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[0])), Some(ints(&[2, 3]))],
        );
        assert!(e.contains("one length"), "{e}");
        let e = run_err(
            slice,
            "Slice",
            13,
            vec![],
            &[
                Some(x.clone()),
                Some(ints(&[0])),
                Some(ints(&[2])),
                Some(ints(&[1])),
            ],
        );
        assert!(e.contains("out of range"), "{e}");
        let e = run_err(slice, "Slice", 1, vec![("ends", ai(&[1]))], &[Some(x)]);
        assert!(e.contains("'starts'"), "{e}");
    }
}
