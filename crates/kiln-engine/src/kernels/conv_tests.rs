//! CPU tests of [`super`]: descriptor derivation checked by emulating cuDNN's documented
//! semantics (layout strides, filter layout, groups, backward data) against kiln-reference.

use super::*;
use kiln_onnx::{AttrValue, Attribute, Node, Tensor};
use kiln_reference::Value;
use kiln_reference::ops::{OpCtx, lookup};

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Runs the reference op `op` on f32 inputs with integer-list attributes.
fn reference(
    op: &str,
    inputs: &[(&[usize], &[f32])],
    attrs: &[(&str, Vec<i64>)],
) -> (Vec<usize>, Vec<f64>) {
    let node = Node {
        name: format!("t_{op}"),
        op_type: op.into(),
        attributes: attrs
            .iter()
            .map(|(n, v)| {
                if *n == "group" {
                    Attribute::new(*n, AttrValue::Int(v[0]))
                } else {
                    Attribute::new(*n, AttrValue::Ints(v.clone()))
                }
            })
            .collect(),
        ..Node::default()
    };
    let values: Vec<Value> = inputs
        .iter()
        .map(|(d, v)| {
            Value::from_tensor(&Tensor::from_vec("x", d.to_vec(), v.to_vec()).unwrap()).unwrap()
        })
        .collect();
    let f = lookup("", op).unwrap();
    let out = f(&OpCtx::new(&node, 17, values.iter().map(Some).collect())).unwrap();
    (out[0].shape().to_vec(), out[0].to_f64_vec())
}

/// cuDNN's forward cross-correlation over packed tensors in `layout` (filter KCRS or KRSC).
fn emulate_forward(d: &ConvDesc, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f64> {
    let g = &d.geometry;
    let [n, k, oh, ow] = d.output_dims();
    let xs = strides(d.layout, d.input_dims());
    let ys = strides(d.layout, d.output_dims());
    let [_, cg, r, s] = g.filter_dims();
    let ws = match d.layout {
        ConvLayout::Nchw => [cg * r * s, r * s, s, 1],
        ConvLayout::Nhwc => [r * s * cg, 1, s * cg, cg],
    };
    let kg = k / g.groups;
    let mut y = vec![f64::NAN; n * k * oh * ow];
    for b in 0..n {
        for kk in 0..k {
            let grp = kk / kg;
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0f64;
                    for c in 0..cg {
                        for p in 0..r {
                            for q in 0..s {
                                let hh = (i * g.strides[0] + p * g.dilations[0]) as isize
                                    - g.pads[0] as isize;
                                let ww = (j * g.strides[1] + q * g.dilations[1]) as isize
                                    - g.pads[1] as isize;
                                if hh < 0
                                    || ww < 0
                                    || hh as usize >= g.hw[0]
                                    || ww as usize >= g.hw[1]
                                {
                                    continue;
                                }
                                let xi = b * xs[0]
                                    + (grp * cg + c) * xs[1]
                                    + hh as usize * xs[2]
                                    + ww as usize * xs[3];
                                let wi = kk * ws[0] + c * ws[1] + p * ws[2] + q * ws[3];
                                acc += x[xi] as f64 * w[wi] as f64;
                            }
                        }
                    }
                    let v = acc + bias.get(kk).copied().unwrap_or(0.0) as f64;
                    y[b * ys[0] + kk * ys[1] + i * ys[2] + j * ys[3]] =
                        if d.relu { v.max(0.0) } else { v };
                }
            }
        }
    }
    y
}

