//! CPU tests of the ops the builder rewrites or checks beyond the op list: variadic
//! Sum/Min/Max/Mean as binary steps, LayerNormalization's f32 statistics in half engines,
//! MaxPool's `Indices`, GatherND (shapes, constant indices), build errors naming the node.

use std::collections::HashMap;

use kiln_core::{DataType, Dim, Precision};
use kiln_onnx::{AttrValue, Graph, GraphBuilder, Tensor, ValueInfo};
use kiln_reference::{Interpreter, Value};

use super::lower::{Program, StepKind, Storage};
use super::*;
use crate::runtime::ops::{self, output_slot};

fn dims(d: &[usize]) -> Vec<Dim> {
    d.iter().map(|&v| Dim::Known(v)).collect()
}

/// A model from `build` (outputs named in `outputs`, typed by the loader's inference).
fn model(opset: i64, outputs: &[&str], build: impl FnOnce(&mut GraphBuilder)) -> Graph {
    let mut b = GraphBuilder::new("t").opset(opset);
    build(&mut b);
    for o in outputs {
        b.output_value(ValueInfo::unknown(*o));
    }
    b.build().unwrap()
}

fn random_inputs(g: &Graph, seed: u64) -> HashMap<String, Value> {
    let mut rng = fastrand::Rng::with_seed(seed);
    g.inputs
        .iter()
        .map(|vi| {
            let d = vi.shape.as_ref().and_then(|s| s.as_known()).unwrap();
            let n: usize = d.iter().product();
            let t = match vi.dtype {
                Some(DataType::I64) => {
                    Tensor::from_vec(&vi.name, d, (0..n).map(|_| rng.i64(-50..50)).collect())
                }
                _ => Tensor::from_vec(
                    &vi.name,
                    d,
                    (0..n).map(|_| rng.f32() * 4.0 - 2.0).collect::<Vec<f32>>(),
                ),
            };
            (vi.name.clone(), Value::from_tensor(&t.unwrap()).unwrap())
        })
        .collect()
}

fn programs(g: &Graph, precision: Precision) -> Result<Vec<(Graph, Program)>> {
    let cfg = BuildConfig {
        precision,
        ..BuildConfig::default()
    };
    Ok(prepare_programs(g, &cfg, Fingerprint::default())?.1)
}

/// [`programs`] without the specialisation fusions: the steps of the ONNX ops themselves.
fn unfused_programs(g: &Graph, precision: Precision) -> Result<Vec<(Graph, Program)>> {
    let cfg = BuildConfig {
        precision,
        fusions: crate::plan::Fusions::none(),
        ..BuildConfig::default()
    };
    Ok(prepare_programs(g, &cfg, Fingerprint::default())?.1)
}

fn build_error(g: &Graph, precision: Precision) -> String {
    match programs(g, precision) {
        Ok(_) => panic!("the build succeeded"),
        Err(e) => e.to_string(),
    }
}

