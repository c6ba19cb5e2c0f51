//! Sliding-window geometry shared by Conv, ConvTranspose, MaxPool and AveragePool: the
//! `kernel_shape`, `strides`, `dilations`, `pads` and `auto_pad` attributes, validated, and
//! the output size of one spatial axis.

use kiln_core::Dim;

use super::common::{overflow, to_i64, to_size};
use crate::error::Result;
use crate::ops::InferCtx;

/// `auto_pad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AutoPad {
    /// Explicit `pads` (the default).
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

/// A window's attributes over `n` spatial axes.
#[derive(Debug, Clone)]
pub(super) struct Window {
    pub kernel: Vec<i64>,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    /// `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]`.
    pub pads: Vec<i64>,
    pub auto_pad: AutoPad,
}

/// An INTS attribute of `n` values, each at least `min`, or `default` repeated.
pub(super) fn ints_of_len(
    ctx: &InferCtx<'_>,
    name: &str,
    n: usize,
    min: i64,
    default: i64,
) -> Result<Vec<i64>> {
    let Some(v) = ctx.node.attr_ints(name)? else {
        return Ok(vec![default; n]);
    };
    if v.len() != n {
        return Err(ctx.err(
            format!(
                "attribute '{name}' has {} values but the input has {n} spatial axes",
                v.len()
            ),
            format!("Give '{name}' one value per spatial axis"),
        ));
    }
    if let Some(bad) = v.iter().find(|&&x| x < min) {
        return Err(ctx.err(
            format!("attribute '{name}' holds {bad}; values must be at least {min}"),
            format!("Fix '{name}'"),
        ));
    }
    Ok(v.to_vec())
}

impl Window {
    /// Reads the attributes for `n` spatial axes. `kernel` is `kernel_shape` if given, else the
    /// weight's spatial dims (`None` when the weight's dims are not all known).
    pub fn read(ctx: &InferCtx<'_>, n: usize, kernel: Option<Vec<i64>>) -> Result<Option<Window>> {
        let kernel = match ctx.node.attr_ints("kernel_shape")? {
            Some(_) => Some(ints_of_len(ctx, "kernel_shape", n, 1, 1)?),
            None => kernel,
        };
        let strides = ints_of_len(ctx, "strides", n, 1, 1)?;
        let dilations = ints_of_len(ctx, "dilations", n, 1, 1)?;
        let pad_len = n.checked_mul(2).ok_or_else(|| overflow(ctx, "pads"))?;
        let pads = ints_of_len(ctx, "pads", pad_len, 0, 0)?;
        let auto_pad = match super::common::string_attr(ctx, "auto_pad", "NOTSET")?.as_str() {
            "NOTSET" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => {
                return Err(ctx.err(
                    format!("attribute 'auto_pad' is '{other}'"),
                    "Use NOTSET, SAME_UPPER, SAME_LOWER or VALID",
                ));
            }
        };
        Ok(kernel.map(|kernel| Window {
            kernel,
            strides,
            dilations,
            pads,
            auto_pad,
        }))
    }

    fn axis(&self, ctx: &InferCtx<'_>, i: usize) -> Result<(i64, i64, i64, i64)> {
        let n = self.kernel.len();
        let get = |v: &[i64], j: usize| v.get(j).copied().ok_or_else(|| overflow(ctx, "axis"));
        let k = get(&self.kernel, i)?;
        let d = get(&self.dilations, i)?;
        let s = get(&self.strides, i)?;
        let (pb, pe) = match self.auto_pad {
            AutoPad::NotSet => (get(&self.pads, i)?, get(&self.pads, i + n)?),
            _ => (0, 0),
        };
        // Extent of the dilated kernel: (k - 1) * d + 1.
        let dk = k
            .checked_sub(1)
            .and_then(|x| x.checked_mul(d))
            .and_then(|x| x.checked_add(1))
            .ok_or_else(|| overflow(ctx, "the dilated kernel"))?;
        let pad = pb.checked_add(pe).ok_or_else(|| overflow(ctx, "pads"))?;
        Ok((dk, s, pb, pad))
    }

    /// Output size of spatial axis `i` for a convolution or pooling over `input`. With
    /// `ceil_mode`, the last window is kept when it starts inside the input or the begin
    /// padding (windows starting in the end padding are dropped, as the spec says).
    pub fn forward(
        &self,
        ctx: &InferCtx<'_>,
        i: usize,
        input: &Dim,
        ceil_mode: bool,
    ) -> Result<Dim> {
        let (dk, s, pb, pad) = self.axis(ctx, i)?;
        let same = matches!(self.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
        let Dim::Known(x) = input else {
            // Symbolic sizes survive only where the output size is the input size.
            let identity = s == 1 && (same || pad.checked_sub(dk) == Some(-1));
            return Ok(if identity {
                input.clone()
            } else {
                Dim::Unknown
            });
        };
        let x = to_i64(ctx, *x)?;
        if same {
            // ceil(x / s)
            let out = x
                .checked_add(s - 1)
                .ok_or_else(|| overflow(ctx, "the output size"))?
                / s;
            return Ok(Dim::Known(to_size(ctx, out, "the output size")?));
        }
        let span = x
            .checked_add(pad)
            .and_then(|v| v.checked_sub(dk))
            .ok_or_else(|| overflow(ctx, "the output size"))?;
        if span < 0 {
            return Err(ctx.err(
                format!(
                    "spatial axis {i}: the window (dilated kernel {dk}) is larger than the \
                     padded input ({x} + {pad})"
                ),
                "Use a smaller kernel or dilation, more padding, or a larger input",
            ));
        }
        let mut out = span / s + 1;
        if ceil_mode && span % s != 0 {
            out += 1;
            // The last window must start inside the input or the begin padding.
            let start = (out - 1)
                .checked_mul(s)
                .ok_or_else(|| overflow(ctx, "the output size"))?;
            if start >= x.saturating_add(pb) {
                out -= 1;
            }
        }
        Ok(Dim::Known(to_size(ctx, out, "the output size")?))
    }

    /// Output size of spatial axis `i` for ConvTranspose without `output_shape`:
    /// `s * (x - 1) + output_padding + dk - pads` (explicit pads) or `x * s` (SAME_*).
    pub fn transpose(
        &self,
        ctx: &InferCtx<'_>,
        i: usize,
        input: &Dim,
        out_pad: i64,
    ) -> Result<Dim> {
        let (dk, s, _, pad) = self.axis(ctx, i)?;
        let same = matches!(self.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
        let Dim::Known(x) = input else {
            let grow = out_pad.checked_add(dk).and_then(|v| v.checked_sub(pad));
            let identity = s == 1 && (same || grow == Some(1));
            return Ok(if identity {
                input.clone()
            } else {
                Dim::Unknown
            });
        };
        let x = to_i64(ctx, *x)?;
        let out = if same {
            x.checked_mul(s)
        } else {
            x.checked_sub(1)
                .and_then(|v| v.checked_mul(s))
                .and_then(|v| v.checked_add(out_pad))
                .and_then(|v| v.checked_add(dk))
                .and_then(|v| v.checked_sub(pad))
        }
        .ok_or_else(|| overflow(ctx, "the output size"))?;
        if out < 1 {
            return Err(ctx.err(
                format!("spatial axis {i}: the output size would be {out}"),
                "Reduce the pads or fix the kernel/strides",
            ));
        }
        Ok(Dim::Known(to_size(ctx, out, "the output size")?))
    }
}
