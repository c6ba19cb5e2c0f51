//! See [`super`] for what this folder holds.

use super::OpFn;

/// `(op_type, function)` for every op of this folder.
pub(crate) const OPS: &[(&str, OpFn)] = &[];
