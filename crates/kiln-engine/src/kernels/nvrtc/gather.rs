//! Gather along one axis: `data` as `[outer, len, inner]`, `indices` (int64 or int32, any
//! shape, `count` of them, negative ones counting from the end), output `[outer, count,
//! inner]`. An index outside `[-len, len)` (which kiln-reference rejects) writes zeros rather
//! than reading out of bounds; the builder checks constant indices before the run.

use kiln_core::DataType;
use kiln_cuda::Stream;

use super::ffi::Arg;
use super::layout::{BLOCK, grid_for};
use super::library::ModuleSpec;
use super::prelude::module_source;
use super::{DevicePtr, KernelLibrary, Result, invalid};

/// The Gather module for elements of `size` bytes.
pub fn module(size: usize) -> Result<ModuleSpec> {
    let ty = match size {
        1 => "unsigned char",
        2 => "unsigned short",
        4 => "unsigned int",
        8 => "unsigned long long",
        _ => return Err(invalid("gather", format!("element size {size}"))),
    };
    let mut body = format!("typedef {ty} E;\n");
    for (tag, ity) in [("i64", "long long"), ("i32", "int")] {
        body.push_str(&format!(
            "extern \"C\" __global__ void kiln_gather_{tag}(const E* data, const {ity}* idx, E* out,\n    \
             long long n, long long len, long long count, long long inner) {{\n    \
             KILN_GRID_LOOP(i, n) {{\n        \
             long long in = i % inner, t = i / inner;\n        \
             long long j = t % count, o = t / count;\n        \
             long long k = (long long)idx[j];\n        \
             if (k < 0) k += len;\n        \
             out[i] = (k >= 0 && k < len) ? data[(o * len + k) * inner + in] : (E)0;\n    }}\n}}\n"
        ));
    }
    Ok(ModuleSpec {
        name: format!("gather_b{size}"),
        source: module_source(&body),
    })
}

/// Gather of `dtype` elements.
#[allow(clippy::too_many_arguments)]
pub fn gather(
    lib: &KernelLibrary,
    stream: &Stream,
    dtype: DataType,
    index_type: DataType,
    (outer, len, inner): (usize, usize, usize),
    count: usize,
    data: DevicePtr,
    indices: DevicePtr,
    out: DevicePtr,
) -> Result<()> {
    let tag = match index_type {
        DataType::I64 => "i64",
        DataType::I32 => "i32",
        other => return Err(invalid("gather", format!("indices of type {other}"))),
    };
    let n = outer
        .checked_mul(count)
        .and_then(|v| v.checked_mul(inner))
        .ok_or_else(|| invalid("gather", "too large"))?;
    if n == 0 {
        return Ok(());
    }
    let size = dtype.size_in_bytes();
    let args = [
        Arg::Ptr(data.0),
        Arg::Ptr(indices.0),
        Arg::Ptr(out.0),
        Arg::I64(n as i64),
        Arg::I64(len as i64),
        Arg::I64(count as i64),
        Arg::I64(inner as i64),
    ];
    lib.launch(
        stream,
        &format!("gather_b{size}"),
        || module(size).map(|m| m.source).unwrap_or_default(),
        &format!("kiln_gather_{tag}"),
        (grid_for(n), BLOCK, 0),
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules() {
        let m = module(4).unwrap();
        assert!(m.source.contains("kiln_gather_i64(") && m.source.contains("kiln_gather_i32("));
        assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
        assert!(module(3).is_err());
    }
}
