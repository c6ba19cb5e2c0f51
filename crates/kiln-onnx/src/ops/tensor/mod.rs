//! Shape and data-movement ops, one file each (the logical and comparison ops share
//! [`logical`]). Their inference also propagates small integer values (`Fact::sym_value`)
//! through shape arithmetic.

use super::OpDef;

mod cast;
mod cast_like;
mod concat;
pub(crate) mod constant;
mod constant_of_shape;
mod cumsum;
mod dropout;
mod einsum;
mod expand;
mod flatten;
mod gather;
mod gather_elements;
mod gather_nd;
mod identity;
mod logical;
mod pad;
mod range;
mod reshape;
mod shape;
mod size;
mod slice;
mod split;
mod squeeze;
#[cfg(test)]
pub(crate) mod testutil;
mod tile;
mod transpose;
mod trilu;
mod unsqueeze;
mod where_;

/// The ops of this folder, registered by [`super::registry`].
pub(crate) const DEFS: &[&OpDef] = &[
    &cast::DEF,
    &cast_like::DEF,
    &concat::DEF,
    &constant::DEF,
    &constant_of_shape::DEF,
    &cumsum::DEF,
    &dropout::DEF,
    &einsum::DEF,
    &expand::DEF,
    &flatten::DEF,
    &gather::DEF,
    &gather_elements::DEF,
    &gather_nd::DEF,
    &identity::DEF,
    &logical::DEFS[0],
    &logical::DEFS[1],
    &logical::DEFS[2],
    &logical::DEFS[3],
    &logical::DEFS[4],
    &logical::DEFS[5],
    &logical::DEFS[6],
    &pad::DEF,
    &range::DEF,
    &reshape::DEF,
    &shape::DEF,
    &size::DEF,
    &slice::DEF,
    &split::DEF,
    &squeeze::DEF,
    &tile::DEF,
    &transpose::DEF,
    &trilu::DEF,
    &unsqueeze::DEF,
    &where_::DEF,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_once_each() {
        let mut names: Vec<&str> = DEFS.iter().map(|d| d.op_type).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "an op is listed twice");
        assert_eq!(n, 34);
        for d in DEFS {
            assert!(
                crate::ops::registry().get("", d.op_type).is_some(),
                "{}",
                d.op_type
            );
        }
    }
}
