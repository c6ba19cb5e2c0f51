//! The timing cache file of [`super`]: entries keyed by device, workspace limit and
//! description, read before timing and written atomically after.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::kernels::conv::ConvTactic;
use crate::kernels::gemm::GemmTactic;
use crate::plan::Fingerprint;

/// The part of a [`Fingerprint`] a timing depends on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceKey {
    pub gpu_name: String,
    pub compute_capability: (u32, u32),
    pub cublaslt: Option<String>,
    pub cudnn: Option<String>,
}

impl DeviceKey {
    pub fn of(f: &Fingerprint) -> DeviceKey {
        DeviceKey {
            gpu_name: f.gpu_name.clone(),
            compute_capability: f.compute_capability,
            cublaslt: f.cublaslt.clone(),
            cudnn: f.cudnn.clone(),
        }
    }
}

/// A tactic of either library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "library", rename_all = "lowercase")]
pub enum Tactic {
    Gemm(GemmTactic),
    Conv(ConvTactic),
}

/// One timed candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub tactic: Tactic,
    /// Median milliseconds per run; `None` when the candidate failed to run.
    pub median_ms: Option<f64>,
}

/// One description's timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub device: DeviceKey,
    pub workspace_limit: usize,
    /// The description's key (`libs::key`: its JSON).
    pub desc: String,
    /// The optimisation level the choice was made at.
    pub opt_level: u8,
    pub chosen: Tactic,
    /// Every candidate timed, in the heuristics' order (empty when there was only one).
    pub timings: Vec<Measured>,
}

const FORMAT: &str = "kiln-timing-cache";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: String,
    version: u32,
    entries: Vec<CacheEntry>,
}

type EntryKey = (DeviceKey, usize, String);

/// The timing cache: entries by (device, workspace limit, description).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimingCache {
    entries: BTreeMap<EntryKey, CacheEntry>,
    dirty: bool,
}

impl TimingCache {
    /// Parses a cache file's bytes; errors say why they are not a kiln timing cache.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<TimingCache, String> {
        let f: CacheFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if f.format != FORMAT {
            return Err(format!("format '{}', not '{FORMAT}'", f.format));
        }
        if f.version != VERSION {
            return Err(format!(
                "version {} (this kiln reads version {VERSION})",
                f.version
            ));
        }
        let mut c = TimingCache::default();
        for e in f.entries {
            c.entries
                .insert((e.device.clone(), e.workspace_limit, e.desc.clone()), e);
        }
        Ok(c)
    }

    /// The file's bytes (pretty JSON, entries sorted: the same cache gives the same bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let f = CacheFile {
            format: FORMAT.into(),
            version: VERSION,
            entries: self.entries.values().cloned().collect(),
        };
        serde_json::to_vec_pretty(&f).map_err(|e| EngineError::Config(format!("timing cache: {e}")))
    }

    /// Reads `path`; a missing file is an empty cache, an unreadable, corrupt or foreign one a
    /// warning and an empty cache (never an error).
    pub fn load(path: &Path) -> TimingCache {
        match std::fs::read(path) {
            Ok(bytes) => match TimingCache::from_bytes(&bytes) {
                Ok(c) => {
                    tracing::debug!(path = %path.display(), entries = c.len(), "timing cache read");
                    c
                }
                Err(why) => {
                    tracing::warn!(
                        path = %path.display(),
                        "ignoring the timing cache ({why}); it will be replaced"
                    );
                    TimingCache::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TimingCache::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read the timing cache: {e}");
                TimingCache::default()
            }
        }
    }

    /// Writes the cache to `path` atomically (a temporary file beside it, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let name = path
            .file_name()
            .ok_or_else(|| EngineError::Config(format!("timing cache path {}", path.display())))?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(())
    }

    /// The entry for `desc` on `device` with `limit` chosen at `opt_level` or higher.
    pub fn lookup(
        &self,
        device: &DeviceKey,
        limit: usize,
        desc: &str,
        opt_level: u8,
    ) -> Option<&CacheEntry> {
        self.entries
            .get(&(device.clone(), limit, desc.to_string()))
            .filter(|e| e.opt_level >= opt_level)
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, e: CacheEntry) {
        self.entries
            .insert((e.device.clone(), e.workspace_limit, e.desc.clone()), e);
        self.dirty = true;
    }

    /// Entries (of every device).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether entries were added since it was read.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
}
