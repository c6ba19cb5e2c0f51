//! The protocol's datatypes and tensor data: names ↔ `kiln_core::DataType`, JSON numbers ↔
//! little-endian bytes, shapes.
//!
//! Datatypes: BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64 and BF16 map to kiln's types.
//! BYTES (strings) has no kiln type: a request using it is refused with a message saying so.
//! Data travels inside kiln as little-endian bytes, row-major (BOOL one byte, 0 or 1), which is
//! also what the binary extension and gRPC's raw contents carry.

use half::{bf16, f16};
use kiln_core::DataType;
use serde_json::Value;

use crate::error::ServeError;

/// The protocol's name of a kiln type.
pub fn datatype_name(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "BOOL",
        DataType::U8 => "UINT8",
        DataType::U16 => "UINT16",
        DataType::U32 => "UINT32",
        DataType::U64 => "UINT64",
        DataType::I8 => "INT8",
        DataType::I16 => "INT16",
        DataType::I32 => "INT32",
        DataType::I64 => "INT64",
        DataType::F16 => "FP16",
        DataType::F32 => "FP32",
        DataType::F64 => "FP64",
        DataType::BF16 => "BF16",
    }
}

/// The kiln type of a protocol datatype name, for input `input`.
pub fn parse_datatype(name: &str, input: &str) -> Result<DataType, ServeError> {
    Ok(match name {
        "BOOL" => DataType::Bool,
        "UINT8" => DataType::U8,
        "UINT16" => DataType::U16,
        "UINT32" => DataType::U32,
        "UINT64" => DataType::U64,
        "INT8" => DataType::I8,
        "INT16" => DataType::I16,
        "INT32" => DataType::I32,
        "INT64" => DataType::I64,
        "FP16" => DataType::F16,
        "FP32" => DataType::F32,
        "FP64" => DataType::F64,
        "BF16" => DataType::BF16,
        "BYTES" => {
            return Err(ServeError::InvalidArgument(format!(
                "input '{input}': datatype BYTES (strings) is not supported by kiln, whose \
                 models take numeric tensors only"
            )));
        }
        other => {
            return Err(ServeError::InvalidArgument(format!(
                "input '{input}': unknown datatype '{other}'; use one of BOOL, UINT8, UINT16, \
                 UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16"
            )));
        }
    })
}

/// Dims from the protocol's signed shape, checked.
pub fn shape_to_dims(shape: &[i64], input: &str) -> Result<Vec<usize>, ServeError> {
    shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                ServeError::InvalidArgument(format!(
                    "input '{input}': shape {shape:?} has a negative dimension"
                ))
            })
        })
        .collect()
}

/// Bytes a tensor of `dims` and `dtype` holds, or an error naming `input`.
pub fn byte_size(dtype: DataType, dims: &[usize], input: &str) -> Result<usize, ServeError> {
    kiln_core::checked_element_count(dims)
        .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
        .ok_or_else(|| {
            ServeError::InvalidArgument(format!(
                "input '{input}': shape {dims:?} is too large to address"
            ))
        })
}

/// Appends the leaves of a JSON array (nested arrays flattened, row-major) to `out`.
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// The JSON `data` of input `input` as little-endian bytes of `dtype`; `count` elements are
/// expected.
pub fn json_to_bytes(
    data: &Value,
    dtype: DataType,
    count: usize,
    input: &str,
) -> Result<Vec<u8>, ServeError> {
    let mut leaves = Vec::with_capacity(count);
    flatten(data, &mut leaves);
    if leaves.len() != count {
        return Err(ServeError::InvalidArgument(format!(
            "input '{input}': {} values given where its shape holds {count}",
            leaves.len()
        )));
    }
    let mut out = Vec::with_capacity(count * dtype.size_in_bytes());
    for (i, v) in leaves.into_iter().enumerate() {
        let bad = || {
            ServeError::InvalidArgument(format!(
                "input '{input}': element {i} ({v}) is not a {} value",
                datatype_name(dtype)
            ))
        };
        let int = || -> Result<i128, ServeError> {
            v.as_i64()
                .map(i128::from)
                .or_else(|| v.as_u64().map(i128::from))
                .ok_or_else(bad)
        };
        let float = || v.as_f64().ok_or_else(bad);
        macro_rules! put_int {
            ($t:ty) => {{
                let x = <$t>::try_from(int()?).map_err(|_| bad())?;
                out.extend_from_slice(&x.to_le_bytes());
            }};
        }
        match dtype {
            DataType::Bool => {
                let b = match v {
                    Value::Bool(b) => *b,
                    Value::Number(_) => match int()? {
                        0 => false,
                        1 => true,
                        _ => return Err(bad()),
                    },
                    _ => return Err(bad()),
                };
                out.push(u8::from(b));
            }
            DataType::U8 => put_int!(u8),
            DataType::U16 => put_int!(u16),
            DataType::U32 => put_int!(u32),
            DataType::U64 => put_int!(u64),
            DataType::I8 => put_int!(i8),
            DataType::I16 => put_int!(i16),
            DataType::I32 => put_int!(i32),
            DataType::I64 => put_int!(i64),
            DataType::F16 => out.extend_from_slice(&f16::from_f64(float()?).to_le_bytes()),
            DataType::BF16 => out.extend_from_slice(&bf16::from_f64(float()?).to_le_bytes()),
            DataType::F32 => out.extend_from_slice(&(float()? as f32).to_le_bytes()),
            DataType::F64 => out.extend_from_slice(&float()?.to_le_bytes()),
        }
    }
    Ok(out)
}

