//! The database's settings as read from the environment: the transactional inbox and outbox
//! (feature `postgres`, see [`postgres`](crate::postgres)).

use std::time::Duration;

use super::env::Env;
use crate::ConfigError;

/// Delivered outbox rows are kept this long by default, for looking into what was sent.
pub const DEFAULT_OUTBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Outbox rows a relay claims per round by default.
pub const DEFAULT_OUTBOX_BATCH_SIZE: usize = 500;
/// How often a relay looks for work when no notification woke it.
pub const DEFAULT_OUTBOX_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Where the inbox and outbox live, and what runs against them.
///
/// Off by default: without `INIESTA_DATABASE_URL` no handler may take a
/// [`Tx`](crate::postgres::Tx).
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `INIESTA_DATABASE_URL` | none | `postgres://user:password@host/db` |
/// | `INIESTA_DATABASE_MIGRATE` | false | apply the shipped migrations at startup |
/// | `INIESTA_DATABASE_SCHEMA` | `iniesta` | schema of the two tables |
/// | `INIESTA_DATABASE_INBOX_TABLE` | `inbox` | the inbox table |
/// | `INIESTA_DATABASE_OUTBOX_TABLE` | `outbox` | the outbox table |
/// | `INIESTA_DATABASE_MAX_CONNECTIONS` | concurrency + 2 | pool size, 1-1000 |
/// | `INIESTA_INBOX_RETENTION` | the queue's retention + 1 day | how long inbox rows are kept |
/// | `INIESTA_OUTBOX_RELAY` | false | run the outbox relay inside the app |
/// | `INIESTA_OUTBOX_BATCH_SIZE` | 500 | rows a relay claims per round, 1-1000 |
/// | `INIESTA_OUTBOX_POLL_INTERVAL` | 1s | how often a relay looks without a notification |
/// | `INIESTA_OUTBOX_RETENTION` | 7 days | how long delivered rows are kept |
///
/// # Examples
///
/// ```
/// use iniesta::config::Config;
///
/// let vars = [
///     ("INIESTA_DATABASE_URL", "postgres://postgres@127.0.0.1/orders"),
///     ("INIESTA_DATABASE_SCHEMA", "messaging"),
/// ];
/// let config = Config::from_lookup(|name| {
///     vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
/// })
/// .unwrap();
/// assert_eq!(config.database.schema, "messaging");
/// assert!(!config.database.migrate);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatabaseConfig {
    /// `INIESTA_DATABASE_URL`: the PostgreSQL database; `None` turns the inbox and outbox off.
    pub url: Option<String>,
    /// `INIESTA_DATABASE_MIGRATE`: apply the shipped migrations at startup. Never silently:
    /// off, startup only checks that they were applied (`iniesta db migrate` applies them).
    pub migrate: bool,
    /// `INIESTA_DATABASE_SCHEMA`.
    pub schema: String,
    /// `INIESTA_DATABASE_INBOX_TABLE`.
    pub inbox_table: String,
    /// `INIESTA_DATABASE_OUTBOX_TABLE`.
    pub outbox_table: String,
    /// `INIESTA_DATABASE_MAX_CONNECTIONS`; `None`: the consumer's concurrency plus two (one
    /// for the relay, one for the relay's notifications).
    pub max_connections: Option<u32>,
    /// `INIESTA_INBOX_RETENTION`; `None`: the queue's retention plus a day, so a message the
    /// queue still holds always finds its inbox row.
    pub inbox_retention: Option<Duration>,
    /// `INIESTA_OUTBOX_RELAY`: deliver the outbox from inside the app.
    pub outbox_relay: bool,
    /// `INIESTA_OUTBOX_BATCH_SIZE`.
    pub outbox_batch_size: usize,
    /// `INIESTA_OUTBOX_POLL_INTERVAL`.
    pub outbox_poll_interval: Duration,
    /// `INIESTA_OUTBOX_RETENTION`.
    pub outbox_retention: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            migrate: false,
            schema: "iniesta".to_owned(),
            inbox_table: "inbox".to_owned(),
            outbox_table: "outbox".to_owned(),
            max_connections: None,
            inbox_retention: None,
            outbox_relay: false,
            outbox_batch_size: DEFAULT_OUTBOX_BATCH_SIZE,
            outbox_poll_interval: DEFAULT_OUTBOX_POLL_INTERVAL,
            outbox_retention: DEFAULT_OUTBOX_RETENTION,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_deref().map(super::redact_url))
            .field("migrate", &self.migrate)
            .field("schema", &self.schema)
            .field("inbox_table", &self.inbox_table)
            .field("outbox_table", &self.outbox_table)
            .field("max_connections", &self.max_connections)
            .field("inbox_retention", &self.inbox_retention)
            .field("outbox_relay", &self.outbox_relay)
            .field("outbox_batch_size", &self.outbox_batch_size)
            .field("outbox_poll_interval", &self.outbox_poll_interval)
            .field("outbox_retention", &self.outbox_retention)
            .finish()
    }
}

