//! The shipped migrations: applied on request only (`iniesta db migrate`,
//! `INIESTA_DATABASE_MIGRATE=true`, [`Database::migrate`](super::Database::migrate)), and
//! otherwise checked for at startup.
//!
//! Written here rather than with `sqlx::migrate!`: the schema and table names are settings,
//! so the SQL is a template filled at run time, which sqlx's migrator (fixed files, checksums
//! of their text) cannot take.

use sqlx::{Connection as _, PgConnection, Row as _};

use super::tables::Tables;

/// The migrations, in order: a name (recorded once applied) and its SQL template.
const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_inbox_outbox",
    include_str!("../../migrations/0001_inbox_outbox.sql"),
)];

/// Serialises concurrent `migrate` calls (several replicas starting at once).
const MIGRATE_LOCK: i64 = 0x0069_6e69_6573_7461; // "iniesta" in ASCII

/// Applies the migrations not yet applied for these tables, in one transaction; returns the
/// names it applied.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    tables: &Tables,
) -> Result<Vec<&'static str>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(tables.render(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.iniesta_migrations (
             name       text        PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )))
    .execute(&mut *tx)
    .await?;
    let mut applied = Vec::new();
    for (name, template) in MIGRATIONS {
        let key = record_name(name, tables);
        let done = sqlx::query(sqlx::AssertSqlSafe(
            tables.render("SELECT 1 FROM {schema}.iniesta_migrations WHERE name = $1"),
        ))
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if done {
            continue;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(tables.render(template)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(tables.render(
            "INSERT INTO {schema}.iniesta_migrations (name) VALUES ($1)",
        )))
        .bind(&key)
        .execute(&mut *tx)
        .await?;
        applied.push(*name);
    }
    tx.commit().await?;
    Ok(applied)
}

/// The migrations not applied for these tables (all of them when none was).
pub(crate) async fn pending(
    conn: &mut PgConnection,
    tables: &Tables,
) -> Result<Vec<&'static str>, sqlx::Error> {
    let exists: Option<String> = sqlx::query("SELECT to_regclass($1)::text")
        .bind(format!("{}.iniesta_migrations", tables.schema()))
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if exists.is_none() {
        return Ok(MIGRATIONS.iter().map(|(name, _)| *name).collect());
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(
        tables.render("SELECT name FROM {schema}.iniesta_migrations"),
    ))
    .fetch_all(&mut *conn)
    .await?;
    let done: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    Ok(MIGRATIONS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !done.contains(&record_name(name, tables)))
        .collect())
}

/// What a migration is recorded as: its name and the tables it made, since two apps may keep
/// their tables in one schema under different names.
fn record_name(name: &str, tables: &Tables) -> String {
    format!("{name}:{}:{}", tables.inbox(), tables.outbox())
}
