//! Finding a queue by name for the clients that do not consume it (the dead-letter sink, the
//! producer): its URL, and the [`Target`] their errors name.

use aws_sdk_sqs::Client;

use super::{Target, classify};
use crate::{Result, TransportError};

/// What errors about `queue` on `client` name: the queue, the client's region, and its
/// endpoint (which the SDK does not expose once built).
pub(crate) fn target(client: &Client, queue: &str) -> Target {
    Target {
        queue: queue.to_owned(),
        region: client
            .config()
            .region()
            .map_or_else(|| "unset".to_owned(), ToString::to_string),
        endpoint: "the client's SQS endpoint".to_owned(),
    }
}

/// The URL of the queue `target` names, by `GetQueueUrl`.
pub(crate) async fn queue_url(client: &Client, target: &Target) -> Result<String> {
    let url = client
        .get_queue_url()
        .queue_name(&target.queue)
        .send()
        .await
        .map_err(|e| classify("GetQueueUrl", target, &e))?
        .queue_url
        .ok_or_else(|| TransportError::Service {
            operation: "GetQueueUrl",
            retryable: true,
            source: "the response has no QueueUrl".into(),
        })?;
    Ok(url)
}
