//! What a consumer's queue must be subscribed to: the SNS filter policy its handlers need.

mod filter_policy;

pub use filter_policy::{FilterPolicy, FilterPolicyError, MAX_FILTER_VALUES};
