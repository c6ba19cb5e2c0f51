//! See [`super`] for what this folder holds.

use super::OpFn;

pub mod argmax;
mod common;
pub mod cumsum;
pub mod einsum;
pub mod qdq;
pub mod reduce;
pub mod resize;
#[cfg(test)]
pub(crate) mod test_util;
pub mod topk;

/// `(op_type, function)` for every op of this folder.
pub(crate) const OPS: &[(&str, OpFn)] = &[
    ("ReduceSum", reduce::reduce_sum),
    ("ReduceMean", reduce::reduce_mean),
    ("ReduceMax", reduce::reduce_max),
    ("ReduceMin", reduce::reduce_min),
    ("ReduceProd", reduce::reduce_prod),
    ("ReduceL1", reduce::reduce_l1),
    ("ReduceL2", reduce::reduce_l2),
    ("ReduceSumSquare", reduce::reduce_sum_square),
    ("ReduceLogSum", reduce::reduce_log_sum),
    ("ReduceLogSumExp", reduce::reduce_log_sum_exp),
    ("ArgMax", argmax::arg_max),
    ("ArgMin", argmax::arg_min),
    ("CumSum", cumsum::cum_sum),
    ("TopK", topk::top_k),
    ("Einsum", einsum::einsum),
    ("Resize", resize::resize),
    ("QuantizeLinear", qdq::quantize_linear),
    ("DequantizeLinear", qdq::dequantize_linear),
];
