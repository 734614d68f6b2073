//! Housekeeping schedules: who runs which scheduled time, and the queries the runs make.
//!
//! A scheduled time ("slot") is claimed by moving `schedule.last_slot` forward in one
//! statement. Concurrent instances queue on the row lock; the second one re-checks the
//! condition, finds the slot taken and gets no row: each slot runs once.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::states::{DeliveryState, RunOutcome};

crate::statements! {
    REGISTER = "INSERT INTO altinn_outbox.schedule (name, last_slot) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
    CLAIM_SLOT = "WITH claimed AS (
             UPDATE altinn_outbox.schedule SET last_slot = $2, updated_at = now()
             WHERE name = $1 AND last_slot < $2
             RETURNING name
         )
         INSERT INTO altinn_outbox.schedule_run (name, slot, instance)
         SELECT name, $2, $3 FROM claimed
         RETURNING id";
    FINISH_RUN = "UPDATE altinn_outbox.schedule_run SET finished_at = now(), outcome = $2, detail = $3 WHERE id = $1";
    PRUNE_RUNS = "DELETE FROM altinn_outbox.schedule_run WHERE started_at < $1";
    STUCK = "SELECT state, count(*), (array_agg(id ORDER BY id))[1:10]
         FROM altinn_outbox.delivery
         WHERE (state = 'pending' AND next_attempt_at < $1)
            OR (state = 'waiting_files' AND updated_at < $1)
            OR (state = 'sending' AND locked_until < $1)
            OR (state = 'awaiting_status' AND next_poll_at < $1)
         GROUP BY state ORDER BY state";
}

/// Makes the schedule known. A new schedule counts as having run when it was first seen,
/// so that installing (or enabling) one does not fire a run for a time before it existed.
pub async fn register(pool: &PgPool, name: &str, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(REGISTER).bind(name).bind(now).execute(pool).await?;
    Ok(())
}

/// Claims `slot` for `instance` if no instance has claimed it or a later one; returns the id
/// of the run record to finish, or None when another instance has it.
pub async fn claim_slot(
    pool: &PgPool,
    name: &str,
    slot: DateTime<Utc>,
    instance: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(CLAIM_SLOT).bind(name).bind(slot).bind(instance).fetch_optional(pool).await
}

pub async fn finish_run(pool: &PgPool, run_id: i64, outcome: RunOutcome, detail: &str) -> Result<(), sqlx::Error> {
    sqlx::query(FINISH_RUN).bind(run_id).bind(outcome).bind(detail).execute(pool).await?;
    Ok(())
}

/// Run records are housekeeping's own history: kept as long as the deliveries are.
pub async fn prune_runs(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(PRUNE_RUNS).bind(before).execute(pool).await?;
    Ok(done.rows_affected())
}

/// Deliveries that should have moved on long ago, by state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// (state, count, a few delivery ids) for each state with stuck rows.
    pub by_state: Vec<(DeliveryState, i64, Vec<i64>)>,
}

impl Stuck {
    pub fn total(&self) -> i64 {
        self.by_state.iter().map(|(_, n, _)| n).sum()
    }
}

/// Rows overdue by more than `threshold`: pending or waiting_files rows due but not taken,
/// sending rows whose lease ran out and was not reclaimed, and awaiting_status rows whose
/// status read is overdue. Any of these means no worker is getting to them.
pub async fn stuck(pool: &PgPool, before: DateTime<Utc>) -> Result<Stuck, sqlx::Error> {
    let rows: Vec<(DeliveryState, i64, Vec<i64>)> = sqlx::query_as(STUCK).bind(before).fetch_all(pool).await?;
    Ok(Stuck { by_state: rows })
}
