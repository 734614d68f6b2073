//! Which change of the fake Correspondence publishes which event, read off
//! the lazily computed history: each history entry is announced once, and the events that
//! are no status (notification order and results, the reminder, the due-date job, an
//! attachment's expiry) once each per record.
//!
//! Subjects: the recipient for `correspondencepublished`, `…neverread` and
//! `…neverconfirmed`; the sender (the resource owner's org URN) for all others.
//! `resourceinstance` is the correspondence id, the attachment id for `attachment*` and the
//! notification order id (source `…/notification`) for `notificationcreated`. Silent by
//! design: ReadyForPublish, Reserved, Fetched and the other never-emitted types, the
//! `Initialized` of a correspondence created Reserved, the `Failed` a malware verdict gives
//! a correspondence, an attachment's own `Initialized` when it came with a multipart
//! initialize, and every attachment failure but the malware verdict.
//!
//! Notifications, by `FakeConfig` knob: at publish `notificationcreated`, or
//! `correspondencenotificationcreationfailed` (`notification_order_fails`) and nothing more;
//! `notification_after_ms` later the main order's result from its recipients' outcomes
//! (`notification_outcome`, `notification_sms_outcome`): `…delivered` for ≥1 sent,
//! `…allfailed` when all failed, `…failed` when some did (with `…delivered` beside it). With
//! `reminder_after_ms` and `sendReminder`, a letter not Read (nor purged) that long after
//! publication gets a reminder order whose result comes `notification_after_ms` later:
//! `…reminderdelivered` for ≥1 sent, `…failed` for ≥1 failed. `attachmentexpired` comes
//! `attachment_expires_after_ms` after an attachment's publication (event only: its status
//! stays Published); the reminder shows in no view.

use chrono::{DateTime, Duration, Utc};

use super::super::attachment::{AttachmentRecord, AttachmentStatus, MALWARE_FAILURE};
use super::super::state::{Inner, NotificationOrder, Record, Status};
use super::super::views::{outcome_sent, SENDER_URN};
use super::super::FakeConfig;

/// An event the fake Correspondence is about to publish.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    /// The lower-case `AltinnEventType` name, without `no.altinn.correspondence.`.
    pub name: &'static str,
    /// The bare resource id.
    pub resource_id: String,
    pub instance: String,
    /// `correspondence`, `attachment` or `notification`.
    pub source: &'static str,
    pub subject: String,
    /// When the change happened (not when the event is published): the publishing order.
    pub at: DateTime<Utc>,
}

/// Everything to publish since the last look, in the order it happened: attachments whose
/// scans ended, correspondences touched or due (with those an attachment decided), each
/// advanced to `now`, then rescheduled for their next timed change.
pub(crate) fn collect(inner: &mut Inner, now: DateTime<Utc>, config: &FakeConfig) -> Vec<Pending> {
    inner.advance(now, config, std::iter::empty());
    let mut pending = Vec::new();
    let mut candidates = std::mem::take(&mut inner.touched);
    while inner.due.first().is_some_and(|(due, _)| *due <= now) {
        if let Some((_, i)) = inner.due.pop_first() {
            candidates.push(i);
        }
    }
    let Inner { attachments, by_id, .. } = &mut *inner;
    for attachment in attachments.iter_mut().filter(|a| a.announced < a.history.len() || expiry_due(a, now, config)) {
        pending.extend(attachment_events(attachment, now, config));
        candidates.extend(attachment.correspondence_ids.iter().filter_map(|id| by_id.get(id).copied()));
    }
    candidates.sort_unstable();
    candidates.dedup();
    inner.advance(now, config, candidates.iter().copied());
    // Only this advance touched anything since the take: the candidates themselves.
    inner.touched.clear();
    for &i in &candidates {
        let record = &mut inner.records[i];
        pending.extend(record_events(record, now, config));
        if let Some(due) = next_due(record, config) {
            inner.due.insert((due, i));
        }
    }
    pending.sort_by_key(|p| p.at);
    pending
}

/// When an attachment expires: `attachment_expires_after_ms` after its publication, if it
/// was published.
fn expiry_at(a: &AttachmentRecord, config: &FakeConfig) -> Option<DateTime<Utc>> {
    let ms = config.attachment_expires_after_ms?;
    let published = a.history.iter().find(|(s, _, _)| *s == AttachmentStatus::Published)?.2;
    Some(published + Duration::milliseconds(ms as i64))
}

fn expiry_due(a: &AttachmentRecord, now: DateTime<Utc>, config: &FakeConfig) -> bool {
    !a.expiry_announced && expiry_at(a, config).is_some_and(|at| now >= at)
}

