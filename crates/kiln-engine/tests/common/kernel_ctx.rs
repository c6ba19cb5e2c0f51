//! What the GPU kernel test binaries share (each includes this file with `#[path]`): the
//! context their tests take (device, allocator, stream, an NVRTC library without disk cache, a
//! seeded random source) and the little-endian encoding of host values.
#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::Arc;

use anyhow::Result;
use half::{bf16, f16};
use kiln_core::DataType;
use kiln_cuda::{Device, DeviceAllocator, Stream};
use kiln_engine::kernels::nvrtc::KernelLibrary;

pub struct Ctx {
    pub device: Arc<Device>,
    pub alloc: DeviceAllocator,
    pub stream: Arc<Stream>,
    pub lib: KernelLibrary,
    pub rng: RefCell<fastrand::Rng>,
}

/// Opens device 0 (printing it and NVRTC's version) with a random source seeded by `seed`.
pub fn setup(seed: u64) -> Result<Ctx> {
    let device = Device::open(0)?;
    let stream = Stream::new(&device)?;
    let lib = KernelLibrary::new(&device)?.with_cache_dir(None);
    println!(
        "device: {} (cc {:?}), NVRTC {}",
        device.info().name,
        device.info().compute_capability,
        lib.nvrtc_version().unwrap_or("?")
    );
    Ok(Ctx {
        alloc: DeviceAllocator::new(&device),
        device,
        stream,
        lib,
        rng: RefCell::new(fastrand::Rng::with_seed(seed)),
    })
}

/// `v` as little-endian `dtype` elements (floats rounded to nearest, integers truncated).
pub fn encode(dtype: DataType, v: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * dtype.size_in_bytes());
    for &x in v {
        match dtype {
            DataType::F32 => out.extend((x as f32).to_le_bytes()),
            DataType::F16 => out.extend(f16::from_f64(x).to_le_bytes()),
            DataType::BF16 => out.extend(bf16::from_f64(x).to_le_bytes()),
            DataType::I64 => out.extend((x as i64).to_le_bytes()),
            DataType::I32 => out.extend((x as i32).to_le_bytes()),
            DataType::I8 => out.extend((x as i8).to_le_bytes()),
            DataType::U8 => out.push(x as u8),
            DataType::Bool => out.push(u8::from(x != 0.0)),
            other => panic!("no encoding for {other}"),
        }
    }
    out
}

/// Little-endian `dtype` elements as f64.
pub fn decode(dtype: DataType, bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(dtype.size_in_bytes())
        .map(|c| match dtype {
            DataType::F32 => f64::from(f32::from_le_bytes(c.try_into().unwrap())),
            DataType::F16 => f16::from_le_bytes(c.try_into().unwrap()).to_f64(),
            DataType::BF16 => bf16::from_le_bytes(c.try_into().unwrap()).to_f64(),
            DataType::I64 => i64::from_le_bytes(c.try_into().unwrap()) as f64,
            DataType::I32 => f64::from(i32::from_le_bytes(c.try_into().unwrap())),
            DataType::I8 => f64::from(c[0] as i8),
            DataType::U8 | DataType::Bool => f64::from(c[0]),
            other => panic!("no decoding for {other}"),
        })
        .collect()
}
