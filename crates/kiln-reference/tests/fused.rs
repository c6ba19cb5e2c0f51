//! ONNX Runtime's `com.microsoft::FusedConv` and `FusedGemm`: on fresh random inputs (never
//! zeros) a fused node computes bit for bit what the unfused chain `Conv (-> Add) -> act` or
//! `Gemm -> act` computes; two cases are also checked against a direct f64 computation. The
//! nodes survive constant folding and the writer/loader round trip, and bad nodes fail with
//! errors that name them.

use std::collections::HashMap;

use half::f16;
use kiln_core::{DataType, Dim};
use kiln_onnx::builder::Value as BValue;
use kiln_onnx::{Attribute, FusedActivation, Graph, GraphBuilder, MS_DOMAIN, MS_OPSET, Tensor};
use kiln_reference::{Interpreter, Value, fold_constants};
use ndarray::ArrayD;

type Inputs = HashMap<String, Value>;

/// Uniform values in ±[0.05, 1): never zero.
fn vals(rng: &mut fastrand::Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let m = 0.05 + 0.95 * rng.f32();
            if rng.bool() { m } else { -m }
        })
        .collect()
}

fn known(d: &[usize]) -> Vec<Dim> {
    d.iter().map(|&v| Dim::Known(v)).collect()
}

/// `d` with its first dim symbolic (`batch`).
fn batched(d: &[usize]) -> Vec<Dim> {
    let mut v = known(d);
    v[0] = Dim::symbol("batch");
    v
}

fn numel(d: &[usize]) -> usize {
    d.iter().product()
}

/// A weight of `dtype` (f32 or f16) holding `v`.
fn weight(name: &str, dtype: DataType, dims: &[usize], v: &[f32]) -> Tensor {
    match dtype {
        DataType::F16 => Tensor::from_vec(
            name,
            dims.to_vec(),
            v.iter().map(|&x| f16::from_f32(x)).collect(),
        )
        .unwrap(),
        _ => Tensor::from_vec(name, dims.to_vec(), v.to_vec()).unwrap(),
    }
}

fn value(dtype: DataType, dims: &[usize], v: &[f32]) -> Value {
    let a = ArrayD::from_shape_vec(dims.to_vec(), v.to_vec()).unwrap();
    match dtype {
        DataType::F16 => Value::F16(a.mapv(f16::from_f32)),
        _ => Value::F32(a),
    }
}

/// `act` as standalone default-domain nodes (opset 17) applied to `v`, output `y`.
fn emit_act(b: &mut GraphBuilder, dtype: DataType, act: FusedActivation, v: &BValue) -> BValue {
    use FusedActivation as A;
    let attrs: Vec<(&str, f32)> = match act {
        A::Identity => return b.node("Identity", &[v]).output_named("y"),
        A::Clip { min, max } => {
            let lo = b.initializer(weight("clip_lo", dtype, &[], &[min]));
            let hi = b.initializer(weight("clip_hi", dtype, &[], &[max]));
            return b.node("Clip", &[v, &lo, &hi]).output_named("y");
        }
        A::Silu => {
            let s = b.node("Sigmoid", &[v]).output();
            return b.node("Mul", &[v, &s]).output_named("y");
        }
        A::Relu | A::Tanh | A::Sigmoid | A::Softplus | A::Softsign => vec![],
        A::LeakyRelu { alpha }
        | A::Elu { alpha }
        | A::Celu { alpha }
        | A::ThresholdedRelu { alpha } => vec![("alpha", alpha)],
        A::HardSigmoid { alpha, beta } => vec![("alpha", alpha), ("beta", beta)],
        A::Selu { alpha, gamma } => vec![("alpha", alpha), ("gamma", gamma)],
    };
    let mut node = b.node(act.name(), &[v]);
    for (n, x) in attrs {
        node = node.attr(n, x);
    }
    node.output_named("y")
}

fn run(g: Graph, inputs: &Inputs) -> Value {
    let mut out = Interpreter::new(g).unwrap().run(inputs.clone()).unwrap();
    out.remove("y").unwrap()
}

