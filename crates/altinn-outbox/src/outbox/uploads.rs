//! The shared upload of a message's files (messages to several recipients): each file is
//! created at Altinn, uploaded once, and read until its malware scan ends; then the
//! message's deliveries are released (or failed) in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::states::UploadState;

crate::statements! {
    CLAIM_UPLOADS = "WITH picked AS (
            SELECT id FROM altinn_outbox.attachment
            WHERE upload_state IN ('pending', 'initialized', 'processing') AND next_attempt_at <= now()
            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
         ), claimed AS (
            UPDATE altinn_outbox.attachment a
            SET lease_no = a.lease_no + 1, locked_by = $2, locked_until = now() + $3 * interval '1 millisecond',
                next_attempt_at = now() + $3 * interval '1 millisecond', updated_at = now()
            FROM picked WHERE a.id = picked.id
            RETURNING a.*
         )
         SELECT c.id, c.message_id, c.lease_no, c.upload_state, c.altinn_attachment_id, c.upload_attempts,
                c.uploaded_at, m.resource_id, m.created_at AS message_created_at, c.file_name, c.display_name, c.senders_reference,
                octet_length(c.content)::bigint AS size, md5(c.content) AS md5
         FROM claimed c JOIN altinn_outbox.message m ON m.id = c.message_id";
    WRITE_STEP = "UPDATE altinn_outbox.attachment SET upload_state = $3,
                altinn_attachment_id = CASE WHEN $4 THEN $5 ELSE altinn_attachment_id END,
                next_attempt_at = $6, upload_attempts = upload_attempts + $7::int,
                error_code = $8, error_message = $9, updated_at = now(),
                uploaded_at = CASE WHEN $3 = 'processing' AND upload_state = 'uploading' THEN now()
                                   WHEN $3 = 'pending' THEN NULL ELSE uploaded_at END,
                locked_by = CASE WHEN $3 = 'uploading' THEN locked_by END,
                locked_until = CASE WHEN $3 = 'uploading' THEN locked_until END
         WHERE id = $1 AND lease_no = $2";
    START_UPLOAD = "UPDATE altinn_outbox.attachment SET upload_state = 'uploading', updated_at = now(),
                locked_until = now() + $3 * interval '1 millisecond'
         WHERE id = $1 AND lease_no = $2 AND upload_state = 'initialized'";
    RECLAIM_DEAD_UPLOADS = "UPDATE altinn_outbox.attachment
         SET upload_state = 'pending', altinn_attachment_id = NULL, uploaded_at = NULL, next_attempt_at = now(),
             updated_at = now(), error_code = 'lease_expired',
             error_message = 'the upload''s worker stopped; uploading to a new attachment',
             locked_by = NULL, locked_until = NULL
         WHERE upload_state = 'uploading' AND locked_until < now()";
    LOCK_FILES = "SELECT id FROM altinn_outbox.attachment WHERE message_id = $1 ORDER BY id FOR UPDATE";
    FINISH_FILE = "UPDATE altinn_outbox.attachment SET upload_state = $3, error_code = $4, error_message = $5,
                locked_by = NULL, locked_until = NULL, updated_at = now()
         WHERE id = $1 AND lease_no = $2";
    RELEASE_DELIVERIES = "UPDATE altinn_outbox.delivery
         SET state = 'pending', next_attempt_at = now(), updated_at = now()
         WHERE message_id = $1 AND state = 'waiting_files'
           AND NOT EXISTS (SELECT 1 FROM altinn_outbox.attachment
                           WHERE message_id = $1 AND upload_state <> 'published')";
    NOTIFY = "SELECT pg_notify($1, '')";
    FAIL_DELIVERIES = "UPDATE altinn_outbox.delivery SET state = 'failed', finished_at = now(), updated_at = now(),
                error_code = $2, error_message = $3
         WHERE message_id = $1 AND state = 'waiting_files'";
    PUBLISHED_ATTACHMENT_IDS = "SELECT altinn_attachment_id FROM altinn_outbox.attachment
         WHERE message_id = $1 AND upload_state = 'published' ORDER BY id";
}

/// A file claimed for its next upload step; `lease_no` fences every write.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ClaimedUpload {
    pub id: i64,
    pub message_id: i64,
    pub lease_no: i64,
    pub upload_state: UploadState,
    pub altinn_attachment_id: Option<Uuid>,
    pub upload_attempts: i32,
    /// When the upload into the current attachment finished (set while `processing`): the
    /// malware scan's wait is counted from it.
    pub uploaded_at: Option<DateTime<Utc>>,
    pub resource_id: String,
    /// When the file's message was inserted: a configuration fault's wait is counted from it.
    pub message_created_at: DateTime<Utc>,
    pub file_name: String,
    pub display_name: Option<String>,
    pub senders_reference: String,
    pub size: i64,
    pub md5: String,
}

