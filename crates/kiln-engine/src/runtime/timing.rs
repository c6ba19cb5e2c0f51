//! Tactic selection by timing (the builder's optimisation level) and the timing cache file.
//!
//! Every GEMM and convolution of a build is a library description (`libs::LibDesc`) at the
//! profile's `opt` shapes. [`BuildConfig::opt_level`](crate::plan::BuildConfig) decides how
//! its tactic is chosen, as TensorRT's builder optimisation level does:
//!
//! | level | tactic |
//! | --- | --- |
//! | 0 | the libraries' heuristic first choice (no timing, no timing cache) |
//! | 1 | the faster of the heuristics' top 2 |
//! | 2 | the fastest of the top 4 |
//! | 3 (default) | the fastest of the top 8 |
//! | 4 | the fastest of the top 16 |
//! | 5 | the fastest of all: up to [`MAX_CANDIDATES`](crate::kernels::gemm::MAX_CANDIDATES) cuBLASLt algorithms, every cuDNN one |
//!
//! Candidates ([`Blas::candidates`], [`Dnn::candidates`]) are those within the workspace limit,
//! best first by the heuristics; a convolution candidate is the call `Dnn::enqueue` makes (the
//! fused bias+ReLU(+residual) call where cuDNN takes that algorithm, else the convolution and
//! its separate bias/ReLU/residual passes), so the time measured is the time the plan will
//! spend. Timing runs on a private stream over scratch device buffers sized for the
//! description and filled with small non-zero values (freed after the build): one warm-up run,
//! then [`SAMPLES`] samples between CUDA events, each sample one replay of a CUDA graph of
//! enough back-to-back runs to last about 100 µs (at most 20), so the host's cost per call
//! does not enter the time (the engine's CUDA-graph replay does not pay it either); the median
//! per run counts. A candidate whose first sample is 4×
//! slower than the best median so far is not sampled further. The pick is the fastest;
//! candidates within [`TIE`] of it count as ties and the one the heuristics ranked higher
//! wins, which keeps rebuilds stable.
//!
//! A context that meets shapes the build did not see still takes the heuristic choice (no
//! timing on the enqueue path; `prepare.rs`).
//!
//! # Timing cache
//! [`BuildConfig::timing_cache`](crate::plan::BuildConfig) names a JSON file ([`TimingCache`]):
//! entries keyed by the device ([`DeviceKey`]: GPU name, compute capability, cuBLASLt and cuDNN
//! versions), the workspace limit and the description's key (`libs::key`), holding the chosen
//! tactic, the optimisation level it was chosen at and every candidate's measured time. A
//! build reads it before timing and uses an entry of its device and limit chosen at its level
//! or higher; it writes the file back (temp file + rename) when it timed something new. A
//! rebuild with a complete cache times nothing and chooses the same tactics. An unreadable,
//! corrupt or foreign file is a warning and treated as empty (and replaced when written);
//! entries of other devices or limits are kept in the file but not used.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kiln_core::DevicePtr;
use kiln_cuda::{Device, DeviceAllocator, DeviceBuffer, DeviceMemory as _, Event, Stream};
use serde::{Deserialize, Serialize};

use super::libs::key;
use crate::error::{EngineError, Result};
use crate::kernels::conv::{ConvArgs, ConvDesc, ConvTactic, Dnn};
use crate::kernels::gemm::{Blas, GemmArgs, GemmDesc, GemmTactic, LibError, MathMode};
use crate::plan::{BuildConfig, Fingerprint};

/// The highest optimisation level.
pub const MAX_OPT_LEVEL: u8 = 5;

/// Timed samples per candidate (after one warm-up run).
pub const SAMPLES: usize = 5;

/// Relative margin within which two candidates' times count as a tie.
pub const TIE: f64 = 0.02;

/// A sample lasts at least this long (more runs per sample for short calls).
const SAMPLE_MS: f64 = 0.1;

/// Most runs in one sample.
const MAX_REPS: usize = 20;

/// A candidate whose first sample is this many times the best median is not sampled further.
const HOPELESS: f64 = 4.0;

/// How many heuristic candidates `opt_level` times (1 at level 0: the heuristic choice).
pub fn candidate_count(opt_level: u8) -> Result<usize> {
    match opt_level {
        0 => Ok(1),
        1..=4 => Ok(1 << opt_level),
        5 => Ok(usize::MAX),
        l => Err(EngineError::Config(format!(
            "optimisation level {l}: levels are 0 (heuristics only) to {MAX_OPT_LEVEL} (time \
             every candidate)"
        ))),
    }
}

