//! One Redlock server: a reconnecting multiplexed connection, a deadline on every call, and
//! its up/down state for logs.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ConnectionAddr, ErrorKind, RedisError, Script, ServerErrorKind, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::scripts;
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
#[derive(Debug, Clone)]
pub(super) enum CallError {
    /// No answer within the call timeout.
    Timeout(Duration),
    /// The connection or the server failed.
    Redis(RedisError),
    /// The reply had an unexpected shape.
    Protocol(&'static str),
    /// The task sending calls stopped (the runtime is shutting down).
    Closed,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout(after) => write!(f, "no answer within {after:?}"),
            CallError::Redis(e) => write!(f, "{e}"),
            CallError::Protocol(what) => write!(f, "unexpected reply: {what}"),
            CallError::Closed => f.write_str("the runtime is shutting down"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Redis(e) => Some(e),
            _ => None,
        }
    }
}

/// One server of the quorum.
///
/// Calls are coalesced: while one pipeline is on its way to the server, the calls that arrive
/// wait in the outbox and leave together as the next pipeline (group commit). An idle lock
/// sends each call at once; a busy one sends one round trip for many calls, which is what
/// makes a marker and a release per message affordable.
pub(super) struct Instance {
    /// The URL without its password.
    name: String,
    endpoint: Endpoint,
    connection: ConnectionManager,
    timeout: Duration,
    /// Whether the last call succeeded, so logs show transitions rather than every failure.
    up: AtomicBool,
    outbox: Mutex<Outbox>,
}

/// Calls waiting for the pipeline in flight to come back.
#[derive(Default)]
struct Outbox {
    calls: Vec<Call>,
    /// Whether a task is sending (it takes the calls queued meanwhile when it is done).
    sending: bool,
}

/// Clears [`Outbox::sending`] when the sending task is dropped mid-way (runtime shutdown), so
/// the next call starts a new one. Disarmed on the normal exit, which clears it under the lock.
struct Sending<'a> {
    instance: &'a Instance,
    armed: bool,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.instance.outbox().sending = false;
        }
    }
}

/// One caller's commands and where their replies go.
struct Call {
    commands: Vec<Cmd>,
    script: Option<&'static Script>,
    reply: oneshot::Sender<Result<Vec<Value>, CallError>>,
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
            outbox: Mutex::new(Outbox::default()),
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

