//! Scheduled housekeeping against the real PostgreSQL: each scheduled time runs once across
//! instances, a long gap runs a missed schedule once, and what the sweep does.

use std::time::Duration;

use crate::common::{TestApp, ORG};
use altinn_outbox::config::SchedulesConfig;
use altinn_outbox::housekeeping::{self, Scheduler, Schedules, Task};
use chrono::{DateTime, Local, Timelike, Utc};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

fn only(task: Task, expression: &str) -> Schedules {
    let mut c =
        SchedulesConfig { prune: String::new(), sweep: String::new(), summary: String::new(), ..Default::default() };
    match task {
        Task::Prune => c.prune = expression.into(),
        Task::Sweep => c.sweep = expression.into(),
        Task::Summary => c.summary = expression.into(),
    }
    Schedules::from_config(&c)
}

async fn runs(app: &TestApp) -> Vec<(String, DateTime<Utc>, String, Option<String>, Option<String>)> {
    sqlx::query("SELECT name, slot, instance, outcome, detail FROM altinn_outbox.schedule_run ORDER BY slot")
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test]
async fn two_instances_run_each_scheduled_time_once() {
    let app = TestApp::start().await;
    let (a, b) = (app.second_worker("instance-a"), app.second_worker("instance-b"));
    let schedules = only(Task::Sweep, "* * * * * *");
    let (mut sa, mut sb) = (Scheduler::new(schedules.clone()), Scheduler::new(schedules));
    let t0 = Utc::now().with_nanosecond(0).unwrap();
    sa.register(&a, t0).await.unwrap();
    sb.register(&b, t0).await.unwrap();

    let mut ran_by = (0, 0);
    for second in 1..=20 {
        let now = t0 + chrono::Duration::seconds(second) + chrono::Duration::milliseconds(300);
        let (ra, rb) = tokio::join!(sa.tick(&a, now), sb.tick(&b, now));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.len() + rb.len(), 1, "second {second}: exactly one instance ran it ({ra:?}, {rb:?})");
        ran_by.0 += ra.len();
        ran_by.1 += rb.len();
        // Asking again for the same time runs nothing.
        assert!(sa.tick(&a, now).await.unwrap().is_empty() && sb.tick(&b, now).await.unwrap().is_empty());
    }
    let runs = runs(&app).await;
    assert_eq!(runs.len(), 20);
    for (i, (name, slot, _, outcome, _)) in runs.iter().enumerate() {
        assert_eq!(name, "sweep");
        assert_eq!(*slot, t0 + chrono::Duration::seconds(i as i64 + 1), "one run per scheduled time");
        assert_eq!(outcome.as_deref(), Some("ok"));
    }
    assert_eq!(ran_by.0 + ran_by.1, 20);
}

