//! **iniesta: event handlers for AWS SQS, routed by event key, handled exactly once.**
//!
//! Annotate async functions with `#[handler("Event.key")]`; call [`run`] in `main`. The
//! runtime long-polls SQS, reads each message's event key from its `iniesta_pass` attribute
//! (or its SNS envelope), takes a Redis Redlock on the message id so no message is handled
//! twice at once, runs the handler, and deletes the message only when the handler succeeded.
//!
//! # Examples
//!
//! Handlers: free functions, several keys, prefix patterns, the fallback, methods.
//!
//! ```
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
//! Running: `iniesta::run()` reads `INIESTA_*` variables (see [`config`]); [`App::builder`]
//! configures the same explicitly, registers state (`Billing` above runs on the registered
//! instance) and picks the transport.
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> Result<(), iniesta::Error> {
//!     iniesta::run().await
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
//! backoff) and reaches the queue's dead-letter queue through its redrive policy. The lock is
//! released only after the delete, and a processed marker set before the delete makes a
//! redelivery of a handled message a no-op. Redlock is a lock for efficiency: see
//! [`lock`] for what it does not promise and the fencing token that closes the gap.
//!
//! # Feature flags
//!
//! - `sqs` (default): the AWS SQS transport.
//! - `redis` (default): the Redis Redlock.
//! - `test-util`: [`TestClient::advance`](testing::TestClient::advance), which moves tokio's
//!   paused clock.

mod app;
mod context;
mod error;
mod handler;
mod message;
mod metrics;
mod pipeline;
mod registry;
mod router;
mod state;

pub mod config;
pub mod lock;
pub mod testing;
pub mod transport;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use app::{App, AppBuilder, RunningApp, run};
pub use context::Context;
pub use error::{
    BoxError, ConfigError, Error, LockError, Location, RegistryError, Result, TransportError,
};
pub use handler::{
    BoxFuture, BoxedHandler, FromMessage, Handler, IntoHandlerResult, Json, State,
};
pub use message::{
    AttributeValue, DecodeError, DecodeOptions, IdempotencyKey, Message, OutgoingMessage,
    RawMessage, Receipt, SnsNotification, SystemAttributes,
};
pub use metrics::MetricsSnapshot;
pub use pipeline::{Outcome, Report};
pub use state::States;

#[doc(inline)]
pub use iniesta_macros::{handler, handlers};
