//! Binary ops with numpy broadcasting (through strides: 0 on broadcast axes, axes contiguous
//! in every operand merged), and Where as a ternary select.
//!
//! Semantics are kiln-reference's: f16/bf16 computed in f32 and rounded once; integers wrap;
//! integer Div truncates toward zero and gives 0 for a zero divisor; Min/Max propagate NaN;
//! comparisons with NaN are false; Pow of floats is `powf` in f32, a float base with an
//! integer exponent is computed in f64 (as the reference's numpy rule does).

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{BLOCK, Dims, broadcast_shapes, broadcast_strides, collapse, grid_for, numel};
use super::library::ModuleSpec;
use super::prelude::{ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, invalid, unsupported};

/// One input of a broadcasting op.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    pub ptr: DevicePtr,
    pub shape: &'a [usize],
    pub dtype: DataType,
}

/// A binary op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Min,
    Max,
    /// `x > 0 ? x : slope * x`; the slope (second input) broadcasts to X's shape.
    PRelu,
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Add => "add",
            Sub => "sub",
            Mul => "mul",
            Div => "div",
            Pow => "pow",
            Min => "min",
            Max => "max",
            PRelu => "prelu",
            Equal => "equal",
            Less => "less",
            Greater => "greater",
            LessOrEqual => "less_or_equal",
            GreaterOrEqual => "greater_or_equal",
            And => "and",
            Or => "or",
            Xor => "xor",
        }
    }

    /// Whether the output is bool.
    pub fn is_predicate(self) -> bool {
        use BinaryOp::*;
        matches!(
            self,
            Equal | Less | Greater | LessOrEqual | GreaterOrEqual | And | Or | Xor
        )
    }
}

const FLOAT_ARITH: &[(&str, &str)] = &[
    ("add", "x + y"),
    ("sub", "x - y"),
    ("mul", "x * y"),
    ("div", "x / y"),
    ("pow", "powf(x, y)"),
    ("min", "kiln_minf(x, y)"),
    ("max", "kiln_maxf(x, y)"),
    ("prelu", "(x > 0.f ? x : x * y)"),
];

/// The float formula (in `x`, `y`, f32) of an arithmetic op; `None` for predicates. The
/// fused elementwise kernels use the same formulas.
pub(crate) fn float_formula(op: BinaryOp) -> Option<&'static str> {
    FLOAT_ARITH
        .iter()
        .find(|(n, _)| *n == op.name())
        .map(|(_, f)| *f)
}

const WRAP: &str = "(unsigned long long)(long long)";

fn int_arith() -> Vec<(&'static str, String)> {
    vec![
        ("add", format!("(A_c)({WRAP}x + {WRAP}y)")),
        ("sub", format!("(A_c)({WRAP}x - {WRAP}y)")),
        ("mul", format!("(A_c)({WRAP}x * {WRAP}y)")),
        (
            "div",
            format!("(y == 0 ? (A_c)0 : (y == (A_c)-1 ? (A_c)(0ull - {WRAP}x) : (A_c)(x / y)))"),
        ),
        ("min", "(y < x ? y : x)".into()),
        ("max", "(y > x ? y : x)".into()),
        ("prelu", format!("(x > 0 ? x : (A_c)({WRAP}x * {WRAP}y))")),
    ]
}

const COMPARE: &[(&str, &str)] = &[
    ("equal", "x == y"),
    ("less", "x < y"),
    ("greater", "x > y"),
    ("less_or_equal", "x <= y"),
    ("greater_or_equal", "x >= y"),
];

const LOGIC: &[(&str, &str)] = &[("and", "x && y"), ("or", "x || y"), ("xor", "x != y")];

