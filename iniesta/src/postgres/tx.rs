//! [`Tx`]: the handler's side of the delivery's database transaction.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};

use sqlx::{PgConnection, Postgres, Transaction};

use crate::{BoxError, Context, FromMessage, Message, States};

/// The transaction of one delivery, open from before the handler's first argument is built
/// until the handler returned; its inbox row is already written in it.
pub(crate) type DeliveryTransaction = Transaction<'static, Postgres>;

/// Where a delivery's transaction is while no [`Tx`] holds it: put there before the handler
/// runs, taken by its `Tx` argument, given back when the `Tx` is dropped, and taken for good
/// (closed) to commit or roll back.
#[derive(Default)]
pub(crate) struct TxSlot(Mutex<Slot>);

#[derive(Default)]
struct Slot {
    tx: Option<DeliveryTransaction>,
    /// The delivery is over: a `Tx` that comes back later (kept by spawned work) is dropped,
    /// which rolls it back, instead of waiting here holding its connection and the inbox
    /// row's lock for as long as a clone of the context lives.
    closed: bool,
}

impl TxSlot {
    pub(crate) fn put(&self, tx: DeliveryTransaction) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.closed {
            slot.tx = Some(tx);
        }
    }

    /// The transaction, for a `Tx` argument.
    pub(crate) fn take(&self) -> Option<DeliveryTransaction> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tx
            .take()
    }

    /// The transaction, for the last time: to commit it, or to roll it back.
    pub(crate) fn close(&self) -> Option<DeliveryTransaction> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.closed = true;
        slot.tx.take()
    }
}

/// The database transaction a handler's writes commit in, together with the inbox row that
/// marks its message handled and the messages it emits (feature `postgres`).
///
/// A handler opts in to the inbox by taking `Tx`: iniesta opens a transaction per delivery
/// on the app's [`Database`](super::Database), writes the inbox row (the queue and the
/// message's idempotency key) first, runs the handler, writes what it sent through
/// [`Context::send`] and [`Context::publish`] to the outbox, commits, and only then deletes
/// the message. A failure, a panic or a timeout rolls everything back. A message whose inbox
/// row is already committed is deleted without running the handler.
///
/// `Tx` dereferences to [`sqlx::PgConnection`]: pass `&mut *tx` where sqlx takes an executor.
/// Do not commit or roll back yourself, and do not keep it past the handler's return (the
/// delivery then fails: nothing to commit).
///
/// # Examples
///
/// ```rust,standalone_crate
/// use iniesta::{Context, Json, OutgoingMessage, Tx};
///
/// #[derive(serde::Deserialize)]
/// struct OrderPaid { order: i64 }
///
/// #[iniesta::handler("OrderPaid.shop")]
/// async fn paid(Json(paid): Json<OrderPaid>, mut tx: Tx, ctx: Context) -> Result<(), iniesta::BoxError> {
///     sqlx::query("UPDATE orders SET paid = true WHERE id = $1")
///         .bind(paid.order)
///         .execute(&mut *tx)
///         .await?;
///     // Committed with the update, sent by the relay.
///     ctx.send("shipping", OutgoingMessage::new("ShipmentRequested.shop").body("{}"))?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub struct Tx {
    tx: Option<DeliveryTransaction>,
    ctx: Context,
}

impl Deref for Tx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.tx
            .as_ref()
            .expect("a Tx holds its transaction until dropped")
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.tx
            .as_mut()
            .expect("a Tx holds its transaction until dropped")
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        // Back to the delivery, which commits it once the handler succeeded (or drops it,
        // rolling back).
        if let Some(tx) = self.tx.take() {
            self.ctx.transaction().put(tx);
        }
    }
}

impl FromMessage for Tx {
    fn from_message(_: &Message, ctx: &Context, _: &States) -> Result<Self, BoxError> {
        let tx = ctx.transaction().take().ok_or(
            "no database transaction for this delivery: a handler takes one Tx, and only when the app has a database (INIESTA_DATABASE_URL or AppBuilder::database)",
        )?;
        Ok(Tx {
            tx: Some(tx),
            ctx: ctx.clone(),
        })
    }

    fn uses_transaction() -> bool {
        true
    }
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("handler", &self.ctx.handler_name())
            .finish_non_exhaustive()
    }
}
