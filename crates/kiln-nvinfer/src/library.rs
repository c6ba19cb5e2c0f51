//! Finding and opening libnvinfer and libnvonnxparser, reading their version, choosing the slot
//! table. Every entry point is probed here, before any call, so a missing library or symbol is
//! an `Err` naming what was searched and how to fix it.
#![allow(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use libloading::Library;

use crate::error::{NvInferError, Result};
use crate::sys::slots::{Slot, Table, table};
use crate::sys::{CreateFn, CreateParserFn, VersionFn};

/// The environment variable naming a folder that holds the TensorRT libraries.
pub const ENV_DIR: &str = "KILN_TENSORRT_DIR";

/// The majors kiln has slot tables for, newest first (the order libraries are tried in).
pub const SUPPORTED_MAJORS: [u32; 2] = [11, 10];

/// Where to look for TensorRT.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// A folder searched first (the CLI's `--tensorrt-dir`).
    pub dir: Option<PathBuf>,
    /// Search `$KILN_TENSORRT_DIR` (default true).
    pub use_env: bool,
    /// Search the system path: `LD_LIBRARY_PATH`, the ld.so cache, /usr/lib (default true).
    pub use_system: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dir: None,
            use_env: true,
            use_system: true,
        }
    }
}

impl LoadOptions {
    /// Only `dir`: neither the environment variable nor the system path.
    pub fn only_dir(dir: impl Into<PathBuf>) -> LoadOptions {
        LoadOptions {
            dir: Some(dir.into()),
            use_env: false,
            use_system: false,
        }
    }

    /// The places to try, in order: (folder or None for the system path, how it was named).
    fn locations(&self) -> Vec<(Option<PathBuf>, String)> {
        let mut out = Vec::new();
        if let Some(d) = &self.dir {
            out.push((Some(d.clone()), "the explicit directory option".to_string()));
        }
        if self.use_env
            && let Some(d) = std::env::var_os(ENV_DIR).filter(|d| !d.is_empty())
        {
            out.push((Some(PathBuf::from(d)), ENV_DIR.to_string()));
        }
        if self.use_system {
            let ld = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
            let ld = if ld.is_empty() { "unset".into() } else { ld };
            out.push((
                None,
                format!("the system library path (LD_LIBRARY_PATH={ld}, ld.so.cache, /usr/lib)"),
            ));
        }
        out
    }
}

/// The loaded TensorRT version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

struct ParserLib {
    _lib: Library,
    path: String,
    create: CreateParserFn,
}

/// The opened libraries, their entry points and the slot table. Every TensorRT object holds
/// an `Arc<Api>`, so the libraries stay loaded while any object lives.
pub(crate) struct Api {
    _lib: Library,
    pub path: String,
    pub version: Version,
    pub table: &'static Table,
    create_builder: CreateFn,
    create_runtime: CreateFn,
    parser: std::result::Result<ParserLib, NvInferError>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TensorRT {} ({})", self.version, self.path)
    }
}

/// Opens `file` from each location; returns the first success or the list of tries.
fn open_first(
    locations: &[(Option<PathBuf>, String)],
    file: &str,
    searched: &mut Vec<String>,
) -> Option<(Library, String)> {
    for (dir, origin) in locations {
        let path = match dir {
            Some(d) => d.join(file),
            None => PathBuf::from(file),
        };
        // SAFETY: loading a shared library runs its initialisers. We only load files named as
        // TensorRT's libraries, from folders the user chose or the system path, which is the
        // same trust a program linked against TensorRT places in them.
        match unsafe { Library::new(&path) } {
            Ok(lib) => return Some((lib, path.display().to_string())),
            Err(e) => searched.push(format!("{} in {origin} ({e})", file_or_path(&path))),
        }
    }
    None
}

fn file_or_path(p: &Path) -> String {
    p.display().to_string()
}

