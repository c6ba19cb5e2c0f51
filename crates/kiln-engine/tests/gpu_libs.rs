//! GPU tests of the library kernels (`harness = false`): cuBLASLt GEMM / MatMul and cuDNN
//! Conv / ConvTranspose against kiln-reference, on random shapes and fresh random data (never
//! zeros), outputs poisoned with NaN before every run, in fp32, tf32, fp16 and bf16.
//!
//! Without a CUDA device every test is reported as skipped and the run succeeds; set
//! `KILN_GPU_REQUIRED=1` to make a missing device a failure (use it on GPU machines). An
//! optional argument filters tests by substring. Run: `KILN_GPU_REQUIRED=1 cargo test -p
//! kiln-engine --release --test gpu_libs`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail, ensure};
use half::{bf16, f16};
use kiln_core::{DevicePtr, Precision};
use kiln_cuda::{Device, DeviceAllocator, DeviceBuffer, DeviceMemory, Stream, copy};
use kiln_engine::kernels::conv::{
    ConvArgs, ConvDesc, ConvLayout, Dnn, kcrs_to_krsc, nchw_to_nhwc, nhwc_to_nchw,
};
use kiln_engine::kernels::gemm::{Blas, Epilogue, GemmArgs, GemmDesc, MathMode, matmul_plan};
use kiln_onnx::{AttrValue, Attribute, Node, Tensor};
use kiln_reference::Value;
use kiln_reference::ops::{OpCtx, lookup};

struct Ctx {
    alloc: DeviceAllocator,
    stream: Arc<Stream>,
    blas: Arc<Blas>,
    dnn: Arc<Dnn>,
}

type TestFn = fn(&Ctx) -> Result<()>;

const TESTS: &[(&str, TestFn)] = &[
    ("gemm_all_precisions_transposes_epilogues", gemm_cases),
    ("gemm_beta_c_and_padded_leading_dims", gemm_beta_c),
    ("matmul_batched_broadcast", matmul_cases),
    ("conv_forward_all_precisions_layouts", conv_cases),
    ("conv_fused_bias_relu_residual", conv_fused),
    ("conv_transpose", conv_transpose_cases),
];

const MODES: [MathMode; 4] = [
    MathMode::Fp32,
    MathMode::Tf32,
    MathMode::Fp16,
    MathMode::Bf16,
];
const WORKSPACE: usize = 32 << 20;

fn main() -> ExitCode {
    kiln_cuda::gpu_test::run(
        TESTS,
        || setup().map_err(|reason| format!("no CUDA device, cuBLASLt or cuDNN: {reason:#}")),
        |_| {},
    )
}

fn setup() -> Result<Ctx> {
    let device = Device::open(0)?;
    let stream = Stream::new(&device)?;
    let blas = Blas::new(&device).context("cuBLASLt")?;
    let dnn = Dnn::new(&device).context("cuDNN")?;
    println!(
        "{:?}; cuBLASLt {}, cuDNN {}",
        device.info(),
        blas.version(),
        dnn.version()
    );
    Ok(Ctx {
        alloc: DeviceAllocator::new(&device),
        stream,
        blas,
        dnn,
    })
}

fn precision(m: MathMode) -> Precision {
    match m {
        MathMode::Fp32 => Precision::Fp32,
        MathMode::Tf32 => Precision::Tf32,
        MathMode::Fp16 => Precision::Fp16,
        MathMode::Bf16 => Precision::Bf16,
    }
}

/// Random values in ±[0.25, 1.25), rounded to the storage type (so the reference sees exactly
/// what the GPU reads).
fn random(n: usize, rng: &mut fastrand::Rng, m: MathMode) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = 0.25 + rng.f32();
            let v = if rng.bool() { v } else { -v };
            match m {
                MathMode::Fp16 => f16::from_f32(v).to_f32(),
                MathMode::Bf16 => bf16::from_f32(v).to_f32(),
                _ => v,
            }
        })
        .collect()
}

