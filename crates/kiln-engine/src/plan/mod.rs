//! The plan: what a build produces and `kiln build` saves. A versioned header (magic, format
//! version, kiln version, GPU and library versions, build config), the optimised graph with
//! its weights (ONNX bytes), the compiled kernel binaries, and a CRC-32 of everything.
//!
//! Layout (little-endian):
//! `b"KILNPLAN"` · u32 format version · u64 header length · header JSON ·
//! u32 section count · per section: u16 name length · name · u64 length · bytes ·
//! u32 CRC-32 of every byte before it.
//!
//! Parsing checks every length against what is left, so truncated or corrupt input is an
//! error, never a panic or an oversized allocation.

mod header;

pub use header::{BuildConfig, DEFAULT_OPT_LEVEL, Fingerprint, Fusions, PlanHeader};

use crate::error::{EngineError, Result};

/// First bytes of every plan.
pub const MAGIC: &[u8; 8] = b"KILNPLAN";
/// Bumped whenever the layout or the meaning of a section changes.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the section holding the optimised graph (ONNX model bytes, weights included).
pub const GRAPH_SECTION: &str = "graph";
/// Prefix of the sections holding kernel binaries (`kernel:<key>`).
pub const KERNEL_PREFIX: &str = "kernel:";

/// A built, serialisable engine description.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub header: PlanHeader,
    /// Named byte sections in file order (the graph, kernel binaries).
    pub sections: Vec<(String, Vec<u8>)>,
}

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::BadPlan(msg.into())
}

impl Plan {
    /// A section's bytes.
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// The optimised graph stored in the plan.
    pub fn graph(&self) -> Result<kiln_onnx::Graph> {
        let bytes = self
            .section(GRAPH_SECTION)
            .ok_or_else(|| bad("the plan has no graph section"))?;
        Ok(kiln_onnx::from_bytes(bytes)?)
    }

    /// Kernel binaries by key.
    pub fn kernels(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.sections
            .iter()
            .filter_map(|(n, b)| n.strip_prefix(KERNEL_PREFIX).map(|k| (k, b.as_slice())))
    }

    /// The plan as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_vec(&self.header)
            .map_err(|e| bad(format!("header does not serialise: {e}")))?;
        let mut out = Vec::with_capacity(
            64 + header.len()
                + self
                    .sections
                    .iter()
                    .map(|(n, b)| n.len() + b.len() + 10)
                    .sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        let count = u32::try_from(self.sections.len()).map_err(|_| bad("too many sections"))?;
        out.extend_from_slice(&count.to_le_bytes());
        for (name, bytes) in &self.sections {
            let len = u16::try_from(name.len()).map_err(|_| bad("section name too long"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Parses a plan (format and checksum only: see [`Plan::check_compatible`] for the
    /// machine).
    pub fn from_bytes(bytes: &[u8]) -> Result<Plan> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad(
                "not a kiln plan (bad magic); build one with `kiln build`",
            ));
        }
        let mut r = Reader {
            bytes,
            pos: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(EngineError::PlanMismatch {
                what: format!(
                    "plan format version {version}, this kiln reads version {FORMAT_VERSION}"
                ),
            });
        }
        if bytes.len() < MAGIC.len() + 4 + 4 {
            return Err(bad("truncated"));
        }
        let body_end = bytes.len() - 4;
        let stored = u32::from_le_bytes(
            bytes[body_end..]
                .try_into()
                .map_err(|_| bad("truncated checksum"))?,
        );
        if crc32fast::hash(&bytes[..body_end]) != stored {
            return Err(bad("checksum mismatch: the file is corrupt or truncated"));
        }
        let mut r = Reader {
            bytes: &bytes[..body_end],
            pos: r.pos,
        };
        let hlen = r.u64()?;
        let header: PlanHeader =
            serde_json::from_slice(r.take(hlen)?).map_err(|e| bad(format!("header: {e}")))?;
        let count = r.u32()?;
        let mut sections = Vec::new();
        for _ in 0..count {
            let nlen = u64::from(r.u16()?);
            let name = std::str::from_utf8(r.take(nlen)?)
                .map_err(|_| bad("section name is not UTF-8"))?
                .to_string();
            let len = r.u64()?;
            sections.push((name, r.take(len)?.to_vec()));
        }
        if r.pos != r.bytes.len() {
            return Err(bad(format!("{} trailing bytes", r.bytes.len() - r.pos)));
        }
        Ok(Plan { header, sections })
    }

    /// Writes the plan to a file.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        std::fs::write(path, self.to_bytes()?)?;
        Ok(())
    }

    /// Reads a plan file.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Plan> {
        Plan::from_bytes(&std::fs::read(path)?)
    }

    /// Whether this plan runs here: same GPU model and compute capability, same CUDA,
    /// NVRTC, cuBLASLt and cuDNN versions, same kiln. Differences are an error saying to
    /// rebuild.
    pub fn check_compatible(&self, here: &Fingerprint) -> Result<()> {
        let mut diffs = self.header.fingerprint.differences(here);
        if self.header.kiln_version != env!("CARGO_PKG_VERSION") {
            diffs.push(format!(
                "kiln {} built it, this is kiln {}",
                self.header.kiln_version,
                env!("CARGO_PKG_VERSION")
            ));
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(EngineError::PlanMismatch {
                what: format!("the plan was built elsewhere: {}", diffs.join("; ")),
            })
        }
    }
}

/// Bounds-checked little-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| bad(format!("a length of {n} bytes where {left} are left")))?;
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests;