fn kernel(name: &str, bty: &str, oty: &str, load: &str, store: &str) -> String {
    format!(
        "extern \"C\" __global__ void kiln_binary_{name}(const A_s* pa, const {bty}* pb, {oty}* py, long long n,\n    \
         KDims shape, KDims sa, KDims sb, int rank) {{\n    \
         KILN_GRID_LOOP(i, n) {{\n        \
         long long oa, ob;\n        \
         if (rank == 1) {{ oa = i * sa.v[0]; ob = i * sb.v[0]; }}\n        \
         else {{ kiln_offset2(i, shape, sa, sb, rank, oa, ob); }}\n        \
         {load}\n        {store}\n    }}\n}}\n"
    )
}

/// The module of binary kernels whose first input is `dtype`.
pub fn module(dtype: DataType) -> Result<ModuleSpec> {
    let t = ctype(dtype).ok_or_else(|| unsupported("binary op", dtype))?;
    let mut body = type_defs("A", t);
    let cmp_store = "py[i] = (unsigned char)(R);";
    if is_float(dtype) {
        let load = "float x = A_tof(A_ld(pa, oa)); float y = A_tof(A_ld(pb, ob));";
        for (name, f) in FLOAT_ARITH {
            body.push_str(&kernel(
                name,
                "A_s",
                "A_s",
                load,
                &format!("A_st(py, i, A_fromf({f}));"),
            ));
        }
        for (name, f) in COMPARE {
            body.push_str(&kernel(
                name,
                "A_s",
                "unsigned char",
                load,
                &cmp_store.replace('R', f),
            ));
        }
        // A float base with an integer exponent: f64, as numpy.
        for (suffix, bty) in [("i64", "long long"), ("i32", "int")] {
            body.push_str(&kernel(
                &format!("pow_{suffix}"),
                bty,
                "A_s",
                "double x = (double)A_tof(A_ld(pa, oa)); double y = (double)pb[ob];",
                "A_st(py, i, A_fromf((float)pow(x, y)));",
            ));
        }
    } else if dtype == DataType::Bool {
        let load = "int x = A_ld(pa, oa); int y = A_ld(pb, ob);";
        for (name, f) in LOGIC.iter().chain(&COMPARE[..1]) {
            body.push_str(&kernel(
                name,
                "A_s",
                "unsigned char",
                load,
                &cmp_store.replace('R', f),
            ));
        }
    } else {
        let load = "A_c x = A_ld(pa, oa); A_c y = A_ld(pb, ob);";
        for (name, f) in int_arith() {
            body.push_str(&kernel(
                name,
                "A_s",
                "A_s",
                load,
                &format!("A_st(py, i, {f});"),
            ));
        }
        for (name, f) in COMPARE {
            body.push_str(&kernel(
                name,
                "A_s",
                "unsigned char",
                load,
                &cmp_store.replace('R', f),
            ));
        }
    }
    Ok(ModuleSpec {
        name: format!("binary_{}", t.tag),
        source: module_source(&body),
    })
}

/// The kernel name for `op` on (`a`, `b`) types, or an error if the GPU does not run it.
pub fn kernel_name(op: BinaryOp, a: DataType, b: DataType) -> Result<String> {
    let name = op.name();
    let bad = || unsupported(name, if ctype(a).is_some() { b } else { a });
    ctype(a).ok_or_else(bad)?;
    if op == BinaryOp::Pow && is_float(a) && matches!(b, DataType::I64 | DataType::I32) {
        return Ok(format!(
            "kiln_binary_pow_{}",
            if b == DataType::I64 { "i64" } else { "i32" }
        ));
    }
    if a != b {
        return Err(invalid(
            name,
            format!("inputs have element types {a} and {b}"),
        ));
    }
    let ok = if is_float(a) {
        !matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    } else if a == DataType::Bool {
        matches!(
            op,
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor | BinaryOp::Equal
        )
    } else {
        !matches!(
            op,
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor | BinaryOp::Pow
        )
    };
    if !ok {
        return Err(bad());
    }
    Ok(format!("kiln_binary_{name}"))
}

/// The launch geometry of a broadcast over operands: collapsed shape and strides per operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    pub out_shape: Vec<usize>,
    pub shape: Vec<usize>,
    pub strides: Vec<Vec<i64>>,
    pub n: usize,
}

