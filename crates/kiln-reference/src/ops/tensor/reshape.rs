//! Ops that change only the shape, keeping the elements in row-major order: Reshape, Flatten,
//! Squeeze and Unsqueeze.
//!
//! - Reshape <https://onnx.ai/onnx/operators/onnx__Reshape.html>: opset 1 takes the target
//!   shape as the `shape` attribute; from 5 it is the int64 input `shape`; 14 adds `allowzero`
//!   (a 0 in `shape` is then a real 0 rather than "copy the input dim"); 13, 19, 21, 23, 24, 25
//!   only widen the element types. A single -1 is inferred from the element count.
//! - Flatten <https://onnx.ai/onnx/operators/onnx__Flatten.html>: `axis` (default 1) in
//!   `[0, rank]`; 11 allows negative `axis` (`[-rank, rank]`); 9, 13, 21, 23, 24, 25 widen types.
//!   The output is 2-D `(prod(dims[..axis]), prod(dims[axis..]))`.
//! - Squeeze <https://onnx.ai/onnx/operators/onnx__Squeeze.html>: `axes` attribute before 13
//!   (11 allows negative axes), the optional int64 input `axes` from 13; without axes every
//!   dim of size 1 is removed. 21, 23, 24, 25 widen types.
//! - Unsqueeze <https://onnx.ai/onnx/operators/onnx__Unsqueeze.html>: required `axes`
//!   attribute before 13 (11 allows negative axes), the int64 input `axes` from 13; axes index
//!   the output. 21, 23, 24, 25 widen types.

use crate::error::Result;
use crate::map_array;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::{checked_numel, norm_axes, reshaped};

/// Reshapes input 0 to `shape`: the shared final step of every op of this file.
fn reshape_to(ctx: &OpCtx<'_>, x: &Value, shape: &[usize]) -> Result<Value> {
    Ok(map_array!(x, a => reshaped(ctx, a.view(), shape)?))
}

/// The output dims of Reshape: 0 copies the input dim (unless `allowzero`), one -1 inferred.
pub(crate) fn reshape_dims(
    ctx: &OpCtx<'_>,
    input: &[usize],
    shape: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(shape.len());
    let mut infer: Option<usize> = None;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 => {
                if infer.is_some() {
                    return Err(ctx.err(
                        format!("shape {shape:?} has more than one -1"),
                        "Give at most one -1 (the dim to infer)",
                    ));
                }
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => match input.get(i) {
                Some(&n) => out.push(n),
                None => {
                    return Err(ctx.err(
                        format!(
                            "shape {shape:?} has 0 (copy the input dim) at index {i}, but the \
                             input {input:?} has only {} dims",
                            input.len()
                        ),
                        "Give the dim explicitly",
                    ));
                }
            },
            d if d < 0 => {
                return Err(ctx.err(
                    format!("shape {shape:?} holds {d}"),
                    "Give dims >= 0, or -1 for the one to infer",
                ));
            }
            d => out.push(usize::try_from(d).unwrap_or(usize::MAX)),
        }
    }
    let total = checked_numel(ctx, input)?;
    let mismatch = |out: &[usize]| {
        ctx.err(
            format!(
                "cannot reshape {input:?} ({total} elements) to {shape:?} (resolved to {out:?})"
            ),
            "Give a shape with the same number of elements as the input",
        )
    };
    if let Some(i) = infer {
        if allowzero && shape.contains(&0) {
            return Err(ctx.err(
                format!("shape {shape:?} has both -1 and 0 while allowzero is 1"),
                "With allowzero=1 a -1 cannot be inferred next to a 0 dim; give the dims explicitly",
            ));
        }
        let known = kiln_core::checked_element_count(&out).ok_or_else(|| mismatch(&out))?;
        if known == 0 || total % known != 0 {
            return Err(mismatch(&out));
        }
        if let Some(slot) = out.get_mut(i) {
            *slot = total / known;
        }
    }
    if kiln_core::checked_element_count(&out) != Some(total) {
        return Err(mismatch(&out));
    }
    Ok(out)
}

