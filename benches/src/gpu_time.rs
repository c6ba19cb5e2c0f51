//! [`GpuTime`]: a criterion [`Measurement`] whose values are GPU time between two CUDA events
//! recorded on a stream, not host wall time.
//!
//! Criterion's `iter` calls `start` (a timing event recorded on the current stream), runs the
//! routine `iters` times (each run only queues work), then `end` (a second event, waited for):
//! the value is the GPU time of the queued runs. Set the stream with [`GpuClock::set_stream`]
//! before each benchmark. The formatter is unit-tested on the CPU; the events need a CUDA GPU.
//!
//! A CUDA error while timing cannot be returned through criterion's API: it panics with the
//! error's text (the bench binary stops and says why, never reports a made-up time).

use std::sync::{Arc, Mutex, PoisonError};

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};
use kiln_cuda::{Event, Stream};

/// The stream [`GpuTime`] records its events on; shared between the measurement (owned by
/// criterion) and the bench code that chooses the stream.
#[derive(Clone, Default)]
pub struct GpuClock {
    stream: Arc<Mutex<Option<Arc<Stream>>>>,
}

impl GpuClock {
    /// Events of the following measurements are recorded on `stream`.
    pub fn set_stream(&self, stream: &Arc<Stream>) {
        *self.stream.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream.clone());
    }

    fn stream(&self) -> Arc<Stream> {
        self.stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| panic!("GpuTime: no stream set (call GpuClock::set_stream first)"))
    }
}

/// GPU time in nanoseconds, from CUDA events.
#[derive(Clone, Default)]
pub struct GpuTime {
    clock: GpuClock,
}

impl GpuTime {
    /// The measurement and the handle that sets its stream.
    pub fn new() -> (GpuTime, GpuClock) {
        let clock = GpuClock::default();
        (
            GpuTime {
                clock: clock.clone(),
            },
            clock,
        )
    }
}

/// The start of one sample: the event and the stream it was recorded on.
pub struct Started {
    event: Event,
    stream: Arc<Stream>,
}

impl Measurement for GpuTime {
    type Intermediate = Started;
    type Value = f64;

    fn start(&self) -> Started {
        let stream = self.clock.stream();
        let event = Event::new(stream.device(), true)
            .and_then(|e| e.record(&stream).map(|()| e))
            .unwrap_or_else(|e| panic!("GpuTime: recording the start event failed: {e}"));
        Started { event, stream }
    }

    fn end(&self, s: Started) -> f64 {
        let end = Event::new(s.stream.device(), true)
            .and_then(|e| e.record(&s.stream).map(|()| e))
            .and_then(|e| e.synchronize().map(|()| e))
            .and_then(|e| s.event.elapsed_ms(&e))
            .unwrap_or_else(|e| panic!("GpuTime: timing with CUDA events failed: {e}"));
        f64::from(end) * 1e6
    }

    fn add(&self, v1: &f64, v2: &f64) -> f64 {
        v1 + v2
    }

    fn zero(&self) -> f64 {
        0.0
    }

    fn to_f64(&self, value: &f64) -> f64 {
        *value
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &GpuTimeFormatter
    }
}

/// Formats nanoseconds of GPU time (`ns`, `µs`, `ms`, `s`, each marked "GPU") and rates.
pub struct GpuTimeFormatter;

impl GpuTimeFormatter {
    fn time_unit(typical_ns: f64) -> (f64, &'static str) {
        if typical_ns < 1e3 {
            (1.0, "ns GPU")
        } else if typical_ns < 1e6 {
            (1e3, "µs GPU")
        } else if typical_ns < 1e9 {
            (1e6, "ms GPU")
        } else {
            (1e9, "s GPU")
        }
    }

    fn rate_unit(per_s: f64) -> (f64, &'static str) {
        if per_s < 1e3 {
            (1.0, "")
        } else if per_s < 1e6 {
            (1e3, "K")
        } else if per_s < 1e9 {
            (1e6, "M")
        } else {
            (1e9, "G")
        }
    }
}

impl ValueFormatter for GpuTimeFormatter {
    fn scale_values(&self, typical_value: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = Self::time_unit(typical_value);
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(
        &self,
        typical_value: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (count, kind) = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (*n as f64, 'B'),
            Throughput::Elements(n) => (*n as f64, 'E'),
        };
        // values are ns per iteration; per second of GPU time.
        let (div, prefix) = Self::rate_unit(count * 1e9 / typical_value);
        for v in values.iter_mut() {
            *v = count * 1e9 / *v / div;
        }
        match (kind, prefix) {
            ('B', "") => "B/s GPU",
            ('B', "K") => "KB/s GPU",
            ('B', "M") => "MB/s GPU",
            ('B', _) => "GB/s GPU",
            (_, "") => "items/s GPU",
            (_, "K") => "Kitems/s GPU",
            (_, "M") => "Mitems/s GPU",
            _ => "Gitems/s GPU",
        }
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_scale_to_a_readable_unit() {
        let mut rng = fastrand::Rng::new();
        for (lo, hi, unit, div) in [
            (1.0, 999.0, "ns GPU", 1.0),
            (1e3, 9.9e5, "µs GPU", 1e3),
            (1e6, 9.9e8, "ms GPU", 1e6),
            (1e9, 5e10, "s GPU", 1e9),
        ] {
            let typical = lo + rng.f64() * (hi - lo);
            let mut v = [typical, typical * 2.0];
            assert_eq!(GpuTimeFormatter.scale_values(typical, &mut v), unit);
            assert!((v[0] - typical / div).abs() < 1e-9 * v[0].max(1.0));
            assert!((v[1] - 2.0 * typical / div).abs() < 1e-9 * v[1].max(1.0));
        }
        let mut m = [7.0];
        assert_eq!(GpuTimeFormatter.scale_for_machines(&mut m), "ns");
        assert_eq!(m, [7.0]);
    }

    #[test]
    fn throughput_is_items_per_second_of_gpu_time() {
        let mut rng = fastrand::Rng::new();
        let batch = rng.u64(1..512);
        let ns = 1e4 + rng.f64() * 1e7;
        let mut v = [ns];
        let unit = GpuTimeFormatter.scale_throughputs(ns, &Throughput::Elements(batch), &mut v);
        let per_s = batch as f64 * 1e9 / ns;
        let (div, _) = GpuTimeFormatter::rate_unit(per_s);
        assert!(
            (v[0] * div - per_s).abs() < 1e-6 * per_s,
            "{v:?} vs {per_s}"
        );
        assert!(unit.ends_with("items/s GPU"), "{unit}");
        let mut b = [ns];
        let unit = GpuTimeFormatter.scale_throughputs(ns, &Throughput::Bytes(batch), &mut b);
        assert!(unit.contains("B/s GPU"), "{unit}");
        let m = GpuTime::default();
        assert_eq!(m.add(&1.5, &m.zero()), 1.5);
        assert_eq!(m.to_f64(&2.5), 2.5);
    }
}
