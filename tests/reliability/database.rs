//! Scenario 5: the database goes away mid-run (every connection killed, new ones refused for
//! a while) and comes back.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::common::server_url;
use crate::harness::{fake, long, report, Cluster};

/// Kills every connection to the test database and refuses new ones (or allows them again).
async fn set_database_available(admin: &PgPool, db: &str, available: bool) {
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS {available}")).execute(admin).await.unwrap();
    if !available {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(db)
            .execute(admin)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_database_goes_away() {
    let rows = if long() { 10_000 } else { 3_000 };
    let away = Duration::from_secs(if long() { 60 } else { 10 });
    let mut c = Cluster::start(fake(), |_| {}).await;
    c.insert(rows, "dbgone").await;
    c.spawn(2);
    let app = &c.app;
    c.wait_until("sending under way", Duration::from_secs(30), || async { app.initialize_requests() >= 300 }).await;

    let admin = PgPool::connect(&format!("{}/postgres", server_url())).await.unwrap();
    let log_lines_before = db_errors(&c.logs());
    set_database_available(&admin, &app.db_name, false).await;
    tokio::time::sleep(away).await;
    let requests_while_away = app.initialize_requests();
    let errors_while_away = db_errors(&c.logs()) - log_lines_before;
    set_database_available(&admin, &app.db_name, true).await;
    let back = Instant::now();
    let resumed = c
        .wait_until("sending resumed after the database came back", Duration::from_secs(30), || async {
            app.initialize_requests() > requests_while_away
        })
        .await;
    c.wait_until_finished(Duration::from_secs(180)).await;
    let finished = back.elapsed();
    assert!(c.exited().is_empty(), "no worker exited while the database was away");
    c.stop_all().await;
    admin.close().await;

    let t = c.tally().await;
    t.assert_exactly_once();
    assert_eq!(t.delivered, t.deliveries);
    assert!(resumed < Duration::from_secs(8), "resumed {resumed:?} after the database's return");
    // Each worker waits 0.2 s, doubling to 4 s, between tries: a handful, not thousands.
    let per_worker_per_s = errors_while_away as f64 / 2.0 / away.as_secs_f64();
    assert!(per_worker_per_s < 1.0, "{errors_while_away} failed claims in {away:?}: a hot loop?");
    report(
        "5 database away",
        &t,
        &format!("connections killed, refused {} s", away.as_secs()),
        &format!(
            "{errors_while_away} failed claims while away ({per_worker_per_s:.1}/s per worker); \
             resumed {:.1} s and done {:.1} s after its return",
            resumed.as_secs_f64(),
            finished.as_secs_f64()
        ),
    );
}

/// Failed claims, as logged: one per try of the loop while the database is away.
fn db_errors(logs: &str) -> usize {
    logs.lines().filter(|l| l.contains("claiming failed")).count()
}
