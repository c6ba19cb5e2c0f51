//! Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.
//!
//! - [MaxPool](https://onnx.ai/onnx/operators/onnx__MaxPool.html): 1, 8, 10, 11, 12, 22. 8 added
//!   the optional `Indices` output (int64, Y's shape) and `storage_order`; 10 added
//!   `ceil_mode` and `dilations`; later versions widen types. Without those attributes the
//!   older forms are the same, so kiln implements it from 1.
//! - [AveragePool](https://onnx.ai/onnx/operators/onnx__AveragePool.html): 1, 7, 10, 11, 19,
//!   22. 7 added `count_include_pad` (values only), 10 `ceil_mode`, 19 `dilations`.
//! - [GlobalAveragePool](https://onnx.ai/onnx/operators/onnx__GlobalAveragePool.html),
//!   [GlobalMaxPool](https://onnx.ai/onnx/operators/onnx__GlobalMaxPool.html): 1, 22.
//!   `[N, C, D1..Dn]` to `[N, C, 1..1]`.
//!
//! Output sizes: `floor((D + pads - ((k - 1) * d + 1)) / s) + 1`, with `ceil` instead under
//! `ceil_mode` (a last window that would start in the end padding is dropped); `ceil(D / s)`
//! under SAME_UPPER/SAME_LOWER; VALID pads nothing. `kernel_shape` is required.

use kiln_core::{DataType, Dim, Shape};

use super::common::{expect_outputs, flag_attr, rank_at_least};
use super::window::Window;
use crate::error::Result;
use crate::ops::OpDef;
use crate::ops::{Fact, InferCtx};

fn pooled_shape(ctx: &InferCtx<'_>) -> Result<Option<Shape>> {
    ctx.expect_inputs(1, 1)?;
    let x = ctx.required(0)?;
    let rank = rank_at_least(ctx, 0, 3)?;
    let n = match rank {
        Some(r) => r - 2,
        None => ctx.node.attr_ints("kernel_shape")?.map_or(0, <[i64]>::len),
    };
    let ceil_mode = flag_attr(ctx, "ceil_mode", false)?;
    let Some(win) = Window::read(ctx, n, None)? else {
        return Err(ctx.err(
            "attribute 'kernel_shape' is missing",
            format!("{} needs 'kernel_shape'", ctx.node.op_type),
        ));
    };
    let Some(x) = x.shape.as_ref() else {
        return Ok(None);
    };
    let mut dims: Vec<Dim> = x.dims().iter().take(2).cloned().collect();
    for (i, d) in x.dims().iter().skip(2).enumerate() {
        dims.push(win.forward(ctx, i, d, ceil_mode)?);
    }
    Ok(Some(Shape(dims)))
}

fn infer_max_pool(ctx: &mut InferCtx<'_>) -> Result<()> {
    expect_outputs(ctx, 1, 2)?;
    flag_attr(ctx, "storage_order", false)?;
    let shape = pooled_shape(ctx)?;
    let dtype = ctx.input_dtype(0);
    ctx.set_output(0, Fact::new(dtype, shape.clone()));
    ctx.set_output(1, Fact::new(Some(DataType::I64), shape));
    Ok(())
}

fn infer_average_pool(ctx: &mut InferCtx<'_>) -> Result<()> {
    expect_outputs(ctx, 1, 1)?;
    flag_attr(ctx, "count_include_pad", false)?;
    let shape = pooled_shape(ctx)?;
    let dtype = ctx.input_dtype(0);
    ctx.set_output(0, Fact::new(dtype, shape));
    Ok(())
}

fn infer_global_pool(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, 1)?;
    expect_outputs(ctx, 1, 1)?;
    let x = ctx.required(0)?;
    rank_at_least(ctx, 0, 3)?;
    let shape = x.shape.as_ref().map(|s| {
        let head = s.dims().iter().take(2).cloned();
        let ones = std::iter::repeat_n(Dim::Known(1), s.rank().saturating_sub(2));
        Shape(head.chain(ones).collect())
    });
    let fact = Fact::new(x.dtype, shape);
    ctx.set_output(0, fact);
    Ok(())
}

