//! Shape helpers shared by the ops' inference.

use kiln_core::{Dim, Shape};

use super::InferCtx;
use crate::error::Result;

/// numpy-style broadcasting of two shapes. Symbolic dims broadcast against 1 and against the
/// same symbol; a symbol against a known size > 1 is taken to equal that size (the model is
/// only valid then). Fails on two different known sizes, neither 1.
pub fn broadcast(ctx: &InferCtx<'_>, a: &Shape, b: &Shape) -> Result<Shape> {
    let rank = a.rank().max(b.rank());
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        let d = match (da, db) {
            (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
            (Dim::Known(x), Dim::Known(y)) if x == y => Dim::Known(*x),
            (Dim::Known(x), Dim::Known(y)) => {
                return Err(ctx.err(
                    format!("shapes {a} and {b} do not broadcast (dim {x} vs {y})"),
                    "Fix the input shapes: each dim pair must be equal or one of them 1",
                ));
            }
            (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
            (Dim::Symbol(x), Dim::Symbol(y)) if x == y => Dim::Symbol(x.clone()),
            _ => Dim::Unknown,
        };
        dims.push(d);
    }
    Ok(Shape(dims))
}

/// Broadcast of many shapes (Sum, Mean, Max, Min, Where, ...).
pub fn broadcast_all<'s>(
    ctx: &InferCtx<'_>,
    shapes: impl IntoIterator<Item = &'s Shape>,
) -> Result<Shape> {
    let mut acc = Shape::scalar();
    for s in shapes {
        acc = broadcast(ctx, &acc, s)?;
    }
    Ok(acc)
}

/// `from_right` = 0 is the last dim; dims beyond the rank are 1.
fn dim_from_right(s: &Shape, from_right: usize) -> &Dim {
    const ONE: Dim = Dim::Known(1);
    if from_right < s.rank() {
        &s.0[s.rank() - 1 - from_right]
    } else {
        &ONE
    }
}

/// An ONNX axis in `[-rank, rank)` as an index in `[0, rank)`.
pub fn normalize_axis(ctx: &InferCtx<'_>, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(ctx.err(
            format!("axis {axis} is out of range for rank {rank}"),
            format!("Use an axis in [{}, {}]", -r, r - 1),
        ));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

// ---------------------------------------------------------------------------------------------
// Symbolic products of dims (Reshape, Flatten, Size).

/// The product of some dims as `coeff * sym_1 * sym_2 * ...`; `exact` is false when an
/// [`Dim::Unknown`] took part (the product is then not known at all). Symbols are kept sorted,
/// so two products of the same dims in any order compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimProduct {
    pub coeff: usize,
    pub symbols: Vec<std::sync::Arc<str>>,
    pub exact: bool,
}

impl DimProduct {
    /// The empty product, 1.
    pub fn one() -> DimProduct {
        DimProduct {
            coeff: 1,
            symbols: Vec::new(),
            exact: true,
        }
    }

    /// The product of `dims`. Overflow of the known part makes it inexact.
    pub fn of<'d>(dims: impl IntoIterator<Item = &'d Dim>) -> DimProduct {
        let mut p = DimProduct::one();
        for d in dims {
            p.mul(d);
        }
        p
    }

    /// Multiplies by one dim.
    pub fn mul(&mut self, d: &Dim) {
        match d {
            Dim::Known(n) => match self.coeff.checked_mul(*n) {
                Some(c) => self.coeff = c,
                None => self.exact = false,
            },
            Dim::Symbol(s) => {
                let at = self.symbols.partition_point(|x| x <= s);
                self.symbols.insert(at, s.clone());
            }
            Dim::Unknown => self.exact = false,
        }
    }

    /// True when the product is exactly zero (a known 0 took part).
    pub fn is_zero(&self) -> bool {
        self.exact && self.coeff == 0
    }

    /// `self / divisor`, when it is a whole product of the same algebra: every symbol of the
    /// divisor appears in `self` and the known part divides. `None` when not derivable.
    pub fn div(&self, divisor: &DimProduct) -> Option<DimProduct> {
        if !self.exact || !divisor.exact || divisor.coeff == 0 {
            return None;
        }
        if !self.coeff.is_multiple_of(divisor.coeff) {
            return None;
        }
        let mut symbols = self.symbols.clone();
        for s in &divisor.symbols {
            let at = symbols.iter().position(|x| x == s)?;
            symbols.remove(at);
        }
        Some(DimProduct {
            coeff: self.coeff / divisor.coeff,
            symbols,
            exact: true,
        })
    }

    /// The product as one dim: a number, a lone symbol, or [`Dim::Unknown`] when it is a
    /// product that no single dim names (`3 * batch`, `batch * seq`).
    pub fn to_dim(&self) -> Dim {
        if !self.exact {
            return Dim::Unknown;
        }
        match (self.coeff, self.symbols.as_slice()) {
            (0, _) => Dim::Known(0),
            (c, []) => Dim::Known(c),
            (1, [s]) => Dim::Symbol(s.clone()),
            _ => Dim::Unknown,
        }
    }
}

/// The product of `dims` as one dim (see [`DimProduct::to_dim`]).
pub fn dim_product<'d>(dims: impl IntoIterator<Item = &'d Dim>) -> Dim {
    DimProduct::of(dims).to_dim()
}

// ---------------------------------------------------------------------------------------------
// Small integer values known at inference time (shape arithmetic).

