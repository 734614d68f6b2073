//! deploy/roles.sql against the real PostgreSQL: the producer role inserts letters and reads
//! results and can change nothing else; the worker role runs the whole pipeline (sends, file
//! uploads, status reads, sweeps) and can do nothing it does not need. Roles are cluster-wide
//! while each test has a database of its own, so every test applies the script under role
//! names of its own, and drops them again.

use std::time::Duration;

use crate::common::roles::{assert_denied, insert_with_file, value, Roles, PRODUCER};
use crate::common::{TestApp, ORG, RESOURCE};
use altinn_outbox::config::SchedulesConfig;
use altinn_outbox::housekeeping::{Scheduler, Schedules};
use altinn_outbox::outbox::admin::{self, RetryScope};
use altinn_outbox::worker::Context;
use altinn_outbox::{outbox, worker};
use chrono::{Timelike, Utc};
use sqlx::postgres::{PgListener, PgPool};
use uuid::Uuid;

/// A test database with the roles applied, a producer's pool and the worker's context.
/// Bound in this order (the roles to a named variable, not `_`), the roles are dropped when
/// the test ends, before the database.
async fn start() -> (TestApp, Roles, PgPool, Context) {
    let app = TestApp::start().await;
    let roles = Roles::apply(&app).await;
    let producer = roles.pool(PRODUCER).await;
    let ctx = roles.worker_context(&app);
    (app, roles, producer, ctx)
}

const SECOND_ORG: &str = "910753614";

#[tokio::test]
async fn the_producer_inserts_letters_and_reads_results_and_changes_nothing_else() {
    let app = TestApp::start().await;
    let roles = Roles::apply(&app).await;
    let producer = roles.pool(PRODUCER).await;

    // Two recipients and a file: the triggers create the deliveries and route the file to
    // the shared upload, writing what the producer itself may not.
    let id = insert_with_file(&producer, "roles-1", &[ORG, SECOND_ORG]).await;
    let request: i64 = sqlx::query_scalar(
        "SELECT altinn_outbox.insert_request(jsonb_build_object('correspondence', jsonb_build_object(
             'resourceId', $1::text, 'sendersReference', 'roles-2',
             'content', jsonb_build_object('messageTitle', 'Vedtak', 'messageBody', 'Innvilget.')),
           'recipients', jsonb_build_array($2::text)))",
    )
    .bind(RESOURCE)
    .bind(ORG)
    .fetch_one(&producer)
    .await
    .expect("the producer calls insert_request");

    let states: Vec<String> = sqlx::query_scalar(
        "SELECT state FROM altinn_outbox.delivery_status WHERE message_id = $1 ORDER BY delivery_id",
    )
    .bind(id)
    .fetch_all(&producer)
    .await
    .unwrap();
    assert_eq!(states, ["waiting_files", "waiting_files"]);
    let upload_state: String =
        value(&producer, "SELECT upload_state FROM altinn_outbox.attachment WHERE message_id = $1", id).await;
    assert_eq!(upload_state, "pending", "the file was routed to the shared upload");
    let history: i64 = value(
        &producer,
        "SELECT count(*) FROM altinn_outbox.history h JOIN altinn_outbox.delivery d ON d.id = h.delivery_id
         WHERE d.message_id = $1 AND h.new_value = 'waiting_files'",
        id,
    )
    .await;
    assert_eq!(history, 2, "the routing was recorded in history");
    let message_state: String =
        value(&producer, "SELECT state FROM altinn_outbox.message_status WHERE message_id = $1", request).await;
    assert_eq!(message_state, "pending");

    for sql in [
        "UPDATE altinn_outbox.delivery SET state = 'failed'",
        "DELETE FROM altinn_outbox.delivery",
        "UPDATE altinn_outbox.message SET title = 'changed'",
        "DELETE FROM altinn_outbox.message",
        "UPDATE altinn_outbox.attachment SET upload_state = 'published'",
        "INSERT INTO altinn_outbox.history (delivery_id, kind) SELECT id, 'state' FROM altinn_outbox.delivery",
        "INSERT INTO altinn_outbox.delivery (message_id, recipient, recipient_key, resource_id, senders_reference, resend)
         SELECT id, 'x', 'x', 'x', 'x', 0 FROM altinn_outbox.message",
        "TRUNCATE altinn_outbox.message CASCADE",
        "SELECT altinn_outbox.create_deliveries()",
    ] {
        assert_denied(&producer, sql).await;
    }
    // The upload bookkeeping is the worker's: a producer cannot claim a file is uploaded.
    let forged = format!(
        "INSERT INTO altinn_outbox.attachment (message_id, file_name, senders_reference, content, upload_state)
         VALUES ({id}, 'b.pdf', 'b', '\\x00', 'published')"
    );
    assert_denied(&producer, &forged).await;
    let deliveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.delivery").fetch_one(&app.pool).await.unwrap();
    assert_eq!(deliveries, 3, "nothing the producer was refused happened");
    producer.close().await;
}