/// ExpireAttachmentHandler: `attachmentexpired` for a published attachment not purged by
/// its expiry.
fn attachment_events(a: &mut AttachmentRecord, now: DateTime<Utc>, config: &FakeConfig) -> Vec<Pending> {
    let mut events: Vec<Pending> = a.history[a.announced..]
        .iter()
        .filter_map(|(status, text, at)| {
            let name = match status {
                AttachmentStatus::Initialized => "attachmentinitialized",
                AttachmentStatus::Published => "attachmentpublished",
                AttachmentStatus::Failed if text.starts_with(MALWARE_FAILURE) => "attachmentuploadfailed",
                _ => return None,
            };
            Some(Pending {
                name,
                resource_id: a.resource_id.clone(),
                instance: a.id.to_string(),
                source: "attachment",
                subject: SENDER_URN.to_string(),
                at: *at,
            })
        })
        .collect();
    a.announced = a.history.len();
    if let Some(expiry) = expiry_at(a, config).filter(|at| !a.expiry_announced && now >= *at) {
        a.expiry_announced = true;
        let purged = a.history.iter().any(|(s, _, at)| *s == AttachmentStatus::Purged && *at <= expiry);
        if !purged {
            events.push(Pending {
                name: "attachmentexpired",
                resource_id: a.resource_id.clone(),
                instance: a.id.to_string(),
                source: "attachment",
                subject: SENDER_URN.to_string(),
                at: expiry,
            });
        }
    }
    events
}

fn correspondence_event(record: &Record, name: &'static str, subject: &str, at: DateTime<Utc>) -> Pending {
    Pending {
        name,
        resource_id: record.public.resource_id.clone(),
        instance: record.public.id.to_string(),
        source: "correspondence",
        subject: subject.to_string(),
        at,
    }
}

/// The events of a correspondence not yet announced, as of `now`.
pub(crate) fn record_events(record: &mut Record, now: DateTime<Utc>, config: &FakeConfig) -> Vec<Pending> {
    let recipient = record.public.recipient.clone();
    let mut fresh = Vec::new();
    for entry in record.history.iter_mut().filter(|e| !e.announced) {
        entry.announced = true;
        fresh.push((entry.status, entry.at));
    }
    let mut out = Vec::new();
    for (status, at) in fresh {
        let (name, subject) = match status {
            Status::Initialized => ("correspondenceinitialized", SENDER_URN),
            Status::Published => ("correspondencepublished", recipient.as_str()),
            Status::Failed => ("correspondencepublishfailed", SENDER_URN),
            Status::Read => ("correspondencereceiverread", SENDER_URN),
            Status::Confirmed => ("correspondencereceiverconfirmed", SENDER_URN),
            Status::PurgedByAltinn | Status::PurgedByRecipient => ("correspondencepurged", SENDER_URN),
            _ => continue,
        };
        out.push(correspondence_event(record, name, subject, at));
    }
    notification_events(record, now, config, &mut out);
    due_date_events(record, now, &mut out);
    out
}

/// How the recipients of one order (one per medium it uses) ended: (any sent, any failed,
/// all failed). An outcome that is no final state is neither.
fn order_result(order: &NotificationOrder, config: &FakeConfig) -> (bool, bool, bool) {
    let outcomes: Vec<&str> = [(order.email, false), (order.sms, true)]
        .into_iter()
        .filter(|(used, _)| *used)
        .map(|(_, sms)| config.outcome_of(sms))
        .collect();
    let failed = |o: &&str| o.starts_with("Failed");
    let sent = outcomes.iter().any(|o| outcome_sent(o));
    let any_failed = outcomes.iter().any(failed);
    (sent, any_failed, !outcomes.is_empty() && outcomes.iter().all(failed))
}

/// When the reminder order goes out, if the letter gets one.
fn reminder_at(record: &Record, order: &NotificationOrder, config: &FakeConfig) -> Option<DateTime<Utc>> {
    let ms = config.reminder_after_ms.filter(|_| order.reminder && !order.creation_failed)?;
    Some(record.first(Status::Published)? + Duration::milliseconds(ms as i64))
}

