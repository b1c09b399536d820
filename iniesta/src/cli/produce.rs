//! `send` and `publish`: one message from the command line.

#[cfg(feature = "sns")]
use super::args::PublishArgs;
use super::args::{MessageArgs, SendArgs};
use crate::config::Config;
use crate::producer::SqsProducer;
use crate::transport::Published;
use crate::{OutgoingMessage, Result};

/// The message the arguments describe, its event key in the configured attribute.
fn message(args: &MessageArgs, config: &Config) -> OutgoingMessage {
    let mut message = OutgoingMessage::without_event()
        .attribute(
            config.consumer.decode.event_attribute.as_str(),
            args.event.as_str(),
        )
        .body(args.body.clone());
    for (name, value) in &args.attributes {
        message = message.attribute(name.as_str(), value.clone());
    }
    if let Some(group) = &args.group_id {
        message = message.group_id(group.as_str());
    }
    if let Some(id) = &args.deduplication_id {
        message = message.deduplication_id(id.as_str());
    }
    if let Some(id) = &args.message_id {
        message = message.message_id(id.as_str());
    }
    message
}

/// Prints what the broker said, one JSON object.
fn print(published: &Published) {
    println!(
        "{}",
        serde_json::json!({ "message_id": published.message_id })
    );
}

pub(super) async fn send(
    args: &SendArgs,
    client: aws_sdk_sqs::Client,
    config: &Config,
) -> Result<()> {
    let mut outgoing = message(&args.message, config);
    if let Some(delay) = args.delay {
        outgoing = outgoing.delay(delay);
    }
    let published = SqsProducer::new(client).send(&args.queue, outgoing).await?;
    print(&published);
    Ok(())
}

#[cfg(feature = "sns")]
pub(super) async fn publish(
    args: &PublishArgs,
    client: aws_sdk_sns::Client,
    config: &Config,
) -> Result<()> {
    let Some(topic) = args
        .topic_arn
        .as_ref()
        .or(config.sns.producer_topic_arn.as_ref())
    else {
        return Err(crate::ConfigError::Missing {
            what: "the topic".into(),
            variables: "--topic-arn or INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN".into(),
        }
        .into());
    };
    let producer = crate::producer::SnsProducer::new(client);
    let published = producer
        .publish(topic, message(&args.message, config))
        .await?;
    print(&published);
    Ok(())
}
