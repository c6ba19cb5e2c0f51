//! The bench report: what `--export-json` writes (schema in [`super`]'s module doc), the
//! trtexec-style text summary, and the warning rules.
//!
//! Everything here is host code over numbers; it is the same for the GPU and CPU paths (the
//! CPU path leaves the GPU-only fields `null`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::stats::{self, Summary};

/// Enqueue-bound when the median enqueue time is at least this share of the median GPU
/// compute time (the host then barely keeps the GPU fed).
pub const ENQUEUE_BOUND_RATIO: f64 = 0.8;
/// Unstable when the coefficient of variation of GPU compute exceeds this (2.5 %).
pub const UNSTABLE_CV: f64 = 0.025;

/// One run's raw per-iteration timings in milliseconds (all streams together). Series that a
/// path does not measure are empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    pub host_latency_ms: Vec<f64>,
    pub enqueue_ms: Vec<f64>,
    pub h2d_ms: Vec<f64>,
    pub gpu_compute_ms: Vec<f64>,
    pub d2h_ms: Vec<f64>,
}

/// A trtexec-style warning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    EnqueueBound,
    TransferBound,
    Unstable,
}

/// One step of the per-step profile (`--dump-profile`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileStep {
    pub index: usize,
    pub name: String,
    pub op: String,
    pub kernel: String,
    pub ms: f64,
    /// Share of the profiled run's summed step time (0..1).
    pub share: f64,
}

/// Time per op type in the profile, largest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileOp {
    pub op: String,
    pub count: usize,
    pub ms: f64,
    pub share: f64,
}

/// The per-step profile of one extra run (events around every step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    /// From the first step's start to the last step's end.
    pub total_ms: f64,
    /// Steps in run order.
    pub steps: Vec<ProfileStep>,
    pub by_op: Vec<ProfileOp>,
}

impl ProfileReport {
    /// Builds the report from `(index, name, op, kernel, ms)` per step; shares are of the
    /// summed step time.
    pub fn new(total_ms: f64, steps: Vec<(usize, String, String, String, f64)>) -> ProfileReport {
        let sum: f64 = steps.iter().map(|s| s.4).sum();
        let share = |ms: f64| if sum > 0.0 { ms / sum } else { 0.0 };
        let mut by_op: Vec<ProfileOp> = Vec::new();
        for (_, _, op, _, ms) in &steps {
            match by_op.iter_mut().find(|o| &o.op == op) {
                Some(o) => {
                    o.count += 1;
                    o.ms += ms;
                }
                None => by_op.push(ProfileOp {
                    op: op.clone(),
                    count: 1,
                    ms: *ms,
                    share: 0.0,
                }),
            }
        }
        for o in &mut by_op {
            o.share = share(o.ms);
        }
        by_op.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        ProfileReport {
            total_ms,
            steps: steps
                .into_iter()
                .map(|(index, name, op, kernel, ms)| ProfileStep {
                    index,
                    name,
                    op,
                    kernel,
                    ms,
                    share: share(ms),
                })
                .collect(),
            by_op,
        }
    }

    /// The `n` slowest steps, slowest first.
    pub fn top(&self, n: usize) -> Vec<&ProfileStep> {
        let mut v: Vec<&ProfileStep> = self.steps.iter().collect();
        v.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        v.truncate(n);
        v
    }
}

/// Everything `kiln bench` measured. Field names are the JSON interface: keep them stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub model: String,
    /// `kiln` (GPU engine) or `cpu` (the reference interpreter).
    pub backend: String,
    /// The GPU's name, or `cpu` for the CPU backend.
    pub device: String,
    pub precision: String,
    /// Items per query: the leading dim of the first input.
    pub batch: usize,
    /// The input shapes benched.
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    pub streams: usize,
    /// Whether runs replayed CUDA graphs (false when off, unsupported or capture failed).
    pub cuda_graph: bool,
    /// Whether H2D and D2H copies were part of each iteration.
    pub transfers: bool,
    pub warmup_ms: f64,
    pub duration_ms: f64,
    pub min_iterations: usize,
    /// Iterations measured, all streams together.
    pub queries: usize,
    /// Host wall time of the measured window (first iteration's start to last one's end).
    pub walltime_s: f64,
    /// Sum of the iterations' GPU compute times; `null` on the CPU.
    pub gpu_compute_total_s: Option<f64>,
    pub throughput_qps: f64,
    pub throughput_items_per_s: f64,
    pub host_latency_ms: Summary,
    pub enqueue_ms: Option<Summary>,
    pub h2d_ms: Option<Summary>,
    pub gpu_compute_ms: Option<Summary>,
    pub d2h_ms: Option<Summary>,
    pub gpu_compute_cv: Option<f64>,
    pub host_latency_cv: Option<f64>,
    pub warnings: Vec<Warning>,
    /// Lines printed under the summary (e.g. why GPU columns are missing).
    pub notes: Vec<String>,
    pub profile: Option<ProfileReport>,
    pub samples: Samples,
}

