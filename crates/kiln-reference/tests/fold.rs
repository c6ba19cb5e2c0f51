//! Constant folding: folded graphs compute what the original computed, with fewer nodes.

use std::collections::HashMap;

use kiln_core::{DataType, Dim};
use kiln_onnx::{GraphBuilder, Tensor};
use kiln_reference::{FoldOptions, Interpreter, Value, fold_constants, fold_constants_with};
use ndarray::ArrayD;

fn model() -> kiln_onnx::Graph {
    let mut b = GraphBuilder::new("fold").opset(17);
    let x = b.input("x", DataType::F32, &[Dim::symbol("batch"), Dim::Known(3)]);
    let a = b.initializer(Tensor::from_vec("a", vec![3], vec![1.0f32, 2.0, 3.0]).unwrap());
    let c = b.initializer(Tensor::from_vec("c", vec![3], vec![10.0f32, 20.0, 30.0]).unwrap());
    let s = b.node("Add", &[&a, &c]).name("const_add").output();
    let y = b.node("Mul", &[&x, &s]).name("mul").output_named("y");
    b.output(&y, DataType::F32, &[Dim::symbol("batch"), Dim::Known(3)]);
    b.graph()
}

fn input() -> HashMap<String, Value> {
    let x = ArrayD::from_shape_vec(vec![2, 3], vec![0.5f32, -1.5, 2.25, 3.0, 0.125, -7.0]).unwrap();
    HashMap::from([("x".to_string(), Value::F32(x))])
}

#[test]
fn folded_graph_computes_the_same_with_fewer_nodes() {
    let g = model();
    let (folded, report) = fold_constants(&g).unwrap();
    assert_eq!(report.folded_nodes, 1);
    assert_eq!(folded.nodes.len(), 1);
    assert_eq!(folded.nodes[0].name, "mul");
    // a and c are no longer read: dropped; the Add's output is the new initialiser.
    assert_eq!(report.dropped_initializers, 2);
    let names: Vec<&str> = folded.initializers.iter().map(|t| t.name()).collect();
    assert_eq!(names.len(), 1);
    assert_eq!(
        folded.initializers[0].as_slice::<f32>().unwrap().as_ref(),
        &[11.0, 22.0, 33.0]
    );
    let want = Interpreter::new(g).unwrap().run(input()).unwrap();
    let got = Interpreter::new(folded).unwrap().run(input()).unwrap();
    assert_eq!(got["y"], want["y"]);
}

#[test]
fn size_cap_keeps_large_outputs_as_nodes() {
    let (folded, report) = fold_constants_with(
        &model(),
        &FoldOptions {
            max_output_elements: 2,
        },
    )
    .unwrap();
    assert_eq!(report.folded_nodes, 0);
    assert_eq!(folded.nodes.len(), 2);
}

#[test]
fn shape_of_a_fixed_input_folds() {
    let mut b = GraphBuilder::new("shape").opset(17);
    let x = b.input("x", DataType::F32, &[Dim::Known(2), Dim::Known(5)]);
    let s = b.node("Shape", &[&x]).output_named("s");
    b.output(&s, DataType::I64, &[Dim::Known(2)]);
    let (folded, report) = fold_constants(&b.graph()).unwrap();
    assert_eq!(report.folded_nodes, 1);
    assert!(folded.nodes.is_empty());
    assert_eq!(folded.initializers[0].to_i64_vec().unwrap(), vec![2, 5]);

    // With a symbolic dim it cannot fold.
    let mut b = GraphBuilder::new("shape").opset(17);
    let x = b.input("x", DataType::F32, &[Dim::symbol("n"), Dim::Known(5)]);
    let s = b.node("Shape", &[&x]).output_named("s");
    b.output(&s, DataType::I64, &[Dim::Known(2)]);
    let (_, report) = fold_constants(&b.graph()).unwrap();
    assert_eq!(report.folded_nodes, 0);
}