/// The fused result equals the chain's exactly, is NaN-free and not constant.
fn assert_same(fused: &Value, chain: &Value, what: &str) {
    assert_eq!(fused.dtype(), chain.dtype(), "{what}");
    assert_eq!(fused.shape(), chain.shape(), "{what}");
    let (f, c) = (fused.to_f64_vec(), chain.to_f64_vec());
    assert!(f.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    assert!(
        f.iter().any(|v| *v != f[0]),
        "{what}: constant output {}",
        f[0]
    );
    let bad = f
        .iter()
        .zip(&c)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(bad, None, "{what}: first difference at {bad:?}");
}

struct ConvCase {
    name: &'static str,
    dtype: DataType,
    x: [usize; 4],
    w: [usize; 4],
    /// Conv's output shape (Z's shape).
    y: [usize; 4],
    attrs: Vec<Attribute>,
    bias: bool,
    z: bool,
    act: FusedActivation,
}

struct ConvData {
    w: Vec<f32>,
    b: Vec<f32>,
    inputs: Inputs,
}

fn conv_data(c: &ConvCase, rng: &mut fastrand::Rng) -> ConvData {
    let mut inputs = HashMap::from([(
        "x".to_string(),
        value(c.dtype, &c.x, &vals(rng, numel(&c.x))),
    )]);
    if c.z {
        inputs.insert("z".into(), value(c.dtype, &c.y, &vals(rng, numel(&c.y))));
    }
    ConvData {
        w: vals(rng, numel(&c.w)),
        b: vals(rng, c.w[0]),
        inputs,
    }
}

/// The graph of `c`: fused (one FusedConv) or the chain Conv (-> Add) -> act.
fn conv_graph(c: &ConvCase, d: &ConvData, fused: bool) -> Graph {
    let mut b = GraphBuilder::new(c.name).opset(17);
    if fused {
        b = b.import(MS_DOMAIN, MS_OPSET);
    }
    let x = b.input("x", c.dtype, &batched(&c.x));
    let w = b.initializer(weight("w", c.dtype, &c.w, &d.w));
    let bias = if c.bias {
        b.initializer(weight("b", c.dtype, &[c.w[0]], &d.b))
    } else {
        BValue::absent()
    };
    let z = c.z.then(|| b.input("z", c.dtype, &batched(&c.y)));
    let y = if fused {
        let mut ins = vec![&x, &w, &bias];
        if let Some(z) = &z {
            ins.push(z);
        }
        if !c.bias && z.is_none() {
            ins.pop();
        }
        let mut node = b.node("FusedConv", &ins).domain(MS_DOMAIN).name("fc");
        for a in c
            .attrs
            .iter()
            .cloned()
            .chain(c.act.conv_attributes().unwrap())
        {
            node = node.attribute(a);
        }
        node.output_named("y")
    } else {
        let ins: Vec<&BValue> = if c.bias {
            vec![&x, &w, &bias]
        } else {
            vec![&x, &w]
        };
        let mut node = b.node("Conv", &ins);
        for a in c.attrs.iter().cloned() {
            node = node.attribute(a);
        }
        let mut v = node.output();
        if let Some(z) = &z {
            v = b.node("Add", &[&v, z]).output();
        }
        emit_act(&mut b, c.dtype, c.act, &v)
    };
    b.output(&y, c.dtype, &batched(&c.y));
    b.graph()
}

fn ints(name: &str, v: &[i64]) -> Attribute {
    Attribute::new(name, kiln_onnx::AttrValue::Ints(v.to_vec()))
}

fn conv_cases() -> Vec<ConvCase> {
    use FusedActivation as A;
    let pad1 = || vec![ints("pads", &[1, 1, 1, 1])];
    vec![
        ConvCase {
            name: "conv_add_relu",
            dtype: DataType::F32,
            x: [2, 4, 7, 7],
            w: [6, 4, 3, 3],
            y: [2, 6, 7, 7],
            attrs: pad1(),
            bias: true,
            z: true,
            act: A::Relu,
        },
        ConvCase {
            name: "conv_clip",
            dtype: DataType::F32,
            x: [2, 3, 9, 9],
            w: [8, 3, 3, 3],
            y: [2, 8, 4, 4],
            attrs: vec![ints("strides", &[2, 2])],
            bias: true,
            z: false,
            act: A::Clip {
                min: -0.5,
                max: 0.75,
            },
        },
        ConvCase {
            name: "conv_no_bias_leaky",
            dtype: DataType::F32,
            x: [1, 4, 6, 6],
            w: [4, 4, 3, 3],
            y: [1, 4, 6, 6],
            attrs: pad1(),
            bias: false,
            z: false,
            act: A::LeakyRelu { alpha: 0.125 },
        },
        ConvCase {
            name: "conv_z_sigmoid_no_bias",
            dtype: DataType::F32,
            x: [2, 4, 5, 5],
            w: [6, 4, 3, 3],
            y: [2, 6, 3, 3],
            attrs: vec![],
            bias: false,
            z: true,
            act: A::Sigmoid,
        },
        ConvCase {
            name: "grouped_conv_add_silu",
            dtype: DataType::F32,
            x: [2, 8, 8, 8],
            w: [8, 4, 3, 3],
            y: [2, 8, 4, 4],
            attrs: vec![
                ints("pads", &[1, 1, 1, 1]),
                ints("strides", &[2, 2]),
                int("group", 2),
            ],
            bias: true,
            z: true,
            act: A::Silu,
        },
        ConvCase {
            name: "conv1x1_hard_sigmoid",
            dtype: DataType::F32,
            x: [1, 3, 6, 6],
            w: [5, 3, 1, 1],
            y: [1, 5, 6, 6],
            attrs: vec![],
            bias: true,
            z: false,
            act: A::HardSigmoid {
                alpha: 0.3,
                beta: 0.4,
            },
        },
        ConvCase {
            name: "conv_add_identity",
            dtype: DataType::F32,
            x: [1, 3, 6, 6],
            w: [5, 3, 3, 3],
            y: [1, 5, 6, 6],
            attrs: pad1(),
            bias: true,
            z: true,
            act: A::Identity,
        },
        ConvCase {
            name: "conv_add_relu_f16",
            dtype: DataType::F16,
            x: [2, 4, 6, 6],
            w: [6, 4, 3, 3],
            y: [2, 6, 6, 6],
            attrs: pad1(),
            bias: true,
            z: true,
            act: A::Relu,
        },
    ]
}

#[test]
fn fused_conv_matches_the_unfused_chain_bit_for_bit() {
    let mut rng = fastrand::Rng::with_seed(0x4b11_0001);
    for c in conv_cases() {
        // Two fresh draws per case.
        for _ in 0..2 {
            let d = conv_data(&c, &mut rng);
            let fused = run(conv_graph(&c, &d, true), &d.inputs);
            let chain = run(conv_graph(&c, &d, false), &d.inputs);
            assert_eq!(fused.shape(), &c.y, "{}", c.name);
            assert_same(&fused, &chain, c.name);
        }
    }
}

#[test]
fn fused_conv_with_z_and_sigmoid_matches_a_direct_computation() {
    let mut rng = fastrand::Rng::with_seed(0x4b11_0002);
    let c = &conv_cases()[3];
    assert_eq!(c.name, "conv_z_sigmoid_no_bias");
    let d = conv_data(c, &mut rng);
    let got = run(conv_graph(c, &d, true), &d.inputs).to_f64_vec();
    let x = d.inputs["x"].to_f64_vec();
    let z = d.inputs["z"].to_f64_vec();
    let [n, ci, h, wd] = c.x;
    let [m, _, kh, kw] = c.w;
    let [_, _, oh, ow] = c.y;
    let mut want = Vec::with_capacity(numel(&c.y));
    for ni in 0..n {
        for mi in 0..m {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0f64;
                    for cc in 0..ci {
                        for a in 0..kh {
                            for bb in 0..kw {
                                let xv = x[((ni * ci + cc) * h + i + a) * wd + j + bb];
                                let wv = f64::from(d.w[((mi * ci + cc) * kh + a) * kw + bb]);
                                acc += xv * wv;
                            }
                        }
                    }
                    let zv = z[((ni * m + mi) * oh + i) * ow + j];
                    want.push(1.0 / (1.0 + (-(acc + zv)).exp()));
                }
            }
        }
    }
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "element {k}: {g} vs {w}");
    }
}

