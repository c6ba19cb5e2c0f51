//! Arithmetic and network ops.

use super::OpDef;

/// The ops of this folder, registered by [`super::registry`].
pub(crate) const DEFS: &[&OpDef] = &[];
