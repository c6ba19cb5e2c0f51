//! Einsum: Einstein summation over any number of operands.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Einsum.html>. Opset history: 12 (only version).
//!
//! Supported: explicit (`ij,jk->ik`) and implicit (`ij,jk`: output letters are those that
//! appear once, in alphabetical order) forms, repeated letters within an operand (diagonals,
//! traces), and `...` (broadcast batch dimensions, right-aligned, size-1 dims broadcast).
//! Readable rather than fast: it walks every combination of the letters' indices, which is
//! right for conformance and constant folding; the engine lowers real models' einsums to GEMMs.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use super::common::{from_f64_like, to_f64_array};
use crate::error::Result;
use crate::ops::OpCtx;
use crate::value::Value;

/// Upper bound on the index combinations walked (keeps a hostile model from running forever).
const MAX_WORK: usize = 1 << 30;

pub fn einsum(ctx: &OpCtx<'_>) -> Result<Vec<Value>> {
    let eq: String = ctx
        .node
        .attr_string("equation")?
        .ok_or_else(|| ctx.err("attribute 'equation' is missing", "Set the einsum equation"))?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let n = ctx.num_inputs();
    if n == 0 {
        return Err(ctx.err("has no inputs", "Give at least one operand"));
    }
    let operands: Vec<&Value> = (0..n).map(|i| ctx.required(i)).collect::<Result<_>>()?;
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != n {
        return Err(ctx.err(
            format!(
                "equation '{eq}' has {} operands but the node has {n} inputs",
                terms.len()
            ),
            "Make the equation's operand count match the inputs",
        ));
    }
    // Ellipsis letters: characters no term uses.
    let ell_rank = operands
        .iter()
        .zip(&terms)
        .map(|(v, t)| {
            if t.contains("...") {
                v.shape().len().saturating_sub(t.replace("...", "").len())
            } else {
                0
            }
        })
        .max()
        .unwrap_or(0);
    let spare: Vec<char> = ('A'..='Z')
        .chain('a'..='z')
        .filter(|c| !eq.contains(*c))
        .take(ell_rank)
        .collect();
    if spare.len() < ell_rank {
        return Err(ctx.err("too many ellipsis dimensions", "Use fewer dimensions"));
    }
    let mut letters_per_op: Vec<Vec<char>> = Vec::with_capacity(n);
    let mut sizes: BTreeMap<char, usize> = BTreeMap::new();
    for (i, (v, t)) in operands.iter().zip(&terms).enumerate() {
        let shape = v.shape();
        let mut letters: Vec<char> = Vec::new();
        let explicit = t.replace("...", "").len();
        if t.contains("...") {
            let e = shape.len().checked_sub(explicit).ok_or_else(|| {
                ctx.err(
                    format!(
                        "operand {i} has rank {} but term '{t}' names more dims",
                        shape.len()
                    ),
                    "Fix the equation",
                )
            })?;
            let (before, after) = t.split_once("...").unwrap_or((t, ""));
            letters.extend(before.chars());
            letters.extend(spare[ell_rank - e..].iter().copied());
            letters.extend(after.chars());
        } else {
            letters.extend(t.chars());
        }
        if letters.len() != shape.len() || letters.iter().any(|c| !c.is_ascii_alphabetic()) {
            return Err(ctx.err(
                format!("term '{t}' does not fit operand {i} of shape {shape:?}"),
                "Give one letter per dimension (letters a-z, A-Z, and '...')",
            ));
        }
        for (&c, &d) in letters.iter().zip(shape) {
            let is_ell = spare.contains(&c);
            match sizes.get(&c).copied() {
                Some(prev) if prev == d => {}
                Some(1) if is_ell => {
                    sizes.insert(c, d);
                }
                Some(_) if is_ell && d == 1 => {}
                Some(prev) => {
                    return Err(ctx.err(
                        format!("letter '{c}' is {prev} in one place and {d} in another"),
                        "Give operands whose shared letters have equal sizes",
                    ));
                }
                None => {
                    sizes.insert(c, d);
                }
            }
        }
        letters_per_op.push(letters);
    }
    let out_letters: Vec<char> = match &rhs {
        Some(r) => {
            let mut v: Vec<char> = Vec::new();
            if r.contains("...") {
                let (before, after) = r.split_once("...").unwrap_or((r, ""));
                v.extend(before.chars());
                v.extend(spare.iter().copied());
                v.extend(after.chars());
            } else {
                v.extend(r.chars());
            }
            for c in &v {
                if !sizes.contains_key(c) {
                    return Err(ctx.err(
                        format!("output letter '{c}' is in no operand"),
                        "Fix the equation",
                    ));
                }
            }
            v
        }
        None => {
            let mut counts: BTreeMap<char, usize> = BTreeMap::new();
            for l in letters_per_op.iter().flatten() {
                *counts.entry(*l).or_default() += 1;
            }
            let mut v: Vec<char> = spare.clone();
            v.extend(
                counts
                    .iter()
                    .filter(|(c, n)| **n == 1 && !spare.contains(c))
                    .map(|(c, _)| *c),
            );
            v
        }
    };
    let all: Vec<char> = sizes.keys().copied().collect();
    let pos = |c: char| all.iter().position(|&x| x == c).unwrap_or(0);
    let dims: Vec<usize> = all.iter().map(|c| sizes[c]).collect();
    let work = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&w| w <= MAX_WORK);
    let Some(work) = work else {
        return Err(ctx.err(
            "the summation is too large for the reference interpreter",
            "Use smaller operands",
        ));
    };
    let arrays: Vec<ArrayD<f64>> = operands.iter().map(|v| to_f64_array(v)).collect();
    let op_pos: Vec<Vec<usize>> = letters_per_op
        .iter()
        .map(|l| l.iter().map(|&c| pos(c)).collect())
        .collect();
    let out_pos: Vec<usize> = out_letters.iter().map(|&c| pos(c)).collect();
    let out_shape: Vec<usize> = out_pos.iter().map(|&p| dims[p]).collect();
    let mut out = ArrayD::<f64>::zeros(IxDyn(&out_shape));
    let mut idx = vec![0usize; dims.len()];
    let mut oi = vec![0usize; out_pos.len()];
    let mut ai: Vec<Vec<usize>> = op_pos.iter().map(|p| vec![0usize; p.len()]).collect();
    for _ in 0..work {
        let mut prod = 1.0;
        for (k, a) in arrays.iter().enumerate() {
            for (j, &p) in op_pos[k].iter().enumerate() {
                // Broadcast ellipsis dims of size 1.
                ai[k][j] = if a.shape()[j] == 1 { 0 } else { idx[p] };
            }
            prod *= a[IxDyn(&ai[k])];
        }
        for (j, &p) in out_pos.iter().enumerate() {
            oi[j] = idx[p];
        }
        out[IxDyn(&oi)] += prod;
        // Next index combination (odometer).
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(vec![from_f64_like(operands[0], out)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::misc::test_util::{node, run_op};

    fn m(shape: &[usize], v: Vec<f32>) -> Value {
        Value::F32(ArrayD::from_shape_vec(shape.to_vec(), v).unwrap())
    }

    fn eq(e: &str) -> kiln_onnx::Node {
        node("Einsum", &[("equation", e.into())])
    }

    #[test]
    fn matmul_transpose_trace_and_implicit() {
        let a = m(&[2, 2], vec![1., 2., 3., 4.]);
        let b = m(&[2, 2], vec![5., 6., 7., 8.]);
        let out = run_op(einsum, &eq("ij,jk->ik"), 12, &[Some(&a), Some(&b)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![19., 22., 43., 50.]);
        let out = run_op(einsum, &eq("ij->ji"), 12, &[Some(&a)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![1., 3., 2., 4.]);
        let out = run_op(einsum, &eq("ii"), 12, &[Some(&a)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![5.]);
        let out = run_op(einsum, &eq("ij,jk"), 12, &[Some(&a), Some(&b)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![19., 22., 43., 50.]);
        let out = run_op(einsum, &eq("ii->i"), 12, &[Some(&a)]).unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![1., 4.]);
    }

    #[test]
    fn batched_with_ellipsis() {
        let a = m(&[2, 1, 2], vec![1., 2., 3., 4.]);
        let b = m(&[2, 2, 1], vec![1., 1., 2., 2.]);
        let out = run_op(einsum, &eq("...ij,...jk->...ik"), 12, &[Some(&a), Some(&b)]).unwrap();
        assert_eq!(out[0].shape(), &[2, 1, 1]);
        assert_eq!(out[0].to_f64_vec(), vec![3., 14.]);
    }

    #[test]
    fn mismatches_are_errors() {
        let a = m(&[2, 3], vec![0.5; 6]);
        assert!(run_op(einsum, &eq("ij,jk->ik"), 12, &[Some(&a), Some(&a)]).is_err());
        assert!(run_op(einsum, &eq("ijk->i"), 12, &[Some(&a)]).is_err());
        assert!(run_op(einsum, &eq("ij->iz"), 12, &[Some(&a)]).is_err());
    }
}
