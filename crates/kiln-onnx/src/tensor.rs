//! Tensors with data: initialisers, `Constant` values and tensor attributes.
//!
//! Data is kept as little-endian bytes exactly as ONNX stores them (`raw_data` moves in without
//! a copy) and viewed as typed slices through `bytemuck`; a view copies only when the bytes happen
//! to be misaligned for the element type.

use std::borrow::Cow;

use kiln_core::{DataType, Element, Shape, checked_element_count};

use crate::error::{OnnxError, Result};

/// A tensor of known element type and fixed shape, with its data.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    name: String,
    dtype: DataType,
    dims: Vec<usize>,
    /// `dims.product() * dtype.size_in_bytes()` bytes, little-endian. Bools are 0 or 1.
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("dims", &self.dims)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Tensor {
    /// A tensor from raw little-endian bytes. Fails if the byte count does not match the shape.
    pub fn from_bytes(
        name: impl Into<String>,
        dtype: DataType,
        dims: Vec<usize>,
        bytes: Vec<u8>,
    ) -> Result<Tensor> {
        let name = name.into();
        let expected = byte_len(&name, dtype, &dims)?;
        if bytes.len() != expected {
            return Err(OnnxError::tensor(
                name,
                format!(
                    "holds {} bytes but its shape {:?} of {} needs {}",
                    bytes.len(),
                    dims,
                    dtype,
                    expected
                ),
                "The tensor data is truncated or its dims are wrong; re-export the model",
            ));
        }
        if dtype == DataType::Bool && bytes.iter().any(|&b| b > 1) {
            return Err(OnnxError::tensor(
                name,
                "bool tensor holds a byte other than 0 or 1",
                "Re-export the model; bool data must be 0 or 1",
            ));
        }
        Ok(Tensor {
            name,
            dtype,
            dims,
            bytes,
        })
    }

    /// A tensor from typed values (one bulk copy into bytes).
    pub fn from_vec<T: Element>(
        name: impl Into<String>,
        dims: Vec<usize>,
        values: Vec<T>,
    ) -> Result<Tensor> {
        let bytes = bytemuck::cast_slice::<T, u8>(&values).to_vec();
        Tensor::from_bytes(name, T::DTYPE, dims, bytes)
    }

    /// A bool tensor.
    pub fn from_bools(
        name: impl Into<String>,
        dims: Vec<usize>,
        values: &[bool],
    ) -> Result<Tensor> {
        let bytes = values.iter().map(|&b| u8::from(b)).collect();
        Tensor::from_bytes(name, DataType::Bool, dims, bytes)
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Element>(name: impl Into<String>, value: T) -> Tensor {
        Tensor {
            name: name.into(),
            dtype: T::DTYPE,
            dims: Vec::new(),
            bytes: bytemuck::bytes_of(&value).to_vec(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    pub fn shape(&self) -> Shape {
        Shape::from_known(&self.dims)
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size_in_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The data as little-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives the bytes back, without copying.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The data as `&[T]`; borrowed when aligned (the usual case), copied once otherwise.
    /// Fails if `T` is not this tensor's element type.
    pub fn as_slice<T: Element>(&self) -> Result<Cow<'_, [T]>> {
        if T::DTYPE != self.dtype {
            return Err(OnnxError::tensor(
                self.name.clone(),
                format!("is {} but was read as {}", self.dtype, T::DTYPE),
                "This is a bug in the caller: read the tensor with its own element type",
            ));
        }
        Ok(view(&self.bytes))
    }

    /// Bool data as `bool`s.
    pub fn to_bools(&self) -> Result<Vec<bool>> {
        if self.dtype != DataType::Bool {
            return Err(OnnxError::tensor(
                self.name.clone(),
                format!("is {} but was read as bool", self.dtype),
                "This is a bug in the caller: read the tensor with its own element type",
            ));
        }
        Ok(self.bytes.iter().map(|&b| b != 0).collect())
    }

    /// Integer data (any integer or bool type) widened to i64: for shape-like tensors
    /// (Reshape's shape, Slice's starts, ...). Fails for floats and for u64 values above i64::MAX.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        let b = &self.bytes;
        let v: Vec<i64> = match self.dtype {
            DataType::I64 => return Ok(self.as_slice::<i64>()?.into_owned()),
            DataType::I32 => self.as_slice::<i32>()?.iter().map(|&x| x as i64).collect(),
            DataType::I16 => self.as_slice::<i16>()?.iter().map(|&x| x as i64).collect(),
            DataType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
            DataType::U8 | DataType::Bool => b.iter().map(|&x| x as i64).collect(),
            DataType::U16 => self.as_slice::<u16>()?.iter().map(|&x| x as i64).collect(),
            DataType::U32 => self.as_slice::<u32>()?.iter().map(|&x| x as i64).collect(),
            DataType::U64 => {
                let s = self.as_slice::<u64>()?;
                let mut out = Vec::with_capacity(s.len());
                for &x in s.iter() {
                    out.push(i64::try_from(x).map_err(|_| {
                        OnnxError::tensor(
                            self.name.clone(),
                            format!("u64 value {x} does not fit in i64"),
                            "Use values below 2^63",
                        )
                    })?);
                }
                out
            }
            DataType::F32 | DataType::F64 | DataType::F16 | DataType::BF16 => {
                return Err(OnnxError::tensor(
                    self.name.clone(),
                    format!("is {} where integers were expected", self.dtype),
                    "Use an integer tensor here (shapes, axes and indices are int64)",
                ));
            }
        };
        Ok(v)
    }

    /// Float data (any float type) widened to f32 (f64 is rounded).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype {
            DataType::F32 => self.as_slice::<f32>()?.into_owned(),
            DataType::F64 => self.as_slice::<f64>()?.iter().map(|&x| x as f32).collect(),
            DataType::F16 => self
                .as_slice::<half::f16>()?
                .iter()
                .map(|x| x.to_f32())
                .collect(),
            DataType::BF16 => self
                .as_slice::<half::bf16>()?
                .iter()
                .map(|x| x.to_f32())
                .collect(),
            other => {
                return Err(OnnxError::tensor(
                    self.name.clone(),
                    format!("is {other} where floats were expected"),
                    "Use a floating-point tensor here",
                ));
            }
        })
    }
}

