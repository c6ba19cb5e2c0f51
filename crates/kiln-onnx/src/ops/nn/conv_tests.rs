//! Tests of Conv and ConvTranspose inference.

use kiln_core::DataType;

use super::*;
use crate::ops::nn::test_util::*;

fn conv(attrs: Vec<crate::Attribute>, x: &str, w: &str) -> crate::error::Result<Vec<Fact>> {
    infer(&CONV, 17, attrs, vec![f32s(x), f32s(w)], 1)
}

#[test]
fn resnet_stem_conv_7x7_stride_2_pad_3() {
    let a = || vec![ints("strides", &[2, 2]), ints("pads", &[3, 3, 3, 3])];
    let out = conv(a(), "1x3x224x224", "64x3x7x7").unwrap();
    assert_eq!(out_shape(&out), "[1, 64, 112, 112]");
    assert_eq!(out[0].dtype, Some(DataType::F32));
    let out = conv(a(), "batchx3x224x224", "64x3x7x7").unwrap();
    assert_eq!(out_shape(&out), "[batch, 64, 112, 112]");
    // The bias is checked against the output channels.
    let ins = vec![f32s("batchx3x224x224"), f32s("64x3x7x7"), f32s("64")];
    assert!(infer(&CONV, 11, a(), ins, 1).is_ok());
    let ins = vec![f32s("batchx3x224x224"), f32s("64x3x7x7"), f32s("32")];
    assert_err(infer(&CONV, 11, a(), ins, 1), "Conv", &["bias", "32 vs 64"]);
}

#[test]
fn conv_geometry_variants() {
    // 3x3 pad 1 stride 1 keeps symbolic spatial dims; stride 2 cannot.
    let same = vec![ints("pads", &[1, 1, 1, 1])];
    assert_eq!(
        out_shape(&conv(same, "batchx8xhxw", "16x8x3x3").unwrap()),
        "[batch, 16, h, w]"
    );
    let s2 = vec![ints("pads", &[1, 1, 1, 1]), ints("strides", &[2, 2])];
    assert_eq!(
        out_shape(&conv(s2, "batchx8xhxw", "16x8x3x3").unwrap()),
        "[batch, 16, ?, ?]"
    );
    // 1x1 with no attributes.
    assert_eq!(
        out_shape(&conv(vec![], "nx8xhx7", "4x8x1x1").unwrap()),
        "[n, 4, h, 7]"
    );
    // Dilation 2: extent 5.
    let d = vec![ints("dilations", &[2, 2])];
    assert_eq!(
        out_shape(&conv(d, "1x1x32x32", "1x1x3x3").unwrap()),
        "[1, 1, 28, 28]"
    );
    // Asymmetric pads, floor division.
    let p = vec![ints("pads", &[0, 1, 1, 0]), ints("strides", &[2, 2])];
    assert_eq!(
        out_shape(&conv(p, "1x1x8x8", "1x1x3x3").unwrap()),
        "[1, 1, 4, 4]"
    );
    // auto_pad SAME_UPPER / SAME_LOWER: ceil(in / stride); VALID: no padding.
    for mode in ["SAME_UPPER", "SAME_LOWER"] {
        let a = vec![string("auto_pad", mode), ints("strides", &[2, 2])];
        assert_eq!(
            out_shape(&conv(a, "1x3x225x224", "8x3x3x3").unwrap()),
            "[1, 8, 113, 112]"
        );
        let a = vec![string("auto_pad", mode)];
        assert_eq!(
            out_shape(&conv(a, "1x3xhxw", "8x3x5x5").unwrap()),
            "[1, 8, h, w]"
        );
    }
    let a = vec![string("auto_pad", "VALID"), ints("pads", &[9, 9, 9, 9])];
    assert_eq!(
        out_shape(&conv(a, "1x3x32x32", "8x3x3x3").unwrap()),
        "[1, 8, 30, 30]"
    );
    // 1-D and 3-D convolutions.
    assert_eq!(
        out_shape(&conv(vec![], "batchx16x100", "32x16x5").unwrap()),
        "[batch, 32, 96]"
    );
    let a = vec![ints("strides", &[1, 2, 2])];
    assert_eq!(
        out_shape(&conv(a, "1x3x16x32x32", "8x3x3x3x3").unwrap()),
        "[1, 8, 14, 15, 15]"
    );
    // kernel_shape given and the weight's dims unknown.
    let a = vec![ints("kernel_shape", &[3, 3])];
    assert_eq!(
        out_shape(&conv(a, "1x3x10x10", "8x3x?x?").unwrap()),
        "[1, 8, 8, 8]"
    );
    assert_eq!(
        out_shape(&conv(vec![], "1x3x10x10", "8x3x?x?").unwrap()),
        "[1, 8, ?, ?]"
    );
    // Unknown X shape: no rank.
    let out = infer(
        &CONV,
        11,
        vec![],
        vec![unranked(DataType::F32), f32s("8x3x3x3")],
        1,
    )
    .unwrap();
    assert_eq!(out[0].shape, None);
    assert_eq!(out[0].dtype, Some(DataType::F32));
}

