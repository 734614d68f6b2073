//! The worker: claims due deliveries, calls Altinn with no transaction open, and writes
//! the outcomes back fenced by the lease.
//!
//! [`process_next_batch`] is the unit tests drive; [`run`] (in `run.rs`) keeps requests
//! flowing continuously with the same claim, process and write-back functions.

mod claims;
mod feed;
pub mod policy;
mod poll;
mod run;
mod send;
mod upload;

pub use claims::ClaimHealth;
pub use run::run;

use std::time::Duration;

use sqlx::PgPool;
use tracing::{info, warn, Instrument};
use uuid::Uuid;

use crate::altinn::{AltinnClient, ApiError};
use crate::codes::Code;
use crate::compose;
use crate::metrics;
use crate::outbox::uploads::ClaimedUpload;
use crate::outbox::{self, ClaimedPoll, ClaimedSend, DeliveryState, Outcome, WriteBack};
use policy::{RetryPolicy, ScanPolicy, StatusPolicy};

/// Everything the worker needs, built once at start-up.
pub struct Context {
    pub pool: PgPool,
    pub altinn: AltinnClient,
    pub settings: Settings,
    /// What the systemd watchdog checks: the loop and the writer are not stuck.
    pub liveness: std::sync::Arc<crate::systemd::Liveness>,
    /// Whether claims keep failing, for `/readyz`.
    pub claims: ClaimHealth,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// This instance's name in `locked_by`.
    pub instance: String,
    pub namespace: Uuid,
    pub concurrency: usize,
    pub lease: Duration,
    /// The lease of a send that uploads files: its request may take the upload timeout.
    pub upload_lease: Duration,
    pub idle_poll_interval: Duration,
    pub sweep_interval: Duration,
    pub shutdown_grace: Duration,
    pub retry: RetryPolicy,
    pub status: StatusPolicy,
    /// How long and how often an uploaded file is read while Altinn scans it.
    pub scan: ScanPolicy,
}

/// One claimed piece of work.
#[derive(Debug)]
pub enum Job {
    Send(Box<ClaimedSend>, Uuid),
    Poll(ClaimedPoll),
    /// A step of a shared file upload; written back by the step itself.
    Upload(Box<ClaimedUpload>),
}

impl Job {
    /// The delivery and lease a write-back is fenced by (uploads write their own).
    pub fn lease(&self) -> Option<(i64, i64)> {
        match self {
            Job::Send(s, _) => Some((s.delivery_id, s.lease_no)),
            Job::Poll(p) => Some((p.delivery_id, p.lease_no)),
            Job::Upload(_) => None,
        }
    }

    /// How long the job may take: its lease less a tenth, so that the result is written
    /// back (or the work abandoned) before the lease can pass to another worker.
    fn budget(&self, s: &Settings) -> Duration {
        let lease = match self {
            Job::Send(send, _) if send.has_files => s.upload_lease,
            _ => s.lease,
        };
        lease - lease / 10
    }

    /// The outcome of a job that ran out of its budget: like a timeout, retried with the
    /// same idempotency key (Altinn may have committed it).
    fn overran(&self, ctx: &Context) -> Outcome {
        self.failed(ctx, ApiError::transient(Code::Timeout, "no answer before the row's lease ran out"))
    }

    /// The outcome of a job that waited in the queue too long to start: nothing was sent,
    /// so the row waits without using an attempt.
    fn not_started(&self, ctx: &Context) -> Outcome {
        self.failed(
            ctx,
            ApiError::deferred(Code::NotStarted, "claimed but not started before half of its lease was gone"),
        )
    }

