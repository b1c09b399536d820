//! `db migrate`: creates the inbox and outbox tables (feature `postgres`).

use sqlx::postgres::PgPoolOptions;

use crate::config::{Config, redact_url};
use crate::postgres::Database;
use crate::{ConfigError, DatabaseError, Result};

/// Applies the migrations not yet applied to the tables the settings name; prints
/// `{"applied": [...]}` (empty when nothing was pending), with the tables.
pub(super) async fn migrate(config: &Config) -> Result<()> {
    let settings = &config.database;
    let url = settings
        .url
        .as_deref()
        .ok_or_else(|| ConfigError::Missing {
            what: "the database to migrate".into(),
            variables: "INIESTA_DATABASE_URL".into(),
        })?;
    // Not `Database::connect`: it refuses a database without the tables (or applies the
    // migrations without saying which), and this command is how the tables come to be.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .map_err(|e| DatabaseError::new(format!("cannot connect to {}", redact_url(url)), e))?;
    let database = Database::with_config(pool, settings.clone())?;
    let applied = database.migrate().await?;
    println!(
        "{}",
        serde_json::json!({
            "applied": applied,
            "inbox": database.tables().inbox(),
            "outbox": database.tables().outbox(),
        })
    );
    if applied.is_empty() {
        eprintln!("nothing to apply: every migration was applied before");
    }
    database.pool().close().await;
    Ok(())
}
