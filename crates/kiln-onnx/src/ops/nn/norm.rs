//! Normalisation: BatchNormalization, InstanceNormalization, LayerNormalization,
//! GroupNormalization, LRN. Y always has X's type and shape.
//!
//! - [BatchNormalization](https://onnx.ai/onnx/operators/onnx__BatchNormalization.html): 1, 6,
//!   7, 9, 14, 15. Inputs X `[N, C, ...]`, scale, B, mean, var (each `[C]`). Up to 13 the
//!   optional outputs are mean, var, saved_mean, saved_var (training); 7-8 have the `spatial`
//!   attribute (0: parameters shaped `[C, D1, ...]`), dropped at 9. From 14 the outputs are
//!   running_mean and running_var, meant for `training_mode` = 1; 15 lets the statistics have
//!   their own type (the running outputs take the mean input's type). kiln implements 7 on
//!   (1 and 6 have `is_test` and `consumed_inputs`).
//! - [InstanceNormalization](https://onnx.ai/onnx/operators/onnx__InstanceNormalization.html):
//!   1, 6, 22. X `[N, C, D1, ...]`, scale and B `[C]`.
//! - [LayerNormalization](https://onnx.ai/onnx/operators/onnx__LayerNormalization.html): 17.
//!   Normalises over the dims from `axis` (default -1); Scale and the optional B broadcast to
//!   them. The optional Mean and InvStdDev outputs have X's dims before `axis` and 1 after, of
//!   the `stash_type` type (default float).
//! - [GroupNormalization](https://onnx.ai/onnx/operators/onnx__GroupNormalization.html): 18,
//!   21. `num_groups` (required) divides C; scale and bias are `[num_groups]` at 18 and `[C]`
//!   from 21.
//! - [LRN](https://onnx.ai/onnx/operators/onnx__LRN.html): 1, 13. `size` is required.

use kiln_core::{Dim, Shape};

use super::common::{
    dims_match, dtype_attr, expect_outputs, expect_rank, flag_attr, int_attr, pass_through,
    rank_at_least, to_size, unidirectional,
};
use crate::error::Result;
use crate::ops::util::normalize_axis;
use crate::ops::{Fact, InferCtx, OpDef};

/// X's channel dim (`[N, C, ...]`), unknown when X's shape is.
fn channels(ctx: &InferCtx<'_>) -> Dim {
    ctx.input_shape(0)
        .and_then(|s| s.dims().get(1))
        .cloned()
        .unwrap_or(Dim::Unknown)
}

/// Fails unless input `i` is 1-D with `want` elements (when known).
fn check_vector(ctx: &InferCtx<'_>, i: usize, want: &Dim, what: &str) -> Result<()> {
    expect_rank(ctx, i, 1, what)?;
    if let Some(d) = ctx.input_shape(i).and_then(|s| s.dims().first()) {
        dims_match(
            ctx,
            d,
            want,
            &format!("{what} (input #{i}) has the wrong length"),
        )?;
    }
    Ok(())
}

fn infer_batch_norm(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(5, 5)?;
    let max_out = if ctx.opset >= 14 { 3 } else { 5 };
    expect_outputs(ctx, 1, max_out)?;
    for i in 0..5 {
        ctx.required(i)?;
    }
    rank_at_least(ctx, 0, 2)?;
    let spatial = ctx.opset >= 9 || flag_attr(ctx, "spatial", true)?;
    if ctx.opset >= 14 {
        flag_attr(ctx, "training_mode", false)?;
    }
    let c = channels(ctx);
    if spatial {
        for (i, what) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
            check_vector(ctx, i, &c, what)?;
        }
    }
    pass_through(ctx, 0)?;
    let stat_shape = ctx
        .input_shape(3)
        .cloned()
        .or_else(|| spatial.then(|| Shape(vec![c])));
    let stat_type = ctx.input_dtype(3).or(ctx.input_dtype(0));
    for o in 1..ctx.num_outputs() {
        ctx.set_output(o, Fact::new(stat_type, stat_shape.clone()));
    }
    Ok(())
}

fn infer_instance_norm(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(3, 3)?;
    expect_outputs(ctx, 1, 1)?;
    rank_at_least(ctx, 0, 3)?;
    let c = channels(ctx);
    check_vector(ctx, 1, &c, "scale")?;
    check_vector(ctx, 2, &c, "B")?;
    ctx.required(1)?;
    ctx.required(2)?;
    pass_through(ctx, 0)
}

