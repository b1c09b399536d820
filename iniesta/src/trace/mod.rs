//! Traces: one `tracing` span per delivery, named and attributed after OpenTelemetry's
//! messaging semantic conventions, continuing the trace the sender started.
//!
//! # The delivery span
//!
//! Every delivery runs inside an `INFO` span named `process` (target `iniesta::trace`) from
//! its decoding to its settling. With the [`tracing_opentelemetry`] layer it becomes a
//! `consumer` span named `process <queue>` with these attributes:
//!
//! | attribute | value |
//! |---|---|
//! | `messaging.system` | [`Capabilities::system`](crate::transport::Capabilities::system): `aws_sqs`, `iniesta_memory` for the simulator |
//! | `messaging.destination.name` | the queue |
//! | `messaging.operation.type` | `process` |
//! | `messaging.message.id` | the queue's message id |
//! | `messaging.message.body.size` | body bytes |
//! | `iniesta.event` | the event key, when there is one |
//! | `iniesta.attempt` | the delivery count, 1 on the first |
//! | `iniesta.handler` | the handler that ran (recorded at the end) |
//! | `iniesta.outcome` | the [`Outcome`](crate::Outcome), snake_case (recorded at the end) |
//!
//! A failed or corrupt delivery gets an error status. The span's own start and end give its
//! duration. Its `DEBUG` children are `lock` (the lock decision, `iniesta.lock.result`),
//! `handler` (`code.function.name`) and `settle` (ack, give back or leave;
//! `messaging.operation.type = settle`): turn them on with `RUST_LOG=info,iniesta::trace=debug`.
//!
//! Log lines keep their own fields: the default log output of [`run`](crate::run) leaves these
//! spans out of its lines (every line names its message already), so without export they cost
//! nothing there.
//!
//! # Trace context
//!
//! The span's parent is the sender's span when the message carries one: a W3C `traceparent`
//! message attribute (with its `tracestate`), which also works inside an SNS envelope (its
//! `MessageAttributes` become the message's headers), or else SQS's `AWSTraceHeader` system
//! attribute (X-Ray's `Root=1-...;Parent=...;Sampled=1`). A malformed value is ignored: the
//! delivery then starts a trace of its own. [`inject`] carries the current span onward into a
//! message you send; [`MemoryQueue::send`](crate::transport::MemoryQueue::send) does it for
//! you.
//!
//! # Export
//!
//! With the `otlp` feature, the default subscriber of [`run`](crate::run) and
//! [`App::from_env`](crate::App::from_env) exports spans over OTLP (HTTP/protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, or
//! `OTEL_TRACES_EXPORTER=otlp`; `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turn it
//! off. The other `OTEL_*` variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`, ...) work as everywhere.
//! Spans pass the same `RUST_LOG` filter as log lines. A program with its own subscriber adds
//! the layer itself, with the crates re-exported here so the versions match:
//!
//! ```
//! use iniesta::trace::{opentelemetry::trace::TracerProvider as _, opentelemetry_sdk, tracing_opentelemetry};
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("my-service")));
//! # drop(subscriber);
//! ```

mod context;
mod export;
pub(crate) mod span;

pub(crate) use export::{ExportLayer, flush, layer as export_layer};

/// The OpenTelemetry API iniesta's spans and trace context speak.
#[doc(no_inline)]
pub use opentelemetry;
/// The OpenTelemetry SDK of the same version (tracer providers, exporters, propagators).
#[doc(no_inline)]
pub use opentelemetry_sdk;
/// The `tracing` layer that turns iniesta's spans into OpenTelemetry spans: use this one, a
/// layer of another version does not see the parent iniesta sets.
#[doc(no_inline)]
pub use tracing_opentelemetry;

use crate::{Message, OutgoingMessage};

/// Writes the current span's trace context into `message`: W3C `traceparent` and, when there
/// is one, `tracestate`, as `String` attributes (replacing any already there). Does nothing
/// when no OpenTelemetry layer traces the current span.
///
/// Call it on messages a handler sends, so their consumers continue the trace. It adds up to
/// two attributes (SQS allows ten per message).
///
/// # Examples
///
/// ```
/// use iniesta::{Message, OutgoingMessage};
///
/// async fn handle(msg: Message) {
///     let mut next = OutgoingMessage::new("OrderShipped.order").body(msg.body_bytes());
///     iniesta::trace::inject(&mut next);
///     // publish `next`...
/// }
/// ```
pub fn inject(message: &mut OutgoingMessage) {
    context::inject_current(message, true);
}

/// Writes the current span's trace context into `message` unless it carries a `traceparent`
/// already (the simulator's sends).
pub(crate) fn inject_if_absent(message: &mut OutgoingMessage) {
    context::inject_current(message, false);
}

/// The trace context the sender left in `message`, as iniesta reads it for the delivery span's
/// parent: its W3C `traceparent` and `tracestate` attributes, else SQS's `AWSTraceHeader`. A
/// context without a span when there is none, or it does not parse.
///
/// # Examples
///
/// ```
/// use iniesta::OutgoingMessage;
/// use iniesta::trace::opentelemetry::trace::TraceContextExt as _;
///
/// let msg = OutgoingMessage::new("Ping.demo")
///     .attribute("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
///     .into_message();
/// let parent = iniesta::trace::extract(&msg);
/// assert_eq!(
///     parent.span().span_context().trace_id().to_string(),
///     "4bf92f3577b34da6a3ce929d0e0e4736"
/// );
/// ```
pub fn extract(message: &Message) -> opentelemetry::Context {
    context::remote_parent(message)
}
