//! What every inference backend offers: kiln's own engine (kiln-engine), TensorRT
//! (kiln-nvinfer) and the CPU reference. The batching executor, the CLI and the benches are
//! written against these traits only.
//!
//! The split is TensorRT's: an [`Engine`] is built once, immutable and shared (`Arc`); each
//! [`ExecutionContext`] holds the per-run state (input shapes, bindings, scratch memory) and
//! runs on one stream at a time. kiln-core knows no CUDA, so device addresses and streams
//! travel as integers ([`DevicePtr`], [`StreamHandle`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{DataType, Element, TensorSpec, checked_element_count};

/// A device address (a CUDA device pointer) as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevicePtr(pub u64);

/// A CUDA stream (`cudaStream_t`) as an integer; 0 is the legacy default stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StreamHandle(pub u64);

/// The shapes one dynamic input may take within a profile: every dim of `min` <= `opt` <=
/// `max`, all of one rank. The builder tunes for `opt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInput {
    pub name: String,
    pub min: Vec<usize>,
    pub opt: Vec<usize>,
    pub max: Vec<usize>,
}

/// An optimisation profile (TensorRT's term): shape ranges for the dynamic inputs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OptimizationProfile {
    pub inputs: Vec<ProfileInput>,
}

impl fmt::Display for OptimizationProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.inputs.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{}: min {:?} opt {:?} max {:?}",
                p.name, p.min, p.opt, p.max
            )?;
        }
        Ok(())
    }
}

impl OptimizationProfile {
    /// Checks the ranges themselves (same rank, min <= opt <= max).
    pub fn validate(&self) -> Result<(), BackendError> {
        for p in &self.inputs {
            let ranks_ok = p.min.len() == p.opt.len() && p.opt.len() == p.max.len();
            let order_ok = ranks_ok
                && p.min
                    .iter()
                    .zip(&p.opt)
                    .zip(&p.max)
                    .all(|((a, b), c)| a <= b && b <= c);
            if !order_ok {
                return Err(BackendError::BadProfile {
                    input: p.name.clone(),
                    problem: format!(
                        "min {:?}, opt {:?}, max {:?} must have one rank and min <= opt <= max",
                        p.min, p.opt, p.max
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether `dims` for input `name` lies inside this profile (inputs the profile does not
    /// mention are unconstrained here).
    pub fn check(&self, name: &str, dims: &[usize]) -> Result<(), BackendError> {
        let Some(p) = self.inputs.iter().find(|p| p.name == name) else {
            return Ok(());
        };
        let inside = dims.len() == p.min.len()
            && dims
                .iter()
                .zip(&p.min)
                .zip(&p.max)
                .all(|((d, lo), hi)| lo <= d && d <= hi);
        if inside {
            Ok(())
        } else {
            Err(BackendError::ShapeOutsideProfile {
                input: name.to_string(),
                shape: dims.to_vec(),
                profile: format!("min {:?} max {:?}", p.min, p.max),
            })
        }
    }
}

/// A tensor in host memory: element type, dims and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<usize>,
    /// `product(dims) * dtype.size_in_bytes()` bytes.
    pub data: Vec<u8>,
}

impl HostTensor {
    /// A tensor of zero bytes (for outputs to be written).
    pub fn zeros(
        name: impl Into<String>,
        dtype: DataType,
        dims: &[usize],
    ) -> Result<HostTensor, BackendError> {
        let name = name.into();
        let n = byte_len(&name, dtype, dims)?;
        Ok(HostTensor {
            name,
            dtype,
            dims: dims.to_vec(),
            data: vec![0; n],
        })
    }

    /// A tensor from typed values.
    pub fn from_slice<T: Element>(
        name: impl Into<String>,
        dims: &[usize],
        values: &[T],
    ) -> Result<HostTensor, BackendError> {
        let name = name.into();
        let n = byte_len(&name, T::DTYPE, dims)?;
        let data = bytemuck::cast_slice::<T, u8>(values).to_vec();
        if data.len() != n {
            return Err(BackendError::WrongShape {
                name,
                expected: dims.to_vec(),
                got: vec![values.len()],
            });
        }
        Ok(HostTensor {
            name,
            dtype: T::DTYPE,
            dims: dims.to_vec(),
            data,
        })
    }

    /// The data as `&[T]` (copied once if the bytes are misaligned); `None` if `T` is not the
    /// tensor's element type.
    pub fn as_slice<T: Element>(&self) -> Option<Cow<'_, [T]>> {
        if T::DTYPE != self.dtype {
            return None;
        }
        Some(match bytemuck::try_cast_slice::<u8, T>(&self.data) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(&self.data)),
        })
    }

    pub fn element_count(&self) -> usize {
        self.data.len() / self.dtype.size_in_bytes()
    }
}

fn byte_len(name: &str, dtype: DataType, dims: &[usize]) -> Result<usize, BackendError> {
    checked_element_count(dims)
        .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
        .ok_or_else(|| BackendError::WrongShape {
            name: name.to_string(),
            expected: Vec::new(),
            got: dims.to_vec(),
        })
}

/// Errors every backend can report. Messages name the tensor or input and say what to do.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum BackendError {
    #[error(
        "input '{input}': shape {shape:?} is outside the engine's optimisation profile ({profile}); rebuild the engine with a profile that covers it (--min-shapes/--max-shapes)"
    )]
    ShapeOutsideProfile {
        input: String,
        shape: Vec<usize>,
        profile: String,
    },
    #[error("optimisation profile for input '{input}': {problem}")]
    BadProfile { input: String, problem: String },
    #[error("the engine has no tensor named '{name}'; its tensors are: {}", known.join(", "))]
    UnknownTensor { name: String, known: Vec<String> },
    #[error("tensor '{name}': element type {got} where the engine expects {expected}")]
    WrongType {
        name: String,
        expected: DataType,
        got: DataType,
    },
    #[error("tensor '{name}': shape {got:?} where {expected:?} was expected")]
    WrongShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("input '{name}' has no shape set or no value given; set every input before running")]
    Unset { name: String },
    #[error("the {backend} backend does not support {what}")]
    Unsupported { backend: String, what: String },
    #[error("{backend} backend: {message}")]
    Runtime { backend: String, message: String },
}

