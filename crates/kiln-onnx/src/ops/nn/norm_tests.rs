//! Tests of the normalisation ops' inference.

use kiln_core::DataType;

use super::*;
use crate::ops::nn::test_util::*;

fn bn_inputs(x: &str, c: &str) -> Vec<Option<Fact>> {
    vec![f32s(x), f32s(c), f32s(c), f32s(c), f32s(c)]
}

#[test]
fn batch_norm_inference_and_training_outputs() {
    let out = infer(
        &BATCH_NORMALIZATION,
        15,
        vec![],
        bn_inputs("batchx64x56x56", "64"),
        1,
    );
    assert_eq!(out_shape(&out.unwrap()), "[batch, 64, 56, 56]");
    let a = vec![int("training_mode", 1)];
    let mut ins = bn_inputs("batchx3xhxw", "3");
    ins[3] = t(DataType::F64, "3");
    ins[4] = t(DataType::F64, "3");
    let out = infer(&BATCH_NORMALIZATION, 15, a, ins, 3).unwrap();
    assert_eq!(out_shape(&out), "[batch, 3, h, w]");
    assert_eq!(out[0].dtype, Some(DataType::F32));
    for o in &out[1..] {
        assert_eq!(
            o.dtype,
            Some(DataType::F64),
            "running stats take the mean's type"
        );
        assert_eq!(o.shape, Some(shape("3")));
    }
    // Opset 9-13: up to 4 statistics outputs; 14+: at most 2.
    let out = infer(&BATCH_NORMALIZATION, 9, vec![], bn_inputs("2x8", "8"), 5).unwrap();
    assert_eq!(out[4].shape, Some(shape("8")));
    assert_err(
        infer(&BATCH_NORMALIZATION, 14, vec![], bn_inputs("2x8", "8"), 5),
        "BatchNormalization",
        &["has 5 outputs", "1 to 3"],
    );
    // Opset 7 with spatial = 0: per-activation parameters.
    let ins = bn_inputs("2x8x4", "8x4");
    let out = infer(&BATCH_NORMALIZATION, 7, vec![int("spatial", 0)], ins, 2).unwrap();
    assert_eq!(out[1].shape, Some(shape("8x4")));
}

#[test]
fn batch_norm_errors() {
    let ins = bn_inputs("1x64x8x8", "32");
    assert_err(
        infer(&BATCH_NORMALIZATION, 15, vec![], ins, 1),
        "BatchNormalization",
        &["scale (input #1)", "32 vs 64"],
    );
    let mut ins = bn_inputs("1x64x8x8", "64");
    ins.pop();
    assert_err(
        infer(&BATCH_NORMALIZATION, 15, vec![], ins, 1),
        "BatchNormalization",
        &["has 4 inputs"],
    );
    let ins = bn_inputs("1x64x8x8", "64");
    assert_err(
        infer(
            &BATCH_NORMALIZATION,
            15,
            vec![int("training_mode", 5)],
            ins,
            1,
        ),
        "BatchNormalization",
        &["'training_mode'"],
    );
    let ins = bn_inputs("1x64x8x8", "1x64");
    assert_err(
        infer(&BATCH_NORMALIZATION, 15, vec![], ins, 1),
        "BatchNormalization",
        &["must have rank 1"],
    );
}

#[test]
fn instance_norm() {
    let ins = vec![f32s("batchx32xhxw"), f32s("32"), f32s("32")];
    let out = infer(&INSTANCE_NORMALIZATION, 6, vec![], ins, 1).unwrap();
    assert_eq!(out_shape(&out), "[batch, 32, h, w]");
    let ins = vec![f32s("1x32x4x4"), f32s("32"), f32s("16")];
    assert_err(
        infer(&INSTANCE_NORMALIZATION, 6, vec![], ins, 1),
        "InstanceNormalization",
        &["B (input #2)", "16 vs 32"],
    );
    let ins = vec![f32s("32x4"), f32s("4"), f32s("4")];
    assert_err(
        infer(&INSTANCE_NORMALIZATION, 6, vec![], ins, 1),
        "InstanceNormalization",
        &["rank 3 or more"],
    );
}

