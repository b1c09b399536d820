//! `AppBuilder`: handlers, state, transport, lock and settings, checked in `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::App;
use crate::config::{ConsumerConfig, LockConfig};
use crate::error::{ConfigError, Location, RegistryError};
use crate::handler::{BoxedHandler, Handler};
use crate::lock::{IdempotencyLock, MemoryLock};
use crate::metrics::Metrics;
use crate::pipeline::{LockPolicy, Pipeline};
use crate::router::{RouteEntry, Router};
use crate::transport::Transport;
use crate::{Result, States};

/// Configures an [`App`]: handlers (registered with `#[handler]` and added here), shared
/// state, the transport, the lock and the consumer's settings.
///
/// # Examples
///
/// ```
/// use iniesta::{App, Message, transport::MemoryQueue};
///
/// #[derive(Clone)]
/// struct Mailer;
///
/// let app = App::builder()
///     .transport(MemoryQueue::default())
///     .state(Mailer)
///     .handler("UserCreated.user", |msg: Message| async move {
///         println!("welcome {}", msg.id());
///     })
///     .fallback(|msg: Message| async move {
///         println!("no handler for {:?}", msg.event());
///     })
///     .concurrency(64)
///     .build()
///     .expect("valid app");
/// # drop(app);
/// ```
#[must_use = "an AppBuilder does nothing until built"]
pub struct AppBuilder {
    entries: Vec<RouteEntry>,
    registered: bool,
    states: States,
    transport: Option<Arc<dyn Transport>>,
    lock: LockChoice,
    consumer: ConsumerConfig,
    lock_config: LockConfig,
}

enum LockChoice {
    /// A [`MemoryLock`] per app: correct within one process.
    InProcess,
    Custom(Arc<dyn IdempotencyLock>),
    Disabled,
}

impl Default for AppBuilder {
    fn default() -> Self {
        AppBuilder {
            entries: Vec::new(),
            registered: true,
            states: States::default(),
            transport: None,
            lock: LockChoice::InProcess,
            consumer: ConsumerConfig::default(),
            lock_config: LockConfig::default(),
        }
    }
}

