//! SQS's limits, in one place: the SQS transport, the simulator, the pipeline's lease cap and
//! the settings checks all read them here.

use std::time::Duration;

/// Most messages one receive returns, and most entries one batch request carries.
pub const MAX_BATCH: usize = 10;
/// Longest a message stays invisible, counted from its receipt (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Longest a send may be delayed (15 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// Longest a receive long-polls.
pub const MAX_WAIT_TIME: Duration = Duration::from_secs(20);
/// Largest message body plus attributes (1 MiB).
pub const MAX_MESSAGE_SIZE: usize = 1024 * 1024;
/// Most message attributes on one message.
pub const MAX_ATTRIBUTES: usize = 10;
/// A new queue's visibility timeout.
pub const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// A new queue's message retention (4 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(4 * 24 * 3600);
/// Longest FIFO message group or deduplication id.
pub const MAX_FIFO_ID: usize = 128;
/// Longest message attribute name.
pub const MAX_ATTRIBUTE_NAME: usize = 256;
