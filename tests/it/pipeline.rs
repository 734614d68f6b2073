//! The pipeline end to end against a real PostgreSQL and the fake: every test of the send
//! path says how many calls the fake saw.

use std::time::Duration;

use crate::common::{wait_until, TestApp, ORG, RESOURCE};
use altinn_fake::{Endpoint, FakeConfig, FaultKind, FaultRule};
use altinn_outbox::worker;
use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test]
async fn a_row_goes_from_insert_to_delivered_with_every_column_filled() {
    let app = TestApp::start().await;
    let message_id = app.insert("case-1", &[ORG]).await;

    assert_eq!(app.drain().await, 1, "one send");
    let d = app.delivery_of(message_id).await;
    assert_eq!(d.get::<String, _>("state"), "awaiting_status");
    let key: Uuid = d.get("idempotency_key");
    let cid: Uuid = d.get("correspondence_id");
    let fake = app.fake.state().correspondences();
    assert_eq!(fake.len(), 1);
    assert_eq!((fake[0].id, fake[0].idempotent_key), (cid, Some(key)));
    assert_eq!(fake[0].recipient, format!("urn:altinn:organization:identifier-no:{ORG}"));
    assert_eq!(fake[0].resource_id, RESOURCE);

    app.fake.state().publish_all_now();
    app.make_all_due().await;
    app.drain().await;
    let d = app.delivery_of(message_id).await;
    assert_eq!(d.get::<String, _>("state"), "delivered");
    assert_eq!(d.get::<String, _>("altinn_status"), "Published");
    assert_eq!(d.get::<i32, _>("attempts"), 1);
    assert!(d.get::<i32, _>("polls") >= 1);
    for column in ["sent_at", "published_at", "status_seen_at", "altinn_status_at", "finished_at"] {
        assert!(d.get::<Option<DateTime<Utc>>, _>(column).is_some(), "{column} is filled");
    }
    assert_eq!(d.get::<Option<String>, _>("notification").as_deref(), Some("none"));
    assert!(d.get::<Option<DateTime<Utc>>, _>("next_poll_at").is_none(), "no more reads after delivery");
    assert!(d.get::<Option<String>, _>("locked_by").is_none());
    assert!(d.get::<Option<String>, _>("error_code").is_none());

    let history: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, new_value FROM altinn_outbox.history WHERE delivery_id = $1 ORDER BY id")
            .bind(d.get::<i64, _>("id"))
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let states: Vec<&str> = history.iter().filter(|(k, _)| k == "state").filter_map(|(_, v)| v.as_deref()).collect();
    assert_eq!(states, ["sending", "awaiting_status", "delivered"]);
    assert!(history.iter().any(|(k, v)| k == "altinn_status" && v.as_deref() == Some("Published")));

    let view: (String, String) =
        sqlx::query_as("SELECT state, recipient FROM altinn_outbox.delivery_status WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(view, ("delivered".into(), ORG.into()));
    let message_state: String =
        sqlx::query_scalar("SELECT state FROM altinn_outbox.message_status WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(message_state, "delivered");
    assert_eq!(app.initialize_requests(), 1);
}

#[tokio::test]
async fn many_sends_use_one_grant_and_one_exchange() {
    let app = TestApp::start().await;
    app.insert_many(40).await;
    app.drain().await;
    assert_eq!(app.count_in("awaiting_status").await + app.count_in("delivered").await, 40);
    assert_eq!(app.initialize_requests(), 40);
    assert_eq!(app.fake.state().grants_accepted(), 1);
    assert_eq!(app.fake.state().exchanges(), 1);
}

/// The reliability scenario of a host clock 30 s ahead of Maskinporten's (which accepts
/// `iat` within ±10 s): the first grant is refused, the token client learns the offset from
/// the answer's `Date` and the second grant gets the one token every send shares.
#[tokio::test]
async fn a_host_clock_30_s_ahead_of_maskinporten_costs_one_refused_grant() {
    let app = TestApp::with(FakeConfig { clock_offset_s: -30, ..crate::common::fake_config() }, |_| {}).await;
    app.insert_many(20).await;
    app.drain().await;
    assert_eq!(app.count_in("awaiting_status").await + app.count_in("delivered").await, 20);
    assert_eq!(app.initialize_requests(), 20);
    let fake = app.fake.state();
    assert_eq!((fake.grants_rejected(), fake.grants_accepted(), fake.exchanges()), (1, 1, 1));
}

#[tokio::test]
async fn a_response_lost_after_commit_leads_to_one_correspondence() {
    let app = TestApp::start().await;
    app.fake.faults().add(FaultRule::times(Endpoint::Initialize, FaultKind::CommitThenDrop, 1));
    let message_id = app.insert("lost-response", &[ORG]).await;

    app.drain().await;
    let d = app.delivery_of(message_id).await;
    assert_eq!(d.get::<String, _>("state"), "pending", "the lost response is retried");
    assert_eq!(d.get::<Option<String>, _>("error_code").as_deref(), Some("network"));
    assert_eq!(app.fake.state().correspondences().len(), 1, "but Altinn created it");

    app.make_all_due().await;
    app.drain().await;
    let d = app.delivery_of(message_id).await;
    assert_eq!(d.get::<String, _>("state"), "awaiting_status");
    let fake = app.fake.state().correspondences();
    assert_eq!(fake.len(), 1, "exactly one correspondence");
    assert_eq!(d.get::<Uuid, _>("correspondence_id"), fake[0].id, "found by key");
    assert_eq!(app.initialize_requests(), 2, "the second answered 409/1034");
    assert_eq!(app.fake.state().lookups(), 1);
    assert_eq!(d.get::<i32, _>("attempts"), 2);
}

#[tokio::test]
async fn two_workers_on_one_database_send_each_of_200_rows_exactly_once() {
    let app = TestApp::start().await;
    app.insert_many(200).await;
    let shutdown = CancellationToken::new();
    let a = tokio::spawn(worker::run(app.ctx.clone(), shutdown.clone()));
    let b = tokio::spawn(worker::run(app.second_worker("second"), shutdown.clone()));
    wait_until(Duration::from_secs(60), "all sent", || async {
        app.count_in("pending").await + app.count_in("sending").await == 0
    })
    .await;
    shutdown.cancel();
    a.await.unwrap();
    b.await.unwrap();

    let fake = app.fake.state().correspondences();
    assert_eq!(fake.len(), 200);
    let keys: std::collections::HashSet<_> = fake.iter().map(|c| c.idempotent_key).collect();
    assert_eq!(keys.len(), 200, "one correspondence per row");
    assert_eq!(app.initialize_requests(), 200, "no row was sent twice");
    let by_worker: Vec<(String, i64)> = sqlx::query_as(
        "SELECT substring(detail from 'by (.*)$') AS w, count(*) FROM altinn_outbox.history
         WHERE kind = 'state' AND new_value = 'sending' GROUP BY w ORDER BY w",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(by_worker.iter().map(|(_, n)| n).sum::<i64>(), 200);
}

#[tokio::test]
async fn a_transient_error_is_retried_and_a_permanent_one_is_not() {
    let fake = crate::common::fake_config();
    let mut fake = fake;
    fake.unknown_resources = vec!["no-such-resource".into()];
    let app = TestApp::with(fake, |_| {}).await;
    app.fake.faults().add(FaultRule::times(Endpoint::Initialize, FaultKind::Status(503), 1));
    let transient = app.insert("transient", &[ORG]).await;
    app.drain().await;
    let d = app.delivery_of(transient).await;
    assert_eq!(d.get::<String, _>("state"), "pending");
    assert_eq!(d.get::<Option<String>, _>("error_code").as_deref(), Some("http:503"));
    assert!(
        d.get::<DateTime<Utc>, _>("next_attempt_at") > Utc::now() - chrono::Duration::milliseconds(5),
        "backoff is persisted"
    );
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.delivery_of(transient).await.get::<String, _>("state"), "awaiting_status");
    assert_eq!(app.initialize_requests(), 2);

    let permanent: i64 = sqlx::query_scalar(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ('no-such-resource', 'permanent', ARRAY['991825827'], 't', 'b') RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    app.drain().await;
    app.make_all_due().await;
    app.drain().await;
    let d = app.delivery_of(permanent).await;
    assert_eq!(d.get::<String, _>("state"), "failed");
    assert_eq!(d.get::<Option<String>, _>("error_code").as_deref(), Some("altinn:1036"));
    assert!(d.get::<Option<String>, _>("error_message").unwrap().contains("resource"));
    assert_eq!(d.get::<i32, _>("attempts"), 1, "a permanent error is not retried");
    assert_eq!(app.initialize_requests(), 3);
}

#[tokio::test]
async fn transient_errors_end_the_row_after_max_attempts() {
    let app = TestApp::start().await;
    app.fake.faults().add(FaultRule::always(Endpoint::Initialize, FaultKind::Status(500)));
    let id = app.insert("always-500", &[ORG]).await;
    for _ in 0..6 {
        app.drain().await;
        app.make_all_due().await;
    }
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "failed");
    assert_eq!(d.get::<i32, _>("attempts"), 4);
    assert!(d.get::<String, _>("error_message").starts_with("gave up after 4 attempts"));
    assert_eq!(app.initialize_requests(), 4);
}

/// Altinn Register failing to find the sender: 400 with 4002, nothing created.
fn register_hiccup() -> FaultKind {
    FaultKind::Problem {
        status: 400,
        error_code: 4002,
        detail: "Could not retrieve party uuid from lookup in Altinn Register".into(),
    }
}

#[tokio::test]
async fn a_register_hiccup_4002_is_retried_with_the_same_key_until_sent() {
    let app = TestApp::start().await;
    app.fake.faults().add(FaultRule::times(Endpoint::Initialize, register_hiccup(), 2));
    let id = app.insert("register-hiccup", &[ORG]).await;
    for attempt in 1..=2 {
        app.drain().await;
        let d = app.delivery_of(id).await;
        assert_eq!(d.get::<String, _>("state"), "pending", "attempt {attempt} is retried, not failed");
        assert_eq!(d.get::<i32, _>("attempts"), attempt);
        assert_eq!(d.get::<Option<String>, _>("error_code").as_deref(), Some("altinn:4002"));
        assert_eq!(
            d.get::<Option<String>, _>("error_message").as_deref(),
            Some("Could not retrieve party uuid from lookup in Altinn Register")
        );
        assert!(d.get::<DateTime<Utc>, _>("next_attempt_at") > Utc::now(), "the backoff is on the row");
        app.make_all_due().await;
    }
    app.drain().await;
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "awaiting_status");
    assert_eq!(d.get::<i32, _>("attempts"), 3);
    let key: Uuid = d.get("idempotency_key");
    let keys: Vec<Option<Uuid>> = app.fake.state().initialize_arrivals().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [Some(key); 3], "every attempt carried the row's key");
    let created = app.fake.state().correspondences();
    assert_eq!(created.len(), 1);
    assert_eq!((created[0].id, created[0].idempotent_key), (d.get("correspondence_id"), Some(key)));
    assert_eq!(app.initialize_requests(), 3);
    assert_eq!(app.fake.faults().injected(), 2);
    assert!(!app.ctx.altinn.looks_down(), "a 400 is a real answer: the gate never closed");
}