impl AppBuilder {
    /// Routes `key` (an exact key or a `Prefix.*` pattern) to `handler`: a function or a
    /// closure, like iniesta's `SQSClient.add_handler(fn, "Event.key")`.
    #[track_caller]
    pub fn handler<H: Handler<T>, T: 'static>(
        mut self,
        key: impl Into<String>,
        handler: H,
    ) -> Self {
        let location = runtime_location::<H>();
        self.entries.push(RouteEntry {
            keys: vec![key.into()],
            fallback: false,
            handler: BoxedHandler::new(handler),
            location,
        });
        self
    }

    /// Sets the handler for messages whose key no other handler takes, or that have none.
    #[track_caller]
    pub fn fallback<H: Handler<T>, T: 'static>(mut self, handler: H) -> Self {
        let location = runtime_location::<H>();
        self.entries.push(RouteEntry {
            keys: Vec::new(),
            fallback: true,
            handler: BoxedHandler::new(handler),
            location,
        });
        self
    }

    /// Whether the `#[handler]` functions linked into the binary are routed (default `true`).
    /// Tests that build several apps in one binary turn it off.
    pub fn registered_handlers(mut self, enabled: bool) -> Self {
        self.registered = enabled;
        self
    }

    /// Registers shared state, one value per type: handlers take it as [`State<S>`](crate::State),
    /// and `&self` handler methods of `S` run on it.
    pub fn state<S: Send + Sync + 'static>(mut self, value: S) -> Self {
        self.states.insert(value);
        self
    }

    /// The queue to consume: [`MemoryQueue`](crate::transport::MemoryQueue), the SQS transport,
    /// or your own [`Transport`].
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// The idempotency lock (default: a [`MemoryLock`], which protects within one process).
    pub fn lock(mut self, lock: impl IdempotencyLock) -> Self {
        self.lock = LockChoice::Custom(Arc::new(lock));
        self
    }

    /// Handles without any lock or processed marker.
    pub fn without_lock(mut self) -> Self {
        self.lock = LockChoice::Disabled;
        self
    }

    /// Replaces all consumer settings.
    pub fn consumer_config(mut self, config: ConsumerConfig) -> Self {
        self.consumer = config;
        self
    }

    /// Lock settings used by the pipeline: fail-open, processed marker and its ttl.
    pub fn lock_config(mut self, config: LockConfig) -> Self {
        self.lock_config = config;
        self
    }

    /// Handlers running at once (default 32).
    pub fn concurrency(mut self, handlers: usize) -> Self {
        self.consumer.concurrency = handlers;
        self
    }

    /// Cancels and fails a handler that runs longer than `timeout`.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.consumer.handler_timeout = Some(timeout);
        self
    }

    /// Time in-flight handlers get at shutdown (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.consumer.shutdown_grace = grace;
        self
    }

    /// After a failure, delay the retry by `base`, doubling per receive, up to `max`.
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.consumer.retry_backoff = Some(base);
        self.consumer.retry_backoff_max = max;
        self
    }

    /// The attribute carrying the event key (default `iniesta_pass`).
    pub fn event_attribute(mut self, name: impl Into<String>) -> Self {
        self.consumer.decode.event_attribute = name.into();
        self
    }

    /// Remember handled messages so redeliveries are deleted unhandled (default on).
    pub fn processed_marker(mut self, enabled: bool) -> Self {
        self.lock_config.policy.processed_marker = enabled;
        self
    }

    /// Checks the handlers, state and settings and creates the app.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] for duplicate keys or fallbacks, malformed keys, or state a handler
    /// needs and nobody registered; [`ConfigError`] for bad settings or a missing transport.
    pub fn build(self) -> Result<App> {
        let pipeline = self.into_pipeline()?;
        Ok(App {
            pipeline: Arc::new(pipeline),
        })
    }

    pub(crate) fn set_transport_arc(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    pub(crate) fn set_lock_arc(mut self, lock: Option<Arc<dyn IdempotencyLock>>) -> Self {
        self.lock = match lock {
            Some(lock) => LockChoice::Custom(lock),
            None => LockChoice::Disabled,
        };
        self
    }

    pub(crate) fn into_pipeline(self) -> Result<Pipeline> {
        self.consumer.validate()?;
        let mut entries = Vec::new();
        if self.registered {
            entries.extend(
                crate::registry::registrations()
                    .into_iter()
                    .map(RouteEntry::from_registration),
            );
        }
        entries.extend(self.entries);
        let router = Router::build(entries)?;
        for route in router.routes() {
            route
                .handler
                .check(&self.states)
                .map_err(|type_name| RegistryError::MissingState {
                    handler: Box::new(route.location.clone()),
                    type_name,
                })?;
        }
        let transport = self.transport.ok_or_else(|| ConfigError::Missing {
            what: "the transport".into(),
            variables: "AppBuilder::transport (MemoryQueue for tests and demos), or the SQS variables read by iniesta::run".into(),
        })?;
        let queue = transport.queue_info();
        let lock: Option<Arc<dyn IdempotencyLock>> = match self.lock {
            LockChoice::InProcess => Some(Arc::new(MemoryLock::new())),
            LockChoice::Custom(lock) => Some(lock),
            LockChoice::Disabled => None,
        };
        let policy = LockPolicy {
            fail_open: self.lock_config.policy.fail_open,
            processed_marker: self.lock_config.policy.processed_marker,
            processed_ttl: self
                .lock_config
                .policy
                .processed_ttl
                .unwrap_or(queue.retention),
        };
        for line in router.describe() {
            tracing::debug!(route = %line, "route");
        }
        Ok(Pipeline {
            router,
            states: self.states,
            transport,
            lock,
            policy,
            config: self.consumer,
            queue,
            metrics: Arc::new(Metrics::new()),
            stopping: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
        })
    }
}

#[track_caller]
fn runtime_location<H>() -> Location {
    let caller = std::panic::Location::caller();
    Location {
        name: std::any::type_name::<H>().to_owned(),
        file: caller.file().to_owned(),
        line: caller.line(),
    }
}

impl fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppBuilder")
            .field("handlers", &self.entries.len())
            .field("registered", &self.registered)
            .field("states", &self.states)
            .field(
                "transport",
                &self.transport.as_ref().map(|t| t.queue_info().name),
            )
            .field("consumer", &self.consumer)
            .field("lock_config", &self.lock_config)
            .finish_non_exhaustive()
    }
}