/// Writes little-endian `data` of `dtype` as a flat JSON array (non-finite floats as `null`,
/// since JSON has no NaN or infinity).
pub fn write_json_data(out: &mut String, dtype: DataType, data: &[u8]) {
    use std::fmt::Write as _;
    let size = dtype.size_in_bytes();
    out.push('[');
    for (i, c) in data.chunks_exact(size).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let float = |out: &mut String, finite: bool, text: std::fmt::Arguments| {
            if finite {
                let _ = out.write_fmt(text);
            } else {
                out.push_str("null");
            }
        };
        let _ = match dtype {
            DataType::Bool => write!(out, "{}", c[0] != 0),
            DataType::U8 => write!(out, "{}", c[0]),
            DataType::I8 => write!(out, "{}", c[0] as i8),
            DataType::U16 => write!(out, "{}", u16::from_le_bytes([c[0], c[1]])),
            DataType::I16 => write!(out, "{}", i16::from_le_bytes([c[0], c[1]])),
            DataType::U32 => write!(out, "{}", u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            DataType::I32 => write!(out, "{}", i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            DataType::U64 => write!(
                out,
                "{}",
                u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
            ),
            DataType::I64 => write!(
                out,
                "{}",
                i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
            ),
            DataType::F16 => {
                let x = f16::from_le_bytes([c[0], c[1]]);
                float(out, x.is_finite(), format_args!("{x}"));
                Ok(())
            }
            DataType::BF16 => {
                let x = bf16::from_le_bytes([c[0], c[1]]);
                float(out, x.is_finite(), format_args!("{x}"));
                Ok(())
            }
            DataType::F32 => {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                float(out, x.is_finite(), format_args!("{x}"));
                Ok(())
            }
            DataType::F64 => {
                let x = f64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
                float(out, x.is_finite(), format_args!("{x}"));
                Ok(())
            }
        };
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kiln_type_round_trips_through_its_name() {
        for d in DataType::ALL {
            assert_eq!(parse_datatype(datatype_name(d), "x").unwrap(), d);
        }
        let e = parse_datatype("BYTES", "text").unwrap_err();
        assert!(e.to_string().contains("input 'text'") && e.to_string().contains("BYTES"));
        assert_eq!(e.http_status(), 400);
        let e = parse_datatype("FLOAT", "x").unwrap_err().to_string();
        assert!(
            e.contains("unknown datatype 'FLOAT'") && e.contains("FP32"),
            "{e}"
        );
    }

    #[test]
    fn json_data_nested_or_flat_gives_the_same_bytes() {
        let mut rng = fastrand::Rng::with_seed(7);
        let vals: Vec<f32> = (0..6).map(|_| rng.f32() * 4.0 - 2.0).collect();
        let flat = json!(vals);
        let nested = json!([[vals[0], vals[1], vals[2]], [vals[3], vals[4], vals[5]]]);
        let a = json_to_bytes(&flat, DataType::F32, 6, "x").unwrap();
        let b = json_to_bytes(&nested, DataType::F32, 6, "x").unwrap();
        assert_eq!(a, b);
        let back: Vec<f32> = a
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(back, vals);
        let mut text = String::new();
        write_json_data(&mut text, DataType::F32, &a);
        let parsed: Vec<f32> = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, vals);
    }

    #[test]
    fn json_data_is_checked_per_type() {
        let e = json_to_bytes(&json!([1, 2, 300]), DataType::U8, 3, "ids")
            .unwrap_err()
            .to_string();
        assert!(e.contains("input 'ids'") && e.contains("element 2") && e.contains("UINT8"));
        let e = json_to_bytes(&json!([1, 2]), DataType::I32, 3, "ids")
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 values given where its shape holds 3"), "{e}");
        let e = json_to_bytes(&json!(["a"]), DataType::F32, 1, "x").unwrap_err();
        assert!(e.to_string().contains("FP32"));
        let b = json_to_bytes(&json!([true, false, 1]), DataType::Bool, 3, "m").unwrap();
        assert_eq!(b, [1, 0, 1]);
        let b = json_to_bytes(&json!([-5, 7]), DataType::I64, 2, "m").unwrap();
        let mut text = String::new();
        write_json_data(&mut text, DataType::I64, &b);
        assert_eq!(text, "[-5,7]");
        let h = json_to_bytes(&json!([0.5, -2.0]), DataType::F16, 2, "h").unwrap();
        let mut text = String::new();
        write_json_data(&mut text, DataType::F16, &h);
        assert_eq!(text, "[0.5,-2]");
        let mut text = String::new();
        write_json_data(&mut text, DataType::F32, &f32::NAN.to_le_bytes());
        assert_eq!(text, "[null]");
    }

    #[test]
    fn negative_shapes_are_refused() {
        assert_eq!(shape_to_dims(&[2, 3], "x").unwrap(), [2, 3]);
        let e = shape_to_dims(&[-1, 3], "x").unwrap_err().to_string();
        assert!(e.contains("input 'x'") && e.contains("negative"), "{e}");
    }
}
