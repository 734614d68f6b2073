//! The daemon's loop (`worker::run`): claims ahead in batches, starts queued work as soon
//! as a request finishes, and gives back what it claimed but never started.

use std::time::{Duration, Instant};

use crate::common::{wait_until, TestApp};
use altinn_fake::{Endpoint, FaultKind, FaultRule};
use altinn_outbox::outbox::Outcome;
use altinn_outbox::worker;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

const HOUR_MS: u64 = 3_600_000;

#[tokio::test]
async fn queued_work_starts_when_a_request_finishes_not_when_a_timer_fires() {
    // Every timer of the loop is an hour: only a finished request can start the next one.
    let app = TestApp::with(crate::common::fake_config(), |c| {
        c.worker.concurrency = 2;
        c.worker.idle_poll_interval_ms = HOUR_MS;
        c.worker.sweep_interval_ms = HOUR_MS;
    })
    .await;
    app.fake.faults().add(FaultRule::always(Endpoint::Initialize, FaultKind::Delay(Duration::from_millis(20))));
    app.insert_many(30).await;
    let shutdown = CancellationToken::new();
    let loop_ = tokio::spawn(worker::run(app.ctx.clone(), shutdown.clone()));
    wait_until(Duration::from_secs(60), "all 30 sent", || async { app.count_in("awaiting_status").await == 30 }).await;
    shutdown.cancel();
    loop_.await.unwrap();
    assert_eq!(app.initialize_requests(), 30);
}

#[tokio::test]
async fn claims_are_batches_of_the_concurrency_at_least_while_there_is_a_backlog() {
    let app = TestApp::with(crate::common::fake_config(), |c| c.worker.concurrency = 8).await;
    app.insert_many(80).await;
    let shutdown = CancellationToken::new();
    let loop_ = tokio::spawn(worker::run(app.ctx.clone(), shutdown.clone()));
    wait_until(Duration::from_secs(60), "all 80 sent", || async { app.count_in("awaiting_status").await == 80 }).await;
    shutdown.cancel();
    loop_.await.unwrap();
    // A claim is one transaction, so its rows share the history's `at` (now() of the claim).
    let claims: Vec<(i64,)> = sqlx::query_as(
        "SELECT count(*) FROM altinn_outbox.history WHERE kind = 'state' AND new_value = 'sending' GROUP BY at ORDER BY at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(claims.iter().map(|c| c.0).sum::<i64>(), 80);
    assert!(claims.len() <= 80 / 8, "80 rows in batches of at least 8: {} claims, {claims:?}", claims.len());
    let (_last, before_last) = claims.split_last().unwrap();
    assert!(before_last.iter().all(|c| c.0 >= 8), "no claim of fewer than 8 rows but the last: {claims:?}");
}

#[tokio::test]
async fn shutdown_releases_claimed_work_that_never_started() {
    let app = TestApp::with(crate::common::fake_config(), |c| c.worker.concurrency = 2).await;
    app.fake.faults().add(FaultRule::always(Endpoint::Initialize, FaultKind::Delay(Duration::from_millis(1500))));
    app.insert_many(10).await;
    let shutdown = CancellationToken::new();
    let loop_ = tokio::spawn(worker::run(app.ctx.clone(), shutdown.clone()));
    // Two requests in flight, the other eight claimed and queued behind them.
    wait_until(Duration::from_secs(20), "all claimed", || async { app.count_in("sending").await == 10 }).await;
    let arrived = || app.fake.state().initialize_arrivals().len();
    wait_until(Duration::from_secs(20), "two requests out", || async { arrived() == 2 }).await;
    shutdown.cancel();
    loop_.await.unwrap();

    assert_eq!((arrived(), app.initialize_requests()), (2, 2), "the queued rows were never sent");
    assert_eq!(app.count_in("awaiting_status").await, 2, "the two in flight finished within the grace period");
    assert_eq!(app.count_in("sending").await, 0, "no lease is left for another instance to wait out");
    let pending: Vec<(i32, Option<String>)> =
        sqlx::query_as("SELECT attempts, locked_by FROM altinn_outbox.delivery WHERE state = 'pending' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(pending.len(), 8);
    assert!(pending.iter().all(|(attempts, locked_by)| *attempts == 0 && locked_by.is_none()), "{pending:?}");
}

#[tokio::test]
async fn a_job_that_waited_past_half_its_lease_is_given_back_without_a_request() {
    let app = TestApp::start().await;
    app.insert_many(1).await;
    let job = worker::claim(&app.ctx, 1).await.unwrap().pop().expect("one send claimed");
    let lease = app.ctx.settings.lease;
    let result = worker::process_claimed(&app.ctx, job, Instant::now() - lease / 2).await.expect("a send writes back");
    match &result.outcome {
        Outcome::Retry { code, refund, .. } => assert_eq!((code.as_str(), *refund), ("not_started", true)),
        other => panic!("expected a deferred retry, got {other:?}"),
    }
    assert_eq!(app.initialize_requests(), 0);
    altinn_outbox::outbox::write_back(&app.pool, &[result]).await.unwrap();
    let d = app.delivery_of_any(1).await;
    assert_eq!((d.get::<String, _>("state"), d.get::<i32, _>("attempts")), ("pending".into(), 0));
}
