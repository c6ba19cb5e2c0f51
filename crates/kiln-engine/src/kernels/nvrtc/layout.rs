//! Shape and stride math shared by the launch functions: row-major strides, numpy
//! broadcasting expressed as strides (0 on broadcast axes), collapsing of dimensions that are
//! contiguous in every operand, and launch sizes. All of it runs on the host and is unit-tested.

use super::{Result, invalid};

/// The most dimensions a kernel takes (after collapsing).
pub const MAX_RANK: usize = 8;

/// Dimensions or strides as a kernel argument (`struct KDims` in C): `MAX_RANK` signed 64-bit
/// values, unused ones 0 for strides and 1 for shapes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub v: [i64; MAX_RANK],
}

impl Dims {
    /// A shape (unused trailing entries are 1).
    pub fn shape(dims: &[usize], op: &str) -> Result<Dims> {
        let mut v = [1i64; MAX_RANK];
        Self::fill(
            &mut v,
            dims.iter().map(|&d| i64::try_from(d).ok()),
            dims.len(),
            op,
        )?;
        Ok(Dims { v })
    }

    /// Strides (unused trailing entries are 0).
    pub fn strides(strides: &[i64], op: &str) -> Result<Dims> {
        let mut v = [0i64; MAX_RANK];
        Self::fill(&mut v, strides.iter().map(|&s| Some(s)), strides.len(), op)?;
        Ok(Dims { v })
    }

    fn fill(
        v: &mut [i64; MAX_RANK],
        it: impl Iterator<Item = Option<i64>>,
        len: usize,
        op: &str,
    ) -> Result<()> {
        if len > MAX_RANK {
            return Err(invalid(
                op,
                format!(
                    "rank {len} exceeds the kernels' limit of {MAX_RANK} (after merging contiguous axes)"
                ),
            ));
        }
        for (slot, x) in v.iter_mut().zip(it) {
            *slot = x.ok_or_else(|| invalid(op, "a dimension exceeds i64"))?;
        }
        Ok(())
    }
}

/// Number of elements of `shape`, checked.
pub fn numel(shape: &[usize], op: &str) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| i64::try_from(n).is_ok())
        .ok_or_else(|| invalid(op, format!("shape {shape:?} has too many elements")))
}

/// Row-major strides (in elements) of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for (st, &d) in s.iter_mut().zip(shape).rev() {
        *st = acc;
        acc = acc.saturating_mul(d as i64);
    }
    s
}

/// numpy's broadcast of several shapes, or `None` if they do not broadcast.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let pad = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[pad + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}

/// Strides that read a row-major tensor of shape `input` as if it had shape `out` (numpy
/// broadcasting: right-aligned, 0 on broadcast axes); `None` if it does not broadcast.
pub fn broadcast_strides(input: &[usize], out: &[usize]) -> Option<Vec<i64>> {
    if input.len() > out.len() {
        return None;
    }
    let own = contiguous_strides(input);
    let pad = out.len() - input.len();
    let mut s = vec![0i64; out.len()];
    for (i, &d) in input.iter().enumerate() {
        let o = out[pad + i];
        if d == o {
            s[pad + i] = if d == 1 { 0 } else { own[i] };
        } else if d != 1 {
            return None;
        }
    }
    Some(s)
}

/// Merges axes that are contiguous in every stride set (and drops axes of size 1), so kernels
/// index as few axes as possible. Returns the new shape and stride sets; an empty shape means
/// one element.
pub fn collapse(shape: &[usize], strides: &[Vec<i64>]) -> (Vec<usize>, Vec<Vec<i64>>) {
    let keep: Vec<usize> = (0..shape.len()).filter(|&i| shape[i] != 1).collect();
    let mut out_shape: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for &i in &keep {
        let mergeable = !out_shape.is_empty()
            && strides.iter().zip(&out_strides).all(|(s, o)| {
                let last = *o.last().unwrap_or(&0);
                last == s[i].saturating_mul(shape[i] as i64)
            });
        if mergeable {
            let n = out_shape.len() - 1;
            out_shape[n] *= shape[i];
            for (o, s) in out_strides.iter_mut().zip(strides) {
                let n = o.len() - 1;
                o[n] = s[i];
            }
        } else {
            out_shape.push(shape[i]);
            for (o, s) in out_strides.iter_mut().zip(strides) {
                o.push(s[i]);
            }
        }
    }
    (out_shape, out_strides)
}

