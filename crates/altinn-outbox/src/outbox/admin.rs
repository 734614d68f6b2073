//! The admin commands' SQL: the summary, one message with its deliveries and history,
//! putting failed deliveries back, cancelling unsent ones, and pruning finished messages.
//!
//! Every write is one statement fenced by the delivery's state (and `lease_no` where a
//! value read earlier is relied on), and bumps `lease_no`, so a worker that holds an older
//! lease writes nothing over it. The history trigger records every state change.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::counts::{delivery_states, with_zeros};
use super::states::{DeliveryState, HistoryKind, NotificationOutcome};
use uuid::Uuid;

/// Messages deleted per prune statement: each batch is its own short transaction, so a
/// prune of millions of rows never holds one long transaction or a huge set of locks.
const PRUNE_BATCH: i32 = 500;

/// What a cancel writes. A fragment is a macro, not a const, so that the statements built of
/// it are whole literals (`concat!`).
macro_rules! cancelled {
    () => {
        "state = 'cancelled', finished_at = now(), next_poll_at = NULL, lease_no = lease_no + 1,
    locked_by = NULL, locked_until = NULL, error_code = 'admin_cancelled',
    error_message = 'cancelled by altinn-outbox cancel before it was sent', updated_at = now()"
    };
}

crate::statements! {
    COUNT_MESSAGES = "SELECT count(*) FROM altinn_outbox.message";
    COUNT_BY_STATE = "SELECT state, count(*) FROM altinn_outbox.delivery GROUP BY state";
    OLDEST_PENDING = "SELECT d.id AS delivery_id, d.message_id, d.state, m.created_at,
                extract(epoch FROM now() - m.created_at)::bigint AS age_s
         FROM altinn_outbox.delivery d JOIN altinn_outbox.message m ON m.id = d.message_id
         WHERE d.state IN ('pending', 'waiting_files', 'sending')
         ORDER BY m.created_at, d.id LIMIT 1";
    FAILED_LAST_24H = "SELECT error_code, count(*) FROM altinn_outbox.delivery
         WHERE state = 'failed' AND finished_at > now() - interval '24 hours'
         GROUP BY error_code ORDER BY count(*) DESC, error_code";
    MESSAGE = "SELECT id, created_at, resource_id, senders_reference, resend FROM altinn_outbox.message WHERE id = $1";
    DELIVERIES = "SELECT id, recipient, state, attempts, next_attempt_at, locked_by, locked_until, idempotency_key,
                correspondence_id, sent_at, altinn_status, altinn_status_at, polls, next_poll_at, published_at,
                read_at, confirmed_at, notification, error_code, error_message, finished_at, updated_at
         FROM altinn_outbox.delivery WHERE message_id = $1 ORDER BY id";
    HISTORY = "SELECT h.delivery_id, h.at, h.kind, h.old_value, h.new_value, h.detail
         FROM altinn_outbox.history h JOIN altinn_outbox.delivery d ON d.id = h.delivery_id
         WHERE d.message_id = $1 ORDER BY h.id";
    RETRY = "WITH target AS (
            SELECT d.id, d.message_id, d.state, d.correspondence_id, d.altinn_status, d.error_code,
                   EXISTS (SELECT 1 FROM altinn_outbox.attachment a
                           WHERE a.message_id = d.message_id AND a.upload_state = 'failed') AS files_failed
            FROM altinn_outbox.delivery d
            WHERE CASE WHEN $1::bigint IS NOT NULL THEN d.message_id = $1
                       ELSE d.state IN ('failed', 'unconfirmed') AND ($2::text IS NULL OR d.error_code = $2
                            OR (strpos($2, ':') = 0 AND split_part(d.error_code, ':', 2) = $2)) END
         ), moved AS (
            UPDATE altinn_outbox.delivery d SET
                state = CASE WHEN t.correspondence_id IS NOT NULL THEN 'awaiting_status'
                             WHEN t.files_failed THEN 'waiting_files' ELSE 'pending' END,
                attempts = CASE WHEN t.correspondence_id IS NULL THEN 0 ELSE d.attempts END,
                next_attempt_at = now(),
                next_poll_at = CASE WHEN t.correspondence_id IS NOT NULL THEN now() END,
                finished_at = NULL, lease_no = d.lease_no + 1, locked_by = NULL, locked_until = NULL,
                error_code = 'admin_retry',
                error_message = 'put back by altinn-outbox retry after ' || coalesce(d.error_code, 'no code'),
                updated_at = now()
            FROM target t
            WHERE d.id = t.id AND d.state IN ('failed', 'unconfirmed')
              AND NOT (t.correspondence_id IS NOT NULL AND coalesce(t.altinn_status, '') IN ('Failed', 'Reserved'))
            RETURNING d.id, d.state
         ), files AS (
            UPDATE altinn_outbox.attachment a SET upload_state = 'pending', altinn_attachment_id = NULL,
                uploaded_at = NULL, upload_attempts = 0, next_attempt_at = now(), lease_no = a.lease_no + 1,
                locked_by = NULL, locked_until = NULL, error_code = 'admin_retry',
                error_message = 'put back by altinn-outbox retry after ' || coalesce(a.error_code, 'no code'),
                updated_at = now()
            WHERE a.upload_state = 'failed'
              AND a.message_id IN (SELECT t.message_id FROM target t JOIN moved m ON m.id = t.id WHERE t.files_failed)
         )
         SELECT t.id AS delivery_id, t.message_id, t.state AS old_state, coalesce(m.state, t.state) AS new_state,
                t.correspondence_id, t.altinn_status, t.error_code
         FROM target t LEFT JOIN moved m ON m.id = t.id ORDER BY t.id";
    CANCEL_TARGETS = "SELECT id, state, lease_no, resource_id, idempotency_key, correspondence_id, altinn_status
         FROM altinn_outbox.delivery WHERE message_id = $1 ORDER BY id";
    CANCEL_NEVER_SENT = concat!(
        "WITH cancelled AS (
            UPDATE altinn_outbox.delivery SET ", cancelled!(), "
            WHERE message_id = $1 AND state IN ('pending', 'waiting_files') AND idempotency_key IS NULL
            RETURNING id
         ), files AS (
            UPDATE altinn_outbox.attachment a SET upload_state = 'failed', lease_no = a.lease_no + 1,
                locked_by = NULL, locked_until = NULL, error_code = 'admin_cancelled',
                error_message = 'its message was cancelled before the upload began', updated_at = now()
            WHERE a.message_id = $1 AND a.upload_state = 'pending' AND EXISTS (SELECT 1 FROM cancelled)
              AND NOT EXISTS (SELECT 1 FROM altinn_outbox.delivery d WHERE d.message_id = $1
                              AND d.state = 'waiting_files' AND d.id NOT IN (SELECT id FROM cancelled))
         )
         SELECT id FROM cancelled"
    );
    CANCEL_UNSENT = concat!(
        "UPDATE altinn_outbox.delivery SET ", cancelled!(), "
         WHERE id = $1 AND lease_no = $2 AND state IN ('pending', 'waiting_files')"
    );
    MARK_PURGED = "UPDATE altinn_outbox.delivery
         SET state = 'cancelled', correspondence_id = coalesce(correspondence_id, $2),
                altinn_status = 'PurgedByAltinn', next_poll_at = NULL, finished_at = now(),
                lease_no = lease_no + 1, locked_by = NULL, locked_until = NULL, error_code = 'admin_purged',
                error_message = 'purged at Altinn by altinn-outbox cancel before publication', updated_at = now()
         WHERE id = $1 AND state IN ('pending', 'waiting_files', 'awaiting_status')";
    PRUNE_MESSAGES = "SELECT messages, deliveries, history FROM altinn_outbox.prune_messages($1, $2)";
    /// A delivery a prune may remove is finished before the cutoff ($1) and no longer followed:
    /// the same rule as `altinn_outbox.prune_messages` (migration 20261204000011), which deletes.
    PRUNE_PREVIEW = "WITH doomed AS (
            SELECT m.id FROM altinn_outbox.message m
            WHERE m.created_at < $1 AND NOT EXISTS (
                SELECT 1 FROM altinn_outbox.delivery d WHERE d.message_id = m.id
                AND NOT (d.state IN ('delivered', 'unconfirmed', 'failed', 'cancelled')
                         AND d.finished_at < $1 AND d.next_poll_at IS NULL))
         )
         SELECT (SELECT count(*) FROM doomed),
                (SELECT count(*) FROM altinn_outbox.delivery d WHERE d.message_id IN (SELECT id FROM doomed)),
                (SELECT count(*) FROM altinn_outbox.history h JOIN altinn_outbox.delivery d ON d.id = h.delivery_id
                 WHERE d.message_id IN (SELECT id FROM doomed))";
    CUTOFF = "SELECT now() - $1::float8 * interval '1 second'";
}

