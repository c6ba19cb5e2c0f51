//! Test engines: the CPU reference over small graphs, and a wrapper that adds a fixed latency
//! per run and logs what it ran.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use kiln_core::{
    BackendError, DataType, Dim, Engine, ExecutionContext, HostTensor, OptimizationProfile,
    TensorSpec,
};
use kiln_onnx::{GraphBuilder, Tensor};
use kiln_reference::CpuEngine;
use parking_lot::Mutex;

/// y = x * 2 + 1 with x: [batch, width] f32; w = z - 0.5 with z: [batch, 3] f32.
pub fn affine(width: usize) -> Arc<CpuEngine> {
    let mut b = GraphBuilder::new("affine").opset(17);
    let x = b.input(
        "x",
        DataType::F32,
        &[Dim::symbol("batch"), Dim::Known(width)],
    );
    let z = b.input("z", DataType::F32, &[Dim::symbol("batch"), Dim::Known(3)]);
    let two = b.initializer(Tensor::scalar("two", 2.0f32));
    let one = b.initializer(Tensor::scalar("one", 1.0f32));
    let half = b.initializer(Tensor::scalar("half", 0.5f32));
    let x2 = b.node("Mul", &[&x, &two]).output_named("x2");
    let y = b.node("Add", &[&x2, &one]).output_named("y");
    let w = b.node("Sub", &[&z, &half]).output_named("w");
    b.output(
        &y,
        DataType::F32,
        &[Dim::symbol("batch"), Dim::Known(width)],
    );
    b.output(&w, DataType::F32, &[Dim::symbol("batch"), Dim::Known(3)]);
    Arc::new(CpuEngine::new(b.graph()).unwrap())
}

/// y = x * 2 + 1 with x: [batch, 1] f32: the trivial model of the soak and the benches.
pub fn trivial() -> Arc<CpuEngine> {
    let mut b = GraphBuilder::new("trivial").opset(17);
    let x = b.input("x", DataType::F32, &[Dim::symbol("batch"), Dim::Known(1)]);
    let two = b.initializer(Tensor::scalar("two", 2.0f32));
    let one = b.initializer(Tensor::scalar("one", 1.0f32));
    let x2 = b.node("Mul", &[&x, &two]).output_named("x2");
    let y = b.node("Add", &[&x2, &one]).output_named("y");
    b.output(&y, DataType::F32, &[Dim::symbol("batch"), Dim::Known(1)]);
    Arc::new(CpuEngine::new(b.graph()).unwrap())
}

/// A request for the trivial model whose rows all hold `value`.
pub fn trivial_request(value: f32, rows: usize) -> kiln_batch::Request {
    kiln_batch::Request::new(vec![
        HostTensor::from_slice("x", &[rows, 1], &vec![value; rows]).unwrap(),
    ])
}

/// Random non-zero inputs for [`affine`].
pub fn affine_inputs(rng: &mut fastrand::Rng, rows: usize, width: usize) -> Vec<HostTensor> {
    let mut r = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let v = rng.f32() * 20.0 - 10.0;
                if v == 0.0 { 0.25 } else { v }
            })
            .collect()
    };
    vec![
        HostTensor::from_slice("x", &[rows, width], &r(rows * width)).unwrap(),
        HostTensor::from_slice("z", &[rows, 3], &r(rows * 3)).unwrap(),
    ]
}

/// Wraps an engine: each run sleeps `base + per_row · rows` (or what `latency` says), and the
/// first f32 of every request row-block is logged so tests can see what ran together and when.
pub struct Slow {
    pub inner: Arc<dyn Engine>,
    pub base: Duration,
    pub per_row: Duration,
    /// Per run: the first input's first column, one entry per row.
    pub log: Arc<Mutex<Vec<Vec<f32>>>>,
    /// If set, the sleep comes from the run's first value instead (milliseconds).
    pub sleep_from_value: bool,
    /// Panic when a run's first value equals this.
    pub panic_on: Option<f32>,
}

impl Slow {
    pub fn new(inner: Arc<dyn Engine>, base: Duration) -> Slow {
        Slow {
            inner,
            base,
            per_row: Duration::ZERO,
            log: Arc::default(),
            sleep_from_value: false,
            panic_on: None,
        }
    }
}

impl Engine for Slow {
    fn backend(&self) -> &str {
        "slow-test"
    }
    fn inputs(&self) -> &[TensorSpec] {
        self.inner.inputs()
    }
    fn outputs(&self) -> &[TensorSpec] {
        self.inner.outputs()
    }
    fn profiles(&self) -> &[OptimizationProfile] {
        self.inner.profiles()
    }
    fn device_memory_size(&self, s: &[(&str, &[usize])]) -> Result<usize, BackendError> {
        self.inner.device_memory_size(s)
    }
    fn create_context(self: Arc<Self>) -> Result<Box<dyn ExecutionContext>, BackendError> {
        let inner = self.inner.clone().create_context()?;
        Ok(Box::new(SlowCtx {
            engine: self,
            inner,
        }))
    }
}

struct SlowCtx {
    engine: Arc<Slow>,
    inner: Box<dyn ExecutionContext>,
}

impl ExecutionContext for SlowCtx {
    fn set_input_shape(&mut self, name: &str, dims: &[usize]) -> Result<(), BackendError> {
        self.inner.set_input_shape(name, dims)
    }
    fn output_shape(&self, name: &str) -> Result<Vec<usize>, BackendError> {
        self.inner.output_shape(name)
    }
    fn execute_host(&mut self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, BackendError> {
        let x = inputs[0].as_slice::<f32>().unwrap();
        let width = inputs[0].dims[1..].iter().product::<usize>().max(1);
        let firsts: Vec<f32> = x.chunks(width).map(|r| r[0]).collect();
        let rows = inputs[0].dims[0];
        if self.engine.panic_on == Some(firsts[0]) {
            panic!("test panic on value {}", firsts[0]);
        }
        let sleep = if self.engine.sleep_from_value {
            Duration::from_secs_f64(firsts[0].max(0.0) as f64 / 1e3)
        } else {
            self.engine.base + self.engine.per_row * rows as u32
        };
        std::thread::sleep(sleep);
        self.engine.log.lock().push(firsts);
        self.inner.execute_host(inputs)
    }
}
