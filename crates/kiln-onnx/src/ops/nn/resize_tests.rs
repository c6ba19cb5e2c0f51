//! Tests of Resize inference.

use kiln_core::{DataType, Dim};

use super::*;
use crate::Attribute;
use crate::ops::nn::test_util::*;
use crate::tensor::Tensor;

/// Resize at `opset` with X of shape `x`, inputs in the 11+ layout (roi, scales, sizes), each
/// either omitted or a constant.
fn resize(
    opset: i64,
    attrs: Vec<Attribute>,
    x: &str,
    roi: Option<&Tensor>,
    scales: Option<&Tensor>,
    sizes: Option<&Tensor>,
) -> crate::error::Result<Vec<Fact>> {
    let fact = |t: Option<&Tensor>| t.map(|t| Fact::tensor(t.dtype(), t.shape()));
    let n = node(&RESIZE, 4, 1, attrs);
    let ins = vec![f32s(x), fact(roi), fact(scales), fact(sizes)];
    run(&RESIZE, &n, opset, ins, vec![None, roi, scales, sizes])
}

#[test]
fn scales_floor_the_product() {
    let s = f32t("s", &[1.0, 1.0, 2.0, 2.0]);
    let out = resize(13, vec![], "batchx3x224x224", None, Some(&s), None).unwrap();
    assert_eq!(out_shape(&out), "[batch, 3, 448, 448]");
    assert_eq!(out[0].dtype, Some(DataType::F32));
    let s = f32t("s", &[1.0, 1.0, 0.5, 1.5]);
    let out = resize(13, vec![], "1x3x15x7", None, Some(&s), None).unwrap();
    assert_eq!(out_shape(&out), "[1, 3, 7, 10]");
    // Opset 10: X and scales only.
    let n = node(&RESIZE, 2, 1, vec![string("mode", "nearest")]);
    let s = f32t("s", &[1.0, 1.0, 2.0, 2.0]);
    let ins = vec![f32s("nx256xhx20"), t(DataType::F32, "4")];
    let out = run(&RESIZE, &n, 10, ins, vec![None, Some(&s)]).unwrap();
    assert_eq!(out_shape(&out), "[n, 256, ?, 40]");
    // Scales not constant: resized dims unknown (here all of them).
    let n = node(&RESIZE, 3, 1, vec![]);
    let ins = vec![f32s("1x3x8x8"), None, t(DataType::F32, "4")];
    let out = run(&RESIZE, &n, 13, ins, vec![]).unwrap();
    assert_eq!(out_shape(&out), "[?, ?, ?, ?]");
}

#[test]
fn sizes_and_aspect_ratio_policies() {
    let sz = i64s("sz", &[1, 3, 300, 400]);
    let empty = f32t("e", &[]);
    // Opset 11: scales is an empty tensor when sizes are used.
    let out = resize(11, vec![], "1x3x224x224", None, Some(&empty), Some(&sz)).unwrap();
    assert_eq!(out_shape(&out), "[1, 3, 300, 400]");
    // 18: axes and policies. 200x100 into 300x300: not_larger scale 1.5 -> 300x150,
    // not_smaller scale 3 -> 600x300.
    let sz = i64s("sz", &[300, 300]);
    let a = |p: &str| {
        vec![
            ints("axes", &[2, -1]),
            string("keep_aspect_ratio_policy", p),
        ]
    };
    let out = resize(18, a("stretch"), "bx3x200x100", None, None, Some(&sz)).unwrap();
    assert_eq!(out_shape(&out), "[b, 3, 300, 300]");
    let out = resize(18, a("not_larger"), "bx3x200x100", None, None, Some(&sz)).unwrap();
    assert_eq!(out_shape(&out), "[b, 3, 300, 150]");
    let out = resize(18, a("not_smaller"), "bx3x200x100", None, None, Some(&sz)).unwrap();
    assert_eq!(out_shape(&out), "[b, 3, 600, 300]");
    // Halves round up: scale min(2/4, 4/5) = 0.5, so 5 -> 2.5 -> 3.
    let sz = i64s("sz", &[2, 4]);
    let out = resize(18, a("not_larger"), "1x1x4x5", None, None, Some(&sz)).unwrap();
    assert_eq!(out_shape(&out), "[1, 1, 2, 3]");
    // A symbolic input dim cannot be scaled under a policy.
    let out = resize(18, a("not_larger"), "1x1xhx5", None, None, Some(&sz)).unwrap();
    assert_eq!(out_shape(&out), "[1, 1, ?, ?]");
    // Sizes from a symbolic value.
    let n = node(&RESIZE, 4, 1, vec![]);
    let dims = vec![
        Dim::symbol("b"),
        Dim::Known(3),
        Dim::symbol("h"),
        Dim::Known(64),
    ];
    let ins = vec![f32s("bx3x32x32"), None, None, sym(dims)];
    let out = run(&RESIZE, &n, 13, ins, vec![]).unwrap();
    assert_eq!(out_shape(&out), "[b, 3, h, 64]");
    // axes is not read before 18: all dims.
    let sz = i64s("sz", &[300, 300]);
    let a = vec![ints("axes", &[2, 3])];
    assert_err(
        resize(13, a, "1x3x8x8", None, None, Some(&sz)),
        "Resize",
        &["sizes has 2 values; 4 were expected"],
    );
}

