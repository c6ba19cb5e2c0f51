//! Raw ABI: `#[repr(C)]` structs, enum values and the slot tables of TensorRT 10 and 11, from
//! the published ABI facts (shared/tensorrt-abi.md). Nothing here calls anything; [`crate::ffi`]
//! does.

use std::ffi::{c_char, c_void};

pub(crate) mod slots;

/// `nvinfer1::Dims64`: `int32 nbDims; int64 d[8]` (72 bytes, align 8).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dims64 {
    pub nb_dims: i32,
    pub d: [i64; 8],
}

const _: () = assert!(std::mem::size_of::<Dims64>() == 72);
const _: () = assert!(std::mem::align_of::<Dims64>() == 8);

impl Dims64 {
    /// At most 8 dims, each within `i64`.
    pub fn from_dims(dims: &[usize]) -> Option<Dims64> {
        if dims.len() > 8 {
            return None;
        }
        let mut out = Dims64 {
            nb_dims: dims.len() as i32,
            d: [0; 8],
        };
        for (slot, &v) in out.d.iter_mut().zip(dims) {
            *slot = i64::try_from(v).ok()?;
        }
        Some(out)
    }

    /// The dims, `-1` meaning dynamic; `None` when `nbDims` is outside 0..=8 (TensorRT returns
    /// `nbDims = -1` for an invalid query).
    pub fn to_vec(&self) -> Option<Vec<i64>> {
        let n = usize::try_from(self.nb_dims).ok().filter(|&n| n <= 8)?;
        Some(self.d[..n].to_vec())
    }
}

/// `nvinfer1::InterfaceInfo` (TRT 11 loggers return it by value, in two registers).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct InterfaceInfo {
    pub kind: *const c_char,
    pub major: i32,
    pub minor: i32,
}

const _: () = assert!(std::mem::size_of::<InterfaceInfo>() == 16);

/// `nvinfer1::DataType` values.
pub mod data_type {
    pub const FLOAT: i32 = 0;
    pub const HALF: i32 = 1;
    pub const INT8: i32 = 2;
    pub const INT32: i32 = 3;
    pub const BOOL: i32 = 4;
    pub const UINT8: i32 = 5;
    pub const FP8: i32 = 6;
    pub const BF16: i32 = 7;
    pub const INT64: i32 = 8;
    pub const INT4: i32 = 9;
}

/// `TensorIOMode`.
pub const IO_INPUT: i32 = 1;
pub const IO_OUTPUT: i32 = 2;
/// `OptProfileSelector`.
pub const SEL_MIN: i32 = 0;
pub const SEL_OPT: i32 = 1;
pub const SEL_MAX: i32 = 2;
/// `MemoryPoolType::kWORKSPACE`.
pub const POOL_WORKSPACE: i32 = 0;
/// `ExecutionContextAllocationStrategy::kSTATIC`.
pub const ALLOC_STATIC: i32 = 0;
/// ILogger severities.
pub const SEV_INTERNAL_ERROR: i32 = 0;
pub const SEV_ERROR: i32 = 1;
pub const SEV_WARNING: i32 = 2;
pub const SEV_INFO: i32 = 3;
pub const SEV_VERBOSE: i32 = 4;
/// The parser API version argument (unchanged 10.0-11.1).
pub const PARSER_API_VERSION: i32 = 100;

/// Factory signatures (extern "C" entry points).
pub type CreateFn = unsafe extern "C" fn(logger: *mut c_void, version: i32) -> *mut c_void;
pub type CreateParserFn =
    unsafe extern "C" fn(network: *mut c_void, logger: *mut c_void, version: i32) -> *mut c_void;
pub type VersionFn = unsafe extern "C" fn() -> i32;
