//! Tests of FusedConv / FusedGemm inference and of [`FusedActivation`].

use kiln_core::{DataType, Dim};

use super::*;
use crate::builder::GraphBuilder;
use crate::error::Result;
use crate::ops::nn::test_util::*;
use crate::ops::registry;
use crate::tensor::Tensor;

const FC: &str = "com.microsoft::FusedConv";
const FG: &str = "com.microsoft::FusedGemm";

/// A `com.microsoft` node of `def` with one input per entry (`None`: omitted, `""`), inferred
/// at opset 1.
fn ms_infer(def: &OpDef, attrs: Vec<Attribute>, inputs: Vec<Option<Fact>>) -> Result<Vec<Fact>> {
    let mut n = node(def, inputs.len(), 1, attrs);
    n.domain = MS_DOMAIN.to_string();
    for (name, f) in n.inputs.iter_mut().zip(&inputs) {
        if f.is_none() {
            name.clear();
        }
    }
    run(def, &n, MS_OPSET, inputs, vec![])
}

fn relu() -> Attribute {
    string("activation", "Relu")
}

fn floats(name: &str, v: &[f32]) -> Attribute {
    Attribute::new(name, AttrValue::Floats(v.to_vec()))
}

#[test]
fn fused_conv_shapes_follow_conv_with_symbolic_batch() {
    let attrs = || vec![ints("pads", &[1, 1, 1, 1]), relu()];
    // X, W only.
    let out = ms_infer(
        &FUSED_CONV,
        attrs(),
        vec![f32s("batchx8xhxw"), f32s("16x8x3x3")],
    )
    .unwrap();
    assert_eq!(out_shape(&out), "[batch, 16, h, w]");
    assert_eq!(out[0].dtype, Some(DataType::F32));
    // X, W, B, Z.
    let ins = vec![
        f32s("batchx8xhxw"),
        f32s("16x8x3x3"),
        f32s("16"),
        f32s("batchx16xhxw"),
    ];
    let out = ms_infer(&FUSED_CONV, attrs(), ins).unwrap();
    assert_eq!(out_shape(&out), "[batch, 16, h, w]");
    // Z without B (B omitted as "").
    let ins = vec![
        f32s("batchx8x9x9"),
        f32s("16x8x3x3"),
        None,
        f32s("batchx16x9x9"),
    ];
    let out = ms_infer(&FUSED_CONV, attrs(), ins).unwrap();
    assert_eq!(out_shape(&out), "[batch, 16, 9, 9]");
    // Z fills what Conv cannot know (stride 2 over a symbolic size).
    let s2 = vec![
        ints("pads", &[1, 1, 1, 1]),
        ints("strides", &[2, 2]),
        relu(),
    ];
    let ins = vec![
        f32s("batchx8xhxw"),
        f32s("16x8x3x3"),
        None,
        f32s("batchx16x7x7"),
    ];
    let out = ms_infer(&FUSED_CONV, s2, ins).unwrap();
    assert_eq!(out_shape(&out), "[batch, 16, 7, 7]");
    // X of unknown rank: Z gives the output's shape.
    let ins = vec![
        unranked(DataType::F32),
        f32s("16x8x3x3"),
        None,
        f32s("2x16x5x5"),
    ];
    let out = ms_infer(&FUSED_CONV, vec![], ins).unwrap();
    assert_eq!(out_shape(&out), "[2, 16, 5, 5]");
    assert_eq!(out[0].dtype, Some(DataType::F32));
}

#[test]
fn fused_conv_input_and_z_errors() {
    // Z must have the output's shape exactly: no broadcasting.
    let ins = vec![
        f32s("1x8x9x9"),
        f32s("16x8x3x3"),
        f32s("16"),
        f32s("1x16x9x9"),
    ];
    assert_err(
        ms_infer(&FUSED_CONV, vec![relu()], ins),
        FC,
        &["Z (input #3)", "[1, 16, 9, 9]", "[1, 16, 7, 7]"],
    );
    let ins = vec![f32s("1x8x9x9"), f32s("16x8x3x3"), None, f32s("16x1x1")];
    assert_err(
        ms_infer(&FUSED_CONV, vec![relu()], ins),
        FC,
        &["Z (input #3)", "without broadcasting"],
    );
    let ins = vec![
        f32s("1x8x9x9"),
        f32s("16x8x3x3"),
        None,
        t(DataType::F16, "1x16x7x7"),
    ];
    assert_err(
        ms_infer(&FUSED_CONV, vec![relu()], ins),
        FC,
        &["input #0 is f32", "input #3 is f16"],
    );
    // Conv's own checks still apply, naming FusedConv.
    let ins = vec![f32s("1x8x9x9"), f32s("16x8x3x3"), f32s("8")];
    assert_err(
        ms_infer(&FUSED_CONV, vec![relu()], ins),
        FC,
        &["bias", "8 vs 16"],
    );
    let ins = vec![f32s("1x8x9x9"), f32s("16x8x3x3"), None, None, f32s("1")];
    assert_err(
        ms_infer(&FUSED_CONV, vec![relu()], ins),
        FC,
        &["has 5 inputs", "2 to 4"],
    );
}

