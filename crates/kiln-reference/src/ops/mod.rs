//! The interpreter's ops: one file per ONNX op or family of ops with one signature, each with
//! the spec link and opset history in its module doc. Four folders, each with its own table
//! that [`lookup`] searches:
//! - [`elementwise`]: unary math and activations, binary arithmetic with broadcasting, variadic
//!   Min/Max/Sum/Mean, comparisons and logic, Where, Clip, Cast;
//! - [`nn`]: Conv, ConvTranspose, pooling, normalisations, Gemm/MatMul, Softmax, LRN;
//! - [`tensor`]: shape and data movement (Reshape, Transpose, Concat, Slice, Gather, Pad, ...);
//! - [`misc`]: reductions, ArgMax, TopK, CumSum, Resize, Einsum, Trilu, Range, Q/DQ.
//!
//! Besides the default domain, [`nn`] holds ONNX Runtime's `com.microsoft::FusedConv` and
//! `FusedGemm` (its own table, searched for that domain).

use kiln_onnx::{Node, is_onnx_domain};
use ndarray::ArrayD;

use crate::error::{RefError, Result};
use crate::value::Value;

pub mod elementwise;
pub mod misc;
pub mod nn;
pub mod tensor;

/// An op's computation: inputs (by position) to outputs (by position).
pub type OpFn = fn(&OpCtx<'_>) -> Result<Vec<Value>>;

/// The interpreter's function for `op_type` in `domain`, if it has one: the default domain's
/// ops, and ONNX Runtime's FusedConv and FusedGemm in `com.microsoft` ([`nn::fused`]).
pub fn lookup(domain: &str, op_type: &str) -> Option<OpFn> {
    let tables: &[&[(&str, OpFn)]] = if is_onnx_domain(domain) {
        &[elementwise::OPS, nn::OPS, tensor::OPS, misc::OPS]
    } else if domain == kiln_onnx::MS_DOMAIN {
        &[nn::MS_OPS]
    } else {
        return None;
    };
    tables
        .iter()
        .flat_map(|t| t.iter())
        .find(|(name, _)| *name == op_type)
        .map(|(_, f)| *f)
}

/// Every default-domain op the interpreter implements, sorted.
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = elementwise::OPS
        .iter()
        .chain(nn::OPS)
        .chain(tensor::OPS)
        .chain(misc::OPS)
        .map(|(n, _)| *n)
        .collect();
    v.sort_unstable();
    v
}

/// One node's inputs and attributes as an op sees them.
pub struct OpCtx<'a> {
    pub node: &'a Node,
    /// The model's version of the node's domain.
    pub opset: i64,
    inputs: Vec<Option<&'a Value>>,
}

impl<'a> OpCtx<'a> {
    pub fn new(node: &'a Node, opset: i64, inputs: Vec<Option<&'a Value>>) -> OpCtx<'a> {
        OpCtx {
            node,
            opset,
            inputs,
        }
    }

    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Input `i`, `None` when omitted.
    pub fn input(&self, i: usize) -> Option<&'a Value> {
        self.inputs.get(i).copied().flatten()
    }

    /// Input `i`, or an error naming the node when it is missing.
    pub fn required(&self, i: usize) -> Result<&'a Value> {
        self.input(i).ok_or_else(|| {
            self.err(
                format!("required input #{i} is missing"),
                "Connect the input (the ONNX operator spec lists it)",
            )
        })
    }

    /// An error about this node.
    pub fn err(&self, problem: impl Into<String>, fix: impl Into<String>) -> RefError {
        RefError::Op {
            node: Box::new(self.node.node_ref()),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// An error for an input of an element type this op does not take.
    pub fn bad_dtype(&self, i: usize, v: &Value) -> RefError {
        self.err(
            format!(
                "input #{i} has element type {}, which {} does not take",
                v.dtype(),
                self.node.op_type
            ),
            "Cast the input to a type the ONNX operator spec allows",
        )
    }

    pub fn attr_int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.node.attr_int(name)?.unwrap_or(default))
    }

    pub fn attr_float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.node.attr_float(name)?.unwrap_or(default))
    }

    pub fn attr_string(&self, name: &str, default: &str) -> Result<String> {
        Ok(self
            .node
            .attr_string(name)?
            .unwrap_or_else(|| default.to_string()))
    }

    pub fn attr_ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.node.attr_ints(name)?.map(<[i64]>::to_vec))
    }

    pub fn attr_floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.node.attr_floats(name)?.map(<[f32]>::to_vec))
    }

    /// Integer input `i` (any integer type) as i64s: shapes, axes, indices, pads.
    pub fn input_i64s(&self, i: usize) -> Result<Vec<i64>> {
        let v = self.required(i)?;
        Ok(match v {
            Value::I64(a) => a.iter().copied().collect(),
            Value::I32(a) => a.iter().map(|&x| x as i64).collect(),
            Value::I16(a) => a.iter().map(|&x| x as i64).collect(),
            Value::I8(a) => a.iter().map(|&x| x as i64).collect(),
            Value::U8(a) => a.iter().map(|&x| x as i64).collect(),
            Value::U16(a) => a.iter().map(|&x| x as i64).collect(),
            Value::U32(a) => a.iter().map(|&x| x as i64).collect(),
            other => return Err(self.bad_dtype(i, other)),
        })
    }

    /// Float input `i` (f32, f64, f16 or bf16) as an f32 array: for ops computed in f32.
    pub fn input_f32(&self, i: usize) -> Result<ArrayD<f32>> {
        let v = self.required(i)?;
        to_f32(v).ok_or_else(|| self.bad_dtype(i, v))
    }

    /// An ONNX axis in `[-rank, rank)` as an index.
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize> {
        let r = rank as i64;
        if axis < -r || axis >= r {
            return Err(self.err(
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
}

/// A float value as f32 (f64 rounded, f16/bf16 widened); `None` for non-float values.
pub fn to_f32(v: &Value) -> Option<ArrayD<f32>> {
    Some(match v {
        Value::F32(a) => a.clone(),
        Value::F64(a) => a.mapv(|x| x as f32),
        Value::F16(a) => a.mapv(|x| x.to_f32()),
        Value::BF16(a) => a.mapv(|x| x.to_f32()),
        _ => return None,
    })
}

/// An f32 result stored back in the element type of `like` (f32, f64, f16 or bf16).
pub fn from_f32_like(like: &Value, a: ArrayD<f32>) -> Value {
    match like {
        Value::F64(_) => Value::F64(a.mapv(|x| x as f64)),
        Value::F16(_) => Value::F16(a.mapv(half::f16::from_f32)),
        Value::BF16(_) => Value::BF16(a.mapv(half::bf16::from_f32)),
        _ => Value::F32(a),
    }
}
