//! Elementwise unary ops: activations and math, one kernel per op in one module per element
//! type (`unary_f32`, `unary_f16`, ...). Float types compute in f32 and round once on store;
//! the formulas are kiln-reference's (stable Sigmoid and Softplus, NaN-propagating Relu and
//! Clip, Round half to even, integer Abs/Neg wrapping).

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{BLOCK, grid_for};
use super::library::ModuleSpec;
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, unsupported};

/// A unary op with its attributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Tanh,
    /// Gelu with `approximate = "none"` (erf).
    Gelu,
    /// Gelu with `approximate = "tanh"`.
    GeluTanh,
    Erf,
    Softplus,
    Softsign,
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Celu {
        alpha: f32,
    },
    ThresholdedRelu {
        alpha: f32,
    },
    Mish,
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Abs,
    Neg,
    Floor,
    Ceil,
    Round,
    Sign,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    /// Bounds as f32 (absent ones as -inf / +inf); NaN bounds give NaN (numpy).
    Clip {
        min: f32,
        max: f32,
    },
    /// Bool in, bool out.
    Not,
    /// Float in, bool out.
    IsNaN,
    /// Float in, bool out.
    IsInf {
        positive: bool,
        negative: bool,
    },
}

/// (name, formula in `x`, `a`, `b`) of every float op: the kernels of a float module.
const FLOAT_OPS: &[(&str, &str)] = &[
    ("relu", "(x < 0.f ? 0.f : x)"),
    ("leaky_relu", "(x > 0.f ? x : a * x)"),
    (
        "sigmoid",
        "(x > 0.f ? 1.f / (1.f + expf(-x)) : expf(x) / (1.f + expf(x)))",
    ),
    ("hard_sigmoid", "kiln_maxf(kiln_minf(a * x + b, 1.f), 0.f)"),
    (
        "hard_swish",
        "x * kiln_maxf(kiln_minf((1.f / 6.f) * x + 0.5f, 1.f), 0.f)",
    ),
    ("tanh", "tanhf(x)"),
    ("gelu", "0.5f * x * (1.f + erff(x / 1.41421356237309505f))"),
    (
        "gelu_tanh",
        "0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)))",
    ),
    ("erf", "erff(x)"),
    ("softplus", "kiln_softplus(x)"),
    ("softsign", "x / (1.f + fabsf(x))"),
    ("elu", "(x > 0.f ? x : a * expm1f(x))"),
    ("selu", "b * (x > 0.f ? x : a * expm1f(x))"),
    (
        "celu",
        "kiln_maxf(x, 0.f) + kiln_minf(a * expm1f(x / a), 0.f)",
    ),
    ("thresholded_relu", "(x > a ? x : 0.f)"),
    ("mish", "x * tanhf(kiln_softplus(x))"),
    ("sqrt", "sqrtf(x)"),
    ("reciprocal", "1.f / x"),
    ("exp", "expf(x)"),
    ("log", "logf(x)"),
    ("abs", "fabsf(x)"),
    ("neg", "-x"),
    ("floor", "floorf(x)"),
    ("ceil", "ceilf(x)"),
    ("round", "rintf(x)"),
    ("sign", "(x > 0.f ? 1.f : (x < 0.f ? -1.f : x))"),
    ("sin", "sinf(x)"),
    ("cos", "cosf(x)"),
    ("tan", "tanf(x)"),
    ("asin", "asinf(x)"),
    ("acos", "acosf(x)"),
    ("atan", "atanf(x)"),
    ("sinh", "sinhf(x)"),
    ("cosh", "coshf(x)"),
    ("asinh", "asinhf(x)"),
    ("acosh", "acoshf(x)"),
    ("atanh", "atanhf(x)"),
    ("clip", "kiln_minf(kiln_maxf(x, a), b)"),
];

/// Device functions the float formulas call besides the prelude's.
pub(crate) const FLOAT_HELPERS: &str = "__device__ __forceinline__ float kiln_softplus(float x) {\n    \
     return x != x ? x : fmaxf(x, 0.f) + log1pf(expf(-fabsf(x)));\n}\n";

/// The float formula (in `x`, `a`, `b`, f32) of the float kernel `name` (see
/// [`UnaryOp::kernel`]); `None` for ops without a float-to-float kernel. The fused
/// elementwise kernels use the same formulas.
pub(crate) fn float_formula(name: &str) -> Option<&'static str> {
    FLOAT_OPS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Float in, bool out.