fn to_bytes(v: &[f32], m: MathMode) -> Vec<u8> {
    match m {
        MathMode::Fp16 => v
            .iter()
            .flat_map(|x| f16::from_f32(*x).to_le_bytes())
            .collect(),
        MathMode::Bf16 => v
            .iter()
            .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
            .collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn from_bytes(b: &[u8], m: MathMode) -> Vec<f32> {
    match m {
        MathMode::Fp16 => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        MathMode::Bf16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

fn upload(ctx: &Ctx, v: &[f32], m: MathMode) -> Result<DeviceBuffer> {
    let bytes = to_bytes(v, m);
    let mut buf = ctx.alloc.alloc(bytes.len().max(1), &ctx.stream)?;
    copy::htod(&ctx.stream, &bytes, &mut buf)?;
    Ok(buf)
}

/// A buffer of `n` NaNs (all bits set is a NaN in f32, f16 and bf16).
fn poisoned(ctx: &Ctx, n: usize, m: MathMode) -> Result<DeviceBuffer> {
    let bytes = vec![0xFFu8; n * m.elem_bytes()];
    let mut buf = ctx.alloc.alloc(bytes.len().max(1), &ctx.stream)?;
    copy::htod(&ctx.stream, &bytes, &mut buf)?;
    Ok(buf)
}

fn download(ctx: &Ctx, buf: &DeviceBuffer, n: usize, m: MathMode) -> Result<Vec<f32>> {
    let mut bytes = vec![0u8; n * m.elem_bytes()];
    copy::dtoh(&ctx.stream, buf, &mut bytes)?;
    Ok(from_bytes(&bytes, m))
}

fn dp(b: &DeviceBuffer) -> DevicePtr {
    DevicePtr(b.device_ptr())
}

/// Relative L2 error within the precision's tolerance; any NaN fails.
fn check(got: &[f32], want: &[f64], m: MathMode, what: &str) -> Result<()> {
    ensure!(
        got.len() == want.len(),
        "{what}: {} values, want {}",
        got.len(),
        want.len()
    );
    if let Some(i) = got.iter().position(|v| !v.is_finite()) {
        bail!(
            "{what}: element {i} is {} (output not fully written?)",
            got[i]
        );
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        num += (*g as f64 - w).powi(2);
        den += w * w;
    }
    let rel = (num / den.max(1e-30)).sqrt();
    let tol = precision(m).rel_l2_tolerance();
    ensure!(rel <= tol, "{what}: rel-L2 {rel:.3e} > {tol:.0e}");
    Ok(())
}

/// Runs reference op `op` (opset 17) on f32 inputs; attributes are ints, int lists or floats.
fn reference(op: &str, inputs: &[(&[usize], &[f32])], attrs: Vec<Attribute>) -> Result<Vec<f64>> {
    let node = Node {
        name: format!("gpu_libs_{op}"),
        op_type: op.into(),
        attributes: attrs,
        ..Node::default()
    };
    let values = inputs
        .iter()
        .map(|(d, v)| {
            Value::from_tensor(&Tensor::from_vec("x", d.to_vec(), v.to_vec())?).map_err(Into::into)
        })
        .collect::<Result<Vec<_>>>()?;
    let f = lookup("", op).context("reference op")?;
    let out = f(&OpCtx::new(&node, 17, values.iter().map(Some).collect()))?;
    Ok(out[0].to_f64_vec())
}

fn ints(name: &str, v: &[usize]) -> Attribute {
    Attribute::new(name, AttrValue::Ints(v.iter().map(|&x| x as i64).collect()))
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

fn run_gemm(
    ctx: &Ctx,
    desc: &GemmDesc,
    a: &[f32],
    b: &[f32],
    c: Option<&[f32]>,
    bias: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let m = desc.math;
    let (_, _, sc) = desc.spans()?;
    let tactic = ctx.blas.select(desc, WORKSPACE)?;
    ctx.blas.check(desc, &tactic)?;
    let (da, db) = (upload(ctx, a, m)?, upload(ctx, b, m)?);
    let dc = c.map(|c| upload(ctx, c, m)).transpose()?;
    let dbias = bias.map(|v| upload(ctx, v, m)).transpose()?;
    let d = poisoned(ctx, sc, m)?;
    let ws = ctx.alloc.alloc(tactic.workspace.max(256), &ctx.stream)?;
    let args = GemmArgs {
        a: dp(&da),
        b: dp(&db),
        c: dc.as_ref().map(dp),
        d: dp(&d),
        bias: dbias.as_ref().map(dp),
        workspace: dp(&ws),
        workspace_bytes: tactic.workspace.max(256),
    };
    ctx.blas.enqueue(&ctx.stream, desc, &tactic, &args)?;
    ctx.stream.synchronize()?;
    download(ctx, &d, sc, m)
}

fn gemm_cases(ctx: &Ctx) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(11);
    let epilogues = [
        Epilogue::None,
        Epilogue::Bias,
        Epilogue::BiasRelu,
        Epilogue::Relu,
        Epilogue::BiasGeluTanh,
    ];
    for m in MODES {
        for (i, (ta, tb)) in [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .enumerate()
        {
            let (mm, n, k) = (rng.usize(1..70), rng.usize(1..90), rng.usize(1..130));
            let epi = epilogues[(i + m as usize) % epilogues.len()];
            let mut desc = GemmDesc::new(m, mm, n, k).transposed(ta, tb);
            desc.epilogue = epi;
            desc.alpha = 0.75;
            let a_dims = if ta { [k, mm] } else { [mm, k] };
            let b_dims = if tb { [n, k] } else { [k, n] };
            let a = random(mm * k, &mut rng, m);
            let b = random(k * n, &mut rng, m);
            let bias = random(n, &mut rng, m);
            let what = format!("{m:?} {mm}x{n}x{k} tA={ta} tB={tb} {epi:?}");
            let got = run_gemm(ctx, &desc, &a, &b, None, Some(&bias)).context(what.clone())?;
            let mut attrs = vec![
                Attribute::new("transA", AttrValue::Int(ta as i64)),
                Attribute::new("transB", AttrValue::Int(tb as i64)),
                Attribute::new("alpha", AttrValue::Float(0.75)),
            ];
            let mut inputs: Vec<(&[usize], &[f32])> = vec![(&a_dims, &a), (&b_dims, &b)];
            let bias_dims = [n];
            if epi.has_bias() {
                inputs.push((&bias_dims, &bias));
            } else {
                attrs.push(Attribute::new("beta", AttrValue::Float(0.0)));
            }
            let mut want = reference("Gemm", &inputs, attrs)?;
            for v in &mut want {
                *v = match epi {
                    Epilogue::Relu | Epilogue::BiasRelu => v.max(0.0),
                    Epilogue::GeluTanh | Epilogue::BiasGeluTanh => gelu_tanh(*v),
                    _ => *v,
                };
            }
            check(&got, &want, m, &what)?;
        }
    }
    Ok(())
}

fn gemm_beta_c(ctx: &Ctx) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(12);
    for m in MODES {
        let (mm, n, k) = (rng.usize(8..64), rng.usize(8..64), rng.usize(8..64));
        let mut desc = GemmDesc::new(m, mm, n, k);
        desc.beta = 0.5;
        let a = random(mm * k, &mut rng, m);
        let b = random(k * n, &mut rng, m);
        let c = random(mm * n, &mut rng, m);
        let got = run_gemm(ctx, &desc, &a, &b, Some(&c), None)?;
        let attrs = vec![Attribute::new("beta", AttrValue::Float(0.5))];
        let want = reference(
            "Gemm",
            &[(&[mm, k], &a), (&[k, n], &b), (&[mm, n], &c)],
            attrs,
        )?;
        check(&got, &want, m, &format!("{m:?} beta·C"))?;
        // Padded rows: A with lda = k + 8 (extra columns hold garbage that must be ignored).
        let mut desc = GemmDesc::new(m, mm, n, k);
        desc.lda = k + 8;
        let a_pad = random(mm * (k + 8), &mut rng, m);
        let a_packed: Vec<f32> = (0..mm)
            .flat_map(|r| a_pad[r * (k + 8)..r * (k + 8) + k].to_vec())
            .collect();
        let got = run_gemm(ctx, &desc, &a_pad, &b, None, None)?;
        let want = reference("MatMul", &[(&[mm, k], &a_packed), (&[k, n], &b)], vec![])?;
        check(&got, &want, m, &format!("{m:?} lda padded"))?;
    }
    Ok(())
}

fn matmul_cases(ctx: &Ctx) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(13);
    let shapes: &[(&[usize], &[usize])] = &[
        (&[4, 33, 20], &[4, 20, 17]),
        (&[3, 25, 16], &[16, 9]),
        (&[2, 1, 12, 8], &[1, 3, 8, 10]),
        (&[19], &[2, 19, 7]),
        (&[5, 6, 24], &[24]),
        (&[12, 16], &[6, 16, 4]),
    ];
    for m in MODES {
        for &(ad, bd) in shapes {
            let plan = matmul_plan(m, ad, bd)?;
            let a = random(ad.iter().product(), &mut rng, m);
            let b = random(bd.iter().product(), &mut rng, m);
            let n_out: usize = plan.out_dims.iter().product();
            let tactic = ctx.blas.select(&plan.desc, WORKSPACE)?;
            let (da, db) = (upload(ctx, &a, m)?, upload(ctx, &b, m)?);
            let d = poisoned(ctx, n_out, m)?;
            let ws = ctx.alloc.alloc(tactic.workspace.max(256), &ctx.stream)?;
            let eb = m.elem_bytes() as u64;
            for &(oa, ob, oc) in &plan.calls {
                let args = GemmArgs {
                    a: DevicePtr(da.device_ptr() + oa as u64 * eb),
                    b: DevicePtr(db.device_ptr() + ob as u64 * eb),
                    c: None,
                    d: DevicePtr(d.device_ptr() + oc as u64 * eb),
                    bias: None,
                    workspace: dp(&ws),
                    workspace_bytes: tactic.workspace.max(256),
                };
                ctx.blas.enqueue(&ctx.stream, &plan.desc, &tactic, &args)?;
            }
            ctx.stream.synchronize()?;
            let got = download(ctx, &d, n_out, m)?;
            let want = reference("MatMul", &[(ad, &a), (bd, &b)], vec![])?;
            check(&got, &want, m, &format!("{m:?} MatMul {ad:?}·{bd:?}"))?;
        }
    }
    Ok(())
}

struct ConvRun<'a> {
    desc: ConvDesc,
    x: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
}

/// Runs a convolution on NCHW host data (converted to NHWC / KRSC when the layout asks) and
/// returns NCHW output.
fn run_conv(ctx: &Ctx, r: &ConvRun<'_>) -> Result<Vec<f32>> {
    let d = &r.desc;
    let m = d.math;
    let nhwc = d.layout == ConvLayout::Nhwc;
    let (ind, outd) = (d.input_dims(), d.output_dims());
    let x = if nhwc {
        nchw_to_nhwc(r.x, ind)?
    } else {
        r.x.to_vec()
    };
    let w = if nhwc {
        kcrs_to_krsc(r.w, d.geometry.filter_dims())?
    } else {
        r.w.to_vec()
    };
    let tactic = ctx.dnn.select(d, WORKSPACE)?;
    let (dx, dw) = (upload(ctx, &x, m)?, upload(ctx, &w, m)?);
    let dbias = r.bias.map(|b| upload(ctx, b, m)).transpose()?;
    let dres = match r.residual {
        Some(z) => Some(upload(
            ctx,
            &if nhwc {
                nchw_to_nhwc(z, outd)?
            } else {
                z.to_vec()
            },
            m,
        )?),
        None => None,
    };
    let n_out: usize = outd.iter().product();
    let y = poisoned(ctx, n_out, m)?;
    let ws = ctx.alloc.alloc(tactic.workspace.max(256), &ctx.stream)?;
    let args = ConvArgs {
        input: dp(&dx),
        weight: dp(&dw),
        output: dp(&y),
        bias: dbias.as_ref().map(dp),
        residual: dres.as_ref().map(dp),
        workspace: dp(&ws),
        workspace_bytes: tactic.workspace.max(256),
    };
    ctx.dnn
        .enqueue(&ctx.stream, d, &tactic, &args)
        .with_context(|| format!("{tactic:?}"))?;
    ctx.stream.synchronize()?;
    let out = download(ctx, &y, n_out, m)?;
    Ok(if nhwc { nhwc_to_nchw(&out, outd)? } else { out })
}

/// (x, w, pads, strides, dilations, groups)
type ConvCase = (
    Vec<usize>,
    Vec<usize>,
    Vec<usize>,
    Vec<usize>,
    Vec<usize>,
    usize,
);

fn conv_shapes(rng: &mut fastrand::Rng) -> Vec<ConvCase> {
    let n = rng.usize(1..4);
    let (h, w) = (rng.usize(6..20), rng.usize(6..20));
    vec![
        (
            vec![n, 3, h, w],
            vec![8, 3, 3, 3],
            vec![1, 1, 1, 1],
            vec![1, 1],
            vec![1, 1],
            1,
        ),
        (
            vec![n, 16, h, w],
            vec![32, 8, 3, 3],
            vec![1, 1, 1, 1],
            vec![2, 2],
            vec![1, 1],
            2,
        ),
        (
            vec![n, 32, h, w],
            vec![32, 1, 3, 3],
            vec![1, 1, 1, 1],
            vec![1, 1],
            vec![1, 1],
            32,
        ),
        (
            vec![n, 16, h, w],
            vec![24, 16, 1, 1],
            vec![0, 0, 0, 0],
            vec![1, 1],
            vec![1, 1],
            1,
        ),
        (
            vec![n, 8, h, w],
            vec![16, 8, 3, 2],
            vec![2, 1, 2, 1],
            vec![1, 2],
            vec![2, 1],
            1,
        ),
        (
            vec![n, 8, 3 * h],
            vec![16, 8, 5],
            vec![2, 2],
            vec![2],
            vec![1],
            1,
        ),
    ]
}

fn conv_attrs(pads: &[usize], st: &[usize], dil: &[usize], g: usize) -> Vec<Attribute> {
    vec![
        ints("pads", pads),
        ints("strides", st),
        ints("dilations", dil),
        Attribute::new("group", AttrValue::Int(g as i64)),
    ]
}

fn conv_cases(ctx: &Ctx) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(21);
    for m in MODES {
        for layout in [ConvLayout::Nchw, ConvLayout::Nhwc] {
            for (xd, wd, pads, st, dil, g) in conv_shapes(&mut rng) {
                let desc = ConvDesc::from_onnx(m, layout, &xd, &wd, &pads, &st, &dil, g)?;
                let x = random(xd.iter().product(), &mut rng, m);
                let w = random(wd.iter().product(), &mut rng, m);
                let what = format!("{m:?} {layout:?} Conv x{xd:?} w{wd:?} g{g}");
                let got = run_conv(
                    ctx,
                    &ConvRun {
                        desc,
                        x: &x,
                        w: &w,
                        bias: None,
                        residual: None,
                    },
                )
                .context(what.clone())?;
                let want = reference(
                    "Conv",
                    &[(&xd, &x), (&wd, &w)],
                    conv_attrs(&pads, &st, &dil, g),
                )?;
                check(&got, &want, m, &what)?;
            }
        }
    }
    Ok(())
}

fn conv_fused(ctx: &Ctx) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(22);
    for m in MODES {
        let layout = ConvLayout::preferred(m);
        for (ci, (xd, wd, pads, st, dil, g)) in conv_shapes(&mut rng).into_iter().enumerate() {
            let (bias, relu, residual) = [
                (true, true, false),
                (true, false, false),
                (false, true, false),
                (true, true, true),
                (false, false, true),
                (true, false, true),
            ][ci];
            let desc = ConvDesc::from_onnx(m, layout, &xd, &wd, &pads, &st, &dil, g)?
                .with_epilogue(bias, relu, residual);
            let x = random(xd.iter().product(), &mut rng, m);
            let w = random(wd.iter().product(), &mut rng, m);
            let b = random(wd[0], &mut rng, m);
            let z = random(desc.output_dims().iter().product(), &mut rng, m);
            let what = format!(
                "{m:?} {layout:?} Conv x{xd:?} w{wd:?} bias={bias} relu={relu} residual={residual}"
            );
            let run = ConvRun {
                desc,
                x: &x,
                w: &w,
                bias: bias.then_some(&b[..]),
                residual: residual.then_some(&z[..]),
            };
            let got = run_conv(ctx, &run).context(what.clone())?;
            let mut inputs: Vec<(&[usize], &[f32])> = vec![(&xd, &x), (&wd, &w)];
            let bd = [wd[0]];
            if bias {
                inputs.push((&bd, &b));
            }
            let mut want = reference("Conv", &inputs, conv_attrs(&pads, &st, &dil, g))?;
            for (i, v) in want.iter_mut().enumerate() {
                if residual {
                    *v += z[i] as f64;
                }
                if relu {
                    *v = v.max(0.0);
                }
            }
            check(&got, &want, m, &what)?;
        }
    }
    Ok(())
}