#[tokio::test]
async fn a_dependency_failure_in_a_500_is_retried_and_does_not_close_the_gate() {
    let app = TestApp::start().await;
    // More in a row than it takes a plain 5xx to make Altinn look down (five).
    let krr = FaultKind::Problem {
        status: 500,
        error_code: 1032,
        detail: "Contact reservation registry lookup failed".into(),
    };
    app.fake.faults().add(FaultRule::times(Endpoint::Initialize, krr, 8));
    app.insert_many(8).await;
    app.drain().await;
    assert_eq!(app.fake.faults().injected(), 8, "each of the eight reached the fake");
    assert!(!app.ctx.altinn.looks_down(), "Correspondence answered each one itself");
    let codes: Vec<(String, Option<String>, i32)> =
        sqlx::query_as("SELECT state, error_code, attempts FROM altinn_outbox.delivery ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(codes, vec![("pending".to_string(), Some("altinn:1032".to_string()), 1); 8]);
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.count_in("awaiting_status").await, 8);
    assert_eq!(app.initialize_requests(), 16);
}

#[tokio::test]
async fn an_invalid_organisation_number_fails_before_any_request() {
    let app = TestApp::start().await;
    let id = app.insert("bad-org", &["991825828"]).await;
    app.drain().await;
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "failed");
    assert_eq!(d.get::<String, _>("error_code"), "validation:recipients");
    assert!(d.get::<String, _>("error_message").contains("mod-11"), "{}", d.get::<String, _>("error_message"));
    assert_eq!(app.fake.state().requests().len(), 0, "no request at all, not even a token");
}

