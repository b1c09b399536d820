//! Batch-send throughput against an SQS endpoint (moto in this repository): iniesta's
//! `SqsQueue::send_batch` as a ratio to a raw aws-sdk-sqs loop of `SendMessageBatch` requests
//! of ten, in paired rounds, each side on a fresh queue (which side goes first alternates). Both put the same
//! bytes on the wire: the body, the event key and the three id attributes iniesta adds (the raw
//! loop makes its own ids), one request per ten messages, so the emulator does the same work
//! for each and the ratio is iniesta's own cost: checking each message, building its ids and
//! answering each entry.
//!
//! ```sh
//! ./scripts/moto.sh 5000 &   # then export what it prints
//! cargo bench -p iniesta --bench producer_send [-- ROUNDS]
//! ```

use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use iniesta::OutgoingMessage;
use iniesta::producer::{
    CAUSATION_ID_ATTRIBUTE, CORRELATION_ID_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE, SqsProducer,
};

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

/// The raw loop a user would write: ten entries per request, the attributes iniesta sends.
async fn raw(client: &Client, url: &str) -> Duration {
    let text = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("data type set")
    };
    let event = text("Order.created");
    let start = Instant::now();
    for chunk in 0..MESSAGES / 10 {
        let entries = (0..10)
            .map(|i| {
                let id = text(&uuid::Uuid::new_v4().to_string());
                SendMessageBatchRequestEntry::builder()
                    .id(format!("{}", chunk * 10 + i))
                    .message_body(BODY)
                    .message_attributes("iniesta_pass", event.clone())
                    .message_attributes(MESSAGE_ID_ATTRIBUTE, id.clone())
                    .message_attributes(CORRELATION_ID_ATTRIBUTE, id.clone())
                    .message_attributes(CAUSATION_ID_ATTRIBUTE, id)
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

/// An empty queue for one side of one round.
struct Fresh {
    url: String,
    queue: iniesta::producer::SqsQueue,
}

impl Fresh {
    async fn new(client: &Client, producer: &SqsProducer, side: &str) -> Fresh {
        let name = format!("bench-send-{}-{side}", std::process::id());
        let url = client
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("a queue URL");
        let queue = producer.queue(&url).await.expect("the queue");
        Fresh { url, queue }
    }

    async fn delete(self, client: &Client) {
        let _ = client.delete_queue().queue_url(&self.url).send().await;
    }
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
    let producer = SqsProducer::new(client.clone());
    // Warm both paths (connections, the SDK's first-request work).
    let warm = Fresh::new(&client, &producer, "warm").await;
    raw(&client, &warm.url).await;
    iniesta(&warm.queue).await;
    warm.delete(&client).await;
    let (mut raw_rates, mut ours_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Each side sends to a queue of its own, created empty: the emulator slows as a queue
        // fills, and SQS allows one purge a minute. Each side goes first in every other round.
        let raw_queue = Fresh::new(&client, &producer, &format!("raw-{round}")).await;
        let ours_queue = Fresh::new(&client, &producer, &format!("ours-{round}")).await;
        let (raw_time, ours_time) = if round % 2 == 1 {
            let raw_time = raw(&client, &raw_queue.url).await;
            (raw_time, iniesta(&ours_queue.queue).await)
        } else {
            let ours_time = iniesta(&ours_queue.queue).await;
            (raw(&client, &raw_queue.url).await, ours_time)
        };
        raw_queue.delete(&client).await;
        ours_queue.delete(&client).await;
        let (raw_time, ours_time) = (raw_time.as_secs_f64(), ours_time.as_secs_f64());
        raw_rates.push(MESSAGES as f64 / raw_time);
        ours_rates.push(MESSAGES as f64 / ours_time);
        ratios.push(raw_time / ours_time);
        eprintln!("round {round}/{rounds}: raw {raw_time:.3} s, iniesta {ours_time:.3} s");
    }
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
