//! `kiln bench`'s machinery: the measurement schedule shared by the GPU and CPU paths, input
//! shapes and random inputs, statistics ([`stats`]), the report and its warnings ([`report`]),
//! the plot ([`plot`]), the GPU timing loop ([`gpu`]) and the CPU one ([`host`]).
//!
//! What works where: everything but [`gpu`] is host code and tested on any machine (the CPU
//! path benches kiln's reference interpreter through `execute_host`). [`gpu`] needs a CUDA
//! device; it compiles everywhere but runs only on the GPU machine.
//!
//! # Schedule
//! Each stream (one thread each, with its own execution context) runs warm-up iterations for
//! `--warmup`, then measured iterations until both `--duration` has passed and it has done its
//! share of `--iterations` (`ceil(iterations / streams)`). The measured window runs from the
//! first measured iteration's start to the last one's end over all streams; throughput is the
//! measured iterations (queries) over that window. With one stream, iterations are serialised
//! (each waits for its outputs), so host latency is the latency one query sees; `--streams N`
//! overlaps N of them for throughput.
//!
//! # JSON schema (`--export-json`)
//! One object; times in milliseconds unless the name says `_s`. A *summary* is
//! `{"min", "mean", "median", "p90", "p95", "p99", "max"}` (numbers; percentiles by nearest
//! rank). Fields:
//! - `model` (string: the path given), `backend` (`"kiln"` or `"cpu"`), `device` (GPU name or
//!   `"cpu"`), `precision` (`"fp32"`, `"fp16"`, ...), `batch` (items per query: the leading
//!   dim of the first input), `input_shapes` (`{name: [dims]}`), `streams`, `cuda_graph` (runs
//!   replayed CUDA graphs), `transfers` (copies timed in each iteration), `warmup_ms`,
//!   `duration_ms`, `min_iterations`;
//! - `queries` (measured iterations, all streams), `walltime_s` (the measured window),
//!   `gpu_compute_total_s` (sum of GPU compute times; `null` on the CPU),
//!   `throughput_qps`, `throughput_items_per_s` (= qps × batch);
//! - `host_latency_ms` (summary; wall time of an iteration: H2D + compute + D2H + sync),
//!   `enqueue_ms` (summary of the enqueue call's host time), `h2d_ms`, `gpu_compute_ms`,
//!   `d2h_ms` (summaries from CUDA events) — each `null` when not measured (CPU backend;
//!   `h2d_ms`/`d2h_ms` with `--no-transfers`);
//! - `gpu_compute_cv`, `host_latency_cv` (coefficient of variation, 0.025 = 2.5 %, or `null`);
//! - `warnings`: `[{"kind": "enqueue_bound" | "transfer_bound" | "unstable", "message"}]`;
//! - `notes`: strings printed under the summary;
//! - `profile` (`null` without `--dump-profile`): `{"total_ms", "steps": [{"index", "name",
//!   "op", "kernel", "ms", "share"}], "by_op": [{"op", "count", "ms", "share"}]}` (shares
//!   0..1 of the summed step time);
//! - `samples`: the raw per-iteration series `{"host_latency_ms", "enqueue_ms", "h2d_ms",
//!   "gpu_compute_ms", "d2h_ms"}` (arrays; empty when not measured).

pub mod gpu;
pub mod host;
pub mod plot;
pub mod report;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kiln_core::{DataType, Dim, HostTensor, OptimizationProfile, TensorSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use report::{ProfileReport, Samples};

/// How long and how often to run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub warmup: Duration,
    pub duration: Duration,
    /// Measured iterations at least, all streams together.
    pub iterations: usize,
    pub streams: usize,
}

impl Schedule {
    /// Measured iterations each stream does at least.
    fn per_stream(&self) -> usize {
        self.iterations.div_ceil(self.streams.max(1))
    }
}

/// One iteration's timings (ms); `None` for what the path does not measure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub host_ms: f64,
    pub enqueue_ms: Option<f64>,
    pub h2d_ms: Option<f64>,
    pub compute_ms: Option<f64>,
    pub d2h_ms: Option<f64>,
}

/// What a lane reports after its last measured iteration.
#[derive(Debug, Default)]
pub struct LaneEnd {
    pub profile: Option<ProfileReport>,
    /// Whether the lane's runs replayed CUDA graphs.
    pub cuda_graph: bool,
    /// Lines for the report's notes.
    pub notes: Vec<String>,
}

