//! Batch-send throughput against an SQS endpoint (moto in this repository): iniesta's
//! `SqsQueue::send_batch` as a ratio to a raw aws-sdk-sqs loop of `SendMessageBatch` requests
//! of ten, the same messages, in paired rounds on one queue. iniesta also checks each message,
//! gives it three id attributes and answers each entry; both make one request per ten messages.
//!
//! ```sh
//! ./scripts/moto.sh 5000 &   # then export what it prints
//! cargo bench -p iniesta --bench producer_send [-- ROUNDS]
//! ```

use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use iniesta::OutgoingMessage;
use iniesta::producer::SqsProducer;

/// Messages per round and side.
const MESSAGES: usize = 500;
const DEFAULT_ROUNDS: usize = 5;
const BODY: &str =
    r#"{"order":12345,"customer":"c-678","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}"#;

fn client(endpoint: &str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// The raw loop a user would write: ten entries per request, the event key attribute only.
async fn raw(client: &Client, url: &str) -> Duration {
    let event = MessageAttributeValue::builder()
        .data_type("String")
        .string_value("Order.created")
        .build()
        .expect("data type set");
    let start = Instant::now();
    for chunk in 0..MESSAGES / 10 {
        let entries = (0..10)
            .map(|i| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("{}", chunk * 10 + i))
                    .message_body(BODY)
                    .message_attributes("iniesta_pass", event.clone())
                    .build()
                    .expect("id and body set")
            })
            .collect();
        let out = client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("SendMessageBatch");
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }
    start.elapsed()
}

/// The same messages through iniesta's producer, one call.
async fn iniesta(queue: &iniesta::producer::SqsQueue) -> Duration {
    let messages = (0..MESSAGES)
        .map(|_| OutgoingMessage::new("Order.created").body(BODY))
        .collect();
    let start = Instant::now();
    let results = queue.send_batch(messages).await;
    let elapsed = start.elapsed();
    assert!(results.iter().all(Result::is_ok), "a send failed");
    elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let endpoint = std::env::var("INIESTA_TEST_SQS_ENDPOINT").unwrap_or_else(|_| {
        panic!("set INIESTA_TEST_SQS_ENDPOINT to an SQS endpoint (./scripts/moto.sh prints it)")
    });
    let client = client(&endpoint);
    let name = format!("bench-send-{}", std::process::id());
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("a queue URL");
    let queue = SqsProducer::new(client.clone())
        .queue(&url)
        .await
        .expect("the queue");
    // Warm both paths (connections, the SDK's first-request work).
    raw(&client, &url).await;
    iniesta(&queue).await;
    let (mut raw_rates, mut ours_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let raw_time = raw(&client, &url).await.as_secs_f64();
        let ours_time = iniesta(&queue).await.as_secs_f64();
        raw_rates.push(MESSAGES as f64 / raw_time);
        ours_rates.push(MESSAGES as f64 / ours_time);
        ratios.push(raw_time / ours_time);
        eprintln!("round {round}/{rounds}: raw {raw_time:.3} s, iniesta {ours_time:.3} s");
        // Keep the emulator's queue small between rounds.
        let _ = client.purge_queue().queue_url(&url).send().await;
    }
    let _ = client.delete_queue().queue_url(&url).send().await;
    println!("batch send, {MESSAGES} messages per side and round, {rounds} rounds, {endpoint}");
    println!(
        "raw SendMessageBatch loop: {:>8.0} msg/s (median)",
        median(raw_rates)
    );
    println!(
        "iniesta send_batch:        {:>8.0} msg/s (median)",
        median(ours_rates)
    );
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(0.0, f64::max);
    println!(
        "ratio iniesta / raw:       {:>8.2} (median of rounds; range {low:.2}-{high:.2})",
        median(ratios)
    );
}
