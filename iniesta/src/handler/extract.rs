//! Extractors: what a handler can take as arguments.

use std::any::type_name;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::{BoxError, Context, Message, States};

/// A type that can be a handler argument, built from the delivery being handled.
///
/// Implemented for [`Message`], [`Context`], [`Json<T>`] and [`State<S>`]. Implement it for your
/// own types to pull typed values out of messages.
///
/// # Examples
///
/// ```rust,standalone_crate
/// use iniesta::{BoxError, Context, FromMessage, Message, States};
///
/// /// The tenant a message belongs to, from its `tenant` attribute.
/// struct Tenant(String);
///
/// impl FromMessage for Tenant {
///     fn from_message(msg: &Message, _: &Context, _: &States) -> Result<Self, BoxError> {
///         let tenant = msg.header("tenant").and_then(|v| v.as_str()).ok_or("no tenant header")?;
///         Ok(Tenant(tenant.to_owned()))
///     }
/// }
///
/// #[iniesta::handler("Invoice.sent")]
/// async fn invoice(Tenant(tenant): Tenant) {
///     let _ = tenant;
/// }
/// # fn main() {}
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument",
    label = "not an extractor",
    note = "handler arguments must implement `iniesta::FromMessage`: `Message`, `Context`, `Json<T>`, `State<S>` or your own extractor"
)]
pub trait FromMessage: Sized + Send + 'static {
    /// Builds the argument. An error fails the delivery (it is logged, not deleted, and retried).
    ///
    /// # Errors
    ///
    /// Whatever prevents building the value, such as a body that does not deserialize.
    fn from_message(msg: &Message, ctx: &Context, states: &States) -> Result<Self, BoxError>;

    /// Checked once at startup: the name of a state type this extractor needs and is missing.
    ///
    /// # Errors
    ///
    /// The type name of the missing state.
    fn check(states: &States) -> Result<(), &'static str> {
        let _ = states;
        Ok(())
    }

    /// Whether the argument is the delivery's database transaction
    /// ([`Tx`](crate::postgres::Tx)): a handler that takes one runs with the inbox. Only
    /// iniesta's `Tx` says yes.
    #[doc(hidden)]
    fn uses_transaction() -> bool {
        false
    }
}

impl FromMessage for Message {
    fn from_message(msg: &Message, _: &Context, _: &States) -> Result<Self, BoxError> {
        Ok(msg.clone())
    }
}

impl FromMessage for Context {
    fn from_message(_: &Message, ctx: &Context, _: &States) -> Result<Self, BoxError> {
        Ok(ctx.clone())
    }
}

/// The body deserialized from JSON.
///
/// A body that does not deserialize fails the delivery with an error naming `T`; the handler
/// does not run and the message is retried (and reaches the dead-letter queue in the end).
///
/// # Examples
///
/// ```rust,standalone_crate
/// use iniesta::Json;
///
/// #[derive(serde::Deserialize)]
/// struct UserUpdated { id: u64, email: String }
///
/// #[iniesta::handler("UserUpdated.user")]
/// async fn user_updated(Json(user): Json<UserUpdated>) {
///     println!("user {} now has {}", user.id, user.email.len());
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromMessage for Json<T> {
    fn from_message(msg: &Message, _: &Context, _: &States) -> Result<Self, BoxError> {
        Ok(Json(msg.json()?))
    }
}

/// Shared application state registered with [`AppBuilder::state`](crate::AppBuilder::state).
///
/// The handler gets a clone: wrap large values in an `Arc` or use cheap handles (pools,
/// clients). A handler whose state was not registered is a startup error.
///
/// # Examples
///
/// ```rust,standalone_crate
/// use iniesta::State;
///
/// #[derive(Clone)]
/// struct Db { url: String }
///
/// #[iniesta::handler("Order.created")]
/// async fn order_created(State(db): State<Db>) {
///     let _ = db.url;
/// }
/// # fn main() {}
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct State<S>(pub S);

impl<S> fmt::Debug for State<S> {
    // State often holds credentials: show the type only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "State<{}>", type_name::<S>())
    }
}

impl<S: Clone + Send + Sync + 'static> FromMessage for State<S> {
    fn from_message(_: &Message, _: &Context, states: &States) -> Result<Self, BoxError> {
        let value = states
            .get::<S>()
            .ok_or_else(|| format!("state `{}` is not registered", type_name::<S>()))?;
        Ok(State(S::clone(&value)))
    }

    fn check(states: &States) -> Result<(), &'static str> {
        if states.contains::<S>() {
            Ok(())
        } else {
            Err(type_name::<S>())
        }
    }
}

/// The registered instance a `&self` handler method runs on (used by `#[handlers]`).
#[doc(hidden)]
#[derive(Debug)]
pub struct Instance<T>(pub Arc<T>);

impl<T: Send + Sync + 'static> FromMessage for Instance<T> {
    fn from_message(_: &Message, _: &Context, states: &States) -> Result<Self, BoxError> {
        let value = states
            .get::<T>()
            .ok_or_else(|| format!("instance of `{}` is not registered", type_name::<T>()))?;
        Ok(Instance(value))
    }

    fn check(states: &States) -> Result<(), &'static str> {
        if states.contains::<T>() {
            Ok(())
        } else {
            Err(type_name::<T>())
        }
    }
}