/// One element of a small integer tensor as inference knows it. Unlike [`Dim`] it can be
/// negative (Reshape's `-1`, Slice's negative starts), which [`super::Fact::sym_value`] cannot
/// hold: [`sym_to_dims`] stores negative numbers there as [`Dim::Unknown`], and Reshape recovers
/// such a dim from the element count instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymInt {
    Int(i64),
    Sym(std::sync::Arc<str>),
    Unknown,
}

impl SymInt {
    pub fn from_dim(d: &Dim) -> SymInt {
        match d {
            Dim::Known(n) => i64::try_from(*n).map_or(SymInt::Unknown, SymInt::Int),
            Dim::Symbol(s) => SymInt::Sym(s.clone()),
            Dim::Unknown => SymInt::Unknown,
        }
    }

    /// As a dim: negative numbers are [`Dim::Unknown`].
    pub fn to_dim(&self) -> Dim {
        match self {
            SymInt::Int(n) => usize::try_from(*n).map_or(Dim::Unknown, Dim::Known),
            SymInt::Sym(s) => Dim::Symbol(s.clone()),
            SymInt::Unknown => Dim::Unknown,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            SymInt::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// `sym_value` form of a list of [`SymInt`]s.
pub fn sym_to_dims(v: &[SymInt]) -> Vec<Dim> {
    v.iter().map(SymInt::to_dim).collect()
}

/// The integers of input `i` when the graph fixes them (an initialiser or `Constant` of an
/// integer type). Float constants are an error naming the node.
pub fn const_ints(ctx: &InferCtx<'_>, i: usize) -> Result<Option<Vec<i64>>> {
    let Some(t) = ctx.const_input(i) else {
        return Ok(None);
    };
    t.to_i64_vec().map(Some).map_err(|e| {
        ctx.err(
            format!("input #{i} ('{}'): {e}", t.name()),
            "Feed an integer tensor (int64) here",
        )
    })
}

/// The elements of input `i` as far as inference knows them: exactly from a constant, else
/// from the fact's `sym_value`. Only for rank-0 and rank-1 integer inputs; `None` otherwise.
pub fn sym_input(ctx: &InferCtx<'_>, i: usize) -> Option<Vec<SymInt>> {
    if let Some(t) = ctx.const_input(i) {
        if t.dims().len() <= 1
            && let Ok(v) = t.to_i64_vec()
        {
            return Some(v.into_iter().map(SymInt::Int).collect());
        }
        return None;
    }
    let f = ctx.input(i)?;
    let v = f.sym_value.as_ref()?;
    Some(v.iter().map(SymInt::from_dim).collect())
}

/// A shape whose dims are the elements of a shape-like input (Expand, ConstantOfShape, Tile):
/// its rank when the input's length is known, each dim when its value is.
pub fn shape_from_input(ctx: &InferCtx<'_>, i: usize) -> Option<Shape> {
    if let Some(v) = sym_input(ctx, i) {
        return Some(Shape(v.iter().map(SymInt::to_dim).collect()));
    }
    let s = ctx.input_shape(i)?;
    match s.dims() {
        [Dim::Known(n)] => Some(Shape(vec![Dim::Unknown; *n])),
        _ => None,
    }
}

/// Normalises a list of axes (each in `[-rank, rank)`), failing on duplicates.
pub fn normalize_axes(ctx: &InferCtx<'_>, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = normalize_axis(ctx, a, rank)?;
        if out.contains(&n) {
            return Err(ctx.err(
                format!("axis {a} is listed twice in {axes:?}"),
                "List each axis once",
            ));
        }
        out.push(n);
    }
    Ok(out)
}

/// The dtype of input `i`, and the same for output 0 with the given shape (the common case
/// of ops whose output has the input's element type).
pub fn same_type(ctx: &InferCtx<'_>, i: usize, shape: Option<Shape>) -> super::Fact {
    super::Fact::new(ctx.input_dtype(i), shape)
}

/// Longest integer list kept as a `sym_value` or a synthesised constant (shape arithmetic only
/// ever needs a handful of elements).
pub const MAX_SYM_LEN: usize = 64;

/// An integer-list operand that moved from an attribute to an input at some opset (Squeeze's
/// and Unsqueeze's `axes`, Split's `split`, Pad's `pads`, Slice's `starts`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntsOperand {
    /// Given, with these values.
    Known(Vec<i64>),
    /// Neither the attribute nor the input is given.
    Absent,
    /// Given as an input whose values are not known before run time.
    Unknown,
}

/// Reads an [`IntsOperand`]: attribute `attr` before opset `input_since`, input `input` from
/// then on.
pub fn ints_operand(
    ctx: &InferCtx<'_>,
    attr: &str,
    input: usize,
    input_since: i64,
) -> Result<IntsOperand> {
    if ctx.opset < input_since {
        return Ok(match ctx.node.attr_ints(attr)? {
            Some(v) => IntsOperand::Known(v.to_vec()),
            None => IntsOperand::Absent,
        });
    }
    if ctx.input(input).is_none() {
        return Ok(IntsOperand::Absent);
    }
    if let Some(v) = const_ints(ctx, input)? {
        return Ok(IntsOperand::Known(v));
    }
    if let Some(v) = sym_input(ctx, input)
        && let Some(ints) = v.iter().map(SymInt::int).collect::<Option<Vec<_>>>()
    {
        return Ok(IntsOperand::Known(ints));
    }
    Ok(IntsOperand::Unknown)
}