#[test]
fn fused_conv_activation_attributes() {
    let ins = || vec![f32s("1x8x9x9"), f32s("16x8x3x3")];
    let ok = |attrs: Vec<Attribute>| ms_infer(&FUSED_CONV, attrs, ins());
    // Absent or empty: the identity.
    assert!(ok(vec![]).is_ok());
    assert!(ok(vec![string("activation", "")]).is_ok());
    for a in ["Relu", "Tanh", "Sigmoid", "Silu"] {
        assert!(ok(vec![string("activation", a)]).is_ok(), "{a}");
    }
    assert!(
        ok(vec![
            string("activation", "LeakyRelu"),
            floats("activation_params", &[0.2])
        ])
        .is_ok()
    );
    assert!(
        ok(vec![
            string("activation", "Clip"),
            floats("activation_params", &[0.0, 6.0])
        ])
        .is_ok()
    );
    assert_err(
        ok(vec![string("activation", "LeakyRelu")]),
        FC,
        &["'LeakyRelu' takes 1 value(s)", "has 0"],
    );
    assert_err(
        ok(vec![
            string("activation", "Clip"),
            floats("activation_params", &[6.0]),
        ]),
        FC,
        &["'Clip' takes 2 value(s)", "min, max"],
    );
    assert_err(
        ok(vec![string("activation", "HardSigmoid")]),
        FC,
        &["'HardSigmoid' takes 2"],
    );
    assert_err(
        ok(vec![string("activation", "Gelu")]),
        FC,
        &[
            "activation 'Gelu'",
            "Relu, Tanh, Sigmoid, Silu, LeakyRelu, Clip, HardSigmoid",
        ],
    );
    // Elu is a FusedGemm activation, not a FusedConv one.
    assert_err(ok(vec![string("activation", "Elu")]), FC, &["'Elu'"]);
    assert_err(ok(vec![int("activation", 1)]), FC, &["'activation'", "INT"]);
}

#[test]
fn fused_gemm_shapes_and_errors() {
    let ins = vec![f32s("batchx2048"), f32s("1000x2048"), f32s("1000")];
    let out = ms_infer(&FUSED_GEMM, vec![int("transB", 1), relu()], ins).unwrap();
    assert_eq!(out_shape(&out), "[batch, 1000]");
    // C is optional at com.microsoft opset 1.
    let ins = vec![f32s("batchx3"), f32s("3x5")];
    let out = ms_infer(&FUSED_GEMM, vec![relu()], ins).unwrap();
    assert_eq!(out_shape(&out), "[batch, 5]");
    let ins = vec![f32s("batchx3"), f32s("3x5"), None];
    assert!(ms_infer(&FUSED_GEMM, vec![relu()], ins).is_ok());
    // Gemm's checks name FusedGemm.
    let ins = vec![f32s("4x3"), f32s("4x5")];
    assert_err(
        ms_infer(&FUSED_GEMM, vec![relu()], ins),
        FG,
        &["inner dims", "3 vs 4"],
    );
    let ins = vec![f32s("4x3"), f32s("3x5"), f32s("3")];
    assert_err(
        ms_infer(&FUSED_GEMM, vec![relu()], ins),
        FG,
        &["C (input #2)"],
    );
    // The activation is required and must be one FusedGemm takes.
    let ins = || vec![f32s("4x3"), f32s("3x5")];
    assert_err(
        ms_infer(&FUSED_GEMM, vec![], ins()),
        FG,
        &["'activation' is missing"],
    );
    for bad in ["Clip", "Silu", "Gelu"] {
        assert_err(
            ms_infer(&FUSED_GEMM, vec![string("activation", bad)], ins()),
            FG,
            &[&format!("activation '{bad}'")],
        );
    }
    assert_err(
        ms_infer(&FUSED_GEMM, vec![string("activation", "ScaledTanh")], ins()),
        FG,
        &["not implemented by kiln"],
    );
    // Integers: Relu only.
    let ints_in = || vec![t(DataType::I32, "4x3"), t(DataType::I32, "3x5")];
    assert!(ms_infer(&FUSED_GEMM, vec![relu()], ints_in()).is_ok());
    assert_err(
        ms_infer(&FUSED_GEMM, vec![string("activation", "Tanh")], ints_in()),
        FG,
        &["'Tanh' needs floats", "i32"],
    );
}

