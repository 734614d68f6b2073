//! The outbox tables: every SQL statement of the daemon lives in this module, each one a
//! registered `const` (`sql.rs`: defined with `statements!`, prepared by `tests/it/sql.rs`).
//!
//! Claims are short transactions (`FOR UPDATE SKIP LOCKED`, then the UPDATE that leases the
//! rows, in one statement or two) committed before any call: no transaction or row lock is
//! ever held across an HTTP call. Every write-back is fenced by `lease_no`: a worker whose lease
//! was taken over writes nothing. Everything is set-based: one statement per batch.
//! [`admin`] holds the statements of the admin commands (status, show, retry, cancel, prune);
//! (The benchmark keeps its own statements, in the `outbox-bench` crate.)
//! [`states`] maps the closed sets of values in `text` columns (delivery and upload states,
//! history kinds, notification outcomes) to Rust enums, once.

pub mod admin;
mod claim;
pub mod counts;
pub mod events;
mod files;
pub mod schedule;
mod sql;
pub mod states;
pub mod subscriptions;
pub mod uploads;
mod write;

pub use claim::{claim_polls, claim_sends, message_content, SendLease};
pub use claim::{ClaimedPoll, ClaimedSend, MessageRow};
pub use files::{message_files, File, FileContent};
#[doc(hidden)]
pub use sql::{statements, Statement};
pub use states::{DeliveryState, HistoryKind, NotificationOutcome, RunOutcome, UploadState};
pub use write::{write_back, Outcome, PollUpdate, WriteBack};

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The channel the insert trigger notifies; its payload is empty (workers claim from the table).
pub const NOTIFY_CHANNEL: &str = "altinn_outbox";

crate::statements! {
    MIGRATIONS_APPLIED = "SELECT version FROM _sqlx_migrations WHERE success";
    /// The readiness probe's question: does the database answer at all.
    PING = "SELECT 1";
    RECLAIM_EXPIRED_LEASES = "UPDATE altinn_outbox.delivery
         SET state = 'pending', next_attempt_at = now(), updated_at = now(),
             error_code = 'lease_expired',
             error_message = 'the lease of ' || coalesce(locked_by, '?') || ' expired; sending again with the same idempotency key',
             locked_by = NULL, locked_until = NULL
         WHERE state = 'sending' AND locked_until < now()
         RETURNING id";
    RELEASE = "UPDATE altinn_outbox.delivery d
         SET state = CASE WHEN d.state = 'sending' THEN 'pending' ELSE d.state END,
             attempts = CASE WHEN d.state = 'sending' THEN greatest(d.attempts - 1, 0) ELSE d.attempts END,
             next_attempt_at = CASE WHEN d.state = 'sending' THEN now() ELSE d.next_attempt_at END,
             next_poll_at = CASE WHEN d.state = 'sending' THEN d.next_poll_at ELSE now() END,
             locked_by = NULL, locked_until = NULL, updated_at = now()
         FROM unnest($1::bigint[], $2::bigint[]) AS u(id, lease_no)
         WHERE d.id = u.id AND d.lease_no = u.lease_no";
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Connects lazily: the daemon must start (and report) even while the database is down.
pub fn connect_lazy(url: &str, max_connections: u32, connect_timeout: Duration) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.application_name("altinn-outbox");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(connect_timeout)
        .connect_lazy_with(options))
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// True when every migration this binary knows has been applied.
pub async fn migrations_current(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> = match sqlx::query_scalar(MIGRATIONS_APPLIED).fetch_all(pool).await {
        Ok(applied) => applied,
        // A database never migrated has no such table (undefined_table): not current, not down.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
}

/// Whether the database answers (the readiness probe).
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(PING).execute(pool).await.map(|_| ())
}

/// Returns deliveries whose sending lease expired (their worker died) to the queue at once,
/// without waiting for backoff: the stored idempotency key makes the re-send safe.
pub async fn reclaim_expired_leases(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(RECLAIM_EXPIRED_LEASES).fetch_all(pool).await
}

/// Gives back leases of work that was claimed but not finished (shutdown): the next
/// instance can take them at once instead of waiting for the lease to expire. A send that
/// did not complete does not count as an attempt.
pub async fn release(pool: &PgPool, ids: &[i64], lease_nos: &[i64]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(RELEASE).bind(ids).bind(lease_nos).execute(pool).await?;
    Ok(done.rows_affected())
}
