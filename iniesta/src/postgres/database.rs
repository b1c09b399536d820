//! [`Database`]: the pool and the table names every part of the inbox and outbox shares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::migrate;
use super::tables::Tables;
use crate::DatabaseError;
use crate::config::DatabaseConfig;
use crate::{ConfigError, Result};

/// How long a delivery waits for a connection before it fails (and is retried): long enough
/// for a busy pool to free one, short enough that an unreachable database fails deliveries
/// well within their lease rather than after sqlx's default 30 s.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL pool and where iniesta's inbox and outbox tables are in it.
///
/// [`App::from_env`](crate::App::from_env) connects one from `INIESTA_DATABASE_URL`; give
/// your own pool with [`Database::new`] and
/// [`AppBuilder::database`](crate::AppBuilder::database). Cloning is cheap (the pool is
/// shared).
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), iniesta::Error> {
/// use iniesta::postgres::Database;
///
/// let pool = sqlx::PgPool::connect_lazy("postgres://postgres@127.0.0.1/orders").unwrap();
/// let database = Database::new(pool);
/// database.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    tables: Arc<Tables>,
    config: Arc<DatabaseConfig>,
}

impl Database {
    /// Uses `pool` with the default table names (`iniesta.inbox`, `iniesta.outbox`).
    pub fn new(pool: PgPool) -> Self {
        Database {
            pool,
            tables: Arc::new(Tables::default()),
            config: Arc::new(DatabaseConfig::default()),
        }
    }

    /// Uses `pool` with the names and settings of `config` (its URL is not used).
    ///
    /// # Errors
    ///
    /// A table or schema name that is not a plain lower-case SQL name.
    pub fn with_config(pool: PgPool, config: DatabaseConfig) -> Result<Self, ConfigError> {
        Ok(Database {
            pool,
            tables: Arc::new(Tables::new(&config)?),
            config: Arc::new(config),
        })
    }

    /// Connects to `config.url` with a pool of `config.max_connections` (or `default_size`),
    /// then applies the migrations when `config.migrate` is set, or checks that they were
    /// applied.
    ///
    /// # Errors
    ///
    /// No URL, a bad setting, the database unreachable, migrations missing or failing.
    pub async fn connect(config: &DatabaseConfig, default_size: u32) -> Result<Self> {
        let url = config.url.as_deref().ok_or_else(|| ConfigError::Missing {
            what: "the database".into(),
            variables: "INIESTA_DATABASE_URL".into(),
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.unwrap_or(default_size))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A ping before every acquire is a round trip per delivery; a broken connection
            // fails its delivery instead, which is retried on a fresh one.
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(|e| {
                DatabaseError::new(
                    format!("cannot connect to {}", crate::config::redact_url(url)),
                    e,
                )
            })?;
        let database = Database::with_config(pool, config.clone())?;
        if config.migrate {
            database.migrate().await?;
        } else {
            database.check_migrated().await?;
        }
        Ok(database)
    }

    /// Applies the shipped migrations not yet applied (creating the schema, the inbox and
    /// outbox tables and the outbox's notify trigger); returns their names. Safe to call from
    /// several processes at once.
    ///
    /// # Errors
    ///
    /// The database refused (no right to create the schema, ...).
    pub async fn migrate(&self) -> Result<Vec<&'static str>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| DatabaseError::new("cannot take a connection to migrate", e))?;
        let applied = migrate::apply(&mut conn, &self.tables)
            .await
            .map_err(|e| DatabaseError::new("applying the migrations failed", e))?;
        for name in &applied {
            tracing::info!(migration = name, schema = self.tables.schema(), "applied");
        }
        Ok(applied)
    }

    /// Fails unless every shipped migration was applied for these tables.
    ///
    /// # Errors
    ///
    /// The database unreachable, or migrations not applied (the error says how to apply them).
    pub async fn check_migrated(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| {
            DatabaseError::new("cannot take a connection to check the migrations", e)
        })?;
        let pending = migrate::pending(&mut conn, &self.tables)
            .await
            .map_err(|e| DatabaseError::new("checking the migrations failed", e))?;
        if pending.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Conflict(format!(
            "the database lacks iniesta's tables {} and {} (migrations not applied: {}): run `iniesta db migrate` or set INIESTA_DATABASE_MIGRATE=true",
            self.tables.inbox(),
            self.tables.outbox(),
            pending.join(", ")
        ))
        .into())
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The settings: table names, retention, relay.
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    pub(crate) fn tables(&self) -> &Tables {
        &self.tables
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("inbox", &self.tables.inbox())
            .field("outbox", &self.tables.outbox())
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}