    /// Pings the server within the call timeout: whether it answered.
    pub(super) async fn ping(&self) -> bool {
        let was_up = self.is_up();
        let mut connection = self.connection.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<Value>(&mut connection);
        let result = match tokio::time::timeout(self.timeout, ping).await {
            Err(_) => Err(CallError::Timeout(self.timeout)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(CallError::Redis(e)),
        };
        self.record(result.as_ref().err());
        if result.is_ok() && !was_up {
            // Back after failing: perhaps restarted, with an empty script cache.
            self.load_scripts().await;
        }
        result.is_ok()
    }

    /// Sends `commands` (in the next pipeline to the server) and returns one value per command,
    /// within the call timeout.
    ///
    /// `script` is the script the commands invoke by `EVALSHA`, if any: on `NOSCRIPT` it is
    /// loaded and the commands sent again, within the same deadline.
    pub(super) async fn call(
        self: Arc<Self>,
        commands: Vec<Cmd>,
        script: Option<&'static Script>,
    ) -> Result<Vec<Value>, CallError> {
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        let start_sending = {
            let mut outbox = self.outbox();
            outbox.calls.push(Call {
                commands,
                script,
                reply,
            });
            !std::mem::replace(&mut outbox.sending, true)
        };
        if start_sending {
            tokio::spawn(Arc::clone(&self).send_queued());
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => Err(CallError::Timeout(self.timeout)),
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallError::Closed),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // Plain data: a panic elsewhere while holding it leaves it consistent.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the queued calls, one pipeline at a time, until none is left.
    async fn send_queued(self: Arc<Self>) {
        let mut sending = Sending {
            instance: &self,
            armed: true,
        };
        loop {
            let calls = {
                let mut outbox = self.outbox();
                if outbox.calls.is_empty() {
                    outbox.sending = false;
                    drop(outbox);
                    sending.armed = false;
                    return;
                }
                std::mem::take(&mut outbox.calls)
            };
            self.send(calls).await;
        }
    }

    /// One round trip for `calls` (two when a script must be loaded first).
    async fn send(&self, calls: Vec<Call>) {
        let deadline = Instant::now() + self.timeout;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut replies = Vec::with_capacity(calls.len());
        for call in calls {
            let count = call.commands.len();
            for command in call.commands {
                pipe.add_command(command);
            }
            replies.push((count, call.script, call.reply));
        }
        let mut connection = self.connection.clone();
        let values: Result<Vec<Value>, CallError> =
            match tokio::time::timeout_at(deadline, pipe.query_async(&mut connection)).await {
                Err(_) => Err(CallError::Timeout(self.timeout)),
                Ok(Err(e)) => Err(CallError::Redis(e)),
                Ok(Ok(values)) => Ok(values),
            };
        self.record(values.as_ref().err());
        let values: Vec<Value> = match values {
            Ok(values) if values.len() == pipe.len() => values,
            Ok(_) => {
                let error = CallError::Protocol("a pipeline reply of the wrong length");
                for (_, _, reply) in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                return;
            }
            Err(error) => {
                for (_, _, reply) in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                return;
            }
        };

        // Calls whose script was missing ran none of their writes: send them again after
        // loading the scripts.
        let mut retry: Vec<Cmd> = Vec::new();
        let mut loaded: Vec<&'static Script> = Vec::new();
        let mut retried = Vec::new();
        let mut values = values.into_iter();
        let mut commands = pipe.cmd_iter();
        for (count, script, reply) in replies {
            let own: Vec<Value> = values.by_ref().take(count).collect();
            let sent: Vec<&Cmd> = commands.by_ref().take(count).collect();
            match (own.iter().any(is_noscript), script) {
                (true, Some(script)) => {
                    if !loaded.iter().any(|s| s.get_hash() == script.get_hash()) {
                        loaded.push(script);
                    }
                    retry.extend(sent.into_iter().cloned());
                    retried.push((count, reply));
                }
                _ => {
                    let _ = reply.send(server_errors(own));
                }
            }
        }
        if retried.is_empty() {
            return;
        }
        tracing::debug!(instance = %self.name, "lock scripts not cached: loading them");
        let mut again = redis::pipe();
        again.ignore_errors();
        for script in &loaded {
            again.load_script(script);
        }
        for command in retry {
            again.add_command(command);
        }
        let result =
            tokio::time::timeout_at(deadline, again.query_async::<Vec<Value>>(&mut connection))
                .await;
        let values = match result {
            Err(_) => Err(CallError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(CallError::Redis(e)),
            Ok(Ok(values)) if values.len() == again.len() => Ok(values),
            Ok(Ok(_)) => Err(CallError::Protocol("a pipeline reply of the wrong length")),
        };
        self.record(values.as_ref().err());
        match values {
            Ok(values) => {
                let mut values = values.into_iter().skip(loaded.len());
                for (count, reply) in retried {
                    let _ = reply.send(server_errors(values.by_ref().take(count).collect()));
                }
            }
            Err(error) => {
                for (_, reply) in retried {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
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
        if result.is_ok() {
            self.load_scripts().await;
        }
        result
    }

    /// Loads every script, so calls rarely meet `NOSCRIPT`; failures only cost that later.
    async fn load_scripts(&self) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for script in scripts::all() {
            pipe.load_script(script);
        }
        let mut connection = self.connection.clone();
        let load = pipe.query_async::<Vec<Value>>(&mut connection);
        if let Ok(Err(e)) = tokio::time::timeout(self.timeout, load).await {
            tracing::debug!(instance = %self.name, error = %e, "could not load the lock scripts");
        }
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

fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
}

/// One call's values, or the first error the server answered to one of its commands.
fn server_errors(values: Vec<Value>) -> Result<Vec<Value>, CallError> {
    match values.iter().find_map(|v| match v {
        Value::ServerError(e) => Some(e.clone()),
        _ => None,
    }) {
        Some(error) => Err(CallError::Redis(error.into())),
        None => Ok(values),
    }
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

    #[tokio::test]
    async fn tls_urls_are_accepted() {
        let instance = Instance::open("rediss://:secret@127.0.0.1:6390", Duration::from_secs(1));
        assert!(instance.is_ok(), "{instance:?}");
    }
}