/// `MaxPool`
pub(super) const MAX_POOL: OpDef = OpDef {
    op_type: "MaxPool",
    domain: "",
    since_opset: 1,
    infer: infer_max_pool,
};

/// `AveragePool`
pub(super) const AVERAGE_POOL: OpDef = OpDef {
    op_type: "AveragePool",
    domain: "",
    // Opsets 1-6 are opset 7 with `count_include_pad` at its default, 0.
    since_opset: 1,
    infer: infer_average_pool,
};

/// `GlobalAveragePool`
pub(super) const GLOBAL_AVERAGE_POOL: OpDef = OpDef {
    op_type: "GlobalAveragePool",
    domain: "",
    since_opset: 1,
    infer: infer_global_pool,
};

/// `GlobalMaxPool`
pub(super) const GLOBAL_MAX_POOL: OpDef = OpDef {
    op_type: "GlobalMaxPool",
    domain: "",
    since_opset: 1,
    infer: infer_global_pool,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Attribute;
    use crate::ops::nn::test_util::*;

    fn pool(def: &OpDef, attrs: Vec<Attribute>, x: &str) -> Result<Vec<Fact>> {
        infer(def, 19, attrs, vec![f32s(x)], 1)
    }

    fn k3s2p1() -> Vec<Attribute> {
        vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[2, 2]),
            ints("pads", &[1, 1, 1, 1]),
        ]
    }

    #[test]
    fn resnet_max_pool_3x3_stride_2_pad_1() {
        let out = pool(&MAX_POOL, k3s2p1(), "1x64x112x112").unwrap();
        assert_eq!(out_shape(&out), "[1, 64, 56, 56]");
        let out = infer(&MAX_POOL, 12, k3s2p1(), vec![f32s("batchx64x112x112")], 2).unwrap();
        assert_eq!(out_shape(&out), "[batch, 64, 56, 56]");
        assert_eq!(out[0].dtype, Some(DataType::F32));
        assert_eq!(out[1].dtype, Some(DataType::I64), "Indices are int64");
        assert_eq!(out[1].shape, out[0].shape);
    }

    #[test]
    fn ceil_mode() {
        let a = |ceil| {
            vec![
                ints("kernel_shape", &[2, 2]),
                ints("strides", &[2, 2]),
                int("ceil_mode", ceil),
            ]
        };
        for def in [&MAX_POOL, &AVERAGE_POOL] {
            assert_eq!(
                out_shape(&pool(def, a(0), "1x1x5x6").unwrap()),
                "[1, 1, 2, 3]"
            );
            assert_eq!(
                out_shape(&pool(def, a(1), "1x1x5x6").unwrap()),
                "[1, 1, 3, 3]"
            );
        }
        // GoogLeNet-style 3x3/2 ceil pooling: 112 -> 55 (floor) or 56 (ceil), 56 -> 27 or 28.
        let a = |ceil| {
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("strides", &[2, 2]),
                int("ceil_mode", ceil),
            ]
        };
        assert_eq!(
            out_shape(&pool(&MAX_POOL, a(1), "1x1x112x56").unwrap()),
            "[1, 1, 56, 28]"
        );
        assert_eq!(
            out_shape(&pool(&MAX_POOL, a(0), "1x1x112x56").unwrap()),
            "[1, 1, 55, 27]"
        );
        // A window that would start in the end padding is dropped: 3 + 1 pad, k1 s2 ->
        // ceil(3 / 2) + 1 = 3 windows, but the third starts at 4 >= 3.
        let a = vec![
            ints("kernel_shape", &[1]),
            ints("strides", &[2]),
            ints("pads", &[0, 1]),
            int("ceil_mode", 1),
        ];
        assert_eq!(
            out_shape(&pool(&MAX_POOL, a, "1x1x3").unwrap()),
            "[1, 1, 2]"
        );
        assert_err(
            pool(
                &MAX_POOL,
                vec![ints("kernel_shape", &[2]), int("ceil_mode", 2)],
                "1x1x4",
            ),
            "MaxPool",
            &["'ceil_mode' is 2"],
        );
    }

    #[test]
    fn auto_pad_dilations_and_symbols() {
        let a = vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[2, 2]),
            string("auto_pad", "SAME_LOWER"),
        ];
        assert_eq!(
            out_shape(&pool(&AVERAGE_POOL, a, "1x1x5x6").unwrap()),
            "[1, 1, 3, 3]"
        );
        let a = vec![ints("kernel_shape", &[3, 3]), string("auto_pad", "VALID")];
        assert_eq!(
            out_shape(&pool(&MAX_POOL, a, "1x1x5x6").unwrap()),
            "[1, 1, 3, 4]"
        );
        let a = vec![ints("kernel_shape", &[3]), ints("dilations", &[2])];
        assert_eq!(
            out_shape(&pool(&MAX_POOL, a, "1x1x10").unwrap()),
            "[1, 1, 6]"
        );
        // 3x3 stride 1 pad 1 keeps symbolic dims; stride 2 does not.
        let a = vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])];
        assert_eq!(
            out_shape(&pool(&MAX_POOL, a, "nxcxhxw").unwrap()),
            "[n, c, h, w]"
        );
        assert_eq!(
            out_shape(&pool(&MAX_POOL, k3s2p1(), "nxcxhxw").unwrap()),
            "[n, c, ?, ?]"
        );
        let out = infer(
            &AVERAGE_POOL,
            11,
            k3s2p1(),
            vec![unranked(DataType::F16)],
            1,
        )
        .unwrap();
        assert_eq!(
            (out[0].dtype, out[0].shape.clone()),
            (Some(DataType::F16), None)
        );
    }

    #[test]
    fn pool_errors() {
        assert_err(
            pool(&MAX_POOL, vec![], "1x1x4x4"),
            "MaxPool",
            &["'kernel_shape' is missing"],
        );
        assert_err(
            pool(&AVERAGE_POOL, vec![ints("kernel_shape", &[3])], "1x1x4x4"),
            "AveragePool",
            &["'kernel_shape' has 1 values", "2 spatial"],
        );
        assert_err(
            pool(
                &AVERAGE_POOL,
                vec![ints("kernel_shape", &[5, 5])],
                "1x1x4x4",
            ),
            "AveragePool",
            &["larger than the padded input"],
        );
        assert_err(
            pool(&MAX_POOL, vec![ints("kernel_shape", &[2])], "4x4"),
            "MaxPool",
            &["rank 3 or more"],
        );
        assert_err(
            infer(&AVERAGE_POOL, 11, k3s2p1(), vec![f32s("1x1x8x8")], 2),
            "AveragePool",
            &["has 2 outputs"],
        );
        let a = vec![ints("kernel_shape", &[2, 2]), int("count_include_pad", 3)];
        assert_err(
            pool(&AVERAGE_POOL, a, "1x1x4x4"),
            "AveragePool",
            &["count_include_pad"],
        );
    }

    #[test]
    fn global_pools() {
        for def in [&GLOBAL_AVERAGE_POOL, &GLOBAL_MAX_POOL] {
            let out = pool(def, vec![], "batchx2048x7x7").unwrap();
            assert_eq!(out_shape(&out), "[batch, 2048, 1, 1]");
            let out = pool(def, vec![], "batchxcxtxhxw").unwrap();
            assert_eq!(out_shape(&out), "[batch, c, 1, 1, 1]");
            assert_err(pool(def, vec![], "4x4"), def.op_type, &["rank 3 or more"]);
        }
    }
}
