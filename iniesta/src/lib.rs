//! **iniesta: event handlers for AWS SQS, routed by event key, handled exactly once.**
//!
//! Annotate async functions with `#[handler("Event.key")]`; in `main`, take the app builder
//! [`App::from_env`] sets up, register shared state and run it (or call [`run`] when no handler
//! needs state). The runtime long-polls SQS, reads each message's event key from its `iniesta_pass` attribute
//! (or its SNS envelope), takes a Redis Redlock on the message id so no message is handled
//! twice at once, runs the handler, and deletes the message only when the handler succeeded.
//!
//! # Examples
//!
//! Handlers: free functions, several keys, prefix patterns, the fallback, methods.
//!
//! ```rust,standalone_crate
//! use iniesta::{handler, handlers, Context, Json, Message, State};
//!
//! #[derive(serde::Deserialize)]
//! struct UserUpdated { id: u64 }
//!
//! #[handler("UserUpdated.user")]
//! async fn user_updated(Json(user): Json<UserUpdated>, ctx: Context) -> Result<(), iniesta::BoxError> {
//!     println!("user {} (attempt {})", user.id, ctx.attempt());
//!     Ok(())
//! }
//!
//! #[handler("OrderCreated.order", "OrderPaid.order")]
//! async fn orders(msg: Message) {
//!     println!("{:?}", msg.event());
//! }
//!
//! #[handler]
//! async fn fallback(msg: Message) {
//!     println!("unrouted {}", msg.id());
//! }
//!
//! struct Billing { currency: &'static str }
//!
//! #[handlers]
//! impl Billing {
//!     #[handler("InvoiceSent.billing")]
//!     async fn invoice_sent(&self, msg: Message) -> Result<(), iniesta::BoxError> {
//!         println!("{} invoice {}", self.currency, msg.id());
//!         Ok(())
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! Running: [`App::from_env`] reads the `INIESTA_*` variables (see [`config`]), connects to
//! SQS and the lock, installs a log output unless the program has one, and returns the
//! [`AppBuilder`]: register state there (`Billing` above runs on the registered instance),
//! then build and run. [`App::builder`] configures everything explicitly instead and picks
//! the transport; `iniesta::run()` is `from_env` with nothing added.
//!
//! ```no_run
//! # struct Billing { currency: &'static str }
//! #[tokio::main]
//! async fn main() -> Result<(), iniesta::Error> {
//!     iniesta::App::from_env()
//!         .await?
//!         .state(Billing { currency: "EUR" })
//!         .build()?
//!         .run()
//!         .await
//! }
//! ```
//!
//! Testing without AWS: [`testing::TestClient`] runs the real pipeline on an SQS simulator.
//!
//! ```
//! use iniesta::{testing::TestClient, App, Message, OutgoingMessage, Outcome};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let client = TestClient::new(
//!     App::builder()
//!         .registered_handlers(false)
//!         .handler("Ping.demo", |_: Message| async { Ok::<_, iniesta::BoxError>(()) }),
//! )
//! .unwrap();
//! let report = client.deliver(OutgoingMessage::new("Ping.demo")).await;
//! assert_eq!(report.outcome, Outcome::Handled);
//! assert!(client.queue().is_empty());
//! # }
//! ```
//!
//! # Delivery guarantees
//!
//! A message is deleted only after its handler succeeded. A failing, panicking or timed-out
//! handler leaves it in the queue; it comes back after its visibility timeout (or a configured
//! backoff) and reaches the queue's dead-letter queue through its redrive policy, or, with a
//! [`dead_letter`] sink configured, is deleted only once the sink stored it. The lock is
//! released only after the delete, and a processed marker set before the delete makes a
//! redelivery of a handled message a no-op. Redlock is a lock for efficiency: see
//! [`lock`] for what it does not promise and the fencing token that closes the gap.
//!
//! # Feature flags
//!
//! - `sqs` (default): the AWS SQS transport.
//! - `redis` (default): the Redis Redlock.
//! - `sns`: publishing to SNS (`producer::SnsProducer`) and the subscription checks.
//! - `sns-signature`: verifying SNS envelope signatures (`INIESTA_SNS_VERIFY_SIGNATURES`).
//! - `cli`: the `iniesta` binary and `iniesta::cli` for a service's own binary.
//! - `test-util`: [`TestClient::advance`](testing::TestClient::advance), which moves tokio's
//!   paused clock.
//! - `postgres`: the transactional inbox and outbox on PostgreSQL ([`postgres`]): handlers
//!   that take a [`Tx`] commit their writes, the inbox row and their follow-up
//!   messages together.
//! - `otlp`: export the delivery spans over OTLP from the default subscriber of [`run`] and
//!   [`App::from_env`], configured by the standard `OTEL_*` variables (see [`trace`]). Trace
//!   context propagation works without it.