#[tokio::test]
async fn a_second_message_with_the_same_reference_and_recipient_is_refused_at_insert() {
    let app = TestApp::start().await;
    app.insert("ref-1", &[ORG]).await;
    let err = sqlx::query(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ($1, 'ref-1', ARRAY['0192:991825827'], 'another letter', 'b')",
    )
    .bind(RESOURCE)
    .execute(&app.pool)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("delivery_reference_unique"), "{err}");
    // Even ON CONFLICT DO NOTHING does not swallow a different letter with the same reference.
    let swallowed = sqlx::query(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, summary, body)
         VALUES ($1, 'ref-1', ARRAY[$2], 'x', 'y', 'z') ON CONFLICT DO NOTHING",
    )
    .bind(RESOURCE)
    .bind(ORG)
    .execute(&app.pool)
    .await;
    assert!(swallowed.unwrap_err().to_string().contains("delivery_reference_unique"));
    // The producer's own retry of the very same row is a no-op.
    let retried = sqlx::query(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, summary, body)
         VALUES ($1, 'ref-1', ARRAY[$2], 'Vedtak', 'Kort oppsummering', '# Vedtak\nTekst i **markdown**') ON CONFLICT DO NOTHING",
    )
    .bind(RESOURCE)
    .bind(ORG)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(retried.rows_affected(), 0);
    // A deliberate re-send has its own number, and so its own key.
    sqlx::query(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, resend, recipients, title, body)
         VALUES ($1, 'ref-1', 1, ARRAY[$2], 't', 'b')",
    )
    .bind(RESOURCE)
    .bind(ORG)
    .execute(&app.pool)
    .await
    .unwrap();
    app.drain().await;
    let keys: std::collections::HashSet<Option<Uuid>> =
        app.fake.state().correspondences().iter().map(|c| c.idempotent_key).collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(app.initialize_requests(), 2);
}