/// What the report is made from, besides the samples.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub model: String,
    pub backend: String,
    pub device: String,
    pub precision: String,
    pub batch: usize,
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    pub streams: usize,
    pub cuda_graph: bool,
    pub cuda_graph_requested: bool,
    pub transfers: bool,
    pub warmup_ms: f64,
    pub duration_ms: f64,
    pub min_iterations: usize,
    pub notes: Vec<String>,
}

/// Medians and spread the warning rules look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct WarningInputs {
    pub enqueue_median: Option<f64>,
    pub compute_median: Option<f64>,
    /// Median of H2D + D2H per iteration.
    pub transfer_median: Option<f64>,
    pub compute_cv: Option<f64>,
    /// Used for the stability rule when there is no GPU compute series (CPU path).
    pub host_cv: Option<f64>,
    pub cuda_graph: bool,
}

/// trtexec's warnings on the measured numbers.
pub fn warnings(w: &WarningInputs) -> Vec<Warning> {
    let mut out = Vec::new();
    if let (Some(enq), Some(gpu)) = (w.enqueue_median, w.compute_median)
        && gpu > 0.0
        && enq >= ENQUEUE_BOUND_RATIO * gpu
    {
        let hint = if w.cuda_graph {
            "CUDA graphs are already on; more streams (--streams) may hide the launch cost"
        } else {
            "try --cuda-graph to launch each run as one graph"
        };
        out.push(Warning {
            kind: WarningKind::EnqueueBound,
            message: format!(
                "throughput may be bound by enqueue time ({enq:.4} ms median) rather than GPU \
                 compute ({gpu:.4} ms median); the GPU may be under-used: {hint}"
            ),
        });
    }
    if let (Some(xfer), Some(gpu)) = (w.transfer_median, w.compute_median)
        && xfer > gpu
    {
        out.push(Warning {
            kind: WarningKind::TransferBound,
            message: format!(
                "H2D + D2H copies ({xfer:.4} ms median) take longer than GPU compute ({gpu:.4} \
                 ms median): the latency is transfer-bound; use --no-transfers to measure \
                 compute only"
            ),
        });
    }
    let (cv, what) = match (w.compute_cv, w.host_cv) {
        (Some(cv), _) => (Some(cv), "GPU compute time"),
        (None, cv) => (cv, "host latency"),
    };
    if let Some(cv) = cv
        && cv > UNSTABLE_CV
    {
        out.push(Warning {
            kind: WarningKind::Unstable,
            message: format!(
                "{what} is unstable: coefficient of variation {:.2}% (above {:.1}%); results \
                 may not be reproducible (other load on the machine, clocks, thermal limits)",
                cv * 100.0,
                UNSTABLE_CV * 100.0
            ),
        });
    }
    out
}

