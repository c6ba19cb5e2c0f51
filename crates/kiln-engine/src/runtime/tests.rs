//! CPU tests of the runtime's host-side checks.

use kiln_core::{BackendError, DataType, OptimizationProfile, ProfileInput, Shape, TensorSpec};

use super::*;

#[test]
fn shapes_are_checked_against_declaration_and_profiles() {
    let spec = TensorSpec::new("x", DataType::F32, Shape::parse("batchx16").unwrap());
    let profile = OptimizationProfile {
        inputs: vec![ProfileInput {
            name: "x".into(),
            min: vec![1, 16],
            opt: vec![4, 16],
            max: vec![8, 16],
        }],
    };
    check_dims(&spec, &[3, 16], std::slice::from_ref(&profile)).unwrap();
    let e = check_dims(&spec, &[9, 16], std::slice::from_ref(&profile)).unwrap_err();
    assert!(matches!(e, BackendError::ShapeOutsideProfile { .. }), "{e}");
    assert!(e.to_string().contains("'x'") && e.to_string().contains("[9, 16]"));
    assert!(matches!(
        check_dims(&spec, &[3, 15], &[]).unwrap_err(),
        BackendError::WrongShape { .. }
    ));
    assert!(check_dims(&spec, &[3], &[]).is_err());
}

#[test]
fn weights_take_the_engine_storage_type() {
    let t = kiln_onnx::Tensor::from_vec("w", vec![2], vec![1.5f32, -2.0]).unwrap();
    assert_eq!(weight_bytes(&t, DataType::F32).unwrap(), t.as_bytes());
    let h = weight_bytes(&t, DataType::F16).unwrap();
    let v: &[half::f16] = bytemuck::cast_slice(&h);
    assert_eq!(v, [half::f16::from_f32(1.5), half::f16::from_f32(-2.0)]);
    let h = weight_bytes(&t, DataType::BF16).unwrap();
    assert_eq!(h.len(), 4);
    let i = kiln_onnx::Tensor::from_vec("i", vec![1], vec![7i64]).unwrap();
    assert_eq!(weight_bytes(&i, DataType::F16).unwrap(), i.as_bytes());
}

#[test]
fn f16_weights_saturate_instead_of_overflowing() {
    let t =
        kiln_onnx::Tensor::from_vec("m", vec![3], vec![f32::MIN, 1e6, f32::NEG_INFINITY]).unwrap();
    let h = weight_bytes(&t, DataType::F16).unwrap();
    let v: &[half::f16] = bytemuck::cast_slice(&h);
    assert_eq!(v[0], half::f16::MIN);
    assert_eq!(v[1], half::f16::MAX);
    assert!(v[2].is_infinite());
}
