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
