//! Exactly-once effects: a transactional inbox and outbox on PostgreSQL (feature `postgres`).
//!
//! The Redis lock and processed marker make handling exactly-once only as long as Redis keeps
//! its keys, and a crash between a handler's own commit and the marker runs it again. The
//! inbox closes that gap at the root: the record that a message was handled, the handler's
//! business writes and the messages it emits commit in one database transaction.
//!
//! - **Inbox.** A handler opts in by taking a [`Tx`]. For each delivery iniesta opens a
//!   transaction on the app's [`Database`], inserts the inbox row (the queue's name and the
//!   message's idempotency key, as the lock keys it) first, runs the handler in the
//!   transaction, writes its emitted messages to the outbox, commits, and then deletes the
//!   message. A key already committed means "handled": the message is deleted without running
//!   the handler. A crash anywhere leaves either nothing committed (the message runs again)
//!   or everything (its next delivery is deleted unrun); a failure, panic or timeout rolls
//!   back. Two copies running at once are serialised by the inbox row: the second waits on
//!   the first's uncommitted row and finds it committed, or takes over if it rolled back.
//! - **Outbox.** Messages a `Tx` handler sends through [`Context::send`](crate::Context::send)
//!   and [`Context::publish`](crate::Context::publish) go to the outbox table in its
//!   transaction; code outside handlers adds them to its own transaction with [`Outbox`]. The
//!   [`OutboxRelay`] sends committed rows through the app's
//!   [`Producer`](crate::producer::Producer), in order per aggregate
//!   ([`OutgoingMessage::aggregate_id`](crate::OutgoingMessage::aggregate_id)), and marks
//!   them delivered. Sending is at least once: a relay that dies after sending and before its
//!   commit sends those rows again, with the same message ids, so receivers drop the repeat
//!   with `INIESTA_IDEMPOTENCY_ATTRIBUTE=iniesta_message_id` (their own inbox, keyed by it).
//!
//! # The inbox or the Redis lock?
//!
//! - Handlers whose effects are writes to this database: take a `Tx`. The inbox is the
//!   guarantee, and the Redis lock becomes optional (`INIESTA_LOCK_ENABLED=false`): without it
//!   a duplicate delivery waits on the inbox row for as long as the first copy's handler runs,
//!   holding a connection and a handler slot, where the lock would have given it back at once.
//!   Keep the lock when duplicates are frequent (SNS fan-in, many replicas) or handlers long.
//! - Handlers whose effects are elsewhere (an HTTP call, another store): the lock and the
//!   processed marker are what there is; make the effect idempotent too.
//!
//! # Setting up
//!
//! `INIESTA_DATABASE_URL` names the database (see [`DatabaseConfig`](crate::config::DatabaseConfig)
//! for the rest). The tables come from migrations shipped in the crate, applied by
//! `iniesta db migrate`, [`Database::migrate`], or at startup with
//! `INIESTA_DATABASE_MIGRATE=true`, never silently: otherwise startup checks they were
//! applied. `INIESTA_OUTBOX_RELAY=true` runs the relay inside the app; `iniesta outbox relay`
//! runs it alone. Inbox rows are deleted once older than `INIESTA_INBOX_RETENTION` (default:
//! the queue's retention plus a day, so no message the queue still holds loses its row).

mod background;
mod database;
mod delivery;
mod inbox;
mod migrate;
mod outbox;
mod relay;
mod tables;
mod tx;

pub(crate) use background::Background;
pub use database::Database;
pub(crate) use delivery::{DeliveryDatabase, Opened};
pub(crate) use inbox::{Begun, Inbox};
pub use outbox::{Outbox, OutboxError};
pub use relay::OutboxRelay;
pub use tx::Tx;
pub(crate) use tx::TxSlot;

impl Database {
    /// Adds messages to this database's outbox in a transaction of yours.
    pub fn outbox(&self) -> Outbox {
        Outbox::new(self)
    }
}
