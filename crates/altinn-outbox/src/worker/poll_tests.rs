use std::time::Duration;

use chrono::TimeZone;
use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::outbox::{DeliveryState as S, NotificationOutcome as N};
use crate::worker::policy::Backoff;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
}

/// A time `minutes` before `now`, for Altinn's timestamps.
fn ago(minutes: i64) -> DateTime<Utc> {
    now() - chrono::Duration::minutes(minutes)
}

/// Follows to publication only, without notifications: each test turns on what it tests.
fn policy() -> StatusPolicy {
    StatusPolicy {
        schedule: Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(3600),
            multiplier: 2.0,
            jitter: 0.0,
        },
        follow_until: FollowUntil::Published,
        follow_notifications: false,
        max_age: Duration::from_secs(14 * 24 * 3600),
        safety_interval: None,
    }
}

fn following(follow_until: FollowUntil, follow_notifications: bool) -> StatusPolicy {
    StatusPolicy { follow_until, follow_notifications, ..policy() }
}

/// A delivery sent an hour ago and read twice since.
fn job() -> ClaimedPoll {
    ClaimedPoll {
        delivery_id: 7,
        message_id: 3,
        lease_no: 1,
        correspondence_id: Uuid::from_u128(42),
        state: S::AwaitingStatus,
        polls: 2,
        sent_at: ago(60),
        altinn_status: None,
        published_at: None,
        read_at: None,
        confirmed_at: None,
        notification: None,
        is_confirmation_needed: false,
    }
}

/// When the next read is due after this one, by the policy's own schedule.
fn next_after(job: &ClaimedPoll, policy: &StatusPolicy) -> Option<DateTime<Utc>> {
    Some(now() + chrono::Duration::from_std(policy.interval(job.polls + 1)).unwrap())
}

fn details(v: Value) -> Details {
    serde_json::from_value(v).expect("details JSON in Altinn's shape")
}

fn assess_now(d: &Details, job: &ClaimedPoll, policy: &StatusPolicy) -> PollUpdate {
    assess(d, job, policy, now())
}

/// A published correspondence, with history rows as Altinn orders them (by time).
fn published_with(history: Value, notifications: Value) -> Details {
    details(json!({
        "status": "Published",
        "statusText": "",
        "statusChanged": ago(30),
        "published": ago(30),
        "statusHistory": history,
        "notifications": notifications,
    }))
}

fn history(rows: &[(&str, i64)]) -> Value {
    rows.iter().map(|(s, m)| json!({"status": s, "statusText": "", "statusChanged": ago(*m)})).collect()
}

/// One main e-mail notification as the details list it, recipient addresses included so
/// tests can check they are dropped.
fn email(order: &str, send: &str) -> Value {
    json!({
        "id": "n1",
        "creator": "ttd",
        "created": ago(30),
        "isReminder": false,
        "notificationChannel": "Email",
        "processingStatus": {"status": order, "description": null, "lastUpdate": ago(20)},
        "notificationStatusDetails": {
            "email": entry(send, "kari.nordmann@example.no", None),
            "emails": [entry(send, "kari.nordmann@example.no", None)],
        },
    })
}

fn sms(order: &str, send: &str) -> Value {
    json!({
        "id": "n2",
        "isReminder": false,
        "notificationChannel": "Sms",
        "processingStatus": {"status": order, "lastUpdate": ago(20)},
        "notificationStatusDetails": {"sms": entry(send, "", Some("+4799999999"))},
    })
}

fn entry(send: &str, email: &str, mobile: Option<&str>) -> Value {
    let succeeded = ["Email_Succeeded", "Email_Delivered", "SMS_Accepted", "SMS_Delivered"].contains(&send);
    json!({
        "id": Uuid::from_u128(9),
        "succeeded": succeeded,
        "recipient": {
            "emailAddress": email,
            "mobileNumber": mobile,
            "nationalIdentityNumber": "13896396174",
            "organizationNumber": "991825827",
        },
        "sendStatus": {"status": send, "description": "sent to kari.nordmann@example.no", "lastUpdate": ago(10)},
    })
}