#[test]
fn tf_crop_and_resize_uses_roi() {
    let a = || {
        vec![string(
            "coordinate_transformation_mode",
            "tf_crop_and_resize",
        )]
    };
    let roi = f32t("roi", &[0.0, 0.0, 0.0, 0.25, 1.0, 1.0, 1.0, 0.75]);
    let s = f32t("s", &[1.0, 1.0, 1.0, 2.0]);
    let out = resize(11, a(), "1x3x8x8", Some(&roi), Some(&s), None).unwrap();
    assert_eq!(out_shape(&out), "[1, 3, 8, 8]");
    // roi not constant: unknown.
    let n = node(&RESIZE, 3, 1, a());
    let ins = vec![
        f32s("1x3x8x8"),
        t(DataType::F32, "8"),
        t(DataType::F32, "4"),
    ];
    let out = run(&RESIZE, &n, 11, ins, vec![None, None, Some(&s)]).unwrap();
    assert_eq!(out_shape(&out), "[?, ?, ?, ?]");
}

#[test]
fn resize_errors() {
    let s = f32t("s", &[1.0, 2.0]);
    assert_err(
        resize(13, vec![], "1x3x8x8", None, Some(&s), None),
        "Resize",
        &["scales has 2 values; 4 were expected"],
    );
    let s = f32t("s", &[1.0, 1.0, 0.0, 2.0]);
    assert_err(
        resize(13, vec![], "1x3x8x8", None, Some(&s), None),
        "Resize",
        &["positive"],
    );
    let s = f32t("s", &[1.0, 1.0, f32::NAN, 2.0]);
    assert_err(
        resize(13, vec![], "1x3x8x8", None, Some(&s), None),
        "Resize",
        &["positive"],
    );
    let s = f32t("s", &[1.0, 1.0, 2.0, 2.0]);
    let sz = i64s("sz", &[1, 3, 16, 16]);
    assert_err(
        resize(13, vec![], "1x3x8x8", None, Some(&s), Some(&sz)),
        "Resize",
        &["both"],
    );
    assert_err(
        resize(13, vec![], "1x3x8x8", None, None, None),
        "Resize",
        &["neither"],
    );
    let sz = i64s("sz", &[1, 3, -16, 16]);
    assert_err(
        resize(13, vec![], "1x3x8x8", None, None, Some(&sz)),
        "Resize",
        &["negative"],
    );
    let a = vec![string("mode", "bilinear")];
    assert_err(
        resize(13, a, "1x3x8x8", None, Some(&s), None),
        "Resize",
        &["'mode'"],
    );
    let a = vec![string("keep_aspect_ratio_policy", "fit")];
    assert_err(
        resize(18, a, "1x3x8x8", None, Some(&s), None),
        "Resize",
        &["'fit'"],
    );
    let a = vec![ints("axes", &[2, 2])];
    assert_err(
        resize(18, a, "1x3x8x8", None, Some(&s), None),
        "Resize",
        &["listed twice"],
    );
    let n = node(&RESIZE, 3, 1, vec![]);
    assert_err(
        run(&RESIZE, &n, 10, vec![f32s("1x3x8x8"), None, None], vec![]),
        "Resize",
        &["has 3 inputs"],
    );
}
