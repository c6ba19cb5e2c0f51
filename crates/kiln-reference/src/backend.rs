//! The CPU reference as a backend: [`CpuEngine`] and its contexts implement kiln-core's
//! [`Engine`] / [`ExecutionContext`], so everything written against those traits (the
//! batching executor, the CLI) runs without a GPU.

use std::collections::HashMap;
use std::sync::Arc;

use kiln_core::{
    BackendError, Engine, ExecutionContext, HostTensor, OptimizationProfile, TensorSpec,
};
use kiln_onnx::{Graph, Tensor};

use crate::error::{RefError, Result};
use crate::interpreter::Interpreter;
use crate::value::Value;

const BACKEND: &str = "cpu";

/// A graph prepared for the CPU reference, shared by its contexts.
pub struct CpuEngine {
    interp: Interpreter,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    profiles: Vec<OptimizationProfile>,
}

impl CpuEngine {
    /// Prepares `graph` (constant-folded first). Every graph input and output needs a known
    /// element type and rank.
    pub fn new(graph: Graph) -> Result<CpuEngine> {
        let spec = |v: &kiln_onnx::ValueInfo, what: &str| -> Result<TensorSpec> {
            match (v.dtype, &v.shape) {
                (Some(d), Some(s)) => Ok(TensorSpec::new(v.name.clone(), d, s.clone())),
                _ => Err(RefError::Input {
                    name: v.name.clone(),
                    problem: format!("graph {what} has no known element type and rank"),
                    fix: "Give the model's inputs and outputs types and shapes".into(),
                }),
            }
        };
        let inputs = graph
            .inputs
            .iter()
            .map(|v| spec(v, "input"))
            .collect::<Result<Vec<_>>>()?;
        let outputs = graph
            .outputs
            .iter()
            .map(|v| spec(v, "output"))
            .collect::<Result<Vec<_>>>()?;
        let (folded, _) = crate::fold_constants(&graph)?;
        Ok(CpuEngine {
            interp: Interpreter::new(folded)?,
            inputs,
            outputs,
            profiles: Vec::new(),
        })
    }

    /// Sets the profiles contexts check input shapes against.
    pub fn with_profiles(mut self, profiles: Vec<OptimizationProfile>) -> Result<CpuEngine> {
        for p in &profiles {
            p.validate().map_err(|e| RefError::Internal {
                what: e.to_string(),
            })?;
        }
        self.profiles = profiles;
        Ok(self)
    }
}

impl Engine for CpuEngine {
    fn backend(&self) -> &str {
        BACKEND
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn profiles(&self) -> &[OptimizationProfile] {
        &self.profiles
    }

    fn device_memory_size(
        &self,
        _input_shapes: &[(&str, &[usize])],
    ) -> Result<usize, BackendError> {
        Ok(0)
    }

    fn create_context(self: Arc<Self>) -> Result<Box<dyn ExecutionContext>, BackendError> {
        Ok(Box::new(CpuContext {
            engine: self,
            shapes: HashMap::new(),
            last_outputs: HashMap::new(),
        }))
    }
}

/// A context of the CPU engine.
pub struct CpuContext {
    engine: Arc<CpuEngine>,
    shapes: HashMap<String, Vec<usize>>,
    /// Output shapes of the last run (the CPU reference has no shape-only pass).
    last_outputs: HashMap<String, Vec<usize>>,
}

fn runtime(e: impl std::fmt::Display) -> BackendError {
    BackendError::Runtime {
        backend: BACKEND.into(),
        message: e.to_string(),
    }
}

impl CpuContext {
    fn check_shape(&self, name: &str, dims: &[usize]) -> Result<(), BackendError> {
        let Some(spec) = self.engine.inputs.iter().find(|s| s.name == name) else {
            return Err(BackendError::UnknownTensor {
                name: name.into(),
                known: self.engine.inputs.iter().map(|s| s.name.clone()).collect(),
            });
        };
        let fits = spec.shape.rank() == dims.len()
            && spec
                .shape
                .dims()
                .iter()
                .zip(dims)
                .all(|(d, &g)| d.known().is_none_or(|k| k == g));
        if !fits {
            return Err(BackendError::WrongShape {
                name: name.into(),
                expected: spec
                    .shape
                    .dims()
                    .iter()
                    .map(|d| d.known().unwrap_or(0))
                    .collect(),
                got: dims.to_vec(),
            });
        }
        for p in &self.engine.profiles {
            p.check(name, dims)?;
        }
        Ok(())
    }
}

impl ExecutionContext for CpuContext {
    fn set_input_shape(&mut self, name: &str, dims: &[usize]) -> Result<(), BackendError> {
        self.check_shape(name, dims)?;
        self.shapes.insert(name.to_string(), dims.to_vec());
        Ok(())
    }