#[test]
fn published_means_delivered() {
    let d = published_with(history(&[("Initialized", 40), ("Published", 30)]), json!([]));
    let u = assess_now(&d, &job(), &policy());
    assert_eq!(u.state, S::Delivered);
    assert_eq!(u.published_at, Some(ago(30)));
    assert_eq!(u.altinn_status.as_deref(), Some("Published"));
    assert_eq!(u.altinn_status_at, Some(ago(30)));
    assert_eq!(u.error, None);
    // Following to publication only: nothing more to learn.
    assert_eq!(u.next_poll_at, None);
}

#[test]
fn published_decides_even_when_a_higher_status_shows() {
    // Altinn shows the highest status reached, not the latest, so Reserved outranks a later
    // Published row.
    let d = details(json!({
        "status": "Reserved",
        "statusText": "Recipient reserved in KRR",
        "statusChanged": ago(50),
        "published": ago(30),
        "statusHistory": history(&[("Initialized", 55), ("Reserved", 50), ("Published", 30)]),
    }));
    let u = assess_now(&d, &job(), &policy());
    assert_eq!(u.state, S::Delivered);
    assert_eq!(u.published_at, Some(ago(30)));
    assert_eq!(u.error, None);
    assert_eq!(u.altinn_status.as_deref(), Some("Reserved"));
}

#[test]
fn read_and_confirmed_times_come_from_the_first_history_row() {
    let d = details(json!({
        "status": "Read",
        "statusChanged": ago(10),
        "published": ago(30),
        "statusHistory": history(&[("Published", 30), ("Fetched", 20), ("Read", 15), ("Read", 10)]),
    }));
    let u = assess_now(&d, &job(), &policy());
    assert_eq!(u.state, S::Delivered);
    assert_eq!(u.read_at, Some(ago(15)));
    assert_eq!(u.confirmed_at, None);

    let d = published_with(history(&[("Published", 30), ("Read", 20), ("Confirmed", 5)]), json!([]));
    assert_eq!(assess_now(&d, &job(), &policy()).confirmed_at, Some(ago(5)));
}

#[test]
fn times_already_on_the_row_are_kept_when_history_lacks_them() {
    let d = details(json!({"status": "Read", "statusHistory": []}));
    let j = ClaimedPoll { published_at: Some(ago(50)), read_at: Some(ago(40)), ..job() };
    let u = assess_now(&d, &j, &policy());
    assert_eq!((u.state, u.published_at, u.read_at), (S::Delivered, Some(ago(50)), Some(ago(40))));
}

#[test]
fn failed_keeps_altinns_reason() {
    let d = details(json!({
        "status": "Failed",
        "statusText": "Recipient not found in Altinn Register",
        "statusChanged": ago(5),
        "statusHistory": history(&[("Initialized", 10), ("ReadyForPublish", 8), ("Failed", 5)]),
    }));
    let u = assess_now(&d, &job(), &policy());
    assert_eq!(u.state, S::Failed);
    assert_eq!(u.error, Some(("altinn:Failed".to_string(), "Recipient not found in Altinn Register".to_string())));
    assert_eq!(u.next_poll_at, None);
}

#[test]
fn failed_without_a_reason_gets_a_readable_message() {
    let d = details(json!({"status": "Failed", "statusText": ""}));
    let (code, message) = assess_now(&d, &job(), &policy()).error.unwrap();
    assert_eq!(code, "altinn:Failed");
    assert!(!message.is_empty());
}

#[test]
fn reserved_without_publication_fails() {
    let d = details(json!({"status": "Reserved", "statusText": null, "statusHistory": history(&[("Reserved", 5)])}));
    let u = assess_now(&d, &job(), &policy());
    assert_eq!(u.state, S::Failed);
    assert_eq!(u.error.as_ref().map(|e| e.0.as_str()), Some("altinn:Reserved"));
    assert!(u.error.unwrap().1.contains("reserved"));
    assert_eq!(u.next_poll_at, None);
}

#[test]
fn purged_by_altinn_is_cancelled() {
    let d = details(json!({"status": "PurgedByAltinn", "statusChanged": ago(5)}));
    let u = assess_now(&d, &job(), &policy());
    assert_eq!(u.state, S::Cancelled);
    assert_eq!(u.error.as_ref().map(|e| e.0.as_str()), Some("altinn:PurgedByAltinn"));
    assert_eq!(u.next_poll_at, None);
}

