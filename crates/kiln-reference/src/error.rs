//! Errors of the reference interpreter.

use kiln_onnx::{NodeRef, OnnxError, UnsupportedNode};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RefError {
    /// The model itself is broken or could not be loaded.
    #[error(transparent)]
    Onnx(#[from] OnnxError),

    /// A node could not be computed: bad attributes or input types/shapes.
    #[error("{node}: {problem}. {fix}")]
    Op {
        /// Boxed to keep `RefError` small.
        node: Box<NodeRef>,
        problem: String,
        fix: String,
    },

    /// Ops the interpreter does not implement, all at once.
    #[error(
        "the CPU reference cannot run {} node(s):{}\nThese ops are not implemented in \
         kiln-reference; replace them or implement them.",
        nodes.len(),
        nodes.iter().map(|n| format!("\n  - {n}")).collect::<String>()
    )]
    Unsupported { nodes: Vec<UnsupportedNode> },

    /// A graph input was not given, or given with the wrong type or shape.
    #[error("input '{name}': {problem}. {fix}")]
    Input {
        name: String,
        problem: String,
        fix: String,
    },

    /// A bug in kiln-reference (an invariant that should hold did not).
    #[error("internal error in kiln-reference: {what}. Please report this with the model.")]
    Internal { what: String },
}

pub type Result<T, E = RefError> = std::result::Result<T, E>;