/// One stream's worth of work: an execution context with its buffers.
pub trait Lane {
    /// One iteration, returning once its results are on the host (or on the device with
    /// `--no-transfers`).
    fn step(&mut self) -> Result<Sample>;
    /// Called once after measuring, on lane 0 with `profile` set when asked for.
    fn finish(&mut self, profile: bool) -> Result<LaneEnd>;
}

/// The samples of every lane and the measured window.
#[derive(Debug, Default)]
pub struct Measured {
    pub samples: Samples,
    pub walltime_s: f64,
    pub end: LaneEnd,
}

struct LaneRun {
    samples: Vec<Sample>,
    first: Instant,
    last: Instant,
    end: Option<LaneEnd>,
}

/// Runs `sched.streams` lanes, each made by `make(i)` in its own thread, through the warm-up
/// and the measured window (see the module doc). Every lane is set up before any starts
/// warming up, so set-up time never enters the window, and lane 0's [`Lane::finish`] (the
/// profiled run) waits until every lane has stopped measuring.
pub fn drive<L, M>(sched: &Schedule, profile: bool, make: M) -> Result<Measured>
where
    L: Lane,
    M: Fn(usize) -> Result<L> + Sync,
{
    let n = sched.streams.max(1);
    let ready = std::sync::Barrier::new(n);
    let done = std::sync::Barrier::new(n);
    let results: Vec<Result<LaneRun>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (make, ready, done) = (&make, &ready, &done);
                scope.spawn(move || -> Result<LaneRun> {
                    // Every thread passes both barriers whatever fails, so none waits forever.
                    let lane = make(i).with_context(|| format!("setting up stream {i}"));
                    ready.wait();
                    let measured = lane.and_then(|mut lane| {
                        let run = measure(&mut lane, sched).with_context(|| format!("stream {i}"));
                        run.map(|r| (lane, r))
                    });
                    done.wait();
                    let (mut lane, mut run) = measured?;
                    if i == 0 {
                        run.end = Some(lane.finish(profile).context("after measuring")?);
                    }
                    Ok(run)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a bench thread panicked")))
            })
            .collect()
    });
    let mut runs = Vec::new();
    for r in results {
        runs.push(r?);
    }
    let first = runs.iter().map(|r| r.first).min();
    let last = runs.iter().map(|r| r.last).max();
    let walltime_s = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => bail!("no iteration was measured"),
    };
    let mut samples = Samples::default();
    let mut end = LaneEnd::default();
    for r in runs {
        for s in &r.samples {
            samples.host_latency_ms.push(s.host_ms);
            let put = |v: Option<f64>, to: &mut Vec<f64>| to.extend(v);
            put(s.enqueue_ms, &mut samples.enqueue_ms);
            put(s.h2d_ms, &mut samples.h2d_ms);
            put(s.compute_ms, &mut samples.gpu_compute_ms);
            put(s.d2h_ms, &mut samples.d2h_ms);
        }
        if let Some(e) = r.end {
            end = e;
        }
    }
    Ok(Measured {
        samples,
        walltime_s,
        end,
    })
}

/// The warm-up and the measured iterations of one lane.
fn measure<L: Lane>(lane: &mut L, sched: &Schedule) -> Result<LaneRun> {
    let start = Instant::now();
    let warm_until = start + sched.warmup;
    // Two warm-up runs at least: with CUDA graphs the second one is the capture.
    let mut warm = 0;
    while warm < 2 || Instant::now() < warm_until {
        lane.step().context("warm-up run")?;
        warm += 1;
    }
    let stop = Instant::now() + sched.duration;
    let need = sched.per_stream().max(1);
    let mut samples = Vec::with_capacity(need);
    let first = Instant::now();
    loop {
        samples.push(lane.step()?);
        if samples.len() >= need && Instant::now() >= stop {
            break;
        }
    }
    Ok(LaneRun {
        samples,
        first,
        last: Instant::now(),
        end: None,
    })
}