#[tokio::test]
async fn two_daemon_loops_share_a_schedule_without_running_it_twice() {
    let app = TestApp::start().await;
    let shutdown = CancellationToken::new();
    let loops: Vec<_> = ["loop-a", "loop-b"]
        .into_iter()
        .map(|name| {
            tokio::spawn(housekeeping::run(app.second_worker(name), only(Task::Sweep, "* * * * * *"), shutdown.clone()))
        })
        .collect();
    let start = std::time::Instant::now();
    while runs(&app).await.len() < 4 {
        assert!(start.elapsed() < Duration::from_secs(30), "the schedule never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    for l in loops {
        l.await.unwrap();
    }
    let runs = runs(&app).await;
    let slots: std::collections::BTreeSet<_> = runs.iter().map(|r| r.1).collect();
    assert_eq!(slots.len(), runs.len(), "no scheduled time ran twice");
    for pair in runs.windows(2) {
        assert_eq!(pair[1].1 - pair[0].1, chrono::Duration::seconds(1), "no second was skipped while both ran");
    }
}

#[tokio::test]
async fn a_missed_schedule_runs_once_after_a_long_gap() {
    let app = TestApp::start().await;
    let mut scheduler = Scheduler::new(only(Task::Sweep, "0 30 3 * * *"));
    let t0 = Utc::now();
    scheduler.register(&app.ctx, t0).await.unwrap();
    assert!(scheduler.tick(&app.ctx, t0).await.unwrap().is_empty(), "a new schedule waits for its next time");

    // Ten days later (the host was down): one run, for the latest 03:30.
    let later = t0 + chrono::Duration::days(10);
    let ran = scheduler.tick(&app.ctx, later).await.unwrap();
    assert_eq!(ran.len(), 1, "{ran:?}");
    let slot = ran[0].1;
    let local = slot.with_timezone(&Local);
    assert_eq!((local.hour(), local.minute(), local.second()), (3, 30, 0));
    assert!(slot <= later && later - slot < chrono::Duration::days(1), "the latest missed time, not the first");
    // A fresh instance (a restart) does not run it again.
    let mut restarted = Scheduler::new(only(Task::Sweep, "0 30 3 * * *"));
    assert!(restarted.tick(&app.ctx, later + chrono::Duration::minutes(1)).await.unwrap().is_empty());
    assert_eq!(runs(&app).await.len(), 1);
}

#[tokio::test]
async fn the_sweep_reclaims_expired_leases_and_reports_stuck_rows() {
    let app = TestApp::start().await;
    let leased = app.insert("leased", &[ORG]).await;
    let waiting = app.insert("waiting", &[ORG]).await;
    app.insert("fresh", &[ORG]).await;
    sqlx::query(
        "UPDATE altinn_outbox.delivery SET state = 'sending', attempts = 1, locked_by = 'gone',
                locked_until = now() - interval '1 minute' WHERE message_id = $1",
    )
    .bind(leased)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE altinn_outbox.delivery SET next_attempt_at = now() - interval '2 hours' WHERE message_id = $1")
        .bind(waiting)
        .execute(&app.pool)
        .await
        .unwrap();

    let mut scheduler = Scheduler::new(only(Task::Sweep, "0 * * * * *"));
    let now = Utc::now();
    scheduler.register(&app.ctx, now - chrono::Duration::minutes(2)).await.unwrap();
    let ran = scheduler.tick(&app.ctx, now).await.unwrap();
    assert_eq!(ran.len(), 1);

    let d = app.delivery_of(leased).await;
    assert_eq!(d.get::<String, _>("state"), "pending", "the expired lease went back to the queue");
    assert_eq!(d.get::<Option<String>, _>("error_code").as_deref(), Some("lease_expired"));
    let (_, _, _, outcome, detail) = runs(&app).await.remove(0);
    assert_eq!(outcome.as_deref(), Some("ok"));
    // The row due two hours ago is stuck (default threshold 60 min); the fresh one is not.
    assert_eq!(detail.as_deref(), Some("reclaimed 1 deliveries and 0 uploads; 1 stuck"));
}

#[tokio::test]
async fn the_prune_schedule_deletes_old_finished_messages_and_the_summary_counts() {
    let app = TestApp::start().await;
    let old = app.insert("old-delivered", &[ORG]).await;
    let recent = app.insert("recent-delivered", &[ORG]).await;
    let unsent = app.insert("old-unsent", &[ORG]).await;
    app.drain().await;
    sqlx::query(
        "UPDATE altinn_outbox.delivery SET state = 'delivered', next_poll_at = NULL,
                finished_at = now() - CASE WHEN message_id = $1 THEN interval '100 days' ELSE interval '1 day' END
         WHERE message_id IN ($1, $2)",
    )
    .bind(old)
    .bind(recent)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE altinn_outbox.delivery SET state = 'pending' WHERE message_id = $1")
        .bind(unsent)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE altinn_outbox.message SET created_at = now() - interval '101 days' WHERE id IN ($1, $2)")
        .bind(old)
        .bind(unsent)
        .execute(&app.pool)
        .await
        .unwrap();

    let old_delivery: i64 = app.delivery_of(old).await.get("id");
    let history_before: i64 = sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.history WHERE delivery_id = $1")
        .bind(old_delivery)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(history_before > 0);
    let now = Utc::now();
    let mut prune = Scheduler::new(only(Task::Prune, "0 * * * * *"));
    prune.register(&app.ctx, now - chrono::Duration::minutes(2)).await.unwrap();
    assert_eq!(prune.tick(&app.ctx, now).await.unwrap().len(), 1);
    let left: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM altinn_outbox.message ORDER BY id").fetch_all(&app.pool).await.unwrap();
    assert_eq!(left, [recent, unsent], "only the old finished message went (default retention 90 days)");
    let history_of_old: i64 = sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.history WHERE delivery_id = $1")
        .bind(old_delivery)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(history_of_old, 0, "its history went with it");
    let detail = runs(&app).await.remove(0).4.unwrap();
    assert!(detail.starts_with("deleted 1 messages, 1 deliveries, "), "{detail}");

    let mut summary = Scheduler::new(only(Task::Summary, "0 * * * * *"));
    summary.register(&app.ctx, now - chrono::Duration::minutes(2)).await.unwrap();
    assert_eq!(summary.tick(&app.ctx, now).await.unwrap().len(), 1);
    let detail = runs(&app).await.into_iter().find(|r| r.0 == "summary").unwrap().4.unwrap();
    assert_eq!(detail, "2 messages, 1 pending, 0 failed in the last 24 h");
}
