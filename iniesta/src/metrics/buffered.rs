//! Histograms recorded for every delivery, buffered per thread when iniesta's own Prometheus
//! exporter is the only reader.
//!
//! Why by hand: the Prometheus recorder keeps each histogram's samples in one lock-free bucket
//! (`metrics-util`'s `AtomicBucket`) that every worker thread pushes into. With three samples
//! per delivery, that contended push was the whole cost of metrics in the pipeline bench
//! (0.81 of the run without metrics; 1.00 with the three records taken out). No crate offers a
//! per-thread front for a `metrics` histogram, and the facade's `HistogramFn` has no batch
//! call, so this holds samples in a buffer of the recording thread (`thread_local`'s
//! per-object thread-local storage) and hands them over [`BURST`] at a time.
//!
//! Late samples are only harmless when iniesta renders: its listener flushes every buffer
//! before each scrape. So buffering is on only for iniesta's own recorder; a program's own
//! recorder (OpenTelemetry, StatsD, a test's) gets each sample at once.

use std::sync::Mutex;

use ::metrics::Histogram;
use thread_local::ThreadLocal;

/// Samples a thread holds before handing them to the recorder. At 2.5 us per delivery this is
/// a hand-over every ~150 us per thread under load; at most 64 x 8 bytes per thread and
/// histogram wait.
const BURST: usize = 64;

/// A histogram handle that buffers its samples per thread, or passes them through.
#[derive(Debug)]
pub(crate) struct BufferedHistogram {
    target: Histogram,
    /// `None`: every sample goes straight to `target`.
    buffers: Option<ThreadLocal<Mutex<Vec<f64>>>>,
}

impl BufferedHistogram {
    /// Buffers in front of `target` when `buffered`: only when whoever renders calls
    /// [`flush`](Self::flush) first.
    pub(crate) fn new(target: Histogram, buffered: bool) -> Self {
        BufferedHistogram {
            target,
            buffers: buffered.then(ThreadLocal::new),
        }
    }

    /// Records one sample (seconds, for the duration histograms).
    pub(crate) fn record(&self, value: impl ::metrics::IntoF64) {
        let value = value.into_f64();
        let Some(buffers) = &self.buffers else {
            self.target.record(value);
            return;
        };
        // Only this thread locks its own buffer, besides a flush: uncontended.
        let mut buffer = lock(buffers.get_or(|| Mutex::new(Vec::with_capacity(BURST))));
        buffer.push(value);
        if buffer.len() >= BURST {
            self.hand_over(&mut buffer);
        }
    }

    /// Hands every buffered sample, of every thread, to the recorder: before a render.
    pub(crate) fn flush(&self) {
        for buffer in self.buffers.iter().flat_map(ThreadLocal::iter) {
            self.hand_over(&mut lock(buffer));
        }
    }

    fn hand_over(&self, buffer: &mut Vec<f64>) {
        for value in buffer.drain(..) {
            self.target.record(value);
        }
    }
}

/// A buffer is a plain `Vec` that a panic cannot leave half-changed: poisoning is ignored.
fn lock(buffer: &Mutex<Vec<f64>>) -> std::sync::MutexGuard<'_, Vec<f64>> {
    buffer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    fn count(text: &str) -> &str {
        text.lines()
            .find(|line| line.starts_with("latency_count"))
            .unwrap_or_default()
    }

    #[test]
    fn buffered_samples_reach_the_recorder_in_bursts_and_on_flush() {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[1.0])
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        let histogram = ::metrics::with_local_recorder(&recorder, || {
            BufferedHistogram::new(::metrics::histogram!("latency"), true)
        });
        for _ in 0..BURST + 3 {
            histogram.record(0.5);
        }
        assert_eq!(count(&handle.render()), format!("latency_count {BURST}"));
        std::thread::scope(|s| {
            s.spawn(|| histogram.record(0.5));
        });
        histogram.flush();
        assert_eq!(
            count(&handle.render()),
            format!("latency_count {}", BURST + 4)
        );
    }

    #[test]
    fn unbuffered_samples_reach_the_recorder_at_once() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let histogram = ::metrics::with_local_recorder(&recorder, || {
            BufferedHistogram::new(::metrics::histogram!("latency"), false)
        });
        histogram.record(0.5);
        assert!(
            handle.render().contains("latency_count 1"),
            "{}",
            handle.render()
        );
    }
}
