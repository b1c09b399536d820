//! Errors of the runtime, one enum per concern.

use std::fmt;

/// The error type a handler may return: any error that is `Send + Sync`.
///
/// `anyhow::Error`, `std::io::Error` and every `thiserror` enum convert into it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop iniesta from starting or running.
///
/// `Debug` reads like `anyhow`'s, so `main() -> Result<(), iniesta::Error>` prints the message,
/// then each cause under `Caused by:`. `{:#?}` shows the structure instead.
///
/// # Examples
///
/// ```
/// use iniesta::{ConfigError, Error};
///
/// let err = Error::from(ConfigError::Conflict("two queues are named".into()));
/// assert_eq!(format!("{err:?}"), "two queues are named");
/// ```
#[derive(thiserror::Error)]
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
    /// The database of the inbox and outbox (feature `postgres`) could not be reached,
    /// migrated or used.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// Deployment checks (`iniesta check`) failed (or, with `--strict`, were skipped); each
    /// said what is wrong and how to fix it, or why it was skipped.
    #[error("{failed} deployment check(s) failed or, with --strict, were skipped")]
    ChecksFailed {
        /// How many failed.
        failed: usize,
    },
}

/// A database step that failed: what iniesta was doing, and the driver's error.
#[derive(Debug, thiserror::Error)]
#[error("database: {context}")]
pub struct DatabaseError {
    context: String,
    #[source]
    source: BoxError,
}

impl DatabaseError {
    /// What was being done (`cannot connect to postgres://...`) and why it failed.
    pub fn new(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        DatabaseError {
            context: context.into(),
            source: source.into(),
        }
    }
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

impl fmt::Debug for Error {
    /// The message, then its causes as `anyhow` prints them; `{:#?}` shows the structure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return self.fmt_structure(f);
        }
        write!(f, "{self}")?;
        let causes = causes(self);
        match causes.as_slice() {
            [] => Ok(()),
            [only] => write!(f, "\n\nCaused by:\n    {only}"),
            many => {
                f.write_str("\n\nCaused by:")?;
                for (i, cause) in many.iter().enumerate() {
                    write!(f, "\n    {i}: {cause}")?;
                }
                Ok(())
            }
        }
    }
}

impl Error {
    fn fmt_structure(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => f.debug_tuple("Config").field(e).finish(),
            Error::Registry(e) => f.debug_tuple("Registry").field(e).finish(),
            Error::Transport(e) => f.debug_tuple("Transport").field(e).finish(),
            Error::Lock(e) => f.debug_tuple("Lock").field(e).finish(),
            Error::Json {
                type_name,
                problem,
                line,
                column,
            } => f
                .debug_struct("Json")
                .field("type_name", type_name)
                .field("problem", problem)
                .field("line", line)
                .field("column", column)
                .finish(),
            Error::Io(e) => f.debug_tuple("Io").field(e).finish(),
            Error::Database(e) => f.debug_tuple("Database").field(e).finish(),
            Error::ChecksFailed { failed } => f
                .debug_struct("ChecksFailed")
                .field("failed", failed)
                .finish(),
        }
    }
}

/// The messages of `error`'s sources, skipping each that the message before it already
/// quotes (`"GetQueueUrl failed: {source}"` followed by that source).
fn causes(error: &dyn std::error::Error) -> Vec<String> {
    let mut causes = Vec::new();
    let mut previous = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !previous.contains(&text) {
            causes.push(text.clone());
        }
        previous = text;
        source = cause.source();
    }
    causes
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

impl Location {
    /// `file:line`, or the file alone for a handler registered at runtime.
    pub(crate) fn file_line(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}", self.file, self.line)
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.file_line())
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
        "handler {handler} needs state of type `{type_name}`: register one with `.state(..)` on the app builder (`App::from_env().await?` or `App::builder()`)"
    )]
    MissingState {
        /// The handler.
        handler: Box<Location>,
        /// The missing type.
        type_name: &'static str,
    },
    /// A per-handler setting of the app builder names no handler, or several.
    #[error("`{setting}` names handler `{name}`, but {problem}")]
    HandlerName {
        /// The builder method, like `handler_middleware`.
        setting: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it, listing the candidates.
        problem: String,
    },
}

/// A transport (SQS, in-memory) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The queue is not there.
    #[error(
        "queue `{queue}` does not exist (region {region}, endpoint {endpoint}): create it, or check the queue name, the region and the endpoint"
    )]
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
    /// A message to send breaks the broker's rules; found before any request.
    #[error("invalid message: {0}")]
    InvalidMessage(#[from] crate::producer::InvalidMessage),
    /// The broker cannot do this (see [`Capabilities`](crate::transport::Capabilities)).
    #[error("the transport does not support {operation}")]
    Unsupported {
        /// The operation asked.
        operation: &'static str,
    },
    /// The queue service kept failing with transient errors (refused connections, 5xx,
    /// throttling) until the startup timeout ran out.
    #[error(
        "{target} did not answer within {waited:?}: check that the endpoint is right and reachable, or give it longer with INIESTA_STARTUP_TIMEOUT"
    )]
    StartupTimeout {
        /// What was being reached: the queue, region and endpoint.
        target: String,
        /// How long startup kept trying.
        waited: std::time::Duration,
        /// The last failure.
        #[source]
        source: BoxError,
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
            | TransportError::InvalidMessage(_)
            | TransportError::Unsupported { .. }
            | TransportError::StartupTimeout { .. } => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> Error {
        Error::Transport(TransportError::StartupTimeout {
            target: "SQS queue `orders` at http://127.0.0.1:9 (region us-east-1)".into(),
            waited: std::time::Duration::from_secs(2),
            source: Box::new(TransportError::Service {
                operation: "GetQueueUrl",
                retryable: true,
                source: "dispatch failure: connection refused".into(),
            }),
        })
    }

    #[test]
    fn debug_reads_like_anyhow_without_repeating_quoted_causes() {
        let debug = format!("{:?}", unreachable());
        assert_eq!(
            debug,
            "SQS queue `orders` at http://127.0.0.1:9 (region us-east-1) did not answer within \
             2s: check that the endpoint is right and reachable, or give it longer with \
             INIESTA_STARTUP_TIMEOUT\n\nCaused by:\n    GetQueueUrl failed: dispatch failure: \
             connection refused"
        );
        assert!(!debug.contains("retryable"), "{debug}");
    }

    /// An error whose message does not quote its source.
    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);

    impl fmt::Display for Chain {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn debug_numbers_several_causes() {
        let chain = Chain(
            "connection reset",
            Some(Box::new(Chain(
                "tls handshake failed",
                Some(Box::new(Chain("certificate expired", None))),
            ))),
        );
        let err = Error::Lock(LockError::Backend {
            instance: "redis://127.0.0.1:6379".into(),
            source: Box::new(chain),
        });
        assert_eq!(
            format!("{err:?}"),
            "lock server redis://127.0.0.1:6379 failed: connection reset\n\nCaused by:\n    \
             0: tls handshake failed\n    1: certificate expired"
        );
    }

    #[test]
    fn alternate_debug_shows_the_structure() {
        let debug = format!("{:#?}", unreachable());
        assert!(debug.starts_with("Transport(\n"), "{debug}");
        assert!(debug.contains("StartupTimeout"), "{debug}");
    }

    #[test]
    fn a_startup_timeout_is_permanent() {
        let Error::Transport(err) = unreachable() else {
            unreachable!("built as a transport error")
        };
        assert!(!err.is_retryable());
    }
}