/// The order is created at publish (SendNotificationOrderHandler), or its creation fails
/// then; its result comes `notification_after_ms` later, as the details view shows it
/// (CheckNotificationDeliveryHandler: delivered for ≥1 sent recipient, allfailed when every
/// one failed, failed when some but not all did, so one order may give failed and delivered).
/// The reminder order goes out `reminder_after_ms` after publication if the letter is not
/// Read (nor purged) by then; its result comes `notification_after_ms` later.
fn notification_events(record: &mut Record, now: DateTime<Utc>, config: &FakeConfig, out: &mut Vec<Pending>) {
    let (Some(order), Some(published)) = (record.notification.clone(), record.first(Status::Published)) else {
        return;
    };
    if order.creation_failed {
        if !record.marks.notification_created {
            record.marks.notification_created = true;
            out.push(correspondence_event(record, "correspondencenotificationcreationfailed", SENDER_URN, published));
            // Nothing more will come: no result, no reminder.
            record.marks.notification_result = true;
            record.marks.reminder_result = true;
        }
        return;
    }
    if !record.marks.notification_created {
        record.marks.notification_created = true;
        out.push(Pending {
            name: "notificationcreated",
            resource_id: record.public.resource_id.clone(),
            instance: order.order_id.to_string(),
            source: "notification",
            subject: SENDER_URN.to_string(),
            at: published,
        });
    }
    let done = published + Duration::milliseconds(config.notification_after_ms as i64);
    if !record.marks.notification_result && now >= done {
        record.marks.notification_result = true;
        let (sent, failed, all_failed) = order_result(&order, config);
        if all_failed {
            out.push(correspondence_event(record, "correspondencenotificationallfailed", SENDER_URN, done));
        } else if failed {
            out.push(correspondence_event(record, "correspondencenotificationfailed", SENDER_URN, done));
        }
        if sent {
            out.push(correspondence_event(record, "correspondencenotificationdelivered", SENDER_URN, done));
        }
    }
    let Some(reminder) = reminder_at(record, &order, config) else {
        return;
    };
    let done = reminder + Duration::milliseconds(config.notification_after_ms as i64);
    if record.marks.reminder_result || now < done {
        return;
    }
    record.marks.reminder_result = true;
    let by_reminder = |status| record.first(status).is_some_and(|t| t <= reminder);
    if by_reminder(Status::Read) || by_reminder(Status::PurgedByAltinn) || by_reminder(Status::PurgedByRecipient) {
        return;
    }
    let (sent, failed, _) = order_result(&order, config);
    if failed {
        out.push(correspondence_event(record, "correspondencenotificationfailed", SENDER_URN, done));
    }
    if sent {
        out.push(correspondence_event(record, "correspondencenotificationreminderdelivered", SENDER_URN, done));
    }
}

/// CorrespondenceDueDateHandler at `dueDateTime`: nothing unless published and not failed
/// by then; never read and, if confirmation was needed, never confirmed by then.
fn due_date_events(record: &mut Record, now: DateTime<Utc>, out: &mut Vec<Pending>) {
    let Some(due) = record.due.filter(|due| !record.marks.due_date && now >= *due) else {
        return;
    };
    record.marks.due_date = true;
    let by_due = |status| record.first(status).is_some_and(|t| t <= due);
    if !by_due(Status::Published) || by_due(Status::Failed) {
        return;
    }
    let recipient = record.public.recipient.clone();
    if !by_due(Status::Read) {
        out.push(correspondence_event(record, "correspondencereceiverneverread", &recipient, due));
    }
    if record.confirmation_needed && !by_due(Status::Confirmed) {
        out.push(correspondence_event(record, "correspondencereceiverneverconfirmed", &recipient, due));
    }
}

/// The earliest time something timed may happen to `record` (publish, read, confirm, the
/// notification result, the due date); None when nothing will without someone acting.
/// Late would delay events; early costs a look that finds nothing.
pub(crate) fn next_due(record: &Record, config: &FakeConfig) -> Option<DateTime<Utc>> {
    let after = |ms: u64| record.public.created + Duration::milliseconds(ms as i64);
    let mut times = Vec::new();
    let live = !record.is_purged();
    match record.first(Status::Published) {
        None if live && matches!(record.highest().status, Status::ReadyForPublish | Status::Reserved) => {
            times.push(record.publish_at(config));
        }
        None => {}
        Some(published) => {
            if let (true, Some(ms), None) = (live, config.read_after_ms, record.first(Status::Read)) {
                times.push(after(ms).max(published));
            }
            // As `Record::advance` computes them, so a due time never lies in the past of a
            // record that has nothing to do (which would make the clock look at it every tick).
            let confirming = live && record.confirmation_needed && record.first(Status::Confirmed).is_none();
            if let (true, Some(ms)) = (confirming, config.confirm_after_ms) {
                times.push(after(ms).max(record.first(Status::Read).unwrap_or(published)));
            }
            let result_after = Duration::milliseconds(config.notification_after_ms as i64);
            if record.notification.is_some() && !record.marks.notification_result {
                times.push(published + result_after);
            }
            let reminder = record.notification.as_ref().and_then(|o| reminder_at(record, o, config));
            if let (Some(reminder), false) = (reminder, record.marks.reminder_result) {
                times.push(reminder + result_after);
            }
        }
    }
    if let Some(due) = record.due.filter(|_| !record.marks.due_date) {
        times.push(due);
    }
    times.into_iter().min()
}
