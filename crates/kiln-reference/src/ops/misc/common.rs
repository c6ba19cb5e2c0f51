//! Helpers shared by this folder's ops: values as f64 arrays and back.

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

/// An f64 array stored in the element type of `like` (integers truncated toward zero after
/// the op rounded them as its spec says; bools are `!= 0`).
pub fn from_f64_like(like: &Value, a: ArrayD<f64>) -> Value {
    match like {
        Value::F32(_) => Value::F32(a.mapv(|x| x as f32)),
        Value::F64(_) => Value::F64(a),
        Value::F16(_) => Value::F16(a.mapv(half::f16::from_f64)),
        Value::BF16(_) => Value::BF16(a.mapv(half::bf16::from_f64)),
        Value::I8(_) => Value::I8(a.mapv(|x| x as i8)),
        Value::I16(_) => Value::I16(a.mapv(|x| x as i16)),
        Value::I32(_) => Value::I32(a.mapv(|x| x as i32)),
        Value::I64(_) => Value::I64(a.mapv(|x| x as i64)),
        Value::U8(_) => Value::U8(a.mapv(|x| x as u8)),
        Value::U16(_) => Value::U16(a.mapv(|x| x as u16)),
        Value::U32(_) => Value::U32(a.mapv(|x| x as u32)),
        Value::U64(_) => Value::U64(a.mapv(|x| x as u64)),
        Value::Bool(_) => Value::Bool(a.mapv(|x| x != 0.0)),
    }
}
