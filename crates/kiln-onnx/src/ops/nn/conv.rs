//! Convolution and transposed convolution.
//!
//! - [Conv](https://onnx.ai/onnx/operators/onnx__Conv.html): 1, 11, 22. X is
//!   `[N, C, D1..Dn]`, W is `[M, C/group, k1..kn]`, the optional bias B is `[M]`; the output is
//!   `[N, M, O1..On]` with `Oi = floor((Di + pads - ((ki - 1) * di + 1)) / si) + 1`, or
//!   `ceil(Di / si)` under `auto_pad` SAME_UPPER/SAME_LOWER (VALID: no padding). 11 and 22
//!   only widen the types and word the defaults; the shapes are the same since 1.
//! - [ConvTranspose](https://onnx.ai/onnx/operators/onnx__ConvTranspose.html): 1, 11, 22. W is
//!   `[C, M/group, k1..kn]`; the output is `[N, M, O1..On]` with the spatial sizes given by
//!   `output_shape` (spatial dims only; a full `[N, M, ...]` list is also accepted), else
//!   `si * (Di - 1) + output_padding_i + ((ki - 1) * di + 1) - pads`, or `Di * si` under
//!   SAME_UPPER/SAME_LOWER.
//!
//! `kernel_shape` defaults to W's spatial dims; `strides` and `dilations` to 1, `pads` to 0,
//! `group` to 1.

use kiln_core::{Dim, Shape};

use super::common::{
    dims_match, expect_outputs, expect_rank, int_attr, overflow, rank_at_least, same_dtype, to_i64,
    to_size,
};
use super::window::{Window, ints_of_len};
use crate::error::Result;
use crate::ops::{Fact, InferCtx, OpDef};

/// What Conv and ConvTranspose share: rank, the weight's shape, group, the window.
struct ConvParts {
    x: Option<Shape>,
    w: Option<Shape>,
    group: i64,
    n: usize,
    win: Option<Window>,
}

/// `max_inputs`: 3 for Conv and ConvTranspose, 4 for FusedConv (its `Z`).
fn read_parts(ctx: &InferCtx<'_>, max_inputs: usize) -> Result<Option<ConvParts>> {
    ctx.expect_inputs(2, max_inputs)?;
    expect_outputs(ctx, 1, 1)?;
    ctx.required(0)?;
    ctx.required(1)?;
    same_dtype(ctx, 0, 1)?;
    let group = int_attr(ctx, "group", 1)?;
    if group < 1 {
        return Err(ctx.err(
            format!("attribute 'group' is {group}"),
            "Set 'group' to 1 or more",
        ));
    }
    let xr = rank_at_least(ctx, 0, 3)?;
    let wr = rank_at_least(ctx, 1, 3)?;
    let rank = match (xr, wr) {
        (Some(a), Some(b)) if a != b => {
            return Err(ctx.err(
                format!("X has rank {a} but the weight W has rank {b}"),
                "W must have X's rank: [M, C/group, k1, ..] for Conv, [C, M/group, k1, ..] for \
                 ConvTranspose",
            ));
        }
        (Some(r), _) | (_, Some(r)) => r,
        (None, None) => return Ok(None),
    };
    let n = rank - 2;
    let x = ctx.input_shape(0).cloned();
    let w = ctx.input_shape(1).cloned();
    let w_kernel = match w.as_ref().and_then(|w| w.dims().get(2..)) {
        Some(d) if d.iter().all(Dim::is_known) => Some(
            d.iter()
                .map(|d| to_i64(ctx, d.known().unwrap_or(0)))
                .collect::<Result<Vec<_>>>()?,
        ),
        _ => None,
    };
    let win = Window::read(ctx, n, w_kernel.clone())?;
    if let (Some(win), Some(wk)) = (&win, &w_kernel)
        && &win.kernel != wk
    {
        return Err(ctx.err(
            format!(
                "attribute 'kernel_shape' is {:?} but the weight's spatial dims are {wk:?}",
                win.kernel
            ),
            "Make 'kernel_shape' match the weight, or drop it",
        ));
    }
    Ok(Some(ConvParts {
        x,
        w,
        group,
        n,
        win,
    }))
}

/// `d * group` when `d` is known; `d` itself when group is 1; unknown otherwise.
fn times_group(ctx: &InferCtx<'_>, d: &Dim, group: i64) -> Result<Dim> {
    match d {
        _ if group == 1 => Ok(d.clone()),
        Dim::Known(v) => v
            .checked_mul(to_size(ctx, group, "group")?)
            .map(Dim::Known)
            .ok_or_else(|| overflow(ctx, "channels * group")),
        _ => Ok(Dim::Unknown),
    }
}

fn check_divisible(ctx: &InferCtx<'_>, d: &Dim, group: i64, what: &str) -> Result<()> {
    if let Dim::Known(v) = d
        && *v % to_size(ctx, group, "group")? != 0
    {
        return Err(ctx.err(
            format!("{what} is {v}, which 'group' {group} does not divide"),
            "Fix 'group' or the weight's shape",
        ));
    }
    Ok(())
}