#[test]
fn not_yet_published_is_read_again_on_schedule() {
    for status in ["Initialized", "ReadyForPublish"] {
        let d = details(json!({"status": status, "statusHistory": history(&[(status, 1)])}));
        let u = assess_now(&d, &job(), &policy());
        assert_eq!(u.state, S::AwaitingStatus, "{status}");
        assert_eq!(u.error, None, "{status}");
        let next = u.next_poll_at.expect("keeps reading");
        assert!(next > now(), "{status}");
        assert_eq!(Some(next), next_after(&job(), &policy()), "{status}");
    }
    // The schedule grows with the number of reads.
    let later = ClaimedPoll { polls: 5, ..job() };
    let d = details(json!({"status": "Initialized"}));
    assert!(assess_now(&d, &later, &policy()).next_poll_at > assess_now(&d, &job(), &policy()).next_poll_at);
}

#[test]
fn following_until_read_keeps_reading_after_delivery() {
    let p = following(FollowUntil::Read, false);
    let unread = published_with(history(&[("Published", 30)]), json!([]));
    let u = assess_now(&unread, &job(), &p);
    assert_eq!(u.state, S::Delivered);
    assert_eq!(u.next_poll_at, next_after(&job(), &p));

    let read = published_with(history(&[("Published", 30), ("Read", 10)]), json!([]));
    assert_eq!(assess_now(&read, &job(), &p).next_poll_at, None);
}

#[test]
fn following_until_confirmed_stops_at_read_when_no_confirmation_is_needed() {
    let p = following(FollowUntil::Confirmed, false);
    let read = published_with(history(&[("Published", 30), ("Read", 10)]), json!([]));
    let confirmed = published_with(history(&[("Published", 30), ("Read", 10), ("Confirmed", 5)]), json!([]));
    let needs = ClaimedPoll { is_confirmation_needed: true, ..job() };

    assert_eq!(assess_now(&read, &needs, &p).next_poll_at, next_after(&needs, &p));
    assert_eq!(assess_now(&confirmed, &needs, &p).next_poll_at, None);
    // Without a confirmation asked for, none will come: reading is the end.
    assert_eq!(assess_now(&read, &job(), &p).next_poll_at, None);
    let unread = published_with(history(&[("Published", 30)]), json!([]));
    assert_eq!(assess_now(&unread, &job(), &p).next_poll_at, next_after(&job(), &p));
}

#[test]
fn pending_notifications_keep_the_read_going() {
    let p = following(FollowUntil::Published, true);
    for (order, send) in [("Order_Registered", "Email_New"), ("Order_Processing", "Email_Sending")] {
        let d = published_with(history(&[("Published", 30)]), json!([email(order, send)]));
        let u = assess_now(&d, &job(), &p);
        assert_eq!(u.state, S::Delivered);
        assert_eq!(u.notification, Some(N::Pending), "{send}");
        assert_eq!(u.next_poll_at, next_after(&job(), &p), "{send}");
    }
    // Not following notifications: publication alone ends the reads.
    let d = published_with(history(&[("Published", 30)]), json!([email("Order_Processing", "Email_New")]));
    assert_eq!(assess_now(&d, &job(), &policy()).next_poll_at, None);
}

#[test]
fn an_order_not_yet_listed_stays_pending_when_it_was_pending() {
    // Altinn lists a notification only once its order exists: an empty list says nothing new.
    let p = following(FollowUntil::Published, true);
    let d = published_with(history(&[("Published", 30)]), json!([]));
    let pending = ClaimedPoll { notification: Some(N::Pending), ..job() };
    assert_eq!(assess_now(&d, &pending, &p).next_poll_at, next_after(&pending, &p));
    assert_eq!(assess_now(&d, &job(), &p).next_poll_at, None);
}

