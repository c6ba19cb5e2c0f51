//! See [`super`] for what this folder holds. Every op here moves or reshapes data without
//! computing with it, so each works for every element type of [`crate::Value`].

use super::OpFn;

mod common;
mod concat;
mod constant;
mod expand;
mod gather;
mod gather_nd;
mod pad;
mod range;
mod reshape;
mod shape;
mod slice;
mod split;
mod transpose;
mod trilu;

/// `(op_type, function)` for every op of this folder.
pub(crate) const OPS: &[(&str, OpFn)] = &[
    ("Reshape", reshape::reshape),
    ("Flatten", reshape::flatten),
    ("Squeeze", reshape::squeeze),
    ("Unsqueeze", reshape::unsqueeze),
    ("Transpose", transpose::transpose),
    ("Concat", concat::concat),
    ("Split", split::split),
    ("Slice", slice::slice),
    ("Gather", gather::gather),
    ("GatherElements", gather::gather_elements),
    ("GatherND", gather_nd::gather_nd),
    ("Expand", expand::expand),
    ("Tile", expand::tile),
    ("Pad", pad::pad),
    ("Shape", shape::shape),
    ("Size", shape::size),
    ("ConstantOfShape", constant::constant_of_shape),
    ("Constant", constant::constant),
    ("Range", range::range),
    ("Trilu", trilu::trilu),
];
