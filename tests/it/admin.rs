//! The admin commands against a real PostgreSQL and the fake: each command through the
//! library (its JSON document) and through the real binary (its exit code and output).

use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{TestApp, ORG};
use altinn_fake::{Endpoint, FakeConfig, FaultKind, FaultRule};
use altinn_outbox::admin::{self, Exit};
use altinn_outbox::outbox::{self, DeliveryState, Outcome, PollUpdate, WriteBack};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_altinn-outbox");
pub(crate) const PERSON: &str = "13896396174";
pub(crate) const UNKNOWN_RESOURCE: &str = "no-such-resource";

/// A fake that publishes only when told (`publish_all_now`), so that there is time to cancel.
async fn app_publishing_late() -> TestApp {
    let fake = FakeConfig { publish_after_ms: 3_600_000, ..crate::common::fake_config() };
    TestApp::with(fake, |_| {}).await
}

/// Runs the binary with the app's config; off the runtime, which also serves the fake.
pub(crate) async fn run(app: &TestApp, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = app.config_file(dir.path());
    let args: Vec<String> = args.iter().map(std::string::ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        let _dir = dir;
        Command::new(BIN).arg("--config").arg(&config).args(&args).env_remove("RUST_LOG").output().unwrap()
    })
    .await
    .unwrap()
}

pub(crate) fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

async fn execute(app: &TestApp, command: admin::Command) -> admin::Answer {
    admin::execute(&app.config, command).await.expect("command runs")
}

fn json_flag() -> admin::Output {
    admin::Output { json: true }
}

/// Makes the status read of one message's delivery due and runs it.
async fn read_status_now(app: &TestApp, message_id: i64) {
    sqlx::query("UPDATE altinn_outbox.delivery SET next_poll_at = now() WHERE message_id = $1")
        .bind(message_id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.drain().await, 1);
}

async fn history_states(app: &TestApp, delivery_id: i64) -> Vec<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT new_value, detail FROM altinn_outbox.history WHERE delivery_id = $1 AND kind = 'state' ORDER BY id",
    )
    .bind(delivery_id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn status_counts_states_the_oldest_pending_and_failures_by_code() {
    let mut fake = FakeConfig { publish_after_ms: 3_600_000, ..crate::common::fake_config() };
    fake.unknown_resources = vec![UNKNOWN_RESOURCE.into()];
    let app = TestApp::with(fake, |_| {}).await;
    for i in 0..3 {
        app.insert(&format!("sent-{i}"), &[ORG]).await;
    }
    for i in 0..2 {
        app.insert_on(UNKNOWN_RESOURCE, &format!("refused-{i}")).await;
    }
    app.drain().await;
    let waiting = app.insert("waiting", &[ORG]).await;

    let answer = execute(&app, admin::Command::Status(json_flag())).await;
    assert_eq!(answer.exit, Exit::Success);
    let j = answer.json;
    assert_eq!((j["messages"].clone(), j["deliveries"].clone()), (json!(6), json!(6)));
    assert_eq!(
        j["deliveries_by_state"],
        json!({"pending": 1, "waiting_files": 0, "sending": 0, "awaiting_status": 3, "delivered": 0,
               "unconfirmed": 0, "failed": 2, "cancelled": 0})
    );
    assert_eq!(j["oldest_pending"]["message_id"], json!(waiting));
    assert_eq!(j["oldest_pending"]["state"], "pending");
    assert!(j["oldest_pending"]["age_s"].as_i64().unwrap() >= 0);
    assert_eq!(j["failed_last_24h"], json!([{"error_code": "altinn:1036", "deliveries": 2}]));

    let out = run(&app, &["status"]).await;
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.contains("awaiting_status  3") && text.contains("altinn:1036  2"), "{text}");
    assert!(text.contains(&format!("of message {waiting} (pending)")), "{text}");
    let out = run(&app, &["status", "--json"]).await;
    assert_eq!(stdout_json(&out)["deliveries_by_state"]["failed"], 2);
    assert_eq!(app.initialize_requests(), 5, "status itself calls nobody");
}