    fn failed(&self, ctx: &Context, e: ApiError) -> Outcome {
        match self {
            Job::Send(send, _) => send::failure(ctx, send, e, chrono::Utc::now()),
            Job::Poll(poll) => poll::read_failed(poll, &ctx.settings.status, e, chrono::Utc::now()),
            Job::Upload(_) => unreachable!("uploads bound their own requests"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    Processed(usize),
    Empty,
}

/// Which kinds of work a claim looks for (each look is a round trip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Looks {
    pub sends: bool,
    pub uploads: bool,
    pub polls: bool,
}

impl Looks {
    pub const ALL: Looks = Looks { sends: true, uploads: true, polls: true };
}

/// Claims up to `capacity` jobs: due status reads first (at most half, so sends are never
/// starved), then sends. Idempotency keys are stored before this returns, so before any call.
pub async fn claim(ctx: &Context, capacity: usize) -> Result<Vec<Job>, sqlx::Error> {
    claim_looking(ctx, capacity, Looks::ALL).await
}

/// As [`claim`], leaving out the kinds `looks` says not to look for.
pub async fn claim_looking(ctx: &Context, capacity: usize, looks: Looks) -> Result<Vec<Job>, sqlx::Error> {
    let claimed = claim_kinds(ctx, capacity, looks).await;
    ctx.claims.record(&claimed);
    claimed
}

async fn claim_kinds(ctx: &Context, capacity: usize, looks: Looks) -> Result<Vec<Job>, sqlx::Error> {
    let s = &ctx.settings;
    let uploads = if looks.uploads {
        outbox::uploads::claim_uploads(&ctx.pool, capacity.div_ceil(4) as i64, &s.instance, s.lease).await?
    } else {
        Vec::new()
    };
    let capacity = capacity - uploads.len();
    let mut polls = if looks.polls {
        outbox::claim_polls(&ctx.pool, capacity.div_ceil(2) as i64, &s.instance, s.lease).await?
    } else {
        Vec::new()
    };
    let room = capacity.saturating_sub(polls.len()) as i64;
    // While sends look down, one at a time (the gate's probe), whatever reads may do.
    let room = room.min(i64::try_from(ctx.altinn.send_room()).unwrap_or(i64::MAX));
    let sends = if room > 0 && looks.sends {
        let lease = outbox::SendLease { worker: &s.instance, lease: s.lease, upload_lease: s.upload_lease };
        outbox::claim_sends(&ctx.pool, room, &lease, |send| key_for(s.namespace, send)).await?
    } else {
        Vec::new()
    };
    // Room the sends left over goes to further status reads: the half-share only keeps reads
    // from starving sends, and must not hold reads back when there is nothing to send.
    let left = capacity.saturating_sub(polls.len() + sends.len()) as i64;
    if left > 0 && polls.len() == capacity.div_ceil(2) {
        polls.extend(outbox::claim_polls(&ctx.pool, left, &s.instance, s.lease).await?);
    }
    let mut jobs: Vec<Job> = uploads.into_iter().map(|u| Job::Upload(Box::new(u))).collect();
    jobs.extend(polls.into_iter().map(Job::Poll));
    for send in sends {
        let key = send.idempotency_key.expect("claim_sends stores a key for every delivery");
        jobs.push(Job::Send(Box::new(send), key));
    }
    Ok(jobs)
}

/// The idempotency key of a delivery's first attempt; later attempts reuse the stored one.
/// It stands on the database's normalisation of the recipient, the same that makes the
/// reference unique, so two deliveries the database tells apart never share a key (the send
/// refuses a recipient whose URN would differ from it).
fn key_for(namespace: Uuid, send: &ClaimedSend) -> Uuid {
    compose::idempotency_key(namespace, &send.resource_id, &send.senders_reference, send.resend, &send.recipient_key)
}

/// Does one job's HTTP work; the result is what to write back (uploads write their own).
pub async fn process(ctx: &Context, job: Job) -> Option<WriteBack> {
    process_claimed(ctx, job, std::time::Instant::now()).await
}

/// As [`process`] for a job claimed at `claimed_at` and queued since: its budget counts from
/// the claim, and a job that waited past half of it is given back unstarted, since what is
/// left of its lease might not cover a slow request.
pub async fn process_claimed(ctx: &Context, job: Job, claimed_at: std::time::Instant) -> Option<WriteBack> {
    let (delivery_id, lease_no) = match &job {
        Job::Upload(upload) => {
            let span = tracing::info_span!("attachment", attachment_id = upload.id, lease_no = upload.lease_no);
            upload::upload_step(ctx, upload).instrument(span).await;
            return None;
        }
        other => other.lease().expect("sends and polls have a lease"),
    };
    let span = tracing::info_span!("delivery", delivery_id, lease_no);
    let outcome = async {
        let work = async {
            match &job {
                Job::Send(send, key) => send::send_one(ctx, send, *key).await,
                Job::Poll(poll) => poll::poll_one(ctx, poll).await,
                Job::Upload(_) => unreachable!("handled above"),
            }
        };
        // Never work on a row past its lease: another worker may own it by then.
        let budget = job.budget(&ctx.settings);
        let left = budget.saturating_sub(claimed_at.elapsed());
        let outcome = if left < budget / 2 {
            job.not_started(ctx)
        } else {
            match tokio::time::timeout(left, work).await {
                Ok(outcome) => outcome,
                Err(_) => job.overran(ctx),
            }
        };
        log_outcome(&job, &outcome);
        count_outcome(&outcome);
        outcome
    }
    .instrument(span)
    .await;
    Some(WriteBack { delivery_id, lease_no, outcome })
}

/// One line per state change, with ids only: never titles, bodies or recipients.
fn log_outcome(job: &Job, outcome: &Outcome) {
    let message_id = match job {
        Job::Send(s, _) => s.message_id,
        Job::Poll(p) => p.message_id,
        Job::Upload(u) => u.message_id,
    };
    match outcome {
        Outcome::Sent { correspondence_id, .. } => {
            info!(message_id, %correspondence_id, state = DeliveryState::AwaitingStatus.as_str(), "sent");
        }
        // A wait that is not the row's fault is said once where it arises (the gate, the token
        // client, the resource's configuration fault), not once per row and try.
        Outcome::Retry { code, at, refund: true, .. } => {
            let state = DeliveryState::Pending.as_str();
            tracing::debug!(message_id, code, retry_at = %at, state, "waits without using an attempt");
        }
        Outcome::Retry { code, at, .. } => {
            warn!(message_id, code, retry_at = %at, state = DeliveryState::Pending.as_str(), "will retry");
        }
        Outcome::Finished { state, code, message } => {
            warn!(message_id, code, state = state.as_str(), reason = message.as_str(), "finished unsent");
        }
        Outcome::Polled(u) => match (job, u.state) {
            (Job::Poll(p), state) if p.state != state => {
                info!(message_id, state = state.as_str(), altinn_status = u.altinn_status.as_deref(), "status changed");
            }
            _ => tracing::debug!(message_id, altinn_status = u.altinn_status.as_deref(), "status read"),
        },
    }
}

/// Returns to the queue what stopped workers left leased: deliveries at once (their key
/// makes the re-send safe), uploads to start over. Logs what it reclaimed; returns the counts
/// (deliveries, uploads), or None when the database could not be asked.
pub async fn reclaim(ctx: &Context) -> Option<(usize, u64)> {
    let deliveries = match outbox::reclaim_expired_leases(&ctx.pool).await {
        Ok(ids) => {
            if !ids.is_empty() {
                metrics::leases_reclaimed("delivery", ids.len() as u64);
                warn!(count = ids.len(), ids = ?ids, "expired leases reclaimed");
            }
            ids.len()
        }
        Err(e) => {
            warn!(error = %e, "lease sweep failed");
            return None;
        }
    };
    let uploads = match outbox::uploads::reclaim_dead_uploads(&ctx.pool).await {
        Ok(n) => {
            if n > 0 {
                metrics::leases_reclaimed("upload", n);
                warn!(count = n, "uploads of stopped workers start over with new attachments");
            }
            n
        }
        Err(e) => {
            warn!(error = %e, "upload sweep failed");
            return None;
        }
    };
    Some((deliveries, uploads))
}

/// Counts a send or a status read by outcome and error code (see [`crate::metrics`]).
fn count_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Sent { .. } => metrics::send_done("sent", ""),
        Outcome::Retry { code, refund, .. } => metrics::send_done(if *refund { "deferred" } else { "retry" }, code),
        Outcome::Finished { state, code, .. } => metrics::send_done(state.as_str(), code),
        // A read that failed carries no Altinn status; it is read again unless it never can be.
        Outcome::Polled(u) => match (&u.altinn_status, &u.error) {
            (None, Some((code, _))) if u.next_poll_at.is_some() => metrics::poll_done("retry", code),
            (None, Some((code, _))) => metrics::poll_done("failed", code),
            _ => metrics::poll_done("ok", ""),
        },
    }
}

