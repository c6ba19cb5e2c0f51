//! Test-only helper of `kiln-nvinfer`: the C++ ABI test double, compiled by this crate's build
//! script, in one folder per variant. [`fresh`] copies a variant into a new temporary folder so
//! that every test gets its own instance of the libraries (their event logs are global).

use std::path::{Path, PathBuf};

/// The variants the build script compiles: `trt10` (10.16.1), `trt11` (11.1.0), `trt10_0`
/// (10.0.0: no V2 memory queries), `trt10_8` (the 10.8 network-slot anomaly), `major12` (a
/// `libnvinfer.so.11` that reports major 12), `no_runtime` (lacks
/// `createInferRuntime_INTERNAL`), `bad_pimpl` (the engine's getPImpl lies).
pub const VARIANTS: &[&str] = &[
    "trt10",
    "trt11",
    "trt10_0",
    "trt10_8",
    "major12",
    "no_runtime",
    "bad_pimpl",
];

/// The folder the build script wrote `variant` to.
pub fn built_dir(variant: &str) -> PathBuf {
    Path::new(env!("KILN_NVINFER_DOUBLE_OUT")).join(variant)
}

/// A private copy of a variant's libraries (deleted on drop).
pub struct Fresh {
    dir: tempfile::TempDir,
}

impl Fresh {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Copies `variant` into a new temporary folder.
pub fn fresh(variant: &str) -> std::io::Result<Fresh> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("kiln-trt-double-{variant}-"))
        .tempdir()?;
    for entry in std::fs::read_dir(built_dir(variant))? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.path().join(entry.file_name()))?;
    }
    Ok(Fresh { dir })
}

/// Calls one of the double's test hooks (`fn(char*, size_t) -> T`) in `lib` (a file in `dir`)
/// and returns its text and result. Opening the same path again shares the already-loaded
/// library, so this reads the state the binding's calls left there.
fn hook<T>(dir: &Path, lib: &str, symbol: &str) -> Result<(String, T), String> {
    let path = dir.join(lib);
    // SAFETY: the file is the double this crate built; loading it runs only its C++ static
    // initialisers.
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| e.to_string())?;
    let name = format!("{symbol}\0");
    // SAFETY: the double exports `symbol` with the C signature `T (*)(char*, size_t)`.
    let f = unsafe { lib.get::<unsafe extern "C" fn(*mut u8, usize) -> T>(name.as_bytes()) }
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: the buffer is writable for its length; the hook writes a NUL-terminated string.
    let r = unsafe { f(buf.as_mut_ptr(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok((String::from_utf8_lossy(&buf[..end]).into_owned(), r))
}

/// The event log of the libnvinfer double in `dir` (major `major`).
pub fn events(dir: &Path, major: u32) -> String {
    hook::<usize>(dir, &format!("libnvinfer.so.{major}"), "kiln_double_events")
        .map(|(s, _)| s)
        .unwrap_or_else(|e| format!("(no events: {e})"))
}

/// The layout self-check of both libraries: (mismatch count, report).
pub fn check_layout(dir: &Path, major: u32) -> Result<(i32, String), String> {
    let (a, n) = hook::<i32>(
        dir,
        &format!("libnvinfer.so.{major}"),
        "kiln_double_check_layout",
    )?;
    let (b, m) = hook::<i32>(
        dir,
        &format!("libnvonnxparser.so.{major}"),
        "kiln_double_check_parser_layout",
    )?;
    Ok((n + m, format!("{a}{b}")))
}

/// How many TensorRT objects of the libnvinfer double are alive.
pub fn live_objects(dir: &Path, major: u32) -> Result<i32, String> {
    hook::<i32>(
        dir,
        &format!("libnvinfer.so.{major}"),
        "kiln_double_live_objects",
    )
    .map(|(_, n)| n)
}

/// Keeps the libnvinfer double in `dir` loaded (so its event log survives the binding's last
/// handle being dropped).
pub struct Held(#[allow(dead_code)] libloading::Library);

/// Opens the libnvinfer double of `dir` and keeps it open while the result lives.
pub fn hold(dir: &Path, major: u32) -> Result<Held, String> {
    // SAFETY: the file is the double this crate built.
    unsafe { libloading::Library::new(dir.join(format!("libnvinfer.so.{major}"))) }
        .map(Held)
        .map_err(|e| e.to_string())
}
