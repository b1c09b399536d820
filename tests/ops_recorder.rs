//! A program that installed its own `metrics` recorder: apps without a listener record into
//! it (the sampled gauges too, on a timer); an app with a listener keeps its own Prometheus
//! recorder and leaves the program's alone.
//! Its own binary: the global recorder can be set once per process.

mod support;

use iniesta::transport::MemoryQueue;
use iniesta::{Message, OutgoingMessage};
use metrics_exporter_prometheus::PrometheusBuilder;
use support::app::builder;
use support::http::{get, sample};
use support::wait::{secs, wait_until};

#[tokio::test(start_paused = true)]
async fn the_programs_recorder_gets_iniestas_metrics_unless_iniesta_serves_its_own() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let programs = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the first recorder of this process");

    // No listener: the metrics go to the program's recorder.
    let plain = MemoryQueue::builder().name("ops-recorder-plain").build();
    plain.send(OutgoingMessage::new("Work"));
    let app = builder()
        .transport(plain)
        .handler("Work", |_: Message| async {})
        .build()
        .unwrap()
        .spawn();
    wait_until("handled", secs(5), || app.metrics().handled == 1).await;
    // Nobody scrapes: the gauges read rather than counted are sampled every 10 s.
    tokio::time::sleep(secs(11)).await;
    let text = programs.render();
    let q = [("queue", "ops-recorder-plain")];
    assert_eq!(
        sample(&text, "iniesta_in_flight_messages", &q),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "iniesta_paused", &q), Some(0.0), "{text}");
    let since = sample(&text, "iniesta_since_last_receive_seconds", &q);
    assert!(
        since.is_some_and(|s| (0.0..11.0).contains(&s)),
        "sampled after a receive: {text}"
    );
    app.shutdown().await.unwrap();
    let text = programs.render();
    let handled = [("queue", "ops-recorder-plain"), ("outcome", "handled")];
    assert_eq!(
        sample(&text, "iniesta_deliveries_total", &handled),
        Some(1.0),
        "{text}"
    );

    // A listener: iniesta's own recorder serves it; the program's sees none of it.
    let served = MemoryQueue::builder().name("ops-recorder-served").build();
    served.send(OutgoingMessage::new("Work"));
    let app = builder()
        .transport(served)
        .handler("Work", |_: Message| async {})
        .metrics_addr(([127, 0, 0, 1], 0).into())
        .build()
        .unwrap()
        .spawn();
    wait_until("handled", secs(5), || app.metrics().handled == 1).await;
    let scrape = get(app.metrics_addr().unwrap(), "/metrics").await.body;
    app.shutdown().await.unwrap();
    let handled = [("queue", "ops-recorder-served"), ("outcome", "handled")];
    assert_eq!(
        sample(&scrape, "iniesta_deliveries_total", &handled),
        Some(1.0),
        "{scrape}"
    );
    assert!(
        !scrape.contains("ops-recorder-plain"),
        "the listener serves its own recorder: {scrape}"
    );
    assert!(!programs.render().contains("ops-recorder-served"));
}
