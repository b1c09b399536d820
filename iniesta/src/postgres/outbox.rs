//! The outbox's writing side: messages added in a transaction, sent by the
//! [relay](super::OutboxRelay) once it commits.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sqlx::PgConnection;

use super::Database;
use crate::config::DEFAULT_EVENT_ATTRIBUTE;
use crate::producer::{Destination, InvalidMessage, ids, validate};
use crate::{AttributeValue, OutgoingMessage};

/// Adds messages to the outbox in a transaction of yours (feature `postgres`): they are sent
/// by the relay once it commits, and never if it rolls back.
///
/// Inside a handler that takes a [`Tx`](super::Tx), [`Context::send`](crate::Context::send)
/// does this already. `Outbox` is for code outside handlers (an HTTP endpoint of the service)
/// that writes business rows and must emit a message only when they commit. Each message gets
/// a message id (its receivers' idempotency key and FIFO deduplication id), a correlation and
/// a causation id as [`SqsProducer`](crate::producer::SqsProducer) gives them, and is checked
/// against SQS's general rules before anything is written.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(database: iniesta::postgres::Database) -> Result<(), Box<dyn std::error::Error>> {
/// use iniesta::OutgoingMessage;
///
/// let outbox = database.outbox();
/// let mut tx = database.pool().begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES (7)").execute(&mut *tx).await?;
/// let message = OutgoingMessage::new("OrderCreated.shop").body(r#"{"id":7}"#).aggregate_id("7");
/// let id = outbox.send(&mut tx, "shipping", message).await?;
/// tx.commit().await?;
/// println!("order 7 announced as {id}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Outbox {
    insert: Arc<str>,
}