#[tokio::test]
async fn the_worker_role_runs_the_pipeline_end_to_end_and_nothing_more() {
    let (app, _roles, producer, ctx) = start().await;
    assert!(outbox::migrations_current(&ctx.pool).await.expect("the worker reads the ledger"));

    // The wake-up of a producer's insert reaches the worker's LISTEN.
    let mut listener = PgListener::connect_with(&ctx.pool).await.unwrap();
    listener.listen(outbox::NOTIFY_CHANNEL).await.expect("the worker listens");
    let shared = insert_with_file(&producer, "roles-shared", &[ORG, SECOND_ORG]).await;
    let single = insert_with_file(&producer, "roles-single", &[ORG]).await;
    tokio::time::timeout(Duration::from_secs(30), listener.recv()).await.expect("notified").unwrap();

    for _ in 0..4 {
        worker::drain_until_empty(&ctx).await.expect("the worker claims, sends and writes back");
        app.fake.state().complete_malware_scans_now();
        app.make_all_due().await;
    }
    app.fake.state().publish_all_now();
    app.make_all_due().await;
    worker::drain_until_empty(&ctx).await.unwrap();

    assert_eq!(app.count_in("delivered").await, 3, "{:?}", app.states().await);
    assert_eq!(app.fake.state().attachment_inits(), 1, "one shared upload for two recipients");
    assert_eq!(app.fake.state().attachment_uploads(), 1);
    assert_eq!(app.fake.state().multipart_uploads(), 1, "the single recipient's file went with its request");
    assert_eq!(app.initialize_requests(), 2);
    for message_id in [shared, single] {
        let states: Vec<String> = sqlx::query_scalar(
            "SELECT h.new_value FROM altinn_outbox.history h JOIN altinn_outbox.delivery d ON d.id = h.delivery_id
             WHERE d.message_id = $1 AND h.kind = 'state' AND d.recipient = $2 ORDER BY h.id",
        )
        .bind(message_id)
        .bind(ORG)
        .fetch_all(&ctx.pool)
        .await
        .unwrap();
        assert_eq!(states.last().map(String::as_str), Some("delivered"), "{states:?}");
        assert!(states.iter().any(|s| s == "sending"), "{states:?}");
    }
    // The sweeps and the release at shutdown.
    outbox::reclaim_expired_leases(&ctx.pool).await.expect("lease sweep");
    outbox::uploads::reclaim_dead_uploads(&ctx.pool).await.expect("upload sweep");
    outbox::release(&ctx.pool, &[1], &[0]).await.expect("release");

    for sql in [
        "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
         VALUES ('r', 'worker-insert', ARRAY['991825827'], 't', 'b')",
        "UPDATE altinn_outbox.message SET title = 'changed'",
        "UPDATE altinn_outbox.delivery SET recipient = '910753614'",
        "UPDATE altinn_outbox.attachment SET content = '\\x00'",
        "DELETE FROM altinn_outbox.message",
        "DELETE FROM altinn_outbox.delivery",
        "DELETE FROM altinn_outbox.history",
        "INSERT INTO altinn_outbox.history (delivery_id, kind) SELECT id, 'state' FROM altinn_outbox.delivery",
        "TRUNCATE altinn_outbox.history",
        "DROP TABLE altinn_outbox.history",
        "ALTER TABLE altinn_outbox.delivery ADD COLUMN x int",
        "CREATE TABLE altinn_outbox.x (id int)",
        "DELETE FROM _sqlx_migrations",
    ] {
        assert_denied(&ctx.pool, sql).await;
    }
    // Pruning goes through the function that keeps the rule: the finished message goes with its
    // deliveries and history; the one still followed (its status read again in an hour) stays.
    sqlx::query(
        "UPDATE altinn_outbox.delivery SET next_poll_at = now() + interval '1 hour'
         WHERE id = (SELECT min(id) FROM altinn_outbox.delivery WHERE message_id = $1)",
    )
    .bind(shared)
    .execute(&app.pool)
    .await
    .unwrap();
    let shared_history: i64 = value(
        &app.pool,
        "SELECT count(*) FROM altinn_outbox.history h JOIN altinn_outbox.delivery d ON d.id = h.delivery_id
         WHERE d.message_id = $1",
        shared,
    )
    .await;
    let report = admin::prune(&ctx.pool, Duration::ZERO).await.expect("prune as the worker");
    assert_eq!((report.messages, report.deliveries), (1, 1), "{report:?}");
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM altinn_outbox.message").fetch_all(&app.pool).await.unwrap();
    assert_eq!(left, [shared]);
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.history").fetch_one(&app.pool).await.unwrap();
    assert_eq!(history, shared_history, "the pruned message's history went with it");
    listener.unlisten_all().await.unwrap();
    drop(listener);
    ctx.pool.close().await;
    producer.close().await;
}

