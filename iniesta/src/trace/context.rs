//! Trace context in message attributes: W3C `traceparent`/`tracestate` in and out, and SQS's
//! `AWSTraceHeader` (X-Ray format) in.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::{AttributeValue, Message, OutgoingMessage};

/// The W3C header naming the sender's span.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// The W3C header carrying vendor state along with `traceparent`.
pub(crate) const TRACESTATE: &str = "tracestate";

/// Whether `message` carries a trace context: a `traceparent` header or an `AWSTraceHeader`.
/// Two map lookups, so deliveries without one skip the parsing.
pub(crate) fn has_remote_parent(message: &Message) -> bool {
    message.header(TRACEPARENT).is_some() || aws_trace_header(message).is_some()
}

/// The span context the message's sender left in it, as a parent [`Context`]: the W3C
/// `traceparent` (with its `tracestate`) when it parses, else SQS's `AWSTraceHeader`. A
/// malformed or missing value gives a context without a span, and so no parent.
pub(crate) fn remote_parent(message: &Message) -> Context {
    let cx = TraceContextPropagator::new().extract(&Headers(message.headers()));
    if cx.has_active_span() {
        return cx;
    }
    match aws_trace_header(message).and_then(xray_span_context) {
        Some(span_context) => Context::new().with_remote_span_context(span_context),
        None => cx,
    }
}

fn aws_trace_header(message: &Message) -> Option<&str> {
    message.sqs()?.system.aws_trace_header.as_deref()
}

/// An X-Ray trace header (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;
/// Sampled=1`) as a span context, or `None` when it does not parse.
pub(crate) fn xray_span_context(header: &str) -> Option<SpanContext> {
    opentelemetry_aws::trace::xray_propagator::span_context_from_str(header.trim())
        .filter(SpanContext::is_valid)
}

/// Writes the W3C trace context of `cx` into `attributes`, when `cx` has a valid span.
/// `replace: false` keeps a `traceparent` already there (the sender set it on purpose).
pub(crate) fn inject_into(
    cx: &Context,
    attributes: &mut HashMap<String, AttributeValue>,
    replace: bool,
) {
    if !cx.span().span_context().is_valid() || (!replace && attributes.contains_key(TRACEPARENT)) {
        return;
    }
    // A stale tracestate must not ride along with the new traceparent.
    attributes.remove(TRACESTATE);
    TraceContextPropagator::new().inject_context(cx, &mut Attributes(attributes));
}

/// Writes the current span's trace context into `message`; see [`inject`](super::inject).
pub(crate) fn inject_current(message: &mut OutgoingMessage, replace: bool) {
    let span = tracing::Span::current();
    // No subscriber, or none that traces: nothing to carry, and nothing spent finding out.
    if span.is_disabled() {
        return;
    }
    let cx = tracing_opentelemetry::OpenTelemetrySpanExt::context(&span);
    inject_into(&cx, &mut message.attributes, replace);
}

/// Message headers read by a propagator; only text values count.
struct Headers<'a>(&'a HashMap<String, AttributeValue>);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(AttributeValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Outgoing attributes written by a propagator, as `String` attributes.
struct Attributes<'a>(&'a mut HashMap<String, AttributeValue>);