struct GemmCase {
    name: &'static str,
    a: [usize; 2],
    b: [usize; 2],
    c: Option<Vec<usize>>,
    attrs: Vec<Attribute>,
    act: FusedActivation,
    y: [usize; 2],
}

fn int(name: &str, v: i64) -> Attribute {
    Attribute::new(name, kiln_onnx::AttrValue::Int(v))
}

fn float(name: &str, v: f32) -> Attribute {
    Attribute::new(name, kiln_onnx::AttrValue::Float(v))
}

fn gemm_graph(g: &GemmCase, bw: &[f32], cw: &[f32], fused: bool) -> Graph {
    let mut b = GraphBuilder::new(g.name).opset(17);
    if fused {
        b = b.import(MS_DOMAIN, MS_OPSET);
    }
    let a = b.input("x", DataType::F32, &batched(&g.a));
    let w = b.initializer(weight("w", DataType::F32, &g.b, bw));
    let mut ins = vec![&a, &w];
    let c =
        g.c.as_ref()
            .map(|cd| b.initializer(weight("c", DataType::F32, cd, cw)));
    if let Some(c) = &c {
        ins.push(c);
    }
    let op = if fused { "FusedGemm" } else { "Gemm" };
    let mut node = b.node(op, &ins);
    if fused {
        node = node.domain(MS_DOMAIN).name("fg");
    }
    for a in g.attrs.iter().cloned() {
        node = node.attribute(a);
    }
    let y = if fused {
        for a in g.act.gemm_attributes().unwrap() {
            node = node.attribute(a);
        }
        node.output_named("y")
    } else {
        let v = node.output();
        emit_act(&mut b, DataType::F32, g.act, &v)
    };
    b.output(&y, DataType::F32, &batched(&g.y));
    b.graph()
}

