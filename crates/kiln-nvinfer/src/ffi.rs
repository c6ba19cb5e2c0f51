//! The checked layer over the raw ABI: owned handles whose `Drop` calls the deleting
//! destructor, virtual calls through the slot table with null checks, the run-time ABI
//! self-checks of the facts' section 8, and results instead of null pointers and `false`.
//! All of the crate's `unsafe` code lives here, in [`crate::library`] and [`crate::logger`].
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::{NvInferError, ParserError, Result};
use crate::library::Api;
use crate::logger::Logger;
use crate::sys::Dims64;
use crate::sys::slots::{PUBLIC_DELETE, parser_error as pe};

/// The libraries and the logger. Field order is drop order: nothing here calls TensorRT when
/// dropped, and every TensorRT object holds an `Arc<Shared>`, so both outlive all objects.
pub(crate) struct Shared {
    pub api: Api,
    pub logger: Logger,
}

/// Reads `(mImpl, function)` for `slot` of the V-object behind public object `obj`.
///
/// # Safety
/// `obj` must be a live public TensorRT object (`{vptr, mImpl}`) and `slot` within its V
/// class's vtable for the loaded version.
unsafe fn impl_slot(obj: *mut c_void, slot: usize) -> Result<(*mut c_void, *const c_void)> {
    // SAFETY: per the contract, `obj` points at `{vptr, mImpl}`: mImpl is the second word.
    let this = unsafe { *obj.cast::<*mut c_void>().add(1) };
    if this.is_null() {
        return Err(bad("the object's mImpl is null"));
    }
    // SAFETY: `this` is a live V-object; its first word is its vtable pointer.
    let f = unsafe { iface_slot(this, slot)? };
    Ok((this, f))
}

/// Reads function `slot` of a C++ object whose vptr is its first word.
///
/// # Safety
/// `obj` must be a live polymorphic C++ object and `slot` within its vtable.
unsafe fn iface_slot(obj: *mut c_void, slot: usize) -> Result<*const c_void> {
    // SAFETY: a polymorphic object starts with its vptr.
    let vtable = unsafe { *obj.cast::<*const *const c_void>() };
    if vtable.is_null() {
        return Err(bad("null vtable pointer"));
    }
    // SAFETY: the slot is inside the vtable (contract).
    let f = unsafe { *vtable.add(slot) };
    if f.is_null() {
        return Err(bad("null vtable entry"));
    }
    Ok(f)
}

fn bad(what: &str) -> NvInferError {
    NvInferError::SelfCheck {
        check: what.to_string(),
        version: "the loaded TensorRT".into(),
    }
}

/// Calls slot `$slot` (a field of the slot table) of public object `$obj` with arguments of
/// the listed types. Must be used inside `unsafe`: the caller vouches that the signature is
/// the one the ABI facts give for that slot.
macro_rules! vcall {
    ($sh:expr, $obj:expr, $slot:ident, ($($t:ty),*) -> $r:ty $(, $a:expr)*) => {{
        let index = $sh.api.slot($sh.api.table.$slot)?;
        let (this, f) = impl_slot($obj, index)?;
        let f = std::mem::transmute::<
            *const c_void,
            unsafe extern "C" fn(*mut c_void $(, $t)*) -> $r,
        >(f);
        f(this $(, $a)*)
    }};
}

/// Like `vcall!` for objects whose vtable is on the object itself (the parser interfaces).
macro_rules! icall {
    ($obj:expr, $index:expr, ($($t:ty),*) -> $r:ty $(, $a:expr)*) => {{
        let f = iface_slot($obj, $index)?;
        let f = std::mem::transmute::<
            *const c_void,
            unsafe extern "C" fn(*mut c_void $(, $t)*) -> $r,
        >(f);
        f($obj $(, $a)*)
    }};
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| NvInferError::Invalid(format!("name {s:?} contains a NUL byte")))
}

fn dims(d: &[usize]) -> Result<Dims64> {
    Dims64::from_dims(d)
        .ok_or_else(|| NvInferError::Invalid(format!("dims {d:?}: TensorRT takes at most 8 dims")))
}

