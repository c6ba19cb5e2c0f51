//! CPU tests of the library-step derivation, tactics section and op dispatch tables.

use kiln_core::{DataType, Precision};

use super::*;
use crate::builder::lower::{self, SUPPORTED_OPS, StepKind, VIEW_OPS};
use crate::builder::{compute_dtype, opt_shapes, specs};
use crate::kernels::conv::ConvKind;
use crate::runtime::ops;

const FIXTURES: &[&str] = &[
    "mlp_legacy",
    "mlp_dynamo",
    "cnn_legacy",
    "cnn_dynamo",
    "transformer_legacy",
    "transformer_dynamo",
];

fn programs(precision: Precision) -> Vec<(String, kiln_onnx::Graph, lower::Program)> {
    FIXTURES
        .iter()
        .map(|name| {
            let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../fixtures/{name}.onnx"));
            let g = kiln_onnx::load(&path).unwrap();
            let (opt, _) = crate::builder::passes::optimize(&g).unwrap();
            let inputs = specs(&opt.inputs).unwrap();
            let mut shapes = opt_shapes(&inputs, None).unwrap_or_default();
            if shapes.is_empty() {
                shapes = inputs
                    .iter()
                    .map(|s| {
                        let d = s
                            .shape
                            .dims()
                            .iter()
                            .map(|d| d.known().unwrap_or(2))
                            .collect();
                        (s.name.clone(), d)
                    })
                    .collect();
            }
            let sg = lower::specialize(&opt, &shapes).unwrap();
            let p = lower::lower(&sg, compute_dtype(precision).unwrap()).unwrap();
            (name.to_string(), sg, p)
        })
        .collect()
}

#[test]
fn every_supported_op_is_wired() {
    for op in SUPPORTED_OPS.iter().chain(lower::UNARY_OPS) {
        if VIEW_OPS.contains(op) {
            continue;
        }
        assert!(ops::wired(op), "{op} is claimed but not wired");
    }
}

#[test]
fn fixture_steps_have_kernels_or_library_calls() {
    for precision in [Precision::Fp32, Precision::Fp16] {
        let math = math_mode(precision).unwrap();
        for (name, _, p) in programs(precision) {
            let mut lib_steps = 0;
            for step in &p.steps {
                let d = lib_desc(step, &p, math).unwrap();
                if let StepKind::Node(n) = &step.kind {
                    let is_lib = matches!(
                        n.op_type.as_str(),
                        "Gemm" | "MatMul" | "Conv" | "FusedConv" | "FusedGemm"
                    );
                    assert_eq!(d.is_some(), is_lib, "{name}: {}", n.op_type);
                    if d.is_some() {
                        lib_steps += 1;
                    } else if !matches!(n.op_type.as_str(), "Identity" | "Dropout" | "Cast") {
                        assert!(
                            !ops::modules_for(step, &p).unwrap().is_empty(),
                            "{name}: {} launches no module",
                            n.op_type
                        );
                    }
                }
            }
            assert!(lib_steps > 0, "{name} has no library steps");
        }
    }
}

#[test]
fn cnn_conv_descriptions_match_inferred_shapes() {
    for (name, _, p) in programs(Precision::Tf32) {
        for step in &p.steps {
            if let Some(LibDesc::Conv(d)) = lib_desc(step, &p, MathMode::Tf32).unwrap() {
                assert_eq!(d.kind, ConvKind::Forward);
                assert_eq!(d.math, MathMode::Tf32);
                let out = &p.tensors[step.outputs[0]].dims;
                assert_eq!(&d.output_dims()[..], &out[..], "{name}");
            }
        }
    }
}

#[test]
fn gemm_bias_and_broadcast_c() {
    use kiln_onnx::{AttrValue, Attribute, Node};
    let t = |name: &str, dims: Vec<usize>| lower::TensorInfo {
        name: name.into(),
        dtype: DataType::F32,
        dims,
        storage: lower::Storage::Arena(0),
    };
    let mut node = Node {
        name: "g".into(),
        op_type: "Gemm".into(),
        ..Node::default()
    };
    node.attributes
        .push(Attribute::new("transB", AttrValue::Int(1)));
    let prog = |c: Vec<usize>, node: &Node| lower::Program {
        tensors: vec![
            t("a", vec![4, 8]),
            t("b", vec![16, 8]),
            t("c", c),
            t("y", vec![4, 16]),
        ],
        steps: vec![lower::Step {
            kind: StepKind::Node(node.clone()),
            inputs: vec![Some(0), Some(1), Some(2)],
            outputs: vec![3],
        }],
        arena_bytes: 0,
        output_dims: vec![],
    };
    let p = prog(vec![16], &node);
    let Some(LibDesc::Gemm {
        desc,
        expand_c,
        bias,
    }) = lib_desc(&p.steps[0], &p, MathMode::Fp32).unwrap()
    else {
        panic!()
    };
    assert!(bias && !expand_c);
    assert_eq!((desc.m, desc.n, desc.k, desc.trans_b), (4, 16, 8, true));
    assert_eq!(desc.epilogue, Epilogue::Bias);
    let p = prog(vec![4, 1], &node);
    let Some(LibDesc::Gemm {
        desc,
        expand_c,
        bias,
    }) = lib_desc(&p.steps[0], &p, MathMode::Fp32).unwrap()
    else {
        panic!()
    };
    assert!(!bias && expand_c);
    assert_eq!(desc.beta, 1.0);
    node.attributes
        .push(Attribute::new("beta", AttrValue::Float(0.5)));
    let p = prog(vec![16], &node);
    let Some(LibDesc::Gemm { desc, expand_c, .. }) =
        lib_desc(&p.steps[0], &p, MathMode::Fp32).unwrap()
    else {
        panic!()
    };
    assert!(expand_c);
    assert_eq!((desc.beta, desc.epilogue), (0.5, Epilogue::None));
}

