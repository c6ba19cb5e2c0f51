//! GPU kernel tests: unary, binary, Where, Cast.

use super::*;

pub(crate) fn unary_float(ctx: &Ctx) -> Result<()> {
    use unary::UnaryOp as U;
    let cases: Vec<(&str, Vec<(&str, AttrValue)>, U, (f64, f64))> = vec![
        ("Relu", vec![], U::Relu, (-3.0, 3.0)),
        (
            "LeakyRelu",
            vec![("alpha", 0.07f32.into())],
            U::LeakyRelu { alpha: 0.07 },
            (-3.0, 3.0),
        ),
        ("Sigmoid", vec![], U::Sigmoid, (-8.0, 8.0)),
        (
            "HardSigmoid",
            vec![("alpha", 0.3f32.into()), ("beta", 0.4f32.into())],
            U::HardSigmoid {
                alpha: 0.3,
                beta: 0.4,
            },
            (-4.0, 4.0),
        ),
        ("HardSwish", vec![], U::HardSwish, (-5.0, 5.0)),
        ("Tanh", vec![], U::Tanh, (-4.0, 4.0)),
        ("Gelu", vec![], U::Gelu, (-4.0, 4.0)),
        (
            "Gelu",
            vec![("approximate", "tanh".into())],
            U::GeluTanh,
            (-4.0, 4.0),
        ),
        ("Erf", vec![], U::Erf, (-3.0, 3.0)),
        ("Softplus", vec![], U::Softplus, (-6.0, 6.0)),
        ("Softsign", vec![], U::Softsign, (-6.0, 6.0)),
        (
            "Elu",
            vec![("alpha", 0.5f32.into())],
            U::Elu { alpha: 0.5 },
            (-3.0, 3.0),
        ),
        (
            "Selu",
            vec![],
            U::Selu {
                alpha: 1.673_263_2,
                gamma: 1.050_701,
            },
            (-3.0, 3.0),
        ),
        (
            "Celu",
            vec![("alpha", 2.0f32.into())],
            U::Celu { alpha: 2.0 },
            (-3.0, 3.0),
        ),
        (
            "ThresholdedRelu",
            vec![("alpha", 0.5f32.into())],
            U::ThresholdedRelu { alpha: 0.5 },
            (-2.0, 2.0),
        ),
        ("Mish", vec![], U::Mish, (-5.0, 5.0)),
        ("Sqrt", vec![], U::Sqrt, (0.01, 9.0)),
        ("Reciprocal", vec![], U::Reciprocal, (0.2, 5.0)),
        ("Exp", vec![], U::Exp, (-5.0, 5.0)),
        ("Log", vec![], U::Log, (0.01, 9.0)),
        ("Abs", vec![], U::Abs, (-3.0, 3.0)),
        ("Neg", vec![], U::Neg, (-3.0, 3.0)),
        ("Floor", vec![], U::Floor, (-5.0, 5.0)),
        ("Ceil", vec![], U::Ceil, (-5.0, 5.0)),
        ("Round", vec![], U::Round, (-5.0, 5.0)),
        ("Sign", vec![], U::Sign, (-3.0, 3.0)),
        ("Sin", vec![], U::Sin, (-3.0, 3.0)),
        ("Cos", vec![], U::Cos, (-3.0, 3.0)),
        ("Atan", vec![], U::Atan, (-3.0, 3.0)),
        ("Asin", vec![], U::Asin, (-0.9, 0.9)),
        ("Acosh", vec![], U::Acosh, (1.1, 4.0)),
        ("Atanh", vec![], U::Atanh, (-0.9, 0.9)),
        (
            "Clip",
            vec![("min", (-1.0f32).into()), ("max", 2.0f32.into())],
            U::Clip {
                min: -1.0,
                max: 2.0,
            },
            (-3.0, 3.0),
        ),
        ("IsNaN", vec![], U::IsNaN, (-3.0, 3.0)),
    ];
    let dims = [3, 7, 11];
    for dt in FLOATS {
        for (op, attrs, uop, (lo, hi)) in &cases {
            let x = ctx.rand(dt, &dims, *lo, *hi);
            // Clip takes bounds as attributes before opset 11; use opset 10 there.
            let opset = if *op == "Clip" { 10 } else { 20 };
            let mut n = node(op, opset, vec![x]);
            n.attrs = attrs.clone();
            let what = format!("{op} {dt}");
            check(ctx, &what, &n, tolerance(dt), |i, o| {
                unary::unary(&ctx.lib, &ctx.stream, *uop, dt, i[0], o[0], numel(&dims))
            })?;
        }
    }
    Ok(())
}

