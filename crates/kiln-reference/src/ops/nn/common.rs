//! Helpers shared by this folder's ops: the float element trait [`Real`] (f32 and f64; f16 and
//! bf16 are computed as f32 and rounded back by [`float_op`]), the sliding-window geometry of
//! Conv, ConvTranspose and the pools (strides, dilations, pads, `auto_pad`, output size with
//! `ceil_mode`), and the gather table that im2col, col2im and pooling read.

use std::fmt::Debug;
use std::ops::{AddAssign, Neg};

use ndarray::{ArrayD, CowArray, IxDyn, LinalgScalar};

use crate::error::Result;
use crate::ops::{OpCtx, from_f32_like};
use crate::value::Value;

/// A float type an op computes in: f32 (also for f16/bf16) or f64.
pub(crate) trait Real:
    LinalgScalar + PartialOrd + Debug + AddAssign + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f64(x: f64) -> Self;
    fn from_usize(x: usize) -> Self;
    fn sqrt(self) -> Self;
    fn is_nan(self) -> bool;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn powf(self, e: Self) -> Self;
    /// The value as an array of this type: borrowed when the types match, converted otherwise;
    /// `None` for non-float values.
    fn cow(v: &Value) -> Option<CowArray<'_, Self, IxDyn>>;
    fn wrap(a: ArrayD<Self>) -> Value;
}

macro_rules! real_impl {
    ($t:ty, $variant:ident) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn from_usize(x: usize) -> Self {
                x as $t
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            fn cow(v: &Value) -> Option<CowArray<'_, Self, IxDyn>> {
                if let Value::$variant(a) = v {
                    return Some(CowArray::from(a.view()));
                }
                Some(CowArray::from(match v {
                    Value::F32(a) => a.mapv(|x| x as $t),
                    Value::F64(a) => a.mapv(|x| x as $t),
                    Value::F16(a) => a.mapv(|x| x.to_f32() as $t),
                    Value::BF16(a) => a.mapv(|x| x.to_f32() as $t),
                    _ => return None,
                }))
            }
            fn wrap(a: ArrayD<Self>) -> Value {
                Value::$variant(a)
            }
        }
    };
}
real_impl!(f32, F32);
real_impl!(f64, F64);

/// A computation generic over [`Real`], instantiated for f32 and f64.
pub(crate) type RealFn = fn(&OpCtx<'_>) -> Result<Vec<Value>>;

/// Runs a float op in the precision of input `like`: f64 in f64, f32 in f32, f16 and bf16 in
/// f32 with every f32 output rounded back to the input's type (other outputs, e.g. i64
/// indices, are kept).
pub(crate) fn float_op(
    ctx: &OpCtx<'_>,
    like: usize,
    f32_fn: RealFn,
    f64_fn: RealFn,
) -> Result<Vec<Value>> {
    let v = ctx.required(like)?;
    match v {
        Value::F64(_) => f64_fn(ctx),
        Value::F32(_) => f32_fn(ctx),
        Value::F16(_) | Value::BF16(_) => Ok(f32_fn(ctx)?
            .into_iter()
            .map(|o| match o {
                Value::F32(a) => from_f32_like(v, a),
                other => other,
            })
            .collect()),
        other => Err(ctx.bad_dtype(like, other)),
    }
}

/// Float input `i` as an array of `T` (borrowed when it already is one).
pub(crate) fn real_input<'a, T: Real>(ctx: &OpCtx<'a>, i: usize) -> Result<CowArray<'a, T, IxDyn>> {
    let v = ctx.required(i)?;
    T::cow(v).ok_or_else(|| ctx.bad_dtype(i, v))
}

/// Optional float input `i` as an array of `T`.
pub(crate) fn real_input_opt<'a, T: Real>(
    ctx: &OpCtx<'a>,
    i: usize,
) -> Result<Option<CowArray<'a, T, IxDyn>>> {
    match ctx.input(i) {
        None => Ok(None),
        Some(_) => real_input(ctx, i).map(Some),
    }
}