/// Little-endian bytes as `&[T]`: borrowed when aligned, copied once when not.
fn view<T: Element>(bytes: &[u8]) -> Cow<'_, [T]> {
    match bytemuck::try_cast_slice::<u8, T>(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    }
}

/// Byte length of a tensor of `dtype` and `dims`, with overflow checked.
pub(crate) fn byte_len(name: &str, dtype: DataType, dims: &[usize]) -> Result<usize> {
    checked_element_count(dims)
        .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
        .ok_or_else(|| {
            OnnxError::tensor(
                name,
                format!("shape {dims:?} has more bytes than fit in memory"),
                "The tensor's dims are corrupt; re-export the model",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_views_round_trip() {
        let t = Tensor::from_vec("w", vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(t.len(), 6);
        assert_eq!(
            &*t.as_slice::<f32>().unwrap(),
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert!(t.as_slice::<i32>().is_err());
        assert_eq!(t.to_f32_vec().unwrap()[5], 6.0);
        assert!(t.to_i64_vec().is_err());
    }

    #[test]
    fn misaligned_bytes_are_copied_not_rejected() {
        let words = [0u32, 7u32.to_le(), 9u32.to_le(), 0];
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        // Starting one byte in, the slice is misaligned for i32: the view must copy.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes[4..12]);
        let aligned = view::<i32>(&bytes[4..12]);
        assert!(matches!(aligned, Cow::Borrowed(_)));
        let copied = view::<i32>(&shifted[1..]);
        assert!(matches!(copied, Cow::Owned(_)));
        assert_eq!(&*copied, &[7, 9]);
    }

    #[test]
    fn wrong_byte_count_is_an_error() {
        let e = Tensor::from_bytes("x", DataType::F32, vec![2], vec![0; 7]).unwrap_err();
        assert!(e.to_string().contains("tensor 'x'"), "{e}");
        assert!(Tensor::from_bytes("b", DataType::Bool, vec![1], vec![2]).is_err());
        assert!(Tensor::from_bytes("o", DataType::F32, vec![usize::MAX, 4], vec![]).is_err());
    }

    #[test]
    fn integer_widening() {
        let t = Tensor::from_vec("s", vec![3], vec![1i32, -2, 3]).unwrap();
        assert_eq!(t.to_i64_vec().unwrap(), vec![1, -2, 3]);
        let t = Tensor::from_bools("b", vec![2], &[true, false]).unwrap();
        assert_eq!(t.to_i64_vec().unwrap(), vec![1, 0]);
        assert_eq!(t.to_bools().unwrap(), vec![true, false]);
    }
}
