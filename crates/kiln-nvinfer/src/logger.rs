//! The TensorRT logger, written in Rust: a `#[repr(C)]` object whose first word points at a
//! static table of `extern "C"` functions laid out as ILogger's vtable for the loaded major
//! (TRT 10: log, D1, D0; TRT 11: getAPILanguage, getInterfaceInfo, D1, D0, log). Messages go to
//! `tracing` (target `tensorrt`) with the severities mapped; no panic can unwind into C++.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::sys::slots::Table;
use crate::sys::{
    InterfaceInfo, SEV_ERROR, SEV_INFO, SEV_INTERNAL_ERROR, SEV_VERBOSE, SEV_WARNING,
};

#[repr(C)]
struct Vtable10 {
    log: unsafe extern "C" fn(*mut c_void, i32, *const c_char),
    d1: unsafe extern "C" fn(*mut c_void),
    d0: unsafe extern "C" fn(*mut c_void),
}

#[repr(C)]
struct Vtable11 {
    api_language: unsafe extern "C" fn(*const c_void) -> i32,
    interface_info: unsafe extern "C" fn(*const c_void) -> InterfaceInfo,
    d1: unsafe extern "C" fn(*mut c_void),
    d0: unsafe extern "C" fn(*mut c_void),
    log: unsafe extern "C" fn(*mut c_void, i32, *const c_char),
}

static VTABLE10: Vtable10 = Vtable10 {
    log: log_callback,
    d1: destructor,
    d0: destructor,
};

static VTABLE11: Vtable11 = Vtable11 {
    api_language,
    interface_info,
    d1: destructor,
    d0: destructor,
    log: log_callback,
};

/// The object TensorRT sees: a vptr and nothing TensorRT reads.
#[repr(C)]
struct RawLogger {
    vptr: *const c_void,
}

/// The logger handed to every factory. Boxed so that its address never changes; kept alive
/// (through `Arc`s) by every TensorRT object made with it, so it outlives them all.
pub(crate) struct Logger {
    raw: Box<RawLogger>,
}

// SAFETY: the object is never written after construction; its vptr points at an immutable
// static table, and the callbacks only read their arguments and call `tracing`, which is
// thread-safe, so TensorRT may call it from any thread.
unsafe impl Send for Logger {}
// SAFETY: as above: shared references only read immutable data.
unsafe impl Sync for Logger {}

impl Logger {
    /// A logger with the ILogger layout of the table: `log` at slot 0 (TRT 10) or 4 (TRT 11,
    /// after the IVersionedInterface slots).
    pub(crate) fn new(table: &Table) -> Logger {
        let vptr = if table.logger_log == 4 {
            std::ptr::from_ref(&VTABLE11).cast::<c_void>()
        } else {
            std::ptr::from_ref(&VTABLE10).cast::<c_void>()
        };
        Logger {
            raw: Box::new(RawLogger { vptr }),
        }
    }

    /// The address passed to TensorRT as `ILogger*`.
    pub(crate) fn as_ptr(&self) -> *mut c_void {
        std::ptr::from_ref::<RawLogger>(&self.raw)
            .cast_mut()
            .cast::<c_void>()
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        tracing::debug!(target: "tensorrt", "kiln: TensorRT logger released");
    }
}

/// Maps one TensorRT message onto `tracing`.
fn emit(severity: i32, text: &str) {
    match severity {
        SEV_INTERNAL_ERROR => {
            tracing::error!(target: "tensorrt", severity = "internal_error", "{text}")
        }
        SEV_ERROR => tracing::error!(target: "tensorrt", "{text}"),
        SEV_WARNING => tracing::warn!(target: "tensorrt", "{text}"),
        SEV_INFO => tracing::info!(target: "tensorrt", "{text}"),
        SEV_VERBOSE => tracing::debug!(target: "tensorrt", "{text}"),
        other => tracing::warn!(target: "tensorrt", severity = other, "{text}"),
    }
}

/// `ILogger::log(Severity, char const*)`.
unsafe extern "C" fn log_callback(_this: *mut c_void, severity: i32, msg: *const c_char) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if msg.is_null() {
            emit(severity, "(null message)");
            return;
        }
        // SAFETY: TensorRT passes a NUL-terminated string valid for the duration of the call.
        let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
        emit(severity, &text);
    }));
}

/// `IVersionedInterface::getAPILanguage()`: kCPP.
unsafe extern "C" fn api_language(_this: *const c_void) -> i32 {
    0
}

/// `IVersionedInterface::getInterfaceInfo()`: {"ILogger", 1, 0}.
unsafe extern "C" fn interface_info(_this: *const c_void) -> InterfaceInfo {
    InterfaceInfo {
        kind: c"ILogger".as_ptr(),
        major: 1,
        minor: 0,
    }
}

/// Destructor slots: the application owns the logger, so destroying it through the vtable
/// does nothing (TensorRT never does).
unsafe extern "C" fn destructor(_this: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_survive_bad_input() {
        // SAFETY: null and valid C strings are both accepted by the callback.
        unsafe {
            log_callback(std::ptr::null_mut(), 99, std::ptr::null());
            log_callback(std::ptr::null_mut(), SEV_ERROR, c"hello".as_ptr());
            let info = interface_info(std::ptr::null());
            assert_eq!(CStr::from_ptr(info.kind).to_str().unwrap(), "ILogger");
            assert_eq!(api_language(std::ptr::null()), 0);
        }
        for t in [&crate::sys::slots::TRT10, &crate::sys::slots::TRT11] {
            let l = Logger::new(t);
            assert!(!l.as_ptr().is_null());
        }
    }
}
