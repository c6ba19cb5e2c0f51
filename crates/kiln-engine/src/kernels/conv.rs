//! Convolutions through cuDNN: ONNX `Conv` (2-D, and 1-D as 2-D with height 1) and
//! `ConvTranspose` (cuDNN's backward-data convolution).
//!
//! - [`ConvGeometry`]: the forward convolution cuDNN sees: `n`, input channels `c`, output
//!   channels `k`, input size, kernel, symmetric pads, strides, dilations, groups. A
//!   `ConvTranspose` is the backward-data pass of the forward convolution that maps its output
//!   back to its input, so its geometry is that forward convolution's ([`ConvDesc::transpose`]).
//! - [`ConvDesc`]: geometry + [`MathMode`] + [`ConvLayout`] + fused bias / ReLU / residual add.
//!   fp32 runs NCHW with FMA math (no TF32), tf32 allows TF32 tensor cores, fp16/bf16 run
//!   best in NHWC on tensor cores with f32 accumulation. In NHWC the filter is `K×R×S×C`
//!   ([`kcrs_to_krsc`] converts ONNX weights at build time).
//! - [`Dnn`]: the cuDNN handle of a device (created once; calls are serialised by a mutex
//!   since a cuDNN handle is bound to one stream at a time): [`Dnn::select`] takes the best
//!   algorithm of cuDNN's heuristics within the workspace limit ([`ConvTactic`], plain data for
//!   the plan), [`Dnn::candidates`] lists the heuristics' top k as tactics (the builder times
//!   them, `runtime::timing`), [`Dnn::enqueue`] runs it. Bias and ReLU (and a residual input) are fused with
//!   `cudnnConvolutionBiasActivationForward` where cuDNN allows it, otherwise applied after the
//!   convolution with `cudnnAddTensor` / `cudnnActivationForward`.
//!
//! Asymmetric pads (ONNX allows them; PyTorch exports never have them) are not a cuDNN feature:
//! [`ConvDesc::from_onnx`] returns `Unsupported` naming the pads, and [`split_pads`] says how
//! much explicit padding a preceding `Pad` step must add for the rest to be symmetric.

#[path = "conv_dnn.rs"]
mod dnn;

pub use dnn::{CUDNN_SYMBOLS, ConvArgs, ConvTactic, Dnn};

use serde::{Deserialize, Serialize};

use super::gemm::{LibError, LibResult, MathMode};

fn invalid(what: impl Into<String>) -> LibError {
    LibError::Invalid {
        op: "conv",
        what: what.into(),
    }
}

/// Memory order of activations (and of the filter: KCRS for NCHW, KRSC for NHWC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConvLayout {
    Nchw,
    Nhwc,
}

impl ConvLayout {
    /// The layout cuDNN runs fastest for a math mode: NHWC for fp16/bf16 (tensor cores).
    pub fn preferred(math: MathMode) -> ConvLayout {
        match math {
            MathMode::Fp16 | MathMode::Bf16 => ConvLayout::Nhwc,
            MathMode::Fp32 | MathMode::Tf32 => ConvLayout::Nchw,
        }
    }
}

/// Forward (cross-correlation) 2-D convolution geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvGeometry {
    pub n: usize,
    /// Input channels (all groups).
    pub c: usize,
    /// Output channels (all groups).
    pub k: usize,
    /// Input height and width.
    pub hw: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Symmetric pads (top/bottom, left/right).
    pub pads: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub groups: usize,
}

impl ConvGeometry {
    /// Output height and width (ONNX/cuDNN formula), `None` when the window does not fit.
    pub fn out_hw(&self) -> Option<[usize; 2]> {
        let axis = |i: usize| -> Option<usize> {
            let span = self.dilations[i].checked_mul(self.kernel[i].checked_sub(1)?)? + 1;
            let padded = self.hw[i].checked_add(self.pads[i].checked_mul(2)?)?;
            Some(padded.checked_sub(span)? / self.strides[i] + 1)
        };
        Some([axis(0)?, axis(1)?])
    }

