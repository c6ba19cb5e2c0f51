//! The caching device allocator's bookkeeping, in pure Rust over [`RawAllocator`].
//!
//! Requests are rounded to size classes; freed blocks go to a free list of the stream they were
//! freed on. A block is reused at once on that stream (stream order makes it safe) and on another
//! stream only once the fence recorded at free time has completed. A hard limit caps the bytes
//! reserved from the backend; beyond it, and on a real out-of-memory, cached blocks are released
//! and the request retried once before [`CudaError::OutOfMemory`] is returned. The pool remains
//! usable afterwards.
//!
//! The CUDA backend (`memory.rs`) is a thin implementation of the trait; the tests below use a
//! fake backend, so all of this runs on CPU.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::error::{CudaError, Result};

/// Granularity of requests below [`LARGE_THRESHOLD`].
pub const SMALL_GRANULE: usize = 512;
/// Requests of this size or more are "large".
pub const LARGE_THRESHOLD: usize = 1 << 20;
/// Granularity of large requests.
pub const LARGE_GRANULE: usize = 2 << 20;

/// Rounds a request up to its size class: 512 B steps below 1 MiB, 2 MiB steps above.
/// A zero-byte request gets the smallest class. None on overflow.
pub fn size_class(bytes: usize) -> Option<usize> {
    let bytes = bytes.max(1);
    let granule = if bytes < LARGE_THRESHOLD {
        SMALL_GRANULE
    } else {
        LARGE_GRANULE
    };
    bytes.checked_next_multiple_of(granule)
}

/// Failure of a backend allocation.
#[derive(Debug, Clone, PartialEq)]
pub enum RawError {
    /// The device has no room; the pool may release cached blocks and retry.
    OutOfMemory,
    /// Any other failure (passed through).
    Other(CudaError),
}

/// The device-memory backend under the cache: allocation, release, and stream fences.
pub trait RawAllocator {
    /// A stream as the backend knows it.
    type Stream;
    /// A marker recorded on a stream; done once the stream's earlier work has finished.
    type Fence;

    /// Stable identity of a stream (its handle), used to key the per-stream free lists.
    fn stream_id(&self, stream: &Self::Stream) -> u64;
    /// Allocates `bytes` of device memory and returns its address.
    fn alloc(&mut self, bytes: usize) -> Result<u64, RawError>;
    /// Releases memory from [`RawAllocator::alloc`]; no queued work may still use it.
    fn free(&mut self, ptr: u64, bytes: usize) -> Result<()>;
    /// Free bytes on the device as the backend sees them (for error messages).
    fn device_free_bytes(&self) -> usize;
    /// Records a fence on `stream` after the work queued so far.
    fn record(&mut self, stream: &Self::Stream) -> Result<Self::Fence>;
    /// Non-blocking: has the fence's work completed?
    fn is_done(&self, fence: &Self::Fence) -> bool;
    /// Blocks until the fence's work has completed.
    fn wait(&self, fence: &Self::Fence) -> Result<()>;
}

/// A block handed out by the pool. Give it back with [`CachingAllocator::free`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Device address.
    pub ptr: u64,
    /// Size of the block (its size class or a reused larger block), at least `requested`.
    pub size: usize,
    /// Bytes asked for.
    pub requested: usize,
}

/// Counters of the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AllocStats {
    /// Bytes held from the backend (in use + cached).
    pub reserved: usize,
    /// Bytes in blocks handed out and not yet freed.
    pub in_use: usize,
    /// Highest `in_use` seen.
    pub peak_in_use: usize,
    /// Highest `reserved` seen.
    pub peak_reserved: usize,
    /// Requests served from the cache.
    pub hits: u64,
    /// Requests that went to the backend.
    pub misses: u64,
    /// Blocks reused on a stream other than the one they were freed on.
    pub cross_stream_reuses: u64,
    /// Times cached blocks were released to make room.
    pub cache_flushes: u64,
    /// Requests answered with `OutOfMemory`.
    pub ooms: u64,
}

impl AllocStats {
    /// hits / (hits + misses), 0 when nothing was requested.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Free blocks of one stream, by size.
type FreeLists<F> = BTreeMap<usize, Vec<FreeBlock<F>>>;

struct FreeBlock<F> {
    ptr: u64,
    size: usize,
    fence: F,
}

/// The caching allocator. Not thread-safe by itself; `memory.rs` wraps it in a `Mutex`.
pub struct CachingAllocator<R: RawAllocator> {
    raw: R,
    limit: Option<usize>,
    /// stream id → size → blocks freed on that stream.
    free: HashMap<u64, FreeLists<R::Fence>>,
    stats: AllocStats,
}

impl<R: RawAllocator> CachingAllocator<R> {
    /// A pool over `raw` with no limit beyond the device's memory.
    pub fn new(raw: R) -> Self {
        CachingAllocator {
            raw,
            limit: None,
            free: HashMap::new(),
            stats: AllocStats::default(),
        }
    }

