//! GPU tests through the whole engine (Builder → plan → Engine → `execute_host`) of the ops
//! whose support lives in the builder as much as in a kernel: variadic Sum/Min/Max/Mean with
//! 1, 3 and 4 broadcasting inputs (rewritten into binary steps), LayerNormalization's f32
//! Mean/InvStdDev (one left out, one read by another node), MaxPool's `Indices`, GatherND
//! with indices computed at run time, Resize (scales or sizes, nearest and linear) and
//! ConvTranspose (cuDNN backward data: strides, pads, output_padding, output_shape, groups,
//! dilations, bias). fp32, fp16 and bf16 engines (f32 I/O), compared with kiln-reference at
//! random shapes on random inputs.
//!
//! `execute_host` allocates the output buffers itself, so they cannot be poisoned here:
//! instead every case runs twice in one context on fresh inputs (the second run's outputs
//! and arena reuse the first run's cached blocks), so a step that writes nothing fails on the
//! first run's stale values. The kernels themselves are checked with poisoned outputs in
//! `indexing.rs` and the other kernel tests.

use kiln_core::{Engine as _, HostTensor, Precision};
use kiln_engine::{BuildConfig, Builder, Engine};
use kiln_onnx::{Graph, ValueInfo};

use super::*;

const PRECISIONS: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Bf16];

fn engine_tolerance(p: Precision, dtype: DataType) -> f64 {
    match (dtype.is_float(), p) {
        (false, _) => 0.0,
        (true, Precision::Fp32) => 1e-5,
        (true, _) => 1e-2,
    }
}

/// cuDNN's fp32 algorithms (FFT, Winograd) round differently from a direct sum: 1e-4, as the
/// end-to-end model tests allow.
fn conv_tolerance(p: Precision, dtype: DataType) -> f64 {
    match p {
        Precision::Fp32 => 1e-4,
        _ => engine_tolerance(p, dtype),
    }
}

/// A one-graph model written and loaded back (outputs typed by the loader's inference).
fn model(opset: i64, outputs: &[&str], build: impl FnOnce(&mut GraphBuilder)) -> Result<Graph> {
    let mut b = GraphBuilder::new("t").opset(opset);
    build(&mut b);
    for o in outputs {
        b.output_value(ValueInfo::unknown(*o));
    }
    Ok(b.build()?)
}

fn dims_of(d: &[usize]) -> Vec<Dim> {
    d.iter().map(|&v| Dim::Known(v)).collect()
}

/// Builds `graph` at `precision`, then runs it twice with inputs from `inputs` (fresh each
/// time, in the graph's input order) and compares every output with kiln-reference.
fn engine_case(
    ctx: &Ctx,
    what: &str,
    graph: &Graph,
    precision: Precision,
    tol: fn(Precision, DataType) -> f64,
    inputs: impl Fn(&Ctx) -> Vec<T>,
) -> Result<()> {
    let config = BuildConfig {
        precision,
        kernel_cache_dir: None,
        ..BuildConfig::default()
    };
    let what = format!("{what} [{}]", precision.name());
    let plan = Builder::new(&ctx.device)
        .build(graph, &config)
        .with_context(|| format!("{what}: build"))?;
    let engine = Engine::from_plan(&ctx.device, &plan)?;
    let mut ec = engine.clone().create_context()?;
    let reference = Interpreter::new(graph.clone())?;
    for run in 0..2 {
        let ins = inputs(ctx);
        ensure!(ins.len() == graph.inputs.len(), "{what}: input count");
        let mut host = Vec::new();
        let mut feed = HashMap::new();
        for (vi, x) in graph.inputs.iter().zip(&ins) {
            host.push(HostTensor {
                name: vi.name.clone(),
                dtype: x.dtype,
                dims: x.dims.clone(),
                data: x.bytes.clone(),
            });
            feed.insert(vi.name.clone(), to_value(x, &vi.name)?);
        }
        let mut want = reference.run(feed).context("reference run")?;
        let got = ec
            .execute_host(&host)
            .with_context(|| format!("{what}: run {run}"))?;
        ensure!(got.len() == graph.outputs.len(), "{what}: output count");
        for out in &got {
            let v = want.remove(&out.name).context("reference output missing")?;
            let w = T {
                dtype: v.dtype(),
                dims: v.shape().to_vec(),
                bytes: v.to_tensor(&out.name)?.as_bytes().to_vec(),
            };
            ensure!(
                out.dims == w.dims && out.dtype == w.dtype,
                "{what}: output {} is {} {:?}, want {} {:?}",
                out.name,
                out.dtype,
                out.dims,
                w.dtype,
                w.dims
            );
            compare(
                &format!("{what} run {run} output {}", out.name),
                &w,
                &out.data,
                tol(precision, w.dtype),
            )?;
        }
    }
    Ok(())
}