/// Why [`Outbox::send`] or [`Outbox::publish`] refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The message breaks SQS's general rules: nothing was written.
    #[error(transparent)]
    Invalid(#[from] InvalidMessage),
    /// The insert failed (the transaction is then aborted, as PostgreSQL does after an error).
    #[error("writing to the outbox failed: {0}")]
    Database(#[from] sqlx::Error),
}

impl Outbox {
    /// The outbox of `database`'s tables.
    pub fn new(database: &Database) -> Self {
        let outbox = database.tables().outbox();
        // One statement for a whole batch: arrays in, one row per element.
        let insert = format!(
            "INSERT INTO {outbox} (message_id, aggregate_id, correlation_id, causation_id, \
             destination_kind, destination, event_key, body, attributes, group_id, \
             deduplication_id, delay_ms) \
             SELECT m, a, c, k, dk, d, e, b, at::jsonb, g, dd, dl FROM UNNEST(\
             $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::bytea[], $9::text[], $10::text[], $11::text[], $12::bigint[]) \
             AS u(m, a, c, k, dk, d, e, b, at, g, dd, dl)"
        );
        Outbox {
            insert: insert.into(),
        }
    }

    /// Adds `message` for the queue `queue` (a name, or an SQS URL) in `conn`'s transaction;
    /// returns its message id.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Invalid`] before anything is written; [`OutboxError::Database`].
    pub async fn send(
        &self,
        conn: &mut PgConnection,
        queue: impl Into<String>,
        message: OutgoingMessage,
    ) -> Result<String, OutboxError> {
        self.add(conn, Destination::Queue(queue.into()), message)
            .await
    }

    /// Adds `message` for the SNS topic `topic_arn` in `conn`'s transaction; returns its
    /// message id.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn publish(
        &self,
        conn: &mut PgConnection,
        topic_arn: impl Into<String>,
        message: OutgoingMessage,
    ) -> Result<String, OutboxError> {
        self.add(conn, Destination::Topic(topic_arn.into()), message)
            .await
    }

    async fn add(
        &self,
        conn: &mut PgConnection,
        to: Destination,
        mut message: OutgoingMessage,
    ) -> Result<String, OutboxError> {
        ids::stamp(&mut message, false);
        validate::check(&message, ids::OURS)?;
        let id = message
            .attribute_text(ids::MESSAGE_ID_ATTRIBUTE)
            .unwrap_or_default()
            .to_owned();
        self.write(conn, vec![(to, message)]).await?;
        Ok(id)
    }

    /// Writes messages that already carry their ids and were checked (a handler's emits).
    pub(crate) async fn write(
        &self,
        conn: &mut PgConnection,
        messages: Vec<(Destination, OutgoingMessage)>,
    ) -> Result<(), sqlx::Error> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut rows = Rows::default();
        for (to, message) in messages {
            rows.push(to, message);
        }
        sqlx::query(sqlx::AssertSqlSafe(&*self.insert))
            .bind(rows.message_id)
            .bind(rows.aggregate_id)
            .bind(rows.correlation_id)
            .bind(rows.causation_id)
            .bind(rows.destination_kind)
            .bind(rows.destination)
            .bind(rows.event_key)
            .bind(rows.body)
            .bind(rows.attributes)
            .bind(rows.group_id)
            .bind(rows.deduplication_id)
            .bind(rows.delay_ms)
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

/// The columns of a batch of rows, one array per column.
#[derive(Default)]
struct Rows {
    message_id: Vec<String>,
    aggregate_id: Vec<Option<String>>,
    correlation_id: Vec<String>,
    causation_id: Vec<String>,
    destination_kind: Vec<&'static str>,
    destination: Vec<String>,
    event_key: Vec<Option<String>>,
    body: Vec<Vec<u8>>,
    attributes: Vec<String>,
    group_id: Vec<Option<String>>,
    deduplication_id: Vec<Option<String>>,
    delay_ms: Vec<i64>,
}

impl Rows {
    fn push(&mut self, to: Destination, message: OutgoingMessage) {
        let text = |name| message.attribute_text(name).unwrap_or_default().to_owned();
        self.message_id.push(text(ids::MESSAGE_ID_ATTRIBUTE));
        self.correlation_id
            .push(text(ids::CORRELATION_ID_ATTRIBUTE));
        self.causation_id.push(text(ids::CAUSATION_ID_ATTRIBUTE));
        self.event_key.push(
            message
                .attribute_text(DEFAULT_EVENT_ATTRIBUTE)
                .map(str::to_owned),
        );
        let (kind, destination) = match to {
            Destination::Queue(name) => ("queue", name),
            Destination::Topic(arn) => ("topic", arn),
        };
        self.destination_kind.push(kind);
        self.destination.push(destination);
        self.aggregate_id.push(
            message
                .aggregate_id
                .clone()
                .or_else(|| message.group_id.clone()),
        );
        self.attributes
            .push(encode_attributes(&message.attributes).to_string());
        self.body.push(message.body.to_vec());
        self.group_id.push(message.group_id);
        self.deduplication_id.push(message.deduplication_id);
        self.delay_ms
            .push(i64::try_from(message.delay.as_millis()).unwrap_or(i64::MAX));
    }
}

/// The attributes as the outbox stores them: SQS's own shape,
/// `{"name": {"DataType": "String", "StringValue": "..."}}`, binary values in base64.
pub(crate) fn encode_attributes(attributes: &HashMap<String, AttributeValue>) -> serde_json::Value {
    let entries = attributes.iter().map(|(name, value)| {
        let entry = match value.to_string_value() {
            Some(text) => serde_json::json!({ "DataType": value.data_type(), "StringValue": text }),
            None => {
                let bytes = match value {
                    AttributeValue::Binary(bytes) => BASE64.encode(bytes),
                    _ => String::new(),
                };
                serde_json::json!({ "DataType": value.data_type(), "BinaryValue": bytes })
            }
        };
        (name.clone(), entry)
    });
    serde_json::Value::Object(entries.collect())
}

/// The attributes [`encode_attributes`] stored.
///
/// # Errors
///
/// What is malformed (a row written by hand, say).
pub(crate) fn decode_attributes(
    stored: &serde_json::Value,
) -> Result<HashMap<String, AttributeValue>, String> {
    let object = stored
        .as_object()
        .ok_or("attributes are not a JSON object")?;
    let mut attributes = HashMap::with_capacity(object.len());
    for (name, entry) in object {
        let data_type = entry
            .get("DataType")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("attribute `{name}` has no DataType"))?;
        let value = if let Some(text) = entry.get("StringValue").and_then(serde_json::Value::as_str)
        {
            AttributeValue::from_data_type(data_type, text.to_owned())
        } else {
            let encoded = entry
                .get("BinaryValue")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("attribute `{name}` has no value"))?;
            let bytes = BASE64
                .decode(encoded)
                .map_err(|e| format!("attribute `{name}` is not base64: {e}"))?;
            AttributeValue::Binary(bytes.into())
        };
        attributes.insert(name.clone(), value);
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_survive_the_outbox() {
        let message = OutgoingMessage::new("Order.created")
            .attribute("count", AttributeValue::Number("7".into()))
            .attribute("raw", AttributeValue::Binary(vec![0, 255, 7].into()))
            .attribute(
                "tags",
                AttributeValue::Array(vec![serde_json::json!("a"), serde_json::json!(1)]),
            );
        let stored = encode_attributes(message.attributes());
        let back = decode_attributes(&stored).unwrap();
        assert_eq!(&back, message.attributes());
    }

    #[test]
    fn malformed_stored_attributes_say_what_is_wrong() {
        let error = decode_attributes(
            &serde_json::json!({"a": {"DataType": "Binary", "BinaryValue": "!"}}),
        )
        .unwrap_err();
        assert!(error.contains("`a` is not base64"), "{error}");
        assert!(decode_attributes(&serde_json::json!([])).is_err());
    }
}
