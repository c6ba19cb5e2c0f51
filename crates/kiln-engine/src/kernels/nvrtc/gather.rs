//! Gather along one axis: `data` as `[outer, len, inner]`, `indices` (int64 or int32, any
//! shape, `count` of them, negative ones counting from the end), output `[outer, count,
//! inner]`. An index outside `[-len, len)` (which kiln-reference rejects) writes zeros rather
//! than reading out of bounds; the builder checks constant indices before the run.
//!
//! Rows are moved in the widest word (4, 8 or 16 bytes) that divides a row's bytes and both
//! addresses (an embedding lookup of 768 half values moves 96 16-byte words per row).

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
        16 => "kiln_w16",
        _ => return Err(invalid("gather", format!("element size {size}"))),
    };
    let mut body =
        format!("struct alignas(16) kiln_w16 {{ unsigned long long a, b; }};\ntypedef {ty} E;\n");
    for (tag, ity) in [("i64", "long long"), ("i32", "int")] {
        body.push_str(&format!(
            "extern \"C\" __global__ void kiln_gather_{tag}(const E* data, const {ity}* idx, E* out,\n    \
             long long n, long long len, long long count, long long inner) {{\n    \
             KILN_GRID_LOOP(i, n) {{\n        \
             long long in = i % inner, t = i / inner;\n        \
             long long j = t % count, o = t / count;\n        \
             long long k = (long long)idx[j];\n        \
             if (k < 0) k += len;\n        \
             out[i] = (k >= 0 && k < len) ? data[(o * len + k) * inner + in] : E();\n    }}\n}}\n"
        ));
    }
    Ok(ModuleSpec {
        name: format!("gather_b{size}"),
        source: module_source(&body),
    })
}

/// Every module [`gather`] may launch for elements of `size` bytes (the element's own and the
/// wider words rows may be moved in).
pub fn modules(size: usize) -> Result<Vec<ModuleSpec>> {
    let mut v = vec![module(size)?];
    for w in [4, 8, 16] {
        if w > size {
            v.push(module(w)?);
        }
    }
    Ok(v)
}

/// The widest word (up to 16 bytes, at least the element) a row of `row_bytes` at the
/// addresses `addrs` can be moved in.
pub fn word_size(size: usize, row_bytes: usize, addrs: &[u64]) -> usize {
    [16usize, 8, 4]
        .into_iter()
        .find(|&w| {
            w > size
                && row_bytes.is_multiple_of(w)
                && addrs.iter().all(|a| a.is_multiple_of(w as u64))
        })
        .unwrap_or(size)
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
    let elem = dtype.size_in_bytes();
    let size = word_size(elem, inner * elem, &[data.0, out.0]);
    let inner = inner * elem / size;
    let n = n * elem / size;
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
    fn module_sources() {
        let m = module(4).unwrap();
        assert!(m.source.contains("kiln_gather_i64(") && m.source.contains("kiln_gather_i32("));
        assert_eq!(m.source.matches('{').count(), m.source.matches('}').count());
        assert!(module(3).is_err());
        let m16 = module(16).unwrap();
        assert!(m16.source.contains("typedef kiln_w16 E;"));
        assert_eq!(modules(2).unwrap().len(), 4);
        assert_eq!(modules(8).unwrap().len(), 2);
    }

    #[test]
    fn rows_move_in_the_widest_word_that_fits() {
        // 768 half values per row, aligned: 16-byte words
        assert_eq!(word_size(2, 1536, &[256, 4096]), 16);
        // a 6-byte row of halves: elements
        assert_eq!(word_size(2, 6, &[256, 4096]), 2);
        // an address only 8-aligned
        assert_eq!(word_size(2, 1536, &[256, 4104]), 8);
        // 4-byte rows of bytes
        assert_eq!(word_size(1, 4, &[0, 0]), 4);
        // f32 rows of one element
        assert_eq!(word_size(4, 4, &[0, 16]), 4);
    }
}
