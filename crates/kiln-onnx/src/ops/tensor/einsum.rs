//! `Einsum`: sums of products over the indices of an equation such as `bij,bjk->bik`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Einsum.html>. Opset history: 12, 28 (types).
//! Letters name dims, `...` stands for broadcast leading dims. With `->` the output lists its
//! letters; without it (implicit mode) the output is the `...` dims then the letters used once,
//! in alphabetical order. Each letter's size is taken from the inputs (a size 1 broadcasts).

use std::collections::BTreeMap;

use kiln_core::{Dim, Shape};

use crate::error::Result;
use crate::ops::util::broadcast;
use crate::ops::{Fact, InferCtx, OpDef};

pub(crate) const DEF: OpDef = OpDef {
    op_type: "Einsum",
    domain: "",
    since_opset: 12,
    infer,
};

/// One side of an equation: its letters, and where `...` stands (index among the letters).
struct Term {
    letters: Vec<char>,
    ellipsis: Option<usize>,
}

fn parse_term(ctx: &InferCtx<'_>, t: &str) -> Result<Term> {
    let mut letters = Vec::new();
    let mut ellipsis = None;
    let mut rest = t;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("...") {
            if ellipsis.replace(letters.len()).is_some() {
                return Err(ctx.err(
                    format!("term '{t}' has two '...'"),
                    "Use '...' once per term",
                ));
            }
            rest = r;
        } else if c.is_ascii_alphabetic() {
            letters.push(c);
            rest = rest.get(1..).unwrap_or_default();
        } else {
            return Err(ctx.err(
                format!("equation term '{t}' has the character '{c}'"),
                "Use letters, ',', '->' and '...' only",
            ));
        }
    }
    Ok(Term { letters, ellipsis })
}