/// Claims due upload steps. Like status reads, the lease is `next_attempt_at` pushed one
/// lease ahead, so an abandoned step simply comes due again.
pub async fn claim_uploads(
    pool: &PgPool,
    limit: i64,
    worker: &str,
    lease: Duration,
) -> Result<Vec<ClaimedUpload>, sqlx::Error> {
    sqlx::query_as(CLAIM_UPLOADS).bind(limit).bind(worker).bind(lease.as_millis() as f64).fetch_all(pool).await
}

/// One upload step's result. `altinn_id`: Some(Some) stores an id, Some(None) forgets a spent
/// one, None keeps it. Returns false when the lease was lost (nothing written).
///
/// `uploaded_at` is set where the upload just finished (`uploading` to `processing`) and
/// cleared where the file starts over (`pending`), so that a scan's wait is counted from its
/// own upload; a step that writes `processing` over a row that was not uploading (the sweep
/// started it over meanwhile) is refused by the table's check and leaves the row as it is.
pub struct Step<'a> {
    pub state: UploadState,
    pub altinn_id: Option<Option<Uuid>>,
    pub next_attempt_at: DateTime<Utc>,
    pub count_attempt: bool,
    pub error: Option<(&'a str, &'a str)>,
}

pub async fn write_step(pool: &PgPool, id: i64, lease_no: i64, step: &Step<'_>) -> Result<bool, sqlx::Error> {
    let (code, message) = step.error.unzip();
    let done = sqlx::query(WRITE_STEP)
        .bind(id)
        .bind(lease_no)
        .bind(step.state)
        .bind(step.altinn_id.is_some())
        .bind(step.altinn_id.flatten())
        .bind(step.next_attempt_at)
        .bind(i32::from(step.count_attempt))
        .bind(code)
        .bind(message)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the upload started, with a lease of its own: if this worker dies mid-upload, the
/// one-shot attachment may be spent, so the sweep starts the file over with a new one.
pub async fn start_upload(pool: &PgPool, id: i64, lease_no: i64, lease: Duration) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(START_UPLOAD).bind(id).bind(lease_no).bind(lease.as_millis() as f64).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}

/// Uploads whose worker died mid-way start over with a new Altinn attachment.
pub async fn reclaim_dead_uploads(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(RECLAIM_DEAD_UPLOADS).execute(pool).await?;
    Ok(done.rows_affected())
}

/// Ends a file's upload: `Ok(())` published, `Err((code, text))` failed. In one transaction
/// that locks all of the message's files (in id order, so two finishers never deadlock), so
/// that of two files finishing at once, one sees the other. The files, not the message: a row
/// lock needs UPDATE privilege, and the worker's role may not update messages.
pub async fn finish_upload(
    pool: &PgPool,
    upload: &ClaimedUpload,
    result: Result<(), (&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(LOCK_FILES).bind(upload.message_id).execute(&mut *tx).await?;
    let (state, code, message) = match result {
        Ok(()) => (UploadState::Published, None, None),
        Err((code, message)) => (UploadState::Failed, Some(code), Some(message)),
    };
    let written = sqlx::query(FINISH_FILE)
        .bind(upload.id)
        .bind(upload.lease_no)
        .bind(state)
        .bind(code)
        .bind(message)
        .execute(&mut *tx)
        .await?;
    if written.rows_affected() == 0 {
        return Ok(false);
    }
    match result {
        Ok(()) => release_deliveries(&mut tx, upload.message_id).await?,
        Err((code, message)) => fail_deliveries(&mut tx, upload, code, message).await?,
    }
    tx.commit().await?;
    Ok(true)
}

async fn release_deliveries(tx: &mut sqlx::PgConnection, message_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(RELEASE_DELIVERIES).bind(message_id).execute(&mut *tx).await?;
    // Wake idle workers: these deliveries are due now.
    sqlx::query(NOTIFY).bind(super::NOTIFY_CHANNEL).execute(&mut *tx).await?;
    Ok(())
}

async fn fail_deliveries(
    tx: &mut sqlx::PgConnection,
    upload: &ClaimedUpload,
    code: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(FAIL_DELIVERIES)
        .bind(upload.message_id)
        .bind(code)
        .bind(format!("attachment {:?}: {message}", upload.file_name))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The Altinn ids of a message's uploaded files, in insertion order.
pub async fn published_attachment_ids(pool: &PgPool, message_id: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(PUBLISHED_ATTACHMENT_IDS).bind(message_id).fetch_all(pool).await
}