#[test]
fn notification_outcomes_end_the_reads() {
    let p = following(FollowUntil::Published, true);
    let cases = [
        (email("Order_Completed", "Email_Delivered"), N::Delivered),
        (sms("Order_Completed", "SMS_Delivered"), N::Delivered),
        (email("Order_Completed", "Email_Failed"), N::Failed),
        (email("Order_Completed", "Email_Failed_Bounced"), N::Failed),
        (email("Order_Completed", "Email_Failed_RecipientReserved"), N::Failed),
        (sms("Order_Completed", "SMS_Failed_InvalidRecipient"), N::Failed),
        // A time to live that ran out leaves delivery unknown, not failed.
        (sms("Order_Completed", "SMS_Failed_TTL"), N::Unconfirmed),
        (email("Order_Completed", "Email_Failed_TTL"), N::Unconfirmed),
        (json!({"isReminder": false, "processingStatus": {"status": "Order_SendConditionNotMet"}}), N::NotNeeded),
        (json!({"isReminder": false, "processingStatus": {"status": "Order_Cancelled"}}), N::Cancelled),
        (email("Order_Completed", "Email_Succeeded"), N::Sent),
        // Legacy order statuses, without the `Order_` prefix, mean the same.
        (email("Completed", "Email_Succeeded"), N::Sent),
        (email("Completed", "Email_Failed_Bounced"), N::Failed),
        (json!({"isReminder": false, "processingStatus": {"status": "SendConditionNotMet"}}), N::NotNeeded),
        (json!({"isReminder": false, "processingStatus": {"status": "Cancelled"}}), N::Cancelled),
        // An order that completed with nobody to notify is over.
        (json!({"isReminder": false, "processingStatus": {"status": "Order_Completed"}}), N::NoRecipients),
        (json!({"isReminder": false, "processingStatus": {"status": "Completed"}}), N::NoRecipients),
    ];
    for (notification, outcome) in cases {
        let d = published_with(history(&[("Published", 30)]), json!([notification]));
        let u = assess_now(&d, &job(), &p);
        assert_eq!(u.notification, Some(outcome), "{notification}");
        assert_eq!(u.next_poll_at, None, "{notification}");
    }
    // The other side of each rule: an order still running keeps being read, whichever form
    // its status has, and a failure beside an unconfirmed send is not the whole story.
    for (notification, outcome) in [
        (email("Order_Processing", "Email_Succeeded"), N::Sent),
        (email("Processing", "Email_Succeeded"), N::Sent),
        (email("Registered", "Email_New"), N::Pending),
        (json!({"isReminder": false, "processingStatus": {"status": "Order_Registered"}}), N::Pending),
        (json!({"isReminder": false, "processingStatus": {"status": "Processing"}}), N::Pending),
    ] {
        let d = published_with(history(&[("Published", 30)]), json!([notification]));
        let u = assess_now(&d, &job(), &p);
        assert_eq!(u.notification, Some(outcome), "{notification}");
        assert_eq!(u.next_poll_at, next_after(&job(), &p), "{notification}");
    }
    let mixed = json!([email("Order_Completed", "Email_Failed_Bounced"), sms("Order_Completed", "SMS_Failed_TTL")]);
    let u = assess_now(&published_with(history(&[("Published", 30)]), mixed), &job(), &p);
    assert_eq!(u.notification, Some(N::Unconfirmed));
    // An outcome read before stays final when the list is empty on a later read.
    for before in [N::Unconfirmed, N::NoRecipients] {
        let d = published_with(history(&[("Published", 30)]), json!([]));
        let earlier = ClaimedPoll { notification: Some(before), ..job() };
        assert_eq!(assess_now(&d, &earlier, &p).next_poll_at, None, "{before}");
    }
}

#[test]
fn a_sent_email_is_followed_until_its_order_completes() {
    let p = following(FollowUntil::Published, true);
    let d = published_with(history(&[("Published", 30)]), json!([email("Order_Processing", "Email_Succeeded")]));
    let u = assess_now(&d, &job(), &p);
    assert_eq!(u.notification, Some(N::Sent));
    assert_eq!(u.next_poll_at, next_after(&job(), &p));
}

#[test]
fn reminders_do_not_decide_the_outcome() {
    let p = following(FollowUntil::Published, true);
    let mut reminder = email("Order_Completed", "Email_Failed_Bounced");
    reminder["isReminder"] = json!(true);
    let d = published_with(history(&[("Published", 30)]), json!([email("Order_Processing", "Email_New"), reminder]));
    let u = assess_now(&d, &job(), &p);
    assert_eq!(u.notification, Some(N::Pending));
    // The reminder is still recorded in the detail.
    assert_eq!(u.notification_detail.unwrap().as_array().unwrap().len(), 2);
}

