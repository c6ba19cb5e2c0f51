//! `kiln-core`: the vocabulary every kiln crate shares.
//!
//! Nothing here knows about CUDA or protobuf: data types ([`DataType`]), shapes with symbolic
//! dimensions ([`Shape`], [`Dim`]), named tensor descriptions ([`TensorSpec`]), engine precisions
//! ([`Precision`]), the error kinds shared by all backends ([`CoreError`], [`BackendError`])
//! and the backend traits ([`Engine`], [`ExecutionContext`]).

pub mod backend;
mod dtype;
mod error;
mod precision;
mod shape;

pub use backend::{
    BackendError, DevicePtr, Engine, ExecutionContext, HostTensor, OptimizationProfile,
    ProfileInput, StreamHandle,
};
pub use dtype::{DataType, Element};
pub use error::CoreError;
pub use precision::Precision;
pub use shape::{Dim, Shape, TensorSpec, checked_element_count};