/// Copies a C string TensorRT returned (empty for null).
///
/// # Safety
/// `p` is null or a NUL-terminated string valid for the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// An owned TensorRT object, destroyed on drop through its deleting destructor.
pub(crate) struct Handle {
    ptr: NonNull<c_void>,
    name: &'static str,
    /// `Some(slot)`: a pure interface destroyed through that slot of its own vtable (the
    /// parser); `None`: a public object (`[1]` of its vtable).
    iface_delete: Option<usize>,
    pub(crate) shared: Arc<Shared>,
}

// SAFETY: TensorRT objects may be used from any thread as long as calls on one object do
// not overlap; every wrapper that hands out `&self` calls only const, thread-safe methods
// (engine and runtime queries) or is itself `!Sync` (contexts, builders).
unsafe impl Send for Handle {}
// SAFETY: a `&Handle` only gives out the object's address; the wrappers that call through it
// decide what may be shared: engines and runtimes (immutable after creation, documented as
// thread-safe for queries) are shared; contexts are made `!Sync` with a marker; builders,
// networks, configs and parsers never leave the thread that runs `TensorRt::build`.
unsafe impl Sync for Handle {}

impl Handle {
    fn new(ptr: *mut c_void, name: &'static str, shared: &Arc<Shared>) -> Result<Handle> {
        let ptr = NonNull::new(ptr).ok_or(NvInferError::CallFailed {
            call: name,
            detail: "it returned null".into(),
        })?;
        Ok(Handle {
            ptr,
            name,
            iface_delete: None,
            shared: shared.clone(),
        })
    }

    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr.as_ptr()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        tracing::trace!(target: "tensorrt", object = self.name, "destroying");
        let obj = self.ptr.as_ptr();
        let slot = self.iface_delete.unwrap_or(PUBLIC_DELETE);
        // SAFETY: `obj` is a live object this handle owns; slot 1 of a public object's vtable
        // (or the parser's deleting-destructor slot) deletes it, taking only `this`. It is
        // never used again.
        let r = unsafe {
            iface_slot(obj, slot).map(|f| {
                let f = std::mem::transmute::<*const c_void, unsafe extern "C" fn(*mut c_void)>(f);
                f(obj)
            })
        };
        if let Err(e) = r {
            tracing::error!(target: "tensorrt", object = self.name, "could not destroy: {e}");
        }
    }
}

fn self_check(sh: &Shared, ok: bool, check: String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(NvInferError::SelfCheck {
            check,
            version: format!("TensorRT {}", sh.api.version),
        })
    }
}

/// A network tensor as the builder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkTensor {
    pub name: String,
    /// `nvinfer1::DataType` value.
    pub dtype: i32,
    /// `-1` for a dynamic dim.
    pub dims: Vec<i64>,
}

pub(crate) struct Builder {
    pub(crate) h: Arc<Handle>,
}

impl Builder {
    pub(crate) fn new(sh: &Arc<Shared>) -> Result<Builder> {
        let create = sh.api.create_builder();
        // SAFETY: the factory takes the ILogger* and the API version; our logger object has
        // the ILogger layout of the loaded major and outlives the builder (held in `sh`).
        let p = unsafe { create(sh.logger.as_ptr(), sh.api.api_version()) };
        let h = Handle::new(p, "createInferBuilder", sh)?;
        // SAFETY: getLogger() const → ILogger*.
        let logger = unsafe { vcall!(sh, h.ptr(), builder_get_logger, () -> *mut c_void) };
        self_check(
            sh,
            logger == sh.logger.as_ptr(),
            "IBuilder::getLogger did not return kiln's logger".into(),
        )?;
        Ok(Builder { h: Arc::new(h) })
    }

    fn sh(&self) -> &Arc<Shared> {
        &self.h.shared
    }

    pub(crate) fn create_network(&self) -> Result<Network> {
        let sh = self.sh();
        // SAFETY: createNetworkV2(uint32 flags) → INetworkDefinition*; flags 0 on both majors.
        let p =
            unsafe { vcall!(sh, self.h.ptr(), builder_create_network, (u32) -> *mut c_void, 0u32) };
        let h = Handle::new(p, "IBuilder::createNetworkV2", sh)?;
        if !sh.api.network_slots_shifted() {
            // SAFETY: getBuilder() const → IBuilder& (a pointer in the ABI).
            let b = unsafe { vcall!(sh, h.ptr(), network_get_builder, () -> *mut c_void) };
            self_check(
                sh,
                b == self.h.ptr(),
                "INetworkDefinition::getBuilder did not return the builder".into(),
            )?;
        }
        Ok(Network {
            h: Arc::new(h),
            _builder: self.h.clone(),
        })
    }

