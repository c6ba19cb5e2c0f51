//! Fused elementwise kernels: a chain (a DAG) of float unary/binary ops over several inputs,
//! generated as one CUDA C module per expression and element types, so the intermediate
//! values never leave registers.
//!
//! The expression is a small postfix language ([`Expr`]), written by the builder's
//! elementwise rewrite into the fused node's `expr` attribute. Tokens, separated by spaces:
//!
//! - `i<k>`: the value of input `k` (inputs are numbered by first use);
//! - `c<hex>`: an f32 literal given by its eight-digit bit pattern (exact, NaN and inf too);
//! - `t<k>`: the result of the `k`-th op again (a value used twice);
//! - `u:<name>:<a>:<b>`: a unary op of [`super::unary`] by kernel name, with its two f32
//!   parameters as bit patterns (LeakyRelu's alpha, Clip's bounds, ...);
//! - `b:<name>`: a binary arithmetic op of [`super::binary`] (`add`, `sub`, `mul`, `div`,
//!   `pow`, `min`, `max`, `prelu`), first operand pushed first.
//!
//! Every op computes in f32 with the formulas of the single-op kernels (so the semantics are
//! kiln-reference's); inputs are read from their storage type (f32, f16, bf16) and the result
//! is rounded once to the output's storage type.
//!
//! A module (`ew_<hash of expression and types>`) has two entry points; shapes are kernel
//! parameters, so one module serves every shape:
//!
//! - `ew_contig`: every input has the output's shape (same element count) or one element.
//!   Each thread handles vectors of `V` elements (`V` = 16 bytes over the widest element
//!   type: 8 for half-only kernels, 4 with f32) with 16-byte (or 8-byte) loads and stores
//!   when every pointer is aligned, then a scalar tail; a grid-stride loop.
//! - `ew_bcast`: numpy broadcasting through per-input strides (0 on broadcast axes, axes
//!   contiguous in every operand merged), offsets by the prelude's unrolled index math. When
//!   the innermost axis is a multiple of `V` and every input reads it contiguously or not at
//!   all (a bias over the last axis, an attention mask `[b, 1, 1, s]`), it too moves vectors.
//!
//! Two code paths ([`Variant`]): [`Variant::Fast`] (the default) packs and unpacks 16-bit
//! words two at a time, runs the contiguous entry point on a grid of a few blocks per SM, and
//! for all-f16/bf16 storage uses a cheaper erf and multiplies by the reciprocal of a literal
//! divisor (see [`fast`]); `KILN_EW_FAST=0` selects [`Variant::Baseline`] (module names
//! differ, so both can live in one process).

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::binary::{BinaryOp, Operand};
use super::ffi::Arg;
use super::layout::{BLOCK, Dims, broadcast_strides, collapse, grid_for, numel};
use super::library::ModuleSpec;
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, MAX_RANK, Result, invalid, unsupported};

#[path = "fused_fast.rs"]
pub mod fast;
pub use fast::Variant;

/// Most tensor inputs of one fused kernel (each brings a stride set of 64 bytes to the
/// broadcast entry point's parameters).
pub const MAX_INPUTS: usize = 16;

const OP: &str = "fused elementwise";

/// One token of an [`Expr`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token {
    Input(usize),
    Literal(f32),
    /// The result of the k-th op again.
    Temp(usize),
    /// A unary op: kernel name and its two parameters.
    Unary(&'static str, f32, f32),
    Binary(BinaryOp),
}

/// A parsed, checked fused expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub tokens: Vec<Token>,
    /// Number of tensor inputs (the highest `i<k>` plus one).
    pub inputs: usize,
}

const BINARY: &[BinaryOp] = &[
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Pow,
    BinaryOp::Min,
    BinaryOp::Max,
    BinaryOp::PRelu,
];

/// The unary kernel names the fused kernels take (those with a float-to-float formula).
fn unary_name(name: &str) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "relu",
        "leaky_relu",
        "sigmoid",
        "hard_sigmoid",
        "hard_swish",
        "tanh",
        "gelu",
        "gelu_tanh",
        "erf",
        "softplus",
        "softsign",
        "elu",
        "selu",
        "celu",
        "thresholded_relu",
        "mish",
        "sqrt",
        "reciprocal",
        "exp",
        "log",
        "abs",
        "neg",
        "floor",
        "ceil",
        "round",
        "sign",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "asinh",
        "acosh",
        "atanh",
        "clip",
    ];
    NAMES
        .iter()
        .copied()
        .find(|n| *n == name)
        .filter(|n| super::unary::float_formula(n).is_some())
}