/// Writes results back (fenced by their leases); returns how many were written. With events
/// on, a letter whose publication event came before its correspondence id was written is
/// read at once, as if the event had come after.
pub async fn write_back(ctx: &Context, results: &[WriteBack]) -> Result<u64, sqlx::Error> {
    let written = outbox::write_back(&ctx.pool, results).await?;
    if ctx.settings.status.with_events_on() {
        let sent: Vec<i64> =
            results.iter().filter(|r| matches!(r.outcome, Outcome::Sent { .. })).map(|r| r.delivery_id).collect();
        // Best effort: the results are written, and the safety poll reads these letters anyway.
        if !sent.is_empty() {
            if let Err(e) = outbox::events::wake_sent_with_events(&ctx.pool, &sent).await {
                warn!(error = %e, "could not look for events that came before their letters were written");
            }
        }
    }
    Ok(written)
}

/// Claims one batch, processes it concurrently and writes it back.
pub async fn process_next_batch(ctx: &Context) -> Result<Batch, sqlx::Error> {
    let jobs = claim(ctx, ctx.settings.concurrency).await?;
    if jobs.is_empty() {
        return Ok(Batch::Empty);
    }
    let processed = jobs.len();
    let results: Vec<WriteBack> =
        futures::future::join_all(jobs.into_iter().map(|job| process(ctx, job))).await.into_iter().flatten().collect();
    write_back(ctx, &results).await?;
    Ok(Batch::Processed(processed))
}

/// Processes batches until nothing is due; returns how many jobs ran.
pub async fn drain_until_empty(ctx: &Context) -> Result<usize, sqlx::Error> {
    let mut total = 0;
    while let Batch::Processed(n) = process_next_batch(ctx).await? {
        total += n;
    }
    Ok(total)
}