    /// Caps the bytes reserved from the backend.
    pub fn with_limit(mut self, bytes: usize) -> Self {
        self.limit = Some(bytes);
        self
    }

    /// The limit, if any.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Current counters.
    pub fn stats(&self) -> AllocStats {
        self.stats
    }

    /// The backend.
    pub fn raw(&self) -> &R {
        &self.raw
    }

    /// Bytes cached in free lists.
    pub fn cached_bytes(&self) -> usize {
        self.stats.reserved - self.stats.in_use
    }

    /// Allocates at least `bytes` for use on `stream`.
    pub fn alloc(&mut self, bytes: usize, stream: &R::Stream) -> Result<Block> {
        let class = size_class(bytes).ok_or(CudaError::OutOfMemory {
            requested: bytes,
            free: self.raw.device_free_bytes(),
        })?;
        let sid = self.raw.stream_id(stream);
        if let Some((ptr, size, cross)) = self.take_cached(class, sid) {
            self.stats.hits += 1;
            if cross {
                self.stats.cross_stream_reuses += 1;
            }
            return Ok(self.hand_out(ptr, size, bytes));
        }
        self.stats.misses += 1;
        // The limit: make room by releasing cached blocks first.
        if let Some(limit) = self.limit {
            if self.stats.reserved + class > limit {
                self.release_cached()?;
            }
            if self.stats.reserved + class > limit {
                self.stats.ooms += 1;
                return Err(CudaError::OutOfMemory {
                    requested: bytes,
                    free: limit.saturating_sub(self.stats.reserved),
                });
            }
        }
        let ptr = match self.raw.alloc(class) {
            Ok(ptr) => ptr,
            Err(RawError::Other(e)) => return Err(e),
            Err(RawError::OutOfMemory) => {
                tracing::debug!(
                    class,
                    cached = self.cached_bytes(),
                    "device OOM; releasing cache, retrying once"
                );
                self.release_cached()?;
                match self.raw.alloc(class) {
                    Ok(ptr) => ptr,
                    Err(RawError::Other(e)) => return Err(e),
                    Err(RawError::OutOfMemory) => {
                        self.stats.ooms += 1;
                        return Err(CudaError::OutOfMemory {
                            requested: bytes,
                            free: self.raw.device_free_bytes(),
                        });
                    }
                }
            }
        };
        self.stats.reserved += class;
        self.stats.peak_reserved = self.stats.peak_reserved.max(self.stats.reserved);
        Ok(self.hand_out(ptr, class, bytes))
    }

    fn hand_out(&mut self, ptr: u64, size: usize, requested: usize) -> Block {
        self.stats.in_use += size;
        self.stats.peak_in_use = self.stats.peak_in_use.max(self.stats.in_use);
        Block {
            ptr,
            size,
            requested,
        }
    }

    /// Finds a cached block of `class` bytes up to twice that; on `sid` first, then on other
    /// streams among blocks whose fence is done. Returns (ptr, size, from another stream).
    fn take_cached(&mut self, class: usize, sid: u64) -> Option<(u64, usize, bool)> {
        let max = class.saturating_mul(2);
        if let Some(lists) = self.free.get_mut(&sid) {
            let found = lists
                .range_mut(class..max)
                .find(|(_, v)| !v.is_empty())
                .and_then(|(_, v)| v.pop());
            if let Some(b) = found {
                return Some((b.ptr, b.size, false));
            }
        }
        let raw = &self.raw;
        for (other, lists) in self.free.iter_mut() {
            if *other == sid {
                continue;
            }
            for (_, v) in lists.range_mut(class..max) {
                if let Some(i) = v.iter().position(|b| raw.is_done(&b.fence)) {
                    let b = v.swap_remove(i);
                    return Some((b.ptr, b.size, true));
                }
            }
        }
        None
    }

    /// Returns `block` to the pool, as freed on `stream` (after the work queued on it so far).
    pub fn free(&mut self, block: Block, stream: &R::Stream) -> Result<()> {
        self.stats.in_use = self.stats.in_use.saturating_sub(block.size);
        let fence = match self.raw.record(stream) {
            Ok(f) => f,
            Err(e) => {
                // Without a fence the block cannot be reused safely elsewhere: release it after
                // waiting for the device; keep the count honest either way.
                self.stats.reserved = self.stats.reserved.saturating_sub(block.size);
                let _ = self.raw.free(block.ptr, block.size);
                return Err(e);
            }
        };
        let sid = self.raw.stream_id(stream);
        self.free
            .entry(sid)
            .or_default()
            .entry(block.size)
            .or_default()
            .push(FreeBlock {
                ptr: block.ptr,
                size: block.size,
                fence,
            });
        Ok(())
    }

