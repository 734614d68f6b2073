//! Reading one correspondence's status and deciding what it means for the delivery.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::Context;
use crate::altinn::wire::{status_value, Details, Notification, Overview, RecipientStatus};
use crate::altinn::ApiError;
use crate::codes::{Code, CorrespondenceEnd};
use crate::config::FollowUntil;
use crate::outbox::{ClaimedPoll, DeliveryState, NotificationOutcome, Outcome, PollUpdate};
use crate::worker::policy::{after, StatusPolicy};

/// One status read: the overview, which depends on nothing but Altinn's own database; then
/// the details only when the overview says the letter is published and something only the
/// details have is still wanted (the notification's outcome, the confirmation time). A
/// failed read never fails the delivery: Altinn has the letter.
pub async fn poll_one(ctx: &Context, job: &ClaimedPoll) -> Outcome {
    let now = Utc::now();
    let policy = &ctx.settings.status;
    let update = match ctx.altinn.overview(job.correspondence_id).await {
        Ok(overview) => assess_overview(&overview, job, policy, now),
        // The overview hides a purged correspondence (404/1001); the details still show
        // whether it was published first.
        Err(e) if e.is_not_found() => {
            return match ctx.altinn.details(job.correspondence_id).await {
                Ok(details) => Outcome::Polled(Box::new(purged(assess(&details, job, policy, now), &e))),
                Err(again) if again.is_not_found() => Outcome::Polled(Box::new(purged(vanished(job), &e))),
                Err(again) => read_failed(job, policy, again, now),
            };
        }
        Err(e) => return read_failed(job, policy, e, now),
    };
    if !wants_details(&update, job, policy) {
        return Outcome::Polled(Box::new(update));
    }
    match ctx.altinn.details(job.correspondence_id).await {
        Ok(details) => Outcome::Polled(Box::new(assess(&details, job, policy, now))),
        // What the overview said stands; the details are asked for again at the next read.
        Err(e) => {
            let mut update = update;
            update.error =
                Some((e.code, format!("reading the details (notification, confirmation) failed: {}", e.message)));
            Outcome::Polled(Box::new(update))
        }
    }
}

/// The correspondence was purged (by someone other than this outbox's cancel, which records
/// its own): following ends with Altinn's code; what was learnt first stands (a letter
/// published before it was purged stays delivered).
fn purged(mut update: PollUpdate, e: &ApiError) -> PollUpdate {
    if matches!(update.state, DeliveryState::AwaitingStatus | DeliveryState::Unconfirmed) {
        update.state = DeliveryState::Cancelled;
    }
    update.next_poll_at = None;
    update.error =
        Some((e.code.clone(), "Altinn no longer has the correspondence (purged); no longer followed".into()));
    update
}

/// Neither overview nor details know the correspondence any more.
fn vanished(job: &ClaimedPoll) -> PollUpdate {
    PollUpdate::new(unchanged(job.state))
}

/// Details are read only for a published letter, and only for what the overview lacks.
fn wants_details(u: &PollUpdate, job: &ClaimedPoll, policy: &StatusPolicy) -> bool {
    let notification_open = policy.follow_notifications && !notification_outcome(&[], job.notification).2;
    let confirmation_open = policy.follow_until == FollowUntil::Confirmed
        && job.is_confirmation_needed
        && u.confirmed_at.or(job.confirmed_at).is_none();
    u.state == DeliveryState::Delivered && u.next_poll_at.is_some() && (notification_open || confirmation_open)
}

/// A status read that failed: the read failed, not the delivery. Altinn accepted the
/// letter, so whatever the error it is read again on the growing schedule; once the follow
/// period is over, following ends: a delivered letter stays delivered, any other becomes
/// `unconfirmed` (Altinn has it, publication not confirmed), with the last error.
pub fn read_failed(job: &ClaimedPoll, policy: &StatusPolicy, e: ApiError, now: DateTime<Utc>) -> Outcome {
    let error = Some((e.code, format!("reading the status failed: {}", e.message)));
    let update = if too_old(job, policy, now) {
        let state =
            if job.state == DeliveryState::Delivered { DeliveryState::Delivered } else { DeliveryState::Unconfirmed };
        PollUpdate { error, ..PollUpdate::new(state) }
    } else {
        let wait = policy.interval(job.polls + 1).max(e.retry_after.unwrap_or_default());
        PollUpdate { next_poll_at: Some(after(now, wait)), error, ..PollUpdate::new(unchanged(job.state)) }
    };
    Outcome::Polled(Box::new(update))
}

