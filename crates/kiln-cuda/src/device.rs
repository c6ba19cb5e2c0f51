//! GPUs: listing and opening by index.

use std::sync::Arc;

use cudarc::driver::{CudaContext, sys::CUdevice_attribute as Attr};
use serde::Serialize;

use crate::error::{CudaError, DriverContext, Result};
use crate::probe;

/// What kiln records about a GPU (the plan header stores name and compute capability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// Index as the driver numbers devices (after `CUDA_VISIBLE_DEVICES`).
    pub index: usize,
    pub name: String,
    /// (major, minor), e.g. (9, 0) for H100.
    pub compute_capability: (u32, u32),
    pub total_memory: usize,
    pub sm_count: u32,
    pub l2_cache_bytes: usize,
}

/// An opened GPU: its primary context and its description.
#[derive(Debug)]
pub struct Device {
    ctx: Arc<CudaContext>,
    info: DeviceInfo,
}

/// Number of visible devices (probes the driver first).
pub fn device_count() -> Result<usize> {
    Ok(probe::driver_probe()?.device_count)
}

/// Describes every visible GPU.
pub fn list_devices() -> Result<Vec<DeviceInfo>> {
    (0..device_count()?)
        .map(|i| Device::open(i).map(|d| d.info().clone()))
        .collect()
}

impl Device {
    /// Opens device `index` (retains its primary context). Probes the driver first, so a
    /// machine without CUDA gets an `Err`, never a panic.
    pub fn open(index: usize) -> Result<Arc<Device>> {
        let count = device_count()?;
        if index >= count {
            return Err(CudaError::DeviceIndex { index, count });
        }
        let ctx = CudaContext::new(index).op("cuDevicePrimaryCtxRetain")?;
        let attr = |a| ctx.attribute(a).op("cuDeviceGetAttribute");
        let info = DeviceInfo {
            index,
            name: ctx.name().op("cuDeviceGetName")?,
            compute_capability: (
                attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)? as u32,
                attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)? as u32,
            ),
            total_memory: ctx.total_mem().op("cuDeviceTotalMem")?,
            sm_count: attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32,
            l2_cache_bytes: attr(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as usize,
        };
        tracing::info!(index, name = %info.name, cc = ?info.compute_capability, "device opened");
        Ok(Arc::new(Device { ctx, info }))
    }

    /// The description.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// (free, total) device memory in bytes.
    pub fn memory_info(&self) -> Result<(usize, usize)> {
        self.ctx.bind_to_thread().op("cuCtxSetCurrent")?;
        self.ctx.mem_get_info().op("cuMemGetInfo")
    }

    /// Waits for all work on the device.
    pub fn synchronize(&self) -> Result<()> {
        self.ctx.synchronize().op("cuCtxSynchronize")
    }

    /// The cudarc context, for libraries (cuBLAS, cuDNN) that take it.
    pub fn cuda_context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
}
