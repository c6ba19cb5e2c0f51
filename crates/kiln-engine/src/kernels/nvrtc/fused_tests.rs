//! Host tests of the fused elementwise kernels: expression parsing, generated source, launch
//! geometry.

use super::*;

const GELU: &str =
    "i0 c3fb504f3 b:div u:erf:00000000:00000000 c3f800000 b:add i0 b:mul c3f000000 b:mul";

#[test]
fn parses_and_checks_expressions() {
    let e = Expr::parse(GELU).unwrap();
    assert_eq!(e.inputs, 1);
    assert_eq!(e.tokens.len(), 10);
    assert_eq!(e.tokens[1], Token::Literal(std::f32::consts::SQRT_2));
    assert_eq!(e.tokens[3], Token::Unary("erf", 0.0, 0.0));
    assert_eq!(e.tokens[9], Token::Binary(BinaryOp::Mul));
    let e = Expr::parse("i0 u:relu:00000000:00000000 i1 t0 b:mul b:add").unwrap();
    assert_eq!(e.inputs, 2);
    for bad in [
        "",
        "i0",
        "i0 i1",
        "i0 b:add",
        "t0 u:relu:00000000:00000000",
        "i0 u:nope:00000000:00000000",
        "i0 u:relu:0000:00000000",
        "i0 u:isnan:00000000:00000000",
        "i0 c1 b:add",
        "i0 i1 b:equal",
        "i0 x b:add",
    ] {
        assert!(Expr::parse(bad).is_err(), "{bad:?} parsed");
    }
    let many: String = (0..=MAX_INPUTS)
        .map(|k| format!("i{k} "))
        .chain((0..MAX_INPUTS).map(|_| "b:add ".to_string()))
        .collect();
    assert!(Expr::parse(&many).is_err());
}

#[test]
fn tokens_round_trip() {
    let t = format!(
        "i0 {} {} {} {}",
        literal(-0.25),
        binary_token(BinaryOp::Pow),
        unary_token("leaky_relu", 0.1, 0.0),
        literal(f32::NAN)
    );
    let e = Expr::parse(&format!("{t} b:max")).unwrap();
    assert_eq!(e.tokens[1], Token::Literal(-0.25));
    assert_eq!(e.tokens[3], Token::Unary("leaky_relu", 0.1, 0.0));
    assert!(matches!(e.tokens[4], Token::Literal(x) if x.is_nan()));
}

#[test]
fn generated_source() {
    let m = module(GELU, &[DataType::F16], DataType::F16).unwrap();
    assert!(m.name.starts_with("ew_") && m.name.len() == 3 + 16);
    let s = &m.source;
    assert_eq!(s.matches('{').count(), s.matches('}').count());
    assert_eq!(s.matches('(').count(), s.matches(')').count());
    assert!(s.contains("extern \"C\" __global__ void ew_contig("));
    assert!(s.contains("extern \"C\" __global__ void ew_bcast("));
    assert!(s.contains("#define EW_V 8"));
    assert!(s.contains("erff(x)"));
    assert!(s.contains("__uint_as_float(0x3fb504f3u)"));
    assert!(s.contains("const uint4 q = *reinterpret_cast<const uint4*>(p + e);"));
    assert!(s.contains("kiln_f32_to_f16(v[7])"));
    // The result of the last op is returned; t0..t4 are the five ops.
    assert!(s.contains("return t4;"));
    assert!(!s.contains("t5"));
    // Names depend on the expression and the types, not on anything else.
    let same = module(GELU, &[DataType::F16], DataType::F16).unwrap();
    assert_eq!(same, m);
    let bf = module(GELU, &[DataType::BF16], DataType::BF16).unwrap();
    assert_ne!(bf.name, m.name);
    assert!(
        bf.source
            .contains("kiln_bf16_to_f32((unsigned short)(q.w >> 16))")
    );
    let f = module(GELU, &[DataType::F32], DataType::F32).unwrap();
    assert!(f.source.contains("#define EW_V 4"));
    assert!(f.source.contains("v[3] = __uint_as_float(q.w);"));
    // Mixed: an f32 input with an f16 output moves 4 elements (8 bytes of f16).
    let mix = module(
        "i0 i1 b:add",
        &[DataType::F32, DataType::F16],
        DataType::F16,
    )
    .unwrap();
    assert!(mix.source.contains("#define EW_V 4"));
    assert!(mix.source.contains("const uint2 q"));
    assert!(module(GELU, &[DataType::F16, DataType::F16], DataType::F16).is_err());
    assert!(module(GELU, &[DataType::I64], DataType::F32).is_err());
    assert!(module(GELU, &[DataType::F32], DataType::Bool).is_err());
    assert_eq!(module_name(GELU, &[DataType::F16], DataType::F16), m.name);
    assert_ne!(
        module_name(GELU, &[DataType::F16], DataType::F32),
        module_name(GELU, &[DataType::F32], DataType::F16)
    );
}

