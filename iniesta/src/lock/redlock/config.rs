//! The Redlock's settings: servers, ttl, retries, key prefixes, fencing, call timeout.

use std::fmt;
use std::time::Duration;

use crate::config::redact_url;

/// The lock key prefix (iniesta's).
pub const DEFAULT_LOCK_KEY_PREFIX: &str = "sqs:event:";
/// The processed-marker key prefix.
pub const DEFAULT_DONE_KEY_PREFIX: &str = "sqs:done:";
/// The default Redlock server.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Extra acquire attempts when no quorum answered.
pub const DEFAULT_RETRY_COUNT: u32 = 1;
/// Base delay before an extra attempt.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Timeout of every call to one server.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// Settings of a [`Redlock`](super::Redlock), read from the environment by
/// [`Config::from_env`](crate::config::Config::from_env) (variables in brackets).
///
/// How the pipeline *uses* the lock (processed marker, fail-open, a lost lease) is the
/// [`LockPolicy`](crate::lock::LockPolicy), whichever lock it is.
///
/// `Debug` hides the passwords in the URLs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use iniesta::lock::redlock::RedlockConfig;
///
/// let config = RedlockConfig::default()
///     .with_urls(["redis://:secret@a:6379", "redis://:secret@b:6379", "redis://:secret@c:6379"])
///     .with_ttl(Duration::from_secs(30))
///     .with_fencing(true);
/// assert_eq!(config.urls.len(), 3);
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedlockConfig {
    /// The servers, each an independent Redis (`INIESTA_REDIS_URLS`, comma-separated).
    pub urls: Vec<String>,
    /// How long a lease holds before it must be extended (`INIESTA_LOCK_TIMEOUT`).
    ///
    /// `None`: follow the queue's visibility timeout, so a crashed holder's lock frees no
    /// later than its message comes back; the app fills it in before connecting, and
    /// [`Redlock::connect`](super::Redlock::connect) uses
    /// [`DEFAULT_LOCK_TTL`](crate::lock::DEFAULT_LOCK_TTL) when it is still `None`.
    pub ttl: Option<Duration>,
    /// Extra acquire attempts when no quorum answered (`INIESTA_LOCK_RETRY_COUNT`).
    pub retry_count: u32,
    /// The least delay before an extra attempt (`INIESTA_LOCK_RETRY_DELAY`); jittered up to
    /// twice as long, so consumers that failed together do not retry together.
    pub retry_delay: Duration,
    /// Lock key prefix (`INIESTA_LOCK_KEY_PREFIX`, `sqs:event:`).
    pub key_prefix: String,
    /// Processed-marker key prefix (`sqs:done:`).
    pub done_prefix: String,
    /// Hand a fencing token (a per-key counter) to handlers (`INIESTA_LOCK_FENCING`).
    pub fencing: bool,
    /// Timeout of every call to one server (`INIESTA_REDIS_TIMEOUT`).
    pub call_timeout: Duration,
}

impl Default for RedlockConfig {
    fn default() -> Self {
        RedlockConfig {
            urls: vec![DEFAULT_REDIS_URL.to_owned()],
            ttl: None,
            retry_count: DEFAULT_RETRY_COUNT,
            retry_delay: DEFAULT_RETRY_DELAY,
            key_prefix: DEFAULT_LOCK_KEY_PREFIX.to_owned(),
            done_prefix: DEFAULT_DONE_KEY_PREFIX.to_owned(),
            fencing: false,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

impl RedlockConfig {
    /// The servers.
    pub fn with_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// The lock ttl.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Fencing tokens on or off.
    pub fn with_fencing(mut self, enabled: bool) -> Self {
        self.fencing = enabled;
        self
    }

    /// The lock and processed-marker key prefixes.
    pub fn with_key_prefixes(
        mut self,
        lock_prefix: impl Into<String>,
        done_prefix: impl Into<String>,
    ) -> Self {
        self.key_prefix = lock_prefix.into();
        self.done_prefix = done_prefix.into();
        self
    }

    /// The timeout of every call to one server.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Extra acquire attempts when no quorum answered, and the base delay before each.
    pub fn with_retry(mut self, count: u32, delay: Duration) -> Self {
        self.retry_count = count;
        self.retry_delay = delay;
        self
    }

    /// The lock key of an idempotency key: `{key_prefix}{key}`, as the Redlock writes it.
    ///
    /// The pipeline locks `{queue name}:{idempotency key}`.
    pub fn lock_key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }
}

impl fmt::Debug for RedlockConfig {
    // Redis URLs may carry passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("RedlockConfig")
            .field("urls", &urls)
            .field("ttl", &self.ttl)
            .field("retry_count", &self.retry_count)
            .field("retry_delay", &self.retry_delay)
            .field("key_prefix", &self.key_prefix)
            .field("done_prefix", &self.done_prefix)
            .field("fencing", &self.fencing)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_iniesta() {
        let config = RedlockConfig::default();
        assert_eq!(config.urls, vec!["redis://127.0.0.1:6379"]);
        assert_eq!(config.ttl, None);
        assert_eq!(config.retry_count, 1);
        assert_eq!(config.lock_key("q:m-1"), "sqs:event:q:m-1");
    }

    #[test]
    fn debug_hides_passwords() {
        let config = RedlockConfig::default().with_urls(["rediss://user:pw@h:1"]);
        let text = format!("{config:?}");
        assert!(
            !text.contains("pw") && text.contains("user:***@h:1"),
            "{text}"
        );
    }
}
