//! The delivery span and trace context, exported through OpenTelemetry's in-memory exporter:
//! messaging attributes, child spans, and the parent read from `traceparent` (also inside an
//! SNS envelope) on the simulator, and from SQS's `AWSTraceHeader` against moto (run with
//! `./scripts/test.sh`, which starts it).

mod support;

use std::sync::Arc;
use std::time::Duration;

use iniesta::testing::TestClient;
use iniesta::transport::MemoryQueue;
use iniesta::{App, BoxError, Message, Outcome, OutgoingMessage};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use support::sqs;
use support::wait::wait_for;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Spans of the current thread's deliveries, exported to memory. The runtime of these tests
/// runs on one thread, so the thread's default subscriber sees every task.
struct Traces {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _guard: DefaultGuard,
}

impl Traces {
    /// Delivery spans at INFO, their children at DEBUG, as `RUST_LOG=info,iniesta::trace=debug`.
    fn install() -> Traces {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("ops_traces"));
        let filter = Targets::new()
            .with_default(tracing::Level::INFO)
            .with_target("iniesta::trace", tracing::Level::DEBUG);
        let guard = tracing_subscriber::registry()
            .with(layer)
            .with(filter)
            .set_default();
        Traces {
            exporter,
            provider,
            _guard: guard,
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flushed");
        self.exporter.get_finished_spans().expect("spans")
    }

