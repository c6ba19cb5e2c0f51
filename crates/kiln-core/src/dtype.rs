//! Element types of tensors.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The element type of a tensor.
///
/// The discriminants are ONNX's `TensorProto.DataType` codes, so [`DataType::onnx_code`] and
/// [`DataType::from_onnx_code`] are exact inverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    F32 = 1,
    U8 = 2,
    I8 = 3,
    U16 = 4,
    I16 = 5,
    I32 = 6,
    I64 = 7,
    Bool = 9,
    F16 = 10,
    F64 = 11,
    U32 = 12,
    U64 = 13,
    BF16 = 16,
}

impl DataType {
    /// Every supported data type, in ONNX code order.
    pub const ALL: [DataType; 13] = [
        DataType::F32,
        DataType::U8,
        DataType::I8,
        DataType::U16,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::Bool,
        DataType::F16,
        DataType::F64,
        DataType::U32,
        DataType::U64,
        DataType::BF16,
    ];

    /// Size of one element in bytes (a bool is stored as one byte, 0 or 1).
    pub const fn size_in_bytes(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 | DataType::Bool => 1,
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::BF16 => 2,
            DataType::F32 | DataType::I32 | DataType::U32 => 4,
            DataType::F64 | DataType::I64 | DataType::U64 => 8,
        }
    }

    /// The ONNX `TensorProto.DataType` code.
    pub const fn onnx_code(self) -> i32 {
        self as i32
    }

    /// The data type for an ONNX `TensorProto.DataType` code, or `None` for codes kiln does not
    /// support (strings, complex numbers, 8- and 4-bit floats, ...).
    pub fn from_onnx_code(code: i32) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.onnx_code() == code)
    }

    /// ONNX's name of an element type code, also for codes kiln does not support (for messages).
    pub fn onnx_code_name(code: i32) -> &'static str {
        match code {
            0 => "UNDEFINED",
            1 => "FLOAT",
            2 => "UINT8",
            3 => "INT8",
            4 => "UINT16",
            5 => "INT16",
            6 => "INT32",
            7 => "INT64",
            8 => "STRING",
            9 => "BOOL",
            10 => "FLOAT16",
            11 => "DOUBLE",
            12 => "UINT32",
            13 => "UINT64",
            14 => "COMPLEX64",
            15 => "COMPLEX128",
            16 => "BFLOAT16",
            17 => "FLOAT8E4M3FN",
            18 => "FLOAT8E4M3FNUZ",
            19 => "FLOAT8E5M2",
            20 => "FLOAT8E5M2FNUZ",
            21 => "UINT4",
            22 => "INT4",
            23 => "FLOAT4E2M1",
            _ => "unknown",
        }
    }

    /// Short lower-case name, as used in reports and on the command line (`f32`, `bf16`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DataType::F32 => "f32",
            DataType::U8 => "u8",
            DataType::I8 => "i8",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::I32 => "i32",
            DataType::I64 => "i64",
            DataType::Bool => "bool",
            DataType::F16 => "f16",
            DataType::F64 => "f64",
            DataType::U32 => "u32",
            DataType::U64 => "u64",
            DataType::BF16 => "bf16",
        }
    }

    /// True for floating-point types.
    pub const fn is_float(self) -> bool {
        matches!(
            self,
            DataType::F32 | DataType::F64 | DataType::F16 | DataType::BF16
        )
    }

    /// True for signed and unsigned integer types (not bool).
    pub const fn is_integer(self) -> bool {
        matches!(
            self,
            DataType::U8
                | DataType::I8
                | DataType::U16
                | DataType::I16
                | DataType::I32
                | DataType::I64
                | DataType::U32
                | DataType::U64
        )
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DataType {
    type Err = crate::CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "float" | "float32" => "f32",
            "double" | "float64" => "f64",
            "half" | "float16" => "f16",
            "bfloat16" => "bf16",
            "int8" => "i8",
            "uint8" => "u8",
            "int16" => "i16",
            "uint16" => "u16",
            "int32" => "i32",
            "uint32" => "u32",
            "int64" => "i64",
            "uint64" => "u64",
            other => other,
        };
        DataType::ALL
            .into_iter()
            .find(|d| d.name() == alias)
            .ok_or_else(|| crate::CoreError::Parse {
                what: "data type",
                input: s.to_string(),
                expected: "one of f32, f64, f16, bf16, i8, u8, i16, u16, i32, u32, i64, u64, bool",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_codes_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_onnx_code(d.onnx_code()), Some(d));
            assert_eq!(d.name().parse::<DataType>().unwrap(), d);
        }
        assert_eq!(
            DataType::from_onnx_code(8),
            None,
            "strings are not supported"
        );
        assert_eq!(DataType::from_onnx_code(0), None);
        assert_eq!(DataType::from_onnx_code(-3), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(DataType::F32.size_in_bytes(), 4);
        assert_eq!(DataType::BF16.size_in_bytes(), 2);
        assert_eq!(DataType::Bool.size_in_bytes(), 1);
        assert_eq!(DataType::I64.size_in_bytes(), 8);
    }

    #[test]
    fn aliases_parse() {
        assert_eq!("float".parse::<DataType>().unwrap(), DataType::F32);
        assert_eq!("BFLOAT16".parse::<DataType>().unwrap(), DataType::BF16);
        assert!("complex64".parse::<DataType>().is_err());
    }
}

/// A Rust type that is the element of a tensor of one [`DataType`]: plain old data, so tensor
/// bytes can be viewed as `&[T]` through `bytemuck` without copying. `bool` tensors have no
/// element type here; read them as bytes (0 or 1).
pub trait Element: bytemuck::Pod + Send + Sync + fmt::Debug + 'static {
    const DTYPE: DataType;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {
        $(impl Element for $t { const DTYPE: DataType = DataType::$d; })*
    };
}

element!(
    f32 => F32,
    f64 => F64,
    half::f16 => F16,
    half::bf16 => BF16,
    i8 => I8,
    u8 => U8,
    i16 => I16,
    u16 => U16,
    i32 => I32,
    u32 => U32,
    i64 => I64,
    u64 => U64,
);