/// The candidates within `limit` bytes of workspace, at most `count`, in their given order.
pub fn shortlist<T>(
    candidates: Vec<T>,
    workspace: impl Fn(&T) -> usize,
    limit: usize,
    count: usize,
) -> Vec<T> {
    candidates
        .into_iter()
        .filter(|c| workspace(c) <= limit)
        .take(count)
        .collect()
}

/// The index of the chosen candidate given each one's median time (`None`: it failed), in
/// the heuristics' order: the first whose time is within [`TIE`] of the fastest.
pub fn pick(times: &[Option<f64>]) -> Option<usize> {
    let best = times
        .iter()
        .flatten()
        .copied()
        .filter(|t| t.is_finite())
        .fold(f64::INFINITY, f64::min);
    if !best.is_finite() {
        return None;
    }
    times
        .iter()
        .position(|t| t.is_some_and(|t| t.is_finite() && t <= best * (1.0 + TIE)))
}

#[path = "timing_cache.rs"]
mod cache;
pub use cache::{CacheEntry, DeviceKey, Measured, Tactic, TimingCache};

/// How a description's tactic was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The heuristic first choice (level 0, or a single candidate).
    Heuristic,
    /// Timed now.
    Timed,
    /// Taken from the timing cache.
    Cache,
}

/// One description's choice, for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub desc: String,
    pub tactic: Tactic,
    pub source: Source,
    /// Candidates timed (0 unless `source` is `Timed`).
    pub candidates: usize,
    /// The chosen tactic's median time, when known.
    pub median_ms: Option<f64>,
}

/// What tactic selection did in one build.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TacticReport {
    pub opt_level: u8,
    pub workspace_limit: usize,
    /// Seconds spent choosing tactics (heuristics, timing, cache).
    pub seconds: f64,
    /// Descriptions timed now, taken from the cache, or taken from the heuristics.
    pub timed: usize,
    pub cache_hits: usize,
    pub heuristic: usize,
    /// Candidate runs measured (summed over descriptions).
    pub candidates_timed: usize,
    pub timing_cache: Option<PathBuf>,
    pub cache_written: bool,
    pub choices: Vec<Choice>,
}

/// Chooses the tactic of each library description.
pub(crate) trait Chooser {
    fn gemm(&mut self, d: &GemmDesc) -> Result<GemmTactic>;
    fn conv(&mut self, d: &ConvDesc) -> Result<ConvTactic>;
}

fn lib(e: LibError) -> EngineError {
    EngineError::Unsupported(e.to_string())
}

fn missing(what: &str) -> EngineError {
    EngineError::Unsupported(format!("no {what} handle"))
}

/// The heuristic first choice within the workspace limit.
pub(crate) struct Heuristic<'a> {
    pub blas: Option<&'a Arc<Blas>>,
    pub dnn: Option<&'a Arc<Dnn>>,
    pub limit: usize,
}

impl Chooser for Heuristic<'_> {
    fn gemm(&mut self, d: &GemmDesc) -> Result<GemmTactic> {
        self.blas
            .ok_or_else(|| missing("cuBLASLt"))?
            .select(d, self.limit)
            .map_err(lib)
    }

    fn conv(&mut self, d: &ConvDesc) -> Result<ConvTactic> {
        self.dnn
            .ok_or_else(|| missing("cuDNN"))?
            .select(d, self.limit)
            .map_err(lib)
    }
}

/// The byte every scratch buffer is filled with: small positive values in every storage type
/// (f16 0x2C2C ≈ 0.065; bf16 0x3C3C ≈ 0.0115; f32 0x3C3C3C3C ≈ 0.0115).
fn fill_byte(m: MathMode) -> u8 {
    match m {
        MathMode::Fp16 => 0x2C,
        _ => 0x3C,
    }
}

/// The device side of timing: a private stream, events and a scratch allocator.
struct Bench {
    stream: Arc<Stream>,
    alloc: DeviceAllocator,
    start: Event,
    end: Event,
}

impl Bench {
    fn new(device: &Arc<Device>) -> Result<Bench> {
        Ok(Bench {
            stream: Stream::new(device)?,
            alloc: DeviceAllocator::new(device),
            start: Event::new(device, true)?,
            end: Event::new(device, true)?,
        })
    }