#[test]
fn grouped_and_depthwise_conv() {
    let g = |n| vec![int("group", n), ints("pads", &[1, 1, 1, 1])];
    let out = conv(g(32), "batchx32x112x112", "32x1x3x3").unwrap();
    assert_eq!(out_shape(&out), "[batch, 32, 112, 112]");
    let out = conv(g(2), "1x8x10x10", "6x4x3x3").unwrap();
    assert_eq!(out_shape(&out), "[1, 6, 10, 10]");
    assert_err(
        conv(g(32), "1x32x8x8", "32x2x3x3"),
        "Conv",
        &["'group'", "32 vs 64"],
    );
    assert_err(
        conv(g(1), "1x4x8x8", "8x3x3x3"),
        "Conv",
        &["channel", "4 vs 3"],
    );
    assert_err(
        conv(g(4), "1x8x8x8", "6x2x3x3"),
        "Conv",
        &["does not divide"],
    );
    assert_err(conv(g(0), "1x8x8x8", "6x2x3x3"), "Conv", &["'group' is 0"]);
}

#[test]
fn conv_errors() {
    assert_err(
        infer(&CONV, 11, vec![], vec![f32s("1x3x8x8")], 1),
        "Conv",
        &["has 1 inputs", "2 to 3"],
    );
    assert_err(
        conv(vec![], "1x3x8x8", "8x3x3"),
        "Conv",
        &["rank 4", "rank 3"],
    );
    assert_err(conv(vec![], "3x8", "8x3x3"), "Conv", &["rank 3 or more"]);
    assert_err(
        conv(vec![], "1x3x2x2", "8x3x3x3"),
        "Conv",
        &["larger than the padded input"],
    );
    let a = vec![ints("strides", &[2])];
    assert_err(
        conv(a, "1x3x8x8", "8x3x3x3"),
        "Conv",
        &["'strides' has 1 values", "2 spatial"],
    );
    let a = vec![ints("strides", &[0, 1])];
    assert_err(
        conv(a, "1x3x8x8", "8x3x3x3"),
        "Conv",
        &["'strides' holds 0"],
    );
    let a = vec![ints("pads", &[-1, 0, 0, 0])];
    assert_err(conv(a, "1x3x8x8", "8x3x3x3"), "Conv", &["'pads' holds -1"]);
    let a = vec![string("auto_pad", "SAME")];
    assert_err(
        conv(a, "1x3x8x8", "8x3x3x3"),
        "Conv",
        &["'auto_pad' is 'SAME'"],
    );
    let a = vec![ints("kernel_shape", &[5, 5])];
    assert_err(
        conv(a, "1x3x8x8", "8x3x3x3"),
        "Conv",
        &["kernel_shape", "[3, 3]"],
    );
    let a = vec![
        ints("strides", &[i64::MAX, 1]),
        ints("dilations", &[i64::MAX, 1]),
    ];
    assert_err(conv(a, "1x3x8x8", "8x3x3x3"), "Conv", &["overflows"]);
    let ins = vec![f32s("1x3x8x8"), t(DataType::F16, "8x3x3x3")];
    assert_err(infer(&CONV, 11, vec![], ins, 1), "Conv", &["f16"]);
}

fn convt(attrs: Vec<crate::Attribute>, x: &str, w: &str) -> crate::error::Result<Vec<Fact>> {
    infer(&CONV_TRANSPOSE, 17, attrs, vec![f32s(x), f32s(w)], 1)
}

