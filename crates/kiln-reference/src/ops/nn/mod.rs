//! See [`super`] for what this folder holds.

use super::OpFn;

mod common;
pub mod conv;
pub mod fused;
pub mod gemm;
pub mod lrn;
pub mod norm;
pub mod pool;
pub mod softmax;

/// `(op_type, function)` for every op of this folder.
pub(crate) const OPS: &[(&str, OpFn)] = &[
    ("Gemm", gemm::gemm),
    ("MatMul", gemm::matmul),
    ("Conv", conv::conv),
    ("ConvTranspose", conv::conv_transpose),
    ("MaxPool", pool::max_pool),
    ("AveragePool", pool::average_pool),
    ("GlobalMaxPool", pool::global_max_pool),
    ("GlobalAveragePool", pool::global_average_pool),
    ("LRN", lrn::lrn),
    ("BatchNormalization", norm::batch_normalization),
    ("InstanceNormalization", norm::instance_normalization),
    ("LayerNormalization", norm::layer_normalization),
    ("GroupNormalization", norm::group_normalization),
    ("Softmax", softmax::softmax),
    ("LogSoftmax", softmax::log_softmax),
];

/// `(op_type, function)` for the `com.microsoft` ops of this folder.
pub(crate) const MS_OPS: &[(&str, OpFn)] = &[
    ("FusedConv", fused::fused_conv),
    ("FusedGemm", fused::fused_gemm),
];
