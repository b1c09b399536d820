//! The delivery span and its child spans (lock, handler, settle), with the attributes of
//! OpenTelemetry's messaging semantic conventions.
//!
//! Cost: a disabled span is a check of a cached callsite interest, its fields are not even
//! evaluated. The remote parent is only parsed when the span is enabled and the message
//! carries a trace header. The span name `process <queue>` is formatted once per consumer.

use std::fmt;

use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::context;
use crate::lock::Acquisition;
use crate::transport::Capabilities;
use crate::{LockError, Message, Outcome, Report};

/// The target of every span iniesta opens: `RUST_LOG=iniesta::trace=debug` adds the child
/// spans to the delivery spans.
pub(crate) const TARGET: &str = "iniesta::trace";

/// What the delivery spans of one consumer share, built once with the pipeline.
#[derive(Debug)]
pub(crate) struct DeliverySpans {
    /// `process <queue>`, the span name the conventions ask for.
    name: Box<str>,
    queue: Box<str>,
    system: &'static str,
}

impl DeliverySpans {
    pub(crate) fn new(capabilities: &Capabilities) -> Self {
        DeliverySpans {
            name: format!("process {}", capabilities.name).into(),
            queue: capabilities.name.as_str().into(),
            system: capabilities.system,
        }
    }

    /// The span of one delivery, from its decoding to its settling; a root span, or the child
    /// of the context the sender left in the message (see [`context::remote_parent`]).
    pub(crate) fn start(&self, message: &Message) -> Span {
        let span = tracing::info_span!(
            target: TARGET,
            // A delivery starts its own trace (or continues the sender's), never the poller's.
            parent: None,
            "process",
            otel.name = &*self.name,
            otel.kind = "consumer",
            otel.status_code = Empty,
            messaging.system = self.system,
            messaging.destination.name = &*self.queue,
            messaging.operation.type = "process",
            messaging.message.id = message.id(),
            // Signed: OpenTelemetry attributes have no unsigned integers.
            messaging.message.body.size = i64::try_from(message.body().len()).unwrap_or(i64::MAX),
            iniesta.event = message.event(),
            iniesta.attempt = i64::from(message.delivery_count()),
            iniesta.handler = Empty,
            iniesta.outcome = Empty,
        );
        if !span.is_disabled() && context::has_remote_parent(message) {
            // Fails only without an OpenTelemetry layer, where there is no parent to set.
            let _ = span.set_parent(context::remote_parent(message));
        }
        span
    }

    /// The span of a delivery that could not be decoded: closed at once, outcome `corrupt`.
    pub(crate) fn corrupt(&self, message_id: &str) {
        tracing::info_span!(
            target: TARGET,
            parent: None,
            "process",
            otel.name = &*self.name,
            otel.kind = "consumer",
            otel.status_code = "error",
            messaging.system = self.system,
            messaging.destination.name = &*self.queue,
            messaging.operation.type = "process",
            messaging.message.id = message_id,
            iniesta.outcome = Outcome::Corrupt.as_str(),
        );
    }
}

/// Records how a delivery ended on its span: handler, outcome, and an error status when the
/// handler failed.
pub(crate) fn finish(span: &Span, report: &Report) {
    if span.is_disabled() {
        return;
    }
    if let Some(handler) = &report.handler {
        span.record("iniesta.handler", &**handler);
    }
    span.record("iniesta.outcome", report.outcome.as_str());
    if matches!(
        report.outcome,
        Outcome::Failed | Outcome::Corrupt | Outcome::DeadLettered
    ) {
        span.record("otel.status_code", "error");
    }
}

/// The lock decision of one delivery (the batch asks for all its keys in one round trip, so
/// every delivery of the batch waited as long). A child of the delivery span.
pub(crate) fn lock(delivery: &Span) -> Span {
    if delivery.is_disabled() {
        return Span::none();
    }
    tracing::debug_span!(target: TARGET, parent: delivery, "lock", iniesta.lock.result = Empty)
}

/// Records what the lock said on a [`lock`] span.
pub(crate) fn record_lock(span: &Span, acquisition: &Result<Acquisition, LockError>) {
    let result = match acquisition {
        Ok(Acquisition::Acquired(_)) => "acquired",
        Ok(Acquisition::AlreadyProcessed) => "already_processed",
        Ok(Acquisition::Busy { .. }) => "busy",
        Err(_) => "unavailable",
    };
    span.record("iniesta.lock.result", result);
}

/// The handler's run, inside the current delivery span.
pub(crate) fn handler(name: &str) -> Span {
    tracing::debug_span!(target: TARGET, "handler", code.function.name = name)
}

/// Settling a delivery (ack, give back, leave), inside the current delivery span.
pub(crate) fn settle(how: &dyn fmt::Debug) -> Span {
    tracing::debug_span!(
        target: TARGET,
        "settle",
        messaging.operation.type = "settle",
        iniesta.settle = ?how,
    )
}