/// The product of `dims`, or an error if it overflows.
pub(crate) fn checked_product(ctx: &OpCtx<'_>, dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d).ok_or_else(|| {
            ctx.err(
                format!("shape {dims:?} is too large"),
                "Use smaller tensors",
            )
        })
    })
}

/// INTS attribute `name` as `rank` values, each at least `min`; `default` when absent.
pub(crate) fn usize_list(
    ctx: &OpCtx<'_>,
    name: &str,
    rank: usize,
    min: i64,
    default: usize,
) -> Result<Vec<usize>> {
    let Some(v) = ctx.attr_ints(name)? else {
        return Ok(vec![default; rank]);
    };
    if v.len() != rank {
        return Err(ctx.err(
            format!(
                "attribute '{name}' has {} values for {rank} spatial axes",
                v.len()
            ),
            format!("Give '{name}' one value per spatial axis"),
        ));
    }
    v.iter()
        .map(|&x| {
            if x < min {
                Err(ctx.err(
                    format!("attribute '{name}' = {v:?} has a value below {min}"),
                    format!("Use values of at least {min} in '{name}'"),
                ))
            } else {
                usize::try_from(x).map_err(|_| {
                    ctx.err(
                        format!("attribute '{name}' value {x} is too large"),
                        "Fix the model",
                    )
                })
            }
        })
        .collect()
}

/// The geometry of a sliding window over the spatial axes: input position of output `o`,
/// kernel tap `k` on axis `i` is `o * strides[i] - pad_begin[i] + k * dilations[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Signed: ConvTranspose with an `output_shape` may pad by a negative amount.
    pub pad_begin: Vec<i64>,
    pub pad_end: Vec<i64>,
    pub output: Vec<usize>,
}

/// `auto_pad` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

pub(crate) fn auto_pad(ctx: &OpCtx<'_>) -> Result<AutoPad> {
    Ok(match ctx.attr_string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" | "" => AutoPad::NotSet,
        "SAME_UPPER" => AutoPad::SameUpper,
        "SAME_LOWER" => AutoPad::SameLower,
        "VALID" => AutoPad::Valid,
        other => {
            return Err(ctx.err(
                format!("auto_pad '{other}' is not a valid value"),
                "Use NOTSET, SAME_UPPER, SAME_LOWER or VALID",
            ));
        }
    })
}

/// Explicit `pads` attribute as (begin, end) per spatial axis (zeros when absent).
pub(crate) fn explicit_pads(ctx: &OpCtx<'_>, rank: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    let pads = usize_list(ctx, "pads", 2 * rank, 0, 0).map_err(|_| {
        ctx.err(
            format!(
                "attribute 'pads' = {:?} is not {} non-negative values",
                ctx.attr_ints("pads").ok().flatten().unwrap_or_default(),
                2 * rank
            ),
            "Give pads as [x1_begin, x2_begin, ..., x1_end, x2_end, ...]",
        )
    })?;
    let (b, e) = pads.split_at(rank);
    Ok((b.to_vec(), e.to_vec()))
}

fn too_big(ctx: &OpCtx<'_>) -> crate::error::RefError {
    ctx.err(
        "window sizes overflow",
        "Use smaller kernels, strides or pads",
    )
}

