//! Reaching the SQS emulator (moto) for tests.
//!
//! `./scripts/test.sh` installs moto, starts it on a free port and exports its URL as
//! `INIESTA_TEST_SQS_ENDPOINT`. A test that runs without it fails with the command that
//! starts it: it never passes silently.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue as SnsAttributeValue;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use iniesta::transport::sqs::{SqsTransport, SqsTransportBuilder};

/// The variable `./scripts/test.sh` sets to moto's URL.
pub const ENDPOINT_VAR: &str = "INIESTA_TEST_SQS_ENDPOINT";
/// The region every test client uses.
pub const REGION: &str = "us-east-1";
/// The event-key attribute.
pub const EVENT_ATTRIBUTE: &str = "iniesta_pass";

const HOW_TO_START: &str = "run the tests with `./scripts/test.sh` (it installs moto into \
.ci/.cache/moto-venv and starts it; `QUICK=1 ./scripts/test.sh --test <name>` runs one test \
file), or run `./scripts/moto.sh` in another shell and export what it prints:\n    \
export INIESTA_TEST_SQS_ENDPOINT=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=test \
AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1";

/// moto's URL, checked once per test binary to accept connections.
///
/// # Panics
///
/// When `INIESTA_TEST_SQS_ENDPOINT` is unset or nothing listens there, with the command that
/// starts moto.
pub fn endpoint() -> String {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            let url = std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
                panic!(
                    "\n\n{ENDPOINT_VAR} is not set: the SQS tests need the moto emulator.\n\
                     {HOW_TO_START}\n\n"
                )
            });
            let authority = url
                .split_once("://")
                .map_or(url.as_str(), |(_, rest)| rest)
                .split('/')
                .next()
                .unwrap_or_default();
            let reachable = authority
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .is_some_and(|addr| {
                    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
                });
            assert!(
                reachable,
                "\n\n{ENDPOINT_VAR}={url}, but nothing answers there: is moto running?\n\
                 {HOW_TO_START}\n\n"
            );
            url
        })
        .clone()
}

/// Panics, with the command that sets them, when the AWS variables the default credential
/// chain reads are missing (only tests of `SqsTransport::connect(&SqsConfig)` need them).
pub fn require_aws_env() {
    for var in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            std::env::var_os(var).is_some(),
            "\n\n{var} is not set: this test loads the AWS default chain.\n{HOW_TO_START}\n\n"
        );
    }
}

fn credentials() -> aws_sdk_sqs::config::Credentials {
    aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "iniesta-tests")
}

/// An SQS client for moto: static credentials `test`/`test`, region us-east-1.
pub fn client() -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(endpoint())
        .build();
    Client::from_conf(config)
}

/// An SNS client for moto.
pub fn sns_client() -> aws_sdk_sns::Client {
    let config = aws_sdk_sns::Config::builder()
        .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
        .region(aws_sdk_sns::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(endpoint())
        .build();
    aws_sdk_sns::Client::from_conf(config)
}

/// `prefix` plus a random suffix: every test gets its own queue and topic names.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{prefix}-{:016x}", hasher.finish())
}

/// A queue created for one test.
#[derive(Debug, Clone)]
pub struct TestQueue {
    /// The client that created it (not counted by any transport).
    pub client: Client,
    /// The queue's name.
    pub name: String,
    /// The queue's URL.
    pub url: String,
    /// The queue's ARN (for redrive policies and SNS subscriptions).
    pub arn: String,
}

/// Approximate message counts of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `ApproximateNumberOfMessages`.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`.
    pub in_flight: u64,
    /// `ApproximateNumberOfMessagesDelayed`.
    pub delayed: u64,
}

