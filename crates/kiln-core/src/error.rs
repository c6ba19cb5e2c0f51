//! Error kinds shared by all kiln crates.

use thiserror::Error;

/// Errors of the shared vocabulary (parsing shapes, types and precisions from text).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// Text that should name a value of some kind did not.
    #[error("cannot parse {what} from {input:?}: expected {expected}")]
    Parse {
        what: &'static str,
        input: String,
        expected: &'static str,
    },
    /// A shape's element count does not fit in `usize`.
    #[error("shape {shape} has more elements than fit in memory")]
    ShapeOverflow { shape: String },
}