#[tokio::test]
async fn one_message_to_several_recipients_sends_one_request_each_with_its_own_key() {
    let app = TestApp::start().await;
    let id = app.insert("multi", &[ORG, "0192:974760223", "13896396174"]).await;
    app.drain().await;
    let fake = app.fake.state().correspondences();
    assert_eq!(fake.len(), 3);
    assert_eq!(fake.iter().map(|c| c.idempotent_key).collect::<std::collections::HashSet<_>>().len(), 3);
    assert!(fake.iter().any(|c| c.recipient == "urn:altinn:person:identifier-no:13896396174"));
    let state: String = sqlx::query_scalar("SELECT state FROM altinn_outbox.message_status WHERE message_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "awaiting_status");
    assert_eq!(app.initialize_requests(), 3);
}

#[tokio::test]
async fn a_write_back_from_a_lost_lease_writes_nothing_and_expired_leases_are_reclaimed() {
    let app = TestApp::start().await;
    let id = app.insert("fenced", &[ORG]).await;
    let jobs = worker::claim(&app.ctx, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    // The lease expires (the worker hung); the sweep hands the row back; another claims it.
    sqlx::query("UPDATE altinn_outbox.delivery SET locked_until = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let reclaimed = altinn_outbox::outbox::reclaim_expired_leases(&app.pool).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    let second = app.second_worker("second");
    let jobs2 = worker::claim(&second, 10).await.unwrap();
    assert_eq!(jobs2.len(), 1);
    // The first worker finally finishes: its result is fenced out.
    let late = worker::process(&app.ctx, jobs.into_iter().next().unwrap()).await.expect("a send writes back");
    assert_eq!(altinn_outbox::outbox::write_back(&app.pool, &[late]).await.unwrap(), 0);
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "sending");
    assert_eq!(d.get::<String, _>("locked_by"), "second");
    let current = worker::process(&second, jobs2.into_iter().next().unwrap()).await.expect("a send writes back");
    assert_eq!(altinn_outbox::outbox::write_back(&app.pool, &[current]).await.unwrap(), 1);
    assert_eq!(app.fake.state().correspondences().len(), 1, "the same key both times");
    assert_eq!(app.initialize_requests(), 2);
}

#[tokio::test]
async fn a_401_from_correspondence_drops_the_token_and_retries_once() {
    let app = TestApp::start().await;
    app.fake.faults().add(FaultRule::times(Endpoint::Initialize, FaultKind::Status(401), 1));
    let id = app.insert("401", &[ORG]).await;
    app.drain().await;
    assert_eq!(app.delivery_of(id).await.get::<String, _>("state"), "awaiting_status");
    assert_eq!(app.initialize_requests(), 2);
    assert_eq!(app.fake.state().exchanges(), 2, "a fresh token for the retry");
}

#[tokio::test]
async fn a_429_retry_after_is_honoured_for_every_row() {
    let app = TestApp::start().await;
    app.fake.faults().add(FaultRule::times(Endpoint::Initialize, FaultKind::TooManyRequests { retry_after_s: 30 }, 1));
    let id = app.insert("429", &[ORG]).await;
    app.drain().await;
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "pending");
    let wait = d.get::<DateTime<Utc>, _>("next_attempt_at") - Utc::now();
    assert!(wait > chrono::Duration::seconds(28), "retry not before Retry-After: {wait}");
    // Another row, due now, is held back without a request.
    let other = app.insert("429-other", &[ORG]).await;
    app.drain().await;
    let d = app.delivery_of(other).await;
    assert_eq!(
        (d.get::<String, _>("state"), d.get::<Option<String>, _>("error_code")),
        ("pending".into(), Some("throttled".into()))
    );
    assert_eq!(d.get::<i32, _>("attempts"), 0, "a throttled wait uses no attempt");
    assert_eq!(app.initialize_requests(), 1);
    assert_eq!(app.fake.state().requests_before_retry_after(), 0);
}

#[tokio::test]
async fn statuses_follow_the_highest_value_rule_and_terminal_statuses_end_the_row() {
    let mut fake = crate::common::fake_config();
    fake.publish_after_ms = 3_600_000;
    let app = TestApp::with(fake, |_| {}).await;
    let ok = app.insert("reserved-later-published", &[ORG]).await;
    let failing = app.insert("failing", &["974760223"]).await;
    app.drain().await;
    let cid = |row: sqlx::postgres::PgRow| row.get::<Uuid, _>("correspondence_id");
    let (ok_cid, failing_cid) = (cid(app.delivery_of(ok).await), cid(app.delivery_of(failing).await));
    assert!(app.fake.state().set_status(ok_cid, "Published"));
    assert!(app.fake.state().set_status(ok_cid, "Read"));
    assert!(app.fake.state().set_status(failing_cid, "Failed"));
    app.make_all_due().await;
    app.drain().await;
    let d = app.delivery_of(ok).await;
    assert_eq!(d.get::<String, _>("state"), "delivered");
    assert_eq!(d.get::<String, _>("altinn_status"), "Read");
    assert!(d.get::<Option<DateTime<Utc>>, _>("read_at").is_some());
    let d = app.delivery_of(failing).await;
    assert_eq!(d.get::<String, _>("state"), "failed");
    assert_eq!(d.get::<String, _>("error_code"), "altinn:Failed");
    assert_eq!(app.initialize_requests(), 2);
}

#[tokio::test]
async fn an_insert_wakes_an_idle_worker_through_notify() {
    // With a one-minute idle poll, only the NOTIFY can explain a send within seconds.
    let app = TestApp::with(crate::common::fake_config(), |c| c.worker.idle_poll_interval_ms = 60_000).await;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(worker::run(app.ctx.clone(), shutdown.clone()));
    // Inserted once the worker LISTENs: a state to wait for, not a guessed time. The loop's
    // first claim starts before the listener opens its own connection, so it has normally
    // found the queue empty by then (if not, the row goes without the NOTIFY: no false failure).
    wait_until(Duration::from_secs(10), "the worker listens", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT FROM pg_stat_activity
                             WHERE datname = current_database() AND state = 'idle' AND query ILIKE 'LISTEN %')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
    })
    .await;
    let id = app.insert("notified", &[ORG]).await;
    wait_until(Duration::from_secs(10), "the notified row is sent", || async {
        app.delivery_of(id).await.get::<String, _>("state") != "pending"
    })
    .await;
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(app.initialize_requests(), 1);
}