/// The token text of an f32 (its bit pattern).
pub fn literal(v: f32) -> String {
    format!("c{:08x}", v.to_bits())
}

/// The token text of a unary op.
pub fn unary_token(name: &str, a: f32, b: f32) -> String {
    format!("u:{name}:{:08x}:{:08x}", a.to_bits(), b.to_bits())
}

/// The token text of a binary op.
pub fn binary_token(op: BinaryOp) -> String {
    format!("b:{}", op.name())
}

fn hex_f32(s: &str, tok: &str) -> Result<f32> {
    if s.len() != 8 {
        return Err(invalid(
            OP,
            format!("'{tok}': literal bits need 8 hex digits"),
        ));
    }
    u32::from_str_radix(s, 16)
        .map(f32::from_bits)
        .map_err(|_| invalid(OP, format!("'{tok}': bad hex literal")))
}

fn index(s: &str, tok: &str) -> Result<usize> {
    s.parse()
        .map_err(|_| invalid(OP, format!("'{tok}': bad index")))
}

impl Expr {
    /// Parses and checks `text` (stack discipline, indices, one result).
    pub fn parse(text: &str) -> Result<Expr> {
        let mut tokens = Vec::new();
        let (mut depth, mut ops, mut inputs) = (0usize, 0usize, 0usize);
        for tok in text.split_whitespace() {
            let t = if let Some(rest) = tok.strip_prefix("u:") {
                let mut it = rest.split(':');
                let (Some(name), Some(a), Some(b), None) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    return Err(invalid(OP, format!("'{tok}': want u:<name>:<a>:<b>")));
                };
                let name = unary_name(name)
                    .ok_or_else(|| invalid(OP, format!("'{tok}': no fused unary op '{name}'")))?;
                Token::Unary(name, hex_f32(a, tok)?, hex_f32(b, tok)?)
            } else if let Some(name) = tok.strip_prefix("b:") {
                let op = BINARY
                    .iter()
                    .copied()
                    .find(|o| o.name() == name)
                    .ok_or_else(|| invalid(OP, format!("'{tok}': no fused binary op")))?;
                Token::Binary(op)
            } else if let Some(k) = tok.strip_prefix('i') {
                Token::Input(index(k, tok)?)
            } else if let Some(k) = tok.strip_prefix('t') {
                Token::Temp(index(k, tok)?)
            } else if let Some(h) = tok.strip_prefix('c') {
                Token::Literal(hex_f32(h, tok)?)
            } else {
                return Err(invalid(OP, format!("unknown token '{tok}'")));
            };
            match t {
                Token::Input(k) => {
                    inputs = inputs.max(k + 1);
                    depth += 1;
                }
                Token::Literal(_) => depth += 1,
                Token::Temp(k) => {
                    if k >= ops {
                        return Err(invalid(OP, format!("'{tok}' refers to a later op")));
                    }
                    depth += 1;
                }
                Token::Unary(..) | Token::Binary(_) => {
                    let arity = if matches!(t, Token::Unary(..)) { 1 } else { 2 };
                    if depth < arity {
                        return Err(invalid(OP, format!("'{tok}' lacks operands")));
                    }
                    depth = depth - arity + 1;
                    ops += 1;
                }
            }
            tokens.push(t);
        }
        if depth != 1 || ops == 0 {
            return Err(invalid(
                OP,
                format!("'{text}' must leave exactly one value computed by an op"),
            ));
        }
        if inputs > MAX_INPUTS {
            return Err(invalid(
                OP,
                format!("{inputs} inputs (at most {MAX_INPUTS})"),
            ));
        }
        Ok(Expr { tokens, inputs })
    }

    /// The body of `__device__ float ew_eval(float x0, ..)`: one statement per op. With
    /// `half_math` (every operand stored as f16/bf16, fast path) erf and division by a literal
    /// take the cheaper forms of [`fast`].
    fn eval_body(&self, half_math: bool) -> String {
        let f = |v: f32| format!("__uint_as_float(0x{:08x}u)", v.to_bits());
        // Each entry: the C operand and, for a literal, its value.
        let mut stack: Vec<(String, Option<f32>)> = Vec::new();
        let mut body = String::new();
        let mut ops = 0usize;
        for t in &self.tokens {
            match *t {
                Token::Input(k) => stack.push((format!("x{k}"), None)),
                Token::Literal(v) => stack.push((f(v), Some(v))),
                Token::Temp(k) => stack.push((format!("t{k}"), None)),
                Token::Unary(name, a, b) => {
                    let (x, _) = stack.pop().unwrap_or_default();
                    let formula = half_math
                        .then(|| fast::half_formula(name))
                        .flatten()
                        .or_else(|| super::unary::float_formula(name))
                        .unwrap_or("x");
                    body.push_str(&format!(
                        "    float t{ops}; {{ const float x = {x}; const float a = {}; const float b = {}; \
                         (void)a; (void)b; t{ops} = ({formula}); }} // {name}\n",
                        f(a),
                        f(b)
                    ));
                    stack.push((format!("t{ops}"), None));
                    ops += 1;
                }
                Token::Binary(op) => {
                    let (y, yv) = stack.pop().unwrap_or_default();
                    let (x, _) = stack.pop().unwrap_or_default();
                    let recip = yv
                        .filter(|_| half_math && op == BinaryOp::Div)
                        .and_then(fast::reciprocal);
                    if let Some(r) = recip {
                        body.push_str(&format!(
                            "    const float t{ops} = {x} * {}; // div by a literal: times its reciprocal\n",
                            f(r)
                        ));
                    } else {
                        let formula = super::binary::float_formula(op).unwrap_or("x");
                        body.push_str(&format!(
                            "    float t{ops}; {{ const float x = {x}; const float y = {y}; t{ops} = ({formula}); }} // {}\n",
                            op.name()
                        ));
                    }
                    stack.push((format!("t{ops}"), None));
                    ops += 1;
                }
            }
        }
        body.push_str(&format!(
            "    return {};\n",
            stack.pop().map_or_else(|| "0.f".into(), |(s, _)| s)
        ));
        body
    }
}