/// A random shape that broadcasts to `out`: a suffix of it, some dims set to 1.
fn broadcastable(ctx: &Ctx, out: &[usize]) -> Vec<usize> {
    let mut r = ctx.rng.borrow_mut();
    let rank = r.usize(1..=out.len());
    out[out.len() - rank..]
        .iter()
        .map(|&d| if r.u8(0..3) == 0 { 1 } else { d })
        .collect()
}

pub(crate) fn engine_variadic(ctx: &Ctx) -> Result<()> {
    for op in ["Sum", "Min", "Max", "Mean"] {
        for count in [1usize, 3, 4] {
            for (dt, precisions) in [
                (DataType::F32, &PRECISIONS[..]),
                (DataType::I64, &PRECISIONS[..2]),
            ] {
                let out: Vec<usize> = (0..3).map(|_| ctx.rng.borrow_mut().usize(2..=5)).collect();
                let mut shapes: Vec<Vec<usize>> =
                    (0..count).map(|_| broadcastable(ctx, &out)).collect();
                shapes[0] = out.clone();
                // With 4 inputs the third is a constant of the model (a weight).
                let konst = (count == 4).then(|| ctx.rand(dt, &shapes[2], -3.0, 3.0));
                let g = model(13, &["y"], |b| {
                    let vals: Vec<kiln_onnx::builder::Value> = shapes
                        .iter()
                        .enumerate()
                        .map(|(i, s)| match (&konst, i) {
                            (Some(c), 2) => b.initializer(
                                Tensor::from_bytes("w", c.dtype, c.dims.clone(), c.bytes.clone())
                                    .expect("constant"),
                            ),
                            _ => b.input(&format!("x{i}"), dt, &dims_of(s)),
                        })
                        .collect();
                    let refs: Vec<&kiln_onnx::builder::Value> = vals.iter().collect();
                    let _ = b.node(op, &refs).output_named("y");
                })?;
                let graph_inputs: Vec<Vec<usize>> = shapes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| konst.is_none() || *i != 2)
                    .map(|(_, s)| s.clone())
                    .collect();
                for &p in precisions {
                    engine_case(
                        ctx,
                        &format!("{op} {dt} {shapes:?}"),
                        &g,
                        p,
                        engine_tolerance,
                        |c| {
                            graph_inputs
                                .iter()
                                .map(|s| c.rand(dt, s, -9.0, 9.0))
                                .collect()
                        },
                    )?;
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn engine_layer_norm_statistics(ctx: &Ctx) -> Result<()> {
    for outputs in [["y", "mean", "inv"], ["y", "", "inv"], ["y", "mean", ""]] {
        let rank = ctx.rng.borrow_mut().usize(2..=4);
        let dims: Vec<usize> = (0..rank)
            .map(|_| ctx.rng.borrow_mut().usize(2..=9))
            .collect();
        let axis = ctx.rng.borrow_mut().usize(1..rank);
        let sdims = dims[axis..].to_vec();
        let (scale, bias) = (
            ctx.rand(DataType::F32, &sdims, 0.5, 1.5),
            ctx.rand(DataType::F32, &sdims, -0.5, 0.5),
        );
        let mut graph_outs = vec!["y", "mm"];
        graph_outs.extend(outputs[1..].iter().filter(|o| !o.is_empty()));
        let g = model(17, &graph_outs, |b| {
            let x = b.input("x", DataType::F32, &dims_of(&dims));
            let c = |name: &str, t: &T| {
                Tensor::from_bytes(name, t.dtype, t.dims.clone(), t.bytes.clone()).expect("const")
            };
            let s = b.initializer(c("s", &scale));
            let bi = b.initializer(c("bias", &bias));
            let o = b
                .node("LayerNormalization", &[&x, &s, &bi])
                .attr("axis", axis as i64)
                .attr("epsilon", 1e-5f32)
                .outputs_named(&outputs);
            let stat = if outputs[1].is_empty() { &o[2] } else { &o[1] };
            let _ = b.node("Mul", &[stat, stat]).output_named("mm");
        })?;
        for p in PRECISIONS {
            engine_case(
                ctx,
                &format!("LayerNorm {dims:?} axis {axis} {outputs:?}"),
                &g,
                p,
                engine_tolerance,
                |c| vec![c.rand(DataType::F32, &dims, -3.0, 5.0)],
            )?;
        }
    }
    Ok(())
}

/// Distinct integers per plane of `[.., plane]`, exact in f16 and bf16 (so every precision
/// picks the same maximum), in random order.
fn distinct_planes(ctx: &Ctx, dims: &[usize], plane: usize) -> T {
    let mut r = ctx.rng.borrow_mut();
    let mut v = Vec::new();
    for _ in 0..dims.iter().product::<usize>() / plane {
        let mut p: Vec<f64> = (-128..128).filter(|&x| x != 0).map(f64::from).collect();
        r.shuffle(&mut p);
        v.extend(&p[..plane]);
    }
    t(DataType::F32, dims, &v)
}

pub(crate) fn engine_max_pool_indices(ctx: &Ctx) -> Result<()> {
    for (spatial, order) in [(2usize, 0i64), (2, 1), (1, 0), (1, 1)] {
        let (n, c) = (ctx.rng.borrow_mut().usize(1..=2), 3);
        let sp: Vec<usize> = (0..spatial)
            .map(|_| ctx.rng.borrow_mut().usize(6..=12))
            .collect();
        let mut dims = vec![n, c];
        dims.extend(&sp);
        let kernel = vec![3i64; spatial];
        let g = model(12, &["y", "i"], |b| {
            let x = b.input("x", DataType::F32, &dims_of(&dims));
            let _ = b
                .node("MaxPool", &[&x])
                .attr("kernel_shape", kernel.clone())
                .attr("strides", vec![2i64; spatial])
                .attr("pads", vec![1i64; 2 * spatial])
                .attr("storage_order", order)
                .outputs_named(&["y", "i"]);
        })?;
        let plane: usize = sp.iter().product();
        for p in PRECISIONS {
            engine_case(
                ctx,
                &format!("MaxPool+Indices {dims:?} order {order}"),
                &g,
                p,
                engine_tolerance,
                |c| vec![distinct_planes(c, &dims, plane)],
            )?;
        }
    }
    Ok(())
}

pub(crate) fn engine_gather_nd(ctx: &Ctx) -> Result<()> {
    // (data dims, indices dims, batch_dims): BERT-like [batch, seq, hidden] picks too.
    let cases: [(Vec<usize>, Vec<usize>, i64); 4] = [
        (vec![3, 7, 16], vec![3, 1], 0),
        (vec![3, 7, 16], vec![3, 2], 0),
        (vec![3, 7, 16], vec![3, 4, 1], 1),
        (vec![4, 5, 6], vec![2, 3, 3], 0),
    ];
    for (data, idx, b) in cases {
        let g = model(13, &["y"], |bld| {
            let x = bld.input("x", DataType::F32, &dims_of(&data));
            let i = bld.input("i", DataType::I64, &dims_of(&idx));
            let _ = bld
                .node("GatherND", &[&x, &i])
                .attr("batch_dims", b)
                .output_named("y");
        })?;
        let k = idx[idx.len() - 1];
        let addressed = data[b as usize..b as usize + k].to_vec();
        let tuples: usize = idx[..idx.len() - 1].iter().product();
        for p in PRECISIONS {
            engine_case(
                ctx,
                &format!("GatherND {data:?} {idx:?} b {b}"),
                &g,
                p,
                engine_tolerance,
                |c| {
                    vec![
                        c.rand(DataType::F32, &data, -9.0, 9.0),
                        t(DataType::I64, &idx, &c.index_tuples(tuples, &addressed)),
                    ]
                },
            )?;
        }
    }
    Ok(())
}

pub(crate) fn engine_resize(ctx: &Ctx) -> Result<()> {
    // (mode, coordinate mode, nearest mode, scales or sizes of the two spatial axes)
    let cases: [(&str, &str, &str, Result<[f64; 2], [usize; 2]>); 6] = [
        ("nearest", "asymmetric", "floor", Ok([2.0, 2.0])),
        ("nearest", "half_pixel", "round_prefer_ceil", Ok([1.5, 0.5])),
        ("linear", "half_pixel", "round_prefer_floor", Ok([2.0, 1.5])),
        ("linear", "align_corners", "round_prefer_floor", Err([9, 4])),
        (
            "linear",
            "pytorch_half_pixel",
            "round_prefer_floor",
            Ok([0.6, 0.5]),
        ),
        ("nearest", "half_pixel", "round_prefer_floor", Err([3, 17])),
    ];
    for (mode, coord, nearest, resize) in cases {
        let dims = [ctx.dim(1, 2), ctx.dim(1, 3), ctx.dim(4, 9), ctx.dim(4, 9)];
        let g = model(19, &["y"], |b| {
            let x = b.input("x", DataType::F32, &dims_of(&dims));
            let roi =
                b.initializer(Tensor::from_vec("roi", vec![0], Vec::<f32>::new()).expect("roi"));
            let ins = match resize {
                Ok(s) => {
                    let sc = vec![1.0f32, 1.0, s[0] as f32, s[1] as f32];
                    vec![
                        x,
                        roi,
                        b.initializer(Tensor::from_vec("sc", vec![4], sc).expect("sc")),
                    ]
                }
                Err(z) => {
                    let sz = vec![dims[0] as i64, dims[1] as i64, z[0] as i64, z[1] as i64];
                    let none = kiln_onnx::builder::Value::absent();
                    let sizes = b.initializer(Tensor::from_vec("sz", vec![4], sz).expect("sz"));
                    vec![x, roi, none, sizes]
                }
            };
            let refs: Vec<&kiln_onnx::builder::Value> = ins.iter().collect();
            let _ = b
                .node("Resize", &refs)
                .attr("mode", mode)
                .attr("coordinate_transformation_mode", coord)
                .attr("nearest_mode", nearest)
                .output_named("y");
        })?;
        for p in PRECISIONS {
            engine_case(
                ctx,
                &format!("Resize {mode} {coord} {nearest} {dims:?} {resize:?}"),
                &g,
                p,
                engine_tolerance,
                |c| vec![c.rand(DataType::F32, &dims, -4.0, 4.0)],
            )?;
        }
    }
    Ok(())
}

pub(crate) fn engine_conv_transpose(ctx: &Ctx) -> Result<()> {
    let ints = |v: &[i64]| AttrValue::Ints(v.to_vec());
    // (input, weight [C, M / group, kh, kw], attributes)
    let cases: Vec<(Vec<usize>, Vec<usize>, Vec<(&str, AttrValue)>)> = vec![
        (vec![2, 4, 5, 6], vec![4, 3, 3, 3], vec![]),
        (
            vec![1, 8, 7, 9],
            vec![8, 4, 3, 3],
            vec![
                ("strides", ints(&[2, 2])),
                ("pads", ints(&[1, 1, 1, 1])),
                ("output_padding", ints(&[1, 0])),
            ],
        ),
        (
            vec![2, 4, 5, 6],
            vec![4, 2, 3, 3],
            vec![
                ("strides", ints(&[2, 2])),
                ("output_padding", ints(&[1, 1])),
                ("output_shape", ints(&[10, 12])),
                ("group", AttrValue::Int(2)),
            ],
        ),
        (
            vec![2, 6, 11],
            vec![6, 4, 3],
            vec![("strides", ints(&[3])), ("dilations", ints(&[2]))],
        ),
    ];
    for (xd, wd, attrs) in cases {
        let group = attrs
            .iter()
            .find_map(|(k, v)| match (k, v) {
                (&"group", AttrValue::Int(g)) => Some(*g as usize),
                _ => None,
            })
            .unwrap_or(1);
        let (w, bias) = (
            ctx.rand(DataType::F32, &wd, -0.5, 0.5),
            ctx.rand(DataType::F32, &[wd[1] * group], -0.5, 0.5),
        );
        let g = model(17, &["y"], |b| {
            let x = b.input("x", DataType::F32, &dims_of(&xd));
            let c = |name: &str, t: &T| {
                Tensor::from_bytes(name, t.dtype, t.dims.clone(), t.bytes.clone()).expect("const")
            };
            let wv = b.initializer(c("w", &w));
            let bv = b.initializer(c("b", &bias));
            let mut n = b.node("ConvTranspose", &[&x, &wv, &bv]);
            for (k, v) in &attrs {
                n = n.attr(k, v.clone());
            }
            let _ = n.output_named("y");
        })?;
        for p in PRECISIONS {
            engine_case(
                ctx,
                &format!("ConvTranspose x{xd:?} w{wd:?} {attrs:?}"),
                &g,
                p,
                conv_tolerance,
                |c| vec![c.rand(DataType::F32, &xd, -2.0, 2.0)],
            )?;
        }
    }
    Ok(())
}