    pub(crate) fn create_config(&self) -> Result<Config> {
        let sh = self.sh();
        // SAFETY: createBuilderConfig() → IBuilderConfig*.
        let p = unsafe { vcall!(sh, self.h.ptr(), builder_create_config, () -> *mut c_void) };
        Ok(Config {
            h: Handle::new(p, "IBuilder::createBuilderConfig", sh)?,
            _builder: self.h.clone(),
        })
    }

    /// A profile owned by the builder (never deleted by us).
    pub(crate) fn create_profile(&self) -> Result<Profile<'_>> {
        let sh = self.sh();
        // SAFETY: createOptimizationProfile() → IOptimizationProfile* owned by the builder.
        let p = unsafe { vcall!(sh, self.h.ptr(), builder_create_profile, () -> *mut c_void) };
        let ptr = NonNull::new(p).ok_or(NvInferError::CallFailed {
            call: "IBuilder::createOptimizationProfile",
            detail: "it returned null".into(),
        })?;
        Ok(Profile { ptr, builder: self })
    }

    pub(crate) fn build_serialized(&self, net: &Network, cfg: &Config) -> Result<HostMemory> {
        let sh = self.sh();
        // SAFETY: buildSerializedNetwork(INetworkDefinition&, IBuilderConfig&) → IHostMemory*;
        // both are live objects of this builder.
        let p = unsafe {
            vcall!(sh, self.h.ptr(), builder_build_serialized, (*mut c_void, *mut c_void) -> *mut c_void,
                net.h.ptr(), cfg.h.ptr())
        };
        Ok(HostMemory {
            h: Handle::new(p, "IBuilder::buildSerializedNetwork", sh)?,
        })
    }
}

pub(crate) struct Network {
    pub(crate) h: Arc<Handle>,
    _builder: Arc<Handle>,
}

impl Network {
    fn tensors(&self, input: bool) -> Result<Vec<NetworkTensor>> {
        let sh = &self.h.shared;
        let obj = self.h.ptr();
        // SAFETY: getNbInputs()/getNbOutputs() const → int32.
        let n = unsafe {
            if input {
                vcall!(sh, obj, network_get_nb_inputs, () -> i32)
            } else {
                vcall!(sh, obj, network_get_nb_outputs, () -> i32)
            }
        };
        let mut out = Vec::new();
        for i in 0..n.max(0) {
            // SAFETY: getInput/getOutput(int32) const → ITensor* (owned by the network).
            let t = unsafe {
                if input {
                    vcall!(sh, obj, network_get_input, (i32) -> *mut c_void, i)
                } else {
                    vcall!(sh, obj, network_get_output, (i32) -> *mut c_void, i)
                }
            };
            if t.is_null() {
                return Err(NvInferError::CallFailed {
                    call: "INetworkDefinition::getInput/getOutput",
                    detail: format!("tensor {i} is null"),
                });
            }
            // SAFETY: `t` is a live ITensor; getName() → char const*, getDimensions() → Dims
            // by value (hidden return pointer), getType() → DataType (int32).
            let (name, d, dtype) = unsafe {
                (
                    text(vcall!(sh, t, tensor_get_name, () -> *const c_char)),
                    vcall!(sh, t, tensor_get_dims, () -> Dims64),
                    vcall!(sh, t, tensor_get_type, () -> i32),
                )
            };
            let dims = d.to_vec().ok_or_else(|| NvInferError::CallFailed {
                call: "ITensor::getDimensions",
                detail: format!("tensor '{name}' has nbDims {}", d.nb_dims),
            })?;
            out.push(NetworkTensor { name, dtype, dims });
        }
        Ok(out)
    }

    pub(crate) fn inputs(&self) -> Result<Vec<NetworkTensor>> {
        self.tensors(true)
    }

