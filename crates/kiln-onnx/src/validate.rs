//! Graph validation and topological sort. (Stub: being written.)

use crate::error::Result;
use crate::graph::Graph;

pub fn validate_and_sort(_graph: &mut Graph) -> Result<()> {
    Ok(())
}
