//! SNS's limits on publishing, in one place.

/// Largest message body plus attributes SNS publishes (256 KiB), and most bytes one
/// `PublishBatch` request carries in all.
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;
/// Most entries one `PublishBatch` request carries.
pub const MAX_BATCH: usize = 10;

/// Whether the topic `arn` is FIFO: SNS names FIFO topics `*.fifo`.
pub(crate) fn is_fifo_topic(arn: &str) -> bool {
    arn.ends_with(".fifo")
}