#[tokio::test]
async fn show_prints_the_message_its_deliveries_masked_and_their_history() {
    let app = app_publishing_late().await;
    let id = app.insert("case-7", &[ORG, PERSON]).await;
    app.drain().await;

    let j = execute(&app, admin::Command::Show { id, output: json_flag() }).await.json;
    assert_eq!(j["message"]["id"], id);
    assert_eq!(j["message"]["senders_reference"], "case-7");
    assert_eq!(j["message"]["resource_id"], crate::common::RESOURCE);
    let deliveries = j["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["recipient"], ORG);
    assert_eq!(deliveries[1]["recipient"], "*********74");
    for d in deliveries {
        assert_eq!(d["state"], "awaiting_status");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["altinn_status"], "ReadyForPublish");
        assert!(d["correspondence_id"].is_string() && d["idempotency_key"].is_string());
        let changes: Vec<(&str, &str)> = d["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["kind"] == "state")
            .map(|h| (h["old_value"].as_str().unwrap(), h["new_value"].as_str().unwrap()))
            .collect();
        assert_eq!(changes, [("pending", "sending"), ("sending", "awaiting_status")]);
    }
    let fields: Vec<&String> = deliveries[0].as_object().unwrap().keys().collect();
    for field in ["id", "recipient", "state", "correspondence_id", "error_code", "finished_at", "history"] {
        assert!(fields.iter().any(|f| *f == field), "{field} in {fields:?}");
    }

    let out = run(&app, &["show", &id.to_string()]).await;
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.contains("*********74") && !text.contains(&PERSON[..6]), "{text}");
    assert!(text.contains("pending → sending") && text.contains("ReadyForPublish"), "{text}");
    let out = run(&app, &["show", "999999", "--json"]).await;
    assert_eq!(code(&out), 3);
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("altinn-outbox: no message with id 999999"));
}

#[tokio::test]
async fn show_hides_numbers_in_texts_stored_before_they_were_scrubbed() {
    let app = TestApp::start().await;
    let id = app.insert("old-row", &[PERSON]).await;
    // As a version that stored Altinn's text unscrubbed left it; the trigger copies it to history.
    sqlx::query(
        "UPDATE altinn_outbox.delivery SET state = 'failed', error_code = 'altinn:1030',
                error_message = 'Recipient ' || $2 || ' has reserved themselves from public correspondences.'
         WHERE message_id = $1",
    )
    .bind(id)
    .bind(PERSON)
    .execute(&app.pool)
    .await
    .unwrap();

    let j = execute(&app, admin::Command::Show { id, output: json_flag() }).await.json;
    let d = &j["deliveries"][0];
    assert_eq!(d["error_message"], "Recipient *********74 has reserved themselves from public correspondences.");
    let details: Vec<&str> = d["history"].as_array().unwrap().iter().filter_map(|h| h["detail"].as_str()).collect();
    assert_eq!(details, ["altinn:1030: Recipient *********74 has reserved themselves from public correspondences."]);
    let out = run(&app, &["show", &id.to_string()]).await;
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.contains("Recipient *********74 has reserved") && !text.contains(&PERSON[..6]), "{text}");
    assert_eq!(app.initialize_requests(), 0, "show calls nobody");
}

