//! Constant subgraph identification. (Stub: being written.)

use std::collections::HashSet;

use crate::graph::Graph;

pub fn constant_values(_graph: &Graph) -> HashSet<String> {
    HashSet::new()
}