/// The whole outbox at a glance.
#[derive(Clone, Debug)]
pub struct Summary {
    pub messages: i64,
    /// Deliveries per state, every state of [`DeliveryState::ALL`] present (zero included), in
    /// that order; then any state the constraint gained after this binary was built.
    pub deliveries: Vec<(String, i64)>,
    pub oldest_pending: Option<OldestPending>,
    /// Deliveries that failed in the last 24 hours, by `error_code`, most frequent first.
    pub failed_last_24h: Vec<(Option<String>, i64)>,
}

/// The oldest delivery Altinn has not accepted yet (pending, waiting_files or sending).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct OldestPending {
    pub delivery_id: i64,
    pub message_id: i64,
    pub state: DeliveryState,
    pub created_at: DateTime<Utc>,
    pub age_s: i64,
}

pub async fn summary(pool: &PgPool) -> Result<Summary, sqlx::Error> {
    let messages = sqlx::query_scalar(COUNT_MESSAGES).fetch_one(pool).await?;
    let counted: Vec<(String, i64)> = sqlx::query_as(COUNT_BY_STATE).fetch_all(pool).await?;
    let deliveries = with_zeros(delivery_states(), counted);
    let oldest_pending = sqlx::query_as(OLDEST_PENDING).fetch_optional(pool).await?;
    let failed_last_24h = sqlx::query_as(FAILED_LAST_24H).fetch_all(pool).await?;
    Ok(Summary { messages, deliveries, oldest_pending, failed_last_24h })
}