/// A built engine: immutable, shared by every context made from it.
pub trait Engine: Send + Sync {
    /// `"kiln"`, `"tensorrt"`, `"cpu"`, ...
    fn backend(&self) -> &str;
    /// The engine's inputs (dims may be symbolic).
    fn inputs(&self) -> &[TensorSpec];
    /// The engine's outputs (dims may be symbolic until input shapes are set).
    fn outputs(&self) -> &[TensorSpec];
    /// The optimisation profiles (empty when every shape is fixed, or the backend takes any).
    fn profiles(&self) -> &[OptimizationProfile];
    /// Device memory one context needs at these input shapes (0 for host backends).
    fn device_memory_size(&self, input_shapes: &[(&str, &[usize])]) -> Result<usize, BackendError>;
    /// A new execution context.
    fn create_context(self: Arc<Self>) -> Result<Box<dyn ExecutionContext>, BackendError>;
}

/// Per-run state of an engine: input shapes, bindings, scratch memory. One stream at a time.
pub trait ExecutionContext: Send {
    /// Sets the shape of a dynamic input (checked against the profile).
    fn set_input_shape(&mut self, name: &str, dims: &[usize]) -> Result<(), BackendError>;
    /// An output's shape once every input shape is set.
    fn output_shape(&self, name: &str) -> Result<Vec<usize>, BackendError>;
    /// Runs synchronously on host tensors, copying to and from the device as the backend needs:
    /// the path every backend has (tests, `kiln run`, the CPU backend). Input shapes are taken
    /// from the tensors. Returns the outputs in the engine's output order.
    fn execute_host(&mut self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, BackendError>;
    /// Whether [`ExecutionContext::bind`] and [`ExecutionContext::enqueue`] work (GPU
    /// backends).
    fn supports_device_io(&self) -> bool {
        false
    }
    /// Binds a tensor to device memory.
    fn bind(&mut self, name: &str, _ptr: DevicePtr) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "this".into(),
            what: format!("device bindings (tensor '{name}'); use execute_host"),
        })
    }
    /// Turns replay of captured runs (CUDA graphs) on or off and says whether the backend
    /// does it: `false` means runs are always issued step by step (the default). With replay
    /// on, a run whose shapes and bound addresses were seen before is one graph launch, so a
    /// caller that wants it must keep its bindings stable (e.g. fixed staging buffers).
    fn set_cuda_graphs(&mut self, _on: bool) -> bool {
        false
    }
    /// Enqueues one run on `stream` and returns without waiting.
    ///
    /// # Safety
    /// Every bound address must point to device memory of at least the tensor's size (at the
    /// shapes set) that stays valid, and is not written by anything else, until the work on
    /// `stream` has finished; `stream` must be a live stream of the engine's device.
    unsafe fn enqueue(&mut self, _stream: StreamHandle) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "this".into(),
            what: "enqueue on a stream; use execute_host".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_check_shapes() {
        let p = OptimizationProfile {
            inputs: vec![ProfileInput {
                name: "x".into(),
                min: vec![1, 3],
                opt: vec![8, 3],
                max: vec![32, 3],
            }],
        };
        p.validate().unwrap();
        p.check("x", &[16, 3]).unwrap();
        p.check("other", &[1000]).unwrap();
        let e = p.check("x", &[64, 3]).unwrap_err();
        assert!(
            e.to_string().contains("input 'x'") && e.to_string().contains("[64, 3]"),
            "{e}"
        );
        assert!(p.check("x", &[8]).is_err());
        let bad = OptimizationProfile {
            inputs: vec![ProfileInput {
                name: "x".into(),
                min: vec![4],
                opt: vec![2],
                max: vec![8],
            }],
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn host_tensors() {
        let t = HostTensor::from_slice("a", &[2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(t.element_count(), 4);
        assert_eq!(&*t.as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
        assert!(t.as_slice::<i32>().is_none());
        assert!(HostTensor::from_slice("b", &[3], &[1.0f32]).is_err());
        assert!(HostTensor::zeros("c", DataType::F32, &[usize::MAX, 2]).is_err());
        assert_eq!(
            HostTensor::zeros("d", DataType::F16, &[3])
                .unwrap()
                .data
                .len(),
            6
        );
    }
}