const FLOAT_TESTS: &[(&str, &str)] = &[
    ("isnan", "(x != x)"),
    (
        "isinf",
        "((a != 0.f && x == kiln_inf()) || (b != 0.f && x == -kiln_inf()))",
    ),
];

/// Integer ops (compute type `A_c`, wrapping as numpy).
const INT_OPS: &[(&str, &str)] = &[
    ("relu", "(x < 0 ? (A_c)0 : x)"),
    (
        "abs",
        "(x < 0 ? (A_c)(0ull - (unsigned long long)(long long)x) : x)",
    ),
    ("neg", "(A_c)(0ull - (unsigned long long)(long long)x)"),
    ("sign", "(A_c)((x > 0) - (x < 0))"),
];

impl UnaryOp {
    /// The kernel's name part and its two float parameters.
    pub fn kernel(&self) -> (&'static str, f32, f32) {
        use UnaryOp::*;
        match *self {
            Relu => ("relu", 0.0, 0.0),
            LeakyRelu { alpha } => ("leaky_relu", alpha, 0.0),
            Sigmoid => ("sigmoid", 0.0, 0.0),
            HardSigmoid { alpha, beta } => ("hard_sigmoid", alpha, beta),
            HardSwish => ("hard_swish", 0.0, 0.0),
            Tanh => ("tanh", 0.0, 0.0),
            Gelu => ("gelu", 0.0, 0.0),
            GeluTanh => ("gelu_tanh", 0.0, 0.0),
            Erf => ("erf", 0.0, 0.0),
            Softplus => ("softplus", 0.0, 0.0),
            Softsign => ("softsign", 0.0, 0.0),
            Elu { alpha } => ("elu", alpha, 0.0),
            Selu { alpha, gamma } => ("selu", alpha, gamma),
            Celu { alpha } => ("celu", alpha, 0.0),
            ThresholdedRelu { alpha } => ("thresholded_relu", alpha, 0.0),
            Mish => ("mish", 0.0, 0.0),
            Sqrt => ("sqrt", 0.0, 0.0),
            Reciprocal => ("reciprocal", 0.0, 0.0),
            Exp => ("exp", 0.0, 0.0),
            Log => ("log", 0.0, 0.0),
            Abs => ("abs", 0.0, 0.0),
            Neg => ("neg", 0.0, 0.0),
            Floor => ("floor", 0.0, 0.0),
            Ceil => ("ceil", 0.0, 0.0),
            Round => ("round", 0.0, 0.0),
            Sign => ("sign", 0.0, 0.0),
            Sin => ("sin", 0.0, 0.0),
            Cos => ("cos", 0.0, 0.0),
            Tan => ("tan", 0.0, 0.0),
            Asin => ("asin", 0.0, 0.0),
            Acos => ("acos", 0.0, 0.0),
            Atan => ("atan", 0.0, 0.0),
            Sinh => ("sinh", 0.0, 0.0),
            Cosh => ("cosh", 0.0, 0.0),
            Asinh => ("asinh", 0.0, 0.0),
            Acosh => ("acosh", 0.0, 0.0),
            Atanh => ("atanh", 0.0, 0.0),
            Clip { min, max } => ("clip", min, max),
            Not => ("not", 0.0, 0.0),
            IsNaN => ("isnan", 0.0, 0.0),
            IsInf { positive, negative } => (
                "isinf",
                f32::from(u8::from(positive)),
                f32::from(u8::from(negative)),
            ),
        }
    }

    /// The element type of the output for input type `x`.
    pub fn output_type(&self, x: DataType) -> DataType {
        match self {
            UnaryOp::IsNaN | UnaryOp::IsInf { .. } => DataType::Bool,
            _ => x,
        }
    }
}

/// Whether the GPU runs `op` on `dtype`.
pub fn supports(op: &UnaryOp, dtype: DataType) -> bool {
    let (name, _, _) = op.kernel();
    if is_float(dtype) {
        FLOAT_OPS.iter().chain(FLOAT_TESTS).any(|(n, _)| *n == name)
    } else if dtype == DataType::Bool {
        name == "not"
    } else {
        ctype(dtype).is_some() && INT_OPS.iter().any(|(n, _)| *n == name)
    }
}