/// The window geometry of Conv and the pools from `strides`, `dilations`, `pads` and
/// `auto_pad` (attributes of the node) over `input` with kernel `kernel`.
///
/// Output size per axis, with `ek = (kernel - 1) * dilation + 1`:
/// - NOTSET: `floor((in + pads - ek) / stride) + 1`; with `ceil_mode` the ceiling, less one
///   when the last window would start in the end padding;
/// - SAME_UPPER / SAME_LOWER: `ceil(in / stride)`, total padding
///   `max(0, (out - 1) * stride + ek - in)` split evenly, the odd one at the end (UPPER) or
///   the beginning (LOWER);
/// - VALID: no padding, `ceil((in - ek + 1) / stride)`.
pub(crate) fn window(
    ctx: &OpCtx<'_>,
    input: &[usize],
    kernel: &[usize],
    ceil_mode: bool,
) -> Result<Window> {
    let rank = input.len();
    if kernel.len() != rank {
        return Err(ctx.err(
            format!(
                "kernel has {} axes but the input has {rank} spatial axes",
                kernel.len()
            ),
            "Give kernel_shape one value per spatial axis",
        ));
    }
    if kernel.contains(&0) {
        return Err(ctx.err(
            format!("kernel shape {kernel:?} has a zero"),
            "Use kernel sizes >= 1",
        ));
    }
    let strides = usize_list(ctx, "strides", rank, 1, 1)?;
    let dilations = usize_list(ctx, "dilations", rank, 1, 1)?;
    let mode = auto_pad(ctx)?;
    let (mut pad_begin, mut pad_end) = match mode {
        AutoPad::NotSet => explicit_pads(ctx, rank)?,
        _ => (vec![0; rank], vec![0; rank]),
    };
    let mut output = Vec::with_capacity(rank);
    for i in 0..rank {
        let ek = (kernel[i] - 1)
            .checked_mul(dilations[i])
            .and_then(|x| x.checked_add(1))
            .ok_or_else(|| too_big(ctx))?;
        let s = strides[i];
        let small = || {
            ctx.err(
                format!(
                    "spatial axis {i}: the window ({ek} wide with dilation) is larger than the \
                     padded input ({} + pads)",
                    input[i]
                ),
                "Use a smaller kernel, or more padding",
            )
        };
        let out = match mode {
            AutoPad::NotSet => {
                let padded = input[i]
                    .checked_add(pad_begin[i])
                    .and_then(|x| x.checked_add(pad_end[i]))
                    .ok_or_else(|| too_big(ctx))?;
                let span = padded.checked_sub(ek).ok_or_else(small)?;
                if ceil_mode {
                    let mut out = span.div_ceil(s) + 1;
                    if (out - 1).checked_mul(s).ok_or_else(|| too_big(ctx))?
                        >= input[i] + pad_begin[i]
                    {
                        out -= 1;
                    }
                    out
                } else {
                    span / s + 1
                }
            }
            AutoPad::SameUpper | AutoPad::SameLower => {
                let out = input[i].div_ceil(s);
                let need = out
                    .saturating_sub(1)
                    .checked_mul(s)
                    .and_then(|x| x.checked_add(ek))
                    .ok_or_else(|| too_big(ctx))?;
                let total = need.saturating_sub(input[i]);
                let (small_half, big_half) = (total / 2, total - total / 2);
                if mode == AutoPad::SameUpper {
                    pad_begin[i] = small_half;
                    pad_end[i] = big_half;
                } else {
                    pad_begin[i] = big_half;
                    pad_end[i] = small_half;
                }
                out
            }
            AutoPad::Valid => input[i].checked_sub(ek).ok_or_else(small)? / s + 1,
        };
        output.push(out);
    }
    let signed = |v: Vec<usize>| -> Result<Vec<i64>> {
        v.into_iter()
            .map(|p| i64::try_from(p).map_err(|_| too_big(ctx)))
            .collect()
    };
    Ok(Window {
        input: input.to_vec(),
        kernel: kernel.to_vec(),
        strides,
        dilations,
        pad_begin: signed(pad_begin)?,
        pad_end: signed(pad_end)?,
        output,
    })
}

/// Marks a window tap that falls outside the input in [`Window::table`].
pub(crate) const OUTSIDE: usize = usize::MAX;

impl Window {
    /// Input coordinate of output `o`, kernel tap `k` on axis `i`, if inside the input.
    fn coord(&self, i: usize, o: usize, k: usize) -> Option<usize> {
        let base = o
            .checked_mul(self.strides[i])?
            .checked_add(k.checked_mul(self.dilations[i])?)?;
        let p = i64::try_from(base).ok()?.checked_sub(self.pad_begin[i])?;
        usize::try_from(p).ok().filter(|&p| p < self.input[i])
    }