/// What one read learned, from the overview or the details.
struct Reading<'a> {
    status: &'a str,
    status_text: Option<&'a String>,
    status_changed: Option<DateTime<Utc>>,
    published: Option<DateTime<Utc>>,
    read: Option<DateTime<Utc>>,
    confirmed: Option<DateTime<Utc>>,
    /// Empty when not read (the overview has none): the row's outcome stands.
    notifications: &'a [Notification],
}

/// What an overview answer means: pure, so every rule is tested without a server.
pub fn assess_overview(o: &Overview, job: &ClaimedPoll, policy: &StatusPolicy, now: DateTime<Utc>) -> PollUpdate {
    let reading = Reading {
        status: &o.status,
        status_text: o.status_text.as_ref(),
        status_changed: o.status_changed,
        published: o.published,
        read: o.read,
        confirmed: None,
        notifications: &[],
    };
    judge(&reading, job, policy, now)
}

/// What a details answer means: pure, so every rule is tested without a server.
pub fn assess(d: &Details, job: &ClaimedPoll, policy: &StatusPolicy, now: DateTime<Utc>) -> PollUpdate {
    let first = |name: &str| {
        d.status_history.iter().filter(|h| h.status.eq_ignore_ascii_case(name)).filter_map(|h| h.status_changed).min()
    };
    let reading = Reading {
        status: &d.status,
        status_text: d.status_text.as_ref(),
        status_changed: d.status_changed,
        published: d.published.or_else(|| first("Published")),
        read: first("Read"),
        confirmed: first("Confirmed"),
        notifications: &d.notifications,
    };
    judge(&reading, job, policy, now)
}

fn judge(r: &Reading, job: &ClaimedPoll, policy: &StatusPolicy, now: DateTime<Utc>) -> PollUpdate {
    let published_at = r.published.or(job.published_at);
    let read_at = r.read.or(job.read_at);
    let confirmed_at = r.confirmed.or(job.confirmed_at);
    let (notification, notification_detail, notification_final) =
        notification_outcome(r.notifications, job.notification);
    let status = status_value(r.status);
    let mut update = PollUpdate {
        altinn_status: Some(r.status.to_string()),
        altinn_status_at: r.status_changed,
        published_at,
        read_at,
        confirmed_at,
        notification,
        notification_detail,
        ..PollUpdate::new(DeliveryState::AwaitingStatus)
    };
    // The top-level status is the highest reached, so a Reserved or Failed stays visible even
    // after a later Published row: `published` decides delivery, these only without it.
    let ended = |end: CorrespondenceEnd| status == status_value(end.as_str());
    let failed = |end: CorrespondenceEnd, default: &str| {
        Some((end.code(), r.status_text.filter(|t| !t.is_empty()).cloned().unwrap_or_else(|| default.to_string())))
    };
    if published_at.is_some() {
        update.state = DeliveryState::Delivered;
    } else if ended(CorrespondenceEnd::Failed) {
        update.state = DeliveryState::Failed;
        update.error = failed(CorrespondenceEnd::Failed, "Altinn could not publish the correspondence");
    } else if ended(CorrespondenceEnd::Reserved) {
        update.state = DeliveryState::Failed;
        update.error = failed(CorrespondenceEnd::Reserved, "the recipient has reserved against digital mail (KRR)");
    } else if ended(CorrespondenceEnd::PurgedByAltinn) {
        update.state = DeliveryState::Cancelled;
        update.error = failed(CorrespondenceEnd::PurgedByAltinn, "purged before publication");
    }
    update.next_poll_at = next_read(&update, job, policy, now, notification_final);
    if update.state == DeliveryState::AwaitingStatus && update.next_poll_at.is_none() {
        // Sent but never published within the follow period: Altinn has it, publication
        // not confirmed; a state of its own, where an operator finds it.
        let hours = policy.max_age.as_secs() / 3600;
        update.state = DeliveryState::Unconfirmed;
        update.error =
            Some((Code::StatusTimeout.into(), format!("not published {hours} h after sending; no longer followed")));
    }
    update
}

fn too_old(job: &ClaimedPoll, policy: &StatusPolicy, now: DateTime<Utc>) -> bool {
    now.signed_duration_since(job.sent_at).to_std().unwrap_or_default() > policy.max_age
}