/// cuDNN's backward data (NCHW): scatter of dy through the forward windows.
fn emulate_backward_data(d: &ConvDesc, dy: &[f32], w: &[f32]) -> Vec<f64> {
    let g = &d.geometry;
    let [n, c, h, wd] = d.output_dims();
    let [_, k, oh, ow] = d.input_dims();
    let [_, cg, r, s] = g.filter_dims();
    let kg = k / g.groups;
    let mut dx = vec![0.0f64; n * c * h * wd];
    for b in 0..n {
        for kk in 0..k {
            let grp = kk / kg;
            for i in 0..oh {
                for j in 0..ow {
                    let v = dy[((b * k + kk) * oh + i) * ow + j] as f64;
                    for cc in 0..cg {
                        for p in 0..r {
                            for q in 0..s {
                                let hh = (i * g.strides[0] + p * g.dilations[0]) as isize
                                    - g.pads[0] as isize;
                                let ww = (j * g.strides[1] + q * g.dilations[1]) as isize
                                    - g.pads[1] as isize;
                                if hh < 0 || ww < 0 || hh as usize >= h || ww as usize >= wd {
                                    continue;
                                }
                                let ch = grp * cg + cc;
                                dx[((b * c + ch) * h + hh as usize) * wd + ww as usize] +=
                                    v * w[((kk * cg + cc) * r + p) * s + q] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

fn close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "{what}: element {i}: {a} vs {b}"
        );
    }
}

struct Case {
    x: Vec<usize>,
    w: Vec<usize>,
    pads: Vec<usize>,
    strides: Vec<usize>,
    dil: Vec<usize>,
    groups: usize,
}

fn cases() -> Vec<Case> {
    let c =
        |x: &[usize], w: &[usize], pads: &[usize], strides: &[usize], dil: &[usize], groups| Case {
            x: x.to_vec(),
            w: w.to_vec(),
            pads: pads.to_vec(),
            strides: strides.to_vec(),
            dil: dil.to_vec(),
            groups,
        };
    vec![
        c(
            &[2, 3, 7, 6],
            &[4, 3, 3, 3],
            &[1, 1, 1, 1],
            &[1, 1],
            &[1, 1],
            1,
        ),
        c(
            &[1, 4, 9, 8],
            &[6, 2, 3, 2],
            &[1, 0, 1, 0],
            &[2, 1],
            &[1, 2],
            2,
        ),
        c(
            &[1, 6, 5, 5],
            &[6, 1, 3, 3],
            &[1, 1, 1, 1],
            &[1, 1],
            &[1, 1],
            6,
        ), // depthwise
        c(&[2, 3, 11], &[5, 3, 3], &[2, 2], &[2], &[2], 1), // 1-D
        c(
            &[1, 8, 4, 4],
            &[4, 8, 1, 1],
            &[0, 0, 0, 0],
            &[1, 1],
            &[1, 1],
            1,
        ), // pointwise
    ]
}

fn attrs(cs: &Case) -> Vec<(&'static str, Vec<i64>)> {
    let i = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
    vec![
        ("pads", i(&cs.pads)),
        ("strides", i(&cs.strides)),
        ("dilations", i(&cs.dil)),
        ("group", vec![cs.groups as i64]),
    ]
}

#[test]
fn forward_descriptors_match_the_reference_in_both_layouts() {
    for (ci, cs) in cases().iter().enumerate() {
        let x = data(cs.x.iter().product(), 1 + ci as u64);
        let w = data(cs.w.iter().product(), 50 + ci as u64);
        let bias = data(cs.w[0], 90 + ci as u64);
        let (odims, want) = reference(
            "Conv",
            &[(&cs.x, &x), (&cs.w, &w), (&[cs.w[0]], &bias)],
            &attrs(cs),
        );
        let want_relu: Vec<f64> = want.iter().map(|v| v.max(0.0)).collect();
        for layout in [ConvLayout::Nchw, ConvLayout::Nhwc] {
            let d = ConvDesc::from_onnx(
                MathMode::Fp32,
                layout,
                &cs.x,
                &cs.w,
                &cs.pads,
                &cs.strides,
                &cs.dil,
                cs.groups,
            )
            .unwrap()
            .with_epilogue(true, ci % 2 == 0, false);
            let flat_out: usize = d.output_dims().iter().product();
            assert_eq!(flat_out, odims.iter().product::<usize>(), "case {ci}");
            assert_eq!(d.output_dims()[1], odims[1]);
            let fd = d.geometry.filter_dims();
            let (xl, wl) = match layout {
                ConvLayout::Nchw => (x.clone(), w.clone()),
                ConvLayout::Nhwc => (
                    nchw_to_nhwc(&x, d.input_dims()).unwrap(),
                    kcrs_to_krsc(&w, fd).unwrap(),
                ),
            };
            let mut got = emulate_forward(&d, &xl, &wl, &bias);
            if layout == ConvLayout::Nhwc {
                got = nhwc_to_nchw(&got, d.output_dims()).unwrap();
            }
            close(
                &got,
                if d.relu { &want_relu } else { &want },
                &format!("case {ci} {layout:?}"),
            );
        }
    }
}

#[test]
fn transpose_descriptors_match_the_reference() {
    // (x, w [c_in, c_out/g, ..], pads, strides, dilations, output_padding, groups)
    type T<'a> = (
        &'a [usize],
        &'a [usize],
        &'a [usize],
        &'a [usize],
        &'a [usize],
        &'a [usize],
        usize,
    );
    let cases: &[T<'_>] = &[
        (
            &[1, 4, 3, 3],
            &[4, 2, 3, 3],
            &[0, 0, 0, 0],
            &[1, 1],
            &[1, 1],
            &[0, 0],
            1,
        ),
        (
            &[2, 3, 4, 5],
            &[3, 5, 3, 3],
            &[1, 1, 1, 1],
            &[2, 2],
            &[1, 1],
            &[1, 0],
            1,
        ),
        (
            &[1, 4, 5, 4],
            &[4, 3, 2, 3],
            &[0, 1, 0, 1],
            &[2, 3],
            &[2, 1],
            &[1, 2],
            2,
        ),
        (&[2, 2, 6], &[2, 3, 4], &[1, 1], &[3], &[1], &[2], 1),
    ];
    for (ci, &(xd, wd, pads, st, dil, op, g)) in cases.iter().enumerate() {
        let x = data(xd.iter().product(), 7 + ci as u64);
        let w = data(wd.iter().product(), 70 + ci as u64);
        let i = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        let attrs = vec![
            ("pads", i(pads)),
            ("strides", i(st)),
            ("dilations", i(dil)),
            ("output_padding", i(op)),
            ("group", vec![g as i64]),
        ];
        let (odims, want) = reference("ConvTranspose", &[(xd, &x), (wd, &w)], &attrs);
        let d = ConvDesc::transpose(
            MathMode::Fp32,
            ConvLayout::Nchw,
            xd,
            wd,
            pads,
            st,
            dil,
            op,
            g,
        )
        .unwrap();
        assert_eq!(d.kind, ConvKind::Transpose);
        assert_eq!(
            d.output_dims().iter().product::<usize>(),
            odims.iter().product::<usize>(),
            "case {ci}: {odims:?}"
        );
        assert_eq!(
            d.input_dims().iter().product::<usize>(),
            xd.iter().product::<usize>()
        );
        close(
            &emulate_backward_data(&d, &x, &w),
            &want,
            &format!("transpose case {ci}"),
        );
    }
}

#[test]
fn unsupported_and_invalid_convolutions_are_errors() {
    let m = MathMode::Fp16;
    let l = ConvLayout::preferred(m);
    assert_eq!(l, ConvLayout::Nhwc);
    let err = ConvDesc::from_onnx(
        m,
        l,
        &[1, 3, 8, 8],
        &[4, 3, 3, 3],
        &[0, 0, 1, 1],
        &[2, 2],
        &[],
        1,
    )
    .unwrap_err();
    assert!(
        matches!(err, LibError::Unsupported { .. }) && err.to_string().contains("asymmetric"),
        "{err}"
    );
    assert_eq!(
        split_pads(&[0, 2, 1, 1]),
        (vec![0, 1], vec![(0, 1), (1, 0)])
    );
    assert!(
        ConvDesc::from_onnx(m, l, &[1, 3, 4, 4, 4], &[4, 3, 1, 1, 1], &[], &[], &[], 1).is_err()
    );
    assert!(ConvDesc::from_onnx(m, l, &[1, 3, 8, 8], &[4, 2, 3, 3], &[], &[], &[], 1).is_err());
    assert!(ConvDesc::from_onnx(m, l, &[1, 4, 8, 8], &[3, 2, 3, 3], &[], &[], &[], 2).is_err());
    assert!(ConvDesc::from_onnx(m, l, &[1, 3, 2, 2], &[4, 3, 3, 3], &[], &[], &[], 1).is_err());
    assert!(ConvDesc::from_onnx(m, l, &[1, 3, 8, 8], &[4, 3, 3, 3], &[], &[0, 1], &[], 1).is_err());
    let big = ConvDesc::from_onnx(
        m,
        l,
        &[1 << 16, 64, 256, 256],
        &[4, 64, 1, 1],
        &[],
        &[],
        &[],
        1,
    )
    .unwrap_err();
    assert!(big.to_string().contains("2^31"), "{big}");
    let d = ConvDesc::transpose(
        m,
        l,
        &[1, 2, 3, 3],
        &[2, 2, 3, 3],
        &[],
        &[1, 1],
        &[],
        &[],
        1,
    )
    .unwrap();
    assert!(d.with_epilogue(false, false, true).validate().is_err());
    assert!(
        ConvDesc::transpose(
            m,
            l,
            &[1, 2, 3, 3],
            &[2, 2, 3, 3],
            &[],
            &[2, 2],
            &[],
            &[3, 0],
            1
        )
        .is_err()
    );
}

#[test]
fn layout_helpers_round_trip() {
    let dims = [2, 3, 4, 5];
    let x: Vec<u32> = (0..120).collect();
    let nhwc = nchw_to_nhwc(&x, dims).unwrap();
    assert_eq!(nhwc[1], 20, "second NHWC element is channel 1 of pixel 0");
    assert_eq!(nhwc_to_nchw(&nhwc, dims).unwrap(), x);
    assert_eq!(strides(ConvLayout::Nhwc, dims), [60, 1, 15, 3]);
    let w = kcrs_to_krsc(&x, dims).unwrap();
    assert_eq!(w[1], 20);
    assert!(kcrs_to_krsc(&x[..5], dims).is_err());
}

#[test]
fn dnn_without_cuda_is_an_err_not_a_panic() {
    if let Ok(dev) = kiln_cuda::Device::open(0) {
        let _ = Dnn::new(&dev);
    }
}