#[tokio::test]
async fn a_bad_attachment_fails_its_row_naming_the_file_before_any_request() {
    let app = TestApp::start().await;
    let id = app.insert("bad-file", &[ORG]).await;
    sqlx::query(
        "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content)
         VALUES ($1, 'vedtak.pdf', 'a1', '\\x255044462d'), ($1, 'setup.exe', 'a2', '\\x4d5a')",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .unwrap();
    app.drain().await;
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "failed");
    assert_eq!(d.get::<String, _>("error_code"), "validation:attachment");
    assert!(d.get::<String, _>("error_message").contains("\"setup.exe\""), "{}", d.get::<String, _>("error_message"));
    assert!(app.fake.state().requests().is_empty(), "no request at all");
}

#[tokio::test]
async fn a_message_inserted_as_altinns_json_is_sent_and_checked_like_any_other() {
    let app = TestApp::start().await;
    let doc = serde_json::json!({
        "correspondence": {
            "resourceId": RESOURCE,
            "sendersReference": "json-1",
            "messageSender": "Etat X",
            "content": {"language": "en", "messageTitle": "Decision", "messageBody": "# Decision\nGranted."},
            "propertyList": {"caseNumber": "42"},
            "notification": {"notificationChannel": "Sms", "smsBody": "New message"},
            "isConfirmationNeeded": false
        },
        "recipients": ["0192:991825827"],
        "idempotentKey": "0f8e2a52-6a1b-5c3e-9d44-2b7c1e0a9f11"
    });
    let id: i64 =
        sqlx::query_scalar("SELECT altinn_outbox.insert_request($1)").bind(&doc).fetch_one(&app.pool).await.unwrap();
    // Held to the same limits at INSERT as any other row...
    let mut bad = doc.clone();
    bad["correspondence"]["sendersReference"] = "json-2".into();
    bad["correspondence"]["content"]["messageTitle"] = "x".repeat(256).into();
    let e = sqlx::query_scalar::<_, i64>("SELECT altinn_outbox.insert_request($1)")
        .bind(&bad)
        .fetch_one(&app.pool)
        .await
        .expect_err("a title over 255 characters");
    assert!(e.to_string().contains("altinn_outbox.message.title: is longer than 255 characters"), "{e}");
    // ... and checked by the worker like any other row.
    bad["correspondence"]["content"]["messageTitle"] = "".into();
    let bad_id: i64 =
        sqlx::query_scalar("SELECT altinn_outbox.insert_request($1)").bind(&bad).fetch_one(&app.pool).await.unwrap();
    app.drain().await;

    assert_eq!(app.delivery_of(id).await.get::<String, _>("state"), "awaiting_status");
    let sent = &app.fake.state().correspondences()[0];
    assert_eq!(sent.request["correspondence"]["content"]["messageTitle"], "Decision");
    assert_eq!(sent.request["correspondence"]["propertyList"]["caseNumber"], "42");
    assert_ne!(
        sent.idempotent_key.unwrap().to_string(),
        "0f8e2a52-6a1b-5c3e-9d44-2b7c1e0a9f11",
        "the outbox's own key"
    );
    let d = app.delivery_of(bad_id).await;
    assert_eq!(
        (d.get::<String, _>("state"), d.get::<String, _>("error_code")),
        ("failed".into(), "validation:title".into())
    );
    assert_eq!(app.initialize_requests(), 1);
}

#[tokio::test]
async fn status_reads_take_the_room_sends_leave_and_only_half_while_sends_wait() {
    let app = TestApp::start().await; // concurrency 16
    app.insert_many(40).await;
    assert_eq!(app.drain().await, 40, "40 sends");
    app.make_all_due().await;
    // Nothing to send: one claim takes as many status reads as there is room for.
    let jobs = worker::claim(&app.ctx, 16).await.unwrap();
    assert_eq!(jobs.len(), 16);
    assert!(jobs.iter().all(|j| matches!(j, worker::Job::Poll(_))));
    for job in jobs {
        if let Some(result) = worker::process(&app.ctx, job).await {
            altinn_outbox::outbox::write_back(&app.pool, &[result]).await.unwrap();
        }
    }
    // With sends waiting, reads get half and sends the rest.
    app.insert_many_from(100, 20).await;
    let jobs = worker::claim(&app.ctx, 16).await.unwrap();
    let polls = jobs.iter().filter(|j| matches!(j, worker::Job::Poll(_))).count();
    assert_eq!((polls, jobs.len() - polls), (8, 8));
}
