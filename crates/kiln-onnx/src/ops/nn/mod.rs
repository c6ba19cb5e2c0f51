//! Arithmetic and network ops: convolution, pooling, normalisation, activations, elementwise
//! math with broadcasting, matrix products, reductions, TopK, Resize and quantisation.
//!
//! One file per op or per family of ops sharing a signature; each file's module doc holds the
//! spec links and the opset versions where its ops changed. Shared helpers live in [`common`].
//! ONNX Runtime's FusedConv and FusedGemm (domain `com.microsoft`) are in [`fused`], listed in
//! `MS_DEFS`.

use super::OpDef;

mod activation;
mod binary;
mod common;
mod conv;
pub mod fused;
mod matmul;
mod norm;
mod pool;
mod quant;
mod reduce;
mod resize;
#[cfg(test)]
mod test_util;
mod topk;
mod unary;
mod variadic;
mod window;

/// The ops of this folder, registered by [`super::registry`].
pub(crate) const DEFS: &[&OpDef] = &[
    &unary::RELU,
    &unary::LEAKY_RELU,
    &unary::SIGMOID,
    &unary::HARD_SIGMOID,
    &unary::HARD_SWISH,
    &unary::TANH,
    &unary::GELU,
    &unary::ERF,
    &unary::SOFTPLUS,
    &unary::ELU,
    &unary::SELU,
    &unary::MISH,
    &unary::SQRT,
    &unary::RECIPROCAL,
    &unary::EXP,
    &unary::LOG,
    &unary::ABS,
    &unary::NEG,
    &unary::FLOOR,
    &unary::CEIL,
    &unary::ROUND,
    &activation::CLIP,
    &activation::PRELU,
    &activation::SOFTMAX,
    &activation::LOG_SOFTMAX,
    &binary::ADD,
    &binary::SUB,
    &binary::MUL,
    &binary::DIV,
    &binary::POW,
    &variadic::MIN,
    &variadic::MAX,
    &variadic::SUM,
    &variadic::MEAN,
    &conv::CONV,
    &conv::CONV_TRANSPOSE,
    &pool::MAX_POOL,
    &pool::AVERAGE_POOL,
    &pool::GLOBAL_AVERAGE_POOL,
    &pool::GLOBAL_MAX_POOL,
    &norm::BATCH_NORMALIZATION,
    &norm::INSTANCE_NORMALIZATION,
    &norm::LAYER_NORMALIZATION,
    &norm::GROUP_NORMALIZATION,
    &norm::LRN,
    &matmul::GEMM,
    &matmul::MATMUL,
    &reduce::REDUCE_SUM,
    &reduce::REDUCE_MEAN,
    &reduce::REDUCE_MAX,
    &reduce::REDUCE_MIN,
    &reduce::REDUCE_PROD,
    &reduce::REDUCE_L2,
    &reduce::ARG_MAX,
    &topk::TOPK,
    &resize::RESIZE,
    &quant::QUANTIZE_LINEAR,
    &quant::DEQUANTIZE_LINEAR,
];

/// The `com.microsoft` ops of this folder, registered by [`super::registry`].
pub(crate) const MS_DEFS: &[&OpDef] = &[&fused::FUSED_CONV, &fused::FUSED_GEMM];

#[cfg(test)]
mod tests {
    use super::DEFS;
    use crate::ops::registry;

    #[test]
    fn every_op_is_registered_once_in_the_default_domain() {
        let mut names: Vec<_> = DEFS.iter().map(|d| d.op_type).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "an op is listed twice");
        assert_eq!(n, 58, "the 58 ops of the brief");
        for d in DEFS {
            assert_eq!(d.domain, "");
            let got = registry().get("ai.onnx", d.op_type).map(|r| r.since_opset);
            assert_eq!(got, Some(d.since_opset), "{}", d.op_type);
        }
    }
}