impl DatabaseConfig {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let d = DatabaseConfig::default();
        let config = DatabaseConfig {
            url: env.string("INIESTA_DATABASE_URL")?,
            migrate: env.bool("INIESTA_DATABASE_MIGRATE")?.unwrap_or(false),
            schema: env.string("INIESTA_DATABASE_SCHEMA")?.unwrap_or(d.schema),
            inbox_table: env
                .string("INIESTA_DATABASE_INBOX_TABLE")?
                .unwrap_or(d.inbox_table),
            outbox_table: env
                .string("INIESTA_DATABASE_OUTBOX_TABLE")?
                .unwrap_or(d.outbox_table),
            max_connections: env
                .int("INIESTA_DATABASE_MAX_CONNECTIONS", 1, 1000)?
                .map(|n| n as u32),
            inbox_retention: env.duration("INIESTA_INBOX_RETENTION")?,
            outbox_relay: env.bool("INIESTA_OUTBOX_RELAY")?.unwrap_or(false),
            outbox_batch_size: env
                .int("INIESTA_OUTBOX_BATCH_SIZE", 1, 1000)?
                .unwrap_or(d.outbox_batch_size),
            outbox_poll_interval: env
                .duration("INIESTA_OUTBOX_POLL_INTERVAL")?
                .unwrap_or(d.outbox_poll_interval),
            outbox_retention: env
                .duration("INIESTA_OUTBOX_RETENTION")?
                .unwrap_or(d.outbox_retention),
        };
        config.validate()?;
        Ok(config)
    }

    /// Rejects settings that cannot work: names PostgreSQL would need quoted, a database
    /// asked for in a build without the `postgres` feature, the relay or migrations without
    /// a database, a zero retention or poll interval.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_names()?;
        if self.url.is_none() {
            for (name, on) in [
                ("INIESTA_DATABASE_MIGRATE", self.migrate),
                ("INIESTA_OUTBOX_RELAY", self.outbox_relay),
            ] {
                if on {
                    return Err(ConfigError::Conflict(format!(
                        "{name} is set but INIESTA_DATABASE_URL is not: name the database"
                    )));
                }
            }
        }
        if self.url.is_some() && !cfg!(feature = "postgres") {
            return Err(ConfigError::invalid(
                "INIESTA_DATABASE_URL",
                "unset (the inbox and outbox need iniesta's `postgres` feature)",
                "a database URL",
            ));
        }
        for (name, value) in [
            (
                "INIESTA_OUTBOX_POLL_INTERVAL",
                Some(self.outbox_poll_interval),
            ),
            ("INIESTA_INBOX_RETENTION", self.inbox_retention),
            ("INIESTA_OUTBOX_RETENTION", Some(self.outbox_retention)),
        ] {
            if value.is_some_and(|v| v.is_zero()) {
                return Err(ConfigError::invalid(name, "a duration above zero", "0"));
            }
        }
        Ok(())
    }

    /// Rejects schema and table names PostgreSQL would need quoted, or too long for the
    /// index and channel names built from them.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable.
    pub fn validate_names(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("INIESTA_DATABASE_SCHEMA", &self.schema),
            ("INIESTA_DATABASE_INBOX_TABLE", &self.inbox_table),
            ("INIESTA_DATABASE_OUTBOX_TABLE", &self.outbox_table),
        ] {
            if !is_plain_identifier(value) {
                return Err(ConfigError::invalid(
                    name,
                    "a lower-case SQL name: a-z, 0-9 and _, not starting with a digit, at most 30 characters",
                    value,
                ));
            }
        }
        Ok(())
    }
}

/// A name PostgreSQL takes unquoted and keeps as written: the names go into SQL text (no
/// placeholder can stand for a table), so nothing else is let through. 30 characters keeps
/// every name built from them under PostgreSQL's limit of 63: the notify channel
/// `{schema}_{outbox}` (61 at most; `pg_notify` refuses a longer one) and index names such as
/// `{outbox}_pending_aggregate`.
pub(crate) const MAX_NAME: usize = 30;

pub(crate) fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= MAX_NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_lower_case_names_pass() {
        for good in ["iniesta", "outbox_2", "_private"] {
            assert!(is_plain_identifier(good), "{good}");
        }
        for bad in [
            "",
            "2fa",
            "Outbox",
            "out-box",
            "a\"; drop table x",
            &"a".repeat(MAX_NAME + 1),
        ] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
        assert!(is_plain_identifier(&"a".repeat(MAX_NAME)));
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let config = DatabaseConfig {
            url: Some("postgres://app:hunter2@db/orders?sslmode=require&password=hunter2".into()),
            ..DatabaseConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db/orders?***"),
            "{shown}"
        );
    }

    #[test]
    fn zero_durations_are_refused() {
        let config = DatabaseConfig {
            inbox_retention: Some(std::time::Duration::ZERO),
            ..DatabaseConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("INIESTA_INBOX_RETENTION"), "{error}");
    }

    #[test]
    fn the_relay_needs_a_database() {
        let config = DatabaseConfig {
            outbox_relay: true,
            ..DatabaseConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("INIESTA_OUTBOX_RELAY"), "{error}");
    }
}
