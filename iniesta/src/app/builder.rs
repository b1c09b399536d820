//! `AppBuilder`: handlers, state, transport, lock and settings, checked in `build()`; the
//! operations settings (listener, circuit breaker, dead letters) are in `builder/ops.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

mod introspect;
mod ops;

pub use introspect::HandlerInfo;

use super::App;
use crate::config::{Config, ConsumerConfig, OpsConfig};
use crate::dead_letter::DeadLetterSink;
use crate::error::{ConfigError, Location, RegistryError};
use crate::handler::{BoxedHandler, Handler};
use crate::lock::{DEFAULT_LOCK_TTL, IdempotencyLock, LockPolicy, MemoryLock, OnLockLost};
use crate::metrics::Metrics;
use crate::metrics::export::{self, Registry};
use crate::middleware::Middleware;
use crate::pipeline::{Breaker, Pipeline};
use crate::producer::Producer;
use crate::router::{PerHandler, RouteEntry, Router};
use crate::transport::{Capabilities, Transport};
use crate::{IdempotencyKey, Result, States};

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
    policy: LockPolicy,
    ops: OpsConfig,
    dead_letter: Option<Arc<dyn DeadLetterSink>>,
    producer: Option<Arc<dyn Producer>>,
    dead_letter_after_receives: Option<u32>,
    per_handler: PerHandler,
    /// Declared for the AsyncAPI document only.
    sent: Vec<crate::asyncapi::SentMessage>,
    /// The inbox and outbox's database.
    #[cfg(feature = "postgres")]
    database: Option<crate::postgres::Database>,
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
            policy: LockPolicy::default(),
            ops: OpsConfig::default(),
            dead_letter: None,
            producer: None,
            dead_letter_after_receives: None,
            per_handler: PerHandler::default(),
            sent: Vec::new(),
            #[cfg(feature = "postgres")]
            database: None,
        }
    }
}