pub(crate) fn unary_int_and_bool(ctx: &Ctx) -> Result<()> {
    use unary::UnaryOp as U;
    let dims = [5, 9];
    for dt in [DataType::I64, DataType::I32, DataType::I8] {
        for (op, uop) in [
            ("Abs", U::Abs),
            ("Neg", U::Neg),
            ("Relu", U::Relu),
            ("Sign", U::Sign),
        ] {
            let n = node(op, 20, vec![ctx.rand(dt, &dims, -100.0, 100.0)]);
            check(ctx, &format!("{op} {dt}"), &n, 0.0, |i, o| {
                unary::unary(&ctx.lib, &ctx.stream, uop, dt, i[0], o[0], 45)
            })?;
        }
    }
    let n = node("Not", 13, vec![ctx.rand(DataType::Bool, &dims, 0.0, 2.0)]);
    check(ctx, "Not", &n, 0.0, |i, o| {
        unary::unary(
            &ctx.lib,
            &ctx.stream,
            U::Not,
            DataType::Bool,
            i[0],
            o[0],
            45,
        )
    })
}

pub(crate) fn binary_broadcast(ctx: &Ctx) -> Result<()> {
    use binary::BinaryOp as B;
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[2, 3, 4], &[4]),
        (&[2, 1, 4], &[3, 1]),
        (&[37], &[37]),
        (&[], &[2, 3]),
        (&[2, 3, 1, 5], &[1, 3, 4, 1]),
    ];
    let ops = [
        ("Add", B::Add),
        ("Sub", B::Sub),
        ("Mul", B::Mul),
        ("Div", B::Div),
        ("Pow", B::Pow),
        ("Min", B::Min),
        ("Max", B::Max),
        ("Equal", B::Equal),
        ("Less", B::Less),
        ("Greater", B::Greater),
        ("LessOrEqual", B::LessOrEqual),
        ("GreaterOrEqual", B::GreaterOrEqual),
    ];
    for dt in FLOATS {
        for (sa, sb) in shapes {
            for (op, bop) in ops {
                let (lo, hi) = if op == "Pow" { (0.5, 2.0) } else { (-3.0, 3.0) };
                let a = ctx.rand(dt, sa, lo, hi);
                // small integers make Equal/LessOrEqual see ties
                let b = if matches!(bop, B::Equal | B::LessOrEqual | B::GreaterOrEqual) {
                    t(dt, sb, &ctx.ints(numel(sb), -3, 3))
                } else {
                    ctx.rand(dt, sb, lo.max(0.25), hi)
                };
                let a = if matches!(bop, B::Equal | B::LessOrEqual | B::GreaterOrEqual) {
                    t(dt, sa, &ctx.ints(numel(sa), -3, 3))
                } else {
                    a
                };
                let n = node(op, 16, vec![a.clone(), b.clone()]);
                check(
                    ctx,
                    &format!("{op} {dt} {sa:?} {sb:?}"),
                    &n,
                    tolerance(dt),
                    |i, o| {
                        let x = binary::Operand {
                            ptr: i[0],
                            shape: sa,
                            dtype: dt,
                        };
                        let y = binary::Operand {
                            ptr: i[1],
                            shape: sb,
                            dtype: dt,
                        };
                        binary::binary(&ctx.lib, &ctx.stream, bop, x, y, o[0])
                    },
                )?;
            }
        }
        // PRelu with a per-channel slope [C, 1, 1]
        let (xs, ss): (&[usize], &[usize]) = (&[2, 3, 4, 5], &[3, 1, 1]);
        let n = node(
            "PRelu",
            16,
            vec![ctx.rand(dt, xs, -3.0, 3.0), ctx.rand(dt, ss, 0.1, 0.5)],
        );
        check(ctx, &format!("PRelu {dt}"), &n, tolerance(dt), |i, o| {
            let x = binary::Operand {
                ptr: i[0],
                shape: xs,
                dtype: dt,
            };
            let s = binary::Operand {
                ptr: i[1],
                shape: ss,
                dtype: dt,
            };
            binary::binary(&ctx.lib, &ctx.stream, B::PRelu, x, s, o[0])
        })?;
    }
    // Pow with an int64 exponent
    let (xs, es): (&[usize], &[usize]) = (&[4, 6], &[6]);
    let n = node(
        "Pow",
        15,
        vec![
            ctx.rand(DataType::F32, xs, 0.5, 2.0),
            t(DataType::I64, es, &ctx.ints(6, -3, 4)),
        ],
    );
    check(ctx, "Pow f32^i64", &n, 1e-5, |i, o| {
        let x = binary::Operand {
            ptr: i[0],
            shape: xs,
            dtype: DataType::F32,
        };
        let e = binary::Operand {
            ptr: i[1],
            shape: es,
            dtype: DataType::I64,
        };
        binary::binary(&ctx.lib, &ctx.stream, B::Pow, x, e, o[0])
    })
}