fn gemm_cases() -> Vec<GemmCase> {
    use FusedActivation as A;
    vec![
        GemmCase {
            name: "gemm_relu",
            a: [5, 16],
            b: [12, 16],
            c: Some(vec![12]),
            attrs: vec![int("transB", 1)],
            act: A::Relu,
            y: [5, 12],
        },
        GemmCase {
            name: "gemm_leaky_alpha_beta_transa",
            a: [16, 5],
            b: [16, 12],
            c: Some(vec![5, 1]),
            attrs: vec![int("transA", 1), float("alpha", 0.5), float("beta", 2.0)],
            act: A::LeakyRelu { alpha: 0.2 },
            y: [5, 12],
        },
        GemmCase {
            name: "gemm_no_c_tanh",
            a: [3, 7],
            b: [7, 4],
            c: None,
            attrs: vec![],
            act: A::Tanh,
            y: [3, 4],
        },
        GemmCase {
            name: "gemm_full_c_elu",
            a: [4, 6],
            b: [6, 5],
            c: Some(vec![4, 5]),
            attrs: vec![],
            act: A::Elu { alpha: 0.7 },
            y: [4, 5],
        },
        GemmCase {
            name: "gemm_selu",
            a: [4, 6],
            b: [5, 6],
            c: Some(vec![5]),
            attrs: vec![int("transB", 1)],
            act: A::Selu {
                alpha: 1.673_263_2,
                gamma: 1.050_701,
            },
            y: [4, 5],
        },
        GemmCase {
            name: "gemm_hard_sigmoid",
            a: [4, 6],
            b: [6, 5],
            c: Some(vec![1]),
            attrs: vec![],
            act: A::HardSigmoid {
                alpha: 0.5,
                beta: 0.25,
            },
            y: [4, 5],
        },
    ]
}

#[test]
fn fused_gemm_matches_the_unfused_chain_bit_for_bit() {
    let mut rng = fastrand::Rng::with_seed(0x4b11_0003);
    for g in gemm_cases() {
        for _ in 0..2 {
            let bw = vals(&mut rng, numel(&g.b));
            let cw = vals(&mut rng, g.c.as_deref().map_or(0, numel));
            let x = vals(&mut rng, numel(&g.a));
            let inputs = HashMap::from([("x".to_string(), value(DataType::F32, &g.a, &x))]);
            let fused = run(gemm_graph(&g, &bw, &cw, true), &inputs);
            let chain = run(gemm_graph(&g, &bw, &cw, false), &inputs);
            assert_eq!(fused.shape(), &g.y, "{}", g.name);
            assert_same(&fused, &chain, g.name);
        }
    }
}

#[test]
fn fused_gemm_leaky_relu_matches_a_direct_computation() {
    let mut rng = fastrand::Rng::with_seed(0x4b11_0004);
    let g = &gemm_cases()[1];
    assert_eq!(g.name, "gemm_leaky_alpha_beta_transa");
    let bw = vals(&mut rng, numel(&g.b));
    let cw = vals(&mut rng, 5);
    let x = vals(&mut rng, numel(&g.a));
    let inputs = HashMap::from([("x".to_string(), value(DataType::F32, &g.a, &x))]);
    let got = run(gemm_graph(g, &bw, &cw, true), &inputs).to_f64_vec();
    // A is [K, M] (transA), B is [K, N], C is [M, 1]; alpha 0.5, beta 2, LeakyRelu 0.2.
    let (k, m, n) = (16, 5, 12);
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|p| f64::from(x[p * m + i]) * f64::from(bw[p * n + j]))
                .sum();
            let v = 0.5 * dot + 2.0 * f64::from(cw[i]);
            let want = if v > 0.0 { v } else { 0.2 * v };
            let g = got[i * n + j];
            assert!(
                (g - want).abs() <= 1e-5 * want.abs().max(1.0),
                "[{i}, {j}]: {g} vs {want}"
            );
        }
    }
}