    /// The one span named `name`.
    fn only(&self, name: &str) -> SpanData {
        let spans = self.spans();
        let mut found: Vec<SpanData> = spans.iter().filter(|s| s.name == name).cloned().collect();
        assert_eq!(found.len(), 1, "one `{name}` span in {:#?}", names(&spans));
        found.remove(0)
    }
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn text(span: &SpanData, key: &str) -> String {
    match attribute(span, key) {
        Some(value) => value.as_str().into_owned(),
        None => panic!("no `{key}` on {span:#?}"),
    }
}

fn client(handler_fails: bool) -> TestClient {
    TestClient::new(App::builder().registered_handlers(false).handler(
        "Ping.demo",
        move |_: Message| async move {
            if handler_fails {
                Err::<(), BoxError>("downstream is down".into())
            } else {
                Ok(())
            }
        },
    ))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_delivery_span_carries_the_messaging_attributes() {
    let traces = Traces::install();
    let client = client(false);
    let report = client
        .deliver(OutgoingMessage::new("Ping.demo").body("{}"))
        .await;
    assert_eq!(report.outcome, Outcome::Handled);

    let span = traces.only("process test");
    assert_eq!(span.span_kind, SpanKind::Consumer);
    assert_eq!(text(&span, "messaging.system"), "iniesta_memory");
    assert_eq!(text(&span, "messaging.destination.name"), "test");
    assert_eq!(text(&span, "messaging.operation.type"), "process");
    assert_eq!(text(&span, "messaging.message.id"), &*report.message_id);
    assert_eq!(
        attribute(&span, "messaging.message.body.size"),
        Some(Value::I64(2))
    );
    assert_eq!(text(&span, "iniesta.event"), "Ping.demo");
    assert_eq!(attribute(&span, "iniesta.attempt"), Some(Value::I64(1)));
    assert_eq!(
        text(&span, "iniesta.handler"),
        &**report.handler.as_ref().unwrap()
    );
    assert_eq!(text(&span, "iniesta.outcome"), "handled");
    assert_eq!(span.status, Status::Unset);
    // No sender context: a trace of its own.
    assert_eq!(span.parent_span_id, SpanId::INVALID);
}

#[tokio::test(start_paused = true)]
async fn lock_handler_and_settle_are_children_of_the_delivery_span() {
    let traces = Traces::install();
    let client = client(false);
    let report = client.deliver(OutgoingMessage::new("Ping.demo")).await;

    let process = traces.only("process test");
    let trace_id = process.span_context.trace_id();
    let span_id = process.span_context.span_id();
    for name in ["lock", "handler", "settle"] {
        let child = traces.only(name);
        assert_eq!(child.span_context.trace_id(), trace_id, "{name}");
        assert_eq!(child.parent_span_id, span_id, "{name}");
        assert!(child.start_time >= process.start_time, "{name}");
        assert!(child.end_time <= process.end_time, "{name}");
    }
    assert_eq!(
        text(&traces.only("lock"), "iniesta.lock.result"),
        "acquired"
    );
    assert_eq!(
        text(&traces.only("handler"), "code.function.name"),
        &**report.handler.as_ref().unwrap()
    );
    assert_eq!(
        text(&traces.only("settle"), "messaging.operation.type"),
        "settle"
    );
    assert_eq!(text(&traces.only("settle"), "iniesta.settle"), "Done");
}

#[tokio::test(start_paused = true)]
async fn a_traceparent_becomes_the_parent_with_its_tracestate() {
    let traces = Traces::install();
    let client = client(false);
    client
        .deliver(
            OutgoingMessage::new("Ping.demo")
                .attribute("traceparent", format!("00-{TRACE}-{PARENT}-01"))
                .attribute("tracestate", "vendor=abc"),
        )
        .await;

    let span = traces.only("process test");
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(span.parent_span_is_remote);
    assert_eq!(span.span_context.trace_state().get("vendor"), Some("abc"));
    // The children follow into the sender's trace.
    let handler = traces.only("handler");
    assert_eq!(
        handler.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn a_traceparent_inside_an_sns_envelope_becomes_the_parent() {
    let traces = Traces::install();
    let client = client(false);
    let envelope = serde_json::json!({
        "Type": "Notification",
        "MessageId": "7f4c8a2e-3b1d-4e5f-9a6b-0c1d2e3f4a5b",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:pings",
        "Message": "{}",
        "MessageAttributes": {
            "iniesta_pass": {"Type": "String", "Value": "Ping.demo"},
            "traceparent": {"Type": "String", "Value": format!("00-{TRACE}-{PARENT}-01")}
        }
    });
    let report = client
        .deliver(OutgoingMessage::without_event().body(envelope.to_string()))
        .await;
    assert_eq!(report.outcome, Outcome::Handled);

    let span = traces.only("process test");
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(PARENT).unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_malformed_traceparent_is_ignored() {
    let traces = Traces::install();
    let client = client(false);
    for bad in [
        "",
        "nonsense",
        "00-zz-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ] {
        let report = client
            .deliver(OutgoingMessage::new("Ping.demo").attribute("traceparent", bad))
            .await;
        assert_eq!(report.outcome, Outcome::Handled, "{bad:?}");
    }
    let spans: Vec<SpanData> = traces
        .spans()
        .into_iter()
        .filter(|s| s.name == "process test")
        .collect();
    assert_eq!(spans.len(), 4);
    for span in spans {
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert_ne!(
            span.span_context.trace_id(),
            TraceId::from_hex(TRACE).unwrap()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_delivery_has_an_error_status() {
    let traces = Traces::install();
    let client = client(true);
    let report = client.deliver(OutgoingMessage::new("Ping.demo")).await;
    assert_eq!(report.outcome, Outcome::Failed);

    let span = traces.only("process test");
    assert_eq!(text(&span, "iniesta.outcome"), "failed");
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    assert_eq!(text(&traces.only("settle"), "iniesta.settle"), "Retry");
}

#[tokio::test(start_paused = true)]
async fn a_message_sent_by_a_handler_continues_the_trace() {
    let traces = Traces::install();
    let next = MemoryQueue::builder().name("next").build();
    let out = Arc::new(next.clone());
    let client = TestClient::new(App::builder().registered_handlers(false).handler(
        "Ping.demo",
        move |_: Message| {
            let out = Arc::clone(&out);
            async move {
                out.send(OutgoingMessage::new("Pong.demo"));
            }
        },
    ))
    .unwrap();
    client
        .deliver(
            OutgoingMessage::new("Ping.demo")
                .attribute("traceparent", format!("00-{TRACE}-{PARENT}-01")),
        )
        .await;

    let sent = iniesta::transport::Transport::receive(&next, 1)
        .await
        .unwrap();
    let traceparent = sent[0].headers["traceparent"].as_str().unwrap().to_owned();
    let handler = traces.only("handler");
    assert_eq!(
        traceparent,
        format!("00-{TRACE}-{}-01", handler.span_context.span_id())
    );
}

#[tokio::test]
async fn an_aws_trace_header_from_sqs_becomes_the_parent() {
    let traces = Traces::install();
    let queue = sqs::queue("traces-xray").await;
    let running = support::app::builder()
        .transport(queue.transport().await)
        .without_lock()
        .handler("Ping.demo", |_: Message| async {})
        .build()
        .unwrap()
        .spawn();
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    queue
        .client
        .send_message()
        .queue_url(&queue.url)
        .message_body("{}")
        .message_attributes(sqs::EVENT_ATTRIBUTE, sqs::string_attribute("Ping.demo"))
        .message_system_attributes(
            aws_sdk_sqs::types::MessageSystemAttributeNameForSends::AwsTraceHeader,
            aws_sdk_sqs::types::MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(header)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("SendMessage with AWSTraceHeader");
    wait_for("1 handled", Duration::from_secs(30), || async {
        running.metrics().handled >= 1
    })
    .await;
    running.shutdown().await.unwrap();

    let span = traces.only(&format!("process {}", queue.name));
    assert_eq!(text(&span, "messaging.system"), "aws_sqs");
    assert_eq!(text(&span, "messaging.destination.name"), queue.name);
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap()
    );
    assert_eq!(
        span.parent_span_id,
        SpanId::from_hex("53995c3f42cd8ad8").unwrap()
    );
}

async fn slow_ping() {
    tokio::time::sleep(Duration::from_secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn a_delivery_given_back_before_its_handler_started_has_a_settle_span() {
    let traces = Traces::install();
    let queue = MemoryQueue::builder()
        .name("waiting")
        .wait_time(Duration::from_secs(1))
        .build();
    for _ in 0..2 {
        queue.send(OutgoingMessage::new("Slow.demo"));
    }
    // A limit of one: the second delivery waits for the first, and shutdown gives it back.
    let running = App::builder()
        .registered_handlers(false)
        .transport(queue.clone())
        .handler("Slow.demo", slow_ping)
        .handler_concurrency("slow_ping", 1)
        .build()
        .unwrap()
        .spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.shutdown_token().cancel();
    running.wait().await.unwrap();

    let spans = traces.spans();
    let returned = spans
        .iter()
        .find(|s| {
            s.name == "process waiting"
                && attribute(s, "iniesta.outcome").is_some_and(|o| o.as_str() == "returned")
        })
        .unwrap_or_else(|| panic!("a returned delivery in {:#?}", names(&spans)));
    let settle = spans
        .iter()
        .find(|s| s.name == "settle" && s.parent_span_id == returned.span_context.span_id())
        .unwrap_or_else(|| panic!("a settle span under the returned delivery: {spans:#?}"));
    assert_eq!(text(settle, "iniesta.settle"), "Return");
}