#[test]
fn tactics_section_round_trips() {
    let mut t = Tactics::default();
    let g = GemmDesc::new(MathMode::Tf32, 4, 5, 6);
    t.gemm.insert(
        key(&g),
        GemmTactic {
            algo: [1, 2, 3, 4, 5, 6, 7, 8],
            workspace: 1024,
        },
    );
    let c = ConvDesc::from_onnx(
        MathMode::Fp16,
        ConvLayout::Nchw,
        &[1, 3, 8, 8],
        &[4, 3, 3, 3],
        &[1, 1, 1, 1],
        &[],
        &[],
        1,
    )
    .unwrap();
    t.conv.insert(
        key(&c),
        ConvTactic {
            algo: 1,
            math_type: 2,
            workspace: 7,
            fused: true,
        },
    );
    let back = Tactics::from_bytes(&t.to_bytes().unwrap()).unwrap();
    assert_eq!(back, t);
    assert!(Tactics::from_bytes(b"{").is_err());
}

#[test]
fn kernel_sections_round_trip() {
    use crate::kernels::nvrtc::KernelBinary;
    let bins = vec![
        KernelBinary {
            module: "unary_f16".into(),
            target: "sm_90".into(),
            nvrtc_version: "13.0".into(),
            image: vec![1, 2, 3],
        },
        KernelBinary {
            module: "move_b4".into(),
            target: "compute_90".into(),
            nvrtc_version: "13.0".into(),
            image: b"ptx".to_vec(),
        },
    ];
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mlp_legacy.onnx");
    let g = kiln_onnx::load(&path).unwrap();
    let cfg = crate::plan::BuildConfig {
        profiles: vec![kiln_core::OptimizationProfile {
            inputs: vec![kiln_core::ProfileInput {
                name: g.inputs[0].name.clone(),
                min: vec![1, 16],
                opt: vec![2, 16],
                max: vec![8, 16],
            }],
        }],
        ..crate::plan::BuildConfig::default()
    };
    let mut plan = crate::builder::prepare(&g, &cfg, crate::plan::Fingerprint::default()).unwrap();
    plan.sections.extend(super::super::kernel_sections(&bins));
    assert_eq!(super::super::kernel_binaries(&plan).unwrap(), bins);
    plan.sections.push(("kernel:broken".into(), vec![]));
    assert!(super::super::kernel_binaries(&plan).is_err());
}

