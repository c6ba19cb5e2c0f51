//! `kiln-core`: the vocabulary every kiln crate shares.
//!
//! Nothing here knows about CUDA or protobuf: data types ([`DataType`]), shapes with symbolic
//! dimensions ([`Shape`], [`Dim`]), named tensor descriptions ([`TensorSpec`]), engine precisions
//! ([`Precision`]) and the error kinds shared by all backends ([`CoreError`]).

mod dtype;
mod error;
mod precision;
mod shape;

pub use dtype::{DataType, Element};
pub use error::CoreError;
pub use precision::Precision;
pub use shape::{Dim, Shape, TensorSpec, checked_element_count};
