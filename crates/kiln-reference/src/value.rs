//! Run-time values of the interpreter: n-dimensional arrays of one element type.

use half::{bf16, f16};
use kiln_core::DataType;
use kiln_onnx::Tensor;
use ndarray::{ArrayD, IxDyn};

use crate::error::{RefError, Result};

/// A tensor value. f16 and bf16 are stored as such and computed in f32 by the ops.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    Bool(ArrayD<bool>),
}

/// Runs `$body` with `$a` bound to the array inside `$v`, whatever its element type.
#[macro_export]
macro_rules! with_array {
    ($v:expr, $a:ident => $body:expr) => {
        match $v {
            $crate::Value::F32($a) => $body,
            $crate::Value::F64($a) => $body,
            $crate::Value::F16($a) => $body,
            $crate::Value::BF16($a) => $body,
            $crate::Value::I8($a) => $body,
            $crate::Value::I16($a) => $body,
            $crate::Value::I32($a) => $body,
            $crate::Value::I64($a) => $body,
            $crate::Value::U8($a) => $body,
            $crate::Value::U16($a) => $body,
            $crate::Value::U32($a) => $body,
            $crate::Value::U64($a) => $body,
            $crate::Value::Bool($a) => $body,
        }
    };
}

/// Like [`with_array!`], rebuilding a value of the same element type from `$body`'s array.
#[macro_export]
macro_rules! map_array {
    ($v:expr, $a:ident => $body:expr) => {
        match $v {
            $crate::Value::F32($a) => $crate::Value::F32($body),
            $crate::Value::F64($a) => $crate::Value::F64($body),
            $crate::Value::F16($a) => $crate::Value::F16($body),
            $crate::Value::BF16($a) => $crate::Value::BF16($body),
            $crate::Value::I8($a) => $crate::Value::I8($body),
            $crate::Value::I16($a) => $crate::Value::I16($body),
            $crate::Value::I32($a) => $crate::Value::I32($body),
            $crate::Value::I64($a) => $crate::Value::I64($body),
            $crate::Value::U8($a) => $crate::Value::U8($body),
            $crate::Value::U16($a) => $crate::Value::U16($body),
            $crate::Value::U32($a) => $crate::Value::U32($body),
            $crate::Value::U64($a) => $crate::Value::U64($body),
            $crate::Value::Bool($a) => $crate::Value::Bool($body),
        }
    };
}

/// Like [`map_array!`] but over two values of the same element type (`None` when they differ).
#[macro_export]
macro_rules! zip_arrays {
    ($x:expr, $y:expr, ($a:ident, $b:ident) => $body:expr) => {
        match ($x, $y) {
            ($crate::Value::F32($a), $crate::Value::F32($b)) => Some($crate::Value::F32($body)),
            ($crate::Value::F64($a), $crate::Value::F64($b)) => Some($crate::Value::F64($body)),
            ($crate::Value::F16($a), $crate::Value::F16($b)) => Some($crate::Value::F16($body)),
            ($crate::Value::BF16($a), $crate::Value::BF16($b)) => Some($crate::Value::BF16($body)),
            ($crate::Value::I8($a), $crate::Value::I8($b)) => Some($crate::Value::I8($body)),
            ($crate::Value::I16($a), $crate::Value::I16($b)) => Some($crate::Value::I16($body)),
            ($crate::Value::I32($a), $crate::Value::I32($b)) => Some($crate::Value::I32($body)),
            ($crate::Value::I64($a), $crate::Value::I64($b)) => Some($crate::Value::I64($body)),
            ($crate::Value::U8($a), $crate::Value::U8($b)) => Some($crate::Value::U8($body)),
            ($crate::Value::U16($a), $crate::Value::U16($b)) => Some($crate::Value::U16($body)),
            ($crate::Value::U32($a), $crate::Value::U32($b)) => Some($crate::Value::U32($body)),
            ($crate::Value::U64($a), $crate::Value::U64($b)) => Some($crate::Value::U64($body)),
            ($crate::Value::Bool($a), $crate::Value::Bool($b)) => Some($crate::Value::Bool($body)),
            _ => None,
        }
    };
}

