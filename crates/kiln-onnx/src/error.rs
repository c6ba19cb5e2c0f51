//! The loader's one error type. Every message names the file, where in it (graph, node with
//! name and op, tensor) and what to do about it.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Where a model came from: a file, or bytes handed over in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin(pub Option<PathBuf>);

impl Origin {
    pub fn file(path: &Path) -> Origin {
        Origin(Some(path.to_path_buf()))
    }

    pub fn bytes() -> Origin {
        Origin(None)
    }

    pub fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(p) => write!(f, "{}", p.display()),
            None => f.write_str("<model bytes>"),
        }
    }
}

/// A node of a graph, as named in messages: `node 'conv1' (Conv, #3)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    /// Position in the graph's node list as stored in the file.
    pub index: usize,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() {
            "<unnamed>"
        } else {
            &self.name
        };
        if self.domain.is_empty() || self.domain == "ai.onnx" {
            write!(f, "node '{}' ({}, #{})", name, self.op_type, self.index)
        } else {
            write!(
                f,
                "node '{}' ({}::{}, #{})",
                name, self.domain, self.op_type, self.index
            )
        }
    }
}

/// One node whose op kiln does not implement, as reported by the registry check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedNode {
    pub node: NodeRef,
    /// Opset version of the node's domain in this model (None if the domain is not imported).
    pub opset: Option<i64>,
    /// Why: unknown op, unknown domain, or an opset older than kiln's implementation.
    pub reason: String,
}

impl fmt::Display for UnsupportedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.node, self.reason)
    }
}

fn list_unsupported(nodes: &[UnsupportedNode]) -> String {
    nodes
        .iter()
        .map(|n| format!("\n  - {n}"))
        .collect::<Vec<_>>()
        .join("")
}

/// Everything that can go wrong while loading, validating or inferring an ONNX model.
#[derive(Debug, Error)]
pub enum OnnxError {
    /// The file (or an external data file) could not be read.
    #[error("{file}: cannot read {what}: {source}. Check that the path exists and is readable.")]
    Io {
        file: Origin,
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a decodable ONNX ModelProto.
    #[error(
        "{file}: not a valid ONNX model: {detail}. The file is truncated, corrupt or not ONNX; \
         re-export it (e.g. torch.onnx.export) or check the download."
    )]
    Decode { file: Origin, detail: String },

    /// A model-level problem (IR version, opset imports, missing graph).
    #[error("{file}: {problem}. {fix}")]
    Model {
        file: Origin,
        problem: String,
        fix: String,
    },

    /// A problem with the graph's structure (inputs, outputs, cycles, producers).
    #[error("{file}: graph '{graph}': {problem}. {fix}")]
    Graph {
        file: Origin,
        graph: String,
        problem: String,
        fix: String,
    },

    /// A problem with one node (attributes, inputs, outputs, shapes).
    #[error("{file}: {node}: {problem}. {fix}")]
    Node {
        file: Origin,
        /// Boxed to keep `OnnxError` small (it travels in every `Result`).
        node: Box<NodeRef>,
        problem: String,
        fix: String,
    },

    /// A problem with one tensor's data (initialiser, Constant value, attribute tensor).
    #[error("{file}: tensor '{tensor}': {problem}. {fix}")]
    Tensor {
        file: Origin,
        tensor: String,
        problem: String,
        fix: String,
    },

    /// External data that is missing, short, or points outside the model's folder.
    #[error("{file}: external data of tensor '{tensor}' (location '{location}'): {problem}. {fix}")]
    ExternalData {
        file: Origin,
        tensor: String,
        location: String,
        problem: String,
        fix: String,
    },

    /// Nodes whose ops kiln does not implement, all reported at once.
    #[error(
        "{file}: {} node(s) use ops kiln does not support:{}\nRemove or replace these ops \
         (e.g. export with another opset), or implement them in kiln.",
        nodes.len(),
        list_unsupported(nodes)
    )]
    Unsupported {
        file: Origin,
        nodes: Vec<UnsupportedNode>,
    },
}

impl OnnxError {
    /// The file this error is about.
    pub fn origin(&self) -> &Origin {
        match self {
            OnnxError::Io { file, .. }
            | OnnxError::Decode { file, .. }
            | OnnxError::Model { file, .. }
            | OnnxError::Graph { file, .. }
            | OnnxError::Node { file, .. }
            | OnnxError::Tensor { file, .. }
            | OnnxError::ExternalData { file, .. }
            | OnnxError::Unsupported { file, .. } => file,
        }
    }

    fn origin_mut(&mut self) -> &mut Origin {
        match self {
            OnnxError::Io { file, .. }
            | OnnxError::Decode { file, .. }
            | OnnxError::Model { file, .. }
            | OnnxError::Graph { file, .. }
            | OnnxError::Node { file, .. }
            | OnnxError::Tensor { file, .. }
            | OnnxError::ExternalData { file, .. }
            | OnnxError::Unsupported { file, .. } => file,
        }
    }

    /// Names `file` as the error's origin where it had none (errors raised by helpers that do
    /// not know which file they work on).
    pub fn in_file(mut self, file: &Origin) -> OnnxError {
        let o = self.origin_mut();
        if o.0.is_none() {
            *o = file.clone();
        }
        self
    }

    /// A node error, for helpers that know the node but not the file.
    pub fn node(node: NodeRef, problem: impl Into<String>, fix: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            file: Origin::bytes(),
            node: Box::new(node),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// A tensor error, for helpers that know the tensor but not the file.
    pub fn tensor(
        tensor: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> OnnxError {
        OnnxError::Tensor {
            file: Origin::bytes(),
            tensor: tensor.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

pub type Result<T, E = OnnxError> = std::result::Result<T, E>;