/// The input shapes to bench: `--shapes` first, then `--batch` for a leading dim the model
/// leaves free, then the engine's profile (`opt`), then 1 for any other free dim (said on
/// stderr).
pub fn input_shapes(
    inputs: &[TensorSpec],
    profiles: &[OptimizationProfile],
    batch: Option<usize>,
    given: &HashMap<String, Vec<usize>>,
) -> Result<Vec<(String, Vec<usize>)>> {
    for name in given.keys() {
        if !inputs.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = inputs.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "--shapes names '{name}', which is not an input of the model; its inputs are: {}",
                known.join(", ")
            );
        }
    }
    let mut out = Vec::new();
    for spec in inputs {
        if let Some(d) = given.get(&spec.name) {
            out.push((spec.name.clone(), d.clone()));
            continue;
        }
        let opt = profiles
            .iter()
            .find_map(|p| p.inputs.iter().find(|i| i.name == spec.name))
            .map(|i| &i.opt);
        let mut dims = Vec::with_capacity(spec.shape.rank());
        for (i, d) in spec.shape.dims().iter().enumerate() {
            let v = match (d, batch, opt) {
                (Dim::Known(n), _, _) => *n,
                (_, Some(b), _) if i == 0 => b,
                (_, _, Some(o)) if o.len() == spec.shape.rank() => o[i],
                (Dim::Symbol(s), _, _) => {
                    eprintln!(
                        "note: input '{}' dim '{s}' set to 1 (use --shapes {}:DIMS or --batch)",
                        spec.name, spec.name
                    );
                    1
                }
                (Dim::Unknown, _, _) => bail!(
                    "input '{}' has an unknown dim {i}: give its shape with --shapes {}:DIMS",
                    spec.name,
                    spec.name
                ),
            };
            dims.push(v);
        }
        out.push((spec.name.clone(), dims));
    }
    Ok(out)
}

/// Items per query: the leading dim of the first input (1 for a scalar or no input).
pub fn batch_of(shapes: &[(String, Vec<usize>)]) -> usize {
    shapes
        .first()
        .and_then(|(_, d)| d.first().copied())
        .unwrap_or(1)
}

/// Seeded random host inputs: floats uniform in [-1, 1), integers in {0, 1} (valid token ids
/// and masks for the models kiln benches), bools fair coins. Never all zeros for floats.
pub fn random_inputs(
    inputs: &[TensorSpec],
    shapes: &[(String, Vec<usize>)],
    seed: u64,
) -> Result<Vec<HostTensor>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (spec, (name, dims)) in inputs.iter().zip(shapes) {
        let n = kiln_core::checked_element_count(dims)
            .with_context(|| format!("input '{name}': shape {dims:?} is too large"))?;
        let mut data = Vec::with_capacity(n.saturating_mul(spec.dtype.size_in_bytes()));
        for _ in 0..n {
            let f: f32 = rng.random_range(-1.0..1.0);
            let bit: u8 = rng.random_range(0..2);
            match spec.dtype {
                DataType::F32 => data.extend_from_slice(&f.to_le_bytes()),
                DataType::F64 => data.extend_from_slice(&f64::from(f).to_le_bytes()),
                DataType::F16 => data.extend_from_slice(&half::f16::from_f32(f).to_le_bytes()),
                DataType::BF16 => data.extend_from_slice(&half::bf16::from_f32(f).to_le_bytes()),
                DataType::I64 => data.extend_from_slice(&i64::from(bit).to_le_bytes()),
                DataType::I32 => data.extend_from_slice(&i32::from(bit).to_le_bytes()),
                DataType::I16 => data.extend_from_slice(&i16::from(bit).to_le_bytes()),
                DataType::U64 => data.extend_from_slice(&u64::from(bit).to_le_bytes()),
                DataType::U32 => data.extend_from_slice(&u32::from(bit).to_le_bytes()),
                DataType::U16 => data.extend_from_slice(&u16::from(bit).to_le_bytes()),
                DataType::I8 | DataType::U8 | DataType::Bool => data.push(bit),
            }
        }
        out.push(HostTensor {
            name: name.clone(),
            dtype: spec.dtype,
            dims: dims.clone(),
            data,
        });
    }
    Ok(out)
}

