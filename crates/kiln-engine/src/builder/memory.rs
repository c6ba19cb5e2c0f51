//! Memory plan: every activation placed at an offset of one arena, tensors whose lifetimes
//! overlap never sharing bytes. Greedy by size (largest first), each tensor at the lowest
//! aligned offset free for its whole lifetime — the arena size is known before anything runs.

use crate::error::{EngineError, Result};

/// Alignment of every placement (cuBLASLt/cuDNN and vectorised kernels want 256 bytes).
pub const ALIGN: usize = 256;

/// One buffer to place: its size in bytes and the first and last step that touch it
/// (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub bytes: usize,
    pub first: usize,
    pub last: usize,
}

/// The result: an offset per interval and the arena size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryPlan {
    pub offsets: Vec<usize>,
    pub arena_bytes: usize,
}

fn align(n: usize) -> Option<usize> {
    n.checked_add(ALIGN - 1).map(|v| v / ALIGN * ALIGN)
}

/// Places `intervals` (see the module doc).
pub fn plan(intervals: &[Interval]) -> Result<MemoryPlan> {
    if let Some(iv) = intervals.iter().find(|iv| iv.first > iv.last) {
        return Err(EngineError::Memory(format!(
            "lifetime starts after it ends ({iv:?})"
        )));
    }
    let mut order: Vec<usize> = (0..intervals.len()).collect();
    order.sort_by(|&a, &b| {
        intervals[b]
            .bytes
            .cmp(&intervals[a].bytes)
            .then(intervals[a].first.cmp(&intervals[b].first))
            .then(a.cmp(&b))
    });
    let mut offsets = vec![0usize; intervals.len()];
    // (offset, end) of the placed intervals, by index.
    let mut placed: Vec<(usize, usize, usize)> = Vec::new();
    let mut arena = 0usize;
    for &i in &order {
        let iv = intervals[i];
        let size = align(iv.bytes.max(1))
            .ok_or_else(|| EngineError::Memory(format!("tensor of {} bytes", iv.bytes)))?;
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|(j, _, _)| {
                let o = intervals[*j];
                o.first <= iv.last && iv.first <= o.last
            })
            .map(|&(_, s, e)| (s, e))
            .collect();
        busy.sort_unstable();
        let mut offset = 0usize;
        for (s, e) in busy {
            if offset.checked_add(size).is_some_and(|end| end <= s) {
                break;
            }
            offset = offset.max(e);
        }
        let end = offset
            .checked_add(size)
            .ok_or_else(|| EngineError::Memory("arena size overflows".into()))?;
        offsets[i] = offset;
        placed.push((i, offset, end));
        arena = arena.max(end);
    }
    Ok(MemoryPlan {
        offsets,
        arena_bytes: arena,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(bytes: usize, first: usize, last: usize) -> Interval {
        Interval { bytes, first, last }
    }

    fn check_disjoint(ivs: &[Interval], p: &MemoryPlan) {
        for a in 0..ivs.len() {
            assert_eq!(p.offsets[a] % ALIGN, 0);
            assert!(p.offsets[a] + ivs[a].bytes <= p.arena_bytes);
            for b in a + 1..ivs.len() {
                let (x, y) = (ivs[a], ivs[b]);
                if x.first <= y.last && y.first <= x.last {
                    let (xs, xe) = (p.offsets[a], p.offsets[a] + x.bytes);
                    let (ys, ye) = (p.offsets[b], p.offsets[b] + y.bytes);
                    assert!(xe <= ys || ye <= xs, "{a} and {b} overlap: {p:?}");
                }
            }
        }
    }

    #[test]
    fn chain_reuses_memory() {
        // a -> b -> c -> d: each lives two steps; only two buffers are live at once.
        let ivs = [
            iv(1000, 0, 1),
            iv(1000, 1, 2),
            iv(1000, 2, 3),
            iv(1000, 3, 4),
        ];
        let p = plan(&ivs).unwrap();
        check_disjoint(&ivs, &p);
        assert_eq!(p.arena_bytes, 2 * 1024);
    }

    #[test]
    fn random_plans_are_disjoint() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let n = rng.usize(1..30);
            let ivs: Vec<Interval> = (0..n)
                .map(|_| {
                    let first = rng.usize(0..20);
                    iv(rng.usize(0..5000), first, first + rng.usize(0..6))
                })
                .collect();
            let p = plan(&ivs).unwrap();
            check_disjoint(&ivs, &p);
            let total: usize = ivs.iter().map(|i| align(i.bytes.max(1)).unwrap()).sum();
            assert!(p.arena_bytes <= total);
        }
    }

    #[test]
    fn errors() {
        assert!(plan(&[iv(10, 3, 2)]).is_err());
        assert!(plan(&[iv(usize::MAX, 0, 0)]).is_err());
        assert_eq!(plan(&[]).unwrap().arena_bytes, 0);
    }
}
