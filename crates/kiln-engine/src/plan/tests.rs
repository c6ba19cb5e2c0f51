use super::*;
use kiln_core::{DataType, Precision, Shape, TensorSpec};

fn plan() -> Plan {
    Plan {
        header: PlanHeader {
            kiln_version: env!("CARGO_PKG_VERSION").into(),
            fingerprint: Fingerprint {
                gpu_name: "NVIDIA H100 80GB HBM3".into(),
                compute_capability: (9, 0),
                cuda: "13.0".into(),
                nvrtc: Some("13.0".into()),
                cublaslt: Some("13.0.0".into()),
                cudnn: Some("9.10.2".into()),
            },
            config: BuildConfig {
                precision: Precision::Fp16,
                ..BuildConfig::default()
            },
            inputs: vec![TensorSpec::new(
                "x",
                DataType::F32,
                Shape::parse("batchx16").unwrap(),
            )],
            outputs: vec![],
            passes: Default::default(),
        },
        sections: vec![
            (GRAPH_SECTION.into(), (0..200u8).collect()),
            (format!("{KERNEL_PREFIX}relu_f16"), vec![1, 2, 3]),
        ],
    }
}

#[test]
fn round_trip_is_bit_exact() {
    let p = plan();
    let bytes = p.to_bytes().unwrap();
    let q = Plan::from_bytes(&bytes).unwrap();
    assert_eq!(p, q);
    assert_eq!(q.to_bytes().unwrap(), bytes);
    assert_eq!(
        q.kernels().collect::<Vec<_>>(),
        vec![("relu_f16", &[1u8, 2, 3][..])]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.plan");
    p.save(&path).unwrap();
    assert_eq!(Plan::load(&path).unwrap(), p);
}

#[test]
fn truncated_and_corrupt_plans_are_errors() {
    let bytes = plan().to_bytes().unwrap();
    for n in 0..bytes.len() {
        assert!(Plan::from_bytes(&bytes[..n]).is_err(), "prefix {n} parsed");
    }
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..500 {
        let mut b = bytes.clone();
        let i = rng.usize(..b.len());
        b[i] ^= 1 << rng.u8(0..8);
        assert!(Plan::from_bytes(&b).is_err(), "flip at {i} parsed");
    }
    let e = Plan::from_bytes(b"hello world").unwrap_err().to_string();
    assert!(e.contains("not a kiln plan"), "{e}");
}

#[test]
fn lengths_are_checked_even_with_a_valid_checksum() {
    // A header length far beyond the data, with the checksum fixed up.
    let mut b = Vec::new();
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let e = Plan::from_bytes(&b).unwrap_err().to_string();
    assert!(e.contains("length"), "{e}");
}

#[test]
fn other_versions_and_machines_say_rebuild() {
    let p = plan();
    let mut bytes = p.to_bytes().unwrap();
    bytes[8] = 99;
    let e = Plan::from_bytes(&bytes).unwrap_err().to_string();
    assert!(
        e.contains("format version 99") && e.contains("rebuild"),
        "{e}"
    );
    p.check_compatible(&p.header.fingerprint).unwrap();
    let mut here = p.header.fingerprint.clone();
    here.gpu_name = "NVIDIA A100".into();
    here.compute_capability = (8, 0);
    here.cudnn = Some("9.1.0".into());
    let e = p.check_compatible(&here).unwrap_err().to_string();
    assert!(
        e.contains("sm_80") && e.contains("cuDNN 9.10.2") && e.contains("rebuild"),
        "{e}"
    );
}
