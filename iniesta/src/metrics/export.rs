//! The consumer's metrics through the `metrics` facade: names, and handles registered once per
//! app so a delivery costs no label allocation and no registry look-up.
//!
//! Names follow OpenTelemetry's messaging semantic conventions where one exists
//! (`messaging.process.duration` becomes `messaging_process_duration_seconds`), Prometheus
//! style otherwise: `iniesta_` prefix, unit suffix, `_total` on counters. Every series has the
//! label `queue`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use ::metrics::{Counter, Gauge, Histogram, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::time::Instant;

use super::buffered::BufferedHistogram;
use crate::pipeline::Outcome;

/// Time from the start of a delivery's processing to its outcome (histogram; `queue`,
/// `outcome`). OpenTelemetry: `messaging.process.duration`.
pub(crate) const PROCESS_DURATION: &str = "messaging_process_duration_seconds";
/// Deliveries received (counter). OpenTelemetry: `messaging.client.consumed.messages`.
pub(crate) const CONSUMED: &str = "messaging_client_consumed_messages_total";
/// Deliveries ended, by outcome (counter; `outcome`).
pub(crate) const DELIVERIES: &str = "iniesta_deliveries_total";
/// Now minus the message's `SentTimestamp`, at receipt (histogram).
pub(crate) const MESSAGE_AGE: &str = "iniesta_message_age_seconds";
/// Receipt to a successful ack (histogram).
pub(crate) const RECEIVE_TO_ACK: &str = "iniesta_receive_to_ack_seconds";
/// Deliveries not handled because they were handled already or are being handled
/// (counter; `reason`: `lock_busy`, `processed_marker`).
pub(crate) const DUPLICATES: &str = "iniesta_duplicates_suppressed_total";
/// One lock round trip for a received batch (histogram).
pub(crate) const LOCK_WAIT: &str = "iniesta_lock_wait_seconds";
/// Deliveries received and not yet settled (gauge), sampled.
pub(crate) const IN_FLIGHT: &str = "iniesta_in_flight_messages";
/// Unix time of the last successful receive (gauge).
pub(crate) const LAST_RECEIVE: &str = "iniesta_last_receive_timestamp_seconds";
/// Time since the last successful receive (gauge), sampled.
pub(crate) const SINCE_LAST_RECEIVE: &str = "iniesta_since_last_receive_seconds";
/// 1 while receiving is paused (gauge, no reason label: `/health/ready` and
/// `MetricsSnapshot::paused` name the reason), sampled.
pub(crate) const PAUSED: &str = "iniesta_paused";
/// Requests the transport sent, by action (counter; `action`), sampled.
pub(crate) const TRANSPORT_REQUESTS: &str = "iniesta_transport_requests_total";

/// Buckets of the duration histograms, in seconds: 1 ms to 5 min.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Buckets of the message age, in seconds: 10 ms to 4 days (SQS keeps a message up to 14).
const AGE_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
    345_600.0,
];

/// Outcomes get handles on first use, in a fixed table indexed by the variant: no lock and
/// no map on the hot path, and a new variant needs no edit here.
const OUTCOME_SLOTS: usize = 16;

/// Where handles are registered.
#[derive(Clone, Debug)]
pub(crate) enum Registry {
    /// The process's global recorder: the one the program installed, iniesta's Prometheus
    /// recorder installed by an earlier app, or none (every handle a no-op).
    Global,
    /// iniesta's own Prometheus recorder, installed as the global one by this app.
    OwnGlobal,
    /// iniesta's own Prometheus recorder, when another one was global already.
    Local(Arc<PrometheusRecorder>),
}

impl Registry {
    /// Runs `register` against this registry's recorder.
    pub(crate) fn register<T>(&self, register: impl FnOnce() -> T) -> T {
        match self {
            Registry::Global | Registry::OwnGlobal => register(),
            Registry::Local(recorder) => ::metrics::with_local_recorder(&**recorder, register),
        }
    }

    /// Whether only this app's listener renders the recorder, flushing the per-delivery
    /// histograms' buffers first (see [`BufferedHistogram`]).
    fn rendered_by_this_app(&self) -> bool {
        !matches!(self, Registry::Global)
    }
}

/// A Prometheus recorder with iniesta's buckets, installed as the global recorder unless the
/// program installed one already: then it stays iniesta's own, and the program's recorder
/// keeps receiving the handlers' own metrics (and none of iniesta's).
pub(crate) fn prometheus() -> (Registry, PrometheusHandle) {
    let recorder = PrometheusBuilder::new()
        .set_buckets(DURATION_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(MESSAGE_AGE.into()), AGE_BUCKETS))
        .expect("the bucket lists are not empty")
        .build_recorder();
    let handle = recorder.handle();
    match ::metrics::set_global_recorder(recorder) {
        Ok(()) => (Registry::OwnGlobal, handle),
        Err(taken) => {
            tracing::warn!(
                "a `metrics` recorder is installed already (the program's, or an earlier app's \
                 in this process): this app's /metrics serves its own metrics only, and the \
                 installed recorder gets none of them"
            );
            (Registry::Local(Arc::new(taken.into_inner())), handle)
        }
    }
}

