//! Reaching PostgreSQL for the inbox and outbox tests.
//!
//! `./scripts/test.sh` makes sure PostgreSQL answers, creates a fresh database for the run and
//! exports its URL as `INIESTA_TEST_DATABASE_URL`. A test that runs without it fails with the
//! command that sets it up: it never passes silently. Each test works in a schema of its own,
//! so tests share the database without seeing each other's rows.

use std::sync::atomic::{AtomicU64, Ordering};

use iniesta::config::DatabaseConfig;
use iniesta::postgres::Database;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The variable `./scripts/test.sh` sets to the run's database.
pub const URL_VAR: &str = "INIESTA_TEST_DATABASE_URL";

const HOW_TO_SET_UP: &str = "run the tests with `./scripts/test.sh` (it checks PostgreSQL on \
127.0.0.1:5432, starting it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) \
main start` if needed, and creates a fresh database), or create one yourself and export:\n    \
export INIESTA_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test";

/// The run's database URL.
///
/// # Panics
///
/// When `INIESTA_TEST_DATABASE_URL` is unset, with how to set it up.
pub fn url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| panic!("{URL_VAR} is not set: {HOW_TO_SET_UP}"))
}

/// A schema name no other test (or earlier run in this database) uses: `prefix` (at most 16
/// characters) and a suffix from the process, the time and a counter, within the 30 characters
/// a schema name may have.
pub fn unique_schema(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    assert!(
        prefix.len() <= 16,
        "schema prefix `{prefix}` is over 16 characters"
    );
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{prefix}_{:08x}{n}", hasher.finish() as u32)
}

/// A pool on the run's database.
///
/// # Panics
///
/// When the database does not answer, with how to set it up.
pub async fn pool(max_connections: u32) -> PgPool {
    let url = url();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}\n{HOW_TO_SET_UP}"))
}

/// The settings of a database whose tables live in `schema`.
pub fn config(schema: &str) -> DatabaseConfig {
    let mut config = DatabaseConfig::default();
    config.url = Some(url());
    config.schema = schema.to_owned();
    config
}

/// A migrated [`Database`] in a schema of its own (named after `prefix`), on a pool of
/// `max_connections`.
pub async fn database(prefix: &str, max_connections: u32) -> Database {
    let schema = unique_schema(prefix);
    let database =
        Database::with_config(pool(max_connections).await, config(&schema)).expect("plain names");
    database.migrate().await.expect("migrations apply");
    database
}
