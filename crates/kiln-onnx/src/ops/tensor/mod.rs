//! Shape and data-movement ops, one file each (the logical and comparison ops share
//! [`logical`]). Their inference also propagates small integer values (`Fact::sym_value`)
//! through shape arithmetic.

use super::OpDef;

mod concat;
mod flatten;
mod gather;
mod gather_elements;
mod identity;
mod reshape;
mod shape;
mod size;
mod slice;
mod split;
mod squeeze;
#[cfg(test)]
pub(crate) mod testutil;
mod transpose;
mod unsqueeze;

/// The ops of this folder, registered by [`super::registry`].
pub(crate) const DEFS: &[&OpDef] = &[
    &concat::DEF,
    &flatten::DEF,
    &gather::DEF,
    &gather_elements::DEF,
    &identity::DEF,
    &reshape::DEF,
    &shape::DEF,
    &size::DEF,
    &slice::DEF,
    &split::DEF,
    &squeeze::DEF,
    &transpose::DEF,
    &unsqueeze::DEF,
];