    /// The gather table: entry `kf * L + of` (kernel tap `kf`, output position `of`, both
    /// flattened row-major; `L` = output size) is the row-major flat offset of the input
    /// position it reads, or [`OUTSIDE`] when that falls in the padding.
    pub(crate) fn table(&self) -> Vec<usize> {
        let rank = self.input.len();
        let mut in_strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1].saturating_mul(self.input[i + 1]);
        }
        let dims: Vec<usize> = self.kernel.iter().chain(&self.output).copied().collect();
        let mut out = Vec::with_capacity(dims.iter().product());
        for idx in ndarray::indices(IxDyn(&dims)) {
            let mut off = 0usize;
            let mut inside = true;
            for i in 0..rank {
                match self.coord(i, idx[rank + i], idx[i]) {
                    Some(p) => off += p * in_strides[i],
                    None => {
                        inside = false;
                        break;
                    }
                }
            }
            out.push(if inside { off } else { OUTSIDE });
        }
        out
    }

    /// Per output position (row-major): how many kernel taps fall inside the input extended by
    /// the pads (AveragePool's divisor with `count_include_pad`).
    pub(crate) fn padded_counts(&self) -> Vec<usize> {
        let rank = self.input.len();
        let per_axis: Vec<Vec<usize>> = (0..rank)
            .map(|i| {
                let hi = i64::try_from(self.input[i])
                    .unwrap_or(i64::MAX)
                    .saturating_add(self.pad_begin[i])
                    .saturating_add(self.pad_end[i]);
                (0..self.output[i])
                    .map(|o| {
                        (0..self.kernel[i])
                            .filter(|&k| {
                                let p = o
                                    .saturating_mul(self.strides[i])
                                    .saturating_add(k.saturating_mul(self.dilations[i]));
                                i64::try_from(p).is_ok_and(|p| p < hi)
                            })
                            .count()
                    })
                    .collect()
            })
            .collect();
        ndarray::indices(IxDyn(&self.output))
            .into_iter()
            .map(|idx| (0..rank).map(|i| per_axis[i][idx[i]]).product())
            .collect()
    }

    pub(crate) fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }

    pub(crate) fn output_size(&self) -> usize {
        self.output.iter().product()
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use kiln_onnx::{AttrValue, Attribute, Node};
    use ndarray::{ArrayD, IxDyn};

    use crate::error::Result;
    use crate::ops::{OpCtx, OpFn};
    use crate::value::Value;

    pub fn node(op: &str, attrs: &[(&str, AttrValue)]) -> Node {
        Node {
            name: format!("test_{op}"),
            op_type: op.to_string(),
            attributes: attrs
                .iter()
                .map(|(n, v)| Attribute::new(*n, v.clone()))
                .collect(),
            ..Node::default()
        }
    }

    pub fn run(f: OpFn, n: &Node, opset: i64, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        f(&OpCtx::new(n, opset, inputs.to_vec()))
    }

    pub fn f32s(shape: &[usize], v: &[f32]) -> Value {
        Value::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    pub fn f64s(shape: &[usize], v: &[f64]) -> Value {
        Value::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    /// 0, 1, 2, ... as f32 of `shape`.
    pub fn iota(shape: &[usize]) -> Value {
        let n: usize = shape.iter().product();
        f32s(shape, &(0..n).map(|x| x as f32).collect::<Vec<_>>())
    }

    pub fn ints(v: &[i64]) -> AttrValue {
        AttrValue::Ints(v.to_vec())
    }

    pub fn s(v: &str) -> AttrValue {
        AttrValue::String(v.as_bytes().to_vec())
    }

    /// Asserts `got` has `shape` and its elements are within `tol` of `want`.
    pub fn close(got: &Value, shape: &[usize], want: &[f64], tol: f64) {
        assert_eq!(got.shape(), shape, "shape");
        let g = got.to_f64_vec();
        assert_eq!(g.len(), want.len(), "length");
        for (i, (a, b)) in g.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()) || (a.is_nan() && b.is_nan()),
                "element {i}: got {a}, want {b}\n got {g:?}"
            );
        }
    }
}