#[test]
fn conv_transpose_shapes() {
    // s * (in - 1) + output_padding + k - pads = 2 * 4 + 1 + 3 - 2 = 10.
    let a = vec![
        ints("strides", &[2, 2]),
        ints("output_padding", &[1, 1]),
        ints("pads", &[1, 1, 1, 1]),
    ];
    assert_eq!(
        out_shape(&convt(a, "1x4x5x5", "4x2x3x3").unwrap()),
        "[1, 2, 10, 10]"
    );
    // Grouped: output channels = W[1] * group.
    let a = vec![
        ints("strides", &[2, 2]),
        int("group", 2),
        ints("output_shape", &[10, 10]),
    ];
    assert_eq!(
        out_shape(&convt(a, "batchx4x5x5", "4x2x3x3").unwrap()),
        "[batch, 4, 10, 10]"
    );
    // A full output_shape (N, C, spatial) is accepted; only the spatial part is used.
    let a = vec![
        ints("strides", &[2, 2]),
        ints("output_shape", &[1, 2, 11, 9]),
    ];
    assert_eq!(
        out_shape(&convt(a, "1x4x5x5", "4x2x3x3").unwrap()),
        "[1, 2, 11, 9]"
    );
    // SAME_*: in * stride (output_padding does not add to it).
    let a = vec![
        ints("strides", &[2, 2]),
        string("auto_pad", "SAME_UPPER"),
        ints("output_padding", &[1, 1]),
    ];
    assert_eq!(
        out_shape(&convt(a, "1x4x5x6", "4x2x3x3").unwrap()),
        "[1, 2, 10, 12]"
    );
    // Typical 2x upsampling: k4 s2 p1 doubles the size.
    let a = vec![ints("strides", &[2, 2]), ints("pads", &[1, 1, 1, 1])];
    assert_eq!(
        out_shape(&convt(a, "1x64x16x16", "64x32x4x4").unwrap()),
        "[1, 32, 32, 32]"
    );
    let a = vec![ints("strides", &[2, 2]), ints("pads", &[1, 1, 1, 1])];
    assert_eq!(
        out_shape(&convt(a, "batchx64xhxw", "64x32x4x4").unwrap()),
        "[batch, 32, ?, ?]"
    );
    // k3 s1 p1 keeps symbolic sizes; dilation widens the kernel.
    let a = vec![ints("pads", &[1, 1, 1, 1])];
    assert_eq!(
        out_shape(&convt(a, "batchx8xhxw", "8x8x3x3").unwrap()),
        "[batch, 8, h, w]"
    );
    let a = vec![ints("dilations", &[2, 2])];
    assert_eq!(
        out_shape(&convt(a, "1x8x5x5", "8x8x3x3").unwrap()),
        "[1, 8, 9, 9]"
    );
    // 1-D.
    assert_eq!(
        out_shape(&convt(vec![], "1x8x5", "8x3x4").unwrap()),
        "[1, 3, 8]"
    );
}

#[test]
fn conv_transpose_errors() {
    assert_err(
        convt(vec![], "1x4x5x5", "8x2x3x3"),
        "ConvTranspose",
        &["4 vs 8"],
    );
    let a = vec![int("group", 3)];
    assert_err(
        convt(a, "1x4x5x5", "4x2x3x3"),
        "ConvTranspose",
        &["does not divide"],
    );
    let a = vec![ints("output_shape", &[10])];
    assert_err(
        convt(a, "1x4x5x5", "4x2x3x3"),
        "ConvTranspose",
        &["'output_shape' has 1 values"],
    );
    let a = vec![ints("output_shape", &[0, 4])];
    assert_err(
        convt(a, "1x4x5x5", "4x2x3x3"),
        "ConvTranspose",
        &["'output_shape' holds 0"],
    );
    let a = vec![ints("output_padding", &[1])];
    assert_err(
        convt(a, "1x4x5x5", "4x2x3x3"),
        "ConvTranspose",
        &["'output_padding'"],
    );
    let a = vec![ints("pads", &[5, 5, 5, 5])];
    assert_err(
        convt(a, "1x4x2x2", "4x2x3x3"),
        "ConvTranspose",
        &["output size would be -6"],
    );
    let ins = vec![f32s("1x4x5x5"), f32s("4x2x3x3"), f32s("4")];
    assert_err(
        infer(&CONV_TRANSPOSE, 11, vec![], ins, 1),
        "ConvTranspose",
        &["bias", "4 vs 2"],
    );
}
