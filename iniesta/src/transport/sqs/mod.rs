//! AWS SQS: its limits, settings and delivery details (always compiled, the simulator speaks
//! them too), and the SQS transport (feature `sqs`).
//!
//! [`SqsTransport`] long-polls one queue with all message and system attributes, and sends
//! deletes and visibility changes in batches of ten (`DeleteMessageBatch`,
//! `ChangeMessageVisibilityBatch`). At steady load one receive and one batch delete serve ten
//! messages: 0.2 requests per handled message. [`SqsTransport::requests`] counts them.

mod config;
mod details;
pub mod limits;

#[cfg(feature = "sqs")]
mod batcher;
#[cfg(feature = "sqs")]
mod connect;
#[cfg(feature = "sqs")]
mod convert;
#[cfg(feature = "sqs")]
mod counters;
#[cfg(feature = "sqs")]
mod errors;
#[cfg(feature = "sqs")]
mod lookup;
#[cfg(feature = "sqs")]
mod redrive;
#[cfg(feature = "sqs")]
mod startup;
#[cfg(feature = "sqs")]
mod transport;

pub use config::{DEFAULT_QUEUE_NAME_TEMPLATE, SqsConfig};
pub use details::{SqsDetails, SystemAttributes};
pub(crate) use details::{md5_hex, unwrap_sns};

// The dead-letter sink speaks SQS with the transport's conversions and error classes.
#[cfg(feature = "sqs")]
pub use connect::{DEFAULT_DELETE_FLUSH_INTERVAL, DEFAULT_WAIT_TIME, SqsTransportBuilder};
#[cfg(feature = "sqs")]
pub(crate) use convert::{attribute as sdk_attribute, queue_name_from_url, sdk_attributes};
#[cfg(feature = "sqs")]
pub use counters::SqsRequestCounts;
#[cfg(feature = "sqs")]
pub(crate) use errors::{Target, classify, fan_out};
#[cfg(feature = "sqs")]
pub(crate) use lookup::{queue_url, target};
#[cfg(feature = "cli")]
pub(crate) use redrive::{QueueArn, RedrivePolicy};
#[cfg(feature = "sqs")]
pub use startup::DEFAULT_STARTUP_TIMEOUT;
#[cfg(feature = "sqs")]
pub use transport::SqsTransport;

/// The AWS SDK for SQS this transport is built on, for
/// [`SqsTransport::builder`] clients of the same version.
#[cfg(feature = "sqs")]
#[doc(no_inline)]
pub use aws_sdk_sqs;
