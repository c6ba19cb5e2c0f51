//! The activation arena: one device allocation per execution context, sized once from the
//! memory plan, handing out aligned offsets.
//!
//! [`Arena`] is the pure bookkeeping (offsets, alignment, capacity) and runs on CPU;
//! `DeviceArena` in `memory.rs` pairs it with a device buffer.

use crate::error::{CudaError, Result};

/// Alignment of every region: enough for any vector load and for cuBLAS/cuDNN workspaces.
pub const ARENA_ALIGN: usize = 256;

/// A region of an arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Offset from the arena's base, a multiple of [`ARENA_ALIGN`].
    pub offset: usize,
    /// Bytes asked for.
    pub len: usize,
}

/// Bump allocation of aligned regions inside a fixed capacity.
#[derive(Debug, Clone)]
pub struct Arena {
    capacity: usize,
    next: usize,
    high_water: usize,
}

impl Arena {
    /// An empty arena of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Arena {
            capacity,
            next: 0,
            high_water: 0,
        }
    }

    /// Bytes an arena needs to hold regions of `sizes`, placed one after another.
    pub fn required(sizes: impl IntoIterator<Item = usize>) -> Result<usize> {
        let mut a = Arena::new(usize::MAX);
        for s in sizes {
            a.alloc(s)?;
        }
        Ok(a.next)
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes handed out so far (with alignment padding).
    pub fn used(&self) -> usize {
        self.next
    }

    /// The most bytes ever used between resets.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Hands out `len` bytes at the next aligned offset.
    pub fn alloc(&mut self, len: usize) -> Result<Region> {
        let full = || CudaError::ArenaFull {
            requested: len,
            offset: self.next,
            capacity: self.capacity,
        };
        let offset = self
            .next
            .checked_next_multiple_of(ARENA_ALIGN)
            .ok_or_else(full)?;
        let end = offset.checked_add(len).ok_or_else(full)?;
        if end > self.capacity {
            return Err(full());
        }
        self.next = end;
        self.high_water = self.high_water.max(end);
        Ok(Region { offset, len })
    }

    /// Forgets every region (the next execution reuses the memory).
    pub fn reset(&mut self) {
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_aligned_and_disjoint() {
        let mut a = Arena::new(4096);
        let r1 = a.alloc(10).unwrap();
        let r2 = a.alloc(300).unwrap();
        let r3 = a.alloc(0).unwrap();
        let r4 = a.alloc(256).unwrap();
        assert_eq!(r1.offset, 0);
        assert_eq!(r2.offset, 256);
        assert_eq!(r3.offset, 768);
        assert_eq!(r4.offset, 768);
        for r in [r1, r2, r3, r4] {
            assert_eq!(r.offset % ARENA_ALIGN, 0);
        }
        assert_eq!(a.used(), 1024);
    }

    #[test]
    fn full_arena_is_an_error_and_reset_reuses() {
        let mut a = Arena::new(1000);
        a.alloc(600).unwrap();
        let err = a.alloc(300).unwrap_err();
        assert!(
            matches!(err, CudaError::ArenaFull { offset: 600, .. }),
            "{err}"
        );
        a.reset();
        assert_eq!(a.alloc(1000).unwrap().offset, 0);
        assert_eq!(a.high_water(), 1000);
        assert!(a.alloc(usize::MAX).is_err());
    }

    #[test]
    fn required_matches_placement() {
        let sizes = [10, 300, 1, 4096];
        let need = Arena::required(sizes).unwrap();
        let mut a = Arena::new(need);
        for s in sizes {
            a.alloc(s).unwrap();
        }
        assert_eq!(need, 256 + 512 + 256 + 4096);
    }
}
