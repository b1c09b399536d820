//! The command line, as clap parses it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::AttributeValue;

/// Sends, publishes, peeks and inspects iniesta's queues and topics; with no command, a
/// service's own binary consumes.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) aws: AwsArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Where AWS is, beyond what the environment says.
#[derive(Debug, Args)]
pub(crate) struct AwsArgs {
    /// The SQS and SNS endpoint (a local emulator); default: INIESTA_SQS_ENDPOINT_URL and
    /// INIESTA_SNS_ENDPOINT_URL, else AWS's.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) endpoint_url: Option<String>,
    /// The AWS region; default: AWS_REGION or the profile's.
    #[arg(long, global = true)]
    pub(crate) region: Option<String>,
    /// The AWS profile of ~/.aws/config to use; default: AWS_PROFILE or `default`.
    #[arg(long, global = true)]
    pub(crate) profile: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Send a message to an SQS queue.
    Send(SendArgs),
    /// Publish a message to an SNS topic.
    Publish(PublishArgs),
    /// Show messages waiting in a queue, without taking them (they stay visible).
    Receive(ReceiveArgs),
    /// Print the SNS filter policy the queue's subscription needs (JSON).
    FilterPolicy,
    /// List the handlers this binary routes, with their event keys.
    Handlers,
    /// Check the deployment: queue, redrive policy, visibility, queue policy, subscription,
    /// filter policy, raw delivery, lock servers. Exits non-zero when a check fails.
    Check(CheckArgs),
    /// Move dead letters back to the queue they came from.
    Redrive(RedriveArgs),
    /// Print the AsyncAPI 3.0 document of this binary's handlers and declared sent messages
    /// (JSON).
    Asyncapi(AsyncApiArgs),
    /// The transactional inbox and outbox's database (INIESTA_DATABASE_URL).
    #[command(subcommand)]
    Db(DbCommand),
    /// The transactional outbox (INIESTA_DATABASE_URL).
    #[command(subcommand)]
    Outbox(OutboxCommand),
}

/// `iniesta db ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Create the inbox and outbox tables: apply the migrations not yet applied
    /// (INIESTA_DATABASE_SCHEMA, INIESTA_DATABASE_INBOX_TABLE, INIESTA_DATABASE_OUTBOX_TABLE).
    /// Prints {"applied": [...]}, empty when nothing was pending.
    Migrate,
}

/// `iniesta outbox ...`
#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// Send the outbox's committed messages to their SQS queues and SNS topics, in order per
    /// aggregate, until SIGINT or SIGTERM (INIESTA_OUTBOX_BATCH_SIZE,
    /// INIESTA_OUTBOX_POLL_INTERVAL, INIESTA_OUTBOX_RETENTION). Several may run at once.
    Relay,
}

#[derive(Debug, Args)]
pub(crate) struct AsyncApiArgs {
    /// The document's title; default: INIESTA_SERVICE_NAME, else the queue's name.
    #[arg(long)]
    pub(crate) title: Option<String>,
    /// The version of the service's contract (`info.version`).
    #[arg(long, value_name = "VERSION", default_value = "0.0.0")]
    pub(crate) contract_version: String,
    /// The topic the queue is subscribed to; default: INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN
    /// (without either, the document has no topic channel).
    #[arg(long, value_name = "ARN")]
    pub(crate) topic_arn: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The topic the queue is subscribed to; default: INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN
    /// (without either, the subscription checks are skipped).
    #[arg(long, value_name = "ARN")]
    pub(crate) topic_arn: Option<String>,
    /// Exit non-zero when a check is skipped too (not applicable, or to be checked by hand):
    /// for a pipeline that must see every check pass.
    #[arg(long)]
    pub(crate) strict: bool,
}