impl AppBuilder {
    /// A builder with the consumer and lock-policy settings of `config`, for
    /// [`App::from_config`]; the transport and the lock are still to be set.
    pub(crate) fn from_settings(config: &Config) -> Self {
        AppBuilder {
            consumer: config.consumer.clone(),
            policy: config.lock.policy.clone(),
            ops: config.ops.clone(),
            dead_letter_after_receives: config.dead_letter.after_receives,
            ..AppBuilder::default()
        }
    }

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
            concurrency: None,
            payload: None,
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
            concurrency: None,
            payload: None,
        });
        self
    }

    /// Runs `middleware` around every handler (see [`middleware`](crate::middleware)).
    ///
    /// Middleware added first runs outermost, and all app-wide middleware runs outside the
    /// middleware of [`handler_middleware`](Self::handler_middleware).
    ///
    /// # Examples
    ///
    /// ```
    /// use iniesta::{App, middleware};
    ///
    /// let builder = App::builder()
    ///     // Runs first, so it sees what `on_error` and the handler did.
    ///     .middleware(middleware::after(|msg, _, result| {
    ///         tracing::debug!(message_id = msg.id(), ok = result.is_ok(), "done");
    ///     }))
    ///     .middleware(middleware::on_error(|msg, _, error| {
    ///         tracing::warn!(message_id = msg.id(), %error, "failed");
    ///     }));
    /// # drop(builder);
    /// ```
    pub fn middleware(mut self, middleware: Middleware) -> Self {
        self.per_handler.app_middleware.push(middleware);
        self
    }

    /// Runs `middleware` around one handler, inside the app-wide middleware; several run in
    /// the order added, the first outermost.
    ///
    /// `handler` is the handler's name as [`Context::handler_name`](crate::Context::handler_name)
    /// reports it (`my_crate::users::user_updated`, `Billing::invoice_paid`), or the end of
    /// that path after a `::` (`user_updated`, `users::user_updated`) when it names one
    /// handler only.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails with [`RegistryError::HandlerName`] when the name matches
    /// no handler, or several.
    ///
    /// # Examples
    ///
    /// ```rust,standalone_crate
    /// use iniesta::{handler, middleware, App, Message};
    ///
    /// #[handler("Invoice.sent")]
    /// async fn invoice_sent(msg: Message) {
    ///     println!("invoice {}", msg.id());
    /// }
    ///
    /// # fn main() {
    /// let builder = App::builder().handler_middleware(
    ///     "invoice_sent",
    ///     middleware::before(|msg, _| tracing::info!(message_id = msg.id(), "invoice")),
    /// );
    /// # drop(builder);
    /// # }
    /// ```
    pub fn handler_middleware(
        mut self,
        handler: impl Into<String>,
        middleware: Middleware,
    ) -> Self {
        self.per_handler
            .middleware
            .push((handler.into(), middleware));
        self
    }

    /// Runs at most `limit` deliveries of one handler at once (like
    /// `#[handler("Key", concurrency = N)]`, which this overrides), so a slow handler cannot
    /// take every one of the app's [`concurrency`](Self::concurrency) slots.
    ///
    /// A delivery that finds its handler at the limit gives its app slot back and waits,
    /// its message's lease (and lock) kept alive: other handlers' messages keep being
    /// received and handled meanwhile. A waiting delivery still counts as in flight, and the
    /// consumer receives no more than four per app slot in flight; a backlog larger than that
    /// of one limited handler holds up the others until it shrinks (give such a handler a
    /// queue of its own). At shutdown, or when its lock is lost, a waiting delivery gives its
    /// message back at once, unstarted. The [`handler_timeout`](Self::handler_timeout)
    /// counts from when the handler starts.
    ///
    /// `handler` names the handler as for [`handler_middleware`](Self::handler_middleware).
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails when the name matches no handler or several
    /// ([`RegistryError::HandlerName`]), or `limit` is 0 ([`ConfigError::Invalid`]).
    pub fn handler_concurrency(mut self, handler: impl Into<String>, limit: usize) -> Self {
        self.per_handler.concurrency.push((handler.into(), limit));
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

    /// Where handlers' follow-up messages go ([`Context::send`](crate::Context::send),
    /// [`Context::publish`](crate::Context::publish)): an
    /// [`SqsProducer`](crate::producer::SqsProducer) (what [`App::from_env`] sets up, on the
    /// consumer's client), a [`MemoryProducer`](crate::producer::MemoryProducer), or yours.
    pub fn producer(mut self, producer: impl Producer) -> Self {
        self.producer = Some(Arc::new(producer));
        self
    }

    /// The database of the transactional inbox and outbox (feature `postgres`): handlers that
    /// take a [`Tx`](crate::Tx) run in a transaction on it, and with
    /// [`DatabaseConfig::outbox_relay`](crate::config::DatabaseConfig::outbox_relay) the app
    /// runs the outbox relay, sending through its [`producer`](Self::producer).
    /// [`App::from_env`] sets it from `INIESTA_DATABASE_URL`.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails when a handler takes a `Tx` and no database is set, or
    /// the relay is asked for without a producer.
    #[cfg(feature = "postgres")]
    pub fn database(mut self, database: crate::postgres::Database) -> Self {
        self.database = Some(database);
        self
    }

    /// The idempotency lock (default: a [`MemoryLock`], which protects within one process,
    /// with a ttl that follows the transport's lease).
    pub fn lock(mut self, lock: impl IdempotencyLock) -> Self {
        self.lock = LockChoice::Custom(Arc::new(lock));
        self
    }

    /// Handles without any lock or processed marker.
    pub fn without_lock(mut self) -> Self {
        self.lock = LockChoice::Disabled;
        self
    }

    /// What a delivery whose lock was lost while its handler ran does (default: cancel it
    /// and give the message back).
    pub fn on_lock_lost(mut self, on_lock_lost: OnLockLost) -> Self {
        self.policy.on_lock_lost = on_lock_lost;
        self
    }

    /// Handle without the lock while it cannot be reached (default off: the consumer stops
    /// receiving until the lock answers again).
    pub fn lock_fail_open(mut self, enabled: bool) -> Self {
        self.policy.fail_open = enabled;
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

    /// Longest a delivery's lease is extended in total while its handler runs (default: as
    /// long as the transport allows, 12 hours on SQS). After it the message becomes visible
    /// again while its handler still runs.
    pub fn max_lease(mut self, max: Duration) -> Self {
        self.consumer.max_lease = Some(max);
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

    /// What identifies a message for the lock and the processed marker (default: the broker's
    /// message id, or a trusted SNS `MessageId`).
    pub fn idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.consumer.decode.idempotency_key = key;
        self
    }

    /// Include message bodies in failure logs (default off: bodies are confidential).
    pub fn log_bodies(mut self, enabled: bool) -> Self {
        self.consumer.log_bodies = enabled;
        self
    }

    /// Remember handled messages so redeliveries are deleted unhandled (default on).
    pub fn processed_marker(mut self, enabled: bool) -> Self {
        self.policy.processed_marker = enabled;
        self
    }

    /// Checks the handlers, state and settings and creates the app.
    ///
    /// With [`metrics_addr`](Self::metrics_addr) set, binds the listener now.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] for duplicate keys or fallbacks, malformed keys, or state a handler
    /// needs and nobody registered; [`ConfigError`] for bad settings or a missing transport;
    /// [`Error::Io`](crate::Error::Io) when the metrics address cannot be bound.
    pub fn build(self) -> Result<App> {
        let ops = self.ops.clone();
        let prometheus = ops.metrics_addr.map(|_| export::prometheus());
        let registry = prometheus
            .as_ref()
            .map_or(Registry::Global, |(registry, _)| registry.clone());
        let mut pipeline = self.into_pipeline_with(&registry)?;
        let listener = match (ops.metrics_addr, prometheus) {
            (Some(addr), Some((_, handle))) => {
                let stall_after =
                    crate::ops::stall_after(ops.stall_after, pipeline.capabilities.receive_wait);
                Some(crate::ops::Listener::bind(addr, handle, stall_after)?)
            }
            _ => None,
        };
        pipeline.metrics_addr = listener.as_ref().map(crate::ops::Listener::addr);
        Ok(App {
            pipeline: Arc::new(pipeline),
            listener,
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

    /// The `#[handler]` registrations (unless turned off) and the handlers added here.
    pub(crate) fn route_entries(&self) -> Vec<RouteEntry> {
        let mut entries = Vec::new();
        if self.registered {
            entries.extend(
                crate::registry::registrations()
                    .into_iter()
                    .map(RouteEntry::from_registration),
            );
        }
        entries.extend(self.entries.iter().cloned());
        entries
    }

    /// The pipeline, its metrics registered with the global `metrics` recorder.
    pub(crate) fn into_pipeline(self) -> Result<Pipeline> {
        self.into_pipeline_with(&Registry::Global)
    }

    fn into_pipeline_with(self, registry: &Registry) -> Result<Pipeline> {
        self.consumer.validate()?;
        let mut router = Router::build(self.route_entries())?;
        router.apply(self.per_handler, &self.states)?;
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
        let capabilities = transport.capabilities();
        check_capabilities(&self.consumer, &capabilities)?;
        let dead_letters = ops::dead_letters(
            self.dead_letter,
            self.dead_letter_after_receives,
            &capabilities,
        )?;
        let lock: Option<Arc<dyn IdempotencyLock>> = match self.lock {
            LockChoice::InProcess => {
                // Follows the lease: a crashed holder's lock expires when its message returns.
                let ttl = capabilities.lease.unwrap_or(DEFAULT_LOCK_TTL);
                Some(Arc::new(MemoryLock::with_ttl(ttl)))
            }
            LockChoice::Custom(lock) => Some(lock),
            LockChoice::Disabled => None,
        };
        if let Some(lock) = &lock {
            warn_lock_outlives_lease(lock.ttl(), &capabilities);
        }
        for line in router.describe() {
            tracing::debug!(route = %line, "route");
        }
        #[cfg(feature = "postgres")]
        let database = check_database(self.database, &router, self.producer.is_some())?;
        let metrics = Arc::new(Metrics::new(&capabilities.name, registry));
        let breaker = Breaker::new(self.consumer.circuit_breaker, Arc::clone(&metrics));
        Ok(Pipeline {
            router,
            states: self.states,
            transport,
            lock,
            policy: self.policy,
            config: self.consumer,
            spans: crate::trace::span::DeliverySpans::new(&capabilities),
            capabilities,
            metrics,
            dead_letters,
            producer: self.producer,
            #[cfg(feature = "postgres")]
            database,
            in_flight: Arc::default(),
            pause: Arc::default(),
            breaker,
            metrics_addr: None,
            stopping: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
        })
    }
}

/// The database the pipeline runs `Tx` handlers with: refused when a handler takes a `Tx`
/// and there is none, or the relay has nothing to send through.
#[cfg(feature = "postgres")]
fn check_database(
    database: Option<crate::postgres::Database>,
    router: &Router,
    has_producer: bool,
) -> Result<Option<Arc<crate::postgres::DeliveryDatabase>>, ConfigError> {
    let Some(database) = database else {
        if let Some(route) = router.routes().iter().find(|r| r.transactional) {
            return Err(ConfigError::Missing {
                what: format!(
                    "the database of the inbox (handler `{}` at {}:{} takes a Tx)",
                    route.location.name, route.location.file, route.location.line
                ),
                variables: "INIESTA_DATABASE_URL (AppBuilder::database)".into(),
            });
        }
        return Ok(None);
    };
    if database.config().outbox_relay && !has_producer {
        return Err(ConfigError::Conflict(
            "the outbox relay is on (INIESTA_OUTBOX_RELAY) but the app has no producer to send through: set one with AppBuilder::producer (App::from_env sets up SQS's)".into(),
        ));
    }
    Ok(Some(Arc::new(crate::postgres::DeliveryDatabase::new(
        database,
    ))))
}

/// Refuses settings the broker cannot honour, rather than pretending.
fn check_capabilities(
    consumer: &ConsumerConfig,
    capabilities: &Capabilities,
) -> Result<(), ConfigError> {
    if consumer.retry_backoff.is_some() && capabilities.max_delay.is_none() {
        return Err(ConfigError::Conflict(format!(
            "a retry backoff is set, but the transport of `{}` cannot delay a redelivery: \
             unset INIESTA_RETRY_BACKOFF (AppBuilder::retry_backoff)",
            capabilities.name
        )));
    }
    Ok(())
}

/// Warns when a crashed consumer's lock would outlive its message's lease: the redelivery
/// then finds the message locked and spends a delivery (it is given back for when the lock
/// can expire), and with too few deliveries left it reaches the dead-letter queue unhandled.
fn warn_lock_outlives_lease(lock_ttl: Duration, capabilities: &Capabilities) {
    let Some(lease) = capabilities.lease else {
        return;
    };
    if lock_ttl > lease {
        tracing::warn!(
            lock_ttl = ?lock_ttl,
            visibility_timeout = ?lease,
            queue = %capabilities.name,
            "the lock ttl exceeds the queue's visibility timeout: after a crash the message \
             comes back while the crashed consumer's lock still holds and spends one more \
             delivery; leave INIESTA_LOCK_TIMEOUT (RedlockConfig::ttl) unset to follow the \
             visibility timeout"
        );
    }
    // A crash spends one delivery, and a lock that outlives the lease one more.
    let needed = if lock_ttl > lease { 3 } else { 2 };
    if let Some(max) = capabilities.max_deliveries
        && max < needed
    {
        tracing::warn!(
            max_receive_count = max,
            needed,
            queue = %capabilities.name,
            "the redrive policy's maxReceiveCount is too small to survive one consumer crash: \
             a message whose handler was running when a consumer died goes to the dead-letter \
             queue unhandled; raise maxReceiveCount"
        );
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
                &self.transport.as_ref().map(|t| t.capabilities().name),
            )
            .field("consumer", &self.consumer)
            .field("policy", &self.policy)
            .field("ops", &self.ops)
            .field(
                "dead_letter",
                &self
                    .dead_letter
                    .as_ref()
                    .map(|s| s.destination().to_owned()),
            )
            .field(
                "dead_letter_after_receives",
                &self.dead_letter_after_receives,
            )
            .field("per_handler", &self.per_handler)
            .field("producer", &self.producer.is_some())
            .finish_non_exhaustive()
    }
}
