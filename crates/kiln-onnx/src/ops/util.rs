//! Shape helpers shared by the ops' inference.

use kiln_core::{Dim, Shape};

use super::InferCtx;
use crate::error::Result;

/// numpy-style broadcasting of two shapes. Symbolic dims broadcast against 1 and against the
/// same symbol; a symbol against a known size > 1 is taken to equal that size (the model is
/// only valid then). Fails on two different known sizes, neither 1.
pub fn broadcast(ctx: &InferCtx<'_>, a: &Shape, b: &Shape) -> Result<Shape> {
    let rank = a.rank().max(b.rank());
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        let d = match (da, db) {
            (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
            (Dim::Known(x), Dim::Known(y)) if x == y => Dim::Known(*x),
            (Dim::Known(x), Dim::Known(y)) => {
                return Err(ctx.err(
                    format!("shapes {a} and {b} do not broadcast (dim {x} vs {y})"),
                    "Fix the input shapes: each dim pair must be equal or one of them 1",
                ));
            }
            (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
            (Dim::Symbol(x), Dim::Symbol(y)) if x == y => Dim::Symbol(x.clone()),
            _ => Dim::Unknown,
        };
        dims.push(d);
    }
    Ok(Shape(dims))
}

/// Broadcast of many shapes (Sum, Mean, Max, Min, Where, ...).
pub fn broadcast_all<'s>(
    ctx: &InferCtx<'_>,
    shapes: impl IntoIterator<Item = &'s Shape>,
) -> Result<Shape> {
    let mut acc = Shape::scalar();
    for s in shapes {
        acc = broadcast(ctx, &acc, s)?;
    }
    Ok(acc)
}

/// `from_right` = 0 is the last dim; dims beyond the rank are 1.
fn dim_from_right(s: &Shape, from_right: usize) -> &Dim {
    const ONE: Dim = Dim::Known(1);
    if from_right < s.rank() {
        &s.0[s.rank() - 1 - from_right]
    } else {
        &ONE
    }
}

/// An ONNX axis in `[-rank, rank)` as an index in `[0, rank)`.
pub fn normalize_axis(ctx: &InferCtx<'_>, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(ctx.err(
            format!("axis {axis} is out of range for rank {rank}"),
            format!("Use an axis in [{}, {}]", -r, r - 1),
        ));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}