    /// Checks ranges: positive sizes, channels divisible by groups, everything fits cuDNN's
    /// `int` dims and element counts.
    pub fn validate(&self) -> LibResult<()> {
        let g = self.groups;
        let positive = [self.n, self.c, self.k, g]
            .iter()
            .chain(&self.hw)
            .chain(&self.kernel)
            .chain(&self.strides)
            .chain(&self.dilations)
            .all(|&v| v > 0);
        if !positive {
            return Err(invalid(format!("zero size in {self:?}")));
        }
        if !self.c.is_multiple_of(g) || !self.k.is_multiple_of(g) {
            return Err(invalid(format!(
                "channels {} in / {} out not divisible by groups {g}",
                self.c, self.k
            )));
        }
        let out = self
            .out_hw()
            .ok_or_else(|| invalid(format!("kernel larger than the padded input: {self:?}")))?;
        let max = i32::MAX as usize;
        let count = |ch: usize, hw: [usize; 2]| {
            [self.n, ch, hw[0], hw[1]]
                .iter()
                .try_fold(1usize, |a, &b| a.checked_mul(b))
        };
        let fits = |v: Option<usize>| v.is_some_and(|v| v <= max);
        if !fits(count(self.c, self.hw))
            || !fits(count(self.k, out))
            || !fits(count(self.c / g, self.kernel).and_then(|v| v.checked_mul(self.k)))
            || self.pads.iter().any(|&p| p > max)
        {
            return Err(LibError::Unsupported {
                op: "conv",
                what: format!("tensors beyond cuDNN's 2^31 elements: {self:?}"),
            });
        }
        Ok(())
    }

    /// Filter dims `[k, c / groups, kh, kw]`.
    pub fn filter_dims(&self) -> [usize; 4] {
        [self.k, self.c / self.groups, self.kernel[0], self.kernel[1]]
    }
}

/// Which cuDNN operation a [`ConvDesc`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConvKind {
    /// `Conv`: input `[n, c, h, w]` → output `[n, k, oh, ow]`.
    Forward,
    /// `ConvTranspose`: input `[n, k, oh, ow]` → output `[n, c, h, w]` (backward data).
    Transpose,
}

/// One convolution: geometry, kind, precision, layout and what is fused after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvDesc {
    pub kind: ConvKind,
    pub geometry: ConvGeometry,
    pub math: MathMode,
    pub layout: ConvLayout,
    /// A per-output-channel bias vector is added.
    pub bias: bool,
    /// ReLU after bias (and residual).
    pub relu: bool,
    /// A residual tensor of the output's shape is added before the ReLU (ResNet's
    /// `Relu(Conv(x) + skip)`). Forward only.
    pub residual: bool,
}

/// ONNX `pads` `[x1_begin, x2_begin, .., x1_end, x2_end]` split into the symmetric part cuDNN
/// takes and the extra `(begin, end)` per spatial axis a `Pad` step must add before.
pub fn split_pads(pads: &[usize]) -> (Vec<usize>, Vec<(usize, usize)>) {
    let r = pads.len() / 2;
    (0..r)
        .map(|i| {
            let (b, e) = (pads[i], pads[r + i]);
            let s = b.min(e);
            (s, (b - s, e - s))
        })
        .unzip()
}

fn two<T: Copy>(v: &[T], fill: T, what: &str) -> LibResult<[T; 2]> {
    match *v {
        [a] => Ok([fill, a]),
        [a, b] => Ok([a, b]),
        _ => Err(LibError::Unsupported {
            op: "conv",
            what: format!("{what} of {} spatial dims (only 1-D and 2-D)", v.len()),
        }),
    }
}