/// An exported counter (`queue` label) for the `counters!` lines that name one; a no-op
/// handle for the others.
pub(super) fn counter(
    registry: &Registry,
    queue: &SharedString,
    metric: &[(&'static str, &'static str)],
) -> Counter {
    let Some(&(name, help)) = metric.first() else {
        return Counter::noop();
    };
    registry.register(|| {
        ::metrics::describe_counter!(name, help);
        ::metrics::counter!(name, "queue" => queue.clone())
    })
}

/// The handles of one outcome.
#[derive(Debug)]
struct OutcomeHandles {
    deliveries: Counter,
    duration: BufferedHistogram,
}

/// The facade handles of one app, labelled with its queue.
#[derive(Debug)]
pub(crate) struct Handles {
    registry: Registry,
    queue: SharedString,
    consumed: Counter,
    message_age: BufferedHistogram,
    receive_to_ack: BufferedHistogram,
    lock_wait: Histogram,
    duplicates_busy: Counter,
    duplicates_marker: Counter,
    last_receive: Gauge,
    outcomes: [OnceLock<OutcomeHandles>; OUTCOME_SLOTS],
}

impl Handles {
    pub(super) fn register(registry: &Registry, queue: &SharedString) -> Self {
        let q = || queue.clone();
        let buffered =
            |histogram| BufferedHistogram::new(histogram, registry.rendered_by_this_app());
        registry.register(|| {
            describe();
            Handles {
                consumed: ::metrics::counter!(CONSUMED, "queue" => q()),
                message_age: buffered(::metrics::histogram!(MESSAGE_AGE, "queue" => q())),
                receive_to_ack: buffered(::metrics::histogram!(RECEIVE_TO_ACK, "queue" => q())),
                lock_wait: ::metrics::histogram!(LOCK_WAIT, "queue" => q()),
                duplicates_busy: ::metrics::counter!(DUPLICATES, "queue" => q(), "reason" => "lock_busy"),
                duplicates_marker: ::metrics::counter!(DUPLICATES, "queue" => q(), "reason" => "processed_marker"),
                last_receive: ::metrics::gauge!(LAST_RECEIVE, "queue" => q()),
                outcomes: std::array::from_fn(|_| OnceLock::new()),
                registry: registry.clone(),
                queue: q(),
            }
        })
    }

    pub(super) fn received(&self, count: usize) {
        self.consumed.increment(count as u64);
        if let Ok(now) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            self.last_receive.set(now.as_secs_f64());
        }
    }

    pub(super) fn acked(&self, received_at: Instant) {
        self.receive_to_ack.record(received_at.elapsed());
    }

    pub(super) fn finished(&self, outcome: Outcome, started: Instant) {
        let handles = self.outcome(outcome);
        handles.deliveries.increment(1);
        handles.duration.record(started.elapsed());
        match outcome {
            Outcome::Busy => self.duplicates_busy.increment(1),
            Outcome::AlreadyProcessed => self.duplicates_marker.increment(1),
            _ => {}
        }
    }

    pub(super) fn message_ages(&self, sent: impl Iterator<Item = Option<SystemTime>>) {
        let now = SystemTime::now();
        for sent_at in sent.flatten() {
            // A producer's clock ahead of ours reads as age zero, not as an error.
            let age = now.duration_since(sent_at).unwrap_or(Duration::ZERO);
            self.message_age.record(age);
        }
    }

    pub(super) fn lock_waited(&self, waited: Duration) {
        self.lock_wait.record(waited);
    }

    /// Hands every buffered histogram sample to the recorder.
    fn flush(&self) {
        self.message_age.flush();
        self.receive_to_ack.flush();
        for handles in self.outcomes.iter().filter_map(OnceLock::get) {
            handles.duration.flush();
        }
    }

    fn outcome(&self, outcome: Outcome) -> &OutcomeHandles {
        // A fieldless enum: its discriminant indexes the table.
        let slot = (outcome as usize).min(OUTCOME_SLOTS - 1);
        self.outcomes[slot].get_or_init(|| {
            let label = outcome.as_str();
            self.registry.register(|| OutcomeHandles {
                deliveries: ::metrics::counter!(DELIVERIES, "queue" => self.queue.clone(), "outcome" => label),
                duration: BufferedHistogram::new(
                    ::metrics::histogram!(PROCESS_DURATION, "queue" => self.queue.clone(), "outcome" => label),
                    self.registry.rendered_by_this_app(),
                ),
            })
        })
    }

    /// Sets the gauges and counters that are read, not counted ("sampled" above), and hands
    /// the histograms' buffered samples to the recorder: called before each scrape of
    /// iniesta's listener, and every 10 s without one.
    pub(crate) fn sample(&self, sample: &Sample<'_>) {
        self.flush();
        let q = || self.queue.clone();
        self.registry.register(|| {
            ::metrics::gauge!(IN_FLIGHT, "queue" => q()).set(sample.in_flight as f64);
            let since = sample
                .since_last_receive
                .map_or(f64::NAN, |d| d.as_secs_f64());
            ::metrics::gauge!(SINCE_LAST_RECEIVE, "queue" => q()).set(since);
            let paused = ::metrics::gauge!(PAUSED, "queue" => q());
            paused.set(if sample.paused { 1.0 } else { 0.0 });
            for &(action, count) in sample.requests {
                ::metrics::counter!(TRANSPORT_REQUESTS, "queue" => q(), "action" => action)
                    .absolute(count);
            }
        });
    }
}

