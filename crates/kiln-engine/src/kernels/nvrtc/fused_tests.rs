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
    let base = |e: &str, i: &[DataType], o: DataType| module_for(e, i, o, Variant::Baseline);
    let m = base(GELU, &[DataType::F16], DataType::F16).unwrap();
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
    let same = base(GELU, &[DataType::F16], DataType::F16).unwrap();
    assert_eq!(same, m);
    let bf = base(GELU, &[DataType::BF16], DataType::BF16).unwrap();
    assert_ne!(bf.name, m.name);
    assert!(
        bf.source
            .contains("kiln_bf16_to_f32((unsigned short)(q.w >> 16))")
    );
    let f = base(GELU, &[DataType::F32], DataType::F32).unwrap();
    assert!(f.source.contains("#define EW_V 4"));
    assert!(f.source.contains("v[3] = __uint_as_float(q.w);"));
    // Mixed: an f32 input with an f16 output moves 4 elements (8 bytes of f16).
    let mix = base(
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
    assert_eq!(
        module_name_for(GELU, &[DataType::F16], DataType::F16, Variant::Baseline),
        m.name
    );
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

#[test]
fn variant_from_env_value() {
    assert_eq!(Variant::parse(None), Variant::Fast);
    assert_eq!(Variant::parse(Some("1")), Variant::Fast);
    assert_eq!(Variant::parse(Some("0")), Variant::Baseline);
    assert_eq!(Variant::parse(Some(" 0 ")), Variant::Baseline);
    assert_eq!(
        module_name(GELU, &[DataType::F16], DataType::F16),
        module_name_for(GELU, &[DataType::F16], DataType::F16, Variant::from_env())
    );
}

#[test]
fn fast_source_for_half_storage() {
    let fast = module_for(GELU, &[DataType::F16], DataType::F16, Variant::Fast).unwrap();
    let base = module_for(GELU, &[DataType::F16], DataType::F16, Variant::Baseline).unwrap();
    assert_ne!(fast.name, base.name);
    let s = &fast.source;
    assert_eq!(s.matches('{').count(), s.matches('}').count());
    assert_eq!(s.matches('(').count(), s.matches(')').count());
    // erf: the rational approximation, no libdevice erff; the division by sqrt 2 (0x3fb504f3)
    // is a multiplication by 1/sqrt 2 rounded to f32 (0x3f3504f3).
    assert!(s.contains("__device__ __forceinline__ float kiln_erf_fast(float x)"));
    assert!(s.contains("t1 = (kiln_erf_fast(x))"));
    assert!(!s.contains("erff("));
    assert!(s.contains("const float t0 = x0 * __uint_as_float(0x3f3504f3u);"));
    assert_eq!(1.0 / std::f32::consts::SQRT_2, f32::from_bits(0x3f35_04f3));
    // Words unpacked and packed two at a time (sm_80+), the old packing otherwise.
    assert!(s.contains("mov.b32 {lo, hi}, %2; cvt.f32.f16 %0, lo; cvt.f32.f16 %1, hi;"));
    assert!(s.contains(
        "asm(\"cvt.rn.f16x2.f32 %0, %1, %2;\" : \"=r\"(q.w) : \"f\"(v[7]), \"f\"(v[6]));"
    ));
    assert_eq!(s.matches("#if __CUDA_ARCH__ >= 800").count(), 8);
    let bf = module_for(GELU, &[DataType::BF16], DataType::BF16, Variant::Fast).unwrap();
    assert!(
        bf.source
            .contains("v[7] = __uint_as_float(q.w & 0xffff0000u);")
    );
    assert!(bf.source.contains("cvt.rn.bf16x2.f32"));
    assert!(bf.source.contains("kiln_erf_fast(x)"));
    // Gelu as one op: its erf and its division change the same way.
    let g = module_for(
        &format!("i0 {}", unary_token("gelu", 0.0, 0.0)),
        &[DataType::F16],
        DataType::F16,
        Variant::Fast,
    )
    .unwrap();
    assert!(
        g.source
            .contains("0.5f * x * (1.f + kiln_erf_fast(x * __uint_as_float(0x3f3504f3u)))")
    );
    // Division by a non-literal, or by a literal whose reciprocal is not a normal f32, stays.
    for e in [
        "i0 i1 b:div",
        "i0 c00000000 b:div",
        "i0 c7f7fffff b:div",
        "c3f800000 i0 b:div",
    ] {
        let n = Expr::parse(e).unwrap().inputs;
        let m = module_for(e, &vec![DataType::F16; n], DataType::F16, Variant::Fast).unwrap();
        assert!(m.source.contains("t0 = (x / y);"), "{e}");
    }
}

#[test]
fn fast_math_only_for_half_storage() {
    // f32 anywhere keeps erff and IEEE division (only the packing and the grid change).
    for (ins, out) in [
        (vec![DataType::F32], DataType::F32),
        (vec![DataType::F16], DataType::F32),
        (vec![DataType::F32], DataType::F16),
    ] {
        assert!(!half_math(&ins, out, Variant::Fast));
        let m = module_for(GELU, &ins, out, Variant::Fast).unwrap();
        assert!(m.source.contains("erff(x)"), "{ins:?} -> {out}");
        assert!(m.source.contains("t0 = (x / y);"));
        assert!(!m.source.contains("kiln_erf_fast"));
    }
    assert!(half_math(
        &[DataType::BF16, DataType::F16],
        DataType::F16,
        Variant::Fast
    ));
    assert!(!half_math(
        &[DataType::F16],
        DataType::F16,
        Variant::Baseline
    ));
    let f = module_for(GELU, &[DataType::F32], DataType::F32, Variant::Fast).unwrap();
    let b = module_for(GELU, &[DataType::F32], DataType::F32, Variant::Baseline).unwrap();
    assert_eq!(f.source, b.source);
    assert_ne!(f.name, b.name);
}

#[test]
fn fast_grid() {
    // BERT-base GELU: 128 * 128 * 3072 halves = 6291456 vectors of 8.
    let units = 128 * 128 * 3072 / 8;
    assert_eq!(blocks(units, true, Variant::Baseline, 132), 24576);
    assert_eq!(
        blocks(units, true, Variant::Fast, 132),
        132 * fast::BLOCKS_PER_SM
    );
    assert_eq!(blocks(units, false, Variant::Fast, 132), 24576);
    assert_eq!(blocks(1000, true, Variant::Fast, 132), 4);
    assert_eq!(blocks(0, true, Variant::Fast, 0), 1);
}

/// erf in f64 by the everywhere-convergent series of positive terms
/// `erf(x) = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1 * 3 * .. * (2n+1))` (no
/// cancellation: about 1e-15 relative for |x| <= 6).
fn erf_f64(x: f64) -> f64 {
    let a = x.abs();
    if a > 6.0 {
        // 1 - erf(6) = 2e-17: erf rounds to +-1 in f64.
        return 1f64.copysign(x);
    }
    let (mut term, mut sum, mut n) = (a, a, 0.0f64);
    while term > sum * 1e-18 {
        n += 1.0;
        term *= 2.0 * a * a / (2.0 * n + 1.0);
        sum += term;
    }
    (std::f64::consts::FRAC_2_SQRT_PI * (-a * a).exp() * sum).copysign(x)
}

#[test]
fn erf_f64_reference_values() {
    // Values of erf to 16 digits (A&S table 7.1 and its complement for the large ones).
    for (x, want) in [
        (0.1, 0.1124629160182849),
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (2.0, 0.9953222650189527),
        (3.0, 0.9999779095030014),
        (-1.5, -0.9661051464753108),
    ] {
        let got = erf_f64(x);
        assert!((got - want).abs() <= 2e-15, "erf({x}) = {got}, want {want}");
    }
}

#[test]
fn erf_fast_error_on_a_dense_grid() {
    use fast::{ERF_FAST_CLAMP, ERF_FAST_HOST_MAX_REL, ERF_FAST_MAX_REL, erf_fast};
    assert!(ERF_FAST_HOST_MAX_REL + 2.0 * f64::from(f32::EPSILON) <= ERF_FAST_MAX_REL);
    let mut worst = (0.0f64, 0.0f32);
    let mut check = |x: f32| {
        let want = erf_f64(f64::from(x));
        let got = erf_fast(x);
        assert_eq!(erf_fast(-x).to_bits(), (-got).to_bits(), "odd at {x}");
        let rel = (f64::from(got) - want).abs() / want.abs();
        if rel > worst.0 {
            worst = (rel, x);
        }
    };
    // Every 128th f32 in [2^-20, 6] (about 1.3 million points, every binade) and a uniform
    // grid; below 2^-20 erf(x) is 2x/sqrt(pi) to 1e-13 and the approximation t * P(0).
    let mut bits = (2.0f32).powi(-20).to_bits();
    while f32::from_bits(bits) <= 6.0 {
        check(f32::from_bits(bits));
        bits += 128;
    }
    for i in 1..=400_000 {
        check(i as f32 * (ERF_FAST_CLAMP + 0.5) / 400_000.0);
    }
    for x in [
        1e-30f32, 1e-20, 1e-10, 1e-7, 3.9999998, 4.0, 4.0000005, 100.0, 3e38,
    ] {
        check(x);
    }
    assert!(
        worst.0 <= ERF_FAST_HOST_MAX_REL,
        "erf_fast relative error {:.3e} at {} > {ERF_FAST_HOST_MAX_REL:.1e}",
        worst.0,
        worst.1
    );
    println!(
        "erf_fast: worst relative error {:.3e} at {}",
        worst.0, worst.1
    );
    assert!(worst.0 > 1e-8, "the grid missed the approximation's error");
    assert!((f64::from(erf_fast(f32::INFINITY)) - 1.0).abs() <= ERF_FAST_HOST_MAX_REL);
    assert!((f64::from(erf_fast(f32::NEG_INFINITY)) + 1.0).abs() <= ERF_FAST_HOST_MAX_REL);
    assert!(erf_fast(f32::NAN).is_nan());
    assert_eq!(erf_fast(ERF_FAST_CLAMP.next_up()), 1.0);
    assert_eq!(erf_fast(-1e30), -1.0);
    assert_eq!(erf_fast(0.0), 0.0);
}

#[test]
fn fast_gelu_on_every_half_value() {
    // GELU as the half-storage fast path computes it (x * rcp(sqrt 2), erf_fast, + 1, * x,
    // * 0.5, rounded to f16/bf16 once) against the exact GELU rounded the same way: within one
    // unit of the storage's last place, plus the erf error times 0.5 |x| (relative to a GELU
    // value near 0 for x << 0, where 1 + erf cancels, the same as in f32 arithmetic).
    use half::{bf16, f16};
    let rcp = fast::reciprocal(std::f32::consts::SQRT_2).unwrap();
    let fast_gelu = |x: f32| x * (1.0 + fast::erf_fast(x * rcp)) * 0.5;
    let exact = |x: f64| 0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2));
    for b in 0..=u16::MAX {
        for (x, got, ulp) in [
            {
                let h = f16::from_bits(b);
                let x = h.to_f32();
                let got = f16::from_f32(fast_gelu(x));
                let w = f16::from_f64(exact(f64::from(x)));
                let next = f16::from_bits(w.to_bits().wrapping_add(1)).to_f64() - w.to_f64();
                (
                    x,
                    got.to_f64(),
                    next.abs().max(f64::from(f16::MIN_POSITIVE_SUBNORMAL)),
                )
            },
            {
                let h = bf16::from_bits(b);
                let x = h.to_f32();
                let got = bf16::from_f32(fast_gelu(x));
                let w = bf16::from_f64(exact(f64::from(x)));
                let next = bf16::from_bits(w.to_bits().wrapping_add(1)).to_f64() - w.to_f64();
                (x, got.to_f64(), next.abs().max(1e-40))
            },
        ] {
            if !x.is_finite() {
                assert!(got.is_nan() || x.is_infinite(), "gelu({x}) = {got}");
                continue;
            }
            let want = exact(f64::from(x));
            if x.abs() > 60000.0 && !got.is_finite() {
                continue;
            }
            let bound = ulp + 0.5 * f64::from(x.abs()) * 1e-6;
            assert!(
                (got - want).abs() <= bound,
                "gelu({x}) = {got}, want {want} (bound {bound:.3e})"
            );
        }
    }
}
