//! CPU tests of the fusion passes: each rewritten graph gives kiln-reference's results of the
//! original on random inputs.

use std::collections::HashMap;

use kiln_core::{DataType, Dim};
use kiln_onnx::{Graph, GraphBuilder, Tensor};
use kiln_reference::{Interpreter, Value};

use super::*;

fn random(rng: &mut fastrand::Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect()
}

/// `x [batch.., k]` → MatMul(W [k, n]) → Add(b) (bias first when `bias_first`) → Relu.
fn linear(in_dims: &[Dim], k: usize, n: usize, bias_first: bool, extra_reader: bool) -> Graph {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut b = GraphBuilder::new("linear").opset(17);
    let x = b.input("x", DataType::F32, in_dims);
    let w = b.initializer(Tensor::from_vec("w", vec![k, n], random(&mut rng, k * n)).unwrap());
    let bias = b.initializer(Tensor::from_vec("b", vec![n], random(&mut rng, n)).unwrap());
    let mm = b.node("MatMul", &[&x, &w]).output();
    let sum = if bias_first {
        b.node("Add", &[&bias, &mm]).output()
    } else {
        b.node("Add", &[&mm, &bias]).output()
    };
    let y = b.node("Relu", &[&sum]).output_named("y");
    let mut out_dims: Vec<Dim> = in_dims[..in_dims.len() - 1].to_vec();
    out_dims.push(Dim::Known(n));
    b.output(&y, DataType::F32, &out_dims);
    if extra_reader {
        let z = b.node("Exp", &[&mm]).output_named("z");
        b.output(&z, DataType::F32, &out_dims);
    }
    b.build().unwrap()
}

fn run(g: &Graph, dims: &[usize]) -> HashMap<String, Value> {
    let mut rng = fastrand::Rng::with_seed(9);
    let n = dims.iter().product();
    let x = Tensor::from_vec("x", dims.to_vec(), random(&mut rng, n)).unwrap();
    let inputs = HashMap::from([("x".to_string(), Value::from_tensor(&x).unwrap())]);
    Interpreter::new(g.clone()).unwrap().run(inputs).unwrap()
}

fn max_abs(a: &Value, b: &Value) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn matmul_bias_becomes_gemm_with_the_same_results() {
    for (dims, bias_first) in [
        (vec![2usize, 3, 4], false),
        (vec![2, 3, 4], true),
        (vec![5, 4], false),
        (vec![4], false),
        (vec![2, 2, 3, 4], true),
    ] {
        let in_dims: Vec<Dim> = dims.iter().map(|&d| Dim::Known(d)).collect();
        let g = linear(&in_dims, 4, 6, bias_first, false);
        let p = matmul_bias_to_gemm(&g).unwrap();
        assert_eq!(p.touched_nodes(), 2, "{dims:?}");
        let fused = p.apply(&g).unwrap();
        let ops: Vec<&str> = fused.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert!(ops.contains(&"Gemm") && !ops.contains(&"MatMul") && !ops.contains(&"Add"));
        let (want, got) = (run(&g, &dims), run(&fused, &dims));
        let d = max_abs(&want["y"], &got["y"]);
        assert!(d < 1e-5, "{dims:?}: max abs diff {d}");
        assert!(want["y"].to_f64_vec().iter().any(|v| *v != 0.0));
    }
}

#[test]
fn matmul_bias_fusion_with_a_symbolic_batch_survives_specialisation() {
    let g = linear(
        &[Dim::Symbol("batch".into()), Dim::Known(4)],
        4,
        3,
        false,
        false,
    );
    let fused = matmul_bias_to_gemm(&g).unwrap().apply(&g).unwrap();
    let (opt, _) = super::super::passes::optimize(&fused).unwrap();
    let spec = super::super::lower::specialize(&opt, &[("x".to_string(), vec![7, 4])]).unwrap();
    let ops: Vec<&str> = spec.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert!(
        !ops.contains(&"Shape") && !ops.contains(&"Concat"),
        "shape arithmetic left after specialisation: {ops:?}"
    );
    let d = max_abs(&run(&g, &[7, 4])["y"], &run(&spec, &[7, 4])["y"]);
    assert!(d < 1e-5);
}

#[test]
fn matmul_bias_fusion_skips_what_it_cannot_take() {
    // the MatMul's output has a second reader
    let g = linear(&[Dim::Known(2), Dim::Known(4)], 4, 6, false, true);
    assert!(matmul_bias_to_gemm(&g).unwrap().is_empty());
    // old opset
    let mut g = linear(&[Dim::Known(2), Dim::Known(4)], 4, 6, false, false);
    for o in g.opsets.iter_mut().filter(|o| o.domain.is_empty()) {
        o.version = 11;
    }
    assert!(matmul_bias_to_gemm(&g).unwrap().is_empty());
}