impl Counts {
    /// All messages the queue holds.
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// Creates a standard queue named `prefix-<random>`.
pub async fn queue(prefix: &str) -> TestQueue {
    queue_with(prefix, &[]).await
}

/// Creates a queue with the given attributes (`VisibilityTimeout`, `RedrivePolicy`, ...).
///
/// A name ending in `.fifo` is not needed: use [`fifo_queue`].
pub async fn queue_with(prefix: &str, attributes: &[(QueueAttributeName, String)]) -> TestQueue {
    create(unique(prefix), attributes).await
}

/// Creates a FIFO queue with content-based deduplication.
pub async fn fifo_queue(prefix: &str) -> TestQueue {
    create(
        format!("{}.fifo", unique(prefix)),
        &[
            (QueueAttributeName::FifoQueue, "true".into()),
            (QueueAttributeName::ContentBasedDeduplication, "true".into()),
        ],
    )
    .await
}

/// Creates a queue whose redrive policy moves a message to a new dead-letter queue after
/// `max_receive_count` receives. Returns `(queue, dlq)`.
pub async fn queue_with_dlq(
    prefix: &str,
    max_receive_count: u32,
    visibility_timeout: Duration,
) -> (TestQueue, TestQueue) {
    let dlq = queue(&format!("{prefix}-dlq")).await;
    let policy = serde_json::json!({
        "deadLetterTargetArn": dlq.arn,
        "maxReceiveCount": max_receive_count.to_string(),
    })
    .to_string();
    let main = queue_with(
        prefix,
        &[
            (QueueAttributeName::RedrivePolicy, policy),
            (
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout.as_secs().to_string(),
            ),
        ],
    )
    .await;
    (main, dlq)
}

/// Creates a queue with the given visibility timeout.
pub async fn queue_with_visibility(prefix: &str, visibility_timeout: Duration) -> TestQueue {
    queue_with(
        prefix,
        &[(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.as_secs().to_string(),
        )],
    )
    .await
}

async fn create(name: String, attributes: &[(QueueAttributeName, String)]) -> TestQueue {
    let client = client();
    let url = client
        .create_queue()
        .queue_name(&name)
        .set_attributes(Some(attributes.iter().cloned().collect()))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateQueue {name}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })
        .queue_url
        .expect("CreateQueue returns the URL");
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes QueueArn")
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("queue has an ARN");
    TestQueue {
        client,
        name,
        url,
        arn,
    }
}

/// The text of a received message's `String` or `Number` attribute `name`.
pub fn attribute_text<'a>(message: &'a aws_sdk_sqs::types::Message, name: &str) -> Option<&'a str> {
    message.message_attributes()?.get(name)?.string_value()
}

/// A String message attribute.
pub fn string_attribute(value: &str) -> MessageAttributeValue {
    typed_attribute("String", value)
}

/// A message attribute with a given `DataType` (`Number`, `String.Array`, ...).
pub fn typed_attribute(data_type: &str, value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .expect("data type is set")
}

/// A Binary message attribute.
pub fn binary_attribute(value: &[u8]) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("Binary")
        .binary_value(aws_sdk_sqs::primitives::Blob::new(value))
        .build()
        .expect("data type is set")
}

impl TestQueue {
    /// A transport builder on this queue: its own counted client, 1 s long polls.
    pub fn transport_builder(&self) -> SqsTransportBuilder {
        SqsTransport::builder(client())
            .queue_url(&self.url)
            .queue_name(&self.name)
            .wait_time(Duration::from_secs(1))
    }

    /// A connected transport on this queue (see [`transport_builder`](Self::transport_builder)).
    pub async fn transport(&self) -> SqsTransport {
        self.transport_builder()
            .connect()
            .await
            .expect("transport connects to the test queue")
    }

    /// Sends `body` with `iniesta_pass` set to `event`; returns the message id.
    pub async fn send(&self, event: &str, body: &str) -> String {
        self.send_with(body, [(EVENT_ATTRIBUTE, string_attribute(event))])
            .await
    }

    /// Sends `body` with the given attributes; returns the message id.
    pub async fn send_with<'a>(
        &self,
        body: &str,
        attributes: impl IntoIterator<Item = (&'a str, MessageAttributeValue)>,
    ) -> String {
        let attributes: HashMap<String, MessageAttributeValue> = attributes
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "SendMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })
            .message_id
            .expect("SendMessage returns the id")
    }

    /// Sends a message to this FIFO queue in `group`, with a unique deduplication id (moto
    /// sets `SequenceNumber` only with an explicit one); returns the message id.
    pub async fn send_fifo(&self, event: &str, body: &str, group: &str) -> String {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(unique("dedup"))
            .message_attributes(EVENT_ATTRIBUTE, string_attribute(event))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "SendMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })
            .message_id
            .expect("SendMessage returns the id")
    }

    /// Sends `bodies` with `iniesta_pass` set to `event`, ten per `SendMessageBatch`.
    pub async fn send_many(&self, event: &str, bodies: impl IntoIterator<Item = String>) {
        let entries = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .message_attributes(EVENT_ATTRIBUTE, string_attribute(event))
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        self.send_entries(entries).await;
    }