fn check_bias(ctx: &InferCtx<'_>, m: &Dim) -> Result<()> {
    if ctx.input(2).is_none() {
        return Ok(());
    }
    expect_rank(ctx, 2, 1, "bias B")?;
    if let Some(b) = ctx.input_shape(2)
        && let Some(d) = b.dims().first()
    {
        dims_match(
            ctx,
            d,
            m,
            "bias B has a size other than the output channels",
        )?;
    }
    Ok(())
}

fn output(ctx: &mut InferCtx<'_>, dims: Option<Vec<Dim>>) {
    let dtype = ctx.input_dtype(0).or(ctx.input_dtype(1));
    ctx.set_output(0, Fact::new(dtype, dims.map(Shape)));
}

fn dim(s: &Option<Shape>, i: usize) -> Dim {
    s.as_ref()
        .and_then(|s| s.dims().get(i))
        .cloned()
        .unwrap_or(Dim::Unknown)
}

fn infer_conv(ctx: &mut InferCtx<'_>) -> Result<()> {
    infer_conv_inputs(ctx, 3)
}

/// Conv's inference for a node of up to `max_inputs` inputs (FusedConv adds `Z` as #3, which
/// its own inference checks).
pub(super) fn infer_conv_inputs(ctx: &mut InferCtx<'_>, max_inputs: usize) -> Result<()> {
    let Some(p) = read_parts(ctx, max_inputs)? else {
        output(ctx, None);
        return Ok(());
    };
    let (c, wc, m) = (dim(&p.x, 1), dim(&p.w, 1), dim(&p.w, 0));
    let want_c = times_group(ctx, &wc, p.group)?;
    dims_match(
        ctx,
        &c,
        &want_c,
        &format!(
            "X has a channel count other than the weight's input channels ({wc}) times 'group' \
             ({})",
            p.group
        ),
    )?;
    check_divisible(ctx, &m, p.group, "the weight's output channel count")?;
    check_bias(ctx, &m)?;
    let Some(x) = &p.x else {
        output(ctx, None);
        return Ok(());
    };
    let mut dims = vec![dim(&p.x, 0), m];
    for i in 0..p.n {
        let d = match &p.win {
            Some(win) => win.forward(
                ctx,
                i,
                &x.dims().get(i + 2).cloned().unwrap_or(Dim::Unknown),
                false,
            )?,
            None => Dim::Unknown,
        };
        dims.push(d);
    }
    output(ctx, Some(dims));
    Ok(())
}

fn infer_conv_transpose(ctx: &mut InferCtx<'_>) -> Result<()> {
    let Some(p) = read_parts(ctx, 3)? else {
        output(ctx, None);
        return Ok(());
    };
    let (c, wc, wm) = (dim(&p.x, 1), dim(&p.w, 0), dim(&p.w, 1));
    dims_match(
        ctx,
        &c,
        &wc,
        "X's channel count differs from the weight's first dim",
    )?;
    check_divisible(
        ctx,
        &super::common::merge_dim(&c, &wc),
        p.group,
        "the input channel count",
    )?;
    let m = times_group(ctx, &wm, p.group)?;
    check_bias(ctx, &m)?;
    let out_pad = ints_of_len(ctx, "output_padding", p.n, 0, 0)?;
    let out_shape = match ctx.node.attr_ints("output_shape")? {
        None => None,
        Some(v) if v.len() == p.n => Some(v.to_vec()),
        Some(v) if Some(v.len()) == p.n.checked_add(2) => v.get(2..).map(<[i64]>::to_vec),
        Some(v) => {
            return Err(ctx.err(
                format!(
                    "attribute 'output_shape' has {} values; the input has {} spatial axes",
                    v.len(),
                    p.n
                ),
                "Give one size per spatial axis",
            ));
        }
    };
    let Some(x) = &p.x else {
        output(ctx, None);
        return Ok(());
    };
    let mut dims = vec![dim(&p.x, 0), m];
    for i in 0..p.n {
        let d = if let Some(os) = &out_shape {
            let v = os
                .get(i)
                .copied()
                .ok_or_else(|| overflow(ctx, "output_shape"))?;
            if v < 1 {
                return Err(ctx.err(
                    format!("attribute 'output_shape' holds {v}"),
                    "Give positive output sizes",
                ));
            }
            Dim::Known(to_size(ctx, v, "output_shape")?)
        } else if let Some(win) = &p.win {
            let op = out_pad.get(i).copied().unwrap_or(0);
            win.transpose(
                ctx,
                i,
                &x.dims().get(i + 2).cloned().unwrap_or(Dim::Unknown),
                op,
            )?
        } else {
            Dim::Unknown
        };
        dims.push(d);
    }
    output(ctx, Some(dims));
    Ok(())
}

/// `Conv`
pub(super) const CONV: OpDef = OpDef {
    op_type: "Conv",
    domain: "",
    since_opset: 1,
    infer: infer_conv,
};

/// `ConvTranspose`
pub(super) const CONV_TRANSPOSE: OpDef = OpDef {
    op_type: "ConvTranspose",
    domain: "",
    since_opset: 1,
    infer: infer_conv_transpose,
};

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
