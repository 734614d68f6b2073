//! Sending one delivery: compose, initialize, and on 409/1034 find the id by key.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::policy::after;
use super::Context;
use crate::altinn::{ApiError, Created, ErrorClass, FilePart};
use crate::compose;
use crate::compose::attachment::FileMeta;
use crate::outbox::{self, ClaimedSend, Outcome};

/// Sends one claimed delivery and says what to write back. Never fails: every error
/// becomes an outcome on the row.
pub async fn send_one(ctx: &Context, job: &ClaimedSend, key: Uuid) -> Outcome {
    let now = Utc::now();
    let request = match compose::initialize_request(&job.message, &job.recipient, key, now) {
        Ok(r) => r,
        Err(invalid) => return invalid_row(invalid),
    };
    let created = if job.message.shared_file_count > 0 {
        // Uploaded once for every recipient: refer to them by id.
        match outbox::uploads::published_attachment_ids(&ctx.pool, job.message.message_id).await {
            Ok(ids) => {
                let mut request = request;
                request.existing_attachments.extend(ids);
                ctx.altinn.initialize(&request).await
            }
            Err(e) => Err(ApiError::deferred("database", format!("reading the attachment ids: {e}"))),
        }
    } else if job.message.attachment_count > 0 {
        let files = match outbox::message_files(&ctx.pool, job.message.message_id).await {
            Ok(files) => files,
            Err(e) => {
                return failure(
                    ctx,
                    job.attempts,
                    ApiError::deferred("database", format!("reading the files: {e}")),
                    now,
                )
            }
        };
        let metas: Vec<FileMeta> = files.iter().map(|f| f.meta.clone()).collect();
        let request = match compose::attachment::add_files(request, &metas) {
            Ok(r) => r,
            Err(invalid) => return invalid_row(invalid),
        };
        let parts: Vec<FilePart> =
            files.into_iter().map(|f| FilePart { file_name: f.meta.file_name, content: f.content }).collect();
        // Streamed per attempt from the database: never whole in memory.
        ctx.altinn.initialize_with_files(&request, &parts).await
    } else {
        ctx.altinn.initialize(&request).await
    };
    let result = match created {
        Ok(Created::New { correspondence_id, status }) => Ok((correspondence_id, Some(status))),
        Ok(Created::AlreadyExists) => find_existing(ctx, &job.message.resource_id, key).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((correspondence_id, altinn_status)) => Outcome::Sent {
            correspondence_id,
            altinn_status,
            notification: if job.message.notification.is_some() { "pending" } else { "none" },
            next_poll_at: first_poll(ctx, job.message.requested_publish_time, now),
        },
        Err(e) => failure(ctx, job.attempts, e, now),
    }
}

fn invalid_row(invalid: compose::Invalid) -> Outcome {
    Outcome::Finished { state: "failed", code: invalid.code(), message: invalid.to_string() }
}

/// An earlier attempt (ours, lost on the way back) created it: the key says which.
async fn find_existing(ctx: &Context, resource_id: &str, key: Uuid) -> Result<(Uuid, Option<String>), ApiError> {
    match ctx.altinn.find_by_key(resource_id, key).await? {
        Some(id) => Ok((id, None)),
        None => Err(ApiError::permanent(
            "idempotency_conflict",
            "Altinn says the idempotency key is taken (1034) but no correspondence of this resource has it: \
             the key was used by another sender or resource; check outbox.idempotency_namespace",
        )),
    }
}

/// Altinn publishes at the requested time, so there is nothing to read before it.
fn first_poll(ctx: &Context, publish: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    let from = publish.filter(|p| *p > now).unwrap_or(now);
    after(from, ctx.settings.status.interval(0))
}

/// The one place a failure's class decides the row's fate.
pub fn failure(ctx: &Context, attempt: i32, e: ApiError, now: DateTime<Utc>) -> Outcome {
    let policy = &ctx.settings.retry;
    let random: f64 = rand::random();
    let wait =
        |n: i32| after(now, policy.backoff.delay(n.max(1) as u32, random).max(e.retry_after.unwrap_or_default()));
    match e.class {
        ErrorClass::Permanent => Outcome::Finished { state: "failed", code: e.code, message: e.message },
        ErrorClass::Transient if policy.exhausted(attempt) => Outcome::Finished {
            state: "failed",
            code: e.code,
            message: format!("gave up after {attempt} attempts; last error: {}", e.message),
        },
        ErrorClass::Transient => Outcome::Retry { at: wait(attempt), code: e.code, message: e.message, refund: false },
        // Not the row's fault (no token, or throttled before any request): wait, keep the attempt.
        ErrorClass::Deferred => Outcome::Retry { at: wait(3), code: e.code, message: e.message, refund: true },
    }
}
