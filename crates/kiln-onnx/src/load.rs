//! Decoding: bytes -> `ModelProto` -> [`Graph`]. (Stub: being written.)

use std::path::Path;

use crate::error::{OnnxError, Origin, Result};
use crate::graph::Graph;

/// What [`load_with`] and [`from_bytes_with`] do beyond decoding.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Run shape and type inference for registered ops (default true).
    pub infer_shapes: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { infer_shapes: true }
    }
}

pub fn load(path: impl AsRef<Path>) -> Result<Graph> {
    load_with(path, &LoadOptions::default())
}

pub fn load_with(path: impl AsRef<Path>, _opts: &LoadOptions) -> Result<Graph> {
    Err(OnnxError::Decode {
        file: Origin::file(path.as_ref()),
        detail: "loader not written yet".into(),
    })
}

pub fn from_bytes(bytes: &[u8]) -> Result<Graph> {
    from_bytes_with(bytes, &LoadOptions::default())
}

pub fn from_bytes_with(_bytes: &[u8], _opts: &LoadOptions) -> Result<Graph> {
    Err(OnnxError::Decode {
        file: Origin::bytes(),
        detail: "loader not written yet".into(),
    })
}
