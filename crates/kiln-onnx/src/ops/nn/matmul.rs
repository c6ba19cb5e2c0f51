//! Matrix products: Gemm and MatMul.
//!
//! - [Gemm](https://onnx.ai/onnx/operators/onnx__Gemm.html): 1, 6, 7, 9, 11, 13. `Y = alpha *
//!   A' * B' + beta * C` with `A'` = A or its transpose (`transA`), likewise B; A' is `[M, K]`,
//!   B' is `[K, N]`, Y is `[M, N]` and C broadcasts one way to it. Up to 6 C broadcast only
//!   with the `broadcast` attribute; from 7 always, the oldest form kiln implements. C is
//!   required up to 10 and optional from 11.
//! - [MatMul](https://onnx.ai/onnx/operators/onnx__MatMul.html): 1, 9, 13 (types only). numpy
//!   `matmul`: a 1-D A is a row `[1, K]` and a 1-D B a column `[K, 1]`, the added dim being
//!   dropped from the result; the batch dims (all but the last two) broadcast.

use kiln_core::{Dim, Shape};

use super::common::{
    dims_match, expect_outputs, expect_rank, flag_attr, same_dtype, unidirectional,
};
use crate::error::Result;
use crate::ops::util::broadcast;
use crate::ops::{Fact, InferCtx, OpDef};

fn dim_at(s: &Shape, i: usize) -> Dim {
    s.dims().get(i).cloned().unwrap_or(Dim::Unknown)
}

fn infer_gemm(ctx: &mut InferCtx<'_>) -> Result<()> {
    let min = if ctx.opset >= 11 { 2 } else { 3 };
    infer_gemm_inputs(ctx, min)
}

/// Gemm's inference for a node of `min_inputs` to 3 inputs (FusedGemm's C is optional at its
/// domain's opset 1, so it passes 2).
pub(super) fn infer_gemm_inputs(ctx: &mut InferCtx<'_>, min_inputs: usize) -> Result<()> {
    ctx.expect_inputs(min_inputs, 3)?;
    expect_outputs(ctx, 1, 1)?;
    ctx.required(0)?;
    ctx.required(1)?;
    same_dtype(ctx, 0, 1)?;
    if ctx.input(2).is_some() {
        same_dtype(ctx, 0, 2)?;
    }
    let trans_a = flag_attr(ctx, "transA", false)?;
    let trans_b = flag_attr(ctx, "transB", false)?;
    expect_rank(ctx, 0, 2, "A")?;
    expect_rank(ctx, 1, 2, "B")?;
    let (a, b) = (ctx.input_shape(0).cloned(), ctx.input_shape(1).cloned());
    let pick = |s: &Option<Shape>, t: bool| match s {
        Some(s) if t => (dim_at(s, 1), dim_at(s, 0)),
        Some(s) => (dim_at(s, 0), dim_at(s, 1)),
        None => (Dim::Unknown, Dim::Unknown),
    };
    let (m, ka) = pick(&a, trans_a);
    let (kb, n) = pick(&b, trans_b);
    dims_match(
        ctx,
        &ka,
        &kb,
        "the inner dims of A' and B' differ (mind transA/transB)",
    )?;
    let y = Shape(vec![m, n]);
    if let Some(c) = ctx.input_shape(2) {
        unidirectional(ctx, &y, c, "C (input #2)")?;
    }
    let dtype = ctx.input_dtype(0).or(ctx.input_dtype(1));
    let known = a.is_some() || b.is_some();
    ctx.set_output(0, Fact::new(dtype, known.then_some(y)));
    Ok(())
}

fn infer_matmul(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(2, 2)?;
    expect_outputs(ctx, 1, 1)?;
    ctx.required(0)?;
    ctx.required(1)?;
    same_dtype(ctx, 0, 1)?;
    let dtype = ctx.input_dtype(0).or(ctx.input_dtype(1));
    let (Some(a), Some(b)) = (ctx.input_shape(0).cloned(), ctx.input_shape(1).cloned()) else {
        ctx.set_output(0, Fact::new(dtype, None));
        return Ok(());
    };
    for (i, s) in [(0, &a), (1, &b)] {
        if s.rank() == 0 {
            return Err(ctx.err(
                format!("input #{i} is a scalar"),
                "MatMul needs inputs of rank 1 or more (use Mul for scalars)",
            ));
        }
    }
    // Promote 1-D operands: A [K] -> [1, K], B [K] -> [K, 1].
    let a2 = if a.rank() == 1 {
        Shape([vec![Dim::Known(1)], a.0.clone()].concat())
    } else {
        a.clone()
    };
    let b2 = if b.rank() == 1 {
        Shape([b.0.clone(), vec![Dim::Known(1)]].concat())
    } else {
        b.clone()
    };
    let (ar, br) = (a2.rank(), b2.rank());
    let ka = dim_at(&a2, ar - 1);
    let kb = dim_at(&b2, br - 2);
    dims_match(
        ctx,
        &ka,
        &kb,
        &format!("the inner dims of A {a} and B {b} differ"),
    )?;
    let batch_a = Shape(a2.dims().get(..ar - 2).unwrap_or_default().to_vec());
    let batch_b = Shape(b2.dims().get(..br - 2).unwrap_or_default().to_vec());
    let mut dims = broadcast(ctx, &batch_a, &batch_b)?.0;
    if a.rank() > 1 {
        dims.push(dim_at(&a2, ar - 2));
    }
    if b.rank() > 1 {
        dims.push(dim_at(&b2, br - 1));
    }
    ctx.set_output(0, Fact::new(dtype, Some(Shape(dims))));
    Ok(())
}