/// A message as `show` prints it: ids and references, never the letter's content.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct MessageInfo {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub resource_id: String,
    pub senders_reference: String,
    pub resend: i32,
}

/// One delivery with everything an operator looks at. `recipient` is as the producer wrote
/// it: mask it before printing.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct DeliveryInfo {
    pub id: i64,
    pub recipient: String,
    pub state: DeliveryState,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub idempotency_key: Option<Uuid>,
    pub correspondence_id: Option<Uuid>,
    pub sent_at: Option<DateTime<Utc>>,
    pub altinn_status: Option<String>,
    pub altinn_status_at: Option<DateTime<Utc>>,
    pub polls: i32,
    pub next_poll_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub notification: Option<NotificationOutcome>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct HistoryRow {
    pub delivery_id: i64,
    pub at: DateTime<Utc>,
    pub kind: HistoryKind,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub detail: Option<String>,
}

pub async fn message(pool: &PgPool, id: i64) -> Result<Option<MessageInfo>, sqlx::Error> {
    sqlx::query_as(MESSAGE).bind(id).fetch_optional(pool).await
}

pub async fn deliveries(pool: &PgPool, message_id: i64) -> Result<Vec<DeliveryInfo>, sqlx::Error> {
    sqlx::query_as(DELIVERIES).bind(message_id).fetch_all(pool).await
}

/// The history of every delivery of a message, in the order it was written.
pub async fn history(pool: &PgPool, message_id: i64) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as(HISTORY).bind(message_id).fetch_all(pool).await
}

/// Which deliveries `retry` looks at.
#[derive(Clone, Debug)]
pub enum RetryScope {
    /// Every delivery of one message (those not failed are reported, not touched).
    Message(i64),
    /// Every failed delivery; with a code, only those whose `error_code` is that code, or
    /// whose code ends in it after the colon (`1036` matches `altinn:1036`).
    Failed { code: Option<String> },
}

/// One delivery `retry` looked at: its state before, and after (equal when untouched).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Retried {
    pub delivery_id: i64,
    pub message_id: i64,
    pub old_state: DeliveryState,
    pub new_state: DeliveryState,
    pub correspondence_id: Option<Uuid>,
    pub altinn_status: Option<String>,
    pub error_code: Option<String>,
}