impl ConvDesc {
    /// A `Conv` from ONNX shapes and attributes: `x_dims` `[n, c, (h,) w]`, `w_dims`
    /// `[k, c/g, (kh,) kw]` (ONNX order, whatever `layout` is), explicit `pads` (2 × spatial,
    /// ONNX order; `auto_pad` already resolved), `strides`, `dilations` (empty = 1s). A 1-D
    /// convolution becomes a 2-D one of height 1. No bias, ReLU or residual yet.
    #[allow(clippy::too_many_arguments)]
    pub fn from_onnx(
        math: MathMode,
        layout: ConvLayout,
        x_dims: &[usize],
        w_dims: &[usize],
        pads: &[usize],
        strides: &[usize],
        dilations: &[usize],
        groups: usize,
    ) -> LibResult<ConvDesc> {
        if x_dims.len() != w_dims.len() || !(3..=4).contains(&x_dims.len()) {
            return Err(LibError::Unsupported {
                op: "conv",
                what: format!("input {x_dims:?} with weights {w_dims:?} (only 1-D and 2-D)"),
            });
        }
        let sp = x_dims.len() - 2;
        let ones = vec![1; sp];
        let zeros = vec![0; 2 * sp];
        let pads = if pads.is_empty() { &zeros[..] } else { pads };
        let strides = if strides.is_empty() {
            &ones[..]
        } else {
            strides
        };
        let dilations = if dilations.is_empty() {
            &ones[..]
        } else {
            dilations
        };
        if pads.len() != 2 * sp || strides.len() != sp || dilations.len() != sp {
            return Err(invalid(format!(
                "pads {pads:?}, strides {strides:?}, dilations {dilations:?} for {sp} spatial dims"
            )));
        }
        let (sym, extra) = split_pads(pads);
        if extra.iter().any(|&(b, e)| b + e > 0) {
            return Err(LibError::Unsupported {
                op: "conv",
                what: format!(
                    "asymmetric pads {pads:?} (cuDNN pads both sides alike): pad the input \
                     explicitly by {extra:?} (begin, end) per axis first"
                ),
            });
        }
        let groups = groups.max(1);
        if w_dims[1] * groups != x_dims[1] {
            return Err(invalid(format!(
                "weights {w_dims:?} × group {groups} do not match input channels {}",
                x_dims[1]
            )));
        }
        let geometry = ConvGeometry {
            n: x_dims[0],
            c: x_dims[1],
            k: w_dims[0],
            hw: two(&x_dims[2..], 1, "input")?,
            kernel: two(&w_dims[2..], 1, "kernel")?,
            pads: two(&sym, 0, "pads")?,
            strides: two(strides, 1, "strides")?,
            dilations: two(dilations, 1, "dilations")?,
            groups,
        };
        geometry.validate()?;
        Ok(ConvDesc {
            kind: ConvKind::Forward,
            geometry,
            math,
            layout,
            bias: false,
            relu: false,
            residual: false,
        })
    }

    /// A `ConvTranspose` from ONNX shapes: `x_dims` `[n, c_in, (h,) w]`, `w_dims`
    /// `[c_in, c_out/g, (kh,) kw]`, explicit symmetric `pads`, `strides`, `dilations`,
    /// `output_padding` (each < its stride or dilation). The output is `[n, c_out, ..]` with
    /// `stride·(in−1) + output_padding + dilation·(kernel−1) + 1 − pad_begin − pad_end`.
    #[allow(clippy::too_many_arguments)]
    pub fn transpose(
        math: MathMode,
        layout: ConvLayout,
        x_dims: &[usize],
        w_dims: &[usize],
        pads: &[usize],
        strides: &[usize],
        dilations: &[usize],
        output_padding: &[usize],
        groups: usize,
    ) -> LibResult<ConvDesc> {
        if x_dims.len() != w_dims.len() || !(3..=4).contains(&x_dims.len()) {
            return Err(LibError::Unsupported {
                op: "conv_transpose",
                what: format!("input {x_dims:?} with weights {w_dims:?} (only 1-D and 2-D)"),
            });
        }
        let sp = x_dims.len() - 2;
        let groups = groups.max(1);
        let get = |v: &[usize], i: usize, d: usize| if v.is_empty() { d } else { v[i] };
        if (!strides.is_empty() && strides.len() != sp)
            || (!dilations.is_empty() && dilations.len() != sp)
            || (!output_padding.is_empty() && output_padding.len() != sp)
            || (!pads.is_empty() && pads.len() != 2 * sp)
        {
            return Err(invalid("attribute lengths do not match the spatial rank"));
        }
        // The forward convolution maps the transpose's output (c_out channels) to its input.
        let mut out_sp = Vec::with_capacity(sp);
        for i in 0..sp {
            let (s, d, op) = (
                get(strides, i, 1),
                get(dilations, i, 1),
                get(output_padding, i, 0),
            );
            let (pb, pe) = (get(pads, i, 0), get(pads, sp + i, 0));
            if s == 0 || d == 0 || (op >= s && op >= d) {
                return Err(invalid(format!(
                    "stride {s}, dilation {d}, output_padding {op} on axis {i}"
                )));
            }
            let full = s * (x_dims[2 + i].max(1) - 1) + op + d * (w_dims[2 + i].max(1) - 1) + 1;
            out_sp.push(
                full.checked_sub(pb + pe)
                    .filter(|&v| v > 0)
                    .ok_or_else(|| invalid(format!("pads {pads:?} leave no output on axis {i}")))?,
            );
        }
        let c_out = w_dims[1] * groups;
        let mut fwd_x = vec![x_dims[0], c_out];
        fwd_x.extend(&out_sp);
        let fwd_w = [&[w_dims[0], c_out / groups][..], &w_dims[2..]].concat();
        let mut desc = Self::from_onnx(
            math, layout, &fwd_x, &fwd_w, pads, strides, dilations, groups,
        )
        .map_err(|e| match e {
            LibError::Invalid { what, .. } => invalid(format!("ConvTranspose: {what}")),
            other => other,
        })?;
        let got = desc.geometry.out_hw();
        if got.map(|o| o[0] * o[1]) != Some(x_dims[2..].iter().product())
            || desc.geometry.k != x_dims[1]
        {
            return Err(invalid(format!(
                "ConvTranspose {x_dims:?} with {w_dims:?}: output {out_sp:?} does not map back \
                 to the input (got {got:?})"
            )));
        }
        desc.kind = ConvKind::Transpose;
        Ok(desc)
    }