#[test]
fn window_pads_resolve_auto_pad_and_asymmetric_conv_pads_get_a_pad_step() {
    use kiln_core::Dim;
    use kiln_onnx::{AttrValue, Attribute, Node, Tensor};
    let mut n = Node {
        name: "c".into(),
        op_type: "Conv".into(),
        ..Node::default()
    };
    assert_eq!(
        lower::window_pads(&n, &[5, 5], &[3, 3]).unwrap(),
        vec![0; 4]
    );
    n.attributes.push(Attribute::new(
        "auto_pad",
        AttrValue::String(b"SAME_UPPER".to_vec()),
    ));
    n.attributes
        .push(Attribute::new("strides", AttrValue::Ints(vec![2, 2])));
    // in 6, stride 2 -> out 3; total = (3-1)*2 + 3 - 6 = 1 -> (0, 1)
    assert_eq!(
        lower::window_pads(&n, &[6, 6], &[3, 3]).unwrap(),
        vec![0, 0, 1, 1]
    );
    n.attributes[0] = Attribute::new("auto_pad", AttrValue::String(b"SAME_LOWER".to_vec()));
    assert_eq!(
        lower::window_pads(&n, &[6, 6], &[3, 3]).unwrap(),
        vec![1, 1, 0, 0]
    );
    n.attributes[0] = Attribute::new("auto_pad", AttrValue::String(b"VALID".to_vec()));
    assert_eq!(
        lower::window_pads(&n, &[6, 6], &[3, 3]).unwrap(),
        vec![0; 4]
    );

    // A Conv with asymmetric pads lowers to a Pad step and a symmetric Conv.
    let mut b = kiln_onnx::GraphBuilder::new("asym").opset(17);
    let k = |d: &[usize]| d.iter().map(|&v| Dim::Known(v)).collect::<Vec<_>>();
    let x = b.input("x", DataType::F32, &k(&[1, 2, 6, 6]));
    let w = b.initializer(Tensor::from_vec("w", vec![3, 2, 3, 3], vec![0.5f32; 54]).unwrap());
    let y = b
        .node("Conv", &[&x, &w])
        .attr("pads", vec![0i64, 1, 1, 2])
        .output();
    b.output(&y, DataType::F32, &k(&[1, 3, 5, 7]));
    let g = b.build().unwrap();
    let sg = lower::specialize(&g, &[("x".into(), vec![1, 2, 6, 6])]).unwrap();
    let p = lower::lower(&sg, DataType::F32).unwrap();
    let pad = p
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            StepKind::Pad { pads } => Some((pads.clone(), s.outputs[0])),
            _ => None,
        })
        .expect("a Pad step");
    assert_eq!(pad.0, vec![0, 0, 0, 0, 0, 0, 1, 1]);
    assert_eq!(p.tensors[pad.1].dims, vec![1, 2, 7, 7]);
    let (conv, x_in) = p
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            StepKind::Node(n) if n.op_type == "Conv" => Some((n.clone(), s.inputs[0])),
            _ => None,
        })
        .unwrap();
    assert_eq!(x_in, Some(pad.1));
    assert_eq!(conv.attr_ints("pads").unwrap(), Some(&[0i64, 1, 0, 1][..]));
    let step = p
        .steps
        .iter()
        .find(|s| matches!(&s.kind, StepKind::Node(_)))
        .unwrap();
    let Some(LibDesc::Conv(d)) = lib_desc(step, &p, MathMode::Fp32).unwrap() else {
        panic!("conv description")
    };
    assert_eq!(d.geometry.pads, [0, 1]);
    assert_eq!(d.output_dims(), [1, 3, 5, 7]);
    assert_eq!(ops::modules_for(&p.steps[0], &p).unwrap().len(), 1);
}

#[test]
fn slice_pad_and_reduce_parameters() {
    let (st, sp, out) =
        ops::slice_params(&[4, 10], &[1, -1], &[3, 0], Some(&[0, 1]), Some(&[1, -2])).unwrap();
    assert_eq!((st, sp, out), (vec![1, 9], vec![1, -2], vec![2, 5]));
    let (st, _, out) = ops::slice_params(&[4, 10], &[2], &[i64::MAX], Some(&[-1]), None).unwrap();
    assert_eq!((st, out), (vec![0, 2], vec![4, 8]));
    assert!(ops::slice_params(&[4], &[0, 1], &[1], None, None).is_err());
    assert_eq!(
        ops::pad_full(3, &[1, 2, 3, 4], Some(&[-1, 0])).unwrap(),
        vec![2, 0, 1, 4, 0, 3]
    );
    assert!(ops::pad_full(2, &[1, 2], None).is_err());
    assert_eq!(
        ops::reduce_axes(None, 3, false).unwrap(),
        Some(vec![0, 1, 2])
    );
    assert_eq!(ops::reduce_axes(None, 3, true).unwrap(), None);
    assert_eq!(
        ops::reduce_axes(Some(vec![-1, 0, 2]), 3, false).unwrap(),
        Some(vec![0, 2])
    );
    assert!(ops::reduce_axes_input("ReduceSum", 13) && !ops::reduce_axes_input("ReduceMean", 17));
    assert_eq!(
        ops::fill_bytes(DataType::F16, 1.0).unwrap(),
        half::f16::ONE.to_le_bytes()
    );
}

#[test]
fn nodes_without_a_gpu_kernel_for_their_types_fail_the_build_together() {
    use kiln_core::Dim;
    let mut b = kiln_onnx::GraphBuilder::new("ints").opset(17);
    let x = b.input("x", DataType::I64, &[Dim::Known(2), Dim::Known(3)]);
    let s = b.node("ReduceSum", &[&x]).attr("keepdims", 0i64).output();
    let m = b.node("ReduceMax", &[&x]).attr("keepdims", 0i64).output();
    let y = b.node("Add", &[&s, &m]).output();
    b.output(&y, DataType::I64, &[Dim::Known(1)]);
    let g = b.build().unwrap();
    let e = crate::builder::prepare(
        &g,
        &crate::plan::BuildConfig::default(),
        crate::plan::Fingerprint::default(),
    )
    .unwrap_err();
    let EngineError::UnsupportedNodes { nodes } = &e else {
        panic!("{e}")
    };
    assert_eq!(nodes.len(), 2, "{e}");
    assert!(
        nodes[0].contains("ReduceSum") && nodes[1].contains("ReduceMax"),
        "{e}"
    );
}