impl Injector for Attributes<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes an empty tracestate when there is none; SQS refuses empty
        // attribute values.
        if !value.is_empty() {
            self.0.insert(key.to_owned(), AttributeValue::String(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    use super::*;
    use crate::transport::{SqsDetails, SystemAttributes};
    use crate::{DecodeOptions, RawMessage, Receipt};

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn message(headers: &[(&str, &str)], aws_trace_header: Option<&str>) -> Message {
        let mut raw = RawMessage::new("m-1", Receipt::new("r"), "{}");
        for (name, value) in headers {
            raw.headers.insert((*name).to_owned(), (*value).into());
        }
        let details = SqsDetails {
            system: SystemAttributes {
                aws_trace_header: aws_trace_header.map(str::to_owned),
                ..SystemAttributes::default()
            },
            ..SqsDetails::default()
        };
        raw.raw = Some(Arc::new(details));
        raw.into_message(&DecodeOptions::default())
    }

    fn parent_of(message: &Message) -> SpanContext {
        remote_parent(message).span().span_context().clone()
    }

    #[test]
    fn traceparent_and_tracestate_become_the_parent() {
        let msg = message(
            &[
                (TRACEPARENT, &format!("00-{TRACE}-{PARENT}-01")),
                (TRACESTATE, "vendor=abc,other=1"),
            ],
            None,
        );
        assert!(has_remote_parent(&msg));
        let parent = parent_of(&msg);
        assert!(parent.is_remote());
        assert_eq!(parent.trace_id(), TraceId::from_hex(TRACE).unwrap());
        assert_eq!(parent.span_id(), SpanId::from_hex(PARENT).unwrap());
        assert!(parent.is_sampled());
        assert_eq!(parent.trace_state().get("vendor"), Some("abc"));
        assert_eq!(parent.trace_state().get("other"), Some("1"));
    }

    #[test]
    fn malformed_traceparents_give_no_parent() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let msg = message(&[(TRACEPARENT, bad)], None);
            assert!(!parent_of(&msg).is_valid(), "{bad:?} gave a parent");
        }
    }

    #[test]
    fn a_binary_traceparent_is_ignored() {
        let mut raw = RawMessage::new("m-1", Receipt::new("r"), "{}");
        raw.headers.insert(
            TRACEPARENT.into(),
            AttributeValue::Binary(bytes::Bytes::from_static(b"\x00\x01")),
        );
        let msg = raw.into_message(&DecodeOptions::default());
        assert!(!parent_of(&msg).is_valid());
    }

    #[test]
    fn aws_trace_header_becomes_the_parent() {
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let msg = message(&[], Some(header));
        assert!(has_remote_parent(&msg));
        let parent = parent_of(&msg);
        assert_eq!(
            parent.trace_id(),
            TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap()
        );
        assert_eq!(
            parent.span_id(),
            SpanId::from_hex("53995c3f42cd8ad8").unwrap()
        );
        assert!(parent.is_sampled() && parent.is_remote());
    }

    #[test]
    fn aws_trace_header_with_lineage_and_not_sampled() {
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a87bd80c:1|68fd508a:5";
        let parent = xray_span_context(header).expect("parses");
        assert!(!parent.is_sampled());
        assert_eq!(
            parent.trace_id(),
            TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap()
        );
    }

    #[test]
    fn malformed_aws_trace_headers_give_no_parent() {
        for bad in ["", "Root=", "Root=1-zz;Parent=53995c3f42cd8ad8", "nonsense"] {
            assert!(xray_span_context(bad).is_none(), "{bad:?}");
            assert!(!parent_of(&message(&[], Some(bad))).is_valid(), "{bad:?}");
        }
    }

    #[test]
    fn traceparent_wins_over_aws_trace_header() {
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let msg = message(
            &[(TRACEPARENT, &format!("00-{TRACE}-{PARENT}-01"))],
            Some(header),
        );
        assert_eq!(
            parent_of(&msg).trace_id(),
            TraceId::from_hex(TRACE).unwrap()
        );
        // A malformed traceparent falls back to the AWS header.
        let msg = message(&[(TRACEPARENT, "garbage")], Some(header));
        assert_eq!(
            parent_of(&msg).trace_id(),
            TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap()
        );
    }

    #[test]
    fn no_context_means_no_lookup_and_no_parent() {
        let msg = message(&[("tenant", "acme")], None);
        assert!(!has_remote_parent(&msg));
        assert!(!parent_of(&msg).is_valid());
    }

    #[test]
    fn inject_writes_traceparent_and_tracestate() {
        let span_context = SpanContext::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(PARENT).unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("vendor", "abc")]).unwrap(),
        );
        let cx = Context::new().with_remote_span_context(span_context);
        let mut attributes = HashMap::new();
        attributes.insert(TRACESTATE.to_owned(), "stale=1".into());
        inject_into(&cx, &mut attributes, true);
        assert_eq!(
            attributes[TRACEPARENT].as_str(),
            Some(format!("00-{TRACE}-{PARENT}-01").as_str())
        );
        assert_eq!(attributes[TRACESTATE].as_str(), Some("vendor=abc"));
        // Without `replace`, a traceparent the sender set stays.
        let mut kept = HashMap::new();
        kept.insert(TRACEPARENT.to_owned(), "mine".into());
        inject_into(&cx, &mut kept, false);
        assert_eq!(kept[TRACEPARENT].as_str(), Some("mine"));
        // No tracestate, no empty attribute.
        let plain = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(PARENT).unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ));
        let mut attributes = HashMap::new();
        inject_into(&plain, &mut attributes, true);
        assert!(attributes.contains_key(TRACEPARENT) && !attributes.contains_key(TRACESTATE));
        // No span, nothing written.
        let mut empty = HashMap::new();
        inject_into(&Context::new(), &mut empty, true);
        assert!(empty.is_empty());
    }
}
