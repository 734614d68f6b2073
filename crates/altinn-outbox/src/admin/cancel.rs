//! `cancel ID`: stops each delivery of a message that is not yet published.
//!
//! - Never handed to a worker (no idempotency key): cancelled in one statement; nothing of
//!   it can be at Altinn.
//! - Claimed before but pending again (a lost answer, a retry): Altinn may have it, so it is
//!   looked up by its key first. Not there: cancelled, fenced by the lease seen before the
//!   lookup (a worker that claimed it meanwhile wins, and the answer is "try again"). There:
//!   purged, as below.
//! - `sending`: a worker holds it right now: "try again" (75).
//! - `awaiting_status`: purged at Altinn (allowed only before publication), then cancelled
//!   and no longer followed; `lease_no` is bumped, so a status read in flight writes nothing.
//! - `delivered`, or Altinn says it is published: refused (4). `failed`, `cancelled`:
//!   nothing to do.

use serde_json::{json, Value};
use uuid::Uuid;

use super::format::{or_dash, table};
use super::{Answer, Exit};
use crate::altinn::{ApiError, Purged};
use crate::outbox::admin::{self, CancelTarget};
use crate::outbox::DeliveryState;
use crate::worker::Context;

/// What became of one delivery.
enum Verdict {
    Cancelled,
    Purged(Uuid),
    NothingToDo(DeliveryState),
    InFlight,
    Published(Option<Uuid>),
    Altinn(ApiError),
}

impl Verdict {
    fn exit(&self) -> Exit {
        match self {
            Verdict::Cancelled | Verdict::Purged(_) | Verdict::NothingToDo(_) => Exit::Success,
            Verdict::Published(_) => Exit::Refused,
            Verdict::InFlight => Exit::TryAgain,
            Verdict::Altinn(e) => Exit::of_failure(e.worth_retrying()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Verdict::Cancelled => "cancelled",
            Verdict::Purged(_) => "purged",
            Verdict::NothingToDo(_) => "nothing_to_do",
            Verdict::InFlight => "in_flight",
            Verdict::Published(_) => "refused",
            Verdict::Altinn(_) => "error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Verdict::Cancelled => "cancelled before it was sent".into(),
            Verdict::Purged(_) => "purged at Altinn before publication; cancelled".into(),
            Verdict::NothingToDo(state) => format!("already {state}"),
            Verdict::InFlight => "a worker is sending it right now; try again".into(),
            Verdict::Published(_) => "published: Altinn allows no purge after publication".into(),
            Verdict::Altinn(e) => format!("Altinn: {e}"),
        }
    }
}

pub async fn cancel(ctx: &Context, message_id: i64) -> anyhow::Result<Answer> {
    let never_sent = admin::cancel_never_sent(&ctx.pool, message_id).await?;
    let targets = admin::cancel_targets(&ctx.pool, message_id).await?;
    if targets.is_empty() {
        return Ok(Answer::not_found(message_id));
    }
    let mut results = Vec::new();
    for target in &targets {
        let result = if never_sent.contains(&target.id) { Verdict::Cancelled } else { cancel_one(ctx, target).await? };
        tracing::info!(delivery_id = target.id, message_id, outcome = result.name(), "cancel");
        results.push((target, result));
    }
    Ok(answer(message_id, &results))
}

async fn cancel_one(ctx: &Context, t: &CancelTarget) -> anyhow::Result<Verdict> {
    use DeliveryState as S;
    Ok(match (t.state, t.correspondence_id) {
        (S::Failed | S::Cancelled, _) => Verdict::NothingToDo(t.state),
        (S::Delivered, cid) => Verdict::Published(cid),
        (S::Sending, _) => Verdict::InFlight,
        // Altinn has it, unpublished as far as anyone knows: purge it (1013 if it was published).
        (S::AwaitingStatus | S::Unconfirmed, Some(cid)) => purge(ctx, t, cid).await?,
        (S::Pending | S::WaitingFiles, _) => maybe_at_altinn(ctx, t).await?,
        (state @ (S::AwaitingStatus | S::Unconfirmed), None) => {
            anyhow::bail!("delivery {} is {state} without a correspondence id", t.id)
        }
    })
}

/// A delivery claimed before and pending again: Altinn may have it (a lost answer).
async fn maybe_at_altinn(ctx: &Context, t: &CancelTarget) -> anyhow::Result<Verdict> {
    let found = match t.idempotency_key {
        Some(key) => match ctx.altinn.find_by_key(&t.resource_id, key).await {
            Ok(found) => found,
            Err(e) => return Ok(Verdict::Altinn(e)),
        },
        None => None,
    };
    match found {
        Some(cid) => purge(ctx, t, cid).await,
        None if admin::cancel_unsent(&ctx.pool, t.id, t.lease_no).await? => Ok(Verdict::Cancelled),
        None => Ok(Verdict::InFlight),
    }
}

async fn purge(ctx: &Context, t: &CancelTarget, cid: Uuid) -> anyhow::Result<Verdict> {
    match ctx.altinn.purge(cid).await {
        Ok(Purged::Now | Purged::Already) => {
            // False only when a worker holds it or it finished meanwhile: the worker then finds
            // it purged at Altinn and ends it cancelled itself.
            admin::mark_purged(&ctx.pool, t.id, cid).await?;
            Ok(Verdict::Purged(cid))
        }
        Ok(Purged::Published) => Ok(Verdict::Published(Some(cid))),
        Err(e) => Ok(Verdict::Altinn(e)),
    }
}

fn answer(message_id: i64, results: &[(&CancelTarget, Verdict)]) -> Answer {
    let exit = results.iter().map(|(_, r)| r.exit()).max().unwrap_or(Exit::Success);
    let cid = |t: &CancelTarget, r: &Verdict| match r {
        Verdict::Purged(c) | Verdict::Published(Some(c)) => Some(*c),
        _ => t.correspondence_id,
    };
    let listed: Vec<Value> = results
        .iter()
        .map(|(t, r)| {
            json!({ "delivery_id": t.id, "outcome": r.name(), "correspondence_id": cid(t, r), "detail": r.detail() })
        })
        .collect();
    let rows: Vec<Vec<String>> =
        results.iter().map(|(t, r)| vec![t.id.to_string(), r.name().into(), or_dash(cid(t, r)), r.detail()]).collect();
    let note = match exit {
        Exit::Success => None,
        _ => Some(format!("message {message_id}: not every delivery could be cancelled (see each delivery)")),
    };
    Answer {
        exit,
        table: table(&["DELIVERY", "OUTCOME", "CORRESPONDENCE", "DETAIL"], &rows),
        json: json!({ "message_id": message_id, "deliveries": listed }),
        note,
    }
}