/// Threads per block of the elementwise kernels.
pub const BLOCK: u32 = 256;

/// Grid size of a grid-stride loop over `n` elements (at least 1 block, at most 2^16: 16 M
/// threads, dozens of waves on any GPU, and each thread's setup is shared by several
/// elements).
pub fn grid_for(n: usize) -> u32 {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 16);
    blocks as u32
}

/// Threads per block for a kernel that reduces rows of `len` elements with one block per
/// row: a multiple of 32 between 32 and 1024, about `len` / 4.
pub fn row_block(len: usize) -> u32 {
    let want = len.div_ceil(4).next_power_of_two().clamp(32, 1024);
    want as u32
}

/// `axis` (possibly negative) as an index into `rank` axes.
pub fn norm_axis(axis: i64, rank: usize, op: &str) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(invalid(
            op,
            format!("axis {axis} is out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

/// (outer, len, inner) of `shape` around `axis`.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_and_broadcast() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<i64>::new());
        assert_eq!(
            broadcast_shapes(&[&[2, 1, 4], &[3, 1]]),
            Some(vec![2, 3, 4])
        );
        assert_eq!(broadcast_shapes(&[&[2, 3], &[4, 3]]), None);
        assert_eq!(broadcast_shapes(&[&[], &[5]]), Some(vec![5]));
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]), Some(vec![0, 1, 0]));
        assert_eq!(
            broadcast_strides(&[2, 3, 4], &[2, 3, 4]),
            Some(vec![12, 4, 1])
        );
        assert_eq!(broadcast_strides(&[], &[2, 2]), Some(vec![0, 0]));
        assert_eq!(broadcast_strides(&[3], &[2, 4]), None);
        assert_eq!(broadcast_strides(&[1, 2, 3], &[2, 3]), None);
    }

    #[test]
    fn collapse_merges_contiguous_axes() {
        let shape = [2, 3, 4];
        let a = contiguous_strides(&shape);
        let (s, st) = collapse(&shape, &[a.clone(), a]);
        assert_eq!(s, vec![24]);
        assert_eq!(st, vec![vec![1], vec![1]]);
        // a bias over the last axis: [2,3,4] + [4]
        let b = broadcast_strides(&[4], &shape).unwrap();
        let (s, st) = collapse(&shape, &[contiguous_strides(&shape), b]);
        assert_eq!(s, vec![6, 4]);
        assert_eq!(st, vec![vec![4, 1], vec![0, 1]]);
        // per-channel [1,3,1] over [2,3,4]
        let c = broadcast_strides(&[1, 3, 1], &shape).unwrap();
        let (s, st) = collapse(&shape, &[contiguous_strides(&shape), c]);
        assert_eq!(s, vec![2, 3, 4]);
        assert_eq!(st[1], vec![0, 1, 0]);
        // size-1 axes vanish; all-ones is a scalar
        let (s, _) = collapse(&[1, 1], &[vec![1, 1]]);
        assert!(s.is_empty());
        // a transpose does not merge
        let (s, st) = collapse(&[3, 4], &[vec![1, 3]]);
        assert_eq!(s, vec![3, 4]);
        assert_eq!(st, vec![vec![1, 3]]);
    }

    #[test]
    fn dims_and_launch_sizes() {
        let d = Dims::shape(&[2, 3], "t").unwrap();
        assert_eq!(&d.v[..3], &[2, 3, 1]);
        let s = Dims::strides(&[3, -1], "t").unwrap();
        assert_eq!(&s.v[..3], &[3, -1, 0]);
        assert!(Dims::shape(&[1; 9], "t").is_err());
        assert_eq!(grid_for(0), 1);
        assert_eq!(grid_for(257), 2);
        assert_eq!(grid_for(usize::MAX / 2), 1 << 16);
        assert_eq!(row_block(1), 32);
        assert_eq!(row_block(768), 256);
        assert_eq!(row_block(1 << 20), 1024);
        assert_eq!(norm_axis(-1, 3, "t").unwrap(), 2);
        assert!(norm_axis(3, 3, "t").is_err());
        assert_eq!(split_at_axis(&[2, 3, 4, 5], 1), (2, 3, 20));
        assert!(numel(&[usize::MAX, 2], "t").is_err());
        assert_eq!(numel(&[], "t").unwrap(), 1);
    }
}
