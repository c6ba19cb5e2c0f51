//! A tiny NVRTC-compiled kernel, `y = a*x + b`, used by the GPU tests and the bench to check
//! launches, graph replay and copy/compute overlap.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, LaunchConfig};
use cudarc::nvrtc::Ptx;

use crate::device::Device;
use crate::error::{CudaError, DriverContext, Result};
use crate::ffi::{self, KernelArg};
use crate::memory::DeviceMemory;
use crate::probe::{self, Library};
use crate::stream::Stream;

const NAME: &str = "kiln_axpb";
const SOURCE: &str = r#"
extern "C" __global__ void kiln_axpb(float *y, const float *x, float a, float b, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i] + b;
    }
}
"#;

/// `y[i] = a * x[i] + b` on `f32`, compiled for the device at hand. Built without FMA
/// contraction, so it matches the CPU's `a * x + b` bit for bit.
#[derive(Debug, Clone)]
pub struct AxpbKernel {
    func: CudaFunction,
    /// "cubin sm_XY" or "ptx compute_XY": how it was built.
    pub built_as: String,
}

impl AxpbKernel {
    /// Compiles with NVRTC: a CUBIN for the device's exact architecture (no PTX JIT, so a
    /// driver older than NVRTC is fine); PTX if NVRTC does not know the architecture.
    pub fn compile(device: &Arc<Device>) -> Result<AxpbKernel> {
        probe::ensure(Library::Nvrtc)?;
        let (maj, min) = device.info().compute_capability;
        let opts = |arch: String| vec![format!("--gpu-architecture={arch}"), "--fmad=false".into()];
        let cubin_arch = format!("sm_{maj}{min}");
        let (image, built_as) =
            match ffi::nvrtc_compile(SOURCE, NAME, &opts(cubin_arch.clone()), true) {
                Ok(bin) => (Ptx::from_binary(bin), format!("cubin {cubin_arch}")),
                Err(cubin_err) => {
                    tracing::debug!(%cubin_err, "CUBIN compile failed; trying PTX");
                    let arch = format!("compute_{maj}{min}");
                    let ptx = ffi::nvrtc_compile(SOURCE, NAME, &opts(arch.clone()), false)
                        .map_err(|log| CudaError::Compile {
                            kernel: NAME.into(),
                            log: format!("{log} (CUBIN attempt: {cubin_err})"),
                        })?;
                    let text = String::from_utf8_lossy(&ptx).into_owned();
                    (Ptx::from_src(text), format!("ptx {arch}"))
                }
            };
        let module = device
            .cuda_context()
            .load_module(image)
            .op("cuModuleLoadData")?;
        let func = module.load_function(NAME).op("cuModuleGetFunction")?;
        Ok(AxpbKernel { func, built_as })
    }

    /// Queues `y[..n] = a * x[..n] + b` on `stream`; `n` is checked against both buffers.
    pub fn launch(
        &self,
        stream: &Stream,
        x: &impl DeviceMemory,
        y: &mut impl DeviceMemory,
        a: f32,
        b: f32,
        n: usize,
    ) -> Result<()> {
        let need = n.saturating_mul(4);
        if need > x.byte_len() || need > y.byte_len() {
            return Err(CudaError::SizeMismatch {
                what: "axpb elements vs buffers",
                left: need,
                right: x.byte_len().min(y.byte_len()),
            });
        }
        let n32 = u32::try_from(n)
            .map_err(|_| CudaError::Invalid(format!("axpb: {n} elements exceed u32")))?;
        if n32 == 0 {
            return Ok(());
        }
        let args = [
            KernelArg::Ptr(y.device_ptr()),
            KernelArg::Ptr(x.device_ptr()),
            KernelArg::F32(a),
            KernelArg::F32(b),
            KernelArg::U32(n32),
        ];
        ffi::launch(
            stream.cuda_stream(),
            &self.func,
            LaunchConfig::for_num_elems(n32),
            &args,
        )
        .op("cuLaunchKernel")
    }
}
