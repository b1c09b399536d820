//! What the macros' expansions name. Not public API: no semver guarantees.

pub use inventory;

pub use crate::handler::{BoxedHandler, Instance};
pub use crate::registry::Registration;

use crate::handler::{FromMessage, IntoHandlerResult};

/// Fails to compile, at the argument's type, when the argument is not an extractor.
pub const fn assert_extractor<T: FromMessage>() {}

/// Fails to compile, at the return type, when it is neither `()` nor `Result<(), E>`.
pub const fn assert_handler_result<T: IntoHandlerResult>() {}

/// Fails to compile, at the handler, when its future is not `Send`.
pub fn assert_send_future<F: SendFuture>(_: F) {}

/// Implemented by every `Send` future; exists only for the error message.
#[diagnostic::on_unimplemented(
    message = "handler future is not `Send`",
    label = "the future this handler returns is not `Send`",
    note = "the runtime runs handlers on a multi-threaded executor: do not hold an `Rc`, a `RefCell` borrow or a `std::sync::MutexGuard` across an `.await`"
)]
pub trait SendFuture {}

impl<F: std::future::Future + Send> SendFuture for F {}