/// Looks up `name` in `lib` as a value of type `T` (a function pointer type).
fn symbol<T: Copy>(lib: &Library, path: &str, name: &'static str) -> Result<T> {
    let cname = format!("{name}\0");
    // SAFETY: every `T` used is the `extern "C"` signature the ABI facts give for `name`; the
    // copied function pointer is only called while `lib` (kept in `Api`) is loaded.
    unsafe { lib.get::<T>(cname.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| NvInferError::SymbolMissing {
            path: path.to_string(),
            symbol: name,
        })
}

fn call_version(f: VersionFn) -> u32 {
    // SAFETY: the getInferLib*Version entry points take no arguments and return an int32.
    let v = unsafe { f() };
    u32::try_from(v).unwrap_or(0)
}

impl Api {
    /// Finds, opens and probes TensorRT.
    pub(crate) fn load(opts: &LoadOptions) -> Result<Api> {
        let locations = opts.locations();
        let mut searched = Vec::new();
        let mut found = None;
        for major in SUPPORTED_MAJORS {
            if let Some(hit) =
                open_first(&locations, &format!("libnvinfer.so.{major}"), &mut searched)
            {
                found = Some((major, hit));
                break;
            }
        }
        let Some((file_major, (lib, path))) = found else {
            if locations.is_empty() {
                searched.push("nowhere: every search location was turned off".into());
            }
            return Err(NvInferError::LibraryMissing {
                library: "libnvinfer.so.11 / libnvinfer.so.10",
                searched,
            });
        };
        let major_fn: VersionFn = symbol(&lib, &path, "getInferLibMajorVersion")?;
        let minor_fn: VersionFn = symbol(&lib, &path, "getInferLibMinorVersion")?;
        let patch_fn: VersionFn = symbol(&lib, &path, "getInferLibPatchVersion")?;
        let version = Version {
            major: call_version(major_fn),
            minor: call_version(minor_fn),
            patch: call_version(patch_fn),
        };
        let table = table(version.major)
            .filter(|t| t.major == file_major)
            .ok_or_else(|| NvInferError::UnsupportedVersion {
                path: path.clone(),
                found: version.to_string(),
            })?;
        let create_builder = symbol(&lib, &path, "createInferBuilder_INTERNAL")?;
        let create_runtime = symbol(&lib, &path, "createInferRuntime_INTERNAL")?;
        let mut parser_searched = Vec::new();
        let parser_file = format!("libnvonnxparser.so.{}", version.major);
        let parser = match open_first(&locations, &parser_file, &mut parser_searched) {
            Some((plib, ppath)) => {
                symbol(&plib, &ppath, "createNvOnnxParser_INTERNAL").map(|create| ParserLib {
                    _lib: plib,
                    path: ppath,
                    create,
                })
            }
            None => Err(NvInferError::LibraryMissing {
                library: "libnvonnxparser (the TensorRT ONNX parser, needed to build engines)",
                searched: parser_searched,
            }),
        };
        tracing::info!(target: "tensorrt", %version, %path, "TensorRT loaded");
        Ok(Api {
            _lib: lib,
            path,
            version,
            table,
            create_builder,
            create_runtime,
            parser,
        })
    }

    /// The version argument of the factories: the version the table implements, never newer
    /// than the loaded library.
    pub(crate) fn api_version(&self) -> i32 {
        let (minor, patch) = if self.version.minor > self.table.max_minor {
            (self.table.max_minor, 0)
        } else {
            (self.version.minor, self.version.patch.min(99))
        };
        (self.table.major * 10000 + minor * 100 + patch) as i32
    }

    /// The index of `slot`, refused when the loaded library is older than the slot.
    pub(crate) fn slot(&self, slot: Slot) -> Result<usize> {
        if slot.since_minor > self.version.minor {
            return Err(NvInferError::SlotTooNew {
                method: slot.name,
                major: self.table.major,
                needed_minor: slot.since_minor,
                loaded: self.version.to_string(),
            });
        }
        if self.network_slots_shifted()
            && slot.name.starts_with("INetworkDefinition")
            && slot.index >= 63
        {
            return Err(NvInferError::Unsupported(format!(
                "{} is not called on TensorRT 10.8 (its network vtable shifted from slot 63 on)",
                slot.name
            )));
        }
        Ok(slot.index)
    }

    /// TensorRT 10.8 inserted a network method at slot 63 (10.9 moved it back).
    pub(crate) fn network_slots_shifted(&self) -> bool {
        self.version.major == 10 && self.version.minor == 8
    }

    pub(crate) fn create_builder(&self) -> CreateFn {
        self.create_builder
    }

    pub(crate) fn create_runtime(&self) -> CreateFn {
        self.create_runtime
    }

    pub(crate) fn create_parser(&self) -> Result<(CreateParserFn, &str)> {
        match &self.parser {
            Ok(p) => Ok((p.create, &p.path)),
            Err(e) => Err(e.clone()),
        }
    }
}
