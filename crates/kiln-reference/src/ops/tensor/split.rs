//! Split <https://onnx.ai/onnx/operators/onnx__Split.html>: cuts a tensor into parts along an
//! axis.
//!
//! Opset history: 1 takes the part lengths from the `split` attribute or an optional second
//! input; 2 keeps only the `split` attribute (`axis` default 0); 11 allows a negative `axis`;
//! 13 moves `split` to the optional int64 input #1; 18 adds the `num_outputs` attribute
//! (exclusive with `split`): parts of `ceil(dim / num_outputs)`, the last one smaller when the
//! dim does not divide evenly. Without either, the axis is cut into as many equal parts as the
//! node has outputs (the dim must divide evenly).

use ndarray::{ArrayD, Axis, Slice};

use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;
use crate::with_array;

use super::common::{Elem, standard, to_dims};

fn split_typed<T: Elem>(a: &ArrayD<T>, axis: usize, sizes: &[usize]) -> Vec<Value> {
    let mut start = 0usize;
    sizes
        .iter()
        .map(|&n| {
            let end = start + n;
            let part = a.slice_axis(Axis(axis), Slice::from(start..end));
            start = end;
            T::wrap(standard(part))
        })
        .collect()
}

/// Split: see the module doc.
pub(crate) fn split(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let dims = x.shape();
    let axis = ctx.attr_int("axis", 0)?;
    if axis < 0 && ctx.opset < 11 {
        return Err(ctx.err(
            format!("axis {axis} is negative at opset {}", ctx.opset),
            "Use a non-negative axis (negative axes need opset >= 11)",
        ));
    }
    let axis = ctx.axis(axis, dims.len())?;
    let dim = dims.get(axis).copied().unwrap_or(0);
    let n_out = ctx.node.outputs.len();
    let given: Option<Vec<i64>> = if ctx.opset >= 13 {
        match ctx.input(1) {
            Some(_) => Some(ctx.input_i64s(1)?),
            None => None,
        }
    } else if ctx.opset < 2 && ctx.input(1).is_some() {
        Some(ctx.input_i64s(1)?)
    } else {
        ctx.attr_ints("split")?
    };
    let num_outputs = if ctx.opset >= 18 {
        ctx.node.attr_int("num_outputs")?
    } else {
        None
    };
    let sizes: Vec<usize> = match (given, num_outputs) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                "both the 'split' input and the 'num_outputs' attribute are given",
                "Give only one of them",
            ));
        }
        (Some(s), None) => {
            let sizes = to_dims(ctx, &s, "split sizes")?;
            let total = sizes.iter().try_fold(0usize, |acc, &n| acc.checked_add(n));
            if total != Some(dim) {
                return Err(ctx.err(
                    format!("split sizes {s:?} do not add up to the axis length {dim}"),
                    "Give split sizes that sum to the dim being split",
                ));
            }
            if sizes.len() != n_out {
                return Err(ctx.err(
                    format!("{} split sizes for {n_out} outputs", sizes.len()),
                    "Give one split size per output",
                ));
            }
            sizes
        }
        (None, Some(n)) => {
            let parts = usize::try_from(n)
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| ctx.err(format!("num_outputs is {n}"), "Give num_outputs >= 1"))?;
            if parts != n_out {
                return Err(ctx.err(
                    format!("num_outputs is {parts} but the node has {n_out} outputs"),
                    "Give the node as many outputs as num_outputs",
                ));
            }
            let chunk = dim.div_ceil(parts);
            let rest = chunk
                .checked_mul(parts - 1)
                .and_then(|used| dim.checked_sub(used))
                .ok_or_else(|| {
                    ctx.err(
                        format!(
                            "an axis of length {dim} cannot be cut into {parts} parts of \
                             {chunk} with a smaller last part"
                        ),
                        "Use fewer outputs or give explicit split sizes",
                    )
                })?;
            let mut sizes = vec![chunk; parts - 1];
            sizes.push(rest);
            sizes
        }
        (None, None) => {
            if n_out == 0 || dim % n_out != 0 {
                return Err(ctx.err(
                    format!("an axis of length {dim} does not split evenly into {n_out} outputs"),
                    "Give split sizes (or num_outputs from opset 18)",
                ));
            }
            vec![dim / n_out; n_out]
        }
    };
    Ok(with_array!(x, a => split_typed(a, axis, &sizes)))
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;

    fn go(
        opset: i64,
        attrs: Vec<(&str, kiln_onnx::AttrValue)>,
        inputs: &[Option<Value>],
        n: usize,
    ) -> Vec<Value> {
        run(split, "Split", opset, attrs, inputs, n).unwrap()
    }

    #[test]
    fn equal_default() {
        let x = iota(&[6]);
        let y = go(13, vec![], &[Some(x.clone())], 3);
        assert_eq!(y.len(), 3);
        check(&y[2], &[2], &[4.0, 5.0]);
        let e = run(split, "Split", 13, vec![], &[Some(x)], 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("evenly"), "{e}");
    }

    #[test]
    fn split_input_and_attribute() {
        let x = iota(&[2, 5]);
        let y = go(
            13,
            vec![("axis", a1(1))],
            &[Some(x.clone()), Some(ints(&[2, 3]))],
            2,
        );
        check(&y[0], &[2, 2], &[0.0, 1.0, 5.0, 6.0]);
        check(&y[1], &[2, 3], &[2.0, 3.0, 4.0, 7.0, 8.0, 9.0]);
        let y = go(
            11,
            vec![("axis", a1(-1)), ("split", ai(&[4, 1]))],
            &[Some(x.clone())],
            2,
        );
        check(&y[1], &[2, 1], &[4.0, 9.0]);
        let y = go(
            1,
            vec![("axis", a1(1))],
            &[Some(x.clone()), Some(ints(&[1, 4]))],
            2,
        );
        assert_eq!(y[1].shape(), &[2, 4]);
        // Zero-length parts.
        let y = go(
            13,
            vec![("axis", a1(1))],
            &[Some(x.clone()), Some(ints(&[0, 5]))],
            2,
        );
        assert_eq!(y[0].shape(), &[2, 0]);
        let e = run(
            split,
            "Split",
            13,
            vec![("axis", a1(1))],
            &[Some(x.clone()), Some(ints(&[2, 2]))],
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("add up"), "{e}");
        let e = run(
            split,
            "Split",
            13,
            vec![("axis", a1(1))],
            &[Some(x.clone()), Some(ints(&[2, 3]))],
            3,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("per output"), "{e}");
        let e = run(split, "Split", 2, vec![("axis", a1(-1))], &[Some(x)], 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("opset >= 11"), "{e}");
    }

    #[test]
    fn num_outputs_uneven() {
        // numpy reference (Split_18): 7 into 3 -> [3, 3, 1].
        let x = Value::I64(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[7]), (0..7).collect()).unwrap(),
        );
        let y = go(18, vec![("num_outputs", a1(3))], &[Some(x.clone())], 3);
        check(&y[0], &[3], &[0.0, 1.0, 2.0]);
        check(&y[2], &[1], &[6.0]);
        let y = go(18, vec![("num_outputs", a1(2))], &[Some(x.clone())], 2);
        assert_eq!(y[1].shape(), &[3]);
        let e = run(
            split,
            "Split",
            18,
            vec![("num_outputs", a1(2))],
            &[Some(x.clone())],
            3,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("num_outputs"), "{e}");
        let e = run(
            split,
            "Split",
            18,
            vec![("num_outputs", a1(2))],
            &[Some(x.clone()), Some(ints(&[3, 4]))],
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("only one"), "{e}");
        // 5 into 4 parts of 2: the last would be negative.
        let x5 = iota(&[5]);
        let e = run(
            split,
            "Split",
            18,
            vec![("num_outputs", a1(4))],
            &[Some(x5)],
            4,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot be cut"), "{e}");
    }
}
