//! An [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0) document
//! of a service: what it receives (its handlers) and what it sends (what it declares), for
//! catalogues, code generators and reviews of a change to a contract.
//!
//! [`AppBuilder::asyncapi`](crate::AppBuilder::asyncapi) writes it; in a service's own binary,
//! `my-service asyncapi` prints it (`iniesta::cli::run`, feature `cli`).
//!
//! - Channels: `queue`, the queue the service consumes; `topic`, the SNS topic it is
//!   subscribed to, when one is given (with the filter policy its handlers need as
//!   `x-iniesta-filter-policy`); one per destination of a declared sent message.
//! - One `receive` operation per event key or `Prefix.*` pattern, and one for the fallback;
//!   one `send` operation per [`SentMessage`].
//! - Messages: the event-key attribute (`iniesta_pass`) as a header fixed to the key (a
//!   pattern for a prefix), iniesta's id attributes, the correlation id's location, and the
//!   payload: the schema of the handler's `Json<T>` argument where `T` derives
//!   [`JsonSchema`](schemars::JsonSchema), named types under `components.schemas` (received
//!   payloads as serde reads them, sent ones as serde writes them). A handler without one (it
//!   reads `Message`, or its `T` has no schema, or it was added at runtime with
//!   `AppBuilder::handler`) still appears, its payload described as not declared.
//! - Each message on the queue matches one message object: a pattern's excludes the keys and
//!   longer patterns other handlers take, the fallback's excludes them all.
//!
//! The schemas come from schemars 1: derive with `schemars = { version = "1", features =
//! ["derive"] }` in the service's `Cargo.toml`. A type deriving another major version's
//! `JsonSchema` (0.8) is not seen, and its handler's payload reads as not declared.
//!
//! ```standalone_crate
//! use iniesta::asyncapi::{SentMessage, ServiceInfo};
//! use iniesta::producer::Destination;
//! use iniesta::{App, Json};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct UserUpdated {
//!     id: u64,
//! }
//!
//! #[derive(schemars::JsonSchema)]
//! struct WelcomeSent {
//!     user: u64,
//! }
//!
//! #[iniesta::handler("UserUpdated.user")]
//! async fn user_updated(Json(user): Json<UserUpdated>) {
//!     println!("{}", user.id);
//! }
//!
//! let app = App::builder().sends(
//!     SentMessage::new(Destination::Queue("mailer".into()), "WelcomeSent.user")
//!         .payload::<WelcomeSent>(),
//! );
//! let service = ServiceInfo::new("users", "1.4.0").queue("iniesta-prod-users");
//! let document = app.asyncapi(&service).expect("valid handlers");
//! assert_eq!(document["asyncapi"], "3.0.0");
//! assert_eq!(
//!     document["components"]["schemas"]["UserUpdated"]["properties"]["id"]["type"],
//!     "integer"
//! );
//! ```

mod document;
mod schemas;

use std::fmt;

pub(crate) use document::{Document, Received};

use crate::__private::{PayloadFn, PayloadSchema, SchemaGenerator};
use crate::producer::Destination;

/// What the document says of the service itself, and where it receives from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// `info.title`: the service's name.
    pub title: String,
    /// `info.version`: the version of its contract.
    pub version: String,
    /// The address of the `queue` channel: the queue's name (unknown when `None`).
    pub queue: Option<String>,
    /// The SNS topic the queue is subscribed to: adds the `topic` channel.
    pub topic_arn: Option<String>,
}

impl ServiceInfo {
    /// A service named `title` whose contract is at `version`.
    pub fn new(title: impl Into<String>, version: impl Into<String>) -> Self {
        ServiceInfo {
            title: title.into(),
            version: version.into(),
            queue: None,
            topic_arn: None,
        }
    }

    /// The queue it consumes, by name.
    #[must_use]
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = Some(name.into());
        self
    }

    /// The SNS topic its queue is subscribed to.
    #[must_use]
    pub fn topic_arn(mut self, arn: impl Into<String>) -> Self {
        self.topic_arn = Some(arn.into());
        self
    }
}

/// A message the service sends, declared for its AsyncAPI document with
/// [`AppBuilder::sends`](crate::AppBuilder::sends). Declaring changes nothing at runtime.
#[derive(Clone)]
pub struct SentMessage {
    pub(crate) destination: Destination,
    pub(crate) event: String,
    pub(crate) payload: Option<PayloadFn>,
    pub(crate) summary: Option<String>,
}

impl SentMessage {
    /// A message with the event key `event`, sent to `destination`; its payload undeclared
    /// until [`payload`](Self::payload).
    pub fn new(destination: Destination, event: impl Into<String>) -> Self {
        SentMessage {
            destination,
            event: event.into(),
            payload: None,
            summary: None,
        }
    }

    /// Its body is `T` as JSON.
    #[must_use]
    pub fn payload<T: schemars::JsonSchema>(mut self) -> Self {
        self.payload = Some(schema_of::<T>);
        self
    }

    /// A line saying what it means.
    #[must_use]
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = Some(summary.into());
        self
    }
}

impl fmt::Debug for SentMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentMessage")
            .field("destination", &self.destination)
            .field("event", &self.event)
            .field("typed", &self.payload.is_some())
            .field("summary", &self.summary)
            .finish()
    }
}

fn schema_of<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Option<PayloadSchema> {
    Some(generator.subschema_for::<T>())
}
