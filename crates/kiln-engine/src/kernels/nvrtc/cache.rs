//! The on-disk cache of compiled modules.
//!
//! One file per module build, named by a hash of (source, architecture, NVRTC version). The
//! file holds those three again plus the image and a CRC32, and a hit requires all three to be
//! equal, so a hash collision or a damaged file is a miss (and a recompile), never a wrong
//! kernel. Writes go to a temporary file renamed into place, so concurrent builds are safe.

use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"KILNKC01";

/// What identifies one compiled module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey<'a> {
    pub source: &'a str,
    /// "sm_90" (CUBIN) or "compute_90" (PTX).
    pub arch: &'a str,
    pub nvrtc_version: &'a str,
}

impl CacheKey<'_> {
    /// The file name: 64-bit FNV-1a and CRC32 of the key, in hex.
    pub fn file_name(&self) -> String {
        let mut fnv: u64 = 0xcbf2_9ce4_8422_2325;
        let mut crc = crc32fast::Hasher::new();
        for part in [self.source, self.arch, self.nvrtc_version] {
            for &b in part.as_bytes().iter().chain(&[0u8]) {
                fnv ^= u64::from(b);
                fnv = fnv.wrapping_mul(0x0000_0100_0000_01b3);
            }
            crc.update(part.as_bytes());
            crc.update(&[0]);
        }
        format!("{fnv:016x}{:08x}.kc", crc.finalize())
    }
}

/// The default cache folder: `$KILN_KERNEL_CACHE`, else `$XDG_CACHE_HOME/kiln/kernels`, else
/// `$HOME/.cache/kiln/kernels`; `None` when none of them is set (no caching).
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("KILN_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("kiln").join("kernels"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("kiln").join("kernels"))
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

/// The bytes of a cache entry.
pub fn encode(key: &CacheKey<'_>, image: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + key.source.len() + image.len());
    out.extend_from_slice(MAGIC);
    put_str(&mut out, key.source.as_bytes());
    put_str(&mut out, key.arch.as_bytes());
    put_str(&mut out, key.nvrtc_version.as_bytes());
    put_str(&mut out, image);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, tail) = rest.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    if len > tail.len() {
        return None;
    }
    let (s, tail) = tail.split_at(len);
    *rest = tail;
    Some(s)
}

/// The image in `bytes` if it is an intact entry for exactly `key`.
pub fn decode(key: &CacheKey<'_>, bytes: &[u8]) -> Option<Vec<u8>> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return None;
    }
    let mut rest = body.strip_prefix(MAGIC.as_slice())?;
    let source = take(&mut rest)?;
    let arch = take(&mut rest)?;
    let nvrtc = take(&mut rest)?;
    let image = take(&mut rest)?;
    let same = source == key.source.as_bytes()
        && arch == key.arch.as_bytes()
        && nvrtc == key.nvrtc_version.as_bytes();
    (same && rest.is_empty() && !image.is_empty()).then(|| image.to_vec())
}

/// Reads the entry for `key` from `dir`; any problem is a miss.
pub fn load(dir: &Path, key: &CacheKey<'_>) -> Option<Vec<u8>> {
    let path = dir.join(key.file_name());
    let bytes = std::fs::read(&path).ok()?;
    let image = decode(key, &bytes);
    if image.is_none() {
        tracing::warn!(path = %path.display(), "ignoring a damaged or foreign kernel cache entry");
    }
    image
}

/// Writes the entry for `key` into `dir` (created if needed); failures are logged, not fatal.
pub fn store(dir: &Path, key: &CacheKey<'_>, image: &[u8]) {
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let name = key.file_name();
        let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, encode(key, image))?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), "cannot write the kernel cache: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(src: &'a str, arch: &'a str) -> CacheKey<'a> {
        CacheKey {
            source: src,
            arch,
            nvrtc_version: "13.0",
        }
    }

    #[test]
    fn names_depend_on_every_part() {
        let a = key("x", "sm_90").file_name();
        assert_eq!(a, key("x", "sm_90").file_name());
        assert_ne!(a, key("y", "sm_90").file_name());
        assert_ne!(a, key("x", "sm_80").file_name());
        let mut k = key("x", "sm_90");
        k.nvrtc_version = "12.8";
        assert_ne!(a, k.file_name());
        // the separators keep ("ab", "c") and ("a", "bc") apart
        assert_ne!(key("ab", "c").file_name(), key("a", "bc").file_name());
        assert!(a.ends_with(".kc") && a.len() == 27);
    }

    #[test]
    fn entries_round_trip_and_reject_damage() {
        let k = key("__global__ void f(){}", "sm_90");
        let bytes = encode(&k, b"\x7fELF-image");
        assert_eq!(decode(&k, &bytes).as_deref(), Some(&b"\x7fELF-image"[..]));
        // another key with the same file is a miss
        assert_eq!(decode(&key("other", "sm_90"), &bytes), None);
        assert_eq!(decode(&key("__global__ void f(){}", "sm_80"), &bytes), None);
        // every truncation and every bit flip is a miss
        for n in 0..bytes.len() {
            assert_eq!(decode(&k, &bytes[..n]), None, "truncated to {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert_eq!(decode(&k, &b), None, "flip at {i}");
        }
    }

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let k = key("src", "sm_90");
        assert_eq!(load(dir.path(), &k), None);
        store(dir.path(), &k, b"image");
        assert_eq!(load(dir.path(), &k).as_deref(), Some(&b"image"[..]));
        std::fs::write(dir.path().join(k.file_name()), b"garbage").unwrap();
        assert_eq!(load(dir.path(), &k), None);
    }
}
