//! The dead-letter sink's settings as read from the environment.

use super::env::Env;
use crate::ConfigError;

/// Most receives SQS's own redrive policy counts (`maxReceiveCount`): the same bound here.
const MAX_AFTER_RECEIVES: usize = 1000;

/// Where messages that cannot succeed go, and when (see [`dead_letter`](crate::dead_letter)).
///
/// Off by default: with neither variable set, failing messages stay in the queue for its own
/// redrive policy.
///
/// # Examples
///
/// ```
/// use iniesta::config::Config;
///
/// let vars = [
///     ("INIESTA_DEAD_LETTER_QUEUE_NAME", "orders-dead-letters"),
///     ("INIESTA_DEAD_LETTER_AFTER_RECEIVES", "3"),
/// ];
/// let config = Config::from_lookup(|name| {
///     vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
/// })
/// .unwrap();
/// assert_eq!(config.dead_letter.queue_name.as_deref(), Some("orders-dead-letters"));
/// assert_eq!(config.dead_letter.after_receives, Some(3));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterConfig {
    /// `INIESTA_DEAD_LETTER_QUEUE_NAME`: turns the SQS dead-letter sink on, sending to this
    /// queue (on the consumer's SQS endpoint and credentials).
    pub queue_name: Option<String>,
    /// `INIESTA_DEAD_LETTER_AFTER_RECEIVES`, 1-1000: a message goes to the sink once it failed
    /// this many receives (or arrives with more after crashes). Needs a sink.
    pub after_receives: Option<u32>,
}

impl DeadLetterConfig {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let after_receives = env
            .int("INIESTA_DEAD_LETTER_AFTER_RECEIVES", 1, MAX_AFTER_RECEIVES)?
            .map(|n| n as u32);
        Ok(DeadLetterConfig {
            queue_name: env.string("INIESTA_DEAD_LETTER_QUEUE_NAME")?,
            after_receives,
        })
    }
}
