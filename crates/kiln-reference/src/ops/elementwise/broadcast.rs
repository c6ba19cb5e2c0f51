//! numpy-style (multidirectional) broadcasting, shared by every op of this folder.
//!
//! Shapes are aligned from the right; each pair of dims must be equal or one of them 1 (a 1
//! stretches to the other size, also to 0). See
//! <https://github.com/onnx/onnx/blob/main/docs/Broadcasting.md>.

use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

use crate::error::Result;
use crate::ops::OpCtx;

/// The shape all of `shapes` broadcast to, or an error naming the node and the shapes.
pub(crate) fn broadcast_shapes(ctx: &OpCtx<'_>, shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let offset = rank - s.len();
        for (i, (o, &d)) in out.iter_mut().skip(offset).zip(s.iter()).enumerate() {
            if *o == d || d == 1 {
                continue;
            }
            if *o == 1 {
                *o = d;
            } else {
                let list = shapes
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ctx.err(
                    format!(
                        "input shapes {list} do not broadcast (dim {} of the result: {} vs {d})",
                        offset + i,
                        *o
                    ),
                    "Fix the input shapes: aligned from the right, each pair of dims must be \
                     equal or one of them 1",
                ));
            }
        }
    }
    Ok(out)
}

/// `a` as a view of `shape` (which `a` must broadcast to).
pub(crate) fn view_as<'a, T>(
    ctx: &OpCtx<'_>,
    a: &'a ArrayD<T>,
    shape: &[usize],
) -> Result<ArrayViewD<'a, T>> {
    a.broadcast(IxDyn(shape)).ok_or_else(|| {
        ctx.err(
            format!(
                "an input of shape {:?} does not broadcast to {shape:?}",
                a.shape()
            ),
            "Fix the input shapes: aligned from the right, each pair of dims must be equal or \
             one of them 1",
        )
    })
}

/// `f` applied elementwise to `a` and `b` broadcast together.
pub(crate) fn zip2<A: Copy, B: Copy, C>(
    ctx: &OpCtx<'_>,
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    mut f: impl FnMut(A, B) -> C,
) -> Result<ArrayD<C>> {
    let shape = broadcast_shapes(ctx, &[a.shape(), b.shape()])?;
    let (va, vb) = (view_as(ctx, a, &shape)?, view_as(ctx, b, &shape)?);
    Ok(Zip::from(&va).and(&vb).map_collect(|&x, &y| f(x, y)))
}

/// `f` applied elementwise to `a`, `b` and `c` broadcast together.
pub(crate) fn zip3<A: Copy, B: Copy, C: Copy, D>(
    ctx: &OpCtx<'_>,
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    c: &ArrayD<C>,
    mut f: impl FnMut(A, B, C) -> D,
) -> Result<ArrayD<D>> {
    let shape = broadcast_shapes(ctx, &[a.shape(), b.shape(), c.shape()])?;
    let va = view_as(ctx, a, &shape)?;
    let vb = view_as(ctx, b, &shape)?;
    let vc = view_as(ctx, c, &shape)?;
    Ok(Zip::from(&va)
        .and(&vb)
        .and(&vc)
        .map_collect(|&x, &y, &z| f(x, y, z)))
}

