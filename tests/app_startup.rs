//! Startup against SQS that is down, late or wrong: transient failures are retried until
//! `INIESTA_STARTUP_TIMEOUT`, permanent ones end startup at once, and errors read as
//! sentences.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use iniesta::config::Config;
use iniesta::{App, Message};
use support::sqs;

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(move |name| map.get(name).cloned()).expect("valid settings")
}

/// A loopback port nothing listens on: connections are refused.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_then_fails_with_a_sentence_in_time() {
    sqs::require_aws_env();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let err = App::from_config(config(&[
        ("INIESTA_SQS_QUEUE_NAME", "orders"),
        ("INIESTA_SQS_ENDPOINT_URL", &endpoint),
        ("INIESTA_STARTUP_TIMEOUT", "3s"),
        ("INIESTA_LOCK_ENABLED", "false"),
    ]))
    .await
    .unwrap_err();
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(3)..Duration::from_secs(6)).contains(&waited),
        "gave up after {waited:?}"
    );
    // What `main() -> Result<(), iniesta::Error>` prints after "Error: ".
    let printed = format!("{err:?}");
    let expected = format!(
        "SQS queue `orders` at {endpoint} (region {}) did not answer within 3s: check that the \
         endpoint is right and reachable, or give it longer with INIESTA_STARTUP_TIMEOUT\n\n\
         Caused by:\n    GetQueueUrl failed: ",
        sqs::REGION
    );
    assert!(printed.starts_with(&expected), "{printed}");
    assert!(printed.contains("onnection refused"), "{printed}");
    assert!(!printed.contains("retryable"), "{printed}");
}

#[tokio::test]
async fn sqs_that_comes_up_late_is_waited_for() {
    sqs::require_aws_env();
    let queue = sqs::queue("startup-late").await;
    queue.send("Ping.startup", "{}").await;
    let mut proxy = sqs::Proxy::start().await;
    proxy.cut().await;
    let settings = config(&[
        ("INIESTA_SQS_QUEUE_NAME", &queue.name),
        ("INIESTA_SQS_ENDPOINT_URL", &proxy.url()),
        ("INIESTA_SQS_RECEIVE_MESSAGE_WAIT_TIME_SECONDS", "1"),
        ("INIESTA_STARTUP_TIMEOUT", "60s"),
        ("INIESTA_LOCK_ENABLED", "false"),
    ]);
    let starting = tokio::spawn(App::from_config(settings));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !starting.is_finished(),
        "startup gave up while SQS was down"
    );
    proxy.restore().await;
    let builder = tokio::time::timeout(Duration::from_secs(20), starting)
        .await
        .expect("startup connects soon after SQS is back")
        .unwrap()
        .expect("startup succeeds");

    let running = builder
        .registered_handlers(false)
        .handler("Ping.startup", |_: Message| async {})
        .build()
        .unwrap()
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.metrics().handled < 1 {
        assert!(Instant::now() < deadline, "{:?}", running.metrics());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await.unwrap();
    queue.delete().await;
}

#[tokio::test]
async fn a_missing_queue_ends_startup_at_once() {
    sqs::require_aws_env();
    let name = sqs::unique("startup-missing");
    let started = Instant::now();
    let err = App::from_config(config(&[
        ("INIESTA_SQS_QUEUE_NAME", &name),
        ("INIESTA_SQS_ENDPOINT_URL", &sqs::endpoint()),
        ("INIESTA_STARTUP_TIMEOUT", "60s"),
        ("INIESTA_LOCK_ENABLED", "false"),
    ]))
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let printed = format!("{err:?}");
    assert!(
        printed.starts_with(&format!("queue `{name}` does not exist")),
        "{printed}"
    );
    assert!(printed.contains("create it"), "{printed}");
}