    pub(crate) fn outputs(&self) -> Result<Vec<NetworkTensor>> {
        self.tensors(false)
    }
}

pub(crate) struct Config {
    h: Handle,
    _builder: Arc<Handle>,
}

impl Config {
    pub(crate) fn set_flag(&self, flag: i32) -> Result<()> {
        let sh = &self.h.shared;
        // SAFETY: setFlag(BuilderFlag) / getFlag(BuilderFlag) const → bool.
        let set = unsafe {
            vcall!(sh, self.h.ptr(), config_set_flag, (i32) -> (), flag);
            vcall!(sh, self.h.ptr(), config_get_flag, (i32) -> bool, flag)
        };
        if set {
            Ok(())
        } else {
            Err(NvInferError::CallFailed {
                call: "IBuilderConfig::setFlag",
                detail: format!("flag {flag} did not stick"),
            })
        }
    }

    pub(crate) fn set_workspace(&self, bytes: usize) -> Result<()> {
        let sh = &self.h.shared;
        // SAFETY: setMemoryPoolLimit(MemoryPoolType, size_t).
        unsafe {
            vcall!(sh, self.h.ptr(), config_set_pool_limit, (i32, usize) -> (),
                crate::sys::POOL_WORKSPACE, bytes)
        };
        Ok(())
    }

    pub(crate) fn set_optimization_level(&self, level: i32) -> Result<()> {
        let sh = &self.h.shared;
        // SAFETY: setBuilderOptimizationLevel(int32).
        unsafe { vcall!(sh, self.h.ptr(), config_set_opt_level, (i32) -> (), level) };
        Ok(())
    }

    pub(crate) fn add_profile(&self, p: &Profile<'_>) -> Result<i32> {
        let sh = &self.h.shared;
        // SAFETY: addOptimizationProfile(IOptimizationProfile const*) → int32 index or -1.
        let k = unsafe {
            vcall!(sh, self.h.ptr(), config_add_profile, (*mut c_void) -> i32, p.ptr.as_ptr())
        };
        if k < 0 {
            return Err(NvInferError::CallFailed {
                call: "IBuilderConfig::addOptimizationProfile",
                detail: "the profile was rejected as invalid".into(),
            });
        }
        Ok(k)
    }
}

/// An optimisation profile, owned by the builder it came from.
pub(crate) struct Profile<'b> {
    ptr: NonNull<c_void>,
    builder: &'b Builder,
}

impl Profile<'_> {
    pub(crate) fn set_dimensions(&self, name: &str, selector: i32, d: &[usize]) -> Result<()> {
        let sh = &self.builder.h.shared;
        let (cname, d) = (cstring(name)?, dims(d)?);
        // SAFETY: setDimensions(char const*, OptProfileSelector, Dims const&) → bool; the name
        // and dims live across the call.
        let ok = unsafe {
            vcall!(sh, self.ptr.as_ptr(), profile_set_dims, (*const c_char, i32, *const Dims64) -> bool,
                cname.as_ptr(), selector, &d)
        };
        if ok {
            Ok(())
        } else {
            Err(NvInferError::CallFailed {
                call: "IOptimizationProfile::setDimensions",
                detail: format!("input '{name}'"),
            })
        }
    }

    pub(crate) fn is_valid(&self) -> Result<bool> {
        let sh = &self.builder.h.shared;
        // SAFETY: isValid() const → bool.
        Ok(unsafe { vcall!(sh, self.ptr.as_ptr(), profile_is_valid, () -> bool) })
    }
}

pub(crate) struct HostMemory {
    h: Handle,
}

impl HostMemory {
    pub(crate) fn to_vec(&self) -> Result<Vec<u8>> {
        let sh = &self.h.shared;
        // SAFETY: data() const → void*, size() const → size_t; the bytes are valid while the
        // IHostMemory lives (it does, borrowed by `self`).
        unsafe {
            let data = vcall!(sh, self.h.ptr(), host_data, () -> *const u8);
            let size = vcall!(sh, self.h.ptr(), host_size, () -> usize);
            if data.is_null() {
                return if size == 0 {
                    Ok(Vec::new())
                } else {
                    Err(bad("IHostMemory::data is null"))
                };
            }
            Ok(std::slice::from_raw_parts(data, size).to_vec())
        }
    }
}