    /// A scratch buffer of `bytes` (at least 256) filled with `fill`.
    fn scratch(&self, bytes: usize, fill: u8) -> Result<DeviceBuffer> {
        let mut b = self.alloc.alloc(bytes.max(256), &self.stream)?;
        b.fill(fill)?;
        Ok(b)
    }

    /// Median milliseconds per run of `run` (see the module doc); `None` when it fails.
    ///
    /// The runs of a sample are captured in a CUDA graph and the sample times one replay:
    /// timing back-to-back library calls on the stream measured the host's cost of each call
    /// (descriptors, stream binding, launch: ~45 µs for a cuDNN call) whenever the kernel was
    /// shorter, which at ResNet-50 b1 picked tactics 7x slower on the GPU (2.28 ms against
    /// 0.33 ms replayed). Where capture fails, the calls are timed on the stream as before.
    fn measure(
        &self,
        run: &mut dyn FnMut(&Stream) -> std::result::Result<(), LibError>,
        best: Option<f64>,
    ) -> Result<Option<f64>> {
        if let Err(e) = run(&self.stream) {
            tracing::debug!("candidate does not run: {e}");
            self.stream.synchronize()?;
            return Ok(None);
        }
        self.stream.synchronize()?;
        let Some(first) = self.sample(run, 1)? else {
            return Ok(None);
        };
        if best.is_some_and(|b| first > HOPELESS * b) {
            return Ok(Some(first));
        }
        let reps = ((SAMPLE_MS / first.max(1e-6)).ceil() as usize).clamp(1, MAX_REPS);
        let mut graph = self.captured(run, reps)?;
        let mut v = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let ms = match graph.as_mut() {
                Some(g) => self.replay(g, reps)?,
                None => self.sample(run, reps)?,
            };
            match ms {
                Some(ms) => v.push(ms),
                None => return Ok(None),
            }
        }
        v.sort_by(f64::total_cmp);
        Ok(Some(v[v.len() / 2]))
    }

    /// `reps` runs captured and instantiated (`None` when the library call cannot be
    /// captured).
    fn captured(
        &self,
        run: &mut dyn FnMut(&Stream) -> std::result::Result<(), LibError>,
        reps: usize,
    ) -> Result<Option<kiln_cuda::graph::Graph>> {
        let mut failed = None;
        let captured = kiln_cuda::graph::capture(&self.stream, |s| {
            for _ in 0..reps {
                if let Err(e) = run(s) {
                    failed = Some(e);
                    break;
                }
            }
            Ok(())
        });
        match (failed, captured.and_then(|c| c.instantiate())) {
            (None, Ok(mut g)) => {
                g.upload(&self.stream)?;
                Ok(Some(g))
            }
            (f, c) => {
                tracing::debug!(
                    call = ?f.map(|e| e.to_string()),
                    cuda = ?c.err().map(|e| e.to_string()),
                    "timing without a CUDA graph"
                );
                self.stream.synchronize()?;
                Ok(None)
            }
        }
    }

    /// Milliseconds per run of one replay of `g` (`reps` runs).
    fn replay(&self, g: &mut kiln_cuda::graph::Graph, reps: usize) -> Result<Option<f64>> {
        self.start.record(&self.stream)?;
        g.launch(&self.stream)?;
        self.end.record(&self.stream)?;
        let ms = f64::from(self.start.elapsed_ms(&self.end)?);
        Ok(Some(ms / reps as f64))
    }

    /// Milliseconds per run of `reps` runs queued on the stream (`None` when one fails). A
    /// one-run sample is captured too, so the first estimate is the GPU's as well.
    fn sample(
        &self,
        run: &mut dyn FnMut(&Stream) -> std::result::Result<(), LibError>,
        reps: usize,
    ) -> Result<Option<f64>> {
        if reps == 1
            && let Some(mut g) = self.captured(run, 1)?
        {
            return self.replay(&mut g, 1);
        }
        self.start.record(&self.stream)?;
        for _ in 0..reps {
            if let Err(e) = run(&self.stream) {
                tracing::debug!("candidate failed while timed: {e}");
                self.stream.synchronize()?;
                return Ok(None);
            }
        }
        self.end.record(&self.stream)?;
        let ms = f64::from(self.start.elapsed_ms(&self.end)?);
        Ok(Some(ms / reps as f64))
    }

    /// Times each of `cands` (in order); `None` for those that fail.
    fn time_all<T: Copy>(
        &self,
        cands: &[T],
        mut run: impl FnMut(&Stream, &T) -> std::result::Result<(), LibError>,
    ) -> Result<Vec<Option<f64>>> {
        let mut times: Vec<Option<f64>> = Vec::with_capacity(cands.len());
        for c in cands {
            let best = times
                .iter()
                .flatten()
                .copied()
                .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.min(t))));
            times.push(self.measure(&mut |s| run(s, c), best)?);
        }
        Ok(times)
    }

    /// Times GEMM candidates on scratch buffers made for `d` and freed after.
    fn gemm(&self, blas: &Blas, d: &GemmDesc, cands: &[GemmTactic]) -> Result<Vec<Option<f64>>> {
        let times = self.gemm_on_scratch(blas, d, cands)?;
        self.alloc.release_cached()?;
        Ok(times)
    }

    /// Times convolution candidates on scratch buffers made for `d` and freed after.
    fn conv(&self, dnn: &Dnn, d: &ConvDesc, cands: &[ConvTactic]) -> Result<Vec<Option<f64>>> {
        let times = self.conv_on_scratch(dnn, d, cands)?;
        self.alloc.release_cached()?;
        Ok(times)
    }

    fn gemm_on_scratch(
        &self,
        blas: &Blas,
        d: &GemmDesc,
        cands: &[GemmTactic],
    ) -> Result<Vec<Option<f64>>> {
        let eb = d.math.elem_bytes();
        let fill = fill_byte(d.math);
        let (sa, sb, sc) = d.spans().map_err(lib)?;
        let a = self.scratch(sa * eb, fill)?;
        let b = self.scratch(sb * eb, fill)?;
        let c = self.scratch(sc * eb, fill)?;
        let bias = self.scratch(d.n * eb, fill)?;
        let ws_bytes = cands.iter().map(|t| t.workspace).max().unwrap_or(0);
        let ws = self.scratch(ws_bytes, 0)?;
        let args = GemmArgs {
            a: DevicePtr(a.device_ptr()),
            b: DevicePtr(b.device_ptr()),
            c: None,
            d: DevicePtr(c.device_ptr()),
            bias: d.epilogue.has_bias().then(|| DevicePtr(bias.device_ptr())),
            workspace: DevicePtr(ws.device_ptr()),
            workspace_bytes: ws_bytes,
        };
        let times = self.time_all(cands, |s, t| blas.enqueue(s, d, t, &args))?;
        self.stream.synchronize()?;
        Ok(times)
    }

    fn conv_on_scratch(
        &self,
        dnn: &Dnn,
        d: &ConvDesc,
        cands: &[ConvTactic],
    ) -> Result<Vec<Option<f64>>> {
        let eb = d.math.elem_bytes();
        let fill = fill_byte(d.math);
        let count = |dims: &[usize]| dims.iter().product::<usize>() * eb;
        let x = self.scratch(count(&d.input_dims()), fill)?;
        let w = self.scratch(count(&d.geometry.filter_dims()), fill)?;
        let y = self.scratch(count(&d.output_dims()), fill)?;
        let bias = self.scratch(d.bias_len() * eb, fill)?;
        let res = if d.residual {
            Some(self.scratch(count(&d.output_dims()), fill)?)
        } else {
            None
        };
        let ws_bytes = cands.iter().map(|t| t.workspace).max().unwrap_or(0);
        let ws = self.scratch(ws_bytes, 0)?;
        let args = ConvArgs {
            input: DevicePtr(x.device_ptr()),
            weight: DevicePtr(w.device_ptr()),
            output: DevicePtr(y.device_ptr()),
            bias: d.bias.then(|| DevicePtr(bias.device_ptr())),
            residual: res.as_ref().map(|r| DevicePtr(r.device_ptr())),
            workspace: DevicePtr(ws.device_ptr()),
            workspace_bytes: ws_bytes,
        };
        let times = self.time_all(cands, |s, t| dnn.enqueue(s, d, t, &args))?;
        self.stream.synchronize()?;
        Ok(times)
    }
}

