//! Cast between the kernels' element types, numpy's `astype` as kiln-reference does it: float
//! to integer truncates toward zero (NaN gives 0, out-of-range saturates at 64 bits and then
//! wraps), integers wrap, floats round to nearest even, anything to bool is `!= 0` (NaN is
//! true), bool is 0 or 1. One module per source type, one kernel per target type.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{BLOCK, grid_for};
use super::library::ModuleSpec;
use super::prelude::{CType, ctype, is_float, module_source, type_defs};
use super::{DevicePtr, KernelLibrary, Result, unsupported};

/// Every type Cast converts between on the GPU.
pub const TYPES: [DataType; 8] = [
    DataType::F32,
    DataType::F16,
    DataType::BF16,
    DataType::I32,
    DataType::I64,
    DataType::I8,
    DataType::U8,
    DataType::Bool,
];

fn convert(src: CType, dst: CType) -> String {
    if is_float(dst.dtype) {
        "(float)x".to_string()
    } else if dst.dtype == DataType::Bool {
        "(int)(x != 0)".to_string()
    } else if is_float(src.dtype) {
        "(D_c)(D_s)kiln_f2i(x)".to_string()
    } else {
        "(D_c)(D_s)x".to_string()
    }
}

/// The cast module for source type `src`.
pub fn module(src: DataType) -> Result<ModuleSpec> {
    let s = ctype(src).ok_or_else(|| unsupported("cast", src))?;
    let mut body = type_defs("S", s);
    for dst in TYPES {
        let d = ctype(dst).ok_or_else(|| unsupported("cast", dst))?;
        let defs = type_defs("D", d);
        body.push_str(&format!(
            "namespace to_{tag} {{\n{defs}}}\n\
             extern \"C\" __global__ void kiln_cast_to_{tag}(const S_s* px, to_{tag}::D_s* py, long long n) {{\n    \
             KILN_GRID_LOOP(i, n) {{ S_c x = S_ld(px, i); to_{tag}::D_st(py, i, {qconv}); }}\n}}\n",
            tag = d.tag,
            qconv = convert(s, d)
                .replace("D_c", &format!("to_{}::D_c", d.tag))
                .replace("D_s", &format!("to_{}::D_s", d.tag)),
        ));
    }
    Ok(ModuleSpec {
        name: format!("cast_{}", s.tag),
        source: module_source(&body),
    })
}

/// `y = (to) x` for `n` elements.
pub fn cast(
    lib: &KernelLibrary,
    stream: &Stream,
    from: DataType,
    to: DataType,
    x: DevicePtr,
    y: DevicePtr,
    n: usize,
) -> Result<()> {
    let s = ctype(from).ok_or_else(|| unsupported("cast", from))?;
    let d = ctype(to).ok_or_else(|| unsupported("cast", to))?;
    if n == 0 {
        return Ok(());
    }
    lib.launch(
        stream,
        &format!("cast_{}", s.tag),
        || module(from).map(|m| m.source).unwrap_or_default(),
        &format!("kiln_cast_to_{}", d.tag),
        (grid_for(n), BLOCK, 0),
        &[Arg::Ptr(x.0), Arg::Ptr(y.0), Arg::I64(n as i64)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_has_a_kernel() {
        for from in TYPES {
            let m = module(from).unwrap();
            assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
            for to in TYPES {
                let tag = ctype(to).unwrap().tag;
                assert!(m.source.contains(&format!("kiln_cast_to_{tag}(")));
            }
        }
        assert!(module(DataType::F64).is_err());
        let f = ctype(DataType::F32).unwrap();
        let i = ctype(DataType::I8).unwrap();
        assert_eq!(convert(f, i), "(D_c)(D_s)kiln_f2i(x)");
        assert_eq!(convert(i, f), "(float)x");
        assert_eq!(convert(f, ctype(DataType::Bool).unwrap()), "(int)(x != 0)");
    }
}