/// The module of unary kernels for `dtype`.
pub fn module(dtype: DataType) -> Result<ModuleSpec> {
    let t = ctype(dtype).ok_or_else(|| unsupported("unary op", dtype))?;
    let mut body = type_defs("A", t);
    if is_float(dtype) {
        body.push_str(FLOAT_HELPERS);
        for (name, f) in FLOAT_OPS {
            body.push_str(&format!(
                "extern \"C\" __global__ void kiln_unary_{name}(const A_s* px, A_s* py, long long n, float a, float b) {{\n    \
                 KILN_GRID_LOOP(i, n) {{ float x = A_tof(A_ld(px, i)); A_st(py, i, A_fromf({f})); }}\n}}\n"
            ));
        }
        for (name, f) in FLOAT_TESTS {
            body.push_str(&format!(
                "extern \"C\" __global__ void kiln_unary_{name}(const A_s* px, unsigned char* py, long long n, float a, float b) {{\n    \
                 KILN_GRID_LOOP(i, n) {{ float x = A_tof(A_ld(px, i)); py[i] = (unsigned char)({f}); }}\n}}\n"
            ));
        }
    } else if dtype == DataType::Bool {
        body.push_str(
            "extern \"C\" __global__ void kiln_unary_not(const A_s* px, A_s* py, long long n, float a, float b) {\n    \
             KILN_GRID_LOOP(i, n) { A_st(py, i, A_ld(px, i) == 0); }\n}\n",
        );
    } else {
        for (name, f) in INT_OPS {
            body.push_str(&format!(
                "extern \"C\" __global__ void kiln_unary_{name}(const A_s* px, A_s* py, long long n, float a, float b) {{\n    \
                 KILN_GRID_LOOP(i, n) {{ A_c x = A_ld(px, i); A_st(py, i, {f}); }}\n}}\n"
            ));
        }
    }
    Ok(ModuleSpec {
        name: format!("unary_{}", t.tag),
        source: module_source(&body),
    })
}

/// `y[i] = op(x[i])` for `n` elements of `dtype` (the output is bool for IsNaN/IsInf). `x` and
/// `y` may be the same buffer.
pub fn unary(
    lib: &KernelLibrary,
    stream: &Stream,
    op: UnaryOp,
    dtype: DataType,
    x: DevicePtr,
    y: DevicePtr,
    n: usize,
) -> Result<()> {
    let (name, a, b) = op.kernel();
    if !supports(&op, dtype) {
        return Err(unsupported(name, dtype));
    }
    if n == 0 {
        return Ok(());
    }
    let t = ctype(dtype).ok_or_else(|| unsupported(name, dtype))?;
    let module_name = format!("unary_{}", t.tag);
    let args = [
        Arg::Ptr(x.0),
        Arg::Ptr(y.0),
        Arg::I64(n as i64),
        Arg::F32(a),
        Arg::F32(b),
    ];
    lib.launch(
        stream,
        &module_name,
        || module(dtype).map(|m| m.source).unwrap_or_default(),
        &format!("kiln_unary_{name}"),
        (grid_for(n), BLOCK, 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_a_kernel_for_floats() {
        let ops = [
            UnaryOp::Relu,
            UnaryOp::LeakyRelu { alpha: 0.1 },
            UnaryOp::Gelu,
            UnaryOp::GeluTanh,
            UnaryOp::Clip { min: 0.0, max: 6.0 },
            UnaryOp::IsNaN,
            UnaryOp::IsInf {
                positive: true,
                negative: false,
            },
            UnaryOp::Atanh,
        ];
        let src = module(DataType::F16).unwrap().source;
        for op in ops {
            assert!(supports(&op, DataType::F32), "{op:?}");
            let (name, _, _) = op.kernel();
            assert!(src.contains(&format!("kiln_unary_{name}(")), "{name}");
        }
        assert!(!supports(&UnaryOp::Not, DataType::F32));
        assert!(supports(&UnaryOp::Not, DataType::Bool));
        assert!(supports(&UnaryOp::Abs, DataType::I64));
        assert!(!supports(&UnaryOp::Exp, DataType::I64));
        assert!(!supports(&UnaryOp::Exp, DataType::F64));
        assert_eq!(UnaryOp::IsNaN.output_type(DataType::F16), DataType::Bool);
    }

    #[test]
    fn module_names_and_braces() {
        for dt in [DataType::F32, DataType::BF16, DataType::I32, DataType::Bool] {
            let m = module(dt).unwrap();
            assert!(m.name.starts_with("unary_"));
            assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
        }
        assert!(module(DataType::F64).is_err());
    }
}