#[test]
fn layer_norm_outputs() {
    let ins = vec![
        t(DataType::F16, "batchxseqx768"),
        t(DataType::F16, "768"),
        t(DataType::F16, "768"),
    ];
    let out = infer(&LAYER_NORMALIZATION, 17, vec![], ins, 3).unwrap();
    assert_eq!(out_shape(&out), "[batch, seq, 768]");
    assert_eq!(out[0].dtype, Some(DataType::F16));
    assert_eq!(out[1].shape, Some(shape("batchxseqx1")));
    assert_eq!(
        out[1].dtype,
        Some(DataType::F32),
        "stash_type defaults to float"
    );
    assert_eq!(out[2], out[1]);
    // axis 1, stash_type double, no bias.
    let a = vec![int("axis", 1), int("stash_type", 11)];
    let ins = vec![f32s("bx4x8"), f32s("4x8")];
    let out = infer(&LAYER_NORMALIZATION, 17, a, ins, 3).unwrap();
    assert_eq!(out[1].shape, Some(shape("bx1x1")));
    assert_eq!(out[2].dtype, Some(DataType::F64));
    let ins = vec![f32s("bx4x8"), f32s("4")];
    assert_err(
        infer(&LAYER_NORMALIZATION, 17, vec![], ins, 1),
        "LayerNormalization",
        &["Scale (input #1)", "does not broadcast to [8]"],
    );
    let ins = vec![f32s("bx4x8"), f32s("8")];
    assert_err(
        infer(&LAYER_NORMALIZATION, 17, vec![int("axis", 3)], ins, 1),
        "LayerNormalization",
        &["axis 3 is out of range"],
    );
    let ins = vec![f32s("bx8"), f32s("8")];
    assert_err(
        infer(&LAYER_NORMALIZATION, 17, vec![int("stash_type", 8)], ins, 1),
        "LayerNormalization",
        &["'stash_type'", "STRING"],
    );
}

#[test]
fn group_norm_by_opset() {
    let a = || vec![int("num_groups", 32)];
    let ins = vec![f32s("batchx256xhxw"), f32s("256"), f32s("256")];
    let out = infer(&GROUP_NORMALIZATION, 21, a(), ins, 1).unwrap();
    assert_eq!(out_shape(&out), "[batch, 256, h, w]");
    let ins = vec![f32s("batchx256xhxw"), f32s("32"), f32s("32")];
    assert!(infer(&GROUP_NORMALIZATION, 18, a(), ins.clone(), 1).is_ok());
    assert_err(
        infer(&GROUP_NORMALIZATION, 21, a(), ins, 1),
        "GroupNormalization",
        &["scale (input #1)", "32 vs 256"],
    );
    let ins = vec![f32s("1x250x4x4"), f32s("250"), f32s("250")];
    assert_err(
        infer(&GROUP_NORMALIZATION, 21, a(), ins.clone(), 1),
        "GroupNormalization",
        &["does not divide"],
    );
    assert_err(
        infer(&GROUP_NORMALIZATION, 21, vec![], ins, 1),
        "GroupNormalization",
        &["'num_groups' is missing"],
    );
}

#[test]
fn lrn() {
    let out = infer(
        &LRN,
        13,
        vec![int("size", 5)],
        vec![f32s("batchx96x55x55")],
        1,
    )
    .unwrap();
    assert_eq!(out_shape(&out), "[batch, 96, 55, 55]");
    assert_err(
        infer(&LRN, 13, vec![], vec![f32s("1x3x4x4")], 1),
        "LRN",
        &["'size' is missing"],
    );
    assert_err(
        infer(&LRN, 13, vec![int("size", 0)], vec![f32s("1x3x4x4")], 1),
        "LRN",
        &["'size' is 0"],
    );
}