/// Build-time chooser: heuristics at level 0, else the timing cache, then timing.
pub(crate) struct Timed {
    device: Arc<Device>,
    blas: Option<Arc<Blas>>,
    dnn: Option<Arc<Dnn>>,
    limit: usize,
    opt_level: u8,
    count: usize,
    key: DeviceKey,
    cache: TimingCache,
    path: Option<PathBuf>,
    bench: Option<Bench>,
    started: Instant,
    report: TacticReport,
}

impl Timed {
    /// A chooser for a build with `config` on `device` (whose fingerprint is `fingerprint`);
    /// reads the timing cache when the level times.
    pub fn new(
        device: &Arc<Device>,
        fingerprint: &Fingerprint,
        config: &BuildConfig,
        blas: Option<Arc<Blas>>,
        dnn: Option<Arc<Dnn>>,
    ) -> Result<Timed> {
        let count = candidate_count(config.opt_level)?;
        let path = config.timing_cache.clone().filter(|_| config.opt_level > 0);
        let cache = path.as_deref().map(TimingCache::load).unwrap_or_default();
        Ok(Timed {
            device: device.clone(),
            blas,
            dnn,
            limit: config.workspace_limit,
            opt_level: config.opt_level,
            count,
            key: DeviceKey::of(fingerprint),
            cache,
            path: path.clone(),
            bench: None,
            started: Instant::now(),
            report: TacticReport {
                opt_level: config.opt_level,
                workspace_limit: config.workspace_limit,
                timing_cache: path,
                ..TacticReport::default()
            },
        })
    }