/// Every activation FusedConv / FusedGemm can carry, written and read back.
#[test]
fn activations_round_trip_through_attributes() {
    use FusedActivation as A;
    let all = [
        A::Identity,
        A::Relu,
        A::Tanh,
        A::Sigmoid,
        A::Silu,
        A::LeakyRelu { alpha: 0.125 },
        A::Clip {
            min: -1.5,
            max: 6.0,
        },
        A::HardSigmoid {
            alpha: 0.25,
            beta: 0.375,
        },
        A::Elu { alpha: 0.5 },
        A::Selu {
            alpha: 1.5,
            gamma: 1.25,
        },
        A::Celu { alpha: 2.0 },
        A::Softplus,
        A::Softsign,
        A::ThresholdedRelu { alpha: 0.75 },
    ];
    let conv_ok = [
        "Identity",
        "Relu",
        "Tanh",
        "Sigmoid",
        "Silu",
        "LeakyRelu",
        "Clip",
        "HardSigmoid",
    ];
    for act in all {
        let with = |op: &str, attrs: Vec<Attribute>| Node {
            name: "n".into(),
            op_type: op.into(),
            domain: MS_DOMAIN.into(),
            attributes: attrs,
            ..Node::default()
        };
        match act.conv_attributes() {
            Some(attrs) => {
                assert!(conv_ok.contains(&act.name()), "{act:?}");
                let back = FusedActivation::of_node(&with("FusedConv", attrs)).unwrap();
                assert_eq!(back, act);
            }
            None => assert!(!conv_ok.contains(&act.name()), "{act:?}"),
        }
        let gemm_ok = !matches!(act, A::Identity | A::Clip { .. } | A::Silu);
        match act.gemm_attributes() {
            Some(attrs) => {
                assert!(gemm_ok, "{act:?}");
                let back = FusedActivation::of_node(&with("FusedGemm", attrs)).unwrap();
                assert_eq!(back, act);
            }
            None => assert!(!gemm_ok, "{act:?}"),
        }
    }
    // FusedGemm's absent parameters take the standalone op's defaults.
    let n = Node {
        op_type: "FusedGemm".into(),
        attributes: vec![string("activation", "LeakyRelu")],
        ..Node::default()
    };
    assert_eq!(
        FusedActivation::of_node(&n).unwrap(),
        A::LeakyRelu { alpha: 0.01 }
    );
    let n = Node {
        op_type: "Conv".into(),
        ..Node::default()
    };
    assert!(FusedActivation::of_node(&n).is_err());
}

#[test]
fn activations_from_standalone_nodes() {
    use FusedActivation as A;
    let act = |op: &str, opset: i64, attrs: Vec<Attribute>| {
        let n = Node {
            op_type: op.into(),
            attributes: attrs,
            ..Node::default()
        };
        FusedActivation::from_activation_node(&n, opset).unwrap()
    };
    assert_eq!(act("Relu", 17, vec![]), Some(A::Relu));
    assert_eq!(
        act("LeakyRelu", 17, vec![]),
        Some(A::LeakyRelu { alpha: 0.01 })
    );
    assert_eq!(
        act("LeakyRelu", 17, vec![float("alpha", 0.2)]),
        Some(A::LeakyRelu { alpha: 0.2 })
    );
    assert_eq!(
        act("HardSigmoid", 17, vec![float("beta", 0.25)]),
        Some(A::HardSigmoid {
            alpha: 0.2,
            beta: 0.25
        })
    );
    assert_eq!(
        act("Selu", 5, vec![]),
        Some(A::Selu {
            alpha: 1.6732,
            gamma: 1.0507
        })
    );
    assert_eq!(
        act("Selu", 17, vec![]),
        Some(A::Selu {
            alpha: 1.673_263_2,
            gamma: 1.050_701
        })
    );
    assert_eq!(
        act("Clip", 6, vec![float("min", 0.0), float("max", 6.0)]),
        Some(A::Clip { min: 0.0, max: 6.0 })
    );
    // Clip's bounds are inputs from 11 on: the caller reads them.
    assert_eq!(act("Clip", 13, vec![]), None);
    assert_eq!(act("Add", 17, vec![]), None);
    let mut other = Node {
        op_type: "Relu".into(),
        domain: "com.example".into(),
        ..Node::default()
    };
    assert_eq!(
        FusedActivation::from_activation_node(&other, 1).unwrap(),
        None
    );
    other.domain = "ai.onnx".into();
    assert_eq!(
        FusedActivation::from_activation_node(&other, 17).unwrap(),
        Some(A::Relu)
    );
}

