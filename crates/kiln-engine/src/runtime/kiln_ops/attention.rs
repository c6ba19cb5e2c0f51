//! Launch of the fused attention (`builder::rewrite::attention`): the node's permutations and
//! the step's tensor dims give the kernel's strides; the pipelined tensor-core kernel (stage
//! 3) runs when it takes the call (f16/bf16, sm_80+, D contiguous, 16-byte aligned
//! addresses), otherwise the CUDA-core kernel (stage 1). `KILN_ATTENTION_STAGE` in the
//! environment (read once per process) picks another kernel to compare: `1` stage 1, `2` the
//! first tensor-core kernel, `3` stage 3 (the default); a tensor-core stage that does not
//! take the call falls back to stage 1.

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

/// The environment variable that picks the kernel: `1`, `2` or `3` (see the module doc).
pub const STAGE_ENV: &str = "KILN_ATTENTION_STAGE";

/// The stage a `KILN_ATTENTION_STAGE` value asks for (`None`: unset or not 1-3, the default).
pub fn parse_stage(value: Option<&str>) -> Option<Stage> {
    match value.map(str::trim) {
        Some("1") => Some(Stage::Simt),
        Some("2") => Some(Stage::Mma),
        Some("3") => Some(Stage::MmaPipelined),
        _ => None,
    }
}

fn forced_stage() -> Option<Stage> {
    static FORCED: OnceLock<Option<Stage>> = OnceLock::new();
    *FORCED.get_or_init(|| {
        let v = std::env::var(STAGE_ENV).ok();
        let s = parse_stage(v.as_deref());
        if v.is_some() {
            tracing::info!("{STAGE_ENV}={v:?}: attention stage {s:?}");
        }
        s
    })
}

/// The kernel for a call: `forced` (default stage 3) when it is the CUDA-core kernel or the
/// device, type, strides and addresses allow the tensor cores, else stage 1.
pub fn choose_stage(
    compute_capability: (u32, u32),
    dtype: DataType,
    g: &Geometry,
    p: &Pointers,
    forced: Option<Stage>,
) -> Stage {
    let want = forced.unwrap_or(Stage::MmaPipelined);
    if want.is_mma() && compute_capability >= (8, 0) && kernel::mma_fits(dtype, g) && p.aligned16()
    {
        want
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
    let stage = choose_stage(cc, dtype, &g, &p, forced_stage());
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
        let pipe = Some(Stage::MmaPipelined);
        assert_eq!(
            choose_stage((9, 0), DataType::F16, &g, &p, None),
            Stage::MmaPipelined
        );
        assert_eq!(
            choose_stage((8, 0), DataType::BF16, &g, &p, pipe),
            Stage::MmaPipelined
        );
        assert_eq!(
            choose_stage((9, 0), DataType::F16, &g, &p, Some(Stage::Mma)),
            Stage::Mma
        );
        assert_eq!(
            choose_stage((9, 0), DataType::F16, &g, &p, Some(Stage::Simt)),
            Stage::Simt
        );
        for forced in [None, Some(Stage::Mma), pipe] {
            assert_eq!(
                choose_stage((7, 5), DataType::F16, &g, &p, forced),
                Stage::Simt
            );
            assert_eq!(
                choose_stage((9, 0), DataType::F32, &g, &p, forced),
                Stage::Simt
            );
            let odd = Pointers {
                k: DevicePtr(0x2008),
                ..p
            };
            assert_eq!(
                choose_stage((9, 0), DataType::F16, &g, &odd, forced),
                Stage::Simt
            );
        }
    }

    #[test]
    fn stage_from_the_environment_value() {
        assert_eq!(parse_stage(None), None);
        assert_eq!(parse_stage(Some("1")), Some(Stage::Simt));
        assert_eq!(parse_stage(Some(" 2\n")), Some(Stage::Mma));
        assert_eq!(parse_stage(Some("3")), Some(Stage::MmaPipelined));
        assert_eq!(parse_stage(Some("4")), None);
        assert_eq!(parse_stage(Some("")), None);
    }
}