/// Plans the broadcast of `shapes` (numpy rules).
pub fn plan_broadcast(op: &str, shapes: &[&[usize]]) -> Result<Broadcast> {
    let out_shape = broadcast_shapes(shapes)
        .ok_or_else(|| invalid(op, format!("shapes {shapes:?} do not broadcast")))?;
    let strides: Vec<Vec<i64>> = shapes
        .iter()
        .map(|s| broadcast_strides(s, &out_shape).unwrap_or_default())
        .collect();
    let n = numel(&out_shape, op)?;
    let (shape, strides) = collapse(&out_shape, &strides);
    if shape.len() > super::MAX_RANK {
        return Err(invalid(
            op,
            format!("output rank {} is too high", shape.len()),
        ));
    }
    Ok(Broadcast {
        out_shape,
        shape,
        strides,
        n,
    })
}

fn geometry_args(bc: &Broadcast, op: &str) -> Result<Vec<Arg>> {
    let mut args = vec![
        Arg::I64(bc.n as i64),
        Arg::Dims(Dims::shape(&bc.shape, op)?),
    ];
    for s in &bc.strides {
        args.push(Arg::Dims(Dims::strides(s, op)?));
    }
    args.push(Arg::I32(bc.shape.len() as i32));
    Ok(args)
}

/// `y = op(a, b)` with numpy broadcasting; `y` is row-major of the broadcast shape, of `a`'s
/// type (bool for comparisons and logic).
pub fn binary(
    lib: &KernelLibrary,
    stream: &Stream,
    op: BinaryOp,
    a: Operand<'_>,
    b: Operand<'_>,
    y: DevicePtr,
) -> Result<()> {
    let func = kernel_name(op, a.dtype, b.dtype)?;
    let bc = plan_broadcast(op.name(), &[a.shape, b.shape])?;
    if op == BinaryOp::PRelu && bc.out_shape != a.shape {
        return Err(invalid(
            "prelu",
            format!("slope {:?} does not broadcast to X {:?}", b.shape, a.shape),
        ));
    }
    if bc.n == 0 {
        return Ok(());
    }
    let mut args = vec![Arg::Ptr(a.ptr.0), Arg::Ptr(b.ptr.0), Arg::Ptr(y.0)];
    args.extend(geometry_args(&bc, op.name())?);
    let t = ctype(a.dtype).ok_or_else(|| unsupported(op.name(), a.dtype))?;
    lib.launch(
        stream,
        &format!("binary_{}", t.tag),
        || module(a.dtype).map(|m| m.source).unwrap_or_default(),
        &func,
        (grid_for(bc.n), BLOCK, 0),
        &args,
    )
}

/// The module of Where for elements of `size` bytes (1, 2, 4 or 8).
pub fn where_module(size: usize) -> Result<ModuleSpec> {
    let ty = match size {
        1 => "unsigned char",
        2 => "unsigned short",
        4 => "unsigned int",
        8 => "unsigned long long",
        _ => return Err(invalid("where", format!("element size {size}"))),
    };
    let body = format!(
        "typedef {ty} E;\n\
         extern \"C\" __global__ void kiln_where(const unsigned char* pc, const E* px, const E* py, E* po,\n    \
         long long n, KDims shape, KDims sc, KDims sx, KDims sy, int rank) {{\n    \
         KILN_GRID_LOOP(i, n) {{\n        \
         long long oc = kiln_offset(i, shape, sc, rank);\n        \
         long long ox = kiln_offset(i, shape, sx, rank);\n        \
         long long oy = kiln_offset(i, shape, sy, rank);\n        \
         po[i] = pc[oc] ? px[ox] : py[oy];\n    }}\n}}\n"
    );
    Ok(ModuleSpec {
        name: format!("where_b{size}"),
        source: module_source(&body),
    })
}