#[test]
fn fused_nodes_survive_folding_and_the_file_round_trip() {
    let mut rng = fastrand::Rng::with_seed(0x4b11_0005);
    let c = &conv_cases()[0];
    let d = conv_data(c, &mut rng);
    let fused = conv_graph(c, &d, true);
    let want = run(fused.clone(), &d.inputs);

    // Folding: a constant chain feeding the bias folds; the FusedConv stays as it was.
    let mut b = GraphBuilder::new("fold")
        .opset(17)
        .import(MS_DOMAIN, MS_OPSET);
    let x = b.input("x", DataType::F32, &batched(&c.x));
    let z = b.input("z", DataType::F32, &batched(&c.y));
    let w = b.initializer(weight("w", DataType::F32, &c.w, &d.w));
    let half_b: Vec<f32> = d.b.iter().map(|v| v / 2.0).collect();
    let b1 = b.initializer(weight("b1", DataType::F32, &[c.w[0]], &half_b));
    let b2 = b.initializer(weight("b2", DataType::F32, &[c.w[0]], &half_b));
    let bias = b.node("Add", &[&b1, &b2]).name("bias_add").output();
    let mut node = b
        .node("FusedConv", &[&x, &w, &bias, &z])
        .domain(MS_DOMAIN)
        .name("fc");
    for a in c
        .attrs
        .iter()
        .cloned()
        .chain(c.act.conv_attributes().unwrap())
    {
        node = node.attribute(a);
    }
    let y = node.output_named("y");
    b.output(&y, DataType::F32, &batched(&c.y));
    let g = b.graph();
    let (folded, report) = fold_constants(&g).unwrap();
    assert_eq!(report.folded_nodes, 1);
    assert_eq!(folded.nodes.len(), 1);
    let fc = &folded.nodes[0];
    assert_eq!(
        (fc.op_type.as_str(), fc.domain.as_str()),
        ("FusedConv", MS_DOMAIN)
    );
    assert_eq!(fc.attributes, g.nodes[1].attributes);
    assert_eq!(folded.opset_version(MS_DOMAIN), Some(MS_OPSET));
    // The halves add back exactly, so the folded graph computes what the fused one does.
    assert_same(&run(folded, &d.inputs), &want, "folded");

    // Writer and loader: the node, its domain and attributes, and the import come back.
    let bytes = kiln_onnx::to_model_bytes(&fused).unwrap();
    let loaded = kiln_onnx::from_bytes(&bytes).unwrap();
    assert_eq!(loaded.opset_version(MS_DOMAIN), Some(MS_OPSET));
    let n = &loaded.nodes[0];
    assert_eq!(
        (n.op_type.as_str(), n.domain.as_str()),
        ("FusedConv", MS_DOMAIN)
    );
    assert_eq!(n.attributes, fused.nodes[0].attributes);
    assert_eq!(n.inputs, fused.nodes[0].inputs);
    assert!(kiln_onnx::unsupported_nodes(&loaded).is_empty());
    let y = loaded.value("y").unwrap();
    assert_eq!(y.shape.unwrap().to_string(), "[batch, 6, 7, 7]");
    assert_same(&run(loaded, &d.inputs), &want, "round trip");

    // Same for FusedGemm.
    let gc = &gemm_cases()[1];
    let bw = vals(&mut rng, numel(&gc.b));
    let cw = vals(&mut rng, 5);
    let fg = gemm_graph(gc, &bw, &cw, true);
    let loaded = kiln_onnx::from_bytes(&kiln_onnx::to_model_bytes(&fg).unwrap()).unwrap();
    assert_eq!(loaded.nodes[0].attributes, fg.nodes[0].attributes);
    assert_eq!(loaded.nodes[0].domain, MS_DOMAIN);
    let (folded, report) = fold_constants(&loaded).unwrap();
    assert_eq!(report.folded_nodes, 0);
    assert_eq!(folded.nodes, loaded.nodes);
}

fn run_err(g: Graph, inputs: &Inputs) -> String {
    match Interpreter::new(g) {
        Err(e) => e.to_string(),
        Ok(i) => i.run(inputs.clone()).unwrap_err().to_string(),
    }
}