fn infer(ctx: &mut InferCtx<'_>) -> Result<()> {
    ctx.expect_inputs(1, usize::MAX)?;
    let eq: String = ctx
        .node
        .attr_string("equation")?
        .ok_or_else(|| ctx.err("has no 'equation' attribute", "Set the equation"))?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms = lhs
        .split(',')
        .map(|t| parse_term(ctx, t))
        .collect::<Result<Vec<_>>>()?;
    let n = ctx.num_inputs();
    if terms.len() != n {
        return Err(ctx.err(
            format!(
                "equation '{eq}' has {} input terms but the node has {n} inputs",
                terms.len()
            ),
            "Give one term per input",
        ));
    }
    let mut dtype = None;
    let mut sizes: BTreeMap<char, Dim> = BTreeMap::new();
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    let mut ell: Option<Shape> = Some(Shape::scalar());
    let mut any_ellipsis = false;
    for (i, term) in terms.iter().enumerate() {
        let f = ctx.required(i)?.clone();
        dtype = dtype.or(f.dtype);
        for &c in &term.letters {
            *counts.entry(c).or_default() += 1;
        }
        any_ellipsis |= term.ellipsis.is_some();
        let Some(s) = f.shape else {
            for &c in &term.letters {
                sizes.entry(c).or_insert(Dim::Unknown);
            }
            if term.ellipsis.is_some() {
                ell = None;
            }
            continue;
        };
        let l = term.letters.len();
        let ell_rank = match term.ellipsis {
            None if s.rank() == l => 0,
            Some(_) if s.rank() >= l => s.rank() - l,
            _ => {
                return Err(ctx.err(
                    format!("input #{i} {s} does not match the term of {l} letters in '{eq}'"),
                    "Make each term name every dim of its input",
                ));
            }
        };
        let at = term.ellipsis.unwrap_or(l);
        let (head, tail) = s.dims().split_at(at.min(s.rank()));
        let (mid, tail) = tail.split_at(ell_rank.min(tail.len()));
        for (&c, d) in term.letters.iter().zip(head.iter().chain(tail)) {
            let slot = sizes.entry(c).or_insert(Dim::Unknown);
            *slot = match (&*slot, d) {
                (Dim::Known(a), Dim::Known(b)) if a != b && *a != 1 && *b != 1 => {
                    return Err(ctx.err(
                        format!("letter '{c}' is {a} in one input and {b} in another"),
                        "Give inputs whose dims agree with the equation",
                    ));
                }
                (Dim::Known(1), x) | (x, Dim::Known(1)) => x.clone(),
                (Dim::Known(_), _) => slot.clone(),
                (_, Dim::Known(_)) | (Dim::Unknown, _) => d.clone(),
                _ => slot.clone(),
            };
        }
        if let Some(e) = &ell {
            ell = Some(broadcast(ctx, e, &Shape(mid.to_vec()))?);
        }
    }
    let out_term = match rhs {
        Some(r) => parse_term(ctx, r)?,
        None => Term {
            letters: counts
                .iter()
                .filter(|(_, n)| **n == 1)
                .map(|(c, _)| *c)
                .collect(),
            ellipsis: any_ellipsis.then_some(0),
        },
    };
    let mut dims = Vec::new();
    for (j, c) in out_term.letters.iter().enumerate() {
        if out_term.ellipsis == Some(j) {
            let Some(e) = &ell else {
                ctx.set_output(0, Fact::new(dtype, None));
                return Ok(());
            };
            dims.extend(e.dims().iter().cloned());
        }
        let d = sizes.get(c).ok_or_else(|| {
            ctx.err(
                format!("output letter '{c}' of '{eq}' is not in any input term"),
                "Use only letters of the inputs in the output",
            )
        })?;
        dims.push(d.clone());
    }
    if out_term.ellipsis == Some(out_term.letters.len()) {
        let Some(e) = &ell else {
            ctx.set_output(0, Fact::new(dtype, None));
            return Ok(());
        };
        dims.extend(e.dims().iter().cloned());
    }
    ctx.set_output(0, Fact::new(dtype, Some(Shape(dims))));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttrValue;
    use crate::ops::tensor::testutil::*;

    fn einsum(eq: &str, inputs: Vec<Option<Fact>>) -> Result<Vec<Fact>> {
        let names: Vec<String> = (0..inputs.len()).map(|i| format!("x{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let n = node(
            "Einsum",
            &refs,
            &["y"],
            vec![("equation", AttrValue::String(eq.as_bytes().to_vec()))],
        );
        run(&DEF, 12, &n, inputs, vec![])
    }

    #[test]
    fn explicit_forms() {
        let out = einsum("bij,bjk->bik", vec![f32s("batchx3x4"), f32s("batchx4x5")]).unwrap();
        assert_eq!(out[0].shape, Some(shape("batchx3x5")));
        let out = einsum("ij->ji", vec![f32s("2x3")]).unwrap();
        assert_eq!(out[0].shape, Some(shape("3x2")));
        let out = einsum("ii->", vec![f32s("3x3")]).unwrap();
        assert_eq!(out[0].shape, Some(Shape::scalar()));
        let out = einsum(
            "...ij, ...jk -> ...ik",
            vec![f32s("batchxheadsx3x4"), f32s("4x5")],
        )
        .unwrap();
        assert_eq!(out[0].shape, Some(shape("batchxheadsx3x5")));
    }

    #[test]
    fn implicit_form() {
        let out = einsum("ij,jk", vec![f32s("2x3"), f32s("3x4")]).unwrap();
        assert_eq!(out[0].shape, Some(shape("2x4")));
        let out = einsum("ba", vec![f32s("2x3")]).unwrap();
        assert_eq!(out[0].shape, Some(shape("3x2")));
        let out = einsum("...i,i", vec![f32s("7x3"), f32s("3")]).unwrap();
        assert_eq!(out[0].shape, Some(shape("7")));
    }

    #[test]
    fn errors() {
        assert_err(einsum("ij,jk->ik", vec![f32s("2x3")]), "input terms");
        assert_err(
            einsum("ij,jk->ik", vec![f32s("2x3"), f32s("4x5")]),
            "letter 'j'",
        );
        assert_err(einsum("ij->iz", vec![f32s("2x3")]), "'z'");
        assert_err(einsum("ijk->i", vec![f32s("2x3")]), "does not match");
        assert_err(einsum("i1->i", vec![f32s("2x3")]), "character '1'");
    }
}