/// None when there is nothing more to learn (or the correspondence is too old to follow).
fn next_read(
    u: &PollUpdate,
    job: &ClaimedPoll,
    policy: &StatusPolicy,
    now: DateTime<Utc>,
    notification_final: bool,
) -> Option<DateTime<Utc>> {
    let goal_reached = match policy.follow_until {
        FollowUntil::Published => true,
        FollowUntil::Read => u.read_at.is_some() || u.confirmed_at.is_some(),
        // A letter that needs no confirmation never gets one: reading it is the end.
        FollowUntil::Confirmed => u.confirmed_at.is_some() || (!job.is_confirmation_needed && u.read_at.is_some()),
    };
    let done = match u.state {
        DeliveryState::AwaitingStatus => false,
        DeliveryState::Delivered => goal_reached && (notification_final || !policy.follow_notifications),
        _ => true,
    };
    (!done && !too_old(job, policy, now)).then(|| after(now, policy.routine_interval(job.polls + 1)))
}

/// Summarises notifications: `(outcome, detail, final)`. Addresses are left out of the detail.
/// The outcomes are [`NotificationOutcome`]'s; all but `pending` and an unfinished `sent`
/// are final.
fn notification_outcome(
    ns: &[Notification],
    before: Option<NotificationOutcome>,
) -> (Option<NotificationOutcome>, Option<serde_json::Value>, bool) {
    use NotificationOutcome as N;
    let main: Vec<&Notification> = ns.iter().filter(|n| !n.is_reminder).collect();
    if main.is_empty() {
        let outcome = before.unwrap_or(N::None);
        return (None, None, !matches!(outcome, N::Pending | N::Sent));
    }
    let statuses: Vec<&RecipientStatus> = main.iter().flat_map(|n| recipients(n)).collect();
    let names: Vec<&str> = statuses.iter().filter_map(|s| s.send_status.as_ref().map(|x| x.status.as_str())).collect();
    // Notifications v2 names order statuses `Order_Completed`; legacy v1 orders (and those
    // migrated from Altinn 2) say `Completed`.
    let order_is = |status: &str, wanted: &str| status.strip_prefix("Order_").unwrap_or(status) == wanted;
    let order =
        |wanted: &str| main.iter().any(|n| n.processing_status.as_ref().is_some_and(|p| order_is(&p.status, wanted)));
    let completed = order("Completed");
    // `_Failed_TTL` ends in `_Failed...` like a failure, but only says no receipt came back.
    let unconfirmed = |s: &&str| s.ends_with("_Failed_TTL");
    let (outcome, is_final) = if names.iter().any(|s| s.ends_with("_Delivered")) {
        (N::Delivered, true)
    } else if statuses.iter().any(|s| s.succeeded) {
        (N::Sent, completed)
    } else if !names.is_empty() && names.iter().all(|s| s.contains("_Failed")) {
        (if names.iter().any(unconfirmed) { N::Unconfirmed } else { N::Failed }, true)
    } else if order("SendConditionNotMet") {
        (N::NotNeeded, true)
    } else if order("Cancelled") {
        (N::Cancelled, true)
    } else if completed && statuses.is_empty() {
        (N::NoRecipients, true)
    } else {
        (N::Pending, false)
    };
    let detail = ns
        .iter()
        .map(|n| {
            json!({
                "channel": n.notification_channel,
                "isReminder": n.is_reminder,
                "order": n.processing_status.as_ref().map(|p| &p.status),
                "sendStatus": recipients(n).iter().filter_map(|r| r.send_status.as_ref().map(|s| &s.status)).collect::<Vec<_>>(),
            })
        })
        .collect();
    (Some(outcome), Some(serde_json::Value::Array(detail)), is_final)
}

fn recipients(n: &Notification) -> Vec<&RecipientStatus> {
    let Some(d) = &n.notification_status_details else { return Vec::new() };
    let lists: Vec<&RecipientStatus> = d.emails.iter().flatten().chain(d.smses.iter().flatten()).collect();
    if lists.is_empty() {
        d.email.iter().chain(d.sms.iter()).collect()
    } else {
        lists
    }
}

/// What a status read that learnt nothing leaves a delivery in: a delivered letter stays
/// delivered, any other awaits its status.
fn unchanged(state: DeliveryState) -> DeliveryState {
    match state {
        DeliveryState::Delivered => DeliveryState::Delivered,
        _ => DeliveryState::AwaitingStatus,
    }
}

#[cfg(test)]
#[path = "poll_tests.rs"]
mod tests;
