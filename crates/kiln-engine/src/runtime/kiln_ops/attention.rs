//! Launch of the fused attention (`builder::rewrite::attention`): the node's permutations and
//! the step's tensor dims give the kernel's strides; the tensor-core kernel (stage 2) runs
//! when it takes the call (f16/bf16, sm_80+, D contiguous, 16-byte aligned addresses),
//! otherwise the CUDA-core kernel (stage 1). `KILN_ATTENTION_STAGE=1` in the environment
//! (read once per process) forces stage 1, to compare the two.

use std::sync::OnceLock;

use kiln_core::DataType;
use kiln_onnx::Node;

use super::super::exec::Run;
use super::super::ops::node_err;
use crate::builder::lower::{Program, Step};
use crate::builder::rewrite::attention::{
    ATTR_K_PERM, ATTR_O_PERM, ATTR_Q_PERM, ATTR_SCALE, ATTR_V_PERM,
};
use crate::error::Result;
use crate::kernels::nvrtc::attention::{self as kernel, Geometry, Operand, Pointers, Stage};
use crate::kernels::nvrtc::library::ModuleSpec;

/// The environment variable that forces the CUDA-core kernel when set to `1`.
pub const STAGE_ENV: &str = "KILN_ATTENTION_STAGE";

fn forced_simt() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var(STAGE_ENV).is_ok_and(|v| v.trim() == "1"))
}

/// The kernel for a call: stage 2 when the device, type, strides and addresses allow it.
pub fn choose_stage(
    compute_capability: (u32, u32),
    dtype: DataType,
    g: &Geometry,
    p: &Pointers,
    force_simt: bool,
) -> Stage {
    if !force_simt && compute_capability >= (8, 0) && kernel::mma_fits(dtype, g) && p.aligned16() {
        Stage::Mma
    } else {
        Stage::Simt
    }
}

fn perm(node: &Node, name: &str) -> Result<[usize; 4]> {
    let v = node
        .attr_ints(name)
        .map_err(|e| node_err(node, e))?
        .ok_or_else(|| node_err(node, format!("attribute {name} is missing")))?;
    let p: Vec<usize> = v.iter().filter_map(|&x| usize::try_from(x).ok()).collect();
    <[usize; 4]>::try_from(p)
        .map_err(|_| node_err(node, format!("attribute {name} {v:?} is not 4 axes")))
}

/// The geometry and element type of a step.
fn step_geometry(step: &Step, p: &Program, node: &Node) -> Result<(DataType, Geometry)> {
    let t = |i: usize| -> Result<usize> {
        step.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| node_err(node, format!("input {i} is missing")))
    };
    let (q, k, v) = (t(0)?, t(1)?, t(2)?);
    let mask = step.inputs.get(3).copied().flatten();
    let o = *step
        .outputs
        .first()
        .ok_or_else(|| node_err(node, "no output"))?;
    let dtype = p.tensors[q].dtype;
    let mut ids = vec![k, v, o];
    ids.extend(mask);
    if let Some(&bad) = ids.iter().find(|&&i| p.tensors[i].dtype != dtype) {
        return Err(node_err(
            node,
            format!(
                "tensor '{}' is {} but Q is {dtype}",
                p.tensors[bad].name, p.tensors[bad].dtype
            ),
        ));
    }
    let op = |id: usize, name: &str| -> Result<(usize, [usize; 4])> { Ok((id, perm(node, name)?)) };
    let (qp, kp, vp, opm) = (
        op(q, ATTR_Q_PERM)?,
        op(k, ATTR_K_PERM)?,
        op(v, ATTR_V_PERM)?,
        op(o, ATTR_O_PERM)?,
    );
    let operand = |(id, perm): (usize, [usize; 4])| Operand {
        dims: &p.tensors[id].dims,
        perm,
    };
    let g = kernel::geometry(
        &operand(qp),
        &operand(kp),
        &operand(vp),
        &operand(opm),
        mask.map(|m| p.tensors[m].dims.as_slice()),
    )
    .map_err(|e| node_err(node, e))?;
    Ok((dtype, g))
}

pub(crate) fn run(r: &Run<'_>, step: &Step, node: &Node) -> Result<()> {
    let (dtype, g) = step_geometry(step, &r.prep.program, node)?;
    let scale = node
        .attr_float(ATTR_SCALE)
        .map_err(|e| node_err(node, e))?
        .unwrap_or(1.0);
    let ptr = |i: usize| -> Result<crate::kernels::nvrtc::DevicePtr> {
        match step.inputs.get(i).copied().flatten() {
            Some(id) => r.ptr(id),
            None => Err(node_err(node, format!("input {i} is missing"))),
        }
    };
    let o = *step
        .outputs
        .first()
        .ok_or_else(|| node_err(node, "no output"))?;
    let p = Pointers {
        q: ptr(0)?,
        k: ptr(1)?,
        v: ptr(2)?,
        mask: match step.inputs.get(3).copied().flatten() {
            Some(id) => Some(r.ptr(id)?),
            None => None,
        },
        o: r.ptr(o)?,
    };
    let cc = r.engine.device.info().compute_capability;
    let stage = choose_stage(cc, dtype, &g, &p, forced_simt());
    kernel::attention(&r.engine.kernels, r.stream, dtype, &g, &p, scale, stage)
        .map_err(|e| node_err(node, e))
}

pub fn modules(step: &Step, p: &Program, node: &Node) -> Result<Vec<ModuleSpec>> {
    let (dtype, g) = step_geometry(step, p, node)?;
    Ok(vec![
        kernel::module(dtype, g.d).map_err(|e| node_err(node, e))?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::nvrtc::DevicePtr;

    #[test]
    fn stage_choice() {
        let x = [2usize, 7, 3, 64];
        let bert = Operand {
            dims: &x,
            perm: [0, 2, 1, 3],
        };
        let g = kernel::geometry(&bert, &bert, &bert, &bert, None).unwrap();
        let p = Pointers {
            q: DevicePtr(0x1000),
            k: DevicePtr(0x2000),
            v: DevicePtr(0x3000),
            mask: None,
            o: DevicePtr(0x4000),
        };
        assert_eq!(
            choose_stage((9, 0), DataType::F16, &g, &p, false),
            Stage::Mma
        );
        assert_eq!(
            choose_stage((8, 0), DataType::BF16, &g, &p, false),
            Stage::Mma
        );
        assert_eq!(
            choose_stage((9, 0), DataType::F16, &g, &p, true),
            Stage::Simt
        );
        assert_eq!(
            choose_stage((7, 5), DataType::F16, &g, &p, false),
            Stage::Simt
        );
        assert_eq!(
            choose_stage((9, 0), DataType::F32, &g, &p, false),
            Stage::Simt
        );
        let odd = Pointers {
            k: DevicePtr(0x2008),
            ..p
        };
        assert_eq!(
            choose_stage((9, 0), DataType::F16, &g, &odd, false),
            Stage::Simt
        );
    }
}