#[test]
fn notification_detail_leaves_out_addresses_and_numbers() {
    let d = published_with(
        history(&[("Published", 30)]),
        json!([email("Order_Completed", "Email_Delivered"), sms("Order_Completed", "SMS_Failed")]),
    );
    let u = assess_now(&d, &job(), &following(FollowUntil::Published, true));
    let detail = u.notification_detail.expect("detail is recorded");
    let text = detail.to_string();
    for personal in ["kari.nordmann", "example.no", "+4799999999", "99999999", "13896396174", "991825827"] {
        assert!(!text.contains(personal), "{personal} leaked into {text}");
    }
    // What is kept is what the operator needs: channel, order and send status.
    assert_eq!(detail[0]["channel"], "Email");
    assert_eq!(detail[0]["order"], "Order_Completed");
    // `email` repeats the latest entry of `emails`: each recipient is counted once.
    assert_eq!(detail[0]["sendStatus"], json!(["Email_Delivered"]));
    assert_eq!(detail[1]["sendStatus"], json!(["SMS_Failed"]));
}

#[test]
fn reads_stop_past_the_maximum_age() {
    let p = policy();
    let d = details(json!({"status": "Initialized"}));
    let max_age = chrono::Duration::from_std(p.max_age).unwrap();
    let at_limit = ClaimedPoll { sent_at: now() - max_age, ..job() };
    assert_eq!(assess_now(&d, &at_limit, &p).next_poll_at, next_after(&at_limit, &p));
    let too_old = ClaimedPoll { sent_at: now() - max_age - chrono::Duration::seconds(1), ..job() };
    let u = assess_now(&d, &too_old, &p);
    assert_eq!(u.next_poll_at, None);
    assert_eq!(u.state, S::Unconfirmed, "Altinn has it; publication not confirmed");
    assert_eq!(u.error.as_ref().map(|(code, _)| code.as_str()), Some("status_timeout"), "the row says why");

    // Also after delivery, when the goal is still ahead.
    let unread = published_with(history(&[("Published", 30)]), json!([]));
    assert_eq!(assess_now(&unread, &too_old, &following(FollowUntil::Read, true)).next_poll_at, None);
}

#[test]
fn unknown_statuses_do_not_panic() {
    // Altinn adds statuses over time (wire.rs reads them as strings).
    let d = details(json!({
        "status": "SomethingNew",
        "statusHistory": history(&[("Initialized", 10), ("SomethingNew", 5)]),
        "notifications": [email("Order_Whatever", "Email_SomethingNew")],
    }));
    let u = assess_now(&d, &job(), &following(FollowUntil::Confirmed, true));
    assert_eq!(u.state, S::AwaitingStatus);
    assert_eq!(u.altinn_status.as_deref(), Some("SomethingNew"));
    assert_eq!(u.notification, Some(N::Pending));
    assert!(u.next_poll_at.is_some());

    let d = details(json!({"status": "SomethingNew", "published": ago(30)}));
    assert_eq!(assess_now(&d, &job(), &policy()).state, S::Delivered);
}

fn overview(v: Value) -> Overview {
    serde_json::from_value(v).expect("overview JSON in Altinn's shape")
}

#[test]
fn the_overview_decides_publication_and_reading() {
    let o = overview(json!({"status": "Read", "statusChanged": ago(5), "published": ago(30), "read": ago(5)}));
    let u = assess_overview(&o, &job(), &following(FollowUntil::Read, false), now());
    assert_eq!((u.state, u.published_at, u.read_at), (S::Delivered, Some(ago(30)), Some(ago(5))));
    assert_eq!(u.next_poll_at, None, "read: the goal is reached");
    assert_eq!(u.notification, None, "the overview says nothing of notifications: the row's outcome stands");

    let o = overview(json!({"status": "Reserved", "statusText": "reserved in KRR"}));
    let u = assess_overview(&o, &job(), &policy(), now());
    assert_eq!((u.state, u.error.unwrap().0.as_str()), (S::Failed, "altinn:Reserved"));
    let o = overview(json!({"status": "ReadyForPublish"}));
    let u = assess_overview(&o, &job(), &policy(), now());
    assert_eq!((u.state, u.next_poll_at), (S::AwaitingStatus, next_after(&job(), &policy())));
}

