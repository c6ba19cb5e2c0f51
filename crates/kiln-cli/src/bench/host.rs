//! The CPU path: one execution context per stream over any [`kiln_core::Engine`], each
//! iteration one synchronous `execute_host` call. Only host latency is measured (no enqueue,
//! copies or GPU compute exist here). Works on any machine; this is what CI runs.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use kiln_core::{Engine, ExecutionContext, HostTensor};

use super::{Lane, LaneEnd, Measured, Sample, Schedule, drive};

/// One stream of the CPU path.
struct HostLane<'a> {
    ctx: Box<dyn ExecutionContext>,
    inputs: &'a [HostTensor],
}

impl Lane for HostLane<'_> {
    fn step(&mut self) -> Result<Sample> {
        let t = Instant::now();
        let out = self.ctx.execute_host(self.inputs)?;
        let host_ms = t.elapsed().as_secs_f64() * 1e3;
        // Keep the outputs alive until the clock stopped (dropping them is not the model's time).
        drop(out);
        Ok(Sample {
            host_ms,
            ..Sample::default()
        })
    }

    fn finish(&mut self, _profile: bool) -> Result<LaneEnd> {
        Ok(LaneEnd::default())
    }
}

/// Benches `engine` on `inputs` through `execute_host` on `sched.streams` threads.
pub fn run(engine: &Arc<dyn Engine>, inputs: &[HostTensor], sched: &Schedule) -> Result<Measured> {
    drive(sched, false, |_| {
        let ctx = engine
            .clone()
            .create_context()
            .context("creating an execution context")?;
        Ok(HostLane { ctx, inputs })
    })
}
