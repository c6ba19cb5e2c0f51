//! `kiln-onnx`: the protobuf ONNX loader.
//!
//! [`load`] (a file) and [`from_bytes`] (bytes in memory) decode a `ModelProto` with the
//! `onnx-protobuf` crate and turn it into kiln's [`Graph`] IR: values with symbolic shapes,
//! nodes with typed attributes, initialisers as typed [`Tensor`]s, opset imports and metadata.
//! External data is resolved relative to the model's folder and may not escape it. The graph is
//! validated (one producer per value, every input defined, no cycles) and sorted topologically;
//! then types and shapes are inferred for the ops in the [`ops`] registry.
//!
//! Every failure is an [`OnnxError`] that names the file, the node (name and op) or tensor, and
//! what to do. No input may make the loader panic: `fuzz/` holds a cargo-fuzz target for
//! [`from_bytes`], and the test suite truncates and bit-flips every fixture.

mod attribute;
pub mod builder;
mod constness;
mod error;
mod external;
mod graph;
mod infer;
mod load;
pub mod ops;
mod tensor;
mod validate;
mod wire;
mod writer;

pub use attribute::{AttrValue, Attribute};
pub use builder::GraphBuilder;
pub use constness::constant_values;
pub use error::{NodeRef, OnnxError, Origin, Result, UnsupportedNode};
pub use graph::{
    Graph, ModelMetadata, Node, ONNX_DOMAIN, OpsetImport, ValueInfo, ValueKind, is_onnx_domain,
};
pub use infer::infer_shapes;
pub use load::{LoadOptions, from_bytes, from_bytes_with, load, load_with, tensor_from_pb};
pub use ops::{FusedActivation, MS_DOMAIN, MS_OPSET, Registry, registry, unsupported_nodes};
pub use tensor::Tensor;
pub use validate::validate_and_sort;
pub use writer::{save, to_model_bytes};

/// Oldest default-domain opset kiln accepts. Whether each node can run at the model's opset is
/// the op registry's call ([`OpDef::since_opset`](ops::OpDef)): an op whose meaning changed
/// since is reported by [`unsupported_nodes`] rather than refusing the whole file.
pub const MIN_OPSET: i64 = 1;
/// Newest default-domain opset kiln accepts: that of onnx 1.23, the package whose test suite
/// kiln runs. Opsets above [`CHECKED_OPSET`] load with a warning: their ops run with the newest
/// semantics kiln implements, and the conformance suite says which of their tests pass.
pub const MAX_OPSET: i64 = 28;
/// Newest default-domain opset whose op versions kiln's op files were written against.
pub const CHECKED_OPSET: i64 = 23;