/// x [2, 4, 5, 5] → Conv → Relu → Conv → Add(x) → Relu → Flatten → Gemm → Relu.
fn block() -> Graph {
    let mut rng = fastrand::Rng::with_seed(5);
    let mut b = GraphBuilder::new("block").opset(17);
    let x = b.input(
        "x",
        DataType::F32,
        &[Dim::Known(2), Dim::Known(4), Dim::Known(5), Dim::Known(5)],
    );
    let mut conv = |b: &mut GraphBuilder, input: &kiln_onnx::builder::Value, tag: &str| {
        let w = b.initializer(
            Tensor::from_vec(format!("w{tag}"), vec![4, 4, 3, 3], random(&mut rng, 144)).unwrap(),
        );
        let bias = b.initializer(
            Tensor::from_vec(format!("b{tag}"), vec![4], random(&mut rng, 4)).unwrap(),
        );
        b.node("Conv", &[input, &w, &bias])
            .attr("pads", [1i64, 1, 1, 1])
            .output()
    };
    let c1 = conv(&mut b, &x, "1");
    let r1 = b.node("Relu", &[&c1]).output();
    let c2 = conv(&mut b, &r1, "2");
    let s = b.node("Add", &[&c2, &x]).output();
    let r2 = b.node("Relu", &[&s]).output();
    let f = b.node("Flatten", &[&r2]).output();
    let wg = b.initializer(Tensor::from_vec("wg", vec![100, 3], random(&mut rng, 300)).unwrap());
    let bg = b.initializer(Tensor::from_vec("bg", vec![3], random(&mut rng, 3)).unwrap());
    let g = b.node("Gemm", &[&f, &wg, &bg]).output();
    let y = b.node("Relu", &[&g]).output_named("y");
    b.output(&y, DataType::F32, &[Dim::Known(2), Dim::Known(3)]);
    b.build().unwrap()
}

#[test]
fn conv_and_gemm_epilogues_fuse_with_the_same_results() {
    let g = block();
    let fused = conv_gemm_epilogues(&g).unwrap();
    let ops: Vec<(&str, &str)> = fused
        .nodes
        .iter()
        .map(|n| (n.domain.as_str(), n.op_type.as_str()))
        .collect();
    assert_eq!(
        ops,
        [
            (kiln_onnx::MS_DOMAIN, "FusedConv"),
            (kiln_onnx::MS_DOMAIN, "FusedConv"),
            ("", "Flatten"),
            (kiln_onnx::MS_DOMAIN, "FusedGemm"),
        ]
    );
    assert_eq!(fused.nodes[1].inputs.len(), 4, "the residual is Z");
    assert!(fused.opset_version(kiln_onnx::MS_DOMAIN).is_some());
    let dims = [2usize, 4, 5, 5];
    let (want, got) = (run(&g, &dims), run(&fused, &dims));
    let d = max_abs(&want["y"], &got["y"]);
    assert!(d < 1e-5, "max abs diff {d}");
    assert!(want["y"].to_f64_vec().iter().any(|v| *v > 0.0));
    // the fused graph still lowers (host part of a build)
    let (opt, report) = super::super::passes::optimize(&g).unwrap();
    assert_eq!(report.fused_epilogues, 3);
    let spec = super::super::lower::specialize(&opt, &[("x".to_string(), dims.to_vec())]).unwrap();
    super::super::lower::lower(&spec, DataType::F16).unwrap();
}

#[test]
fn a_residual_of_another_shape_is_not_fused() {
    // Add with a broadcast bias-like operand: Z would need broadcasting, so only Relu-less
    // chains stay as they are.
    let mut rng = fastrand::Rng::with_seed(6);
    let mut b = GraphBuilder::new("bcast").opset(17);
    let x = b.input(
        "x",
        DataType::F32,
        &[Dim::Known(1), Dim::Known(2), Dim::Known(3), Dim::Known(3)],
    );
    let w = b.initializer(Tensor::from_vec("w", vec![2, 2, 1, 1], random(&mut rng, 4)).unwrap());
    let c = b.node("Conv", &[&x, &w]).output();
    let k = b.initializer(Tensor::from_vec("k", vec![2, 1, 1], random(&mut rng, 2)).unwrap());
    let y = b.node("Add", &[&c, &k]).output_named("y");
    b.output(
        &y,
        DataType::F32,
        &[Dim::Known(1), Dim::Known(2), Dim::Known(3), Dim::Known(3)],
    );
    let g = b.build().unwrap();
    let fused = conv_gemm_epilogues(&g).unwrap();
    assert_eq!(fused.nodes.len(), 2);
    assert!(fused.nodes.iter().all(|n| n.domain.is_empty()));
}