/// Ops of a program's node steps, in order.
fn step_ops(p: &Program) -> Vec<String> {
    p.steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Node(n) => Some(n.op_type.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn variadic_ops_become_binary_steps_with_the_reference_results() {
    let outs = ["s3", "m1", "x4", "e3", "e1", "s2", "n4"];
    let g = model(13, &outs, |b| {
        let a = b.input("a", DataType::F32, &dims(&[2, 3, 4]));
        let x = b.input("b", DataType::F32, &dims(&[3, 1]));
        let c = b.input("c", DataType::F32, &dims(&[1, 4]));
        let d = b.input("d", DataType::F32, &dims(&[2, 1, 1]));
        let w =
            b.initializer(Tensor::from_vec("w", vec![4], vec![0.5f32, -1.0, 2.0, 0.25]).unwrap());
        let _ = b.node("Sum", &[&a, &x, &c]).output_named("s3");
        let _ = b.node("Min", &[&a]).output_named("m1");
        let _ = b.node("Max", &[&a, &x, &c, &d]).output_named("x4");
        let _ = b.node("Mean", &[&a, &x, &c]).output_named("e3");
        let _ = b.node("Mean", &[&x]).output_named("e1");
        let _ = b.node("Sum", &[&a, &x]).output_named("s2");
        let _ = b.node("Min", &[&d, &w, &a, &c]).output_named("n4");
    });
    let (opt, report) = passes::optimize(&g).unwrap();
    assert_eq!(report.variadic_rewrites, 6, "{report:?}");
    for n in &opt.nodes {
        let k = n.inputs.len();
        match n.op_type.as_str() {
            "Sum" | "Min" | "Max" => assert_eq!(k, 2, "{}", n.name),
            "Mean" => panic!("Mean left: {}", n.name),
            _ => {}
        }
    }
    // Left folds, as the reference computes them: the results are bit-identical.
    let feed = random_inputs(&g, 5);
    let want = Interpreter::new(g.clone())
        .unwrap()
        .run(feed.clone())
        .unwrap();
    let got = Interpreter::new(opt).unwrap().run(feed).unwrap();
    for o in outs {
        assert_eq!(want[o].shape(), got[o].shape(), "{o}");
        assert_eq!(want[o].to_f64_vec(), got[o].to_f64_vec(), "{o}");
    }
    for precision in [Precision::Fp32, Precision::Fp16, Precision::Bf16] {
        let progs = unfused_programs(&g, precision).unwrap();
        let ops = step_ops(&progs[0].1);
        assert!(ops.iter().any(|o| o == "Div"), "{ops:?}");
        assert!(!ops.iter().any(|o| o == "Mean"), "{ops:?}");
    }
}

#[test]
fn integer_mean_truncates_like_the_reference() {
    let g = model(13, &["m"], |b| {
        let a = b.input("a", DataType::I64, &dims(&[5, 3]));
        let c = b.input("c", DataType::I64, &dims(&[3]));
        let d = b.input("d", DataType::I64, &dims(&[5, 1]));
        let _ = b.node("Mean", &[&a, &c, &d]).output_named("m");
    });
    let (opt, _) = passes::optimize(&g).unwrap();
    let div = opt.nodes.iter().find(|n| n.op_type == "Div").unwrap();
    let count = opt.initializer(&div.inputs[1]).unwrap();
    assert_eq!(count.dtype(), DataType::I64);
    assert_eq!(count.to_i64_vec().unwrap(), vec![3]);
    let feed = random_inputs(&g, 9);
    let want = Interpreter::new(g.clone())
        .unwrap()
        .run(feed.clone())
        .unwrap();
    let got = Interpreter::new(opt).unwrap().run(feed).unwrap();
    assert_eq!(want["m"].to_f64_vec(), got["m"].to_f64_vec());
    programs(&g, Precision::Fp32).unwrap();
}

#[test]
fn variadic_nodes_left_are_build_errors() {
    let node = |op: &str, k: usize| kiln_onnx::Node {
        name: format!("{op}{k}"),
        op_type: op.into(),
        inputs: (0..k).map(|i| format!("x{i}")).collect(),
        outputs: vec!["y".into()],
        index: 7,
        ..kiln_onnx::Node::default()
    };
    assert!(checks::variadic_left(&node("Sum", 2)).is_none());
    assert!(checks::variadic_left(&node("Max", 2)).is_none());
    assert!(checks::variadic_left(&node("Relu", 1)).is_none());
    for (op, k) in [("Sum", 3), ("Min", 1), ("Mean", 2)] {
        let e = checks::variadic_left(&node(op, k)).unwrap();
        assert!(e.contains(&format!("node #7 '{op}{k}'")), "{e}");
        assert!(e.contains(&format!("{op} with {k} input(s)")), "{e}");
    }
}

fn layer_norm_model(outputs: [&str; 3]) -> Graph {
    let mut graph_outs = vec!["y", "mm"];
    graph_outs.extend(outputs[1..].iter().filter(|o| !o.is_empty()));
    model(17, &graph_outs, |b| {
        let x = b.input("x", DataType::F32, &dims(&[2, 3, 8]));
        let s = b.initializer(Tensor::from_vec("s", vec![8], vec![1.5f32; 8]).unwrap());
        let bias = b.initializer(Tensor::from_vec("bias", vec![8], vec![0.25f32; 8]).unwrap());
        let o = b
            .node("LayerNormalization", &[&x, &s, &bias])
            .attr("axis", -1i64)
            .outputs_named(&outputs);
        // A reader of a statistic (InvStdDev when Mean is left out).
        let stat = if outputs[1].is_empty() { &o[2] } else { &o[1] };
        let _ = b.node("Mul", &[stat, stat]).output_named("mm");
    })
}

#[test]
fn layer_norm_statistics_are_f32_in_every_engine() {
    for outputs in [["y", "mean", "inv"], ["y", "", "inv"], ["y", "mean", ""]] {
        let g = layer_norm_model(outputs);
        for precision in [Precision::Fp32, Precision::Fp16, Precision::Bf16] {
            let compute = compute_dtype(precision).unwrap();
            let progs = unfused_programs(&g, precision).unwrap();
            let p = &progs[0].1;
            let (ln, node) = p
                .steps
                .iter()
                .find_map(|s| match &s.kind {
                    StepKind::Node(n) if n.op_type == "LayerNormalization" => Some((s, n)),
                    _ => None,
                })
                .unwrap();
            assert_eq!(p.tensors[ln.outputs[0]].dtype, compute);
            for pos in [1, 2] {
                let slot = output_slot(node, ln, pos);
                assert_eq!(slot.is_some(), !outputs[pos].is_empty(), "{outputs:?}");
                let Some(t) = slot else { continue };
                let info = &p.tensors[t];
                assert_eq!(info.name, outputs[pos]);
                assert_eq!(
                    (info.dtype, info.dims.as_slice()),
                    (DataType::F32, &[2, 3, 1][..])
                );
                // The graph output is the kernel's f32 tensor itself.
                assert_eq!(info.storage, Storage::Output(graph_index(&g, outputs[pos])));
            }
            // The reader (Mul) takes the statistic in the engine's storage type.
            let mul = p
                .steps
                .iter()
                .find(|s| matches!(&s.kind, StepKind::Node(n) if n.op_type == "Mul"))
                .unwrap();
            let read = mul.inputs[0].unwrap();
            assert_eq!(p.tensors[read].dtype, compute);
            let casts = p
                .steps
                .iter()
                .filter(|s| {
                    s.kind == StepKind::Cast
                        && p.tensors[s.inputs[0].unwrap()].dtype == DataType::F32
                        && s.outputs[0] == read
                })
                .count();
            assert_eq!(
                casts,
                usize::from(compute != DataType::F32),
                "{precision:?}"
            );
            assert_eq!(mul.inputs[0], mul.inputs[1]);
        }
    }
}

fn graph_index(g: &Graph, name: &str) -> usize {
    g.outputs.iter().position(|o| o.name == name).unwrap()
}

#[test]
fn max_pool_indices_build_and_3d_pools_fail_at_build() {
    let g = model(12, &["y", "i"], |b| {
        let x = b.input("x", DataType::F32, &dims(&[2, 3, 9, 7]));
        let _ = b
            .node("MaxPool", &[&x])
            .attr("kernel_shape", vec![3i64, 2])
            .attr("strides", vec![2i64, 1])
            .attr("pads", vec![1i64, 0, 1, 1])
            .attr("storage_order", 1i64)
            .outputs_named(&["y", "i"]);
    });
    for precision in [Precision::Fp32, Precision::Fp16, Precision::Bf16] {
        let progs = programs(&g, precision).unwrap();
        let p = &progs[0].1;
        let step = p
            .steps
            .iter()
            .find(|s| matches!(&s.kind, StepKind::Node(n) if n.op_type == "MaxPool"))
            .unwrap();
        let StepKind::Node(node) = &step.kind else {
            unreachable!()
        };
        let i = output_slot(node, step, 1).unwrap();
        assert_eq!(p.tensors[i].dtype, DataType::I64);
        assert_eq!(p.tensors[i].dims, p.tensors[step.outputs[0]].dims);
    }
    let g3 = model(12, &["y"], |b| {
        let x = b.input("x", DataType::F32, &dims(&[1, 2, 4, 4, 4]));
        let _ = b
            .node("MaxPool", &[&x])
            .name("pool3d")
            .attr("kernel_shape", vec![2i64, 2, 2])
            .output_named("y");
    });
    let e = build_error(&g3, Precision::Fp16);
    assert!(
        e.contains("'pool3d'") && e.contains("MaxPool") && e.contains("1-D and 2-D only"),
        "{e}"
    );
}

fn gather_nd_model(indices: Option<Tensor>, batch_dims: i64) -> Graph {
    model(13, &["y"], |b| {
        let x = b.input("x", DataType::F32, &dims(&[2, 5, 4]));
        let i = match indices {
            Some(t) => b.initializer(t),
            None => b.input("i", DataType::I64, &dims(&[2, 3, 1])),
        };
        let _ = b
            .node("GatherND", &[&x, &i])
            .name("gnd")
            .attr("batch_dims", AttrValue::Int(batch_dims))
            .output_named("y");
    })
}

#[test]
fn gather_nd_builds_and_constant_indices_are_checked() {
    for b in [0, 1] {
        let g = gather_nd_model(None, b);
        for precision in [Precision::Fp32, Precision::Fp16] {
            let progs = programs(&g, precision).unwrap();
            let p = &progs[0].1;
            let step = p
                .steps
                .iter()
                .find(|s| matches!(&s.kind, StepKind::Node(n) if n.op_type == "GatherND"))
                .unwrap();
            let mods = ops::modules_for(step, p).unwrap();
            assert!(
                mods.iter().any(|m| m.name.starts_with("gather_nd_b")),
                "{mods:?}"
            );
            let want = if b == 0 {
                vec![2, 3, 5, 4]
            } else {
                vec![2, 3, 4]
            };
            assert_eq!(p.tensors[step.outputs[0]].dims, want);
        }
    }
    // Constant indices: in range (negative included) builds, out of range names the node.
    let ok = Tensor::from_vec("ci", vec![2, 2, 1], vec![-5i64, 4, 0, -1]).unwrap();
    programs(&gather_nd_model(Some(ok), 1), Precision::Fp32).unwrap();
    let bad = Tensor::from_vec("ci", vec![2, 2, 1], vec![0i64, 4, 5, -1]).unwrap();
    let e = build_error(&gather_nd_model(Some(bad), 1), Precision::Fp32);
    assert!(
        e.contains("'gnd'") && e.contains("GatherND") && e.contains("index 5"),
        "{e}"
    );
}

fn resize_model(mode: &str, scales_const: bool) -> Graph {
    model(19, &["y"], |b| {
        let x = b.input("x", DataType::F32, &dims(&[1, 2, 5, 7]));
        let roi = b.initializer(Tensor::from_vec("roi", vec![0], Vec::<f32>::new()).unwrap());
        let sc = if scales_const {
            b.initializer(Tensor::from_vec("sc", vec![4], vec![1.0f32, 1.0, 2.0, 1.5]).unwrap())
        } else {
            b.input("sc", DataType::F32, &dims(&[4]))
        };
        let _ = b
            .node("Resize", &[&x, &roi, &sc])
            .name("rs")
            .attr("mode", mode)
            .output_named("y");
    })
}

#[test]
fn resize_builds_and_what_its_kernel_lacks_fails_the_build() {
    let g = resize_model("linear", true);
    for precision in [Precision::Fp32, Precision::Bf16] {
        let progs = programs(&g, precision).unwrap();
        let p = &progs[0].1;
        let step = p
            .steps
            .iter()
            .find(|s| matches!(&s.kind, StepKind::Node(n) if n.op_type == "Resize"))
            .unwrap();
        let mods = ops::modules_for(step, p).unwrap();
        assert!(
            mods.iter().any(|m| m.name.starts_with("resize_")),
            "{mods:?}"
        );
        assert_eq!(p.tensors[step.outputs[0]].dims, vec![1, 2, 10, 10]);
    }
    let e = build_error(&resize_model("cubic", true), Precision::Fp32);
    assert!(e.contains("'rs'") && e.contains("'cubic'"), "{e}");
    let e = build_error(&resize_model("linear", false), Precision::Fp32);
    assert!(e.contains("'rs'") && e.contains("not a constant"), "{e}");
}

fn conv_transpose_model(attrs: Vec<(&'static str, AttrValue)>) -> Graph {
    model(17, &["y"], |b| {
        let x = b.input("x", DataType::F32, &dims(&[2, 4, 5, 6]));
        let w = b.initializer(Tensor::from_vec("w", vec![4, 3, 3, 3], vec![0.5f32; 108]).unwrap());
        let bias = b.initializer(Tensor::from_vec("b", vec![3], vec![0.25f32; 3]).unwrap());
        let mut n = b.node("ConvTranspose", &[&x, &w, &bias]).name("ct");
        for (k, v) in attrs {
            n = n.attr(k, v);
        }
        let _ = n.output_named("y");
    })
}

#[test]
fn conv_transpose_is_a_cudnn_backward_data_step() {
    use crate::kernels::conv::ConvKind;
    use crate::runtime::libs::{LibDesc, lib_desc, math_mode};
    let ints = |v: &[i64]| AttrValue::Ints(v.to_vec());
    let ok: Vec<Vec<(&'static str, AttrValue)>> = vec![
        vec![],
        vec![
            ("strides", ints(&[2, 2])),
            ("pads", ints(&[1, 1, 1, 1])),
            ("output_padding", ints(&[1, 0])),
        ],
        // output_shape 10 x 12 with stride 2: full 11 x 13, one cell of padding each side
        // would be asymmetric, so output_padding 1 makes the totals even.
        vec![
            ("strides", ints(&[2, 2])),
            ("output_padding", ints(&[1, 1])),
            ("output_shape", ints(&[10, 12])),
        ],
        vec![("group", AttrValue::Int(1)), ("dilations", ints(&[2, 1]))],
    ];
    for attrs in ok {
        let g = conv_transpose_model(attrs.clone());
        let want = g.value("y").unwrap().shape.unwrap().as_known().unwrap();
        for precision in [Precision::Fp32, Precision::Fp16] {
            let progs = programs(&g, precision).unwrap();
            let p = &progs[0].1;
            let step = p
                .steps
                .iter()
                .find(|s| matches!(&s.kind, StepKind::Node(n) if n.op_type == "ConvTranspose"))
                .unwrap();
            let Some(LibDesc::Conv(d)) = lib_desc(step, p, math_mode(precision).unwrap()).unwrap()
            else {
                panic!("no cuDNN description")
            };
            assert_eq!(d.kind, ConvKind::Transpose);
            assert!(d.bias);
            assert_eq!(d.output_dims().to_vec(), want, "{attrs:?}");
            assert_eq!(p.tensors[step.outputs[0]].dims, want);
        }
    }
    // SAME_UPPER with stride 2: full 11 x 13, output 10 x 12: one cell at the end only.
    let g = conv_transpose_model(vec![
        ("strides", ints(&[2, 2])),
        ("auto_pad", AttrValue::String("SAME_UPPER".into())),
    ]);
    let e = build_error(&g, Precision::Fp32);
    assert!(e.contains("'ct'") && e.contains("pads [0, 0, 1, 1]"), "{e}");
}