impl Report {
    /// Summaries, throughput and warnings from the samples of a measured window.
    pub fn new(meta: Meta, samples: Samples, walltime_s: f64) -> anyhow::Result<Report> {
        let host_latency_ms = Summary::of(&samples.host_latency_ms).ok_or_else(|| {
            anyhow::anyhow!("no finite host latency was measured; nothing to report")
        })?;
        let opt = |v: &[f64]| Summary::of(v);
        let queries = samples.host_latency_ms.len();
        let gpu_compute_ms = opt(&samples.gpu_compute_ms);
        let transfers = stats::add(&samples.h2d_ms, &samples.d2h_ms)
            .filter(|v| !v.is_empty())
            .and_then(|v| Summary::of(&v));
        let gpu_compute_cv = stats::coefficient_of_variation(&samples.gpu_compute_ms);
        let host_latency_cv = stats::coefficient_of_variation(&samples.host_latency_ms);
        let enqueue_ms = opt(&samples.enqueue_ms);
        let warnings = warnings(&WarningInputs {
            enqueue_median: enqueue_ms.map(|s| s.median),
            compute_median: gpu_compute_ms.map(|s| s.median),
            transfer_median: transfers.map(|s| s.median),
            compute_cv: gpu_compute_cv,
            host_cv: host_latency_cv,
            cuda_graph: meta.cuda_graph,
        });
        let qps = if walltime_s > 0.0 {
            queries as f64 / walltime_s
        } else {
            0.0
        };
        let mut notes = meta.notes;
        if meta.cuda_graph_requested && !meta.cuda_graph {
            notes.push(
                "--cuda-graph was asked for but the runs did not replay graphs (capture failed \
                 or the backend has none); see the log"
                    .into(),
            );
        }
        Ok(Report {
            model: meta.model,
            backend: meta.backend,
            device: meta.device,
            precision: meta.precision,
            batch: meta.batch,
            input_shapes: meta.input_shapes,
            streams: meta.streams,
            cuda_graph: meta.cuda_graph,
            transfers: meta.transfers,
            warmup_ms: meta.warmup_ms,
            duration_ms: meta.duration_ms,
            min_iterations: meta.min_iterations,
            queries,
            walltime_s,
            gpu_compute_total_s: (!samples.gpu_compute_ms.is_empty())
                .then(|| samples.gpu_compute_ms.iter().sum::<f64>() / 1e3),
            throughput_qps: qps,
            throughput_items_per_s: qps * meta.batch as f64,
            host_latency_ms,
            enqueue_ms,
            h2d_ms: opt(&samples.h2d_ms),
            gpu_compute_ms,
            d2h_ms: opt(&samples.d2h_ms),
            gpu_compute_cv,
            host_latency_cv,
            warnings,
            notes,
            profile: None,
            samples,
        })
    }