#[tokio::test]
async fn the_worker_role_runs_the_housekeeping_and_the_admin_commands() {
    let (app, _roles, producer, ctx) = start().await;
    // One letter delivered, one failed before it was sent, one never claimed.
    let delivered = insert_with_file(&producer, "hk-delivered", &[ORG]).await;
    worker::drain_until_empty(&ctx).await.unwrap();
    app.fake.state().publish_all_now();
    app.make_all_due().await;
    worker::drain_until_empty(&ctx).await.unwrap();
    let failed = insert_with_file(&producer, "hk-failed", &[ORG]).await;
    sqlx::query(
        "UPDATE altinn_outbox.delivery SET state = 'failed', error_code = 'http:400', finished_at = now()
         WHERE message_id = $1",
    )
    .bind(failed)
    .execute(&app.pool)
    .await
    .unwrap();
    let unsent = insert_with_file(&producer, "hk-unsent", &[ORG]).await;

    let summary = admin::summary(&ctx.pool).await.expect("status");
    assert_eq!(summary.messages, 3);
    assert!(admin::message(&ctx.pool, delivered).await.expect("show").is_some());
    assert_eq!(admin::deliveries(&ctx.pool, delivered).await.expect("show").len(), 1);
    assert!(!admin::history(&ctx.pool, delivered).await.expect("show").is_empty());
    outbox::counts::counts(&ctx.pool).await.expect("the metrics' gauges");
    let retried = admin::retry(&ctx.pool, &RetryScope::Failed { code: None }).await.expect("retry");
    assert_eq!(retried.iter().map(|r| r.new_state.as_str()).collect::<Vec<_>>(), ["pending"]);
    assert_eq!(admin::cancel_never_sent(&ctx.pool, unsent).await.expect("cancel").len(), 1);
    let target = &admin::cancel_targets(&ctx.pool, failed).await.expect("cancel")[0];
    assert!(admin::mark_purged(&ctx.pool, target.id, Uuid::new_v4()).await.expect("cancel with purge"));
    assert!(!admin::cancel_unsent(&ctx.pool, target.id, target.lease_no).await.expect("cancel"));
    admin::prune_preview(&ctx.pool, Duration::ZERO).await.expect("prune --dry-run");

    // Every schedule due at once, and every message finished two days ago.
    let config = SchedulesConfig {
        prune: "* * * * * *".into(),
        sweep: "* * * * * *".into(),
        summary: "* * * * * *".into(),
        retention_days: 1,
        ..Default::default()
    };
    let age = "UPDATE altinn_outbox.message SET created_at = now() - interval '2 days';
               UPDATE altinn_outbox.delivery SET finished_at = now() - interval '2 days'";
    sqlx::raw_sql(age).execute(&app.pool).await.unwrap();
    let mut scheduler = Scheduler::new(Schedules::from_config(&config));
    let t0 = Utc::now().with_nanosecond(0).unwrap();
    scheduler.register(&ctx, t0).await.expect("register the schedules");
    let ran = scheduler.tick(&ctx, t0 + chrono::Duration::seconds(2)).await.expect("housekeeping");
    assert_eq!(ran.len(), 3, "{ran:?}");
    let outcomes: Vec<Option<String>> =
        sqlx::query_scalar("SELECT outcome FROM altinn_outbox.schedule_run").fetch_all(&app.pool).await.unwrap();
    assert_eq!(outcomes, vec![Some("ok".to_string()); 3]);
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM altinn_outbox.message").fetch_all(&app.pool).await.unwrap();
    assert!(left.is_empty(), "every message was finished and is pruned: {left:?}");
    ctx.pool.close().await;
    producer.close().await;
}

#[tokio::test]
async fn a_second_run_of_the_script_takes_back_privileges_granted_by_hand() {
    let app = TestApp::start().await;
    let roles = Roles::apply(&app).await;
    let stray = format!("GRANT UPDATE, DELETE ON altinn_outbox.delivery TO {}", roles.group(PRODUCER));
    sqlx::query(&stray).execute(&app.pool).await.unwrap();
    roles.run_script(&app.pool).await;
    let producer = roles.pool(PRODUCER).await;
    assert_denied(&producer, "DELETE FROM altinn_outbox.delivery").await;
    producer.close().await;
}
