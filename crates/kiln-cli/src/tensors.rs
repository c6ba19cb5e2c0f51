//! Tensors on the command line: `.npy` files in and out, seeded random inputs, and the
//! comparison of outputs with expected ones (shapes are parsed in `engine_source`).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use anyhow::{Context, Result, bail};
use kiln_core::DataType;
use kiln_reference::Value;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Reads `path` as a tensor of `dtype` (the model's declared type of the input).
pub fn read_npy(path: &Path, dtype: DataType) -> Result<Value> {
    let open = || -> Result<BufReader<File>> {
        Ok(BufReader::new(
            File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let bad = |e: ndarray_npy::ReadNpyError| {
        anyhow::anyhow!(
            "{}: cannot read as a {dtype} array: {e}. Save it with numpy as {dtype} (np.save)",
            path.display()
        )
    };
    Ok(match dtype {
        DataType::F32 => Value::F32(ArrayD::<f32>::read_npy(open()?).map_err(bad)?),
        DataType::F64 => Value::F64(ArrayD::<f64>::read_npy(open()?).map_err(bad)?),
        DataType::I8 => Value::I8(ArrayD::<i8>::read_npy(open()?).map_err(bad)?),
        DataType::I16 => Value::I16(ArrayD::<i16>::read_npy(open()?).map_err(bad)?),
        DataType::I32 => Value::I32(ArrayD::<i32>::read_npy(open()?).map_err(bad)?),
        DataType::I64 => Value::I64(ArrayD::<i64>::read_npy(open()?).map_err(bad)?),
        DataType::U8 => Value::U8(ArrayD::<u8>::read_npy(open()?).map_err(bad)?),
        DataType::U16 => Value::U16(ArrayD::<u16>::read_npy(open()?).map_err(bad)?),
        DataType::U32 => Value::U32(ArrayD::<u32>::read_npy(open()?).map_err(bad)?),
        DataType::U64 => Value::U64(ArrayD::<u64>::read_npy(open()?).map_err(bad)?),
        DataType::Bool => Value::Bool(ArrayD::<bool>::read_npy(open()?).map_err(bad)?),
        DataType::F16 | DataType::BF16 => {
            // .npy has no bfloat16 and ndarray-npy no float16: read f32 and round.
            let a = ArrayD::<f32>::read_npy(open()?).map_err(bad)?;
            if dtype == DataType::F16 {
                Value::F16(a.mapv(half::f16::from_f32))
            } else {
                Value::BF16(a.mapv(half::bf16::from_f32))
            }
        }
    })
}

/// Writes `v` as `.npy` (f16 and bf16 as f32, which .npy readers everywhere understand).
pub fn write_npy(path: &Path, v: &Value) -> Result<()> {
    let f =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let r = match v {
        Value::F32(a) => a.write_npy(f),
        Value::F64(a) => a.write_npy(f),
        Value::F16(a) => a.mapv(|x| x.to_f32()).write_npy(f),
        Value::BF16(a) => a.mapv(|x| x.to_f32()).write_npy(f),
        Value::I8(a) => a.write_npy(f),
        Value::I16(a) => a.write_npy(f),
        Value::I32(a) => a.write_npy(f),
        Value::I64(a) => a.write_npy(f),
        Value::U8(a) => a.write_npy(f),
        Value::U16(a) => a.write_npy(f),
        Value::U32(a) => a.write_npy(f),
        Value::U64(a) => a.write_npy(f),
        Value::Bool(a) => a.write_npy(f),
    };
    r.with_context(|| format!("writing {}", path.display()))
}

/// Seeded random data: floats uniform in [-1, 1), integers in [0, 100), bools fair coins.
/// Never all zeros.
pub fn random_value(dtype: DataType, shape: &[usize], rng: &mut StdRng) -> Value {
    let n: usize = shape.iter().product();
    let dims = IxDyn(shape);
    let floats =
        |rng: &mut StdRng| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let ints =
        |rng: &mut StdRng| -> Vec<i64> { (0..n).map(|_| rng.random_range(0..100)).collect() };
    let arr = |v: Vec<f32>| {
        ArrayD::from_shape_vec(dims.clone(), v).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&[0])))
    };
    let iarr = |v: Vec<i64>| {
        ArrayD::from_shape_vec(dims.clone(), v).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&[0])))
    };
    match dtype {
        DataType::F32 => Value::F32(arr(floats(rng))),
        DataType::F64 => Value::F64(arr(floats(rng)).mapv(f64::from)),
        DataType::F16 => Value::F16(arr(floats(rng)).mapv(half::f16::from_f32)),
        DataType::BF16 => Value::BF16(arr(floats(rng)).mapv(half::bf16::from_f32)),
        DataType::I8 => Value::I8(iarr(ints(rng)).mapv(|x| x as i8)),
        DataType::I16 => Value::I16(iarr(ints(rng)).mapv(|x| x as i16)),
        DataType::I32 => Value::I32(iarr(ints(rng)).mapv(|x| x as i32)),
        DataType::I64 => Value::I64(iarr(ints(rng))),
        DataType::U8 => Value::U8(iarr(ints(rng)).mapv(|x| x as u8)),
        DataType::U16 => Value::U16(iarr(ints(rng)).mapv(|x| x as u16)),
        DataType::U32 => Value::U32(iarr(ints(rng)).mapv(|x| x as u32)),
        DataType::U64 => Value::U64(iarr(ints(rng)).mapv(|x| x as u64)),
        DataType::Bool => Value::Bool(iarr(ints(rng)).mapv(|x| x % 2 == 1)),
    }
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// How an output compares with an expected one.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub max_abs: f64,
    pub max_rel: f64,
    pub rel_l2: f64,
    pub cosine: f64,
    pub nan_mismatch: usize,
    pub pass: bool,
}

/// Compares element-wise (as f64): passes when every element satisfies
/// `|got - want| <= atol + rtol * |want|` and NaNs sit in the same places.
pub fn compare(got: &Value, want: &Value, rtol: f64, atol: f64) -> Result<Comparison> {
    if got.shape() != want.shape() {
        bail!(
            "shape {:?} where {:?} was expected",
            got.shape(),
            want.shape()
        );
    }
    let g = got.to_f64_vec();
    let w = want.to_f64_vec();
    let (mut max_abs, mut max_rel, mut num, mut den, mut dot, mut gg) =
        (0.0f64, 0.0f64, 0.0, 0.0, 0.0, 0.0);
    let mut nan_mismatch = 0;
    let mut pass = true;
    for (&a, &b) in g.iter().zip(&w) {
        if a.is_nan() || b.is_nan() {
            if a.is_nan() != b.is_nan() {
                nan_mismatch += 1;
                pass = false;
            }
            continue;
        }
        let d = (a - b).abs();
        max_abs = max_abs.max(d);
        if b != 0.0 {
            max_rel = max_rel.max(d / b.abs());
        }
        if d > atol + rtol * b.abs() {
            pass = false;
        }
        num += d * d;
        den += b * b;
        dot += a * b;
        gg += a * a;
    }
    let rel_l2 = if den > 0.0 {
        (num / den).sqrt()
    } else if num == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    let cosine = if den > 0.0 && gg > 0.0 {
        dot / (den.sqrt() * gg.sqrt())
    } else {
        1.0
    };
    Ok(Comparison {
        max_abs,
        max_rel,
        rel_l2,
        cosine,
        nan_mismatch,
        pass,
    })
}