pub(crate) fn binary_int_and_logic(ctx: &Ctx) -> Result<()> {
    use binary::BinaryOp as B;
    let (sa, sb): (&[usize], &[usize]) = (&[3, 8], &[8]);
    for dt in [DataType::I64, DataType::I32] {
        for (op, bop) in [
            ("Add", B::Add),
            ("Sub", B::Sub),
            ("Mul", B::Mul),
            ("Div", B::Div),
            ("Max", B::Max),
            ("Less", B::Less),
        ] {
            // the divisor includes zeros (numpy: 0)
            let n = node(
                op,
                14,
                vec![
                    ctx.rand(dt, sa, -50.0, 50.0),
                    t(dt, sb, &ctx.ints(8, -3, 4)),
                ],
            );
            check(ctx, &format!("{op} {dt}"), &n, 0.0, |i, o| {
                let x = binary::Operand {
                    ptr: i[0],
                    shape: sa,
                    dtype: dt,
                };
                let y = binary::Operand {
                    ptr: i[1],
                    shape: sb,
                    dtype: dt,
                };
                binary::binary(&ctx.lib, &ctx.stream, bop, x, y, o[0])
            })?;
        }
    }
    for (op, bop) in [("And", B::And), ("Or", B::Or), ("Xor", B::Xor)] {
        let bt = DataType::Bool;
        let n = node(
            op,
            7,
            vec![ctx.rand(bt, sa, 0.0, 2.0), ctx.rand(bt, sb, 0.0, 2.0)],
        );
        check(ctx, op, &n, 0.0, |i, o| {
            let x = binary::Operand {
                ptr: i[0],
                shape: sa,
                dtype: bt,
            };
            let y = binary::Operand {
                ptr: i[1],
                shape: sb,
                dtype: bt,
            };
            binary::binary(&ctx.lib, &ctx.stream, bop, x, y, o[0])
        })?;
    }
    Ok(())
}

pub(crate) fn where_select(ctx: &Ctx) -> Result<()> {
    let (sc, sx, sy): (&[usize], &[usize], &[usize]) = (&[2, 1, 5], &[3, 5], &[2, 3, 1]);
    for dt in [DataType::F32, DataType::F16, DataType::I64] {
        let n = node(
            "Where",
            16,
            vec![
                ctx.rand(DataType::Bool, sc, 0.0, 2.0),
                ctx.rand(dt, sx, -9.0, 9.0),
                ctx.rand(dt, sy, -9.0, 9.0),
            ],
        );
        check(ctx, &format!("Where {dt}"), &n, 0.0, |i, o| {
            let c = binary::Operand {
                ptr: i[0],
                shape: sc,
                dtype: DataType::Bool,
            };
            let x = binary::Operand {
                ptr: i[1],
                shape: sx,
                dtype: dt,
            };
            let y = binary::Operand {
                ptr: i[2],
                shape: sy,
                dtype: dt,
            };
            binary::where_(&ctx.lib, &ctx.stream, c, x, y, o[0])
        })?;
    }
    Ok(())
}

pub(crate) fn cast_pairs(ctx: &Ctx) -> Result<()> {
    let dims = [4, 33];
    for from in cast::TYPES {
        for to in cast::TYPES {
            let x = if from.is_float() {
                ctx.rand(from, &dims, -300.0, 300.0)
            } else if from == DataType::Bool {
                ctx.rand(from, &dims, 0.0, 2.0)
            } else if from == DataType::U8 {
                ctx.rand(from, &dims, 0.0, 255.0)
            } else {
                ctx.rand(from, &dims, -120.0, 120.0)
            };
            let n = node("Cast", 21, vec![x]).attr("to", i64::from(to.onnx_code()));
            // f16 -> bf16 and the like round once: exact comparison is right for all pairs
            check(ctx, &format!("Cast {from} -> {to}"), &n, 0.0, |i, o| {
                cast::cast(&ctx.lib, &ctx.stream, from, to, i[0], o[0], numel(&dims))
            })?;
        }
    }
    Ok(())
}