mod app;
mod backoff;
mod context;
mod error;
mod handler;
mod message;
mod metrics;
mod ops;
mod pipeline;
mod registry;
mod router;
mod state;

// Every Rust block of the README compiles (and the testing one runs) as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctests {}

pub mod asyncapi;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod dead_letter;
pub mod lock;
pub mod middleware;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod producer;
pub mod subscription;
pub mod testing;
pub mod trace;
pub mod transport;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use app::{App, AppBuilder, HandlerInfo, RunningApp, run};
pub use context::Context;
pub use dead_letter::{Permanent, PermanentExt, permanent};
pub use error::{
    BoxError, ConfigError, DatabaseError, Error, Location, LockError, RegistryError, Result,
    TransportError,
};
pub use handler::{BoxFuture, BoxedHandler, FromMessage, Handler, IntoHandlerResult, Json, State};
pub use message::{
    AttributeValue, DecodeError, DecodeOptions, IdempotencyKey, Message, OutgoingMessage,
    RawMessage, Receipt,
};
pub use metrics::MetricsSnapshot;
pub use pipeline::{Outcome, PauseReason, Report};
#[cfg(feature = "postgres")]
pub use postgres::Tx;
/// The `schemars` that payload schemas of the [`asyncapi`] document are written with.
pub use schemars;
/// The `sqlx` that [`Tx`] and [`postgres::Outbox`] take connections of (feature `postgres`):
/// use it, or the same major version, in your own code.
#[cfg(feature = "postgres")]
pub use sqlx;
pub use state::States;
pub use transport::sns::SnsNotification;
pub use transport::{SqsDetails, SystemAttributes};