pub(crate) struct Parser {
    h: Handle,
    _network: Arc<Handle>,
}

impl Parser {
    pub(crate) fn new(sh: &Arc<Shared>, network: &Network) -> Result<Parser> {
        let (create, _) = sh.api.create_parser()?;
        // SAFETY: createNvOnnxParser_INTERNAL(INetworkDefinition*, ILogger*, int) → IParser*;
        // the network and logger outlive the parser (held by it).
        let p = unsafe {
            create(
                network.h.ptr(),
                sh.logger.as_ptr(),
                crate::sys::PARSER_API_VERSION,
            )
        };
        let mut h = Handle::new(p, "createNvOnnxParser", sh)?;
        h.iface_delete = Some(sh.api.slot(sh.api.table.parser_delete)?);
        Ok(Parser {
            h,
            _network: network.h.clone(),
        })
    }

    /// Parses ONNX bytes; `Err(errors)` with every error the parser reported.
    pub(crate) fn parse(&self, bytes: &[u8], path: Option<&str>) -> Result<Vec<ParserError>> {
        let sh = &self.h.shared;
        let cpath = path.map(cstring).transpose()?;
        let idx = sh.api.slot(sh.api.table.parser_parse)?;
        let obj = self.h.ptr();
        // SAFETY: parse(void const*, size_t, char const* path) → bool; the buffers live across
        // the call.
        let ok = unsafe {
            icall!(obj, idx, (*const c_void, usize, *const c_char) -> bool,
                bytes.as_ptr().cast(), bytes.len(), cpath.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
        };
        self.errors(ok)
    }

    pub(crate) fn parse_file(&self, path: &str, verbosity: i32) -> Result<Vec<ParserError>> {
        let sh = &self.h.shared;
        let cpath = cstring(path)?;
        let idx = sh.api.slot(sh.api.table.parser_parse_file)?;
        let obj = self.h.ptr();
        // SAFETY: parseFromFile(char const*, int) → bool.
        let ok =
            unsafe { icall!(obj, idx, (*const c_char, i32) -> bool, cpath.as_ptr(), verbosity) };
        self.errors(ok)
    }

    fn errors(&self, ok: bool) -> Result<Vec<ParserError>> {
        let sh = &self.h.shared;
        let obj = self.h.ptr();
        let n_idx = sh.api.slot(sh.api.table.parser_nb_errors)?;
        let e_idx = sh.api.slot(sh.api.table.parser_get_error)?;
        // SAFETY: getNbErrors() const → int.
        let n = unsafe { icall!(obj, n_idx, () -> i32) };
        let mut out = Vec::new();
        for i in 0..n.max(0) {
            // SAFETY: getError(int) const → IParserError const* (owned by the parser, valid
            // until the next parse); its methods return ints and C strings.
            unsafe {
                let e = icall!(obj, e_idx, (i32) -> *mut c_void, i);
                if e.is_null() {
                    continue;
                }
                let origin = format!(
                    "{}:{} {}",
                    text(icall!(e, pe::FILE, () -> *const c_char)),
                    icall!(e, pe::LINE, () -> i32),
                    text(icall!(e, pe::FUNC, () -> *const c_char))
                );
                out.push(ParserError {
                    code: icall!(e, pe::CODE, () -> i32),
                    description: text(icall!(e, pe::DESC, () -> *const c_char)),
                    node: icall!(e, pe::NODE, () -> i32),
                    node_name: text(icall!(e, pe::NODE_NAME, () -> *const c_char)),
                    node_operator: text(icall!(e, pe::NODE_OPERATOR, () -> *const c_char)),
                    origin,
                });
            }
        }
        if !ok && out.is_empty() {
            out.push(ParserError {
                code: -1,
                description: "the parser failed without reporting an error".into(),
                node: -1,
                node_name: String::new(),
                node_operator: String::new(),
                origin: String::new(),
            });
        }
        Ok(out)
    }
}

mod runtime;
pub(crate) use runtime::{CudaEngine, ExecContext, Runtime};
