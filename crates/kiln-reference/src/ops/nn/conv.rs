//! Conv and ConvTranspose, over 1, 2, 3 (any number of) spatial axes.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Conv.html>,
//! <https://onnx.ai/onnx/operators/onnx__ConvTranspose.html>.
//!
//! Opset history (both ops): 1 (first version), 11 (`auto_pad` and output-shape rules
//! clarified; the default of `kernel_shape` is W's spatial shape), 22 (bfloat16). Attributes:
//! `auto_pad` (NOTSET, SAME_UPPER, SAME_LOWER, VALID), `dilations`, `group`, `kernel_shape`,
//! `pads`, `strides`; ConvTranspose also `output_padding` and `output_shape`.
//!
//! Conv: `X` is `[N, C, D1, ...]`, `W` is `[M, C / group, k1, ...]`, optional bias `B` of
//! `[M]`. Computed per image and group by im2col (a `[C/group * K, L]` matrix of the windows,
//! `K` kernel taps, `L` output positions) and one GEMM with W's rows of that group.
//!
//! ConvTranspose: `W` is `[C, M / group, k1, ...]`; input position `i` and tap `k` write to
//! output position `i * stride - pad_begin + k * dilation`. Output size, with
//! `ek = (k - 1) * dilation + 1` and `full = stride * (in - 1) + output_padding + ek`:
//! `full - pad_begin - pad_end` with explicit pads; with `output_shape` (or SAME_*, where the
//! output shape is `in * stride`) the total padding `full - out` is split in two, the larger
//! half at the end for SAME_UPPER and at the beginning otherwise (negative totals extend the
//! output with zeros). Computed per image and group as one GEMM `W_g^T * X_g` and col2im.

use ndarray::{Array2, Array3, IxDyn, s};

use super::common::{
    AutoPad, OUTSIDE, Real, Window, auto_pad, checked_product, explicit_pads, float_op, real_input,
    real_input_opt, usize_list, window,
};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

/// The common checks of both ops: ranks, group, kernel shape. Returns `(group, kernel)`.
fn check_shapes(ctx: &OpCtx<'_>, xs: &[usize], ws: &[usize]) -> Result<(usize, Vec<usize>)> {
    if xs.len() < 3 {
        return Err(ctx.err(
            format!("X has shape {xs:?}; it must be [N, C, D1, ...] with a spatial axis"),
            "Give X of rank >= 3",
        ));
    }
    if ws.len() != xs.len() {
        return Err(ctx.err(
            format!("W has shape {ws:?} but X has rank {}", xs.len()),
            "Give W the rank of X",
        ));
    }
    let group = ctx.attr_int("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g >= 1)
        .ok_or_else(|| ctx.err(format!("group = {group}"), "Use group >= 1"))?;
    let kernel = ws[2..].to_vec();
    if let Some(ks) = ctx.attr_ints("kernel_shape")?
        && ks
            .iter()
            .map(|&k| usize::try_from(k).ok())
            .ne(kernel.iter().map(|&k| Some(k)))
    {
        return Err(ctx.err(
            format!("kernel_shape {ks:?} differs from W's spatial shape {kernel:?}"),
            "Drop kernel_shape or make it match W",
        ));
    }
    Ok((group, kernel))
}

fn internal(ctx: &OpCtx<'_>, e: impl std::fmt::Display) -> crate::error::RefError {
    ctx.err(
        format!("internal reshape failed: {e}"),
        "Please report this with the model",
    )
}

fn conv_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = real_input::<T>(ctx, 0)?;
    let w = real_input::<T>(ctx, 1)?;
    let b = real_input_opt::<T>(ctx, 2)?;
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let (group, kernel) = check_shapes(ctx, &xs, &ws)?;
    let (n, c, m, cg) = (xs[0], xs[1], ws[0], ws[1]);
    if cg.checked_mul(group) != Some(c) || m % group != 0 {
        return Err(ctx.err(
            format!("X has {c} channels and W is {ws:?} with group = {group}"),
            "W must be [M, C / group, ...] with M divisible by group",
        ));
    }
    if let Some(b) = &b
        && b.shape() != [m]
    {
        return Err(ctx.err(
            format!("B has shape {:?}, not [{m}]", b.shape()),
            "Give B one value per output channel",
        ));
    }
    let win = window(ctx, &xs[2..], &kernel, false)?;
    let (k, l) = (win.kernel_size(), win.output_size());
    let spatial = checked_product(ctx, &xs[2..])?;
    checked_product(ctx, &[cg, k, l])?;
    let table = win.table();
    let x = x.as_standard_layout();
    let xflat = x
        .as_slice()
        .ok_or_else(|| internal(ctx, "X not contiguous"))?;
    let w2 = w
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((m, cg * k))
        .map_err(|e| internal(ctx, e))?;
    let mg = m / group;
    let mut out = Array3::<T>::zeros((n, m, l));
    let mut cols = Array2::<T>::zeros((cg * k, l));
    for ni in 0..n {
        for g in 0..group {
            for ci in 0..cg {
                let start = ((ni * c) + g * cg + ci) * spatial;
                let chan = xflat.get(start..start + spatial).unwrap_or(&[]);
                for kf in 0..k {
                    let mut row = cols.row_mut(ci * k + kf);
                    let taps = table.get(kf * l..(kf + 1) * l).unwrap_or(&[]);
                    for (dst, &t) in row.iter_mut().zip(taps) {
                        *dst = if t == OUTSIDE {
                            T::ZERO
                        } else {
                            chan.get(t).copied().unwrap_or(T::ZERO)
                        };
                    }
                }
            }
            let wg = w2.slice(s![g * mg..(g + 1) * mg, ..]);
            let y = wg.dot(&cols);
            out.slice_mut(s![ni, g * mg..(g + 1) * mg, ..]).assign(&y);
        }
    }
    if let Some(b) = &b {
        for (mi, &bv) in b.iter().enumerate() {
            out.slice_mut(s![.., mi, ..]).mapv_inplace(|v| v + bv);
        }
    }
    let shape: Vec<usize> = [n, m]
        .into_iter()
        .chain(win.output.iter().copied())
        .collect();
    let out = out
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| internal(ctx, e))?;
    Ok(vec![T::wrap(out)])
}