#[test]
fn bad_fused_nodes_fail_with_errors_naming_them() {
    let mut rng = fastrand::Rng::with_seed(0x4b11_0006);
    let c = &conv_cases()[0];
    let d = conv_data(c, &mut rng);

    // Without the com.microsoft import.
    let mut g = conv_graph(c, &d, true);
    g.opsets.retain(|o| o.domain != MS_DOMAIN);
    let e = run_err(g, &d.inputs);
    assert!(e.contains("node 'fc' (com.microsoft::FusedConv"), "{e}");
    assert!(e.contains("domain 'com.microsoft' is not imported"), "{e}");

    // An activation FusedConv does not take, and a wrong parameter count.
    for (attr, want) in [
        (
            Attribute::new("activation", "Gelu".into()),
            "activation 'Gelu'",
        ),
        (
            Attribute::new("activation_params", vec![1.0f32, 2.0, 3.0].into()),
            "takes 2 value(s)",
        ),
    ] {
        let bad = c.clone_with_act(FusedActivation::Clip { min: 0.0, max: 1.0 });
        let mut g = conv_graph(&bad, &d, true);
        let node = &mut g.nodes[0];
        node.attributes.retain(|a| a.name != attr.name);
        node.attributes.push(attr);
        let e = run_err(g, &d.inputs);
        assert!(e.contains("node 'fc' (com.microsoft::FusedConv"), "{e}");
        assert!(e.contains(want), "{e}");
    }

    // Z of another shape than the output (the reference does not broadcast it either).
    let mut g = conv_graph(c, &d, true);
    let mut inputs = d.inputs.clone();
    inputs.insert(
        "z".into(),
        value(DataType::F32, &[2, 6, 1, 1], &vals(&mut rng, 12)),
    );
    g.inputs[1].shape = None;
    let e = run_err(g, &inputs);
    assert!(e.contains("node 'fc'"), "{e}");
    assert!(e.contains("Z (input #3) has shape [2, 6, 1, 1]"), "{e}");

    // FusedGemm needs an activation; integer inputs take only Relu.
    let gc = &gemm_cases()[0];
    let bw = vals(&mut rng, numel(&gc.b));
    let cw = vals(&mut rng, 12);
    let inputs = HashMap::from([(
        "x".to_string(),
        value(DataType::F32, &gc.a, &vals(&mut rng, numel(&gc.a))),
    )]);
    let mut g = gemm_graph(gc, &bw, &cw, true);
    g.nodes[0].attributes.retain(|a| a.name != "activation");
    let e = run_err(g, &inputs);
    assert!(e.contains("node 'fg' (com.microsoft::FusedGemm"), "{e}");
    assert!(e.contains("'activation' is missing"), "{e}");

    let mut b = GraphBuilder::new("int").import(MS_DOMAIN, MS_OPSET);
    let a = b.input("a", DataType::I32, &known(&[2, 3]));
    let w = b.initializer(Tensor::from_vec("w", vec![3, 2], vec![1i32, -2, 3, -4, 5, -6]).unwrap());
    let y = b
        .node("FusedGemm", &[&a, &w])
        .domain(MS_DOMAIN)
        .name("fg")
        .attr("activation", "Relu")
        .output_named("y");
    b.output(&y, DataType::I32, &known(&[2, 2]));
    let ints = HashMap::from([(
        "a".to_string(),
        Value::I32(ArrayD::from_shape_vec(vec![2, 3], vec![1, 2, 3, -1, -2, -3]).unwrap()),
    )]);
    // [1,2,3]·cols = [22, -28] -> Relu [22, 0]; [-1,-2,-3] -> [-22, 28] -> [0, 28].
    let out = run(b.graph(), &ints);
    assert_eq!(out.to_f64_vec(), [22.0, 0.0, 0.0, 28.0]);
    let mut g = b.graph();
    g.nodes[0].attributes = FusedActivation::Tanh.gemm_attributes().unwrap();
    let e = run_err(g, &ints);
    assert!(e.contains("node 'fg' (com.microsoft::FusedGemm"), "{e}");
    assert!(e.contains("its Tanh step"), "{e}");
}

impl ConvCase {
    fn clone_with_act(&self, act: FusedActivation) -> ConvCase {
        ConvCase {
            name: self.name,
            dtype: self.dtype,
            x: self.x,
            w: self.w,
            y: self.y,
            attrs: self.attrs.clone(),
            bias: self.bias,
            z: self.z,
            act,
        }
    }
}
