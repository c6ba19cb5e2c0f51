//! Unit tests of the build flags: sizes, shape lists, precision flags, profile resolution.

use super::*;
use clap::Parser;

#[derive(Debug, Parser)]
struct Wrap {
    #[command(flatten)]
    flags: BuildFlags,
}

fn flags(args: &[&str]) -> Result<BuildFlags, clap::Error> {
    Wrap::try_parse_from(std::iter::once("kiln").chain(args.iter().copied())).map(|w| w.flags)
}

fn input(name: &str, shape: &str) -> (String, Option<Shape>) {
    (name.to_string(), Some(Shape::parse(shape).unwrap()))
}

#[test]
fn sizes_with_units() {
    assert_eq!(parse_bytes("1000"), Ok(1000));
    assert_eq!(parse_bytes("0"), Ok(0));
    assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
    assert_eq!(parse_bytes("4G"), Ok(4 << 30));
    assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
    assert_eq!(parse_bytes("64 KiB"), Ok(64 << 10));
    assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
    assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
    assert_eq!(parse_bytes("2mb"), Ok(2_000_000));
    for bad in ["", "GiB", "4 parsecs", "-1", "1e400", "4GiBs", "1.2.3"] {
        assert!(parse_bytes(bad).is_err(), "{bad:?} should not parse");
    }
    assert!(parse_bytes("99999999999TiB").is_err());
}

#[test]
fn shape_lists() {
    let l = parse_shape_list(
        "--shapes",
        &["x:1x3x224x224,mask:1x128".into(), "'in:0':2x4".into()],
    )
    .unwrap();
    assert_eq!(
        l,
        vec![
            ("x".to_string(), vec![1, 3, 224, 224]),
            ("mask".to_string(), vec![1, 128]),
            ("in:0".to_string(), vec![2, 4]),
        ]
    );
    for bad in ["x", "x:1xq", "x:batchx3", ":1x2", "x:1x2,x:3x4"] {
        let e = parse_shape_list("--shapes", &[bad.into()]).unwrap_err();
        assert!(format!("{e:#}").contains("--shapes"), "{bad}: {e:#}");
    }
}

#[test]
fn precision_flags() {
    assert_eq!(flags(&[]).unwrap().precision(), Precision::Fp32);
    assert_eq!(flags(&["--fp32"]).unwrap().precision(), Precision::Fp32);
    assert_eq!(flags(&["--tf32"]).unwrap().precision(), Precision::Tf32);
    assert_eq!(flags(&["--fp16"]).unwrap().precision(), Precision::Fp16);
    assert_eq!(flags(&["--bf16"]).unwrap().precision(), Precision::Bf16);
    assert!(flags(&["--fp16", "--bf16"]).is_err());
    assert!(flags(&["--fp32", "--fp16"]).is_err());
    assert!(flags(&["--tf32", "--bf16"]).is_err());
}

#[test]
fn other_flags() {
    let f = flags(&[
        "--workspace",
        "4GiB",
        "--opt-level",
        "5",
        "--backend",
        "cpu",
        "--timing-cache",
        "t.cache",
    ])
    .unwrap();
    assert_eq!(f.workspace, Some(4 << 30));
    assert_eq!(f.opt_level, Some(5));
    assert_eq!(f.backend, BackendChoice::Cpu);
    assert_eq!(f.timing_cache, Some(PathBuf::from("t.cache")));
    assert_eq!(flags(&[]).unwrap().backend, BackendChoice::Auto);
    assert!(flags(&["--opt-level", "6"]).is_err());
    assert!(flags(&["--workspace", "lots"]).is_err());
    assert!(flags(&["--backend", "onnxruntime"]).is_err());
}

#[test]
fn fixed_models_need_no_profile() {
    let (p, notes) = flags(&[])
        .unwrap()
        .resolve_profiles(&[input("x", "1x3x8x8")])
        .unwrap();
    assert!(p.is_empty() && notes.is_empty());
    // A matching --shapes is accepted, a different one is an error naming the input.
    let f = flags(&["--shapes", "x:1x3x8x8"]).unwrap();
    assert!(
        f.resolve_profiles(&[input("x", "1x3x8x8")])
            .unwrap()
            .0
            .is_empty()
    );
    let f = flags(&["--shapes", "x:2x3x8x8"]).unwrap();
    let e = f.resolve_profiles(&[input("x", "1x3x8x8")]).unwrap_err();
    assert!(e.to_string().contains("input 'x'"), "{e}");
}

