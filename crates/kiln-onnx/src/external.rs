//! External data: tensors whose bytes live in another file next to the model
//! (`data_location = EXTERNAL`, `external_data` keys `location`, `offset`, `length`, `checksum`).
//!
//! The location must be a relative path without `..` that stays inside the model's folder once
//! symlinks are resolved: a model file must not be able to make the loader read arbitrary files
//! (the class of bug behind CVE-2024-27318). Only the tensor's region is read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use kiln_core::DataType;
use onnx_protobuf::StringStringEntryProto;

use crate::error::{OnnxError, Origin, Result};
use crate::tensor::byte_len;

/// Where external data may be read from: the model's folder, when loaded from a file.
#[derive(Debug, Default)]
pub(crate) struct ExternalCtx {
    dir: Option<PathBuf>,
    canonical_dir: OnceLock<std::result::Result<PathBuf, String>>,
}

impl ExternalCtx {
    /// For a model loaded from `model_path` (`None`: loaded from bytes).
    pub(crate) fn new(model_path: Option<&Path>) -> ExternalCtx {
        let dir = model_path.map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        });
        ExternalCtx {
            dir,
            canonical_dir: OnceLock::new(),
        }
    }
}

struct Spec {
    location: String,
    offset: u64,
    length: Option<u64>,
}

fn err(tensor: &str, location: &str, problem: impl Into<String>, fix: &str) -> OnnxError {
    OnnxError::ExternalData {
        file: Origin::bytes(),
        tensor: tensor.to_string(),
        location: location.to_string(),
        problem: problem.into(),
        fix: fix.to_string(),
    }
}

fn parse_spec(tensor: &str, entries: &[StringStringEntryProto]) -> Result<Spec> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in entries {
        let number = |what: &str| -> Result<u64> {
            e.value.trim().parse::<u64>().map_err(|_| {
                err(
                    tensor,
                    location.as_deref().unwrap_or("?"),
                    format!("'{what}' is '{}', not a non-negative integer", e.value),
                    "Fix the tensor's external_data entries (re-save the model with onnx)",
                )
            })
        };
        match e.key.as_str() {
            "location" => location = Some(e.value.clone()),
            "offset" => offset = number("offset")?,
            "length" => length = Some(number("length")?),
            "checksum" => {}
            other => tracing::debug!(tensor, key = other, "ignoring unknown external_data key"),
        }
    }
    let location = location.filter(|l| !l.is_empty()).ok_or_else(|| {
        err(
            tensor,
            "",
            "it is marked EXTERNAL but has no 'location' entry",
            "Re-save the model with onnx.save_model(..., save_as_external_data=True)",
        )
    })?;
    Ok(Spec {
        location,
        offset,
        length,
    })
}

/// Checks that `location` is a plain relative path below the model's folder.
fn check_relative(tensor: &str, location: &str) -> Result<()> {
    let p = Path::new(location);
    let fix = "External data must be a relative path inside the model's folder; move the data \
               file next to the model and re-save it";
    if p.is_absolute() || p.has_root() || location.starts_with('/') || location.starts_with('\\') {
        return Err(err(
            tensor,
            location,
            "the location is an absolute path",
            fix,
        ));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(err(
                    tensor,
                    location,
                    "the location contains a '..' component",
                    fix,
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(err(
                    tensor,
                    location,
                    "the location is an absolute path",
                    fix,
                ));
            }
        }
    }
    if location.split(['/', '\\']).any(|part| part == "..") {
        return Err(err(
            tensor,
            location,
            "the location contains a '..' component",
            fix,
        ));
    }
    Ok(())
}

/// Reads the bytes of external tensor `tensor` of `dtype` and `dims`.
pub(crate) fn read(
    ctx: &ExternalCtx,
    tensor: &str,
    dtype: DataType,
    dims: &[usize],
    entries: &[StringStringEntryProto],
) -> Result<Vec<u8>> {
    let spec = parse_spec(tensor, entries)?;
    let loc = spec.location.as_str();
    let Some(dir) = ctx.dir.as_deref() else {
        return Err(err(
            tensor,
            loc,
            "the model was loaded from bytes, so there is no folder to find the data file in",
            "Load the model from its file (kiln_onnx::load) so external data can be found next \
             to it",
        ));
    };
    check_relative(tensor, loc)?;

    let canonical_dir = ctx
        .canonical_dir
        .get_or_init(|| {
            dir.canonicalize()
                .map_err(|e| format!("cannot resolve the model folder {}: {e}", dir.display()))
        })
        .as_ref()
        .map_err(|e| {
            err(
                tensor,
                loc,
                e.clone(),
                "Check that the model's folder exists",
            )
        })?;

    let joined = dir.join(loc);
    let canonical = match joined.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(
                tensor,
                loc,
                format!("the data file {} does not exist", joined.display()),
                "Copy the external data file next to the model (it must travel with the .onnx \
                 file)",
            ));
        }
        Err(e) => {
            return Err(err(
                tensor,
                loc,
                format!("cannot resolve {}: {e}", joined.display()),
                "Check that the data file exists and is readable",
            ));
        }
    };
    if !canonical.starts_with(canonical_dir) {
        return Err(err(
            tensor,
            loc,
            format!(
                "the location resolves to {}, outside the model's folder {} (through a symlink)",
                canonical.display(),
                canonical_dir.display()
            ),
            "Put the data file itself (not a symlink to elsewhere) in the model's folder",
        ));
    }

    let needed = byte_len(tensor, dtype, dims)?;
    let needed64 = u64::try_from(needed).unwrap_or(u64::MAX);
    if let Some(length) = spec.length
        && length != needed64
    {
        return Err(err(
            tensor,
            loc,
            format!(
                "'length' is {length} bytes but the tensor's shape {dims:?} of {dtype} needs \
                 {needed}"
            ),
            "The model and its data file do not match; re-export them together",
        ));
    }

    let io_err = |e: std::io::Error| OnnxError::Io {
        file: Origin::file(&canonical),
        what: format!("external data of tensor '{tensor}'"),
        source: e,
    };
    let mut file = File::open(&canonical).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(err(
            tensor,
            loc,
            format!("{} is not a regular file", canonical.display()),
            "Point the location at the data file",
        ));
    }
    let file_len = meta.len();
    let end = spec.offset.checked_add(needed64);
    if end.is_none_or(|end| end > file_len) {
        return Err(err(
            tensor,
            loc,
            format!(
                "the file is {file_len} bytes, the tensor needs bytes {}..{}",
                spec.offset,
                end.map_or_else(|| "overflow".to_string(), |e| e.to_string())
            ),
            "The data file is truncated or belongs to another model; copy it again",
        ));
    }
    file.seek(SeekFrom::Start(spec.offset)).map_err(io_err)?;
    let mut bytes = Vec::with_capacity(needed);
    let got = file
        .take(needed64)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if got != needed {
        return Err(err(
            tensor,
            loc,
            format!("only {got} of {needed} bytes could be read"),
            "The data file changed while loading; try again",
        ));
    }
    tracing::trace!(tensor, location = loc, bytes = needed, "read external data");
    Ok(bytes)
}
