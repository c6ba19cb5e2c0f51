//! Helpers shared by the arithmetic and network ops: attributes with defaults, dimension
//! checks, constant inputs read as integers or dims, and checked arithmetic on sizes.

use kiln_core::{DataType, Dim, Shape};

use crate::error::Result;
use crate::ops::{Fact, InferCtx};

/// An INT attribute, or `default` when absent.
pub(super) fn int_attr(ctx: &InferCtx<'_>, name: &str, default: i64) -> Result<i64> {
    Ok(ctx.node.attr_int(name)?.unwrap_or(default))
}

/// An INT attribute that must be 0 or 1, or `default` when absent.
pub(super) fn flag_attr(ctx: &InferCtx<'_>, name: &str, default: bool) -> Result<bool> {
    match ctx.node.attr_int(name)? {
        None => Ok(default),
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(v) => Err(ctx.err(
            format!("attribute '{name}' is {v}; it must be 0 or 1"),
            format!("Set '{name}' to 0 or 1"),
        )),
    }
}

/// A STRING attribute, or `default` when absent.
pub(super) fn string_attr(ctx: &InferCtx<'_>, name: &str, default: &str) -> Result<String> {
    Ok(ctx
        .node
        .attr_string(name)?
        .unwrap_or_else(|| default.to_string()))
}

/// Fails unless the node has between `min` and `max` outputs.
pub(super) fn expect_outputs(ctx: &InferCtx<'_>, min: usize, max: usize) -> Result<()> {
    let n = ctx.num_outputs();
    if n < min || n > max {
        return Err(ctx.err(
            format!("has {n} outputs; {} gives {min} to {max}", ctx.node.op_type),
            "Fix the node's outputs (the ONNX operator spec lists them)",
        ));
    }
    Ok(())
}

/// The rank of input `i` when known, failing when it is below `min`.
pub(super) fn rank_at_least(ctx: &InferCtx<'_>, i: usize, min: usize) -> Result<Option<usize>> {
    match ctx.input_shape(i) {
        None => Ok(None),
        Some(s) if s.rank() < min => Err(ctx.err(
            format!(
                "input #{i} has shape {s} (rank {}); {} needs rank {min} or more",
                s.rank(),
                ctx.node.op_type
            ),
            "Fix the input's shape",
        )),
        Some(s) => Ok(Some(s.rank())),
    }
}

/// Fails when input `i` has a known rank other than `rank`.
pub(super) fn expect_rank(ctx: &InferCtx<'_>, i: usize, rank: usize, what: &str) -> Result<()> {
    if let Some(s) = ctx.input_shape(i)
        && s.rank() != rank
    {
        return Err(ctx.err(
            format!("{what} (input #{i}) has shape {s}; it must have rank {rank}"),
            "Fix the input's shape",
        ));
    }
    Ok(())
}

/// Output 0 gets input `i`'s dtype and shape (elementwise ops).
pub(super) fn pass_through(ctx: &mut InferCtx<'_>, i: usize) -> Result<()> {
    let f = ctx.required(i)?;
    let fact = Fact::new(f.dtype, f.shape.clone());
    ctx.set_output(0, fact);
    Ok(())
}

/// Fails when inputs `a` and `b` both have known, different element types.
pub(super) fn same_dtype(ctx: &InferCtx<'_>, a: usize, b: usize) -> Result<()> {
    if let (Some(x), Some(y)) = (ctx.input_dtype(a), ctx.input_dtype(b))
        && x != y
    {
        return Err(ctx.err(
            format!("input #{a} is {x} but input #{b} is {y}"),
            format!("{} needs one element type: insert a Cast", ctx.node.op_type),
        ));
    }
    Ok(())
}

/// The more informative of two dims that must be equal (known beats symbolic beats unknown).
pub(super) fn merge_dim(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(_), _) => a.clone(),
        (_, Dim::Known(_)) => b.clone(),
        (Dim::Symbol(_), _) => a.clone(),
        _ => b.clone(),
    }
}

/// Fails when two dims that must be equal are both known and differ.
pub(super) fn dims_match(ctx: &InferCtx<'_>, a: &Dim, b: &Dim, what: &str) -> Result<()> {
    if let (Dim::Known(x), Dim::Known(y)) = (a, b)
        && x != y
    {
        return Err(ctx.err(
            format!("{what}: {x} vs {y}"),
            "Fix the input shapes so these sizes agree",
        ));
    }
    Ok(())
}