/// The values [`Handles::sample`] sets.
#[derive(Debug)]
pub(crate) struct Sample<'a> {
    pub(crate) in_flight: u64,
    pub(crate) since_last_receive: Option<Duration>,
    pub(crate) paused: bool,
    pub(crate) requests: &'a [(&'static str, u64)],
}

/// Units and help texts, registered once per recorder (repeats are ignored).
fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        PROCESS_DURATION,
        Unit::Seconds,
        "Time from the start of a delivery's processing (routing, handler) to its outcome."
    );
    describe_counter!(CONSUMED, "Deliveries received from the queue.");
    describe_counter!(DELIVERIES, "Deliveries ended, by outcome.");
    describe_histogram!(
        MESSAGE_AGE,
        Unit::Seconds,
        "Age of a message when received: now minus its SentTimestamp."
    );
    describe_histogram!(
        RECEIVE_TO_ACK,
        Unit::Seconds,
        "Time from receiving a delivery to its successful ack."
    );
    describe_counter!(
        DUPLICATES,
        "Deliveries not handled because another consumer holds their lock (lock_busy) or they were handled before (processed_marker)."
    );
    describe_histogram!(
        LOCK_WAIT,
        Unit::Seconds,
        "Time of one lock round trip for a received batch."
    );
    describe_gauge!(
        IN_FLIGHT,
        "Deliveries received and not yet settled (sampled at each scrape, or every 10 s without iniesta's listener)."
    );
    describe_gauge!(
        LAST_RECEIVE,
        Unit::Seconds,
        "Unix time of the last successful receive."
    );
    describe_gauge!(
        SINCE_LAST_RECEIVE,
        Unit::Seconds,
        "Time since the last successful receive (NaN before the first; sampled at each scrape, or every 10 s without iniesta's listener)."
    );
    describe_gauge!(
        PAUSED,
        "1 while receiving is paused (the lock has no quorum, the circuit is open)."
    );
    describe_counter!(
        TRANSPORT_REQUESTS,
        "Requests the transport sent to its broker, by action (SQS API operation)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_render_with_queue_and_outcome_labels() {
        let recorder = PrometheusBuilder::new()
            .set_buckets(DURATION_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        let registry = Registry::Local(Arc::new(recorder));
        let handles = Handles::register(&registry, &"orders".into());
        handles.finished(Outcome::Handled, Instant::now());
        handles.finished(Outcome::Busy, Instant::now());
        handles.finished(Outcome::Busy, Instant::now());
        handles.flush();
        let text = handle.render();
        assert!(
            text.contains(r#"iniesta_deliveries_total{queue="orders",outcome="busy"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"messaging_process_duration_seconds_count{queue="orders",outcome="handled"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"iniesta_duplicates_suppressed_total{queue="orders",reason="lock_busy"} 2"#
            ),
            "{text}"
        );
    }

    #[test]
    fn every_outcome_has_a_slot_of_its_own() {
        let all = [
            Outcome::Handled,
            Outcome::Failed,
            Outcome::NoHandler,
            Outcome::Busy,
            Outcome::AlreadyProcessed,
            Outcome::LockUnavailable,
            Outcome::LockLost,
            Outcome::Corrupt,
            Outcome::Returned,
            Outcome::DeadLettered,
        ];
        for (i, outcome) in all.into_iter().enumerate() {
            assert_eq!(outcome as usize, i);
            assert!((outcome as usize) < OUTCOME_SLOTS - 1, "grow OUTCOME_SLOTS");
        }
    }
}
