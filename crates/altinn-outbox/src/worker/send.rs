//! Sending one delivery: read its message, compose, initialize, and on 409/1034 find the
//! correspondence by key and make sure it is this letter before taking it as sent.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::policy::after;
use super::Context;
use crate::altinn::wire::Identity;
use crate::altinn::{ApiError, Created, ErrorClass, FilePart};
use crate::codes::{self, Code};
use crate::compose::attachment::FileMeta;
use crate::compose::{self, Column};
use crate::outbox::{self, ClaimedSend, DeliveryState, MessageRow, NotificationOutcome, Outcome};

/// Sends one claimed delivery and says what to write back. Never fails: every error
/// becomes an outcome on the row.
pub async fn send_one(ctx: &Context, job: &ClaimedSend, key: Uuid) -> Outcome {
    let now = Utc::now();
    // The claim read it, once for all of the batch's deliveries of this message.
    let content = match &job.content {
        Some(content) => content.clone(),
        None => match outbox::message_content(&ctx.pool, job.message_id).await {
            Ok(content) => std::sync::Arc::new(content),
            Err(e) => {
                return failure(ctx, job, ApiError::deferred(Code::Database, format!("reading the message: {e}")), now)
            }
        },
    };
    let message = match content.as_ref() {
        Ok(message) => message,
        Err(column) => return undecodable(*column),
    };
    let request = match compose::check_identity(&job.recipient, &job.recipient_key)
        .and_then(|()| compose::initialize_request(message, &job.recipient, key, now))
    {
        Ok(r) => r,
        Err(invalid) => return invalid_row(invalid),
    };
    let created = if message.shared_file_count > 0 {
        // Uploaded once for every recipient: refer to them by id.
        match outbox::uploads::published_attachment_ids(&ctx.pool, message.message_id).await {
            Ok(ids) => {
                let mut request = request;
                request.existing_attachments.extend(ids);
                ctx.altinn.initialize(&request).await
            }
            Err(e) => Err(ApiError::deferred(Code::Database, format!("reading the attachment ids: {e}"))),
        }
    } else if message.attachment_count > 0 {
        let files = match outbox::message_files(&ctx.pool, message.message_id).await {
            Ok(files) => files,
            Err(e) => {
                return failure(ctx, job, ApiError::deferred(Code::Database, format!("reading the files: {e}")), now)
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
        Ok(Created::AlreadyExists) => find_existing(ctx, job, key).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((correspondence_id, altinn_status)) => Outcome::Sent {
            correspondence_id,
            altinn_status,
            notification: if has_notification(message) {
                NotificationOutcome::Pending
            } else {
                NotificationOutcome::None
            },
            next_poll_at: first_poll(ctx, message.requested_publish_time, now),
        },
        Err(e) => failure(ctx, job, e, now),
    }
}

fn invalid_row(invalid: compose::Invalid) -> Outcome {
    Outcome::Finished { state: DeliveryState::Failed, code: invalid.code(), message: invalid.to_string() }
}

/// A message column this program cannot read fails the delivery naming the column.
fn undecodable(column: Column) -> Outcome {
    Outcome::Finished {
        state: DeliveryState::Failed,
        code: codes::validation(column),
        message: format!("{column}: the stored value cannot be read (malformed or nested too deep)"),
    }
}

fn has_notification(message: &MessageRow) -> bool {
    message.notification.as_ref().is_some_and(|n| !n.is_null())
}

/// Altinn says the key is taken (409/1034). The key is ours only if the correspondence
/// holding it is this letter: same resource, sender's reference and recipient. An earlier
/// attempt of ours whose answer was lost is; anything else (a key made twice, another
/// sender's) is not, and taking it would mark this letter delivered without sending it.
async fn find_existing(ctx: &Context, job: &ClaimedSend, key: Uuid) -> Result<(Uuid, Option<String>), ApiError> {
    let Some(id) = ctx.altinn.find_by_key(&job.resource_id, key).await? else {
        return Err(ApiError::permanent(
            Code::IdempotencyConflict,
            "Altinn says the idempotency key is taken (1034) but no correspondence of this resource has it: \
             the key was used by another sender or resource; check outbox.idempotency_namespace",
        ));
    };
    let found = ctx.altinn.identity(id).await?;
    match mismatch(job, &found) {
        None => Ok((id, None)),
        Some(fields) => Err(ApiError::permanent(
            Code::IdempotencyKeyForeign,
            format!(
                "Altinn says the idempotency key is taken (1034) by correspondence {id}, which is another letter \
                 (its {fields} differ); this delivery was not sent and nothing was marked delivered"
            ),
        )),
    }
}

/// Which of resource, sender's reference and recipient differ between this delivery and
/// the correspondence Altinn holds under its key (names only: the recipient may be a person).
fn mismatch(job: &ClaimedSend, found: &Identity) -> Option<String> {
    let bare = |r: &str| r.strip_prefix("urn:altinn:resource:").unwrap_or(r).to_string();
    let mut fields = Vec::new();
    if bare(&found.resource_id) != bare(&job.resource_id) {
        fields.push("resource");
    }
    if found.senders_reference != job.senders_reference {
        fields.push("sender's reference");
    }
    if !found.recipient.eq_ignore_ascii_case(&job.recipient_key) {
        fields.push("recipient");
    }
    (!fields.is_empty()).then(|| fields.join(", "))
}

/// Altinn publishes at the requested time, so there is nothing to read before it. With events
/// on, the publication's event brings the read forward; this is the safety net's first read.
fn first_poll(ctx: &Context, publish: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    let from = publish.filter(|p| *p > now).unwrap_or(now);
    after(from, ctx.settings.status.routine_interval(0))
}

/// The one place a failure's class decides the row's fate.
pub fn failure(ctx: &Context, job: &ClaimedSend, e: ApiError, now: DateTime<Utc>) -> Outcome {
    let (policy, attempt) = (&ctx.settings.retry, job.attempts);
    let random: f64 = rand::random();
    let wait =
        |n: i32| after(now, policy.backoff.delay(n.max(1) as u32, random).max(e.retry_after.unwrap_or_default()));
    match e.class {
        ErrorClass::Permanent => Outcome::Finished { state: DeliveryState::Failed, code: e.code, message: e.message },
        ErrorClass::Transient if policy.exhausted(attempt) => Outcome::Finished {
            state: DeliveryState::Failed,
            code: e.code,
            message: format!("gave up after {attempt} attempts; last error: {}", e.message),
        },
        ErrorClass::Transient => Outcome::Retry { at: wait(attempt), code: e.code, message: e.message, refund: false },
        // Not the row's fault (no token, or throttled before any request): wait, keep the attempt.
        ErrorClass::Deferred => Outcome::Retry { at: wait(3), code: e.code, message: e.message, refund: true },
        // Not the row's fault either, but nothing changes until an operator acts (the client
        // said so once, per resource): wait longer each time, keep the attempt, and give up
        // once the row is older than the limit, with the fault's code.
        ErrorClass::Misconfigured(_) => {
            let age = (now - job.inserted_at).to_std().unwrap_or_default();
            match policy.fault_wait_left(age) {
                Some(left) => {
                    let at = after(now, policy.fault_delay(age, random).min(left));
                    Outcome::Retry { at, code: e.code, message: e.message, refund: true }
                }
                None => Outcome::Finished {
                    state: DeliveryState::Failed,
                    code: e.code,
                    message: format!(
                        "gave up after {} h waiting for the configuration to be fixed (retry.config_fault_max_age_s); \
                         last error: {}",
                        policy.config_fault_max_age.as_secs() / 3600,
                        e.message
                    ),
                },
            }
        }
    }
}
