//! Host overhead per request and queue throughput on the CPU path with a trivial model
//! (y = x * 2 + 1, x: [batch, 1] f32).
//!
//! - `overhead/direct_execute_host`: the engine alone, batch 1.
//! - `overhead/executor_infer`: the same request through `infer` (max_queue_delay 0, one
//!   instance); the difference to the direct run is the executor's host overhead.
//! - `throughput/submit_then_wait`: 10,000 one-row requests submitted from one thread, then
//!   waited for (max_batch 64, two instances); elements/s is requests/s.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_batch::{Executor, Request};
use kiln_core::{DataType, Dim, Engine, HostTensor};
use kiln_onnx::{GraphBuilder, Tensor};
use kiln_reference::CpuEngine;

fn trivial() -> Arc<CpuEngine> {
    let mut b = GraphBuilder::new("trivial").opset(17);
    let x = b.input("x", DataType::F32, &[Dim::symbol("batch"), Dim::Known(1)]);
    let two = b.initializer(Tensor::scalar("two", 2.0f32));
    let one = b.initializer(Tensor::scalar("one", 1.0f32));
    let x2 = b.node("Mul", &[&x, &two]).output_named("x2");
    let y = b.node("Add", &[&x2, &one]).output_named("y");
    b.output(&y, DataType::F32, &[Dim::symbol("batch"), Dim::Known(1)]);
    Arc::new(CpuEngine::new(b.graph()).unwrap())
}

fn request(v: f32) -> Request {
    Request::new(vec![HostTensor::from_slice("x", &[1, 1], &[v]).unwrap()])
}

fn overhead(c: &mut Criterion) {
    let engine = trivial();
    let mut g = c.benchmark_group("overhead");
    let mut ctx = engine.clone().create_context().unwrap();
    let x = request(3.0).inputs;
    g.bench_function("direct_execute_host", |b| {
        b.iter(|| ctx.execute_host(&x).unwrap())
    });
    let ex = Executor::builder(engine)
        .max_batch(64)
        .max_queue_delay(Duration::ZERO)
        .build()
        .unwrap();
    g.bench_function("executor_infer", |b| {
        b.iter(|| ex.infer(request(3.0)).unwrap())
    });
    g.finish();
}

fn throughput(c: &mut Criterion) {
    const N: usize = 10_000;
    let ex = Executor::builder(trivial())
        .max_batch(64)
        .max_queue_delay(Duration::from_micros(100))
        .instances_per_gpu(2)
        .queue_capacity(N)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    g.bench_function("submit_then_wait", |b| {
        b.iter(|| {
            let futs: Vec<_> = (0..N).map(|i| ex.submit(request(i as f32))).collect();
            for f in futs {
                f.wait().unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, overhead, throughput);
criterion_main!(benches);