#[test]
fn registry_knows_the_ms_ops_and_needs_the_import() {
    for op in ["FusedConv", "FusedGemm"] {
        let got = registry().get(MS_DOMAIN, op).unwrap();
        assert_eq!(
            (got.op_type, got.domain, got.since_opset),
            (op, MS_DOMAIN, 1)
        );
        assert!(
            registry().get("", op).is_none(),
            "{op} is not a default-domain op"
        );
    }
    let graph = |import: bool, op: &str| {
        let mut b = GraphBuilder::new("g");
        if import {
            b = b.import(MS_DOMAIN, MS_OPSET);
        }
        let x = b.input("x", DataType::F32, &[Dim::Known(2), Dim::Known(3)]);
        let w = b.initializer(Tensor::from_vec("w", vec![3, 4], vec![0.5f32; 12]).unwrap());
        let y = b
            .node(op, &[&x, &w])
            .domain(MS_DOMAIN)
            .name("f")
            .attr("activation", "Relu")
            .output_named("y");
        b.output(&y, DataType::F32, &[Dim::Known(2), Dim::Known(4)]);
        b.graph()
    };
    let g = graph(true, "FusedGemm");
    assert_eq!(registry().check(&g, &g.nodes[0]), None);
    let g = graph(false, "FusedGemm");
    let why = registry().check(&g, &g.nodes[0]).unwrap();
    assert!(why.contains("'com.microsoft' is not imported"), "{why}");
    // Other com.microsoft ops: the domain is known, the op is not.
    let g = graph(true, "Attention");
    let why = registry().check(&g, &g.nodes[0]).unwrap();
    assert_eq!(why, "kiln does not implement this op");
}

#[test]
fn loader_infers_fused_nodes_and_reports_bad_activations() {
    let model = |act: &str| {
        let mut b = GraphBuilder::new("fc").import(MS_DOMAIN, MS_OPSET);
        let batch = Dim::symbol("batch");
        let x = b.input(
            "x",
            DataType::F32,
            &[batch.clone(), Dim::Known(4), Dim::Known(6), Dim::Known(6)],
        );
        let z = b.input(
            "z",
            DataType::F32,
            &[batch.clone(), Dim::Known(8), Dim::Known(6), Dim::Known(6)],
        );
        let w = b.initializer(Tensor::from_vec("w", vec![8, 4, 3, 3], vec![0.25f32; 288]).unwrap());
        let bias = b.initializer(Tensor::from_vec("b", vec![8], vec![0.5f32; 8]).unwrap());
        let y = b
            .node("FusedConv", &[&x, &w, &bias, &z])
            .domain(MS_DOMAIN)
            .name("fc")
            .attr("pads", [1i64, 1, 1, 1])
            .attr("activation", act)
            .output();
        let y2 = b.node("Flatten", &[&y]).output();
        let w2 = b.initializer(Tensor::from_vec("w2", vec![288, 5], vec![0.5f32; 1440]).unwrap());
        let out = b
            .node("FusedGemm", &[&y2, &w2])
            .domain(MS_DOMAIN)
            .attr("activation", "LeakyRelu")
            .attr("activation_alpha", 0.1f32)
            .output_named("out");
        b.output_value(crate::graph::ValueInfo::unknown(out.name()));
        b
    };
    let g = model("Relu").build().unwrap();
    assert_eq!(g.opset_version(MS_DOMAIN), Some(1));
    assert_eq!(g.nodes[0].domain, MS_DOMAIN);
    let fc_out = g.value(&g.nodes[0].outputs[0]).unwrap();
    assert_eq!(fc_out.shape.unwrap().to_string(), "[batch, 8, 6, 6]");
    let out = g.value("out").unwrap();
    assert_eq!(out.shape.unwrap().to_string(), "[batch, 5]");
    assert_eq!(out.dtype, Some(DataType::F32));
    assert!(crate::unsupported_nodes(&g).is_empty());
    let e = model("Swish").build().unwrap_err().to_string();
    assert!(e.contains("node 'fc' (com.microsoft::FusedConv"), "{e}");
    assert!(e.contains("activation 'Swish'"), "{e}");
}