/// What every message sent or published takes.
#[derive(Debug, Args)]
pub(crate) struct MessageArgs {
    /// The event key (the `iniesta_pass` attribute, or INIESTA_SNS_EVENT_KEY's).
    #[arg(long)]
    pub(crate) event: String,
    /// The message body (text; JSON for handlers that read `Json<T>`).
    #[arg(long)]
    pub(crate) body: String,
    /// An attribute, `NAME=VALUE` (a String) or `NAME:TYPE=VALUE` with TYPE `String`,
    /// `Number`, `Binary` (base64) or `String.Array` (a JSON array); repeat for more.
    #[arg(long = "attribute", value_name = "NAME=VALUE", value_parser = parse_attribute)]
    pub(crate) attributes: Vec<(String, AttributeValue)>,
    /// The FIFO message group.
    #[arg(long)]
    pub(crate) group_id: Option<String>,
    /// The FIFO deduplication id (default: the message id).
    #[arg(long)]
    pub(crate) deduplication_id: Option<String>,
    /// The message id (`iniesta_message_id`; default: a new UUID).
    #[arg(long)]
    pub(crate) message_id: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The queue's name or URL.
    #[arg(long)]
    pub(crate) queue: String,
    #[command(flatten)]
    pub(crate) message: MessageArgs,
    /// Delay delivery, up to 15m (`30s`, `2m`).
    #[arg(long, value_parser = parse_duration)]
    pub(crate) delay: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The topic's ARN; default: INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN.
    #[arg(long, value_name = "ARN")]
    pub(crate) topic_arn: Option<String>,
    #[command(flatten)]
    pub(crate) message: MessageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReceiveArgs {
    /// The queue's name or URL; default: the consumer's (INIESTA_SQS_QUEUE_NAME, ...).
    #[arg(long)]
    pub(crate) queue: Option<String>,
    /// Most messages to show, 1-10.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=10))]
    pub(crate) max: i32,
    /// How long to wait for a message, up to 20s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) wait: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct RedriveArgs {
    /// The dead-letter queue; default: INIESTA_DEAD_LETTER_QUEUE_NAME.
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Where to move them; default: the queue each letter names as its source.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Most letters to move.
    #[arg(long, default_value_t = usize::MAX, hide_default_value = true)]
    pub(crate) max: usize,
}

/// `--topic-arn`, else `INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN`: the topic the queue is
/// subscribed to, for `check` and `asyncapi`.
pub(crate) fn subscribed_topic(
    given: Option<&String>,
    config: &crate::config::Config,
) -> Option<String> {
    given.or(config.sns.producer_topic_arn.as_ref()).cloned()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration: write `500ms`, `30s`, `2m` or seconds"))
}

/// `NAME=VALUE` or `NAME:TYPE=VALUE`.
pub(crate) fn parse_attribute(text: &str) -> Result<(String, AttributeValue), String> {
    let (head, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write NAME=VALUE or NAME:TYPE=VALUE"))?;
    let (name, data_type) = head.split_once(':').unwrap_or((head, "String"));
    let value = match data_type {
        "String" => AttributeValue::String(value.to_owned()),
        "Number" => AttributeValue::Number(value.to_owned()),
        "Binary" => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|e| format!("`{name}`: a Binary value is base64: {e}"))?;
            AttributeValue::Binary(bytes.into())
        }
        "String.Array" => match serde_json::from_str(value) {
            Ok(serde_json::Value::Array(items)) => AttributeValue::Array(items),
            _ => {
                return Err(format!(
                    "`{name}`: a String.Array value is a JSON array, like [\"a\",1]"
                ));
            }
        },
        other => {
            return Err(format!(
                "`{name}`: unknown type `{other}`: String, Number, Binary or String.Array"
            ));
        }
    };
    Ok((name.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_with_and_without_a_type() {
        assert_eq!(
            parse_attribute("tenant=acme=1").unwrap(),
            ("tenant".into(), AttributeValue::String("acme=1".into()))
        );
        assert_eq!(
            parse_attribute("n:Number=3").unwrap(),
            ("n".into(), AttributeValue::Number("3".into()))
        );
        assert_eq!(
            parse_attribute("b:Binary=AAEC").unwrap(),
            ("b".into(), AttributeValue::Binary(vec![0, 1, 2].into()))
        );
        assert_eq!(
            parse_attribute("l:String.Array=[\"a\",1]").unwrap().1,
            AttributeValue::Array(vec![serde_json::json!("a"), serde_json::json!(1)])
        );
        for bad in ["novalue", "x:Date=1", "b:Binary=***", "l:String.Array=1"] {
            assert!(parse_attribute(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