#[test]
fn dynamic_inputs_default_to_one_with_a_note() {
    let (p, notes) = flags(&[])
        .unwrap()
        .resolve_profiles(&[input("x", "batchx16"), input("fixed", "4")])
        .unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].inputs.len(), 1);
    let x = &p[0].inputs[0];
    assert_eq!(
        (x.min.clone(), x.opt.clone(), x.max.clone()),
        (vec![1, 16], vec![1, 16], vec![1, 16])
    );
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].contains("input 'x'") && notes[0].contains("--shapes"),
        "{}",
        notes[0]
    );
    // An unknown dim cannot be defaulted.
    let e = flags(&[])
        .unwrap()
        .resolve_profiles(&[input("x", "?x16")])
        .unwrap_err();
    assert!(e.to_string().contains("--shapes x:"), "{e}");
    let e = flags(&[])
        .unwrap()
        .resolve_profiles(&[("y".to_string(), None)])
        .unwrap_err();
    assert!(e.to_string().contains("input 'y'"), "{e}");
}

#[test]
fn min_opt_max_ranges() {
    let f = flags(&[
        "--min-shapes",
        "x:1x16",
        "--opt-shapes",
        "x:8x16",
        "--max-shapes",
        "x:32x16",
    ])
    .unwrap();
    let (p, notes) = f.resolve_profiles(&[input("x", "batchx16")]).unwrap();
    assert!(notes.is_empty());
    let x = &p[0].inputs[0];
    assert_eq!((x.min[0], x.opt[0], x.max[0]), (1, 8, 32));
    // opt alone: min = max = opt. min and max alone: opt = max.
    let (p, _) = flags(&["--opt-shapes", "x:4x16"])
        .unwrap()
        .resolve_profiles(&[input("x", "batchx16")])
        .unwrap();
    assert_eq!((p[0].inputs[0].min[0], p[0].inputs[0].max[0]), (4, 4));
    let (p, _) = flags(&["--min-shapes", "x:2x16", "--max-shapes", "x:8x16"])
        .unwrap()
        .resolve_profiles(&[input("x", "batchx16")])
        .unwrap();
    let x = &p[0].inputs[0];
    assert_eq!((x.min[0], x.opt[0], x.max[0]), (2, 8, 8));
    // min > max, a wrong fixed dim, an unknown input, --shapes mixed with ranges.
    let bad = [
        vec!["--min-shapes", "x:9x16", "--max-shapes", "x:8x16"],
        vec!["--opt-shapes", "x:4x15"],
        vec!["--shapes", "z:1x16"],
        vec!["--shapes", "x:1x16", "--max-shapes", "x:2x16"],
        vec!["--opt-shapes", "x:4"],
    ];
    for args in bad {
        let e = flags(&args)
            .unwrap()
            .resolve_profiles(&[input("x", "batchx16")])
            .unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("'x'") || text.contains("'z'"),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn build_config_carries_the_flags() {
    let f = flags(&[
        "--fp16",
        "--workspace",
        "1GiB",
        "--opt-level",
        "0",
        "--shapes",
        "x:2x16",
    ])
    .unwrap();
    let mut b = kiln_onnx::GraphBuilder::new("t").opset(17);
    let x = b.input(
        "x",
        kiln_core::DataType::F32,
        &[Dim::symbol("batch"), Dim::Known(16)],
    );
    let y = b.node("Relu", &[&x]).output_named("y");
    b.output(
        &y,
        kiln_core::DataType::F32,
        &[Dim::symbol("batch"), Dim::Known(16)],
    );
    let c = f.build_config(&b.graph()).unwrap();
    assert_eq!(c.precision, Precision::Fp16);
    assert_eq!(c.workspace_limit, 1 << 30);
    assert_eq!(c.opt_level, 0);
    assert_eq!(c.profiles[0].inputs[0].opt, vec![2, 16]);
    let d = flags(&[]).unwrap().build_config(&b.graph()).unwrap();
    assert_eq!(d.workspace_limit, BuildConfig::default().workspace_limit);
    assert_eq!(d.opt_level, DEFAULT_OPT_LEVEL);
}

#[test]
fn file_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("m.bin");
    std::fs::write(&plan, b"KILNPLAN\x01\0\0\0").unwrap();
    assert_eq!(file_kind(&plan).unwrap(), FileKind::KilnPlan);
    let onnx = dir.path().join("m.onnx");
    std::fs::write(&onnx, b"\x08\x07").unwrap();
    assert_eq!(file_kind(&onnx).unwrap(), FileKind::Onnx);
    let eng = dir.path().join("m.engine");
    std::fs::write(&eng, b"ftrt....").unwrap();
    assert_eq!(file_kind(&eng).unwrap(), FileKind::Other);
    let e = file_kind(&dir.path().join("missing.kiln")).unwrap_err();
    assert!(e.to_string().contains("missing.kiln"), "{e}");
}

#[test]
fn host_tensors_round_trip_through_values() {
    let mut rng = crate::tensors::rng(3);
    let v = crate::tensors::random_value(kiln_core::DataType::F32, &[2, 3], &mut rng);
    let h = value_to_host("a", &v).unwrap();
    assert_eq!(h.dims, vec![2, 3]);
    let back = host_to_value(&h).unwrap();
    assert_eq!(back.to_f64_vec(), v.to_f64_vec());
}
