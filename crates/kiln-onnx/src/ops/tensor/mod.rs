//! Shape and data-movement ops, one file each (the logical and comparison ops share
//! [`logical`]). Their inference also propagates small integer values (`Fact::sym_value`)
//! through shape arithmetic.

use super::OpDef;

mod identity;
mod reshape;
mod shape;
mod size;
#[cfg(test)]
pub(crate) mod testutil;

/// The ops of this folder, registered by [`super::registry`].
pub(crate) const DEFS: &[&OpDef] = &[&identity::DEF, &reshape::DEF, &shape::DEF, &size::DEF];