    /// Releases every cached block to the backend (waiting for each block's fence first).
    pub fn release_cached(&mut self) -> Result<()> {
        if self.free.values().all(|l| l.values().all(Vec::is_empty)) {
            return Ok(());
        }
        self.stats.cache_flushes += 1;
        let mut first_err = None;
        for (_, lists) in self.free.drain() {
            for (_, blocks) in lists {
                for b in blocks {
                    let res = self
                        .raw
                        .wait(&b.fence)
                        .and_then(|_| self.raw.free(b.ptr, b.size));
                    self.stats.reserved = self.stats.reserved.saturating_sub(b.size);
                    if let Err(e) = res {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl<R: RawAllocator> Drop for CachingAllocator<R> {
    fn drop(&mut self) {
        if let Err(e) = self.release_cached() {
            tracing::warn!("releasing cached device blocks failed: {e}");
        }
        if self.stats.in_use > 0 {
            tracing::warn!(
                bytes = self.stats.in_use,
                "allocator dropped with blocks in use"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// Fake device: a bump allocator with a capacity, fences completed by hand.
    struct Fake {
        next: u64,
        capacity: usize,
        used: usize,
        live: HashMap<u64, usize>,
        /// Fences with id < `done_upto` are complete.
        done_upto: Rc<Cell<u64>>,
        next_fence: u64,
        frees: usize,
    }

    impl Fake {
        fn new(capacity: usize) -> (Self, Rc<Cell<u64>>) {
            let done = Rc::new(Cell::new(0));
            let fake = Fake {
                next: 0x1000,
                capacity,
                used: 0,
                live: HashMap::new(),
                done_upto: done.clone(),
                next_fence: 0,
                frees: 0,
            };
            (fake, done)
        }
    }

    impl RawAllocator for Fake {
        type Stream = u64;
        type Fence = u64;
        fn stream_id(&self, s: &u64) -> u64 {
            *s
        }
        fn alloc(&mut self, bytes: usize) -> Result<u64, RawError> {
            if self.used + bytes > self.capacity {
                return Err(RawError::OutOfMemory);
            }
            let p = self.next;
            self.next += bytes as u64;
            self.used += bytes;
            self.live.insert(p, bytes);
            Ok(p)
        }
        fn free(&mut self, ptr: u64, bytes: usize) -> Result<()> {
            assert_eq!(self.live.remove(&ptr), Some(bytes), "double or wrong free");
            self.used -= bytes;
            self.frees += 1;
            Ok(())
        }
        fn device_free_bytes(&self) -> usize {
            self.capacity - self.used
        }
        fn record(&mut self, _s: &u64) -> Result<u64> {
            self.next_fence += 1;
            Ok(self.next_fence - 1)
        }
        fn is_done(&self, f: &u64) -> bool {
            *f < self.done_upto.get()
        }
        fn wait(&self, f: &u64) -> Result<()> {
            if *f >= self.done_upto.get() {
                self.done_upto.set(*f + 1);
            }
            Ok(())
        }
    }

    const S0: u64 = 10;
    const S1: u64 = 11;
    const MIB: usize = 1 << 20;

    #[test]
    fn size_classes() {
        assert_eq!(size_class(0), Some(512));
        assert_eq!(size_class(1), Some(512));
        assert_eq!(size_class(512), Some(512));
        assert_eq!(size_class(513), Some(1024));
        assert_eq!(size_class(MIB - 1), Some(MIB));
        assert_eq!(size_class(MIB), Some(2 * MIB));
        assert_eq!(size_class(2 * MIB + 1), Some(4 * MIB));
        assert_eq!(size_class(usize::MAX), None);
    }

    #[test]
    fn same_stream_reuse_is_immediate() {
        let (fake, _) = Fake::new(64 * MIB);
        let mut pool = CachingAllocator::new(fake);
        let a = pool.alloc(1000, &S0).unwrap();
        assert_eq!(a.size, 1024);
        pool.free(a, &S0).unwrap();
        let b = pool.alloc(900, &S0).unwrap();
        assert_eq!(
            b.ptr, a.ptr,
            "same class on the same stream reuses the block"
        );
        let s = pool.stats();
        assert_eq!((s.hits, s.misses), (1, 1));
        assert_eq!(s.reserved, 1024);
        assert_eq!(s.in_use, 1024);
    }

    #[test]
    fn other_stream_waits_for_the_fence() {
        let (fake, done) = Fake::new(64 * MIB);
        let mut pool = CachingAllocator::new(fake);
        let a = pool.alloc(4096, &S0).unwrap();
        pool.free(a, &S0).unwrap();
        let b = pool.alloc(4096, &S1).unwrap();
        assert_ne!(b.ptr, a.ptr, "fence pending: S1 must not get S0's block");
        done.set(u64::MAX);
        let c = pool.alloc(4096, &S1).unwrap();
        assert_eq!(c.ptr, a.ptr, "fence done: block reusable on S1");
        assert_eq!(pool.stats().cross_stream_reuses, 1);
    }

    #[test]
    fn different_classes_do_not_mix() {
        let (fake, _) = Fake::new(64 * MIB);
        let mut pool = CachingAllocator::new(fake);
        let small = pool.alloc(512, &S0).unwrap();
        pool.free(small, &S0).unwrap();
        let big = pool.alloc(3 * MIB, &S0).unwrap();
        assert_eq!(big.size, 4 * MIB);
        assert_ne!(big.ptr, small.ptr);
        pool.free(big, &S0).unwrap();
        // A 4 MiB block serves a 3 MiB request but not a 1 KiB one.
        let again = pool.alloc(3 * MIB + 5, &S0).unwrap();
        assert_eq!(again.ptr, big.ptr);
        let tiny = pool.alloc(1024, &S0).unwrap();
        assert_ne!(tiny.ptr, big.ptr);
    }

    #[test]
    fn limit_gives_oom_then_pool_still_works() {
        let (fake, _) = Fake::new(1 << 30);
        let mut pool = CachingAllocator::new(fake).with_limit(8 * MIB);
        let a = pool.alloc(6 * MIB, &S0).unwrap();
        let err = pool.alloc(4 * MIB, &S0).unwrap_err();
        match err {
            CudaError::OutOfMemory { requested, free } => {
                assert_eq!(requested, 4 * MIB);
                assert_eq!(free, 2 * MIB);
            }
            e => panic!("expected OOM, got {e}"),
        }
        assert_eq!(pool.stats().ooms, 1);
        let small = pool.alloc(MIB / 2, &S0).unwrap();
        pool.free(small, &S0).unwrap();
        pool.free(a, &S0).unwrap();
        // Cached 6 MiB + 0.5 MiB; a fresh 8 MiB request flushes the cache to fit.
        let b = pool.alloc(8 * MIB, &S1).unwrap();
        assert_eq!(b.size, 8 * MIB);
        let s = pool.stats();
        assert_eq!(s.cache_flushes, 1);
        assert_eq!(s.reserved, 8 * MIB);
    }

    #[test]
    fn device_oom_releases_cache_and_retries_once() {
        let (fake, _) = Fake::new(10 * MIB);
        let mut pool = CachingAllocator::new(fake);
        let a = pool.alloc(6 * MIB, &S0).unwrap();
        pool.free(a, &S0).unwrap();
        // 6 MiB cached, 4 MiB free on the device: 8 MiB only fits after the release.
        let b = pool.alloc(8 * MIB, &S0).unwrap();
        assert_eq!(pool.raw().frees, 1);
        let err = pool.alloc(4 * MIB, &S0).unwrap_err();
        assert!(err.is_out_of_memory());
        assert!(err.to_string().contains("out of device memory"), "{err}");
        pool.free(b, &S0).unwrap();
        let c = pool.alloc(4 * MIB, &S0).unwrap();
        pool.free(c, &S0).unwrap();
    }

    #[test]
    fn stats_track_peaks() {
        let (fake, _) = Fake::new(1 << 30);
        let mut pool = CachingAllocator::new(fake);
        let blocks: Vec<_> = (0..4).map(|_| pool.alloc(MIB / 2, &S0).unwrap()).collect();
        for b in blocks {
            pool.free(b, &S0).unwrap();
        }
        let s = pool.stats();
        assert_eq!(s.peak_in_use, 2 * MIB);
        assert_eq!(s.in_use, 0);
        assert_eq!(s.reserved, 2 * MIB);
        assert_eq!(pool.cached_bytes(), 2 * MIB);
        pool.release_cached().unwrap();
        assert_eq!(pool.stats().reserved, 0);
        assert_eq!(pool.stats().peak_reserved, 2 * MIB);
    }

    #[test]
    fn build_like_workload_hits_the_cache() {
        let (fake, done) = Fake::new(1 << 32);
        let mut pool = CachingAllocator::new(fake);
        let mut rng = 12345u64;
        let mut live = Vec::new();
        for i in 0..5000u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let size = [256usize, 4096, 70_000, 3 * MIB, 17 * MIB][(rng >> 33) as usize % 5];
            let s = if i % 3 == 0 { S1 } else { S0 };
            live.push((pool.alloc(size, &s).unwrap(), s));
            if live.len() > 8 {
                let (b, s) = live.remove((rng >> 40) as usize % live.len());
                pool.free(b, &s).unwrap();
            }
            if i % 100 == 0 {
                done.set(u64::MAX);
            }
        }
        assert!(pool.stats().hit_rate() > 0.9, "{:?}", pool.stats());
        for (b, s) in live {
            pool.free(b, &s).unwrap();
        }
    }
}