/// Elements per vector for these storage types: 16 bytes over the widest.
pub fn vector_width(inputs: &[DataType], output: DataType) -> usize {
    let widest = inputs
        .iter()
        .chain(std::iter::once(&output))
        .map(|d| d.size_in_bytes())
        .max()
        .unwrap_or(4)
        .max(1);
    (16 / widest).clamp(1, 8)
}

/// FNV-1a, 64 bits: stable across runs and machines (module names live in plans).
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.as_bytes().iter().chain(b"\x1f") {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The module name of `expr` over these storage types ([`Variant::from_env`]'s code).
pub fn module_name(expr: &str, inputs: &[DataType], output: DataType) -> String {
    module_name_for(expr, inputs, output, Variant::from_env())
}

/// The module name of `expr` over these storage types in `variant`'s code.
pub fn module_name_for(
    expr: &str,
    inputs: &[DataType],
    output: DataType,
    variant: Variant,
) -> String {
    let mut parts: Vec<String> = vec![expr.split_whitespace().collect::<Vec<_>>().join(" ")];
    parts.extend(inputs.iter().map(|d| format!("{d}")));
    parts.push(format!("->{output}"));
    if variant == Variant::Fast {
        parts.push("fast".into());
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    format!("ew_{:016x}", stable_hash(&refs))
}

/// (convert a 16-bit storage word to f32, convert f32 to the storage word) for a half type.
fn half_conv(dtype: DataType) -> (&'static str, &'static str) {
    if dtype == DataType::BF16 {
        ("kiln_bf16_to_f32", "kiln_f32_to_bf16")
    } else {
        ("kiln_f16_to_f32", "kiln_f32_to_f16")
    }
}

/// The 32-bit words of a vector of `v` elements of `size` bytes, as C field accesses of the
/// loaded `uint4` (16 bytes) or `uint2` (8 bytes) named `q`.
fn vector_words(v: usize, size: usize) -> (&'static str, Vec<&'static str>) {
    match v * size {
        16 => ("uint4", vec!["q.x", "q.y", "q.z", "q.w"]),
        8 => ("uint2", vec!["q.x", "q.y"]),
        _ => ("unsigned int", vec!["q"]),
    }
}

/// `P_ldv(p, e, v)`: loads elements `e .. e + V` (e a multiple of V, p aligned) as f32, and
/// `P_stv(p, e, v)`: stores them rounded to the storage type.
fn vector_defs(p: &str, dtype: DataType, v: usize, variant: Variant) -> String {
    let size = dtype.size_in_bytes();
    let (vt, words) = vector_words(v, size);
    if variant == Variant::Fast && size == 2 {
        return fast::half_vector_defs(p, dtype == DataType::BF16, vt, &words);
    }
    let mut ld = format!(
        "__device__ __forceinline__ void {p}_ldv(const {p}_s* p, long long e, float* v) {{\n    \
         const {vt} q = *reinterpret_cast<const {vt}*>(p + e);\n"
    );
    let mut st = format!(
        "__device__ __forceinline__ void {p}_stv({p}_s* p, long long e, const float* v) {{\n    \
         {vt} q;\n"
    );
    let mut k = 0;
    for w in &words {
        if size == 4 {
            ld.push_str(&format!("    v[{k}] = __uint_as_float({w});\n"));
            st.push_str(&format!("    {w} = __float_as_uint(v[{k}]);\n"));
            k += 1;
        } else {
            let (to, from) = half_conv(dtype);
            ld.push_str(&format!(
                "    v[{k}] = {to}((unsigned short)({w} & 0xffffu));\n    \
                 v[{}] = {to}((unsigned short)({w} >> 16));\n",
                k + 1
            ));
            st.push_str(&format!(
                "    {w} = (unsigned int){from}(v[{k}]) | ((unsigned int){from}(v[{}]) << 16);\n",
                k + 1
            ));
            k += 2;
        }
    }
    ld.push_str("}\n");
    st.push_str(&format!("    *reinterpret_cast<{vt}*>(p + e) = q;\n}}\n"));
    ld + &st
}

fn check_types(inputs: &[DataType], output: DataType) -> Result<()> {
    for &d in inputs.iter().chain(std::iter::once(&output)) {
        if !is_float(d) {
            return Err(unsupported(OP, d));
        }
    }
    Ok(())
}

/// Whether the fast path's half-storage math applies: every input and the output are
/// stored as f16/bf16.
pub fn half_math(inputs: &[DataType], output: DataType, variant: Variant) -> bool {
    variant == Variant::Fast
        && inputs
            .iter()
            .chain(std::iter::once(&output))
            .all(|d| matches!(d, DataType::F16 | DataType::BF16))
}

/// Parses `expr` and checks it against the storage types.
fn checked(expr: &str, inputs: &[DataType], output: DataType) -> Result<Expr> {
    let e = Expr::parse(expr)?;
    if e.inputs != inputs.len() {
        return Err(invalid(
            OP,
            format!(
                "the expression reads {} inputs, {} given",
                e.inputs,
                inputs.len()
            ),
        ));
    }
    check_types(inputs, output)?;
    Ok(e)
}

/// The module of `expr` reading inputs of storage types `inputs` and writing `output`
/// ([`Variant::from_env`]'s code).
pub fn module(expr: &str, inputs: &[DataType], output: DataType) -> Result<ModuleSpec> {
    module_for(expr, inputs, output, Variant::from_env())
}

/// The module of `expr` reading inputs of storage types `inputs` and writing `output` in
/// `variant`'s code.
pub fn module_for(
    expr: &str,
    inputs: &[DataType],
    output: DataType,
    variant: Variant,
) -> Result<ModuleSpec> {
    let e = checked(expr, inputs, output)?;
    Ok(ModuleSpec {
        name: module_name_for(expr, inputs, output, variant),
        source: source(&e, inputs, output, variant)?,
    })
}

/// The CUDA C of a checked expression.
fn source(e: &Expr, inputs: &[DataType], output: DataType, variant: Variant) -> Result<String> {
    let v = vector_width(inputs, output);
    let half_math = half_math(inputs, output, variant);
    let mut body = String::from(super::unary::FLOAT_HELPERS);
    if half_math {
        body.push_str(&fast::erf_fast_source());
    }
    let ct = |d: DataType| ctype(d).ok_or_else(|| unsupported(OP, d));
    for (k, &d) in inputs.iter().enumerate() {
        let p = format!("I{k}");
        body.push_str(&type_defs(&p, ct(d)?));
        body.push_str(&vector_defs(&p, d, v, variant));
    }
    body.push_str(&type_defs("O", ct(output)?));
    body.push_str(&vector_defs("O", output, v, variant));
    body.push_str(&format!("#define EW_V {v}\n"));
    let n = inputs.len();
    let xs: Vec<String> = (0..n).map(|k| format!("float x{k}")).collect();
    body.push_str(&format!(
        "__device__ __forceinline__ float ew_eval({}) {{\n{}}}\n",
        xs.join(", "),
        e.eval_body(half_math)
    ));
    let ptrs: String = (0..n).map(|k| format!("const I{k}_s* p{k}, ")).collect();
    let lanes = |src: &str| -> String {
        (0..n)
            .map(|k| format!("{}[k]", src.replace('#', &k.to_string())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Loads of one vector: input k either one value for all lanes (`bk`) or a vector.
    let vec_loads = |offset: &dyn Fn(usize) -> String, bcast_value: &dyn Fn(usize) -> String| {
        (0..n)
            .map(|k| {
                format!(
                    "            float a{k}[EW_V];\n            \
                     if (b{k}) {{ const float s = {}; \
                     \n#pragma unroll\n                for (int k = 0; k < EW_V; ++k) a{k}[k] = s; }}\n            \
                     else I{k}_ldv(p{k}, {}, a{k});\n",
                    bcast_value(k),
                    offset(k)
                )
            })
            .collect::<String>()
    };
    let compute_store = format!(
        "            float r[EW_V];\n            \
         \n#pragma unroll\n                for (int k = 0; k < EW_V; ++k) r[k] = ew_eval({});\n            \
         O_stv(py, e, r);\n",
        lanes("a#")
    );
    // Contiguous entry point.
    let flags: String = (0..n)
        .map(|k| {
            format!(
                "    const bool b{k} = ((scalars >> {k}) & 1) != 0;\n    \
                 const float c{k} = b{k} ? I{k}_tof(I{k}_ld(p{k}, 0)) : 0.f;\n"
            )
        })
        .collect();
    let scalar_loads: String = (0..n)
        .map(|k| format!("        const float x{k} = b{k} ? c{k} : I{k}_tof(I{k}_ld(p{k}, i));\n"))
        .collect();
    let xargs: Vec<String> = (0..n).map(|k| format!("x{k}")).collect();
    body.push_str(&format!(
        "extern \"C\" __global__ void ew_contig({ptrs}O_s* py, long long n, int scalars, int vec) {{\n    \
         const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n    \
         const long long stride = (long long)gridDim.x * blockDim.x;\n\
         {flags}    \
         long long done = 0;\n    \
         if (vec) {{\n        \
         const long long nv = n / EW_V;\n        \
         for (long long v = tid; v < nv; v += stride) {{\n            \
         const long long e = v * EW_V;\n\
         {loads}{compute_store}        }}\n        \
         done = nv * EW_V;\n    }}\n    \
         for (long long i = done + tid; i < n; i += stride) {{\n\
         {scalar_loads}        \
         O_st(py, i, O_fromf(ew_eval({xargs})));\n    }}\n}}\n",
        loads = vec_loads(&|_| "e".to_string(), &|k| format!("c{k}")),
        xargs = xargs.join(", "),
    ));
    // Broadcast entry point.
    let dims: String = (0..n).map(|k| format!("KDims s{k}, ")).collect();
    let offsets_decl: String = (0..n).map(|k| format!("long long o{k} = 0; ")).collect();
    let offsets_acc: String = (0..n).map(|k| format!(" o{k} += c * s{k}.v[d];")).collect();
    let offset_code = |idx: &str| {
        format!(
            "            long long rem = {idx}; {offsets_decl}\n            \
             \n#pragma unroll\n                for (int j = 0; j < KILN_MAX_RANK; ++j) {{\n                \
             const int d = KILN_MAX_RANK - 1 - j;\n                \
             if (d < rank) {{ long long q; const long long c = kiln_divmod(rem, shape.v[d], q); rem = q;{offsets_acc} }}\n            \
             }}\n"
        )
    };
    let inner_flags: String = (0..n)
        .map(|k| format!("    const bool b{k} = ((inner_bcast >> {k}) & 1) != 0;\n"))
        .collect();
    let bcast_loads: String = (0..n)
        .map(|k| format!("            const float x{k} = I{k}_tof(I{k}_ld(p{k}, o{k}));\n"))
        .collect();
    body.push_str(&format!(
        "extern \"C\" __global__ void ew_bcast({ptrs}O_s* py, long long n, KDims shape, {dims}int rank, \
         int inner_bcast, int vec) {{\n    \
         const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n    \
         const long long stride = (long long)gridDim.x * blockDim.x;\n\
         {inner_flags}    \
         if (vec) {{\n        \
         const long long nv = n / EW_V;\n        \
         for (long long v = tid; v < nv; v += stride) {{\n            \
         const long long e = v * EW_V;\n\
         {off_e}{vloads}{compute_store}        }}\n    \
         }} else {{\n        \
         for (long long i = tid; i < n; i += stride) {{\n\
         {off_i}{bcast_loads}            \
         O_st(py, i, O_fromf(ew_eval({xargs})));\n        }}\n    }}\n}}\n",
        off_e = offset_code("e"),
        vloads = vec_loads(&|k| format!("o{k}"), &|k| format!("I{k}_tof(I{k}_ld(p{k}, o{k}))")),
        off_i = offset_code("i"),
        xargs = xargs.join(", "),
    ));
    Ok(module_source(&body))
}

/// How a launch reads its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Geometry {
    /// Every input has the output's elements in order, or one element (bit k of `scalars`).
    Contiguous { n: usize, scalars: u32 },
    /// Broadcast through collapsed strides; bit k of `inner_bcast`: input k does not move
    /// along the innermost axis; `vec_ok`: the innermost axis allows vectors (before pointer
    /// alignment).
    Broadcast {
        n: usize,
        shape: Vec<usize>,
        strides: Vec<Vec<i64>>,
        inner_bcast: u32,
        vec_ok: bool,
    },
}

/// The launch geometry of inputs of `shapes` writing `out` (every input must broadcast to
/// `out`, numpy rules), with vectors of `v` elements.
pub fn geometry(shapes: &[&[usize]], out: &[usize], v: usize) -> Result<Geometry> {
    let n = numel(out, OP)?;
    let mut scalars = 0u32;
    let mut contiguous = true;
    let mut strides = Vec::with_capacity(shapes.len());
    for (k, s) in shapes.iter().enumerate() {
        let st = broadcast_strides(s, out).ok_or_else(|| {
            invalid(
                OP,
                format!("input {k} of shape {s:?} does not broadcast to {out:?}"),
            )
        })?;
        let m = numel(s, OP)?;
        if m == 1 {
            scalars |= 1 << k;
        } else if m != n {
            contiguous = false;
        }
        strides.push(st);
    }
    if contiguous {
        return Ok(Geometry::Contiguous { n, scalars });
    }
    let (shape, strides) = collapse(out, &strides);
    if shape.len() > MAX_RANK {
        return Err(invalid(
            OP,
            format!("output rank {} is too high after merging axes", shape.len()),
        ));
    }
    let mut inner_bcast = 0u32;
    let mut vec_ok = !shape.is_empty() && shape[shape.len() - 1].is_multiple_of(v) && v > 1;
    for (k, st) in strides.iter().enumerate() {
        match st.last() {
            Some(0) => inner_bcast |= 1 << k,
            Some(1) => {
                // Vector loads need every vector start aligned: all other strides multiples of v.
                vec_ok &= st.iter().all(|&s| s % v as i64 == 0 || s == 1);
            }
            _ => vec_ok = false,
        }
    }
    Ok(Geometry::Broadcast {
        n,
        shape,
        strides,
        inner_bcast,
        vec_ok,
    })
}

/// `y = expr(inputs..)` over the output shape `out_shape` of storage type `out_dtype`
/// ([`Variant::from_env`]'s code).
pub fn launch(
    lib: &KernelLibrary,
    stream: &Stream,
    expr: &str,
    inputs: &[Operand<'_>],
    y: DevicePtr,
    out_dtype: DataType,
    out_shape: &[usize],
) -> Result<()> {
    let variant = Variant::from_env();
    launch_for(lib, stream, expr, inputs, y, out_dtype, out_shape, variant)
}

/// Blocks of a launch over `units` vectors (or elements): one per 256 units, and on the fast
/// path of the contiguous entry point at most [`fast::BLOCKS_PER_SM`] per SM.
pub fn blocks(units: usize, contiguous: bool, variant: Variant, sm_count: u32) -> u32 {
    let grid = grid_for(units);
    if contiguous && variant == Variant::Fast {
        grid.min(sm_count.max(1).saturating_mul(fast::BLOCKS_PER_SM))
    } else {
        grid
    }
}

/// [`launch`] in `variant`'s code.
#[allow(clippy::too_many_arguments)]
pub fn launch_for(
    lib: &KernelLibrary,
    stream: &Stream,
    expr: &str,
    inputs: &[Operand<'_>],
    y: DevicePtr,
    out_dtype: DataType,
    out_shape: &[usize],
    variant: Variant,
) -> Result<()> {
    let types: Vec<DataType> = inputs.iter().map(|o| o.dtype).collect();
    let e = checked(expr, &types, out_dtype)?;
    let name = module_name_for(expr, &types, out_dtype, variant);
    let v = vector_width(&types, out_dtype);
    let shapes: Vec<&[usize]> = inputs.iter().map(|o| o.shape).collect();
    let geo = geometry(&shapes, out_shape, v)?;
    // Vectors need every vector-read pointer (and the output) 16-byte (V * size) aligned.
    let aligned = |p: DevicePtr, d: DataType| p.0.is_multiple_of((v * d.size_in_bytes()) as u64);
    let mut args: Vec<Arg> = inputs.iter().map(|o| Arg::Ptr(o.ptr.0)).collect();
    args.push(Arg::Ptr(y.0));
    let (func, n, elems_per_thread) = match &geo {
        Geometry::Contiguous { n, scalars } => {
            let vec = v > 1
                && aligned(y, out_dtype)
                && inputs
                    .iter()
                    .enumerate()
                    .all(|(k, o)| (scalars >> k) & 1 == 1 || aligned(o.ptr, o.dtype));
            args.push(Arg::I64(*n as i64));
            args.push(Arg::I32(*scalars as i32));
            args.push(Arg::I32(i32::from(vec)));
            ("ew_contig", *n, if vec { v } else { 1 })
        }
        Geometry::Broadcast {
            n,
            shape,
            strides,
            inner_bcast,
            vec_ok,
        } => {
            let vec = *vec_ok
                && aligned(y, out_dtype)
                && inputs
                    .iter()
                    .enumerate()
                    .all(|(k, o)| (inner_bcast >> k) & 1 == 1 || aligned(o.ptr, o.dtype));
            args.push(Arg::I64(*n as i64));
            args.push(Arg::Dims(Dims::shape(shape, OP)?));
            for s in strides {
                args.push(Arg::Dims(Dims::strides(s, OP)?));
            }
            args.push(Arg::I32(shape.len() as i32));
            args.push(Arg::I32(*inner_bcast as i32));
            args.push(Arg::I32(i32::from(vec)));
            ("ew_bcast", *n, if vec { v } else { 1 })
        }
    };
    if n == 0 {
        return Ok(());
    }
    let grid = blocks(
        n.div_ceil(elems_per_thread),
        func == "ew_contig",
        variant,
        lib.device().info().sm_count,
    );
    tracing::trace!(module = %name, func, n, elems_per_thread, grid, "fused elementwise launch");
    // The source is generated only when the module is not loaded yet (checked above, so it
    // cannot fail here; an empty source would fail to compile with NVRTC's message).
    lib.launch(
        stream,
        &name,
        || source(&e, &types, out_dtype, variant).unwrap_or_default(),
        func,
        (grid, BLOCK, 0),
        &args,
    )
}

#[cfg(test)]
#[path = "fused_tests.rs"]
mod tests;
