//! Launch of kiln's AddLayerNorm (made by `builder::rewrite::layer_norm`): inputs
//! `(A, B, Scale, Bias?)`, outputs `(Y, Sum?)`, LayerNormalization's `axis` and `epsilon`.
//! `Y = LayerNorm(A + B)`, the sum rounded to the element type as the separate Add stored it;
//! `Sum` (when the step has it) receives `A + B`. `B` has `A`'s shape or holds one row.

use kiln_core::{DataType, DevicePtr};
use kiln_onnx::Node;

use super::super::exec::Run;
use super::super::ops::node_err;
use crate::builder::lower::{Program, Step};
use crate::builder::rewrite::layer_norm::is_row;
use crate::error::Result;
use crate::kernels::nvrtc::layout::norm_axis;
use crate::kernels::nvrtc::library::ModuleSpec;
use crate::kernels::nvrtc::norm::{self, AddLayerNormIo};

/// Rows and lengths of one AddLayerNorm step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub rows: usize,
    pub cols: usize,
    /// `B` has `A`'s shape (else it is one row of `cols`).
    pub b_full: bool,
    pub scale_len: usize,
    /// 0 without a bias.
    pub bias_len: usize,
}

/// The geometry of `A` (`a`) normalised from `axis` on, with addend `b`, `scale` and `bias`
/// dims; `Err` names what does not fit.
pub(crate) fn geometry(
    a: &[usize],
    b: &[usize],
    scale: &[usize],
    bias: Option<&[usize]>,
    axis: i64,
) -> std::result::Result<Geometry, String> {
    let ax = norm_axis(axis, a.len(), "AddLayerNorm").map_err(|e| e.to_string())?;
    let rows: usize = a[..ax].iter().product();
    let cols: usize = a[ax..].iter().product();
    let n = |d: &[usize]| d.iter().product::<usize>();
    let b_full = b == a;
    if !b_full && !is_row(a, ax, b) {
        return Err(format!(
            "B {b:?} neither has A's shape {a:?} nor holds one row of it"
        ));
    }
    Ok(Geometry {
        rows,
        cols,
        b_full,
        scale_len: n(scale),
        bias_len: bias.map_or(0, n),
    })
}

pub(crate) fn run(r: &Run<'_>, step: &Step, node: &Node) -> Result<()> {
    let tensors = &r.prep.program.tensors;
    let input = |i: usize| -> Result<usize> {
        step.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| node_err(node, format!("input {i} is missing")))
    };
    let (a, b, sc) = (input(0)?, input(1)?, input(2)?);
    let bias = step.inputs.get(3).copied().flatten();
    let y = *step
        .outputs
        .first()
        .ok_or_else(|| node_err(node, "output 0 is missing"))?;
    let sum = step.outputs.get(1).copied();
    let dt = tensors[a].dtype;
    let mut same = vec![b, sc, y];
    same.extend(bias);
    same.extend(sum);
    if let Some(&o) = same.iter().find(|&&o| tensors[o].dtype != dt) {
        return Err(node_err(
            node,
            format!(
                "'{}' is {}, A is {dt}: the kernel takes one element type",
                tensors[o].name, tensors[o].dtype
            ),
        ));
    }
    let axis = node
        .attr_int("axis")
        .map_err(|e| node_err(node, e))?
        .unwrap_or(-1);
    let eps = node
        .attr_float("epsilon")
        .map_err(|e| node_err(node, e))?
        .unwrap_or(1e-5);
    let g = geometry(
        &tensors[a].dims,
        &tensors[b].dims,
        &tensors[sc].dims,
        bias.map(|i| tensors[i].dims.as_slice()),
        axis,
    )
    .map_err(|e| node_err(node, e))?;
    let io = AddLayerNormIo {
        a: r.ptr(a)?,
        b: r.ptr(b)?,
        b_full: g.b_full,
        scale: r.ptr(sc)?,
        bias: bias.map_or(Ok(DevicePtr(0)), |i| r.ptr(i))?,
        y: r.ptr(y)?,
        sum: sum.map_or(Ok(DevicePtr(0)), |i| r.ptr(i))?,
    };
    norm::add_layer_norm(
        &r.engine.kernels,
        r.stream,
        dt,
        g.rows,
        g.cols,
        (g.scale_len, g.bias_len),
        eps,
        io,
    )
    .map_err(|e| node_err(node, e))
}

pub fn modules(step: &Step, p: &Program, node: &Node) -> Result<Vec<ModuleSpec>> {
    let dt = step
        .inputs
        .first()
        .copied()
        .flatten()
        .map_or(DataType::F32, |a| p.tensors[a].dtype);
    Ok(vec![norm::module(dt).map_err(|e| node_err(node, e))?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometries() {
        let g = geometry(&[2, 3, 8], &[2, 3, 8], &[8], Some(&[8]), -1).unwrap();
        assert_eq!(
            g,
            Geometry {
                rows: 6,
                cols: 8,
                b_full: true,
                scale_len: 8,
                bias_len: 8
            }
        );
        let g = geometry(&[2, 3, 8], &[1, 8], &[8], None, 2).unwrap();
        assert!(!g.b_full && g.bias_len == 0 && g.rows == 6);
        assert!(!geometry(&[2, 3, 8], &[8], &[8], None, -1).unwrap().b_full);
        // over two axes: one row is [3, 8]
        let g = geometry(&[2, 3, 8], &[3, 8], &[3, 8], None, 1).unwrap();
        assert_eq!((g.rows, g.cols, g.b_full), (2, 24, false));
        for bad in [&[3, 1][..], &[2, 1, 8], &[1, 2, 3, 8], &[4]] {
            assert!(
                geometry(&[2, 3, 8], bad, &[8], None, -1).is_err(),
                "{bad:?}"
            );
        }
        assert!(geometry(&[2, 3, 8], &[2, 3, 8], &[8], None, 3).is_err());
    }
}