/// Puts failed deliveries back, in one statement:
/// - never sent (no correspondence id): to `pending` with the attempts reset, due now; if
///   the message's shared file upload failed, the failed files start over and the delivery
///   waits in `waiting_files` (sending without them would drop a file);
/// - sent, but its publication was never confirmed (`unconfirmed`), or (in rows from
///   before status reads stopped failing deliveries) a status read failed: back to
///   `awaiting_status`, read now. It is never sent again: its idempotency key is kept, and
///   Altinn already has it;
/// - sent, and Altinn itself failed the correspondence (status Failed or Reserved):
///   untouched, as no retry can change Altinn's verdict; a new letter needs `resend`.
pub async fn retry(pool: &PgPool, scope: &RetryScope) -> Result<Vec<Retried>, sqlx::Error> {
    let (message_id, code) = match scope {
        RetryScope::Message(id) => (Some(*id), None),
        RetryScope::Failed { code } => (None, code.clone()),
    };
    sqlx::query_as(RETRY).bind(message_id).bind(code).fetch_all(pool).await
}

/// A delivery as `cancel` needs it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CancelTarget {
    pub id: i64,
    pub state: DeliveryState,
    pub lease_no: i64,
    pub resource_id: String,
    pub idempotency_key: Option<Uuid>,
    pub correspondence_id: Option<Uuid>,
    pub altinn_status: Option<String>,
}

pub async fn cancel_targets(pool: &PgPool, message_id: i64) -> Result<Vec<CancelTarget>, sqlx::Error> {
    sqlx::query_as(CANCEL_TARGETS).bind(message_id).fetch_all(pool).await
}

/// Cancels the message's deliveries that were never handed to a worker for sending (no
/// idempotency key yet: keys are stored at the first claim, before any request), so
/// nothing of them can be at Altinn. Returns their ids. Shared files not yet begun at
/// Altinn are given up when no delivery waits for them any more.
pub async fn cancel_never_sent(pool: &PgPool, message_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(CANCEL_NEVER_SENT).bind(message_id).fetch_all(pool).await
}

/// Cancels one unsent delivery, fenced by the lease seen before Altinn was asked about it:
/// false when a worker has claimed it since (it may be sending it right now).
pub async fn cancel_unsent(pool: &PgPool, id: i64, lease_no: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(CANCEL_UNSENT).bind(id).bind(lease_no).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}

/// Records that Altinn purged the delivery's correspondence: cancelled and no longer
/// followed. A delivery a worker is sending right now is left to it (it finds the
/// correspondence by key and reads PurgedByAltinn); false then, or when already finished.
pub async fn mark_purged(pool: &PgPool, id: i64, correspondence_id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(MARK_PURGED).bind(id).bind(correspondence_id).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}

/// What a prune removed (or, dry, would remove). Attachments go with their messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Deliveries finished before this time (the database's clock) were old enough.
    pub cutoff: Option<DateTime<Utc>>,
    pub messages: i64,
    pub deliveries: i64,
    pub history: i64,
}

/// Deletes messages all of whose deliveries finished more than `older_than` ago and are
/// no longer followed, with their deliveries, attachments and history, in batches of
/// [`PRUNE_BATCH`] messages. The rule and the delete are in `altinn_outbox.prune_messages`,
/// which runs as the schema's owner: the worker's role may not DELETE a message itself, so it
/// can remove only what the rule allows. The function locks the deliveries and checks them
/// again, so one put back by `retry` meanwhile keeps its message.
pub async fn prune(pool: &PgPool, older_than: Duration) -> Result<PruneReport, sqlx::Error> {
    let cutoff = cutoff(pool, older_than).await?;
    let mut report = PruneReport { cutoff: Some(cutoff), ..PruneReport::default() };
    loop {
        let (messages, deliveries, history): (i64, i64, i64) =
            sqlx::query_as(PRUNE_MESSAGES).bind(cutoff).bind(PRUNE_BATCH).fetch_one(pool).await?;
        report.messages += messages;
        report.deliveries += deliveries;
        report.history += history;
        if messages < i64::from(PRUNE_BATCH) {
            return Ok(report);
        }
    }
}

/// What [`prune`] would delete now, without deleting anything.
pub async fn prune_preview(pool: &PgPool, older_than: Duration) -> Result<PruneReport, sqlx::Error> {
    let cutoff = cutoff(pool, older_than).await?;
    let (messages, deliveries, history): (i64, i64, i64) =
        sqlx::query_as(PRUNE_PREVIEW).bind(cutoff).fetch_one(pool).await?;
    Ok(PruneReport { cutoff: Some(cutoff), messages, deliveries, history })
}

/// The cutoff on the database's clock, which wrote `finished_at`.
async fn cutoff(pool: &PgPool, older_than: Duration) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(CUTOFF).bind(older_than.as_secs_f64()).fetch_one(pool).await
}