/// `out = cond ? x : y`, the three broadcast together; `x`, `y` of one type.
pub fn where_(
    lib: &KernelLibrary,
    stream: &Stream,
    cond: Operand<'_>,
    x: Operand<'_>,
    y: Operand<'_>,
    out: DevicePtr,
) -> Result<()> {
    if cond.dtype != DataType::Bool {
        return Err(invalid(
            "where",
            format!("condition has type {}", cond.dtype),
        ));
    }
    if x.dtype != y.dtype {
        return Err(invalid(
            "where",
            format!("X is {} but Y is {}", x.dtype, y.dtype),
        ));
    }
    let size = x.dtype.size_in_bytes();
    let bc = plan_broadcast("where", &[cond.shape, x.shape, y.shape])?;
    if bc.n == 0 {
        return Ok(());
    }
    let mut args = vec![
        Arg::Ptr(cond.ptr.0),
        Arg::Ptr(x.ptr.0),
        Arg::Ptr(y.ptr.0),
        Arg::Ptr(out.0),
    ];
    args.extend(geometry_args(&bc, "where")?);
    lib.launch(
        stream,
        &format!("where_b{size}"),
        || where_module(size).map(|m| m.source).unwrap_or_default(),
        "kiln_where",
        (grid_for(bc.n), BLOCK, 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_follow_types() {
        use BinaryOp::*;
        let f = DataType::F16;
        assert_eq!(kernel_name(Add, f, f).unwrap(), "kiln_binary_add");
        assert_eq!(
            kernel_name(Pow, f, DataType::I64).unwrap(),
            "kiln_binary_pow_i64"
        );
        assert!(kernel_name(Add, f, DataType::F32).is_err());
        assert!(kernel_name(And, f, f).is_err());
        assert!(kernel_name(And, DataType::Bool, DataType::Bool).is_ok());
        assert!(kernel_name(Add, DataType::Bool, DataType::Bool).is_err());
        assert!(kernel_name(Div, DataType::I64, DataType::I64).is_ok());
        assert!(kernel_name(Add, DataType::F64, DataType::F64).is_err());
        assert!(Less.is_predicate() && !Max.is_predicate());
    }

    #[test]
    fn every_kernel_is_in_its_module() {
        use BinaryOp::*;
        let all = [
            Add,
            Sub,
            Mul,
            Div,
            Pow,
            Min,
            Max,
            PRelu,
            Equal,
            Less,
            Greater,
            LessOrEqual,
            GreaterOrEqual,
            And,
            Or,
            Xor,
        ];
        for dt in [
            DataType::F32,
            DataType::BF16,
            DataType::I64,
            DataType::I8,
            DataType::Bool,
        ] {
            let src = module(dt).unwrap().source;
            assert_eq!(src.matches('{').count(), src.matches('}').count());
            for op in all {
                if let Ok(k) = kernel_name(op, dt, dt) {
                    assert!(src.contains(&format!("{k}(")), "{k} missing for {dt}");
                }
            }
        }
    }

    #[test]
    fn broadcast_plans() {
        let p = plan_broadcast("add", &[&[2, 3, 4], &[4]]).unwrap();
        assert_eq!(p.out_shape, vec![2, 3, 4]);
        assert_eq!(p.shape, vec![6, 4]);
        assert_eq!(p.strides, vec![vec![4, 1], vec![0, 1]]);
        assert_eq!(p.n, 24);
        let p = plan_broadcast("add", &[&[2, 3], &[2, 3]]).unwrap();
        assert_eq!(
            (p.shape.clone(), p.strides.clone()),
            (vec![6], vec![vec![1], vec![1]])
        );
        let p = plan_broadcast("add", &[&[], &[]]).unwrap();
        assert!(p.shape.is_empty() && p.n == 1);
        assert!(plan_broadcast("add", &[&[2], &[3]]).is_err());
        let p = plan_broadcast("where", &[&[3, 1], &[1, 4], &[3, 4]]).unwrap();
        assert_eq!(p.strides, vec![vec![1, 0], vec![0, 1], vec![4, 1]]);
        assert!(where_module(3).is_err());
        assert_eq!(where_module(2).unwrap().name, "where_b2");
    }
}