fn conv_transpose_cases(ctx: &Ctx) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(23);
    type Case = (
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        usize,
    );
    for m in MODES {
        let n = rng.usize(1..3);
        let cases: Vec<Case> = vec![
            (
                vec![n, 16, 7, 9],
                vec![16, 8, 3, 3],
                vec![1, 1, 1, 1],
                vec![2, 2],
                vec![1, 1],
                vec![1, 1],
                1,
            ),
            (
                vec![n, 8, 5, 5],
                vec![8, 4, 4, 4],
                vec![1, 1, 1, 1],
                vec![2, 2],
                vec![1, 1],
                vec![0, 0],
                2,
            ),
            (
                vec![n, 6, 11],
                vec![6, 4, 3],
                vec![0, 0],
                vec![3],
                vec![1],
                vec![2],
                1,
            ),
        ];
        for layout in [ConvLayout::Nchw, ConvLayout::preferred(m)] {
            for (xd, wd, pads, st, dil, op, g) in &cases {
                let desc = ConvDesc::transpose(m, layout, xd, wd, pads, st, dil, op, *g)?
                    .with_epilogue(true, false, false);
                let x = random(xd.iter().product(), &mut rng, m);
                let w = random(wd.iter().product(), &mut rng, m);
                let b = random(desc.bias_len(), &mut rng, m);
                let what = format!("{m:?} {layout:?} ConvTranspose x{xd:?} w{wd:?}");
                // KRSC for the transpose's filter: its forward-conv K is ONNX's c_in.
                let got = run_conv(
                    ctx,
                    &ConvRun {
                        desc,
                        x: &x,
                        w: &w,
                        bias: Some(&b),
                        residual: None,
                    },
                )
                .context(what.clone())?;
                let mut attrs = conv_attrs(pads, st, dil, *g);
                attrs.push(ints("output_padding", op));
                let want = reference(
                    "ConvTranspose",
                    &[(xd, &x), (wd, &w), (&[b.len()], &b)],
                    attrs,
                )?;
                check(&got, &want, m, &what)?;
            }
        }
    }
    Ok(())
}