    fn bench(&mut self) -> Result<&Bench> {
        if self.bench.is_none() {
            self.bench = Some(Bench::new(&self.device)?);
        }
        self.bench.as_ref().ok_or_else(|| missing("timing"))
    }

    fn note(&mut self, desc: String, tactic: Tactic, source: Source, n: usize, ms: Option<f64>) {
        match source {
            Source::Heuristic => self.report.heuristic += 1,
            Source::Timed => {
                self.report.timed += 1;
                self.report.candidates_timed += n;
            }
            Source::Cache => self.report.cache_hits += 1,
        }
        self.report.choices.push(Choice {
            desc,
            tactic,
            source,
            candidates: n,
            median_ms: ms,
        });
    }

    /// The cache's choice for `desc`, if any.
    fn cached(&self, desc: &str) -> Option<(Tactic, Option<f64>)> {
        let e = self
            .cache
            .lookup(&self.key, self.limit, desc, self.opt_level)?;
        let ms = e
            .timings
            .iter()
            .find(|m| m.tactic == e.chosen)
            .and_then(|m| m.median_ms);
        Some((e.chosen, ms))
    }

    /// Records a timing: the entry for the cache and the choice for the report.
    fn record<T: Copy>(
        &mut self,
        desc: String,
        cands: &[T],
        times: &[Option<f64>],
        chosen: usize,
        wrap: impl Fn(T) -> Tactic,
    ) {
        let timings: Vec<Measured> = cands
            .iter()
            .zip(times)
            .map(|(c, t)| Measured {
                tactic: wrap(*c),
                median_ms: *t,
            })
            .collect();
        let tactic = wrap(cands[chosen]);
        let ms = times[chosen];
        tracing::debug!(%desc, ?tactic, ?ms, candidates = cands.len(), "timed");
        self.cache.insert(CacheEntry {
            device: self.key.clone(),
            workspace_limit: self.limit,
            desc: desc.clone(),
            opt_level: self.opt_level,
            chosen: tactic,
            timings,
        });
        self.note(desc, tactic, Source::Timed, cands.len(), ms);
    }

    /// Ends the selection: writes the cache when it changed; the report.
    pub fn finish(mut self) -> TacticReport {
        if let Some(b) = &self.bench {
            if let Err(e) = b.stream.synchronize() {
                tracing::warn!("timing stream: {e}");
            }
            if let Err(e) = b.alloc.release_cached() {
                tracing::warn!("releasing timing scratch memory: {e}");
            }
        }
        if let Some(path) = &self.path
            && self.cache.is_dirty()
        {
            match self.cache.save(path) {
                Ok(()) => self.report.cache_written = true,
                Err(e) => tracing::warn!(path = %path.display(), "timing cache not written: {e}"),
            }
        }
        self.report.seconds = self.started.elapsed().as_secs_f64();
        tracing::info!(
            opt_level = self.report.opt_level,
            timed = self.report.timed,
            cache_hits = self.report.cache_hits,
            heuristic = self.report.heuristic,
            candidates = self.report.candidates_timed,
            seconds = self.report.seconds,
            "tactics chosen"
        );
        self.report
    }
}