/// `BTreeMap` of the shapes for the report.
pub fn shape_map(shapes: &[(String, Vec<usize>)]) -> BTreeMap<String, Vec<usize>> {
    shapes.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::{ProfileInput, Shape};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn spec(name: &str, dims: Vec<Dim>, dtype: DataType) -> TensorSpec {
        TensorSpec::new(name, dtype, Shape::new(dims))
    }

    #[test]
    fn shapes_from_flags_profile_and_defaults() {
        let inputs = vec![
            spec(
                "x",
                vec![Dim::symbol("n"), Dim::Known(3), Dim::symbol("h")],
                DataType::F32,
            ),
            spec(
                "ids",
                vec![Dim::symbol("n"), Dim::symbol("s")],
                DataType::I64,
            ),
        ];
        let profiles = vec![OptimizationProfile {
            inputs: vec![ProfileInput {
                name: "ids".into(),
                min: vec![1, 1],
                opt: vec![4, 64],
                max: vec![8, 128],
            }],
        }];
        let none = HashMap::new();
        let s = input_shapes(&inputs, &profiles, Some(16), &none).unwrap();
        assert_eq!(s[0], ("x".into(), vec![16, 3, 1]));
        assert_eq!(s[1], ("ids".into(), vec![16, 64]));
        assert_eq!(batch_of(&s), 16);
        let s = input_shapes(&inputs, &profiles, None, &none).unwrap();
        assert_eq!(s[1].1, vec![4, 64]);
        let given = HashMap::from([("x".to_string(), vec![2, 3, 5])]);
        let s = input_shapes(&inputs, &profiles, None, &given).unwrap();
        assert_eq!(s[0].1, vec![2, 3, 5]);
        let bad = HashMap::from([("nope".to_string(), vec![1])]);
        let e = input_shapes(&inputs, &profiles, None, &bad).unwrap_err();
        assert!(e.to_string().contains("'nope'") && e.to_string().contains("x, ids"));
    }

    #[test]
    fn random_inputs_have_the_right_sizes_and_are_not_zero() {
        let inputs = vec![
            spec("a", vec![Dim::Known(2), Dim::Known(3)], DataType::F32),
            spec("b", vec![Dim::Known(5)], DataType::I64),
            spec("c", vec![Dim::Known(7)], DataType::F16),
        ];
        let shapes = vec![
            ("a".to_string(), vec![2, 3]),
            ("b".to_string(), vec![5]),
            ("c".to_string(), vec![7]),
        ];
        let t = random_inputs(&inputs, &shapes, 5).unwrap();
        assert_eq!(t[0].data.len(), 24);
        assert_eq!(t[1].data.len(), 40);
        assert_eq!(t[2].data.len(), 14);
        let a = t[0].as_slice::<f32>().unwrap();
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)) && a.iter().any(|v| *v != 0.0));
        assert!(
            t[1].as_slice::<i64>()
                .unwrap()
                .iter()
                .all(|v| *v == 0 || *v == 1)
        );
        assert_ne!(random_inputs(&inputs, &shapes, 6).unwrap()[0], t[0]);
    }

    /// A lane that sleeps a little and counts its runs.
    struct Sleepy<'a> {
        runs: &'a AtomicUsize,
        /// Runs counted when `finish` was called.
        at_finish: &'a AtomicUsize,
        ms: u64,
    }

    impl Lane for Sleepy<'_> {
        fn step(&mut self) -> Result<Sample> {
            let t = Instant::now();
            std::thread::sleep(Duration::from_millis(self.ms));
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok(Sample {
                host_ms: t.elapsed().as_secs_f64() * 1e3,
                compute_ms: Some(self.ms as f64),
                ..Sample::default()
            })
        }
        fn finish(&mut self, profile: bool) -> Result<LaneEnd> {
            std::thread::sleep(Duration::from_millis(5));
            self.at_finish
                .store(self.runs.load(Ordering::SeqCst), Ordering::SeqCst);
            Ok(LaneEnd {
                profile: profile.then(|| ProfileReport::new(1.0, vec![])),
                ..LaneEnd::default()
            })
        }
    }

    #[test]
    fn drive_meets_duration_and_iterations_over_streams() {
        let (runs, at_finish) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let sched = Schedule {
            warmup: Duration::from_millis(10),
            duration: Duration::from_millis(30),
            iterations: 25,
            streams: 3,
        };
        let m = drive(&sched, true, |_| {
            Ok(Sleepy {
                runs: &runs,
                at_finish: &at_finish,
                ms: 2,
            })
        })
        .unwrap();
        let measured = m.samples.host_latency_ms.len();
        // Each stream does ceil(25 / 3) = 9 at least, and runs for 30 ms at least.
        assert!(measured >= 27, "{measured}");
        assert!(m.walltime_s >= 0.030, "{}", m.walltime_s);
        assert!(runs.load(Ordering::SeqCst) >= measured + 6);
        assert_eq!(m.samples.gpu_compute_ms.len(), measured);
        assert!(m.samples.enqueue_ms.is_empty());
        assert!(m.end.profile.is_some());
        // The profile (lane 0's finish) came after every lane stopped.
        assert_eq!(
            at_finish.load(Ordering::SeqCst),
            runs.load(Ordering::SeqCst)
        );
        // A lane that cannot be set up fails the run, naming the stream, without hanging.
        let e = drive(&sched, false, |i| {
            if i == 1 {
                bail!("no memory")
            }
            Ok(Sleepy {
                runs: &runs,
                at_finish: &at_finish,
                ms: 1,
            })
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("stream 1"), "{e:#}");
    }
}