/// Reshape: see the module doc.
pub(crate) fn reshape(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let (shape, allowzero) = if ctx.opset < 5 {
        let s = ctx.attr_ints("shape")?.ok_or_else(|| {
            ctx.err(
                "Reshape-1 has no 'shape' attribute",
                "Give the 'shape' attribute (or use opset >= 5 with a shape input)",
            )
        })?;
        (s, false)
    } else {
        let az = if ctx.opset >= 14 {
            ctx.attr_int("allowzero", 0)? != 0
        } else {
            false
        };
        (ctx.input_i64s(1)?, az)
    };
    let dims = reshape_dims(ctx, x.shape(), &shape, allowzero)?;
    Ok(vec![reshape_to(ctx, x, &dims)?])
}

/// Flatten: see the module doc.
pub(crate) fn flatten(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let dims = x.shape();
    let r = dims.len() as i64;
    let axis = ctx.attr_int("axis", 1)?;
    let lo = if ctx.opset >= 11 { -r } else { 0 };
    if axis < lo || axis > r {
        return Err(ctx.err(
            format!(
                "axis {axis} is out of range for rank {r} at opset {}",
                ctx.opset
            ),
            format!("Use an axis in [{lo}, {r}] (negative axes need opset >= 11)"),
        ));
    }
    let axis = if axis < 0 { axis + r } else { axis } as usize;
    let (head, tail) = dims.split_at(axis.min(dims.len()));
    let out = [checked_numel(ctx, head)?, checked_numel(ctx, tail)?];
    Ok(vec![reshape_to(ctx, x, &out)?])
}

/// Squeeze: see the module doc.
pub(crate) fn squeeze(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let dims = x.shape();
    let axes = if ctx.opset >= 13 {
        match ctx.input(1) {
            Some(_) => Some(ctx.input_i64s(1)?),
            None => None,
        }
    } else {
        ctx.attr_ints("axes")?
    };
    let out: Vec<usize> = match axes {
        None => dims.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let axes = norm_axes(ctx, &axes, dims.len())?;
            for &a in &axes {
                let d = dims.get(a).copied().unwrap_or(0);
                if d != 1 {
                    return Err(ctx.err(
                        format!("axis {a} of shape {dims:?} has size {d}, not 1"),
                        "Squeeze only axes of size 1",
                    ));
                }
            }
            dims.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect()
        }
    };
    Ok(vec![reshape_to(ctx, x, &out)?])
}

