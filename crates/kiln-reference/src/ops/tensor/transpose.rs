//! Transpose <https://onnx.ai/onnx/operators/onnx__Transpose.html>: permutes the axes.
//!
//! Opset history: 1 introduces it with the `perm` attribute (default: the axes reversed);
//! 13, 21, 23, 24 and 25 only widen the element types.

use crate::error::Result;
use crate::map_array;
use crate::ops::OpCtx;
use crate::value::Value;

use super::common::standard;

/// Transpose: see the module doc.
pub(crate) fn transpose(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let x = ctx.required(0)?;
    let rank = x.shape().len();
    let perm: Vec<usize> = match ctx.attr_ints("perm")? {
        None => (0..rank).rev().collect(),
        Some(p) => {
            let mut seen = vec![false; rank];
            let mut out = Vec::with_capacity(rank);
            for &a in &p {
                let ok = usize::try_from(a)
                    .ok()
                    .filter(|&i| seen.get(i).is_some_and(|s| !s));
                match ok {
                    Some(i) => {
                        if let Some(s) = seen.get_mut(i) {
                            *s = true;
                        }
                        out.push(i);
                    }
                    None => {
                        return Err(ctx.err(
                            format!("perm {p:?} is not a permutation of 0..{rank}"),
                            format!("Give each axis 0..{rank} exactly once"),
                        ));
                    }
                }
            }
            if out.len() != rank {
                return Err(ctx.err(
                    format!("perm {p:?} has {} entries for rank {rank}", p.len()),
                    format!("Give each axis 0..{rank} exactly once"),
                ));
            }
            out
        }
    };
    Ok(vec![
        map_array!(x, a => standard(a.view().permuted_axes(perm.as_slice()))),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn default_reverses() {
        let x = iota(&[2, 3]);
        let y = run1(transpose, "Transpose", 13, vec![], &[Some(x)]);
        check(&y, &[3, 2], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn perm_3d_and_layout() {
        // numpy: np.arange(24).reshape(2,3,4).transpose(1,0,2).ravel()[:8]
        // = [0 1 2 3 12 13 14 15]
        let x = iota(&[2, 3, 4]);
        let y = run1(
            transpose,
            "Transpose",
            13,
            vec![("perm", ai(&[1, 0, 2]))],
            &[Some(x)],
        );
        assert_eq!(y.shape(), &[3, 2, 4]);
        assert_eq!(
            &y.to_f64_vec()[..8],
            &[0.0, 1.0, 2.0, 3.0, 12.0, 13.0, 14.0, 15.0]
        );
        let Value::F32(a) = &y else { panic!() };
        assert!(a.is_standard_layout());
    }

    #[test]
    fn other_types() {
        let b = Value::Bool(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![true, false]).unwrap());
        let y = run1(transpose, "Transpose", 13, vec![], &[Some(b)]);
        check(&y, &[2, 1], &[1.0, 0.0]);
        let s = i64s(&[], &[5]);
        let y = run1(transpose, "Transpose", 13, vec![], &[Some(s)]);
        check(&y, &[], &[5.0]);
    }

    #[test]
    fn bad_perm() {
        let x = iota(&[2, 3]);
        for p in [
            &[0, 0][..],
            &[0][..],
            &[0, 2][..],
            &[-1, 0][..],
            &[0, 1, 2][..],
        ] {
            let e = run_err(
                transpose,
                "Transpose",
                13,
                vec![("perm", ai(p))],
                &[Some(x.clone())],
            );
            assert!(e.contains("perm"), "{e}");
        }
    }
}