/// Registers an `async fn` as the handler of one or more event keys.
///
/// Keys are string literals: exact keys (`"UserUpdated.user"`) or prefix patterns ending in `*`
/// (`"UserUpdated.*"`). A bare `#[handler]` registers the fallback, which receives every message
/// no other handler matches. The function stays as written (you can still call it); the
/// attribute also registers it at link time, and [`App::builder`] and [`run`] route to it with
/// no further wiring.
///
/// Arguments are extractors ([`Message`], [`Context`], [`Json<T>`], [`State<S>`] or your own
/// [`FromMessage`] types), at most eight. The return type is `()` or `Result<(), E>` with
/// `E: Into<BoxError>`, and the future must be `Send`. Each mistake is a compile error at the
/// argument, the return type or the function's name; so are empty or repeated keys and a `*`
/// anywhere but at the end. A key claimed by two handlers fails [`AppBuilder::build`] naming both.
///
/// `concurrency = N` runs at most N deliveries of the handler at once, so a slow handler
/// cannot take every one of the app's slots: `#[handler("Report.build", concurrency = 2)]`
/// (see [`AppBuilder::handler_concurrency`], which can also set or override it).
///
/// With a renamed dependency (or a facade crate that re-exports iniesta), name it:
/// `#[handler("Event.key", crate = my_iniesta)]` (also `#[handlers(crate = my_iniesta)]` on an
/// impl block); the expansion then never mentions `::iniesta`.
///
/// Methods need [`#[handlers]`](handlers) on their impl block. (An associated fn in an impl
/// without it fails with "cannot find value `name` in this scope" at the fn's name.)
///
/// # Examples
///
/// ```rust,standalone_crate
/// use iniesta::{handler, BoxError, Context, Json, Message, State};
///
/// #[derive(serde::Deserialize)]
/// struct UserUpdated { id: u64 }
///
/// #[derive(Clone)]
/// struct Db;
///
/// #[handler("UserUpdated.user")]
/// async fn user_updated(Json(user): Json<UserUpdated>, State(db): State<Db>) -> Result<(), BoxError> {
///     let _ = (user.id, db);
///     Ok(())
/// }
///
/// // Several keys, one handler.
/// #[handler("OrderCreated.order", "OrderPaid.order")]
/// async fn orders(msg: Message) {
///     println!("order event {:?}", msg.event());
/// }
///
/// // A prefix pattern: every key that starts with `Shipment.`.
/// #[handler("Shipment.*")]
/// async fn shipments(msg: Message, ctx: Context) {
///     println!("{:?}, attempt {}", msg.event(), ctx.attempt());
/// }
///
/// // The fallback: every message no other handler matches.
/// #[handler]
/// async fn fallback(msg: Message) {
///     println!("no handler for {:?}", msg.event());
/// }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// // error: `#[handler]` needs an `async fn`: add `async` before `fn`
/// #[iniesta::handler("UserUpdated.user")]
/// fn user_updated(msg: iniesta::Message) {}
/// # fn main() {}
/// ```
#[doc(inline)]
pub use iniesta_macros::handler;

/// Registers the `#[handler]` methods of an impl block.
///
/// A method attribute cannot see the type it belongs to, so `#[handler]` on a method needs
/// `#[handlers]` on its impl block. Methods without `#[handler]` are left alone.
///
/// - An associated fn (no `self`) is a handler like a free fn.
/// - A `&self` method runs on the instance registered with [`AppBuilder::state`]; the type must
///   be `Send + Sync + 'static`, and a missing instance fails [`AppBuilder::build`].
///   `self: Arc<Self>` works too.
/// - `&mut self` and `self` by value are compile errors: deliveries share the instance
///   concurrently, so keep mutable state behind a `Mutex` or an atomic.
///
/// The block must be an inherent, non-generic impl such as `impl Billing`.
///
/// # Examples
///
/// ```rust,standalone_crate
/// use iniesta::{handler, handlers, App, BoxError, Message};
///
/// struct Billing { currency: &'static str }
///
/// #[handlers]
/// impl Billing {
///     // An associated fn: a handler like a free fn.
///     #[handler("InvoiceSent.billing")]
///     async fn invoice_sent(msg: Message) -> Result<(), BoxError> {
///         println!("invoice sent: {:?}", msg.body_str());
///         Ok(())
///     }
///
///     // A `&self` method: runs on the `Billing` registered as state.
///     #[handler("InvoicePaid.billing")]
///     async fn invoice_paid(&self, msg: Message) {
///         println!("invoice {} paid in {}", msg.id(), self.currency);
///     }
///
///     // Not a handler: left alone.
///     fn currency(&self) -> &str { self.currency }
/// }
///
/// # fn main() -> Result<(), iniesta::Error> {
/// let app = App::builder()
///     .transport(iniesta::transport::MemoryQueue::default())
///     .state(Billing { currency: "EUR" })
///     .build()?;
/// # drop(app);
/// # Ok(())
/// # }
/// ```
///
/// An instance shared across threads must be `Sync`:
///
/// ```compile_fail
/// // error: `Cell<u64>` cannot be shared between threads safely
/// struct Counter { seen: std::cell::Cell<u64> }
///
/// #[iniesta::handlers]
/// impl Counter {
///     #[iniesta::handler("UserUpdated.user")]
///     async fn user_updated(&self) {
///         self.seen.set(self.seen.get() + 1);
///     }
/// }
/// # fn main() {}
/// ```
#[doc(inline)]
pub use iniesta_macros::handlers;