fn infer_layer_norm(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 3)?;
    expect_outputs(ctx, 1, 3)?;
    ctx.required(1)?;
    let axis = int_attr(ctx, "axis", -1)?;
    let stash = dtype_attr(ctx, "stash_type", int_attr(ctx, "stash_type", 1)?)?;
    pass_through(ctx, 0)?;
    let Some(x) = ctx.input_shape(0).cloned() else {
        ctx.set_output(1, Fact::new(Some(stash), None));
        ctx.set_output(2, Fact::new(Some(stash), None));
        return Ok(());
    };
    let a = normalize_axis(ctx, axis, x.rank())?;
    let tail = Shape(x.dims().get(a..).unwrap_or_default().to_vec());
    for (i, what) in [(1, "Scale (input #1)"), (2, "B (input #2)")] {
        if let Some(s) = ctx.input_shape(i) {
            unidirectional(ctx, &tail, s, what)?;
        }
    }
    let mut stat = x.dims().get(..a).unwrap_or_default().to_vec();
    stat.resize(x.rank(), Dim::Known(1));
    ctx.set_output(1, Fact::tensor(stash, Shape(stat.clone())));
    ctx.set_output(2, Fact::tensor(stash, Shape(stat)));
    Ok(())
}

fn infer_group_norm(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(3, 3)?;
    expect_outputs(ctx, 1, 1)?;
    ctx.required(1)?;
    ctx.required(2)?;
    rank_at_least(ctx, 0, 2)?;
    let Some(groups) = ctx.node.attr_int("num_groups")? else {
        return Err(ctx.err(
            "attribute 'num_groups' is missing",
            "GroupNormalization needs 'num_groups'",
        ));
    };
    if groups < 1 {
        return Err(ctx.err(
            format!("attribute 'num_groups' is {groups}"),
            "Set 'num_groups' to 1 or more",
        ));
    }
    let c = channels(ctx);
    if let Dim::Known(n) = c
        && n % to_size(ctx, groups, "num_groups")? != 0
    {
        return Err(ctx.err(
            format!("X has {n} channels, which 'num_groups' {groups} does not divide"),
            "Use a 'num_groups' that divides the channel count",
        ));
    }
    let want = if ctx.opset >= 21 {
        c
    } else {
        Dim::Known(to_size(ctx, groups, "num_groups")?)
    };
    check_vector(ctx, 1, &want, "scale")?;
    check_vector(ctx, 2, &want, "bias")?;
    pass_through(ctx, 0)
}

fn infer_lrn(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    expect_outputs(ctx, 1, 1)?;
    rank_at_least(ctx, 0, 3)?;
    match ctx.node.attr_int("size")? {
        Some(s) if s >= 1 => {}
        Some(s) => {
            return Err(ctx.err(
                format!("attribute 'size' is {s}"),
                "Set 'size' to 1 or more",
            ));
        }
        None => return Err(ctx.err("attribute 'size' is missing", "LRN needs 'size'")),
    }
    pass_through(ctx, 0)
}

/// `BatchNormalization`
pub(super) const BATCH_NORMALIZATION: OpDef = OpDef {
    op_type: "BatchNormalization",
    domain: "",
    // Opset 6 differs from 7 only in `is_test`, which inference-only kiln ignores.
    since_opset: 6,
    infer: infer_batch_norm,
};

/// `InstanceNormalization`
pub(super) const INSTANCE_NORMALIZATION: OpDef = OpDef {
    op_type: "InstanceNormalization",
    domain: "",
    since_opset: 1,
    infer: infer_instance_norm,
};

/// `LayerNormalization`
pub(super) const LAYER_NORMALIZATION: OpDef = OpDef {
    op_type: "LayerNormalization",
    domain: "",
    since_opset: 17,
    infer: infer_layer_norm,
};

/// `GroupNormalization`
pub(super) const GROUP_NORMALIZATION: OpDef = OpDef {
    op_type: "GroupNormalization",
    domain: "",
    since_opset: 18,
    infer: infer_group_norm,
};

/// `LRN`
pub(super) const LRN: OpDef = OpDef {
    op_type: "LRN",
    domain: "",
    since_opset: 1,
    infer: infer_lrn,
};

#[cfg(test)]
#[path = "norm_tests.rs"]
mod tests;
