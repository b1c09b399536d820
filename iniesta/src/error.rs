//! Errors of the runtime, one enum per concern.

use std::fmt;

/// The error type a handler may return: any error that is `Send + Sync`.
///
/// `anyhow::Error`, `std::io::Error` and every `thiserror` enum convert into it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop iniesta from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing, out of range or unparsable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The handlers do not form a valid router (duplicate keys, two fallbacks, missing state).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The transport failed permanently (for example the queue does not exist).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The idempotency lock could not be set up.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A message body did not deserialize into the requested type.
    ///
    /// Carries only the position and the kind of problem: serde's own message quotes parts of
    /// the body, and bodies are confidential.
    #[error(
        "message body is not valid JSON for `{type_name}`: {problem} at line {line} column {column}"
    )]
    Json {
        /// The Rust type the body was read into.
        type_name: &'static str,
        /// `syntax error`, `unexpected end of input` or `data does not fit the type`.
        problem: &'static str,
        /// Line of the problem in the body.
        line: usize,
        /// Column of the problem in the body.
        column: usize,
    },
    /// Installing a signal handler or another I/O step failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A bad setting, named by the variable or builder method it came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("{name}: expected {expected}, got {got:?}")]
    Invalid {
        /// The environment variable or setting.
        name: String,
        /// What the setting takes.
        expected: String,
        /// The value that was given.
        got: String,
    },
    /// A required setting is absent.
    #[error("{what} is not configured: set {variables}")]
    Missing {
        /// What is missing.
        what: String,
        /// The variables (or builder methods) that would provide it.
        variables: String,
    },
    /// Settings that do not fit together.
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    pub(crate) fn json<T>(error: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let problem = match error.classify() {
            Category::Syntax => "syntax error",
            Category::Eof => "unexpected end of input",
            Category::Data => "data does not fit the type",
            Category::Io => "i/o error",
        };
        Error::Json {
            type_name: std::any::type_name::<T>(),
            problem,
            line: error.line(),
            column: error.column(),
        }
    }
}

impl ConfigError {
    pub(crate) fn invalid(
        name: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            name: name.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

/// Where a handler was declared, for error messages that name both sides of a conflict.
#[derive(Clone, PartialEq, Eq)]
pub struct Location {
    /// The handler's path (`crate::module::function` or `Type::method`).
    pub name: String,
    /// Source file and line, or `"registered at runtime"`.
    pub file: String,
    /// Line in `file` (0 when registered at runtime).
    pub line: u32,
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{} ({})", self.name, self.file)
        } else {
            write!(f, "{} ({}:{})", self.name, self.file, self.line)
        }
    }
}

/// The handlers do not form a valid router.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two handlers claim one event key.
    #[error("two handlers for event key `{key}`: {first} and {second}")]
    DuplicateKey {
        /// The key both claim.
        key: String,
        /// One handler.
        first: Box<Location>,
        /// The other handler.
        second: Box<Location>,
    },
    /// Two handlers are declared as the fallback.
    #[error("two fallback handlers: {first} and {second}")]
    DuplicateFallback {
        /// One fallback.
        first: Box<Location>,
        /// The other fallback.
        second: Box<Location>,
    },
    /// An event key or pattern that cannot be routed.
    #[error("invalid event key `{key}` on {handler}: {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// The handler that declared it.
        handler: Box<Location>,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A handler needs state (or an instance for a `&self` method) that was not registered.
    #[error(
        "handler {handler} needs state of type `{type_name}`: register it with `App::builder().state(..)`"
    )]
    MissingState {
        /// The handler.
        handler: Box<Location>,
        /// The missing type.
        type_name: &'static str,
    },
}

/// A transport (SQS, in-memory) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The queue is not there.
    #[error("queue `{queue}` does not exist (region {region}, endpoint {endpoint})")]
    QueueDoesNotExist {
        /// The queue name or URL.
        queue: String,
        /// The region asked.
        region: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// The receipt handle is stale (the message was received again) or malformed.
    #[error("receipt handle is invalid or stale")]
    InvalidReceipt,
    /// A request to the queue service failed.
    #[error("{operation} failed: {source}")]
    Service {
        /// The API operation (`ReceiveMessage`, `DeleteMessageBatch`, ...).
        operation: &'static str,
        /// Whether trying again later may succeed (throttling, 5xx, connection errors).
        retryable: bool,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The transport was shut down.
    #[error("transport is closed")]
    Closed,
    /// The broker cannot do this (see [`Capabilities`](crate::transport::Capabilities)).
    #[error("the transport does not support {operation}")]
    Unsupported {
        /// The operation asked.
        operation: &'static str,
    },
}

impl TransportError {
    /// Whether trying again later may succeed.
    ///
    /// Permanent errors (the queue is gone, access denied) return `false` and stop the consumer.
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Service { retryable, .. } => *retryable,
            TransportError::InvalidReceipt => true,
            TransportError::QueueDoesNotExist { .. }
            | TransportError::Closed
            | TransportError::Unsupported { .. } => false,
        }
    }
}

/// The idempotency lock failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// One lock server failed or timed out.
    #[error("lock server {instance} failed: {source}")]
    Backend {
        /// The server (URL without credentials).
        instance: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// Too few servers answered to decide.
    #[error("no quorum: {answered} of {total} lock servers answered, {needed} needed")]
    NoQuorum {
        /// Servers that answered.
        answered: usize,
        /// Servers configured.
        total: usize,
        /// Majority needed.
        needed: usize,
    },
    /// A majority granted the lock, but so late that its validity had already run out.
    #[error("lock granted too late: {elapsed:?} passed of a {ttl:?} ttl")]
    TooSlow {
        /// Time the servers took to answer.
        elapsed: std::time::Duration,
        /// The lock ttl.
        ttl: std::time::Duration,
    },
}
