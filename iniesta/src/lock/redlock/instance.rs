//! One Redlock server: a reconnecting multiplexed connection, a deadline on every call, and
//! its up/down state for logs.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ErrorKind, Pipeline, RedisError, Script, ServerErrorKind, Value};
use tokio::time::Instant;

use crate::ConfigError;
use crate::config::redact_url;

/// Where a server listens, for spotting URLs that are not independent servers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Endpoint {
    /// Host (lowercase, `localhost` spelled `127.0.0.1`) and port, or a unix socket path.
    pub(super) address: String,
    /// The logical database.
    pub(super) db: i64,
}

/// Why one call to one server gave no answer.
#[derive(Debug)]
pub(super) enum CallError {
    /// No answer within the call timeout.
    Timeout(Duration),
    /// The connection or the server failed.
    Redis(RedisError),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout(after) => write!(f, "no answer within {after:?}"),
            CallError::Redis(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Timeout(_) => None,
            CallError::Redis(e) => Some(e),
        }
    }
}

/// One server of the quorum.
pub(super) struct Instance {
    /// The URL without its password.
    name: String,
    endpoint: Endpoint,
    connection: ConnectionManager,
    timeout: Duration,
    /// Whether the last call succeeded, so logs show transitions rather than every failure.
    up: AtomicBool,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("url", &self.name)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Parses `url` and prepares a connection that is opened on first use and reopened after
    /// failures (one attempt per call, so a server that is down fails calls at once instead of
    /// holding them through a backoff).
    ///
    /// Must run inside a tokio runtime.
    pub(super) fn open(url: &str, timeout: Duration) -> Result<Instance, ConfigError> {
        let name = redact_url(url);
        let invalid = |reason: String| {
            ConfigError::invalid(
                "INIESTA_REDIS_URLS",
                format!("redis:// or rediss:// URLs ({reason})"),
                name.clone(),
            )
        };
        // The client's errors describe the fault without repeating the URL (and its password).
        let client = redis::Client::open(url).map_err(|e| invalid(e.to_string()))?;
        let info = client.get_connection_info();
        let address = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                format!("{}:{port}", normalize_host(host))
            }
            ConnectionAddr::Unix(path) => path.display().to_string(),
            other => format!("{other:?}"),
        };
        let endpoint = Endpoint {
            address,
            db: info.redis_settings().db(),
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Instance {
            name,
            endpoint,
            connection,
            timeout,
            up: AtomicBool::new(true),
        })
    }

    /// The URL without its password.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether the last call succeeded.
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Pings the server every `every` for as long as the lock exists.
    ///
    /// A connection learns that its server went away only when a call fails; the ping takes
    /// that failure (and the reconnection it triggers) instead of a lock call, notices a
    /// server coming back without waiting for traffic, and keeps [`is_up`](Self::is_up)
    /// current while the lock is idle.
    pub(super) fn spawn_health_check(self: &Arc<Self>, every: Duration) {
        let instance: Weak<Instance> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(instance) = instance.upgrade() else {
                    return;
                };
                instance.ping().await;
            }
        });
    }

    async fn ping(&self) {
        let mut connection = self.connection.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<Value>(&mut connection);
        let result = match tokio::time::timeout(self.timeout, ping).await {
            Err(_) => Err(CallError::Timeout(self.timeout)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(CallError::Redis(e)),
        };
        self.record(result.as_ref().err());
    }

    /// Sends `pipe` in one round trip and returns one value per command.
    ///
    /// `script` is the script the pipeline invokes by `EVALSHA`, if any: on `NOSCRIPT` it is
    /// loaded and the pipeline sent again, within the same deadline.
    pub(super) async fn query(
        &self,
        pipe: &Pipeline,
        script: Option<&Script>,
    ) -> Result<Vec<Value>, CallError> {
        let deadline = Instant::now() + self.timeout;
        let mut connection = self.connection.clone();
        let first = tokio::time::timeout_at(deadline, pipe.query_async(&mut connection)).await;
        let result = match first {
            Err(_) => Err(CallError::Timeout(self.timeout)),
            Ok(Ok(values)) => Ok(values),
            Ok(Err(e)) if is_noscript(&e) && script.is_some() => {
                tracing::debug!(instance = %self.name, "lock script not cached: loading it");
                let mut again = redis::pipe();
                if let Some(script) = script {
                    again.load_script(script);
                }
                for command in pipe.cmd_iter() {
                    again.add_command(command.clone());
                }
                let retried: Result<Result<Vec<Value>, _>, _> =
                    tokio::time::timeout_at(deadline, again.query_async(&mut connection)).await;
                match retried {
                    Err(_) => Err(CallError::Timeout(self.timeout)),
                    Ok(Ok(mut values)) if !values.is_empty() => Ok(values.split_off(1)),
                    Ok(Ok(values)) => Ok(values),
                    Ok(Err(e)) => Err(CallError::Redis(e)),
                }
            }
            Ok(Err(e)) => Err(CallError::Redis(e)),
        };
        self.record(result.as_ref().err());
        result
    }

    /// Asks the server who it is: `Ok(Some(run_id))`, or `Ok(None)` when it answers but
    /// refuses `INFO` (an ACL without it).
    pub(super) async fn probe(&self) -> Result<Option<String>, CallError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("INFO");
        command.arg("server");
        let info = command.query_async::<String>(&mut connection);
        let result = match tokio::time::timeout(self.timeout, info).await {
            Err(_) => Err(CallError::Timeout(self.timeout)),
            Ok(Ok(text)) => Ok(text
                .lines()
                .find_map(|line| line.strip_prefix("run_id:"))
                .map(|id| id.trim().to_owned())),
            Ok(Err(e)) if matches!(e.kind(), ErrorKind::Server(_)) => Ok(None),
            Ok(Err(e)) => Err(CallError::Redis(e)),
        };
        self.record(result.as_ref().err());
        result
    }

    fn record(&self, error: Option<&CallError>) {
        match error {
            None => {
                if !self.up.swap(true, Ordering::AcqRel) {
                    tracing::info!(instance = %self.name, "lock server answers again");
                }
            }
            Some(error) => {
                if self.up.swap(false, Ordering::AcqRel) {
                    tracing::warn!(
                        instance = %self.name,
                        error = %error,
                        "lock server failed; it is retried on every call until it answers"
                    );
                } else {
                    tracing::debug!(instance = %self.name, error = %error, "lock server still failing");
                }
            }
        }
    }
}

fn is_noscript(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// `localhost` and the loopback addresses name one server.
fn normalize_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.to_ascii_lowercase().as_str() {
        "localhost" | "::1" | "127.0.0.1" => "127.0.0.1".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_ignore_spelling_of_loopback() {
        let a = Instance::open("redis://localhost:6379/1", Duration::from_millis(50)).unwrap();
        let b = Instance::open("redis://127.0.0.1:6379/2", Duration::from_millis(50)).unwrap();
        assert_eq!(a.endpoint().address, b.endpoint().address);
        assert_eq!((a.endpoint().db, b.endpoint().db), (1, 2));
    }

    #[tokio::test]
    async fn a_malformed_url_is_a_config_error_without_the_password() {
        let error = Instance::open("redis://user:hunter2@host:notaport", Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(error.contains("INIESTA_REDIS_URLS"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