impl Value {
    pub fn dtype(&self) -> DataType {
        match self {
            Value::F32(_) => DataType::F32,
            Value::F64(_) => DataType::F64,
            Value::F16(_) => DataType::F16,
            Value::BF16(_) => DataType::BF16,
            Value::I8(_) => DataType::I8,
            Value::I16(_) => DataType::I16,
            Value::I32(_) => DataType::I32,
            Value::I64(_) => DataType::I64,
            Value::U8(_) => DataType::U8,
            Value::U16(_) => DataType::U16,
            Value::U32(_) => DataType::U32,
            Value::U64(_) => DataType::U64,
            Value::Bool(_) => DataType::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        with_array!(self, a => a.shape())
    }

    pub fn len(&self) -> usize {
        with_array!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of an initialiser or constant tensor.
    pub fn from_tensor(t: &Tensor) -> Result<Value> {
        fn arr<T: kiln_core::Element>(t: &Tensor) -> Result<ArrayD<T>> {
            let data = t.as_slice::<T>()?.into_owned();
            ArrayD::from_shape_vec(IxDyn(t.dims()), data).map_err(|e| RefError::Internal {
                what: format!("tensor '{}' does not fit its shape: {e}", t.name()),
            })
        }
        Ok(match t.dtype() {
            DataType::F32 => Value::F32(arr(t)?),
            DataType::F64 => Value::F64(arr(t)?),
            DataType::F16 => Value::F16(arr(t)?),
            DataType::BF16 => Value::BF16(arr(t)?),
            DataType::I8 => Value::I8(arr(t)?),
            DataType::I16 => Value::I16(arr(t)?),
            DataType::I32 => Value::I32(arr(t)?),
            DataType::I64 => Value::I64(arr(t)?),
            DataType::U8 => Value::U8(arr(t)?),
            DataType::U16 => Value::U16(arr(t)?),
            DataType::U32 => Value::U32(arr(t)?),
            DataType::U64 => Value::U64(arr(t)?),
            DataType::Bool => {
                let b = t.to_bools()?;
                Value::Bool(ArrayD::from_shape_vec(IxDyn(t.dims()), b).map_err(|e| {
                    RefError::Internal {
                        what: format!("tensor '{}' does not fit its shape: {e}", t.name()),
                    }
                })?)
            }
        })
    }

    /// This value as a named tensor (standard layout, little-endian bytes).
    pub fn to_tensor(&self, name: &str) -> Result<Tensor> {
        fn tens<T: kiln_core::Element>(name: &str, a: &ArrayD<T>) -> Result<Tensor> {
            let v: Vec<T> = a.iter().copied().collect();
            Ok(Tensor::from_vec(name, a.shape().to_vec(), v)?)
        }
        match self {
            Value::F32(a) => tens(name, a),
            Value::F64(a) => tens(name, a),
            Value::F16(a) => tens(name, a),
            Value::BF16(a) => tens(name, a),
            Value::I8(a) => tens(name, a),
            Value::I16(a) => tens(name, a),
            Value::I32(a) => tens(name, a),
            Value::I64(a) => tens(name, a),
            Value::U8(a) => tens(name, a),
            Value::U16(a) => tens(name, a),
            Value::U32(a) => tens(name, a),
            Value::U64(a) => tens(name, a),
            Value::Bool(a) => {
                let v: Vec<bool> = a.iter().copied().collect();
                Ok(Tensor::from_bools(name, a.shape().to_vec(), &v)?)
            }
        }
    }

    /// Every element as f64 (bools as 0/1), in logical order: for comparisons and reports.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            Value::F32(a) => a.iter().map(|&x| x as f64).collect(),
            Value::F64(a) => a.iter().copied().collect(),
            Value::F16(a) => a.iter().map(|x| x.to_f64()).collect(),
            Value::BF16(a) => a.iter().map(|x| x.to_f64()).collect(),
            Value::I8(a) => a.iter().map(|&x| x as f64).collect(),
            Value::I16(a) => a.iter().map(|&x| x as f64).collect(),
            Value::I32(a) => a.iter().map(|&x| x as f64).collect(),
            Value::I64(a) => a.iter().map(|&x| x as f64).collect(),
            Value::U8(a) => a.iter().map(|&x| x as f64).collect(),
            Value::U16(a) => a.iter().map(|&x| x as f64).collect(),
            Value::U32(a) => a.iter().map(|&x| x as f64).collect(),
            Value::U64(a) => a.iter().map(|&x| x as f64).collect(),
            Value::Bool(a) => a.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
        }
    }
}

impl From<ArrayD<f32>> for Value {
    fn from(a: ArrayD<f32>) -> Self {
        Value::F32(a)
    }
}

impl From<ArrayD<i64>> for Value {
    fn from(a: ArrayD<i64>) -> Self {
        Value::I64(a)
    }
}

impl From<ArrayD<bool>> for Value {
    fn from(a: ArrayD<bool>) -> Self {
        Value::Bool(a)
    }
}
