//! Status reads as the real server makes them cost: the overview routinely (Altinn's own
//! database), details only for what only details have, and neither a failing read nor a
//! failing dependency of Altinn ever fails a letter Altinn has or holds back sends.

use crate::common::{TestApp, ORG, RESOURCE};
use altinn_fake::{Endpoint, FaultKind, FaultRule};
use altinn_outbox::health;
use sqlx::Row;
use uuid::Uuid;

/// A letter with an e-mail notification from Altinn's generic template.
async fn insert_notified(app: &TestApp, reference: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body, notification)
         VALUES ($1, $2, ARRAY[$3], 'Vedtak', 'Tekst',
                 '{\"notificationTemplate\": \"GenericAltinnMessage\", \"notificationChannel\": \"Email\"}')
         RETURNING id",
    )
    .bind(RESOURCE)
    .bind(reference)
    .bind(ORG)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn routine_reads_use_the_overview_and_details_only_for_the_notification() {
    let app = TestApp::start().await;
    let plain = app.insert("plain", &[ORG]).await;
    let notified = insert_notified(&app, "notified").await;
    app.drain().await;
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.delivery_of(plain).await.get::<String, _>("state"), "delivered");
    assert_eq!(app.delivery_of(notified).await.get::<String, _>("state"), "delivered");
    assert_eq!(app.fake.state().details_calls(), 1, "details for the notified letter only, once published");
}

/// Reproduction: details answered 500 (Altinn Notifications down) while initialize worked,
/// and the single gate then held back every send for seconds.
#[tokio::test]
async fn failing_details_hold_back_neither_sends_nor_reads_of_the_overview() {
    let app = TestApp::start().await;
    app.fake.faults().add(FaultRule::always(Endpoint::Details, FaultKind::Status(500)));
    for i in 0..8 {
        insert_notified(&app, &format!("early-{i}")).await;
    }
    app.drain().await;
    for _ in 0..3 {
        app.make_all_due().await;
        app.drain().await;
    }
    assert_eq!(app.count_in("delivered").await, 8, "publication is read from the overview");
    let details_tried = app.fake.state().requests().iter().filter(|r| r.path.ends_with("/details")).count();
    assert!(details_tried >= 5, "details were tried and failed ({details_tried})");
    let readiness = health::readiness(&app.ctx).await;
    assert_eq!(readiness.altinn, "details look down");
    assert!(readiness.ready, "sending works: {readiness:?}");
    // A letter inserted now goes at once.
    let sent_before = app.initialize_requests();
    let late = app.insert("late", &[ORG]).await;
    app.drain().await;
    assert_eq!(app.initialize_requests(), sent_before + 1);
    assert_eq!(app.delivery_of(late).await.get::<String, _>("state"), "awaiting_status");
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.delivery WHERE notification = 'pending'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(pending, 8, "the notification outcome waits for details; nothing failed");
    assert_eq!(app.count_in("failed").await, 0);
}

#[tokio::test]
async fn a_correspondence_purged_by_someone_else_ends_following_without_failing() {
    let app = app_publishing_late().await;
    let id = app.insert("purged", &[ORG]).await;
    app.drain().await;
    let cid: Uuid = app.delivery_of(id).await.get("correspondence_id");
    app.ctx.altinn.purge(cid).await.expect("someone else purges it");
    app.make_all_due().await;
    app.drain().await;
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "cancelled");
    assert_eq!(d.get::<String, _>("error_code"), "altinn:1001");
    assert_eq!(d.get::<Option<chrono::DateTime<chrono::Utc>>, _>("next_poll_at"), None, "no longer followed");
    assert_eq!(d.get::<Option<Uuid>, _>("correspondence_id"), Some(cid), "the id is kept");
}

#[tokio::test]
async fn a_delivered_letter_is_never_failed_by_a_read() {
    let app = TestApp::with(crate::common::fake_config(), |c| {
        c.status.follow_until = altinn_outbox::config::FollowUntil::Read;
    })
    .await;
    let id = app.insert("read-later", &[ORG]).await;
    app.drain().await;
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.delivery_of(id).await.get::<String, _>("state"), "delivered");
    // Followed until read; every read now fails, with a code that looks permanent.
    app.fake.faults().add(FaultRule::always(Endpoint::Overview, FaultKind::Status(400)));
    for _ in 0..3 {
        app.make_all_due().await;
        app.drain().await;
    }
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "delivered");
    assert_eq!(d.get::<String, _>("error_code"), "http:400", "the read's error is on the row");
    assert!(d.get::<Option<chrono::DateTime<chrono::Utc>>, _>("next_poll_at").is_some(), "read again later");
}

/// The fake publishes only when told, so that a test can look at a letter before.
async fn app_publishing_late() -> TestApp {
    let fake = altinn_fake::FakeConfig { publish_after_ms: 3_600_000, ..crate::common::fake_config() };
    TestApp::with(fake, |_| {}).await
}

/// `Email_Failed_TTL`: no receipt came back in time. Delivery of the e-mail is unknown, not
/// failed, and it is final: reads stop.
#[tokio::test]
async fn a_notification_without_a_receipt_in_time_is_unconfirmed_not_failed() {
    let fake = altinn_fake::FakeConfig { notification_outcome: "Failed_TTL".into(), ..crate::common::fake_config() };
    let app = TestApp::with(fake, |_| {}).await;
    let id = insert_notified(&app, "ttl").await;
    app.drain().await;
    app.make_all_due().await;
    app.drain().await;
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "delivered");
    assert_eq!(d.get::<String, _>("notification"), "unconfirmed");
    assert_eq!(d.get::<Option<chrono::DateTime<chrono::Utc>>, _>("next_poll_at"), None, "final: no more reads");
    let detail: serde_json::Value = d.get("notification_detail");
    assert_eq!(detail[0]["sendStatus"][0], "Email_Failed_TTL");
}