/// ConvTranspose's geometry: a [`Window`] whose "input" is the op's output and whose
/// "output" is the op's input.
fn transpose_window(ctx: &OpCtx<'_>, input: &[usize], kernel: &[usize]) -> Result<Window> {
    let rank = input.len();
    let strides = usize_list(ctx, "strides", rank, 1, 1)?;
    let dilations = usize_list(ctx, "dilations", rank, 1, 1)?;
    let out_pad = usize_list(ctx, "output_padding", rank, 0, 0)?;
    let mode = auto_pad(ctx)?;
    let big = || ctx.err("ConvTranspose sizes overflow", "Use smaller sizes");
    let mut full = Vec::with_capacity(rank);
    for i in 0..rank {
        let ek = kernel[i]
            .checked_sub(1)
            .and_then(|x| x.checked_mul(dilations[i]))
            .and_then(|x| x.checked_add(1))
            .ok_or_else(|| {
                ctx.err(
                    format!("kernel {kernel:?} has a zero"),
                    "Use kernel sizes >= 1",
                )
            })?;
        let f = input[i]
            .checked_sub(1)
            .and_then(|x| x.checked_mul(strides[i]))
            .and_then(|x| x.checked_add(out_pad[i]))
            .and_then(|x| x.checked_add(ek))
            .and_then(|x| i64::try_from(x).ok())
            .ok_or_else(|| {
                if input[i] == 0 {
                    ctx.err(
                        "X has an empty spatial axis",
                        "Give X non-empty spatial axes",
                    )
                } else {
                    big()
                }
            })?;
        full.push(f);
    }
    let target: Option<Vec<i64>> = match ctx.attr_ints("output_shape")? {
        Some(os) => {
            let os = if os.len() == rank + 2 {
                os[2..].to_vec()
            } else {
                os
            };
            if os.len() != rank || os.iter().any(|&d| d < 0) {
                return Err(ctx.err(
                    format!("output_shape {os:?} is not {rank} non-negative sizes"),
                    "Give output_shape one size per spatial axis",
                ));
            }
            Some(os)
        }
        None if matches!(mode, AutoPad::SameUpper | AutoPad::SameLower) => Some(
            input
                .iter()
                .zip(&strides)
                .map(|(&i, &s)| {
                    i.checked_mul(s)
                        .and_then(|v| i64::try_from(v).ok())
                        .ok_or_else(big)
                })
                .collect::<Result<_>>()?,
        ),
        None => None,
    };
    let (pad_begin, pad_end, out): (Vec<i64>, Vec<i64>, Vec<i64>) = match target {
        Some(t) => {
            let mut pb = Vec::with_capacity(rank);
            let mut pe = Vec::with_capacity(rank);
            for i in 0..rank {
                let total = full[i] - t[i];
                let half = total.div_euclid(2);
                if mode == AutoPad::SameUpper {
                    pb.push(half);
                    pe.push(total - half);
                } else {
                    pb.push(total - half);
                    pe.push(half);
                }
            }
            (pb, pe, t)
        }
        None => {
            let (b, e) = match mode {
                AutoPad::Valid => (vec![0; rank], vec![0; rank]),
                _ => explicit_pads(ctx, rank)?,
            };
            let b: Vec<i64> = b
                .iter()
                .map(|&p| i64::try_from(p).unwrap_or(i64::MAX))
                .collect();
            let e: Vec<i64> = e
                .iter()
                .map(|&p| i64::try_from(p).unwrap_or(i64::MAX))
                .collect();
            let mut out = Vec::with_capacity(rank);
            for i in 0..rank {
                let o = full[i].checked_sub(b[i]).and_then(|v| v.checked_sub(e[i]));
                match o {
                    Some(o) if o >= 0 => out.push(o),
                    _ => {
                        return Err(ctx.err(
                            format!("pads {b:?} / {e:?} remove more than the full output {full:?}"),
                            "Use smaller pads",
                        ));
                    }
                }
            }
            (b, e, out)
        }
    };
    Ok(Window {
        input: out
            .iter()
            .map(|&o| usize::try_from(o).unwrap_or(0))
            .collect(),
        kernel: kernel.to_vec(),
        strides,
        dilations,
        pad_begin,
        pad_end,
        output: input.to_vec(),
    })
}