impl Chooser for Timed {
    fn gemm(&mut self, d: &GemmDesc) -> Result<GemmTactic> {
        let blas = self.blas.clone().ok_or_else(|| missing("cuBLASLt"))?;
        let desc = key(d);
        if self.opt_level == 0 {
            let t = blas.select(d, self.limit).map_err(lib)?;
            self.note(desc, Tactic::Gemm(t), Source::Heuristic, 0, None);
            return Ok(t);
        }
        if let Some((Tactic::Gemm(t), ms)) = self.cached(&desc) {
            match blas.check(d, &t) {
                Ok(()) if t.workspace <= self.limit => {
                    self.note(desc, Tactic::Gemm(t), Source::Cache, 0, ms);
                    return Ok(t);
                }
                Ok(()) => tracing::warn!(%desc, "cached tactic exceeds the workspace limit"),
                Err(e) => tracing::warn!(%desc, "cached tactic rejected by cuBLASLt: {e}"),
            }
        }
        let cands = shortlist(
            blas.candidates(d, self.limit, self.count).map_err(lib)?,
            |t| t.workspace,
            self.limit,
            self.count,
        );
        if cands.len() <= 1 {
            let t = match cands.first() {
                Some(t) => *t,
                None => blas.select(d, self.limit).map_err(lib)?,
            };
            self.note(desc, Tactic::Gemm(t), Source::Heuristic, 0, None);
            return Ok(t);
        }
        let times = self.bench()?.gemm(&blas, d, &cands)?;
        let Some(i) = pick(&times) else {
            tracing::warn!(%desc, "no GEMM candidate ran while timed; taking the heuristics'");
            let t = blas.select(d, self.limit).map_err(lib)?;
            self.note(desc, Tactic::Gemm(t), Source::Heuristic, 0, None);
            return Ok(t);
        };
        self.record(desc, &cands, &times, i, Tactic::Gemm);
        Ok(cands[i])
    }

    fn conv(&mut self, d: &ConvDesc) -> Result<ConvTactic> {
        let dnn = self.dnn.clone().ok_or_else(|| missing("cuDNN"))?;
        let desc = key(d);
        if self.opt_level == 0 {
            let t = dnn.select(d, self.limit).map_err(lib)?;
            self.note(desc, Tactic::Conv(t), Source::Heuristic, 0, None);
            return Ok(t);
        }
        if let Some((Tactic::Conv(t), ms)) = self.cached(&desc)
            && t.workspace <= self.limit
        {
            self.note(desc, Tactic::Conv(t), Source::Cache, 0, ms);
            return Ok(t);
        }
        let mut cands = shortlist(
            dnn.candidates(d, self.limit, self.count).map_err(lib)?,
            |t| t.workspace,
            self.limit,
            self.count,
        );
        if cands.len() <= 1 {
            let t = match cands.first() {
                Some(t) => *t,
                None => dnn.select(d, self.limit).map_err(lib)?,
            };
            self.note(desc, Tactic::Conv(t), Source::Heuristic, 0, None);
            return Ok(t);
        }
        let bench = self.bench()?;
        let mut times = bench.conv(&dnn, d, &cands)?;
        // A fused call cuDNN refuses runs unfused (as the heuristic path would not pick it).
        let mut retry = Vec::new();
        for (i, c) in cands.iter_mut().enumerate() {
            if times[i].is_none() && c.fused {
                c.fused = false;
                retry.push(i);
            }
        }
        if !retry.is_empty() {
            let again: Vec<ConvTactic> = retry.iter().map(|&i| cands[i]).collect();
            for (&i, t) in retry.iter().zip(bench.conv(&dnn, d, &again)?) {
                times[i] = t;
            }
        }
        let Some(i) = pick(&times) else {
            tracing::warn!(%desc, "no cuDNN candidate ran while timed; taking the heuristics'");
            let t = dnn.select(d, self.limit).map_err(lib)?;
            self.note(desc, Tactic::Conv(t), Source::Heuristic, 0, None);
            return Ok(t);
        };
        self.record(desc, &cands, &times, i, Tactic::Conv);
        Ok(cands[i])
    }
}

#[cfg(test)]
#[path = "timing_tests.rs"]
mod tests;