#[test]
fn unary_params_reach_the_code() {
    let m = module(
        &format!("i0 {}", unary_token("clip", 0.0, 6.0)),
        &[DataType::F32],
        DataType::F32,
    )
    .unwrap();
    assert!(
        m.source
            .contains("const float a = __uint_as_float(0x00000000u)")
    );
    assert!(
        m.source
            .contains("const float b = __uint_as_float(0x40c00000u)")
    );
    assert!(m.source.contains("kiln_minf(kiln_maxf(x, a), b)"));
    let m = module(
        &format!("i0 {}", unary_token("softplus", 0.0, 0.0)),
        &[DataType::F32],
        DataType::F32,
    )
    .unwrap();
    assert!(m.source.contains("float kiln_softplus(float x)"));
}

#[test]
fn geometries() {
    // Same shapes and a one-element input: contiguous.
    let g = geometry(&[&[4, 6], &[4, 6], &[1]], &[4, 6], 8).unwrap();
    assert_eq!(
        g,
        Geometry::Contiguous {
            n: 24,
            scalars: 0b100
        }
    );
    let g = geometry(&[&[1, 1]], &[1, 1], 8).unwrap();
    assert_eq!(g, Geometry::Contiguous { n: 1, scalars: 1 });
    // An attention mask [b, 1, 1, s] over scores [b, h, s, s].
    let g = geometry(
        &[&[2, 12, 128, 128], &[2, 1, 1, 128]],
        &[2, 12, 128, 128],
        8,
    )
    .unwrap();
    assert_eq!(
        g,
        Geometry::Broadcast {
            n: 2 * 12 * 128 * 128,
            shape: vec![2, 12 * 128, 128],
            strides: vec![vec![12 * 128 * 128, 128, 1], vec![128, 0, 1]],
            inner_bcast: 0,
            vec_ok: true,
        }
    );
    // A bias over the last axis, odd length: no vectors.
    let g = geometry(&[&[5, 7], &[7]], &[5, 7], 4).unwrap();
    assert!(matches!(g, Geometry::Broadcast { vec_ok: false, .. }));
    // Per-channel [C, 1, 1] over [N, C, H, W]: broadcast on the inner axis.
    let g = geometry(&[&[2, 3, 4, 4], &[3, 1, 1]], &[2, 3, 4, 4], 4).unwrap();
    let Geometry::Broadcast {
        shape,
        inner_bcast,
        vec_ok,
        ..
    } = g
    else {
        panic!("not a broadcast")
    };
    assert_eq!(shape, vec![2, 3, 16]);
    assert_eq!(inner_bcast, 0b10);
    assert!(vec_ok);
    assert!(geometry(&[&[3]], &[4], 4).is_err());
    assert!(geometry(&[&[2, 3]], &[3], 4).is_err());
}

#[test]
fn vector_widths() {
    assert_eq!(vector_width(&[DataType::F16], DataType::F16), 8);
    assert_eq!(
        vector_width(&[DataType::BF16, DataType::BF16], DataType::BF16),
        8
    );
    assert_eq!(vector_width(&[DataType::F32], DataType::F32), 4);
    assert_eq!(
        vector_width(&[DataType::F16, DataType::F32], DataType::F16),
        4
    );
    assert_eq!(vector_width(&[], DataType::F16), 8);
}
