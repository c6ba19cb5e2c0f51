//! `kiln_onnx::from_bytes` on models made in memory: one dominated by weight bytes (the cost of
//! moving initialisers into tensors) and one dominated by node count (conversion, validation,
//! topological sort and shape inference). CPU only; no GPU clock is involved.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_core::{DataType, Dim};
use kiln_onnx::{GraphBuilder, Tensor};

/// `layers` MatMul + Add + Relu blocks of width `width`: about `layers * width^2 * 4` bytes.
fn mlp(layers: usize, width: usize) -> Vec<u8> {
    let mut b = GraphBuilder::new("mlp").opset(17);
    let batch = Dim::symbol("batch");
    let mut x = b.input("x", DataType::F32, &[batch.clone(), Dim::Known(width)]);
    for i in 0..layers {
        let w = Tensor::from_vec(
            format!("w{i}"),
            vec![width, width],
            vec![0.01f32; width * width],
        )
        .expect("weight tensor");
        let bias = Tensor::from_vec(format!("b{i}"), vec![width], vec![0.0f32; width])
            .expect("bias tensor");
        let w = b.initializer(w);
        let bias = b.initializer(bias);
        let h = b.node("MatMul", &[&x, &w]).output();
        let h = b.node("Add", &[&h, &bias]).output();
        x = b.node("Relu", &[&h]).output();
    }
    b.output(&x, DataType::F32, &[batch, Dim::Known(width)]);
    b.to_bytes().expect("the MLP encodes")
}

/// A chain of `n` elementwise nodes with no weights.
fn chain(n: usize) -> Vec<u8> {
    let mut b = GraphBuilder::new("chain").opset(17);
    let dims = [Dim::symbol("batch"), Dim::Known(64)];
    let mut x = b.input("x", DataType::F32, &dims);
    for i in 0..n {
        let op = if i % 2 == 0 { "Relu" } else { "Neg" };
        x = b.node(op, &[&x]).output();
    }
    b.output(&x, DataType::F32, &dims);
    b.to_bytes().expect("the chain encodes")
}

fn from_bytes(c: &mut Criterion) {
    let mut group = c.benchmark_group("from_bytes");
    for (name, bytes) in [("mlp_8x256", mlp(8, 256)), ("chain_1000", chain(1000))] {
        // The model must load, or the numbers measure an early error.
        let graph = kiln_onnx::from_bytes(&bytes).expect("the bench model loads");
        assert!(!graph.nodes.is_empty());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |bch| {
            bch.iter(|| kiln_onnx::from_bytes(black_box(&bytes)).expect("loads"));
        });
    }
    group.finish();
}

criterion_group!(benches, from_bytes);
criterion_main!(benches);