    fn output_shape(&self, name: &str) -> Result<Vec<usize>, BackendError> {
        if let Some(s) = self.last_outputs.get(name) {
            return Ok(s.clone());
        }
        let spec = self
            .engine
            .outputs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| BackendError::UnknownTensor {
                name: name.into(),
                known: self.engine.outputs.iter().map(|s| s.name.clone()).collect(),
            })?;
        spec.shape
            .as_known()
            .ok_or_else(|| BackendError::Unsupported {
                backend: BACKEND.into(),
                what: format!(
                    "output shapes before a run for the symbolic output '{name}' {}",
                    spec.shape
                ),
            })
    }

    fn execute_host(&mut self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, BackendError> {
        let mut feed = HashMap::new();
        for t in inputs {
            self.check_shape(&t.name, &t.dims)?;
            let spec = self.engine.inputs.iter().find(|s| s.name == t.name);
            if let Some(spec) = spec
                && spec.dtype != t.dtype
            {
                return Err(BackendError::WrongType {
                    name: t.name.clone(),
                    expected: spec.dtype,
                    got: t.dtype,
                });
            }
            let tensor =
                Tensor::from_bytes(t.name.clone(), t.dtype, t.dims.clone(), t.data.clone())
                    .map_err(runtime)?;
            feed.insert(
                t.name.clone(),
                Value::from_tensor(&tensor).map_err(runtime)?,
            );
        }
        for s in &self.engine.inputs {
            if !feed.contains_key(&s.name) {
                return Err(BackendError::Unset {
                    name: s.name.clone(),
                });
            }
        }
        let mut outs = self.engine.interp.run(feed).map_err(runtime)?;
        let mut result = Vec::with_capacity(self.engine.outputs.len());
        for s in &self.engine.outputs {
            let v = outs
                .remove(&s.name)
                .ok_or_else(|| runtime(format!("output '{}' missing", s.name)))?;
            let t = v.to_tensor(&s.name).map_err(runtime)?;
            self.last_outputs.insert(s.name.clone(), t.dims().to_vec());
            result.push(HostTensor {
                name: s.name.clone(),
                dtype: t.dtype(),
                dims: t.dims().to_vec(),
                data: t.into_bytes(),
            });
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::{DataType, Dim, ProfileInput};
    use kiln_onnx::GraphBuilder;

    fn engine() -> Arc<CpuEngine> {
        let mut b = GraphBuilder::new("double").opset(17);
        let x = b.input("x", DataType::F32, &[Dim::symbol("batch"), Dim::Known(2)]);
        let two = b.initializer(Tensor::scalar("two", 2.0f32));
        let y = b.node("Mul", &[&x, &two]).output_named("y");
        b.output(&y, DataType::F32, &[Dim::symbol("batch"), Dim::Known(2)]);
        let profile = OptimizationProfile {
            inputs: vec![ProfileInput {
                name: "x".into(),
                min: vec![1, 2],
                opt: vec![4, 2],
                max: vec![8, 2],
            }],
        };
        Arc::new(
            CpuEngine::new(b.graph())
                .unwrap()
                .with_profiles(vec![profile])
                .unwrap(),
        )
    }

    #[test]
    fn runs_through_the_traits() {
        let e: Arc<dyn Engine> = engine();
        assert_eq!(e.backend(), "cpu");
        assert_eq!(e.inputs()[0].name, "x");
        let mut ctx = e.clone().create_context().unwrap();
        let x =
            HostTensor::from_slice("x", &[3, 2], &[1.0f32, -2.0, 3.5, 0.25, 7.0, -1.0]).unwrap();
        let out = ctx.execute_host(&[x]).unwrap();
        assert_eq!(out[0].name, "y");
        assert_eq!(out[0].dims, vec![3, 2]);
        assert_eq!(
            &*out[0].as_slice::<f32>().unwrap(),
            &[2.0, -4.0, 7.0, 0.5, 14.0, -2.0]
        );
        assert_eq!(ctx.output_shape("y").unwrap(), vec![3, 2]);
        assert!(!ctx.supports_device_io());
    }

    #[test]
    fn checks_names_types_shapes_and_profiles() {
        let e: Arc<dyn Engine> = engine();
        let mut ctx = e.create_context().unwrap();
        assert!(matches!(
            ctx.set_input_shape("x", &[16, 2]),
            Err(BackendError::ShapeOutsideProfile { .. })
        ));
        assert!(matches!(
            ctx.set_input_shape("nope", &[1, 2]),
            Err(BackendError::UnknownTensor { .. })
        ));
        assert!(matches!(
            ctx.set_input_shape("x", &[2, 3]),
            Err(BackendError::WrongShape { .. })
        ));
        let bad = HostTensor::from_slice("x", &[1, 2], &[1i32, 2]).unwrap();
        assert!(matches!(
            ctx.execute_host(&[bad]),
            Err(BackendError::WrongType { .. })
        ));
        assert!(matches!(
            ctx.execute_host(&[]),
            Err(BackendError::Unset { .. })
        ));
        // SAFETY: not called for real: the CPU backend refuses device work before touching
        // any address.
        let r = unsafe { ctx.enqueue(kiln_core::StreamHandle(0)) };
        assert!(matches!(r, Err(BackendError::Unsupported { .. })));
    }
}
