//! One step of a shared file upload: create the Altinn attachment, upload into it once,
//! read its status until the malware scan ends, or until `status.max_scan_wait_ms` after the
//! upload (`scan_timeout`). Each step's result is written at once, so a crash never loses an
//! attachment id, and an upload is never repeated into the same one-shot attachment (a
//! failed upload starts over with a new one).

use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};
use uuid::Uuid;

use super::policy::{after, ScanWait};
use super::Context;
use crate::altinn::wire::InitializeAttachment;
use crate::altinn::{ApiError, ErrorClass};
use crate::codes::{AttachmentEnd, Code};
use crate::compose::attachment::{check_file, FileMeta};
use crate::outbox::uploads::{self, ClaimedUpload, Step};
use crate::outbox::{FileContent, UploadState};

pub async fn upload_step(ctx: &Context, job: &ClaimedUpload) {
    let result = match (job.upload_state, job.altinn_attachment_id) {
        (UploadState::Pending, _) => create_and_upload(ctx, job).await,
        (UploadState::Initialized, Some(id)) => upload(ctx, job, id).await,
        (UploadState::Processing, Some(id)) => check(ctx, job, id).await,
        _ => Ok(()),
    };
    // A database error leaves the step to come due again when its lease runs out.
    if let Err(e) = result {
        warn!(attachment_id = job.id, error = %e, "upload step not recorded");
    }
}

async fn create_and_upload(ctx: &Context, job: &ClaimedUpload) -> Result<(), sqlx::Error> {
    let meta = FileMeta {
        file_name: job.file_name.clone(),
        display_name: job.display_name.clone(),
        senders_reference: job.senders_reference.clone(),
        size: job.size,
        md5: job.md5.clone(),
    };
    if let Err(invalid) = check_file(&meta) {
        return uploads::finish_upload(&ctx.pool, job, Err((&invalid.code(), &invalid.to_string()))).await.map(drop);
    }
    let request = InitializeAttachment {
        resource_id: job.resource_id.clone(),
        file_name: meta.file_name,
        display_name: meta.display_name,
        senders_reference: meta.senders_reference,
        is_encrypted: false,
        checksum: meta.md5,
    };
    match ctx.altinn.create_attachment(&request).await {
        Ok(id) => {
            let step = Step {
                state: UploadState::Initialized,
                altinn_id: Some(Some(id)),
                next_attempt_at: Utc::now(),
                count_attempt: false,
                error: None,
            };
            if uploads::write_step(&ctx.pool, job.id, job.lease_no, &step).await? {
                info!(attachment_id = job.id, altinn_attachment_id = %id, "attachment created");
                return upload(ctx, job, id).await;
            }
            Ok(())
        }
        Err(e) => retry(ctx, job, UploadState::Pending, None, e).await,
    }
}

async fn upload(ctx: &Context, job: &ClaimedUpload, id: Uuid) -> Result<(), sqlx::Error> {
    if !uploads::start_upload(&ctx.pool, job.id, job.lease_no, ctx.settings.upload_lease).await? {
        return Ok(());
    }
    let content = FileContent::new(ctx.pool.clone(), job.id, job.size);
    match ctx.altinn.upload_attachment(id, &content).await {
        Ok(_) => scanning(ctx, job).await,
        // Whatever happened, the one-shot attachment is spent: start over with a new one.
        Err(e) => retry(ctx, job, UploadState::Pending, Some(None), e).await,
    }
}

async fn check(ctx: &Context, job: &ClaimedUpload, id: Uuid) -> Result<(), sqlx::Error> {
    match ctx.altinn.attachment_status(id).await {
        Ok(a) if a.status == "Published" => uploads::finish_upload(&ctx.pool, job, Ok(())).await.map(drop),
        Ok(a) => match AttachmentEnd::parse(&a.status) {
            Some(end) => {
                let text = a.status_text.unwrap_or_else(|| format!("the attachment is {}", a.status));
                uploads::finish_upload(&ctx.pool, job, Err((&end.code(), &text))).await.map(drop)
            }
            // Still scanning: read again later without using an attempt, or give the file up.
            None => scanning(ctx, job).await,
        },
        Err(e) => retry(ctx, job, UploadState::Processing, None, e).await,
    }
}

/// Uploaded, the malware scan running: read its status again on the scan schedule, or, once
/// the wait since the upload is over, fail the file (and the message's waiting deliveries).
async fn scanning(ctx: &Context, job: &ClaimedUpload) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    // Only the step that just uploaded has no time yet; the write stores the database's.
    let uploaded_at = job.uploaded_at.unwrap_or(now);
    let next = match ctx.settings.scan.after_read(uploaded_at, now) {
        ScanWait::ReadAt(next) => next,
        ScanWait::GiveUp(waited) => {
            warn!(attachment_id = job.id, waited_s = waited.as_secs(), "malware scan not done in time; file given up");
            let text = scan_timeout_text(waited, ctx.settings.scan.max_wait);
            return uploads::finish_upload(&ctx.pool, job, Err((Code::ScanTimeout.as_str(), &text))).await.map(drop);
        }
    };
    let step = Step {
        state: UploadState::Processing,
        altinn_id: None,
        next_attempt_at: next,
        count_attempt: false,
        error: None,
    };
    uploads::write_step(&ctx.pool, job.id, job.lease_no, &step).await.map(drop)
}

fn scan_timeout_text(waited: Duration, limit: Duration) -> String {
    format!(
        "Altinn's malware scan was still running {:.1} s after the upload (status.max_scan_wait_ms allows {:.1} s); \
         Altinn may still finish it, but this attachment is given up: altinn-outbox retry uploads the file again",
        waited.as_secs_f64(),
        limit.as_secs_f64()
    )
}

/// The upload's own retry, by the same policy as sends: permanent errors and exhausted
/// attempts fail the file (and with it the message's waiting deliveries).
async fn retry(
    ctx: &Context,
    job: &ClaimedUpload,
    state: UploadState,
    altinn_id: Option<Option<Uuid>>,
    e: ApiError,
) -> Result<(), sqlx::Error> {
    let policy = &ctx.settings.retry;
    let attempt = job.upload_attempts + 1;
    if e.class == ErrorClass::Permanent || (e.class == ErrorClass::Transient && policy.exhausted(attempt)) {
        return uploads::finish_upload(&ctx.pool, job, Err((&e.code, &e.message))).await.map(drop);
    }
    let now = Utc::now();
    let wait = match e.class {
        // As for sends: an operator must act; wait longer each time, without using an
        // attempt, until the message is older than the limit, then fail with the fault's code.
        ErrorClass::Misconfigured(_) => {
            let age = (now - job.message_created_at).to_std().unwrap_or_default();
            match policy.fault_wait_left(age) {
                Some(left) => policy.fault_delay(age, rand::random()).min(left),
                None => {
                    let text = format!(
                        "gave up waiting for the configuration to be fixed (retry.config_fault_max_age_s); last error: {}",
                        e.message
                    );
                    return uploads::finish_upload(&ctx.pool, job, Err((&e.code, &text))).await.map(drop);
                }
            }
        }
        _ => policy.backoff.delay(attempt.max(1) as u32, rand::random()),
    }
    .max(e.retry_after.unwrap_or_default());
    let step = Step {
        state,
        altinn_id,
        next_attempt_at: after(now, wait),
        count_attempt: e.class == ErrorClass::Transient,
        error: Some((&e.code, &e.message)),
    };
    uploads::write_step(&ctx.pool, job.id, job.lease_no, &step).await.map(drop)
}
