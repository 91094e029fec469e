//! Start-up against Postgres: create the database when it does not exist,
//! open the pool, apply the embedded migrations.

use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled connection idle for longer than this is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The schema, embedded at build time. `Migrator::run` holds a Postgres
/// advisory lock (keyed by the database name) while it applies migrations,
/// so replicas starting together apply each one once.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Where the URL points, without its credentials, for error messages.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

fn unreachable(options: &PgConnectOptions, e: &sqlx::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach Postgres at {} ({e}); is it running? Start it (e.g. `systemctl start postgresql` \
         or `docker compose up -d postgres`) or set MAILFLEET_DATABASE_URL",
        describe(options)
    )
}

/// Connects to the configured database, creating it first if needed, and
/// migrates it.
pub async fn connect(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = database_url
        .parse()
        .context("MAILFLEET_DATABASE_URL is not a valid Postgres URL")?;
    let options = options.log_statements(tracing::log::LevelFilter::Debug);
    // An unroutable host would otherwise hang in the TCP connect for minutes.
    let first = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&options))
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut));
    match first {
        Ok(conn) => {
            let _ = conn.close().await;
        }
        Err(e) if sqlstate(&e).as_deref() == Some("3D000") => create_database(&options).await?,
        Err(e) => return Err(unreachable(&options, &e)),
    }
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(CONNECT_TIMEOUT)
        // sqlx pings every connection it hands out by default: a round trip
        // to Postgres before each statement, as costly as the statement for
        // most of ours. A connection in use moments ago is alive; one idle
        // longer (Postgres may have restarted) is pinged, and dropped if
        // the ping fails.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options.clone())
        .await
        .map_err(|e| unreachable(&options, &e))?;
    MIGRATOR.run(&pool).await.with_context(|| {
        format!(
            "cannot apply the schema migrations to {}",
            describe(&options)
        )
    })?;
    Ok(pool)
}

async fn create_database(options: &PgConnectOptions) -> anyhow::Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        bail!("MAILFLEET_DATABASE_URL names no database");
    };
    let admin = options.clone().database("postgres");
    let mut conn = sqlx::PgConnection::connect_with(&admin)
        .await
        .map_err(|e| unreachable(&admin, &e))?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    let result = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    match result {
        Ok(_) => {
            tracing::info!(database = %name, "Created the database.");
            Ok(())
        }
        // Another replica created it first.
        Err(e) if matches!(sqlstate(&e).as_deref(), Some("42P04" | "23505")) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot create database {name:?}"))),
    }
}
