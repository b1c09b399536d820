//! **iniesta: event handlers for AWS SQS, routed by event key, handled exactly once.**

mod context;
mod error;
mod handler;
mod message;
mod registry;
mod state;

pub mod config;
pub mod lock;
pub mod transport;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use context::Context;
pub use error::{
    BoxError, ConfigError, Error, Location, LockError, RegistryError, Result, TransportError,
};
pub use handler::{BoxFuture, BoxedHandler, FromMessage, Handler, IntoHandlerResult, Json, State};
pub use message::{
    AttributeValue, DecodeError, DecodeOptions, IdempotencyKey, Message, RawMessage, Receipt,
    SnsNotification, SystemAttributes,
};
pub use state::States;

#[doc(inline)]
pub use iniesta_macros::{handler, handlers};
