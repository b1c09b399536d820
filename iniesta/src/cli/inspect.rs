//! `receive`, `handlers`, `filter-policy` and `asyncapi`: looking without changing anything.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use base64::Engine as _;

use super::args::{AsyncApiArgs, ReceiveArgs};
use crate::asyncapi::ServiceInfo;
use crate::config::Config;
use crate::transport::sqs::sdk_attribute;
use crate::{AppBuilder, AttributeValue, ConfigError, Result};

/// Prints up to `--max` waiting messages, one JSON object per line, received with a
/// visibility timeout of 0 so they stay visible (their receive count still rises, as with
/// any receive). This shows bodies: it is what the command is asked for.
pub(super) async fn receive(
    args: &ReceiveArgs,
    client: aws_sdk_sqs::Client,
    config: &Config,
) -> Result<()> {
    let queue = match &args.queue {
        Some(queue) => queue.clone(),
        None => config.sqs.resolved_queue_name()?,
    };
    let producer = crate::producer::SqsProducer::new(client.clone());
    let url = producer.queue(&queue).await?.url().to_owned();
    let target = crate::transport::sqs::target(&client, &queue);
    let received = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(args.max)
        .wait_time_seconds(i32::try_from(args.wait.as_secs().min(20)).unwrap_or(20))
        .visibility_timeout(0)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| crate::transport::sqs::classify("ReceiveMessage", &target, &e))?;
    for message in received.messages() {
        let id = message.message_id().unwrap_or_default();
        let attributes: BTreeMap<&str, serde_json::Value> = message
            .message_attributes()
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| {
                Some((name.as_str(), json(&sdk_attribute(id, name, value)?)))
            })
            .collect();
        let system: BTreeMap<&str, &str> = message
            .attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let line = serde_json::json!({
            "message_id": id,
            "attributes": attributes,
            "system_attributes": system,
            "body": message.body(),
        });
        println!("{line}");
    }
    Ok(())
}

/// An attribute value as JSON: text as a string, a list as an array, bytes as base64.
fn json(value: &AttributeValue) -> serde_json::Value {
    match value {
        AttributeValue::Binary(bytes) => base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into(),
        AttributeValue::Array(items) => serde_json::Value::Array(items.clone()),
        other => other.as_str().unwrap_or_default().into(),
    }
}

/// Prints the handlers, one per line: name, keys (or `(fallback)`), where declared.
pub(super) fn handlers(builder: &AppBuilder) {
    let list = builder.handler_list();
    if list.is_empty() {
        eprintln!(
            "no handlers: this binary registers none (#[handler] functions, AppBuilder::handler)"
        );
    }
    for handler in list {
        let mut keys = handler.keys.join(", ");
        if handler.fallback {
            keys = if keys.is_empty() {
                "(fallback)".to_owned()
            } else {
                format!("{keys}, (fallback)")
            };
        }
        println!("{}\t{keys}\t{}", handler.name, handler.location);
    }
}

/// Prints the filter policy: from `INIESTA_SQS_CONSUMER_FILTERS`, else the handlers'.
pub(super) fn filter_policy(builder: &AppBuilder, config: &Config) -> Result<()> {
    let Some(policy) = super::check::wanted_policy(builder, config)? else {
        // `{}` is how SNS takes "no filter policy" when it is set.
        eprintln!("no filter policy: a fallback handler wants every event");
        println!("{{}}");
        return Ok(());
    };
    if policy.is_empty() {
        return Err(ConfigError::Missing {
            what: "the events to subscribe to".into(),
            variables: "INIESTA_SQS_CONSUMER_FILTERS (comma-separated keys and Prefix* patterns), or run this from the service's binary (iniesta::cli::run) so its handlers are known".into(),
        }
        .into());
    }
    println!("{}", policy.to_json());
    Ok(())
}

/// Prints the AsyncAPI document of the binary's handlers, pretty JSON.
pub(super) fn asyncapi(args: &AsyncApiArgs, builder: &AppBuilder, config: &Config) -> Result<()> {
    let queue = config.sqs.resolved_queue_name().ok().or_else(|| {
        let url = config.sqs.queue_url.as_deref()?;
        url.rsplit('/').next().map(str::to_owned)
    });
    let title = args
        .title
        .clone()
        .or_else(|| config.sqs.service_name.clone())
        .or_else(|| queue.clone())
        .unwrap_or_else(|| "iniesta service".to_owned());
    let mut service = ServiceInfo::new(title, args.contract_version.clone());
    service.queue = queue;
    service.topic_arn = super::args::subscribed_topic(args.topic_arn.as_ref(), config);
    let document = builder.asyncapi(&service)?;
    println!("{document:#}");
    Ok(())
}
