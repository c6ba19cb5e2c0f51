//! GPU kernel tests: reductions, softmax, normalisation, pooling, data movement, Resize.

use super::*;

pub(crate) fn reductions(ctx: &Ctx) -> Result<()> {
    use reduce::ReduceOp as R;
    let ops = [
        ("ReduceSum", R::Sum),
        ("ReduceMean", R::Mean),
        ("ReduceMax", R::Max),
        ("ReduceMin", R::Min),
        ("ReduceProd", R::Prod),
        ("ReduceL1", R::L1),
        ("ReduceL2", R::L2),
        ("ReduceSumSquare", R::SumSquare),
        ("ReduceLogSum", R::LogSum),
        ("ReduceLogSumExp", R::LogSumExp),
    ];
    let dims = [3, 4, 5, 6];
    let axes_sets: [&[usize]; 4] = [&[3], &[1], &[0, 2], &[0, 1, 2, 3]];
    for dt in FLOATS {
        for (op, rop) in ops {
            for axes in axes_sets {
                let (lo, hi) = if rop == R::Prod {
                    (0.8, 1.25)
                } else if rop == R::LogSum {
                    (0.1, 2.0)
                } else {
                    (-2.0, 2.0)
                };
                let ax: Vec<f64> = axes.iter().map(|&a| a as f64).collect();
                let n = node(op, 18, vec![ctx.rand(dt, &dims, lo, hi)])
                    .konst(t(DataType::I64, &[axes.len()], &ax))
                    .attr("keepdims", 0i64);
                check(
                    ctx,
                    &format!("{op} {dt} {axes:?}"),
                    &n,
                    tolerance(dt),
                    |i, o| reduce::reduce(&ctx.lib, &ctx.stream, rop, dt, &dims, axes, i[0], o[0]),
                )?;
            }
        }
    }
    Ok(())
}