    /// Sends `entries` in order, ten per `SendMessageBatch` (their ids must differ).
    pub async fn send_entries(&self, entries: Vec<SendMessageBatchRequestEntry>) {
        for chunk in entries.chunks(10) {
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(chunk.to_vec()))
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "SendMessageBatch: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                });
            assert!(
                output.failed.is_empty(),
                "SendMessageBatch: {:?}",
                output.failed
            );
        }
    }

    /// The queue's approximate counts.
    pub async fn counts(&self) -> Counts {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("GetQueueAttributes counts")
            .attributes
            .unwrap_or_default();
        let get = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Counts {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        }
    }

    /// All messages the queue holds, visible or not.
    pub async fn count(&self) -> u64 {
        self.counts().await.total()
    }

    /// Receives up to `max` messages directly (not through a transport), with all attributes.
    pub async fn receive_raw(&self, max: i32, wait: Duration) -> Vec<aws_sdk_sqs::types::Message> {
        self.client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait.as_secs() as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("ReceiveMessage")
            .messages
            .unwrap_or_default()
    }

    /// Receives (and deletes) until `want` messages came or 15 s passed, then what else
    /// arrives within a second, so a message that should not be there has time to show.
    pub async fn take(&self, want: usize) -> Vec<aws_sdk_sqs::types::Message> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while got.len() < want && tokio::time::Instant::now() < deadline {
            got.extend(self.take_once(Duration::from_secs(1)).await);
        }
        got.extend(self.take_once(Duration::from_secs(1)).await);
        got
    }

    /// The one message that arrives within 15 s (deleted).
    ///
    /// # Panics
    ///
    /// When none arrives, or more than one.
    pub async fn take_one(&self) -> aws_sdk_sqs::types::Message {
        let mut got = self.take(1).await;
        assert_eq!(got.len(), 1, "one message in {}: {got:?}", self.name);
        got.remove(0)
    }

    /// Receives up to ten messages within `wait` (one long poll) and deletes them.
    pub async fn take_once(&self, wait: Duration) -> Vec<aws_sdk_sqs::types::Message> {
        let batch = self.receive_raw(10, wait).await;
        for message in &batch {
            self.client
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(message.receipt_handle().expect("a receipt handle"))
                .send()
                .await
                .expect("DeleteMessage");
        }
        batch
    }

    /// Deletes the queue.
    pub async fn delete(&self) {
        let _ = self.client.delete_queue().queue_url(&self.url).send().await;
    }
}

/// An SNS topic created for one test.
#[derive(Debug, Clone)]
pub struct TestTopic {
    /// The client that created it.
    pub client: aws_sdk_sns::Client,
    /// The topic's ARN.
    pub arn: String,
}

/// Creates a topic named `prefix-<random>`.
pub async fn topic(prefix: &str) -> TestTopic {
    let client = sns_client();
    let arn = client
        .create_topic()
        .name(unique(prefix))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("CreateTopic returns the ARN");
    TestTopic { client, arn }
}

impl TestTopic {
    /// Subscribes `queue`; `raw` turns on `RawMessageDelivery` (the message is the SQS body
    /// and SNS attributes become SQS attributes), otherwise the body is the SNS envelope.
    pub async fn subscribe(&self, queue: &TestQueue, raw: bool) -> String {
        let mut request = self
            .client
            .subscribe()
            .topic_arn(&self.arn)
            .protocol("sqs")
            .endpoint(&queue.arn)
            .return_subscription_arn(true);
        if raw {
            request = request.attributes("RawMessageDelivery", "true");
        }
        request
            .send()
            .await
            .expect("Subscribe")
            .subscription_arn
            .expect("Subscribe returns the ARN")
    }

    /// Publishes `message` with `iniesta_pass` set to `event` plus String `attributes`.
    ///
    /// Only String attributes: a Binary attribute on a raw-delivery subscription poisons a
    /// moto queue (see `EMULATOR.md`).
    pub async fn publish(&self, event: &str, message: &str, attributes: &[(&str, &str)]) -> String {
        let string = |value: &str| {
            SnsAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("data type is set")
        };
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.arn)
            .message(message)
            .message_attributes(EVENT_ATTRIBUTE, string(event));
        for (name, value) in attributes {
            request = request.message_attributes(*name, string(value));
        }
        request
            .send()
            .await
            .expect("Publish")
            .message_id
            .expect("Publish returns the id")
    }
}

/// A TCP proxy in front of moto (or another server) that can be cut and restored, to simulate
/// SQS (or PostgreSQL) becoming unreachable (connection refused) and coming back on the same
/// address.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port, forwarding to moto.
    pub async fn start() -> Proxy {
        let upstream = endpoint();
        let upstream = upstream
            .split_once("://")
            .map_or(upstream.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_owned();
        Proxy::start_to(upstream).await
    }

    /// Starts a proxy on a free loopback port, forwarding to `upstream` (`host:port`).
    pub async fn start_to(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        Proxy {
            port,
            upstream: upstream.clone(),
            task: Some(tokio::spawn(forward(listener, upstream))),
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes the listener and every open connection: new connections are refused.
    pub async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens on the same port again.
    pub async fn restore(&mut self) {
        self.cut().await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the proxy's port is free again");
        self.task = Some(tokio::spawn(forward(listener, self.upstream.clone())));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Accepts connections and pipes each to `upstream`; aborting it drops every connection.
async fn forward(listener: tokio::net::TcpListener, upstream: String) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut client, _)) = accepted else { continue };
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// An SQS client for moto through `endpoint` (a [`Proxy`]).
pub fn client_via(endpoint: &str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}
