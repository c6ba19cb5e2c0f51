//! Helpers shared by this folder's ops: values as f64 arrays and back.

use kiln_core::DataType;
use ndarray::ArrayD;

use crate::value::Value;

/// Every element as f64 (bools 0/1), keeping the shape. Integers are exact below 2^53.
pub fn to_f64_array(v: &Value) -> ArrayD<f64> {
    match v {
        Value::F32(a) => a.mapv(f64::from),
        Value::F64(a) => a.clone(),
        Value::F16(a) => a.mapv(|x| x.to_f64()),
        Value::BF16(a) => a.mapv(|x| x.to_f64()),
        Value::I8(a) => a.mapv(f64::from),
        Value::I16(a) => a.mapv(f64::from),
        Value::I32(a) => a.mapv(f64::from),
        Value::I64(a) => a.mapv(|x| x as f64),
        Value::U8(a) => a.mapv(f64::from),
        Value::U16(a) => a.mapv(f64::from),
        Value::U32(a) => a.mapv(f64::from),
        Value::U64(a) => a.mapv(|x| x as f64),
        Value::Bool(a) => a.mapv(|x| if x { 1.0 } else { 0.0 }),
    }
}

/// An f64 array stored in the element type of `like` (see [`from_f64_as`]).
pub fn from_f64_like(like: &Value, a: ArrayD<f64>) -> Value {
    from_f64_as(like.dtype(), a)
}

/// An f64 array stored as `dt`: floats rounded to nearest, integers truncated toward zero
/// (ops round first where their spec says so), bools `!= 0`.
pub fn from_f64_as(dt: DataType, a: ArrayD<f64>) -> Value {
    match dt {
        DataType::F32 => Value::F32(a.mapv(|x| x as f32)),
        DataType::F64 => Value::F64(a),
        DataType::F16 => Value::F16(a.mapv(half::f16::from_f64)),
        DataType::BF16 => Value::BF16(a.mapv(half::bf16::from_f64)),
        DataType::I8 => Value::I8(a.mapv(|x| x as i8)),
        DataType::I16 => Value::I16(a.mapv(|x| x as i16)),
        DataType::I32 => Value::I32(a.mapv(|x| x as i32)),
        DataType::I64 => Value::I64(a.mapv(|x| x as i64)),
        DataType::U8 => Value::U8(a.mapv(|x| x as u8)),
        DataType::U16 => Value::U16(a.mapv(|x| x as u16)),
        DataType::U32 => Value::U32(a.mapv(|x| x as u32)),
        DataType::U64 => Value::U64(a.mapv(|x| x as u64)),
        DataType::Bool => Value::Bool(a.mapv(|x| x != 0.0)),
    }
}