pub(crate) fn argmax_argmin(ctx: &Ctx) -> Result<()> {
    let dims = [3, 40, 5];
    for dt in FLOATS {
        for (op, max) in [("ArgMax", true), ("ArgMin", false)] {
            for axis in 0..3 {
                for last in [false, true] {
                    // small integers: many ties
                    let x = t(dt, &dims, &ctx.ints(numel(&dims), -4, 5));
                    let n = node(op, 13, vec![x])
                        .attr("axis", axis as i64)
                        .attr("select_last_index", i64::from(last));
                    let geo = layout::split_at_axis(&dims, axis);
                    check(
                        ctx,
                        &format!("{op} {dt} axis {axis} last {last}"),
                        &n,
                        0.0,
                        |i, o| {
                            reduce::arg_extreme(
                                &ctx.lib,
                                &ctx.stream,
                                dt,
                                max,
                                last,
                                geo,
                                i[0],
                                o[0],
                            )
                        },
                    )?;
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn softmax_logsoftmax(ctx: &Ctx) -> Result<()> {
    let dims = [2, 3, 50, 7];
    for dt in FLOATS {
        for (op, log) in [("Softmax", false), ("LogSoftmax", true)] {
            for axis in [3usize, 2, 1] {
                let n =
                    node(op, 13, vec![ctx.rand(dt, &dims, -6.0, 6.0)]).attr("axis", axis as i64);
                let geo = softmax::softmax_geometry(&dims, axis, false)?;
                check(
                    ctx,
                    &format!("{op} {dt} axis {axis}"),
                    &n,
                    tolerance(dt),
                    |i, o| softmax::softmax(&ctx.lib, &ctx.stream, dt, geo, log, i[0], o[0]),
                )?;
            }
            // last-axis rows at the one-warp-per-row kernel's edges (and one past it)
            for rows in [[3usize, 1024], [33, 128], [2, 1025], [4, 1]] {
                let n = node(op, 13, vec![ctx.rand(dt, &rows, -6.0, 6.0)]).attr("axis", 1i64);
                let geo = softmax::softmax_geometry(&rows, 1, false)?;
                check(
                    ctx,
                    &format!("{op} {dt} rows {rows:?}"),
                    &n,
                    tolerance(dt),
                    |i, o| softmax::softmax(&ctx.lib, &ctx.stream, dt, geo, log, i[0], o[0]),
                )?;
            }
            // opset 11: coerced to 2-D at axis 1
            let n = node(op, 11, vec![ctx.rand(dt, &dims, -6.0, 6.0)]).attr("axis", 1i64);
            let geo = softmax::softmax_geometry(&dims, 1, true)?;
            check(ctx, &format!("{op}-11 {dt}"), &n, tolerance(dt), |i, o| {
                softmax::softmax(&ctx.lib, &ctx.stream, dt, geo, log, i[0], o[0])
            })?;
        }
    }
    Ok(())
}

pub(crate) fn layer_norm(ctx: &Ctx) -> Result<()> {
    for dt in FLOATS {
        for (dims, axis) in [
            (vec![4usize, 7, 96], 2usize),
            (vec![3, 5, 8, 6], 2),
            (vec![2, 1000], 1),
        ] {
            let rows: usize = dims[..axis].iter().product();
            let cols: usize = dims[axis..].iter().product();
            let sdims = dims[axis..].to_vec();
            let n = node(
                "LayerNormalization",
                17,
                vec![ctx.rand(dt, &dims, -3.0, 5.0)],
            )
            .konst(ctx.rand(dt, &sdims, 0.5, 1.5))
            .konst(ctx.rand(dt, &sdims, -0.5, 0.5))
            .attr("axis", axis as i64)
            .attr("epsilon", 1e-5f32);
            let mut n = n;
            n.outputs = 3;
            check(
                ctx,
                &format!("LayerNorm {dt} {dims:?}"),
                &n,
                tolerance(dt),
                |i, o| {
                    let io = norm::LayerNormIo {
                        x: i[0],
                        scale: i[1],
                        bias: i[2],
                        y: o[0],
                        mean: o[1],
                        inv_std: o[2],
                    };
                    norm::layer_norm(
                        &ctx.lib,
                        &ctx.stream,
                        dt,
                        rows,
                        cols,
                        (cols, cols),
                        1e-5,
                        io,
                    )
                },
            )?;
        }
    }
    Ok(())
}

pub(crate) fn group_and_instance_norm(ctx: &Ctx) -> Result<()> {
    let dims = [2usize, 6, 5, 7];
    for dt in FLOATS {
        // opset 18: scale and bias per group
        let n = node(
            "GroupNormalization",
            18,
            vec![ctx.rand(dt, &dims, -2.0, 4.0)],
        )
        .konst(ctx.rand(dt, &[3], 0.5, 1.5))
        .konst(ctx.rand(dt, &[3], -0.5, 0.5))
        .attr("num_groups", 3i64);
        check(
            ctx,
            &format!("GroupNorm-18 {dt}"),
            &n,
            tolerance(dt),
            |i, o| {
                norm::group_norm(
                    &ctx.lib,
                    &ctx.stream,
                    dt,
                    (2, 6, 35),
                    3,
                    true,
                    1e-5,
                    (i[0], i[1], i[2], o[0]),
                )
            },
        )?;
        // opset 21: per channel
        let n = node(
            "GroupNormalization",
            21,
            vec![ctx.rand(dt, &dims, -2.0, 4.0)],
        )
        .konst(ctx.rand(dt, &[6], 0.5, 1.5))
        .konst(ctx.rand(dt, &[6], -0.5, 0.5))
        .attr("num_groups", 2i64);
        check(
            ctx,
            &format!("GroupNorm-21 {dt}"),
            &n,
            tolerance(dt),
            |i, o| {
                norm::group_norm(
                    &ctx.lib,
                    &ctx.stream,
                    dt,
                    (2, 6, 35),
                    2,
                    false,
                    1e-5,
                    (i[0], i[1], i[2], o[0]),
                )
            },
        )?;
        let n = node(
            "InstanceNormalization",
            22,
            vec![ctx.rand(dt, &dims, -2.0, 4.0)],
        )
        .konst(ctx.rand(dt, &[6], 0.5, 1.5))
        .konst(ctx.rand(dt, &[6], -0.5, 0.5));
        check(
            ctx,
            &format!("InstanceNorm {dt}"),
            &n,
            tolerance(dt),
            |i, o| {
                norm::group_norm(
                    &ctx.lib,
                    &ctx.stream,
                    dt,
                    (2, 6, 35),
                    6,
                    false,
                    1e-5,
                    (i[0], i[1], i[2], o[0]),
                )
            },
        )?;
    }
    Ok(())
}

pub(crate) fn pools(ctx: &Ctx) -> Result<()> {
    let dims = [2usize, 3, 11, 9];
    // (kernel, strides, pads [t, l, b, r], dilations, ceil)
    let cfgs: [([usize; 2], [usize; 2], [usize; 4], [usize; 2], bool); 4] = [
        ([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], false),
        ([2, 2], [2, 2], [0, 0, 0, 0], [1, 1], true),
        ([3, 2], [1, 2], [1, 0, 2, 1], [2, 1], false),
        ([3, 3], [2, 2], [0, 1, 1, 0], [1, 1], true),
    ];
    for dt in FLOATS {
        for (k, s, p, d, ceil) in cfgs {
            let out = [
                pool::Window2d::output_len(dims[2], k[0], s[0], d[0], (p[0], p[2]), ceil)
                    .context("size")?,
                pool::Window2d::output_len(dims[3], k[1], s[1], d[1], (p[1], p[3]), ceil)
                    .context("size")?,
            ];
            let w = pool::Window2d {
                input: [dims[2], dims[3]],
                output: out,
                kernel: k,
                strides: s,
                dilations: d,
                pad_begin: [p[0], p[1]],
                pad_end: [p[2], p[3]],
            };
            let attrs = |n: Node<'static>| {
                n.attr("kernel_shape", vec![k[0] as i64, k[1] as i64])
                    .attr("strides", vec![s[0] as i64, s[1] as i64])
                    .attr("pads", p.iter().map(|&v| v as i64).collect::<Vec<_>>())
                    .attr("dilations", vec![d[0] as i64, d[1] as i64])
                    .attr("ceil_mode", i64::from(ceil))
            };
            let n = attrs(node("MaxPool", 12, vec![ctx.rand(dt, &dims, -5.0, 5.0)]));
            check(ctx, &format!("MaxPool {dt} {w:?}"), &n, 0.0, |i, o| {
                pool::pool2d(
                    &ctx.lib,
                    &ctx.stream,
                    dt,
                    pool::PoolKind::Max,
                    6,
                    &w,
                    i[0],
                    o[0],
                )
            })?;
            for include in [false, true] {
                let n = attrs(node(
                    "AveragePool",
                    19,
                    vec![ctx.rand(dt, &dims, -5.0, 5.0)],
                ))
                .attr("count_include_pad", i64::from(include));
                let kind = pool::PoolKind::Average {
                    count_include_pad: include,
                };
                check(
                    ctx,
                    &format!("AveragePool {dt} {w:?} {include}"),
                    &n,
                    tolerance(dt),
                    |i, o| pool::pool2d(&ctx.lib, &ctx.stream, dt, kind, 6, &w, i[0], o[0]),
                )?;
            }
        }
        for (op, max) in [("GlobalMaxPool", true), ("GlobalAveragePool", false)] {
            let n = node(op, 22, vec![ctx.rand(dt, &dims, -5.0, 5.0)]);
            check(ctx, &format!("{op} {dt}"), &n, tolerance(dt), |i, o| {
                pool::global_pool(&ctx.lib, &ctx.stream, dt, max, 6, 99, i[0], o[0])
            })?;
        }
    }
    Ok(())
}

pub(crate) fn transpose_slice_expand_tile(ctx: &Ctx) -> Result<()> {
    let dims = [2usize, 3, 4, 5];
    for dt in [DataType::F32, DataType::F16, DataType::I64, DataType::Bool] {
        let (lo, hi) = if dt == DataType::Bool {
            (0.0, 2.0)
        } else {
            (-9.0, 9.0)
        };
        for perm in [vec![0usize, 2, 3, 1], vec![3, 2, 1, 0], vec![1, 0, 2, 3]] {
            let n = node("Transpose", 13, vec![ctx.rand(dt, &dims, lo, hi)])
                .attr("perm", perm.iter().map(|&v| v as i64).collect::<Vec<_>>());
            check(ctx, &format!("Transpose {dt} {perm:?}"), &n, 0.0, |i, o| {
                movement::transpose(&ctx.lib, &ctx.stream, dt, &dims, &perm, i[0], o[0])
            })?;
        }
        // Slice with steps, negative ones and clamped ends
        let (starts, ends, steps) = ([1i64, -1, 0, 4], [2i64, -100, 4, 0], [1i64, -2, 3, -1]);
        let mut st = vec![];
        let mut sp = vec![];
        let mut os = vec![];
        for a in 0..4 {
            let (s, len) = movement::slice_axis(dims[a], starts[a], ends[a], steps[a])?;
            st.push(s);
            sp.push(steps[a]);
            os.push(len);
        }
        let v = |x: &[i64]| {
            t(
                DataType::I64,
                &[4],
                &x.iter().map(|&a| a as f64).collect::<Vec<_>>(),
            )
        };
        let n = node("Slice", 13, vec![ctx.rand(dt, &dims, lo, hi)])
            .konst(v(&starts))
            .konst(v(&ends))
            .konst(v(&[0, 1, 2, 3]))
            .konst(v(&steps));
        check(ctx, &format!("Slice {dt}"), &n, 0.0, |i, o| {
            movement::slice(&ctx.lib, &ctx.stream, dt, &dims, &st, &sp, &os, i[0], o[0])
        })?;
        let (ins, outs) = ([3usize, 1, 5], [2usize, 3, 4, 5]);
        let n = node("Expand", 13, vec![ctx.rand(dt, &ins, lo, hi)]).konst(t(
            DataType::I64,
            &[4],
            &[2.0, 3.0, 4.0, 5.0],
        ));
        check(ctx, &format!("Expand {dt}"), &n, 0.0, |i, o| {
            movement::expand(&ctx.lib, &ctx.stream, dt, &ins, &outs, i[0], o[0])
        })?;
        let (ins, reps) = ([2usize, 3, 4], [2usize, 1, 3]);
        let n = node("Tile", 13, vec![ctx.rand(dt, &ins, lo, hi)]).konst(t(
            DataType::I64,
            &[3],
            &[2.0, 1.0, 3.0],
        ));
        check(ctx, &format!("Tile {dt}"), &n, 0.0, |i, o| {
            movement::tile(&ctx.lib, &ctx.stream, dt, &ins, &reps, i[0], o[0])
        })?;
    }
    Ok(())
}

pub(crate) fn concat_split(ctx: &Ctx) -> Result<()> {
    for dt in [DataType::F32, DataType::BF16, DataType::I32] {
        for axis in 0..3usize {
            let mut shapes = vec![vec![2usize, 3, 4], vec![2, 3, 4], vec![2, 3, 4]];
            shapes[1][axis] = 5;
            shapes[2][axis] = 1;
            let inputs: Vec<T> = shapes.iter().map(|s| ctx.rand(dt, s, -9.0, 9.0)).collect();
            let n = node("Concat", 13, inputs).attr("axis", axis as i64);
            check(ctx, &format!("Concat {dt} axis {axis}"), &n, 0.0, |i, o| {
                let ins: Vec<(DevicePtr, &[usize])> = i
                    .iter()
                    .zip(&shapes)
                    .map(|(p, s)| (*p, s.as_slice()))
                    .collect();
                movement::concat(&ctx.lib, &ctx.stream, dt, &ins, axis, o[0])
            })?;
            let mut whole = vec![2usize, 3, 4];
            whole[axis] = 7;
            let sizes = [2usize, 4, 1];
            let mut n = node("Split", 13, vec![ctx.rand(dt, &whole, -9.0, 9.0)])
                .konst(t(DataType::I64, &[3], &[2.0, 4.0, 1.0]))
                .attr("axis", axis as i64);
            n.outputs = 3;
            check(ctx, &format!("Split {dt} axis {axis}"), &n, 0.0, |i, o| {
                movement::split(&ctx.lib, &ctx.stream, dt, &whole, axis, &sizes, i[0], o)
            })?;
        }
    }
    Ok(())
}

pub(crate) fn gather_axis(ctx: &Ctx) -> Result<()> {
    let dims = [4usize, 6, 5];
    for dt in [DataType::F32, DataType::F16, DataType::I64] {
        for axis in 0..3usize {
            for it in [DataType::I64, DataType::I32] {
                let len = dims[axis] as i64;
                let idx = ctx.ints(6, -len, len);
                let n = node("Gather", 13, vec![ctx.rand(dt, &dims, -9.0, 9.0)])
                    .konst(t(it, &[2, 3], &idx))
                    .attr("axis", axis as i64);
                let geo = layout::split_at_axis(&dims, axis);
                check(
                    ctx,
                    &format!("Gather {dt} axis {axis} {it}"),
                    &n,
                    0.0,
                    |i, o| gather::gather(&ctx.lib, &ctx.stream, dt, it, geo, 6, i[0], i[1], o[0]),
                )?;
            }
        }
    }
    Ok(())
}

pub(crate) fn pad_modes(ctx: &Ctx) -> Result<()> {
    let dims = [3usize, 4, 5];
    let pads = [1i64, -1, 7, 2, 0, 6];
    for dt in [DataType::F32, DataType::F16, DataType::I64] {
        for (name, mode) in [
            ("constant", pad::PadMode::Constant),
            ("reflect", pad::PadMode::Reflect),
            ("edge", pad::PadMode::Edge),
            ("wrap", pad::PadMode::Wrap),
        ] {
            let fill = t(dt, &[], &[2.5]);
            let n = node("Pad", 19, vec![ctx.rand(dt, &dims, -9.0, 9.0)])
                .konst(t(DataType::I64, &[6], &pads.map(|p| p as f64)))
                .konst(fill.clone())
                .attr("mode", name);
            check(ctx, &format!("Pad {dt} {name}"), &n, 0.0, |i, o| {
                pad::pad(
                    &ctx.lib,
                    &ctx.stream,
                    dt,
                    &dims,
                    &pads,
                    mode,
                    &fill.bytes,
                    i[0],
                    o[0],
                )
            })?;
        }
    }
    Ok(())
}

pub(crate) fn resize_modes(ctx: &Ctx) -> Result<()> {
    use resize::{CoordMode as C, NearestMode as N, ResizeMode as M};
    let dims = [1usize, 2, 5, 7];
    let coords = [
        ("half_pixel", C::HalfPixel),
        ("pytorch_half_pixel", C::PytorchHalfPixel),
        ("align_corners", C::AlignCorners),
        ("asymmetric", C::Asymmetric),
    ];
    let nearests = [
        ("round_prefer_floor", N::RoundPreferFloor),
        ("round_prefer_ceil", N::RoundPreferCeil),
        ("floor", N::Floor),
        ("ceil", N::Ceil),
    ];
    for dt in FLOATS {
        for scales in [[1.0f64, 1.0, 2.0, 1.5], [1.0, 1.0, 0.6, 0.5]] {
            let out: Vec<usize> = dims
                .iter()
                .zip(&scales)
                .map(|(&d, &s)| (d as f64 * s).floor() as usize)
                .collect();
            for (cname, coord) in coords {
                for (mname, mode) in [("nearest", M::Nearest), ("linear", M::Linear)] {
                    for (nname, nearest) in
                        nearests.iter().take(if mode == M::Nearest { 4 } else { 1 })
                    {
                        let x = ctx.rand(dt, &dims, -4.0, 4.0);
                        let n = node("Resize", 19, vec![x])
                            .konst(t(DataType::F32, &[0], &[]))
                            .konst(t(DataType::F32, &[4], &scales))
                            .attr("mode", mname)
                            .attr("coordinate_transformation_mode", cname)
                            .attr("nearest_mode", *nname);
                        let st = resize::ResizeSettings {
                            mode,
                            coord,
                            nearest: *nearest,
                            exclude_outside: false,
                        };
                        // scales go through f32 in the model, so give the kernel the same values
                        let sc: Vec<f64> = scales.iter().map(|&s| f64::from(s as f32)).collect();
                        check(
                            ctx,
                            &format!("Resize {dt} {mname} {cname} {nname} {scales:?}"),
                            &n,
                            tolerance(dt),
                            |i, o| {
                                resize::resize(
                                    &ctx.lib,
                                    &ctx.stream,
                                    dt,
                                    st,
                                    &dims,
                                    &out,
                                    &sc,
                                    i[0],
                                    o[0],
                                )
                            },
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}