#[test]
fn details_are_wanted_only_for_a_published_letter_and_only_for_what_the_overview_lacks() {
    let pending = ClaimedPoll { notification: Some(N::Pending), ..job() };
    let published = overview(json!({"status": "Published", "published": ago(30)}));
    let unpublished = overview(json!({"status": "ReadyForPublish"}));
    let notifications = following(FollowUntil::Published, true);
    let u = assess_overview(&published, &pending, &notifications, now());
    assert!(wants_details(&u, &pending, &notifications), "the notification's outcome is only in details");
    let u = assess_overview(&unpublished, &pending, &notifications, now());
    assert!(!wants_details(&u, &pending, &notifications), "never for an unpublished letter");
    let u = assess_overview(&published, &job(), &notifications, now());
    assert!(!wants_details(&u, &job(), &notifications), "no notification ordered: nothing to learn");
    let settled = ClaimedPoll { notification: Some(N::Delivered), ..job() };
    let u = assess_overview(&published, &settled, &notifications, now());
    assert!(!wants_details(&u, &settled, &notifications), "the outcome is final");

    let confirm = ClaimedPoll { is_confirmation_needed: true, ..job() };
    let until_confirmed = following(FollowUntil::Confirmed, false);
    let u = assess_overview(&published, &confirm, &until_confirmed, now());
    assert!(wants_details(&u, &confirm, &until_confirmed), "the confirmation time is only in details");
    let confirmed = ClaimedPoll { confirmed_at: Some(ago(1)), ..confirm };
    let u = assess_overview(&published, &confirmed, &until_confirmed, now());
    assert!(!wants_details(&u, &confirmed, &until_confirmed));
}

fn polled(outcome: Outcome) -> PollUpdate {
    match outcome {
        Outcome::Polled(u) => *u,
        other => panic!("a status read's outcome, not {other:?}"),
    }
}

#[test]
fn a_failed_read_never_fails_the_delivery() {
    let p = policy();
    for e in [
        ApiError::from_response(400, None, b"bad request"),
        ApiError::from_response(404, None, br#"{"errorCode":1001,"detail":"not found"}"#),
        ApiError::from_response(500, None, b"Notifications failed"),
    ] {
        for state in [S::AwaitingStatus, S::Delivered] {
            let job = ClaimedPoll { state, ..job() };
            let u = polled(read_failed(&job, &p, e.clone(), now()));
            assert_eq!(u.state, state, "{e}: the state stays");
            assert_eq!(u.next_poll_at, next_after(&job, &p), "{e}: read again on the schedule");
            assert_eq!(u.error.as_ref().map(|(c, _)| c.as_str()), Some(e.code.as_str()));
        }
    }
}

#[test]
fn reads_that_fail_until_the_follow_period_ends_leave_the_letter_unconfirmed() {
    let p = policy();
    let max_age = chrono::Duration::from_std(p.max_age).unwrap();
    let too_old = ClaimedPoll { sent_at: now() - max_age - chrono::Duration::seconds(1), ..job() };
    let e = ApiError::from_response(503, None, b"unavailable");
    let u = polled(read_failed(&too_old, &p, e.clone(), now()));
    assert_eq!((u.state, u.next_poll_at), (S::Unconfirmed, None));
    assert!(u.error.unwrap().1.contains("unavailable"), "the last error stays on the row");
    let delivered = ClaimedPoll { state: S::Delivered, ..too_old };
    let u = polled(read_failed(&delivered, &p, e, now()));
    assert_eq!((u.state, u.next_poll_at), (S::Delivered, None), "a delivered letter stays delivered");
}

#[test]
fn a_correspondence_purged_by_someone_else_ends_following_with_its_code() {
    let gone = ApiError::from_response(404, None, br#"{"errorCode":1001,"detail":"not found"}"#);
    let unpublished = assess_now(&details(json!({"status": "PurgedByAltinn"})), &job(), &policy());
    let u = purged(unpublished, &gone);
    assert_eq!((u.state, u.next_poll_at), (S::Cancelled, None));
    assert_eq!(u.error.unwrap().0, "altinn:1001");
    let published = published_with(history(&[("Published", 30)]), json!([]));
    let u = purged(assess_now(&published, &job(), &following(FollowUntil::Read, false)), &gone);
    assert_eq!((u.state, u.next_poll_at), (S::Delivered, None), "published first: delivered stands");
    let u = purged(vanished(&job()), &gone);
    assert_eq!(u.state, S::Cancelled);
}