/// `Gemm`
pub(super) const GEMM: OpDef = OpDef {
    op_type: "Gemm",
    domain: "",
    // Gemm-6's `broadcast` attribute only allowed what numpy broadcasting of C allows.
    since_opset: 6,
    infer: infer_gemm,
};

/// `MatMul`
pub(super) const MATMUL: OpDef = OpDef {
    op_type: "MatMul",
    domain: "",
    since_opset: 1,
    infer: infer_matmul,
};

#[cfg(test)]
mod tests {
    use kiln_core::DataType;

    use super::*;
    use crate::ops::nn::test_util::*;

    #[test]
    fn gemm_transposes_and_bias() {
        let ins = vec![f32s("batchx2048"), f32s("1000x2048"), f32s("1000")];
        let out = infer(&GEMM, 13, vec![int("transB", 1)], ins, 1).unwrap();
        assert_eq!(out_shape(&out), "[batch, 1000]");
        let ins = vec![f32s("2048xbatch"), f32s("2048x1000"), f32s("batchx1")];
        let out = infer(&GEMM, 13, vec![int("transA", 1)], ins, 1).unwrap();
        assert_eq!(out_shape(&out), "[batch, 1000]");
        // C optional from 11, required before.
        let ins = vec![f32s("4x3"), f32s("3x5")];
        assert_eq!(
            out_shape(&infer(&GEMM, 11, vec![], ins.clone(), 1).unwrap()),
            "[4, 5]"
        );
        assert_err(
            infer(&GEMM, 9, vec![], ins, 1),
            "Gemm",
            &["has 2 inputs", "3 to 3"],
        );
        // Scalar C.
        let ins = vec![f32s("4x3"), f32s("3x5"), f32s("")];
        assert!(infer(&GEMM, 9, vec![], ins, 1).is_ok());
        let out = infer(
            &GEMM,
            13,
            vec![],
            vec![f32s("4x3"), unranked(DataType::F32)],
            1,
        );
        assert_eq!(out_shape(&out.unwrap()), "[4, ?]");
    }

    #[test]
    fn gemm_errors() {
        let ins = vec![f32s("4x3"), f32s("4x5")];
        assert_err(
            infer(&GEMM, 13, vec![], ins, 1),
            "Gemm",
            &["inner dims", "3 vs 4"],
        );
        let ins = vec![f32s("4x3"), f32s("3x5"), f32s("3")];
        assert_err(
            infer(&GEMM, 13, vec![], ins, 1),
            "Gemm",
            &["C (input #2)", "[4, 5]"],
        );
        let ins = vec![f32s("2x4x3"), f32s("3x5")];
        assert_err(
            infer(&GEMM, 13, vec![], ins, 1),
            "Gemm",
            &["A (input #0)", "rank 2"],
        );
        let ins = vec![f32s("4x3"), f32s("3x5")];
        assert_err(
            infer(&GEMM, 13, vec![int("transA", 2)], ins, 1),
            "Gemm",
            &["'transA'"],
        );
    }

    fn mm(a: &str, b: &str) -> Result<Vec<Fact>> {
        infer(&MATMUL, 13, vec![], vec![f32s(a), f32s(b)], 1)
    }

    #[test]
    fn matmul_numpy_semantics() {
        assert_eq!(
            out_shape(&mm("batchxseqx768", "768x3072").unwrap()),
            "[batch, seq, 3072]"
        );
        assert_eq!(
            out_shape(&mm("batchx12xseqx64", "batchx12x64xseq").unwrap()),
            "[batch, 12, seq, seq]"
        );
        assert_eq!(out_shape(&mm("3x1x4x5", "2x5x6").unwrap()), "[3, 2, 4, 6]");
        // 1-D operands: the promoted dim is dropped.
        assert_eq!(out_shape(&mm("5", "5x6").unwrap()), "[6]");
        assert_eq!(out_shape(&mm("bx4x5", "5").unwrap()), "[b, 4]");
        assert_eq!(out_shape(&mm("5", "5").unwrap()), "[]");
        assert_eq!(out_shape(&mm("5", "bx5x6").unwrap()), "[b, 6]");
        let out = infer(
            &MATMUL,
            13,
            vec![],
            vec![f32s("4x5"), unranked(DataType::F32)],
            1,
        );
        assert_eq!(out.unwrap()[0].shape, None);
    }

    #[test]
    fn matmul_errors() {
        assert_err(mm("4x5", "6x7"), "MatMul", &["inner dims", "5 vs 6"]);
        assert_err(mm("2x4x5", "3x5x7"), "MatMul", &["do not broadcast"]);
        assert_err(mm("", "5"), "MatMul", &["scalar"]);
        assert_err(mm("5", "4"), "MatMul", &["5 vs 4"]);
    }
}
