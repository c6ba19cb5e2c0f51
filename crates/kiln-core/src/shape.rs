//! Shapes whose dimensions may be symbolic (`batch`, `seq`) or unknown.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{CoreError, DataType};

/// One dimension of a shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Known(usize),
    /// A named size fixed only at run time, shared by every dimension with the same name
    /// (ONNX `dim_param`, e.g. `"batch"`).
    Symbol(Arc<str>),
    /// A size nothing is known about (ONNX dimension with neither value nor name).
    #[serde(skip)]
    Unknown,
}

impl Dim {
    pub fn symbol(name: &str) -> Dim {
        Dim::Symbol(Arc::from(name))
    }

    /// The fixed size, if this dimension has one.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Dim::Known(_))
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A shape: a list of dimensions, each known, symbolic or unknown. A rank-0 shape is a scalar.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn new(dims: Vec<Dim>) -> Shape {
        Shape(dims)
    }

    /// A shape of fixed sizes.
    pub fn from_known(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The sizes, if every dimension is fixed.
    pub fn as_known(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::known).collect()
    }

    pub fn is_fully_known(&self) -> bool {
        self.0.iter().all(Dim::is_known)
    }

    /// Number of elements if every dimension is fixed; `Err` on overflow; `Ok(None)` if some
    /// dimension is not fixed.
    pub fn element_count(&self) -> Result<Option<usize>, CoreError> {
        let Some(known) = self.as_known() else {
            return Ok(None);
        };
        checked_element_count(&known)
            .map(Some)
            .ok_or_else(|| CoreError::ShapeOverflow {
                shape: self.to_string(),
            })
    }

    /// The symbolic names used by this shape, in order of first appearance.
    pub fn symbols(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for d in &self.0 {
            if let Dim::Symbol(s) = d
                && !out.contains(s)
            {
                out.push(s.clone());
            }
        }
        out
    }

    /// Parses trtexec-style shapes: `1x3x224x224`, `batchx128`, a lone `?` for an unknown
    /// dimension, and the empty string or `scalar` for rank 0.
    pub fn parse(text: &str) -> Result<Shape, CoreError> {
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("scalar") {
            return Ok(Shape::scalar());
        }
        let mut dims = Vec::new();
        for part in t.split(['x', 'X', ',']) {
            let p = part.trim();
            let dim = if let Ok(n) = p.parse::<usize>() {
                Dim::Known(n)
            } else if p == "?" {
                Dim::Unknown
            } else if !p.is_empty()
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
            {
                Dim::symbol(p)
            } else {
                return Err(CoreError::Parse {
                    what: "shape",
                    input: text.to_string(),
                    expected: "dimensions separated by 'x', e.g. 1x3x224x224 or batchx128",
                });
            };
            dims.push(dim);
        }
        Ok(Shape(dims))
    }
}

/// The product of `dims`, or `None` on overflow.
pub fn checked_element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl From<Vec<Dim>> for Shape {
    fn from(v: Vec<Dim>) -> Self {
        Shape(v)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// A named tensor with an element type and a (possibly symbolic) shape: an engine input or
/// output, or a value of a graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DataType,
    pub shape: Shape,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dtype: DataType, shape: Shape) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape,
        }
    }
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} {}", self.name, self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_trtexec_shapes() {
        let s = Shape::parse("1x3x224x224").unwrap();
        assert_eq!(s, Shape::from_known(&[1, 3, 224, 224]));
        let s = Shape::parse("batchx128").unwrap();
        assert_eq!(s.dims(), &[Dim::symbol("batch"), Dim::Known(128)]);
        assert_eq!(s.symbols().len(), 1);
        assert_eq!(Shape::parse("").unwrap().rank(), 0);
        assert!(Shape::parse("1x-3").is_err());
        assert!(Shape::parse("1xx3").is_err());
    }

    #[test]
    fn element_count_overflow_is_an_error() {
        let s = Shape::from_known(&[usize::MAX, 2]);
        assert!(s.element_count().is_err());
        assert_eq!(
            Shape::from_known(&[2, 3, 4]).element_count().unwrap(),
            Some(24)
        );
        assert_eq!(Shape::parse("nx3").unwrap().element_count().unwrap(), None);
        assert_eq!(Shape::scalar().element_count().unwrap(), Some(1));
    }

    #[test]
    fn display() {
        let s = Shape(vec![Dim::symbol("batch"), Dim::Known(3), Dim::Unknown]);
        assert_eq!(s.to_string(), "[batch, 3, ?]");
    }
}