/// Opsets before 7 broadcast only the second operand, and only when the node says
/// `broadcast = 1`: its dims line up with the first operand's starting at `axis` (by default
/// at the end). This gives the second operand reshaped (ones added on both sides) so that numpy
/// broadcasting computes the same thing; from opset 7, or without `broadcast`, it is returned
/// as it is.
pub(crate) fn legacy_second_operand<'v>(
    ctx: &OpCtx<'_>,
    a: &[usize],
    b: &'v crate::value::Value,
) -> Result<std::borrow::Cow<'v, crate::value::Value>> {
    use std::borrow::Cow;
    if ctx.opset >= 7 || ctx.attr_int("broadcast", 0)? == 0 {
        return Ok(Cow::Borrowed(b));
    }
    let (ra, rb) = (a.len(), b.shape().len());
    let axis = match ctx.node.attr_int("axis")? {
        Some(ax) => ctx.axis(ax, ra.max(1))?,
        None => ra.saturating_sub(rb),
    };
    if axis + rb > ra {
        return Err(ctx.err(
            format!(
                "legacy broadcast of shape {:?} into {a:?} at axis {axis} runs past the end",
                b.shape()
            ),
            "Fix the node's axis attribute (or re-export with opset 7 or newer)",
        ));
    }
    let mut shape = vec![1usize; axis];
    shape.extend_from_slice(b.shape());
    shape.resize(ra, 1);
    let reshaped = crate::map_array!(b, x => {
        ArrayD::from_shape_vec(IxDyn(&shape), x.iter().cloned().collect())
            .map_err(|e| ctx.err(format!("legacy broadcast: {e}"), "Check the operand shapes"))?
    });
    Ok(Cow::Owned(reshaped))
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::node;

    #[test]
    fn shapes() {
        let n = node("Add", vec![]);
        let ctx = OpCtx::new(&n, 17, vec![]);
        let s = |v: &[&[usize]]| broadcast_shapes(&ctx, v);
        assert_eq!(s(&[&[2, 3], &[3]]).unwrap(), vec![2, 3]);
        assert_eq!(s(&[&[2, 1, 4], &[3, 1], &[]]).unwrap(), vec![2, 3, 4]);
        assert_eq!(s(&[&[0, 3], &[1, 3]]).unwrap(), vec![0, 3]);
        assert_eq!(s(&[&[], &[]]).unwrap(), Vec::<usize>::new());
        let e = s(&[&[2, 3], &[4]]).unwrap_err().to_string();
        assert!(e.contains("do not broadcast") && e.contains("Add"), "{e}");
        assert!(s(&[&[0], &[2]]).is_err());
    }

    #[test]
    fn zips() {
        let n = node("Where", vec![]);
        let ctx = OpCtx::new(&n, 17, vec![]);
        let a = ndarray::arr2(&[[1, 2, 3], [4, 5, 6]]).into_dyn();
        let b = ndarray::arr1(&[10, 20, 30]).into_dyn();
        let c = ndarray::arr2(&[[100], [200]]).into_dyn();
        let r = zip3(&ctx, &a, &b, &c, |x, y, z| x + y + z).unwrap();
        assert_eq!(
            r,
            ndarray::arr2(&[[111, 122, 133], [214, 225, 236]]).into_dyn()
        );
        let r = zip2(&ctx, &a, &b, |x, y| x * y).unwrap();
        assert_eq!(r, ndarray::arr2(&[[10, 40, 90], [40, 100, 180]]).into_dyn());
    }

    #[test]
    fn legacy_broadcast_aligns_at_axis() {
        use crate::ops::OpCtx;
        use crate::value::Value;
        use kiln_onnx::{AttrValue, Attribute, Node};
        let node = Node {
            op_type: "Add".into(),
            attributes: vec![
                Attribute::new("broadcast", AttrValue::Int(1)),
                Attribute::new("axis", AttrValue::Int(1)),
            ],
            ..Node::default()
        };
        let b = Value::F32(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[3]), vec![1.0, 2.0, 3.0]).unwrap(),
        );
        let ctx = OpCtx::new(&node, 6, vec![]);
        let got = legacy_second_operand(&ctx, &[2, 3, 4], &b).unwrap();
        assert_eq!(got.shape(), &[1, 3, 1]);
        // From opset 7 the operand is left alone (numpy broadcasting applies).
        let ctx = OpCtx::new(&node, 7, vec![]);
        assert_eq!(
            legacy_second_operand(&ctx, &[2, 3, 4], &b).unwrap().shape(),
            &[3]
        );
        // An axis that runs past the end is an error naming the node.
        let ctx = OpCtx::new(&node, 6, vec![]);
        assert!(legacy_second_operand(&ctx, &[3], &b).is_err());
    }
}