/// Unsqueeze: see the module doc.
pub(crate) fn unsqueeze(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let dims = x.shape();
    let axes = if ctx.opset >= 13 {
        ctx.input_i64s(1)?
    } else {
        ctx.attr_ints("axes")?.ok_or_else(|| {
            ctx.err(
                "Unsqueeze has no 'axes' attribute",
                "Give the 'axes' attribute (opset < 13) or the axes input (opset >= 13)",
            )
        })?
    };
    let rank = dims.len() + axes.len();
    let axes = norm_axes(ctx, &axes, rank)?;
    let mut src = dims.iter();
    let out: Vec<usize> = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                src.next().copied().unwrap_or(1)
            }
        })
        .collect();
    Ok(vec![reshape_to(ctx, x, &out)?])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use half::f16;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn reshape_basic_zero_and_infer() {
        let x = iota(&[2, 3, 4]);
        let y = run1(
            reshape,
            "Reshape",
            14,
            vec![],
            &[Some(x.clone()), Some(ints(&[4, -1]))],
        );
        check(&y, &[4, 6], &(0..24).map(f64::from).collect::<Vec<_>>());
        // 0 copies the input dim.
        let y = run1(
            reshape,
            "Reshape",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[0, 4, 3]))],
        );
        assert_eq!(y.shape(), &[2, 4, 3]);
        let y = run1(
            reshape,
            "Reshape",
            14,
            vec![],
            &[Some(x.clone()), Some(ints(&[0, -1]))],
        );
        assert_eq!(y.shape(), &[2, 12]);
        // Scalar target.
        let one = f32s(&[1, 1], &[7.0]);
        let y = run1(
            reshape,
            "Reshape",
            14,
            vec![],
            &[Some(one), Some(ints(&[]))],
        );
        check(&y, &[], &[7.0]);
    }

    #[test]
    fn reshape_allowzero() {
        let x = f32s(&[0, 3], &[]);
        let y = run1(
            reshape,
            "Reshape",
            14,
            vec![("allowzero", a1(1))],
            &[Some(x.clone()), Some(ints(&[3, 0]))],
        );
        assert_eq!(y.shape(), &[3, 0]);
        // Without allowzero the 0 copies dim 0 (= 0) and -1 cannot be inferred.
        let e = run_err(
            reshape,
            "Reshape",
            14,
            vec![],
            &[Some(x.clone()), Some(ints(&[0, -1]))],
        );
        assert!(e.contains("cannot reshape"), "{e}");
        let e = run_err(
            reshape,
            "Reshape",
            14,
            vec![("allowzero", a1(1))],
            &[Some(x), Some(ints(&[0, -1]))],
        );
        assert!(e.contains("allowzero"), "{e}");
    }

    #[test]
    fn reshape_errors_and_opset1() {
        let x = iota(&[2, 3]);
        let e = run_err(
            reshape,
            "Reshape",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[4, 2]))],
        );
        assert!(e.contains("cannot reshape"), "{e}");
        let e = run_err(
            reshape,
            "Reshape",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[-1, -1]))],
        );
        assert!(e.contains("more than one -1"), "{e}");
        let e = run_err(
            reshape,
            "Reshape",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[-2, 3]))],
        );
        assert!(e.contains("-2"), "{e}");
        let e = run_err(
            reshape,
            "Reshape",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[1, 1, 0]))],
        );
        assert!(e.contains("only 2 dims"), "{e}");
        let e = run_err(
            reshape,
            "Reshape",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[-1, 4]))],
        );
        assert!(e.contains("cannot reshape"), "{e}");
        let e = run_err(reshape, "Reshape", 13, vec![], &[Some(x.clone())]);
        assert!(e.contains("missing"), "{e}");
        let y = run1(
            reshape,
            "Reshape",
            1,
            vec![("shape", ai(&[3, 2]))],
            &[Some(x)],
        );
        check(&y, &[3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn reshape_other_types_and_layout() {
        // A transposed (non-standard layout) input keeps logical order.
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1i64, 2, 3, 4, 5, 6]).unwrap();
        let t = Value::I64(a.reversed_axes());
        let y = run1(reshape, "Reshape", 14, vec![], &[Some(t), Some(ints(&[6]))]);
        check(&y, &[6], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let h = Value::F16(ArrayD::from_shape_vec(IxDyn(&[2]), vec![f16::ONE, f16::ZERO]).unwrap());
        let y = run1(
            reshape,
            "Reshape",
            14,
            vec![],
            &[Some(h), Some(ints(&[1, 2]))],
        );
        assert_eq!(y.dtype(), kiln_core::DataType::F16);
        let b = Value::Bool(ArrayD::from_shape_vec(IxDyn(&[2]), vec![true, false]).unwrap());
        let y = run1(
            reshape,
            "Reshape",
            14,
            vec![],
            &[Some(b), Some(ints(&[2, 1]))],
        );
        check(&y, &[2, 1], &[1.0, 0.0]);
    }

    #[test]
    fn flatten_axes() {
        let x = iota(&[2, 3, 4, 5]);
        let shape = |axis: i64, opset: i64| {
            run1(
                flatten,
                "Flatten",
                opset,
                vec![("axis", a1(axis))],
                &[Some(x.clone())],
            )
            .shape()
            .to_vec()
        };
        assert_eq!(shape(0, 13), [1, 120]);
        assert_eq!(shape(1, 13), [2, 60]);
        assert_eq!(shape(4, 13), [120, 1]);
        assert_eq!(shape(-1, 13), [24, 5]);
        assert_eq!(shape(-4, 11), [1, 120]);
        let y = run1(flatten, "Flatten", 13, vec![], &[Some(x.clone())]);
        assert_eq!(y.shape(), &[2, 60]);
        let e = run_err(
            flatten,
            "Flatten",
            9,
            vec![("axis", a1(-1))],
            &[Some(x.clone())],
        );
        assert!(e.contains("opset >= 11"), "{e}");
        let e = run_err(flatten, "Flatten", 13, vec![("axis", a1(5))], &[Some(x)]);
        assert!(e.contains("out of range"), "{e}");
        let s = f32s(&[], &[3.0]);
        let y = run1(flatten, "Flatten", 13, vec![("axis", a1(0))], &[Some(s)]);
        check(&y, &[1, 1], &[3.0]);
    }

    #[test]
    fn squeeze_variants() {
        let x = iota(&[1, 3, 1, 2]);
        let y = run1(squeeze, "Squeeze", 13, vec![], &[Some(x.clone())]);
        assert_eq!(y.shape(), &[3, 2]);
        let y = run1(
            squeeze,
            "Squeeze",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[-2]))],
        );
        assert_eq!(y.shape(), &[1, 3, 2]);
        let y = run1(
            squeeze,
            "Squeeze",
            11,
            vec![("axes", ai(&[0]))],
            &[Some(x.clone())],
        );
        assert_eq!(y.shape(), &[3, 1, 2]);
        let y = run1(squeeze, "Squeeze", 13, vec![], &[Some(x.clone()), None]);
        assert_eq!(y.shape(), &[3, 2]);
        let e = run_err(
            squeeze,
            "Squeeze",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[1]))],
        );
        assert!(e.contains("not 1"), "{e}");
        let e = run_err(
            squeeze,
            "Squeeze",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[4]))],
        );
        assert!(e.contains("out of range"), "{e}");
        let e = run_err(
            squeeze,
            "Squeeze",
            13,
            vec![],
            &[Some(x), Some(ints(&[0, -4]))],
        );
        assert!(e.contains("more than once"), "{e}");
    }

    #[test]
    fn unsqueeze_variants() {
        let x = Value::I32(ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![1, 2, 3, 4, 5, 6]).unwrap());
        let y = run1(
            unsqueeze,
            "Unsqueeze",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[0, 3]))],
        );
        check(&y, &[1, 3, 2, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let y = run1(
            unsqueeze,
            "Unsqueeze",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[-1]))],
        );
        assert_eq!(y.shape(), &[3, 2, 1]);
        let y = run1(
            unsqueeze,
            "Unsqueeze",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[1, -2]))],
        );
        assert_eq!(y.shape(), &[3, 1, 1, 2]);
        let y = run1(
            unsqueeze,
            "Unsqueeze",
            11,
            vec![("axes", ai(&[2, 0]))],
            &[Some(x.clone())],
        );
        assert_eq!(y.shape(), &[1, 3, 1, 2]);
        let e = run_err(
            unsqueeze,
            "Unsqueeze",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[4]))],
        );
        assert!(e.contains("out of range"), "{e}");
        let e = run_err(
            unsqueeze,
            "Unsqueeze",
            13,
            vec![],
            &[Some(x.clone()), Some(ints(&[1, 1]))],
        );
        assert!(e.contains("more than once"), "{e}");
        let e = run_err(unsqueeze, "Unsqueeze", 11, vec![], &[Some(x)]);
        assert!(e.contains("'axes'"), "{e}");
        let s = f32s(&[], &[2.0]);
        let y = run1(
            unsqueeze,
            "Unsqueeze",
            13,
            vec![],
            &[Some(s), Some(ints(&[0]))],
        );
        check(&y, &[1], &[2.0]);
    }
}