    /// The trtexec-style summary; `profile_rows` slowest steps when a profile is attached.
    pub fn render_text(&self, profile_rows: usize) -> String {
        let mut o = String::new();
        // Writing to a String cannot fail; results are ignored on purpose.
        let _ = writeln!(o, "=== Performance summary ===");
        let _ = writeln!(o, "model:      {}", self.model);
        let _ = writeln!(
            o,
            "backend:    {} on {}, {}, batch {}, {} stream{}, CUDA graph {}, transfers {}",
            self.backend,
            self.device,
            self.precision,
            self.batch,
            self.streams,
            if self.streams == 1 { "" } else { "s" },
            on_off(self.cuda_graph),
            on_off(self.transfers)
        );
        let shapes: Vec<String> = self
            .input_shapes
            .iter()
            .map(|(n, d)| format!("{n}:{}", dims_text(d)))
            .collect();
        let _ = writeln!(o, "shapes:     {}", shapes.join(", "));
        let _ = writeln!(
            o,
            "Throughput: {:.2} qps, {:.2} items/s ({} queries in {:.3} s)",
            self.throughput_qps, self.throughput_items_per_s, self.queries, self.walltime_s
        );
        let _ = writeln!(
            o,
            "{:<14}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
            "(ms)", "min", "mean", "median", "p90", "p95", "p99", "max"
        );
        let rows = [
            ("Host latency", Some(self.host_latency_ms)),
            ("Enqueue", self.enqueue_ms),
            ("H2D", self.h2d_ms),
            ("GPU compute", self.gpu_compute_ms),
            ("D2H", self.d2h_ms),
        ];
        for (name, s) in rows {
            match s {
                Some(s) => {
                    let _ = writeln!(
                        o,
                        "{name:<14}{:>11.4}{:>11.4}{:>11.4}{:>11.4}{:>11.4}{:>11.4}{:>11.4}",
                        s.min, s.mean, s.median, s.p90, s.p95, s.p99, s.max
                    );
                }
                None => {
                    let _ = writeln!(o, "{name:<14}{:>11}", "-");
                }
            }
        }
        let _ = writeln!(o, "Total host walltime: {:.3} s", self.walltime_s);
        match self.gpu_compute_total_s {
            Some(t) => {
                let _ = writeln!(o, "Total GPU compute time: {t:.3} s");
            }
            None => {
                let _ = writeln!(o, "Total GPU compute time: -");
            }
        }
        if let Some(cv) = self.gpu_compute_cv {
            let _ = writeln!(o, "GPU compute CV: {:.2}%", cv * 100.0);
        } else if let Some(cv) = self.host_latency_cv {
            let _ = writeln!(o, "Host latency CV: {:.2}%", cv * 100.0);
        }
        for w in &self.warnings {
            let _ = writeln!(o, "[W] {}", w.message);
        }
        for n in &self.notes {
            let _ = writeln!(o, "note: {n}");
        }
        if let Some(p) = &self.profile {
            let _ = writeln!(
                o,
                "=== Profile: one run, {} steps, {:.4} ms ===",
                p.steps.len(),
                p.total_ms
            );
            let _ = writeln!(o, "{:<24}{:>7}{:>12}{:>9}", "op", "steps", "ms", "share");
            for t in &p.by_op {
                let _ = writeln!(
                    o,
                    "{:<24}{:>7}{:>12.4}{:>8.1}%",
                    t.op,
                    t.count,
                    t.ms,
                    t.share * 100.0
                );
            }
            let _ = writeln!(o, "slowest steps:");
            let _ = writeln!(
                o,
                "{:>6}  {:<20}{:>12}{:>9}  name",
                "#", "op", "ms", "share"
            );
            for s in p.top(profile_rows) {
                let _ = writeln!(
                    o,
                    "{:>6}  {:<20}{:>12.4}{:>8.1}%  {}",
                    s.index,
                    s.op,
                    s.ms,
                    s.share * 100.0,
                    s.name
                );
            }
        }
        o
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// `1x3x224x224` (a scalar is `scalar`).
pub fn dims_text(d: &[usize]) -> String {
    if d.is_empty() {
        return "scalar".into();
    }
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn rng(seed: u64) -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(seed)
    }

    /// Synthetic GPU timings: compute around `gpu` ms with relative jitter `jitter`.
    fn synthetic(seed: u64, n: usize, gpu: f64, jitter: f64, enq: f64, xfer: f64) -> Samples {
        let mut r = rng(seed);
        let mut s = Samples::default();
        for _ in 0..n {
            let c = gpu * (1.0 + jitter * r.random_range(-1.0..1.0));
            let e = enq * (1.0 + 0.01 * r.random_range(-1.0..1.0));
            let h = xfer * 0.5 * (1.0 + 0.01 * r.random_range(-1.0..1.0));
            let d = xfer * 0.5 * (1.0 + 0.01 * r.random_range(-1.0..1.0));
            s.gpu_compute_ms.push(c);
            s.enqueue_ms.push(e);
            s.h2d_ms.push(h);
            s.d2h_ms.push(d);
            s.host_latency_ms.push(h + c + d + 0.01);
        }
        s
    }

    fn meta(batch: usize, graph: bool) -> Meta {
        Meta {
            model: "m.onnx".into(),
            backend: "kiln".into(),
            device: "test GPU".into(),
            precision: "fp16".into(),
            batch,
            input_shapes: BTreeMap::from([("x".to_string(), vec![batch, 3, 8, 8])]),
            streams: 1,
            cuda_graph: graph,
            cuda_graph_requested: graph,
            transfers: true,
            warmup_ms: 10.0,
            duration_ms: 100.0,
            min_iterations: 10,
            notes: vec![],
        }
    }

    fn kinds(r: &Report) -> Vec<WarningKind> {
        r.warnings.iter().map(|w| w.kind).collect()
    }

    #[test]
    fn warning_rules_on_synthetic_timings() {
        let mut r = rng(3);
        let gpu: f64 = r.random_range(0.5..2.0);
        // Quiet, compute-bound: no warning.
        let calm = Report::new(
            meta(4, false),
            synthetic(1, 500, gpu, 0.01, gpu * 0.1, gpu * 0.2),
            1.0,
        )
        .unwrap();
        assert!(calm.warnings.is_empty(), "{:?}", calm.warnings);
        // Enqueue close to compute: enqueue-bound, suggests --cuda-graph.
        let enq = Report::new(
            meta(4, false),
            synthetic(2, 500, gpu, 0.01, gpu * 0.9, gpu * 0.2),
            1.0,
        )
        .unwrap();
        assert_eq!(kinds(&enq), vec![WarningKind::EnqueueBound]);
        assert!(enq.warnings[0].message.contains("--cuda-graph"));
        let enq_g = Report::new(
            meta(4, true),
            synthetic(2, 500, gpu, 0.01, gpu * 1.5, gpu * 0.2),
            1.0,
        )
        .unwrap();
        assert!(!enq_g.warnings[0].message.contains("try --cuda-graph"));
        // Copies longer than compute: transfer-bound, suggests --no-transfers.
        let xfer = Report::new(
            meta(4, false),
            synthetic(3, 500, gpu, 0.01, gpu * 0.1, gpu * 1.3),
            1.0,
        )
        .unwrap();
        assert_eq!(kinds(&xfer), vec![WarningKind::TransferBound]);
        assert!(xfer.warnings[0].message.contains("--no-transfers"));
        // Jitter of ±10 % (uniform: CV ~5.8 %): unstable; ±2 % (CV ~1.2 %): stable.
        let noisy = Report::new(
            meta(4, false),
            synthetic(4, 2000, gpu, 0.10, gpu * 0.1, gpu * 0.2),
            1.0,
        )
        .unwrap();
        assert_eq!(kinds(&noisy), vec![WarningKind::Unstable]);
        let cv = noisy.gpu_compute_cv.unwrap();
        assert!(cv > UNSTABLE_CV && cv < 0.08, "{cv}");
        let steady = Report::new(
            meta(4, false),
            synthetic(5, 2000, gpu, 0.02, gpu * 0.1, gpu * 0.2),
            1.0,
        )
        .unwrap();
        assert!(steady.warnings.is_empty());
        // Everything at once.
        let all = Report::new(
            meta(4, false),
            synthetic(6, 500, gpu, 0.2, gpu * 2.0, gpu * 3.0),
            1.0,
        )
        .unwrap();
        assert_eq!(
            kinds(&all),
            vec![
                WarningKind::EnqueueBound,
                WarningKind::TransferBound,
                WarningKind::Unstable
            ]
        );
    }

    #[test]
    fn cpu_rules_use_host_latency() {
        let w = warnings(&WarningInputs {
            host_cv: Some(0.3),
            ..Default::default()
        });
        assert_eq!(w.len(), 1);
        assert!(w[0].message.starts_with("host latency is unstable"));
        assert!(warnings(&WarningInputs::default()).is_empty());
    }

    #[test]
    fn throughput_and_totals_follow_the_samples() {
        let mut r = rng(8);
        let n = r.random_range(100..400);
        let wall: f64 = r.random_range(0.5..3.0);
        let s = synthetic(9, n, 1.5, 0.01, 0.1, 0.2);
        let total: f64 = s.gpu_compute_ms.iter().sum::<f64>() / 1e3;
        let rep = Report::new(meta(8, false), s, wall).unwrap();
        assert_eq!(rep.queries, n);
        assert!((rep.throughput_qps - n as f64 / wall).abs() < 1e-9);
        assert!((rep.throughput_items_per_s - 8.0 * n as f64 / wall).abs() < 1e-6);
        assert!((rep.gpu_compute_total_s.unwrap() - total).abs() < 1e-12);
        let text = rep.render_text(5);
        for needle in [
            "Throughput:",
            "Host latency",
            "GPU compute",
            "Total GPU compute time",
        ] {
            assert!(text.contains(needle), "{text}");
        }
    }

    fn approx_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (a, b) {
            (V::Number(x), V::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1e-300)
            }
            (V::Array(x), V::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| approx_eq(a, b))
            }
            (V::Object(x), V::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, a)| y.get(k).is_some_and(|b| approx_eq(a, b)))
            }
            _ => a == b,
        }
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let mut rep =
            Report::new(meta(2, false), synthetic(10, 64, 0.7, 0.05, 0.6, 0.9), 0.25).unwrap();
        rep.profile = Some(ProfileReport::new(
            1.0,
            vec![
                (0, "conv1".into(), "Conv".into(), "cudnn".into(), 0.6),
                (1, "relu".into(), "Relu".into(), "nvrtc".into(), 0.1),
                (2, "conv2".into(), "Conv".into(), "cudnn".into(), 0.3),
            ],
        ));
        let text = serde_json::to_string_pretty(&rep).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        // serde_json's default float parsing may be one ulp off: compare numbers closely.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let again = serde_json::to_value(&back).unwrap();
        assert!(approx_eq(&v, &again), "{text}");
        assert_eq!(back.samples.host_latency_ms.len(), 64);
        assert_eq!(back.warnings, rep.warnings);
        assert_eq!(back.input_shapes, rep.input_shapes);
        for key in [
            "throughput_qps",
            "throughput_items_per_s",
            "batch",
            "precision",
            "gpu_compute_ms",
            "host_latency_ms",
            "enqueue_ms",
            "h2d_ms",
            "d2h_ms",
            "device",
            "model",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for k in ["min", "mean", "median", "p90", "p95", "p99", "max"] {
            assert!(v["gpu_compute_ms"][k].is_f64(), "{k}");
        }
        let p = back.profile.unwrap();
        assert_eq!(p.by_op[0].op, "Conv");
        assert_eq!(p.by_op[0].count, 2);
        assert!((p.by_op[0].share - 0.9).abs() < 1e-12);
        assert_eq!(p.top(1)[0].name, "conv1");
    }
}