/// Fails unless `other` broadcasts to `target` one way (numpy rules, `target` unchanged):
/// PRelu's slope, Gemm's C, LayerNormalization's scale.
pub(super) fn unidirectional(
    ctx: &InferCtx<'_>,
    target: &Shape,
    other: &Shape,
    what: &str,
) -> Result<()> {
    let bad = || {
        ctx.err(
            format!("{what} has shape {other}, which does not broadcast to {target}"),
            format!("Give {what} a shape that broadcasts to {target} (each dim equal or 1)"),
        )
    };
    if other.rank() > target.rank() {
        return Err(bad());
    }
    for (o, t) in other.dims().iter().rev().zip(target.dims().iter().rev()) {
        if let (Dim::Known(x), Dim::Known(y)) = (o, t)
            && *x != 1
            && x != y
        {
            return Err(bad());
        }
    }
    Ok(())
}

/// The values of integer input `i` when the graph fixes them (initialiser, Constant).
pub(super) fn const_ints(ctx: &InferCtx<'_>, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
    let Some(t) = ctx.const_input(i) else {
        return Ok(None);
    };
    t.to_i64_vec().map(Some).map_err(|e| {
        ctx.err(
            format!("{what} (input #{i}) cannot be read as integers: {e}"),
            format!("Give {what} as an int64 tensor"),
        )
    })
}

/// The values of float input `i` when the graph fixes them.
pub(super) fn const_floats(ctx: &InferCtx<'_>, i: usize, what: &str) -> Result<Option<Vec<f32>>> {
    let Some(t) = ctx.const_input(i) else {
        return Ok(None);
    };
    t.to_f32_vec().map(Some).map_err(|e| {
        ctx.err(
            format!("{what} (input #{i}) cannot be read as floats: {e}"),
            format!("Give {what} as a float tensor"),
        )
    })
}

/// Integer input `i` as dims: from its constant value, else from its symbolic value
/// (`Shape -> Gather -> Concat` chains). Fails on negative constants.
pub(super) fn input_as_dims(ctx: &InferCtx<'_>, i: usize, what: &str) -> Result<Option<Vec<Dim>>> {
    if let Some(v) = const_ints(ctx, i, what)? {
        let mut dims = Vec::with_capacity(v.len());
        for x in v {
            dims.push(Dim::Known(to_size(ctx, x, what)?));
        }
        return Ok(Some(dims));
    }
    Ok(ctx.input(i).and_then(|f| f.sym_value.clone()))
}

/// A non-negative size from the model as `usize`.
pub(super) fn to_size(ctx: &InferCtx<'_>, v: i64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| {
        ctx.err(
            format!("{what} holds {v}; sizes cannot be negative"),
            format!("Fix {what}"),
        )
    })
}

/// A size as `i64`, for arithmetic with signed attributes.
pub(super) fn to_i64(ctx: &InferCtx<'_>, v: usize) -> Result<i64> {
    i64::try_from(v).map_err(|_| ctx.err(format!("size {v} is too large"), "Use sizes below 2^63"))
}

/// An arithmetic overflow while computing sizes from the model's attributes.
pub(super) fn overflow(ctx: &InferCtx<'_>, what: &str) -> crate::OnnxError {
    ctx.err(
        format!("computing {what} overflows"),
        "The node's attributes or input sizes are far too large; fix them",
    )
}

/// The element type for an ONNX type code held by an attribute (`stash_type`, `output_dtype`).
pub(super) fn dtype_attr(ctx: &InferCtx<'_>, name: &str, code: i64) -> Result<DataType> {
    i32::try_from(code)
        .ok()
        .and_then(DataType::from_onnx_code)
        .ok_or_else(|| {
            ctx.err(
                format!(
                    "attribute '{name}' is type code {code} ({}), which kiln does not support",
                    i32::try_from(code).map_or("unknown", DataType::onnx_code_name)
                ),
                "Use a supported type (float, float16, bfloat16, double or an integer type)",
            )
        })
}

/// Indices of `axes` (each in `[-rank, rank)`), failing on duplicates.
pub(super) fn normalize_axes(ctx: &InferCtx<'_>, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let ax = crate::ops::util::normalize_axis(ctx, a, rank)?;
        if out.contains(&ax) {
            return Err(ctx.err(
                format!("axis {a} is listed twice in {axes:?}"),
                "List each axis once",
            ));
        }
        out.push(ax);
    }
    Ok(out)
}