#[tokio::test]
async fn retry_puts_failed_deliveries_back_by_code_and_never_makes_a_second_correspondence() {
    let app = TestApp::start().await;
    app.fake.faults().add(FaultRule::times(Endpoint::Initialize, FaultKind::Status(400), 2));
    let first = app.insert("first", &[ORG]).await;
    let second = app.insert("second", &[ORG]).await;
    app.drain().await;
    // Fails on the row with a code of its own (a mod-11 error: validation:recipients).
    let bad_org: i64 = sqlx::query_scalar(
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ($1, 'bad-org', ARRAY['991825828'], 't', 'b') RETURNING id",
    )
    .bind(crate::common::RESOURCE)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    app.drain().await;
    let d = app.delivery_of(first).await;
    assert_eq!((d.get::<String, _>("state"), d.get::<String, _>("error_code")), ("failed".into(), "http:400".into()));
    let key: Uuid = d.get("idempotency_key");

    let out = run(&app, &["retry", "--failed", "--code", "400", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let j = stdout_json(&out);
    assert_eq!((j["requeued"].clone(), j["refused"].clone()), (json!(2), json!(0)));
    let ids: Vec<i64> = j["deliveries"].as_array().unwrap().iter().map(|d| d["message_id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [first, second]);
    let d = app.delivery_of(first).await;
    assert_eq!((d.get::<String, _>("state"), d.get::<i32, _>("attempts")), ("pending".into(), 0));
    assert_eq!(d.get::<Uuid, _>("idempotency_key"), key, "the key is kept");
    let states = history_states(&app, d.get("id")).await;
    assert_eq!(states.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["sending", "failed", "pending"]);
    assert!(states[1].1.as_deref().unwrap().starts_with("http:400"), "the error stays in the history");
    assert!(states[2].1.as_deref().unwrap().contains("altinn-outbox retry after http:400"));
    assert_eq!(app.delivery_of(bad_org).await.get::<String, _>("state"), "failed", "another code is left alone");

    app.drain().await;
    assert_eq!(app.delivery_of(first).await.get::<String, _>("state"), "awaiting_status");
    assert_eq!(app.initialize_requests(), 4, "two refused, two sent");
    assert_eq!(app.fake.state().correspondences().len(), 2);
    assert!(app.fake.state().correspondences().iter().any(|c| c.idempotent_key == Some(key)));

    let out = run(&app, &["retry", &first.to_string()]).await;
    assert_eq!(code(&out), 4, "nothing failed to retry");
    assert!(stdout(&out).contains("not_failed"));
    let again = admin::Command::Retry { id: Some(bad_org), failed: false, code: None, output: json_flag() };
    assert_eq!(execute(&app, again).await.exit, Exit::Success, "a message's own failed delivery");
    assert_eq!(code(&run(&app, &["retry", "424242"]).await), 3);
}

#[tokio::test]
async fn retry_reads_the_status_again_where_altinn_has_the_correspondence_and_refuses_altinns_own_failure() {
    let app = app_publishing_late().await;
    let unread = app.insert("unread", &[ORG]).await;
    let refused = app.insert("refused", &[ORG]).await;
    app.drain().await;
    // Status reads that failed until the follow period was over (a letter sent 15 days ago
    // whose read fails now), and a correspondence Altinn failed itself.
    sqlx::query("UPDATE altinn_outbox.delivery SET sent_at = now() - interval '15 days' WHERE message_id = $1")
        .bind(unread)
        .execute(&app.pool)
        .await
        .unwrap();
    app.fake.faults().add(FaultRule::times(Endpoint::Overview, FaultKind::Status(503), 1));
    read_status_now(&app, unread).await;
    let cid: Uuid = app.delivery_of(refused).await.get("correspondence_id");
    assert!(app.fake.state().set_status(cid, "Failed"));
    read_status_now(&app, refused).await;
    let d = app.delivery_of(unread).await;
    assert_eq!(
        (d.get::<String, _>("state"), d.get::<String, _>("error_code")),
        ("unconfirmed".into(), "http:503".into()),
        "Altinn has it; a failed read never fails it"
    );
    let d = app.delivery_of(refused).await;
    assert_eq!(
        (d.get::<String, _>("state"), d.get::<String, _>("error_code")),
        ("failed".into(), "altinn:Failed".into())
    );

    let j = execute(&app, admin::Command::Retry { id: None, failed: true, code: None, output: json_flag() }).await;
    assert_eq!(j.exit, Exit::Refused, "one of them cannot be retried");
    assert_eq!((j.json["status_reread"].clone(), j.json["refused"].clone()), (json!(1), json!(1)));
    assert_eq!(app.delivery_of(refused).await.get::<String, _>("state"), "failed");
    let d = app.delivery_of(unread).await;
    assert_eq!(d.get::<String, _>("state"), "awaiting_status");
    assert!(d.get::<Option<chrono::DateTime<chrono::Utc>>, _>("next_poll_at").is_some());

    let reads = || {
        app.requests_to(
            "GET",
            &format!("/correspondence/api/v1/correspondence/{}", d.get::<Uuid, _>("correspondence_id")),
        )
    };
    let before = reads();
    app.fake.state().publish_all_now();
    app.drain().await;
    assert_eq!(app.delivery_of(unread).await.get::<String, _>("state"), "delivered");
    assert_eq!(reads(), before + 1, "one status read, no new send");
    assert_eq!(app.initialize_requests(), 2);
    assert_eq!(code(&run(&app, &["retry", &refused.to_string()]).await), 4);
}

#[tokio::test]
async fn retry_starts_a_failed_shared_upload_over_so_that_no_letter_goes_without_its_file() {
    let app = TestApp::start().await;
    app.fake.faults().add(FaultRule::times(Endpoint::AttachmentInit, FaultKind::Status(400), 1));
    let id = app.insert("with-file", &[ORG, PERSON]).await;
    app.add_file(id).await;
    app.drain().await;
    assert_eq!(app.count_in("failed").await, 2, "the failed upload failed both deliveries");

    let answer = execute(&app, admin::Command::Retry { id: Some(id), failed: false, code: None, output: json_flag() });
    let j = answer.await.json;
    assert_eq!(j["requeued"], 2);
    assert_eq!(j["deliveries"][0]["new_state"], "waiting_files");
    for _ in 0..3 {
        app.make_all_due().await;
        app.drain().await;
    }
    assert_eq!(app.count_in("awaiting_status").await + app.count_in("delivered").await, 2);
    assert_eq!(app.fake.state().attachment_inits(), 1, "the refused creation never reached the handler");
    let fake = app.fake.state().correspondences();
    assert!(fake.iter().all(|c| c.attachment_ids.len() == 1), "both letters carry the file");
    assert_eq!(app.initialize_requests(), 2);
}

#[tokio::test]
async fn cancel_of_a_pending_message_calls_nobody_and_it_is_never_sent() {
    let app = TestApp::start().await;
    let id = app.insert("cancel-me", &[ORG, PERSON]).await;
    let out = run(&app, &["cancel", &id.to_string(), "--json"]).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let outcomes: Vec<Value> =
        stdout_json(&out)["deliveries"].as_array().unwrap().iter().map(|d| d["outcome"].clone()).collect();
    assert_eq!(outcomes, [json!("cancelled"), json!("cancelled")]);
    assert_eq!(app.count_in("cancelled").await, 2);
    let d = app.delivery_of_any(id).await;
    assert_eq!(d.get::<i64, _>("lease_no"), 1, "the lease is bumped");
    assert!(d.get::<Option<chrono::DateTime<chrono::Utc>>, _>("finished_at").is_some());
    assert!(app.fake.state().requests().is_empty(), "no token, no request");

    assert_eq!(app.drain().await, 0);
    assert_eq!(app.initialize_requests(), 0);
    let again = execute(&app, admin::Command::Cancel { id, output: json_flag() }).await;
    assert_eq!(again.exit, Exit::Success, "cancelling twice is no error");
    assert_eq!(again.json["deliveries"][0]["outcome"], "nothing_to_do");
    assert_eq!(code(&run(&app, &["cancel", "424242"]).await), 3);
}

#[tokio::test]
async fn cancel_of_a_message_waiting_for_its_files_gives_the_upload_up() {
    let app = TestApp::start().await;
    let id = app.insert("with-file", &[ORG, PERSON]).await;
    app.add_file(id).await;
    assert_eq!(app.count_in("waiting_files").await, 2);

    assert_eq!(execute(&app, admin::Command::Cancel { id, output: json_flag() }).await.exit, Exit::Success);
    assert_eq!(app.count_in("cancelled").await, 2);
    let file: (String, String) =
        sqlx::query_as("SELECT upload_state, error_code FROM altinn_outbox.attachment WHERE message_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(file, ("failed".into(), "admin_cancelled".into()));
    assert_eq!(app.drain().await, 0);
    assert!(app.fake.state().requests().is_empty(), "nothing is uploaded for a cancelled letter");
}

#[tokio::test]
async fn cancel_purges_a_sent_letter_at_altinn_and_no_status_read_brings_it_back() {
    let app = app_publishing_late().await;
    let id = app.insert("purge-me", &[ORG]).await;
    app.drain().await;
    let cid: Uuid = app.delivery_of(id).await.get("correspondence_id");
    // A status read claimed before the cancel, answered after it.
    app.make_all_due().await;
    let polls = outbox::claim_polls(&app.pool, 10, "slow-worker", Duration::from_secs(30)).await.unwrap();
    assert_eq!(polls.len(), 1);

    let out = run(&app, &["cancel", &id.to_string()]).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("purged") && stdout(&out).contains(&cid.to_string()), "{}", stdout(&out));
    assert_eq!(app.fake.state().purge_calls(), 1);
    assert_eq!(app.fake.state().correspondences()[0].status, "PurgedByAltinn");
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "cancelled");
    assert_eq!(d.get::<String, _>("altinn_status"), "PurgedByAltinn");
    assert!(d.get::<Option<chrono::DateTime<chrono::Utc>>, _>("next_poll_at").is_none());

    let stale = Outcome::Polled(Box::new(PollUpdate {
        altinn_status: Some("ReadyForPublish".into()),
        next_poll_at: Some(chrono::Utc::now()),
        ..PollUpdate::new(DeliveryState::AwaitingStatus)
    }));
    let written = outbox::write_back(
        &app.pool,
        &[WriteBack { delivery_id: polls[0].delivery_id, lease_no: polls[0].lease_no, outcome: stale }],
    )
    .await
    .unwrap();
    assert_eq!(written, 0, "the read in flight is fenced out");
    let details = app.fake.state().details_calls();
    app.make_all_due().await;
    assert_eq!(app.drain().await, 0);
    assert_eq!(app.fake.state().details_calls(), details, "a cancelled row is not followed");
    assert_eq!(app.delivery_of(id).await.get::<String, _>("state"), "cancelled");
    assert_eq!(app.initialize_requests(), 1);
}

#[tokio::test]
async fn cancel_finds_a_letter_whose_answer_was_lost_and_purges_it() {
    let app = app_publishing_late().await;
    app.fake.faults().add(FaultRule::times(Endpoint::Initialize, FaultKind::CommitThenDrop, 1));
    let id = app.insert("lost-answer", &[ORG]).await;
    app.drain().await;
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "pending", "the worker does not know Altinn has it");

    let answer = execute(&app, admin::Command::Cancel { id, output: json_flag() }).await;
    assert_eq!(answer.exit, Exit::Success);
    let fake = app.fake.state().correspondences();
    assert_eq!(answer.json["deliveries"][0]["outcome"], "purged");
    assert_eq!(answer.json["deliveries"][0]["correspondence_id"], json!(fake[0].id));
    assert_eq!(fake[0].status, "PurgedByAltinn");
    assert_eq!((app.fake.state().lookups(), app.fake.state().purge_calls()), (1, 1));
    let d = app.delivery_of(id).await;
    assert_eq!(d.get::<String, _>("state"), "cancelled");
    assert_eq!(d.get::<Uuid, _>("correspondence_id"), fake[0].id);
    app.make_all_due().await;
    assert_eq!(app.drain().await, 0);
    assert_eq!(app.initialize_requests(), 1);
}

#[tokio::test]
async fn cancel_refuses_what_is_published_and_asks_to_try_again_while_a_worker_sends() {
    let app = app_publishing_late().await;
    let delivered = app.insert("delivered", &[ORG]).await;
    let published = app.insert("published", &[ORG]).await;
    app.drain().await;
    app.fake.state().publish_all_now();
    app.make_all_due().await;
    sqlx::query("UPDATE altinn_outbox.delivery SET next_poll_at = NULL WHERE message_id = $1")
        .bind(published)
        .execute(&app.pool)
        .await
        .unwrap();
    app.drain().await;
    assert_eq!(app.delivery_of(delivered).await.get::<String, _>("state"), "delivered");
    assert_eq!(app.delivery_of(published).await.get::<String, _>("state"), "awaiting_status");

    let out = run(&app, &["cancel", &delivered.to_string()]).await;
    assert_eq!(code(&out), 4);
    assert!(stdout(&out).contains("refused"));
    assert_eq!(app.fake.state().purge_calls(), 0, "a delivered letter is refused without asking Altinn");
    let out = run(&app, &["cancel", &published.to_string(), "--json"]).await;
    assert_eq!(code(&out), 4, "Altinn refuses the purge (1013)");
    assert_eq!(stdout_json(&out)["deliveries"][0]["outcome"], "refused");
    assert_eq!(app.fake.state().purge_calls(), 1);
    assert_eq!(app.delivery_of(published).await.get::<String, _>("state"), "awaiting_status");

    let sending = app.insert("sending", &[ORG]).await;
    let lease = outbox::SendLease {
        worker: "busy-worker",
        lease: Duration::from_secs(30),
        upload_lease: Duration::from_secs(30),
    };
    let claimed = outbox::claim_sends(&app.pool, 10, &lease, |_| uuid::Uuid::new_v4()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let out = run(&app, &["cancel", &sending.to_string()]).await;
    assert_eq!(code(&out), 75);
    assert!(stdout(&out).contains("in_flight"));
    assert_eq!(app.delivery_of(sending).await.get::<String, _>("state"), "sending");
    assert_eq!(app.initialize_requests(), 2);
}

#[tokio::test]
async fn prune_removes_old_finished_messages_with_their_history_and_leaves_the_rest() {
    let app = app_publishing_late().await;
    let old = app.insert("old", &[ORG, PERSON]).await;
    let recent = app.insert("recent", &[ORG]).await;
    let unfinished = app.insert("unfinished", &[ORG, PERSON]).await;
    let followed = app.insert("followed", &[ORG]).await;
    app.drain().await;
    app.fake.state().publish_all_now();
    app.make_all_due().await;
    app.drain().await;
    assert_eq!(app.count_in("delivered").await, 6);
    let age = |ids: Vec<i64>, days: i32| {
        let pool = app.pool.clone();
        async move {
            sqlx::query(
                "UPDATE altinn_outbox.delivery SET finished_at = now() - $2 * interval '1 day' WHERE message_id = ANY($1)",
            )
            .bind(&ids)
            .bind(days)
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "UPDATE altinn_outbox.message SET created_at = now() - $2 * interval '1 day' WHERE id = ANY($1)",
            )
            .bind(&ids)
            .bind(days + 1)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    age(vec![old, unfinished, followed], 100).await;
    age(vec![recent], 10).await;
    // One recipient of `unfinished` is still being followed; `followed` waits for its read.
    for (message, sql) in [
        (unfinished, "state = 'awaiting_status', finished_at = NULL, next_poll_at = now() + interval '1 hour'"),
        (followed, "next_poll_at = now() + interval '1 hour'"),
    ] {
        sqlx::query(&format!(
            "UPDATE altinn_outbox.delivery SET {sql} WHERE id = (SELECT min(id) FROM altinn_outbox.delivery WHERE message_id = $1)"
        ))
        .bind(message)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let old_history: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM altinn_outbox.history h JOIN altinn_outbox.delivery d ON d.id = h.delivery_id WHERE d.message_id = $1",
    )
    .bind(old)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(old_history >= 6);

    let out = run(&app, &["prune", "--older-than", "90d", "--dry-run", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let j = stdout_json(&out);
    assert_eq!(
        (j["dry_run"].clone(), j["messages"].clone(), j["deliveries"].clone()),
        (json!(true), json!(1), json!(2))
    );
    assert_eq!(j["history"], old_history);
    assert_eq!(count(&app, "message").await, 4, "a dry run deletes nothing");

    let report = outbox::admin::prune(&app.pool, Duration::from_secs(90 * 86_400)).await.unwrap();
    assert_eq!((report.messages, report.deliveries, report.history), (1, 2, old_history));
    let left: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM altinn_outbox.message ORDER BY id").fetch_all(&app.pool).await.unwrap();
    assert_eq!(left, [recent, unfinished, followed]);
    assert_eq!(count(&app, "delivery").await, 4);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM altinn_outbox.history h WHERE NOT EXISTS (SELECT 1 FROM altinn_outbox.delivery d WHERE d.id = h.delivery_id)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    let out = run(&app, &["prune", "--older-than", "2160h"]).await;
    assert_eq!((code(&out), stdout(&out).starts_with("deleted 0 messages")), (0, true), "{}", stdout(&out));
}

#[tokio::test]
async fn prune_works_in_batches_until_everything_old_is_gone() {
    let app = TestApp::start().await;
    app.insert_many(1_203).await;
    for sql in [
        "UPDATE altinn_outbox.delivery SET state = 'cancelled', finished_at = now() - interval '2 days'",
        "UPDATE altinn_outbox.message SET created_at = now() - interval '3 days'",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
    let report = outbox::admin::prune(&app.pool, Duration::from_secs(86_400)).await.unwrap();
    assert_eq!((report.messages, report.deliveries, report.history), (1_203, 1_203, 1_203));
    assert_eq!(count(&app, "message").await, 0);
}

#[tokio::test]
async fn a_delivery_deleted_by_hand_takes_its_own_history_and_reference_and_no_other() {
    let app = TestApp::start().await;
    let id = app.insert("by-hand", &[ORG, PERSON]).await;
    app.drain().await;
    let deliveries: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM altinn_outbox.delivery WHERE message_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let history_of = |delivery: i64| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM altinn_outbox.history WHERE delivery_id = $1")
                .bind(delivery)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let references = || async {
        sqlx::query_scalar::<_, i64>("SELECT delivery_id FROM altinn_outbox.delivery_reference ORDER BY 1")
            .fetch_all(&app.pool)
            .await
            .unwrap()
    };
    let kept = history_of(deliveries[1]).await;
    assert!(history_of(deliveries[0]).await >= 2 && kept >= 2);
    assert_eq!(references().await, deliveries);
    sqlx::query("DELETE FROM altinn_outbox.delivery WHERE id = $1")
        .bind(deliveries[0])
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!((history_of(deliveries[0]).await, history_of(deliveries[1]).await), (0, kept));
    assert_eq!(references().await, [deliveries[1]], "the deleted delivery's reference went with it");
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM altinn_outbox.{table}")).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn usage_errors_exit_2_and_an_unreachable_database_exits_1() {
    let app = TestApp::start().await;
    for args in [&["retry"][..], &["retry", "1", "--code", "1036"], &["prune", "--older-than", "90m"], &["show"]] {
        let out = run(&app, args).await;
        assert_eq!(code(&out), 2, "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let help = run(&app, &["cancel", "--help"]).await;
    assert!(stdout(&help).contains("75  temporary"), "{}", stdout(&help));

    let dir = tempfile::tempdir().unwrap();
    let mut config = app.config.clone();
    config.database.url = altinn_outbox::config::Secret::new("postgres://postgres@127.0.0.1:1/none");
    config.database.connect_timeout_ms = 2_000;
    let path = dir.path().join("worker.toml");
    std::fs::write(&path, crate::common::config_toml(&config)).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN).arg("--config").arg(&path).arg("status").output().unwrap()
    });
    let out = out.await.unwrap();
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("altinn-outbox: "));
}
