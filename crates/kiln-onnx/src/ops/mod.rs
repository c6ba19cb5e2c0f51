//! The op registry. (Stub: being written.)

use crate::error::UnsupportedNode;
use crate::graph::Graph;

pub struct Registry;

pub fn registry() -> &'static Registry {
    static R: Registry = Registry;
    &R
}

pub fn unsupported_nodes(_graph: &Graph) -> Vec<UnsupportedNode> {
    Vec::new()
}