fn conv_transpose_t<T: Real>(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = real_input::<T>(ctx, 0)?;
    let w = real_input::<T>(ctx, 1)?;
    let b = real_input_opt::<T>(ctx, 2)?;
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let (group, kernel) = check_shapes(ctx, &xs, &ws)?;
    let (n, c, mg) = (xs[0], xs[1], ws[1]);
    if ws[0] != c || c % group != 0 {
        return Err(ctx.err(
            format!("X has {c} channels and W is {ws:?} with group = {group}"),
            "W must be [C, M / group, ...] with C divisible by group",
        ));
    }
    let cg = c / group;
    let m = mg
        .checked_mul(group)
        .ok_or_else(|| ctx.err("too many channels", "-"))?;
    if let Some(b) = &b
        && b.shape() != [m]
    {
        return Err(ctx.err(
            format!("B has shape {:?}, not [{m}]", b.shape()),
            "Give B one value per output channel",
        ));
    }
    let win = transpose_window(ctx, &xs[2..], &kernel)?;
    let k = win.kernel_size();
    let l = checked_product(ctx, &xs[2..])?;
    let o = checked_product(ctx, &win.input)?;
    checked_product(ctx, &[n, m, o])?;
    checked_product(ctx, &[mg, k, l])?;
    let table = win.table();
    let x3 = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, c, l))
        .map_err(|e| internal(ctx, e))?;
    let w2 = w
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((c, mg * k))
        .map_err(|e| internal(ctx, e))?;
    let mut out = Array3::<T>::zeros((n, m, o));
    for ni in 0..n {
        for g in 0..group {
            let xg = x3.slice(s![ni, g * cg..(g + 1) * cg, ..]);
            let wg = w2.slice(s![g * cg..(g + 1) * cg, ..]);
            let cols = wg.t().dot(&xg);
            for oc in 0..mg {
                let mut dst = out.slice_mut(s![ni, g * mg + oc, ..]);
                for kf in 0..k {
                    let row = cols.row(oc * k + kf);
                    let taps = table.get(kf * l..(kf + 1) * l).unwrap_or(&[]);
                    for (&v, &t) in row.iter().zip(taps) {
                        if t != OUTSIDE
                            && let Some(d) = dst.get_mut(t)
                        {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = &b {
        for (mi, &bv) in b.iter().enumerate() {
            out.slice_mut(s![.., mi, ..]).mapv_inplace(|v| v + bv);
        }
    }
    let shape: Vec<usize> = [n, m]
        .into_iter()
        .chain(win.input.iter().copied())
        .collect();
    let out = out
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| internal(ctx, e))?;
    Ok(vec![T::wrap(out)])
}

pub fn conv(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, conv_t::<f32>, conv_t::<f64>)
}

pub fn conv_transpose(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    float_op(ctx, 0, conv_transpose_t::<f32>, conv_transpose_t::<f64>)
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use kiln_onnx::AttrValue;

    // Expected values below come from onnx 1.23.2's numpy reference implementation
    // (onnx.reference.ReferenceEvaluator) on the same inputs.

    fn w3() -> Value {
        f32s(&[1, 1, 3, 3], &[1., 0., -1., 2., 1., 0., 0., 1., 1.])
    }

    #[test]
    fn conv_2d_pads_strides_auto_pad() {
        let x = iota(&[1, 1, 4, 4]);
        let w = w3();
        let y = run(conv, &node("Conv", &[]), 11, &[Some(&x), Some(&w)]).unwrap();
        close(&y[0], &[1, 1, 2, 2], &[30., 35., 50., 55.], 0.0);
        let n = node(
            "Conv",
            &[("pads", ints(&[1, 1, 1, 1])), ("strides", ints(&[2, 2]))],
        );
        let y = run(conv, &n, 11, &[Some(&x), Some(&w)]).unwrap();
        close(&y[0], &[1, 1, 2, 2], &[9., 17., 28., 55.], 0.0);
        let n = node(
            "Conv",
            &[("auto_pad", s("SAME_LOWER")), ("strides", ints(&[2, 1]))],
        );
        let b = f32s(&[1], &[0.5]);
        let y = run(conv, &n, 11, &[Some(&x), Some(&w), Some(&b)]).unwrap();
        close(
            &y[0],
            &[1, 1, 2, 4],
            &[9.5, 12.5, 17.5, 14.5, 28.5, 50.5, 55.5, 52.5],
            0.0,
        );
        let n = node(
            "Conv",
            &[("auto_pad", s("SAME_UPPER")), ("strides", ints(&[2, 2]))],
        );
        let y = run(conv, &n, 11, &[Some(&x), Some(&w)]).unwrap();
        close(&y[0], &[1, 1, 2, 2], &[30., 32., 35., 53.], 0.0);
        let n = node(
            "Conv",
            &[
                ("dilations", ints(&[2, 2])),
                ("kernel_shape", ints(&[3, 3])),
            ],
        );
        let y = run(conv, &n, 11, &[Some(&iota(&[1, 1, 5, 5])), Some(&w)]).unwrap();
        close(&y[0], &[1, 1, 1, 1], &[74.], 0.0);
    }

    #[test]
    fn conv_groups_depthwise_1d_3d() {
        let x = iota(&[1, 4, 5]);
        let w: Vec<f32> = (0..8).map(|v| v as f32 - 3.0).collect();
        let w = f32s(&[2, 2, 2], &w);
        let n = node(
            "Conv",
            &[("group", AttrValue::Int(2)), ("pads", ints(&[1, 0]))],
        );
        let y = run(conv, &n, 11, &[Some(&x), Some(&w)]).unwrap();
        close(
            &y[0],
            &[1, 2, 5],
            &[0., -7., -13., -19., -25., 80., 141., 151., 161., 171.],
            0.0,
        );
        let w: Vec<f32> = (0..12).map(|v| v as f32 / 10.0).collect();
        let w = f32s(&[4, 1, 3], &w);
        let n = node(
            "Conv",
            &[("group", AttrValue::Int(4)), ("auto_pad", s("VALID"))],
        );
        let y = run(conv, &n, 11, &[Some(&x), Some(&w)]).unwrap();
        let want = [
            0.5, 0.8, 1.1, 7.4, 8.6, 9.8, 23.3, 25.4, 27.5, 48.2, 51.2, 54.2,
        ];
        close(&y[0], &[1, 4, 3], &want, 1e-6);
        let x = iota(&[1, 2, 3, 3, 3]);
        let w: Vec<f32> = (0..16).map(|v| v as f32 / 8.0).collect();
        let w = f32s(&[1, 2, 2, 2, 2], &w);
        let n = node("Conv", &[("strides", ints(&[1, 2, 1]))]);
        let y = run(conv, &n, 11, &[Some(&x), Some(&w)]).unwrap();
        close(&y[0], &[1, 1, 2, 1, 2], &[429.5, 444.5, 564.5, 579.5], 1e-6);
    }

    #[test]
    fn conv_f64_f16_and_errors() {
        let x = f64s(&[1, 1, 3], &[1., 2., 3.]);
        let w = f64s(&[1, 1, 2], &[1., -1.]);
        let y = run(conv, &node("Conv", &[]), 11, &[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y[0], f64s(&[1, 1, 2], &[-1., -1.]));
        let h = |v: &Value| match v {
            Value::F64(a) => Value::F16(a.mapv(half::f16::from_f64)),
            _ => unreachable!(),
        };
        let y = run(conv, &node("Conv", &[]), 11, &[Some(&h(&x)), Some(&h(&w))]).unwrap();
        assert!(matches!(y[0], Value::F16(_)));
        close(&y[0], &[1, 1, 2], &[-1., -1.], 0.0);
        let n = node("Conv", &[]);
        // Channel mismatch, rank mismatch, kernel larger than input, bad bias, bad group.
        let w2 = f64s(&[1, 2, 2], &[1., 1., 1., 1.]);
        assert!(run(conv, &n, 11, &[Some(&x), Some(&w2)]).is_err());
        let w4 = f64s(&[1, 1, 1, 1], &[1.]);
        assert!(run(conv, &n, 11, &[Some(&x), Some(&w4)]).is_err());
        let wl = f64s(&[1, 1, 4], &[1., 1., 1., 1.]);
        assert!(run(conv, &n, 11, &[Some(&x), Some(&wl)]).is_err());
        let b = f64s(&[2], &[1., 1.]);
        assert!(run(conv, &n, 11, &[Some(&x), Some(&w), Some(&b)]).is_err());
        let g = node("Conv", &[("group", AttrValue::Int(0))]);
        assert!(run(conv, &g, 11, &[Some(&x), Some(&w)]).is_err());
        let p = node("Conv", &[("pads", ints(&[1]))]);
        assert!(run(conv, &p, 11, &[Some(&x), Some(&w)]).is_err());
        let a = node("Conv", &[("auto_pad", s("SAME"))]);
        assert!(run(conv, &a, 11, &[Some(&x), Some(&w)]).is_err());
        let k = node("Conv", &[("kernel_shape", ints(&[3]))]);
        assert!(run(conv, &k, 11, &[Some(&x), Some(&w)]).is_err());
    }

    fn ct_w() -> Value {
        let mut v = vec![1.0f32; 9];
        v.extend([2.0f32; 9]);
        f32s(&[1, 2, 3, 3], &v)
    }

    #[test]
    fn conv_transpose_basic_and_pads() {
        let x = iota(&[1, 1, 3, 3]);
        let w = ct_w();
        let y = run(
            conv_transpose,
            &node("ConvTranspose", &[]),
            11,
            &[Some(&x), Some(&w)],
        )
        .unwrap();
        let c0 = [
            0., 1., 3., 3., 2., 3., 8., 15., 12., 7., 9., 21., 36., 27., 15., 9., 20., 33., 24.,
            13., 6., 13., 21., 15., 8.,
        ];
        let want: Vec<f64> = c0
            .iter()
            .copied()
            .chain(c0.iter().map(|v| 2.0 * v))
            .collect();
        close(&y[0], &[1, 2, 5, 5], &want, 0.0);
        let n = node(
            "ConvTranspose",
            &[("strides", ints(&[2, 2])), ("pads", ints(&[1, 2, 0, 1]))],
        );
        let y = run(conv_transpose, &n, 11, &[Some(&x), Some(&w)]).unwrap();
        let c0 = [
            1., 1., 3., 2., 8., 5., 12., 7., 7., 4., 9., 5., 20., 11., 24., 13., 13., 7., 15., 8.,
            13., 7., 15., 8.,
        ];
        let want: Vec<f64> = c0
            .iter()
            .copied()
            .chain(c0.iter().map(|v| 2.0 * v))
            .collect();
        close(&y[0], &[1, 2, 6, 4], &want, 0.0);
    }

    #[test]
    fn conv_transpose_output_shape_padding_auto_pad() {
        let x = iota(&[1, 1, 3, 3]);
        let w = ct_w();
        // output_shape [10, 8] and output_padding [1, 1] give the same result.
        let row = |a: f64, b: f64, c: f64| [a, a, a + b, b, b + c, c, c, 0.];
        let mut c0 = Vec::new();
        for r in 0..3 {
            let base = 3.0 * r as f64;
            for _ in 0..3 {
                c0.extend(row(base, base + 1.0, base + 2.0));
            }
        }
        c0.extend([0.0; 8]);
        let want: Vec<f64> = c0
            .iter()
            .copied()
            .chain(c0.iter().map(|v| 2.0 * v))
            .collect();
        let n = node(
            "ConvTranspose",
            &[("strides", ints(&[3, 2])), ("output_shape", ints(&[10, 8]))],
        );
        let y = run(conv_transpose, &n, 11, &[Some(&x), Some(&w)]).unwrap();
        close(&y[0], &[1, 2, 10, 8], &want, 0.0);
        let n = node(
            "ConvTranspose",
            &[
                ("strides", ints(&[3, 2])),
                ("output_padding", ints(&[1, 1])),
            ],
        );
        let y = run(conv_transpose, &n, 11, &[Some(&x), Some(&w)]).unwrap();
        close(&y[0], &[1, 2, 10, 8], &want, 0.0);
        // SAME_UPPER drops the last row/column of the 7x7 full output, SAME_LOWER the first.
        let full = run(
            conv_transpose,
            &node("ConvTranspose", &[("strides", ints(&[2, 2]))]),
            11,
            &[Some(&x), Some(&w)],
        )
        .unwrap();
        let Value::F32(full) = &full[0] else { panic!() };
        assert_eq!(full.shape(), &[1, 2, 7, 7]);
        for (mode, lo) in [("SAME_UPPER", 0), ("SAME_LOWER", 1)] {
            let n = node(
                "ConvTranspose",
                &[("strides", ints(&[2, 2])), ("auto_pad", s(mode))],
            );
            let y = run(conv_transpose, &n, 11, &[Some(&x), Some(&w)]).unwrap();
            let want = full.slice_each_axis(|ax| match ax.axis.index() {
                2 | 3 => ndarray::Slice::from(lo..lo + 6),
                _ => ndarray::Slice::from(..),
            });
            let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
            close(&y[0], &[1, 2, 6, 6], &want, 0.0);
        }
    }

    #[test]
    fn conv_transpose_group_dilation_bias_and_errors() {
        let x = iota(&[1, 2, 3]);
        let w = f32s(&[2, 1, 2], &[-1., 0., 1., 2.]);
        let b = f32s(&[2], &[1., -1.]);
        let n = node(
            "ConvTranspose",
            &[("group", AttrValue::Int(2)), ("dilations", ints(&[2]))],
        );
        let y = run(conv_transpose, &n, 11, &[Some(&x), Some(&w), Some(&b)]).unwrap();
        // By hand: channel 0 = -1 * [0, 1, 2] at 0..3 plus bias 1; channel 1 = [3, 4, 5] at
        // 0..3 plus 2 * [3, 4, 5] at 2..5, bias -1. (onnx's reference adds the wrong bias to
        // the second group here.)
        close(
            &y[0],
            &[1, 2, 5],
            &[1., 0., -1., 1., 1., 2., 3., 10., 7., 9.],
            0.0,
        );
        let xd = f64s(&[1, 1, 2], &[1., 2.]);
        let wd = f64s(&[1, 1, 2], &[1., 1.]);
        let y = run(
            conv_transpose,
            &node("ConvTranspose", &[]),
            11,
            &[Some(&xd), Some(&wd)],
        )
        .unwrap();
        assert_eq!(y[0], f64s(&[1, 1, 3], &[1., 3., 2.]));
        let p = node("ConvTranspose", &[("pads", ints(&[2, 2]))]);
        assert!(run(conv_transpose, &p, 11, &[Some(&xd), Some(&wd)]).is_err());
        let o = node("ConvTranspose", &[("output_shape", ints(&[1, 2]))]);
        assert!(run(conv_transpose, &o, 11, &[Some(&xd), Some(&wd)]).is_err());
        let w2 = f64s(&[2, 1, 2], &[1., 1., 1., 1.]);
        assert!(
            run(
                conv_transpose,
                &node("ConvTranspose", &[]),
                11,
                &[Some(&xd), Some(&w2)]
            )
            .is_err()
        );
    }
}