    /// Adds fused bias / ReLU / residual.
    pub fn with_epilogue(mut self, bias: bool, relu: bool, residual: bool) -> ConvDesc {
        self.bias = bias;
        self.relu = relu;
        self.residual = residual;
        self
    }

    /// `[n, c, h, w]` of the tensor read (logical NCHW order, whatever the layout).
    pub fn input_dims(&self) -> [usize; 4] {
        let g = &self.geometry;
        match self.kind {
            ConvKind::Forward => [g.n, g.c, g.hw[0], g.hw[1]],
            ConvKind::Transpose => {
                let o = g.out_hw().unwrap_or([0, 0]);
                [g.n, g.k, o[0], o[1]]
            }
        }
    }

    /// `[n, c, h, w]` of the tensor written (logical NCHW order).
    pub fn output_dims(&self) -> [usize; 4] {
        let g = &self.geometry;
        match self.kind {
            ConvKind::Forward => {
                let o = g.out_hw().unwrap_or([0, 0]);
                [g.n, g.k, o[0], o[1]]
            }
            ConvKind::Transpose => [g.n, g.c, g.hw[0], g.hw[1]],
        }
    }

    /// Channels of the bias vector (the output's channels).
    pub fn bias_len(&self) -> usize {
        self.output_dims()[1]
    }

    /// Checks the description (geometry, and that residual is only used forward).
    pub fn validate(&self) -> LibResult<()> {
        self.geometry.validate()?;
        if self.residual && self.kind == ConvKind::Transpose {
            return Err(LibError::Unsupported {
                op: "conv_transpose",
                what: "a fused residual input".into(),
            });
        }
        Ok(())
    }
}

/// Element strides `[n, c, h, w]` of a packed tensor of logical dims `[n, c, h, w]`.
pub fn strides(layout: ConvLayout, dims: [usize; 4]) -> [usize; 4] {
    let [_, c, h, w] = dims;
    match layout {
        ConvLayout::Nchw => [c * h * w, h * w, w, 1],
        ConvLayout::Nhwc => [h * w * c, 1, w * c, c],
    }
}

/// `[a, b, c, d]` data reordered to `[a, c, d, b]` (axis 1 moved last); `what` names the data
/// in the error.
fn axis1_last<T: Copy>(x: &[T], dims: [usize; 4], what: &str) -> LibResult<Vec<T>> {
    let [n, c, h, w] = dims;
    if dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) != Some(x.len()) {
        return Err(invalid(format!("{} {what} for dims {dims:?}", x.len())));
    }
    let mut out = Vec::with_capacity(x.len());
    for nn in 0..n {
        for hh in 0..h {
            for ww in 0..w {
                for cc in 0..c {
                    out.push(x[((nn * c + cc) * h + hh) * w + ww]);
                }
            }
        }
    }
    Ok(out)
}

/// ONNX weights `[k, c, r, s]` reordered to `[k, r, s, c]` (cuDNN's NHWC filter layout).
pub fn kcrs_to_krsc<T: Copy>(w: &[T], dims: [usize; 4]) -> LibResult<Vec<T>> {
    axis1_last(w, dims, "weights")
}

/// NCHW activations reordered to NHWC (tests and host-side conversions).
pub fn nchw_to_nhwc<T: Copy>(x: &[T], dims: [usize; 4]) -> LibResult<Vec<T>> {
    axis1_last(x, dims, "values")
}

/// NHWC activations back to NCHW.
pub fn nhwc_to_nchw<T: Copy>(x: &[T], dims: [usize; 4]) -> LibResult<Vec<T>> {
    let [n, c, h, w] = dims;
    if dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) != Some(x.len()) {
        return Err(invalid(format!("{} values for dims {dims:?}", x.len())));
    }
    let mut out = Vec::with_capacity(x.len());
    for nn in 0..n {
        for cc in 0..c {
            for hh in 0..h {
                for ww in 0..w {
                    out.push(x[((nn * h + hh) * w + ww) * c + cc]);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
