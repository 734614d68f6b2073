//! Scheduled housekeeping (worker.toml `[schedules]`): pruning old finished messages, a sweep
//! that reclaims expired leases and reports stuck rows, and a daily summary line.
//!
//! Every instance runs the same schedules; the database decides which instance runs a
//! scheduled time (see `outbox::schedule`), so each runs once however many instances there
//! are. Only the latest due time is ever claimed: after a long gap (the host was down) a
//! missed schedule runs once, not once per missed time.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::SchedulesConfig;
use crate::outbox::schedule as db;
use crate::outbox::{DeliveryState, RunOutcome};
use crate::worker::Context;

/// Schedules are re-checked at least this often, so that a clock step (NTP, a suspended VM)
/// delays a run by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Database errors while claiming are retried after this pause (the worker loop reports the
/// database itself).
const DB_RETRY: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    Prune,
    Sweep,
    Summary,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Prune => "prune",
            Task::Sweep => "sweep",
            Task::Summary => "summary",
        }
    }
}

/// The configured schedules with their parsed expressions, and the settings their tasks use.
#[derive(Clone, Debug)]
pub struct Schedules {
    entries: Vec<(Task, cron::Schedule)>,
    retention: chrono::Duration,
    stuck_after: chrono::Duration,
}

impl Schedules {
    /// Expects a validated config (expressions parse).
    pub fn from_config(c: &SchedulesConfig) -> Schedules {
        let entries = [(Task::Prune, &c.prune), (Task::Sweep, &c.sweep), (Task::Summary, &c.summary)]
            .into_iter()
            .filter(|(_, e)| !e.trim().is_empty())
            .map(|(task, e)| (task, e.parse().expect("validated cron expression")))
            .collect();
        Schedules {
            entries,
            retention: chrono::Duration::days(c.retention_days.into()),
            stuck_after: chrono::Duration::minutes(c.stuck_after_min.into()),
        }
    }

    /// The latest scheduled time of `task` at or before `now`, in local time.
    fn latest_due(schedule: &cron::Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = now.with_timezone(&Local) + chrono::Duration::milliseconds(1);
        schedule.after(&after).next_back().map(|t| t.with_timezone(&Utc))
    }

    /// The next scheduled time of any task after `now`.
    fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&Local);
        self.entries.iter().filter_map(|(_, s)| s.after(&local).next()).map(|t| t.with_timezone(&Utc)).min()
    }
}

/// One instance's view of the schedules: what it already tried, so that a tick asks the
/// database only when a new time has come.
pub struct Scheduler {
    schedules: Schedules,
    tried: HashMap<Task, DateTime<Utc>>,
}

impl Scheduler {
    pub fn new(schedules: Schedules) -> Scheduler {
        Scheduler { schedules, tried: HashMap::new() }
    }

    /// Makes every schedule known to the database (a new one waits for its next time).
    pub async fn register(&self, ctx: &Context, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        for (task, _) in &self.schedules.entries {
            db::register(&ctx.pool, task.name(), now).await?;
        }
        Ok(())
    }

    /// Runs every task whose latest due time this instance wins; returns what it ran.
    pub async fn tick(&mut self, ctx: &Context, now: DateTime<Utc>) -> Result<Vec<(Task, DateTime<Utc>)>, sqlx::Error> {
        let mut ran = Vec::new();
        for &(task, ref schedule) in &self.schedules.entries {
            let Some(slot) = Schedules::latest_due(schedule, now) else { continue };
            if self.tried.get(&task).is_some_and(|t| *t >= slot) {
                continue;
            }
            let claimed = db::claim_slot(&ctx.pool, task.name(), slot, &ctx.settings.instance).await?;
            self.tried.insert(task, slot);
            if let Some(run_id) = claimed {
                let result = perform(&self.schedules, ctx, task, now).await;
                let (outcome, detail) = match &result {
                    Ok(detail) => (RunOutcome::Ok, detail.as_str()),
                    Err(e) => (RunOutcome::Failed, e.as_str()),
                };
                if outcome == RunOutcome::Failed {
                    warn!(schedule = task.name(), %slot, error = detail, "scheduled housekeeping failed");
                }
                db::finish_run(&ctx.pool, run_id, outcome, detail).await?;
                ran.push((task, slot));
            }
        }
        Ok(ran)
    }

    /// How long to sleep before the next tick.
    fn sleep_after(&self, now: DateTime<Utc>) -> Duration {
        self.schedules
            .next_due(now)
            .and_then(|t| (t - now).to_std().ok())
            .map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP))
            .max(Duration::from_millis(10))
    }
}

async fn perform(schedules: &Schedules, ctx: &Context, task: Task, now: DateTime<Utc>) -> Result<String, String> {
    match task {
        Task::Sweep => sweep(ctx, now - schedules.stuck_after).await,
        Task::Prune => prune(ctx, schedules.retention).await,
        Task::Summary => summary(ctx).await,
    }
}

/// The daemon's housekeeping task: runs until `shutdown`.
pub async fn run(ctx: std::sync::Arc<Context>, schedules: Schedules, shutdown: CancellationToken) {
    let mut scheduler = Scheduler::new(schedules);
    while let Err(e) = scheduler.register(&ctx, Utc::now()).await {
        warn!(error = %e, "cannot register the housekeeping schedules; trying again");
        if tokio::time::timeout(DB_RETRY, shutdown.cancelled()).await.is_ok() {
            return;
        }
    }
    while !shutdown.is_cancelled() {
        let wait = match scheduler.tick(&ctx, Utc::now()).await {
            Ok(_) => scheduler.sleep_after(Utc::now()),
            Err(e) => {
                warn!(error = %e, "housekeeping could not reach the database; trying again");
                DB_RETRY
            }
        };
        let _ = tokio::time::timeout(wait, shutdown.cancelled()).await;
    }
}

async fn sweep(ctx: &Context, overdue_before: DateTime<Utc>) -> Result<String, String> {
    let (deliveries, uploads) = crate::worker::reclaim(ctx).await.ok_or("the database could not be reached")?;
    let stuck = db::stuck(&ctx.pool, overdue_before).await.map_err(|e| e.to_string())?;
    for (state, count, ids) in &stuck.by_state {
        warn!(state = state.as_str(), count, first_ids = ?ids, overdue_since = %overdue_before, "deliveries stuck");
    }
    Ok(format!("reclaimed {deliveries} deliveries and {uploads} uploads; {} stuck", stuck.total()))
}

async fn prune(ctx: &Context, retention: chrono::Duration) -> Result<String, String> {
    let older_than = retention.to_std().map_err(|e| e.to_string())?;
    let report = crate::outbox::admin::prune(&ctx.pool, older_than).await.map_err(|e| e.to_string())?;
    let cutoff = report.cutoff.unwrap_or_else(Utc::now);
    let runs = db::prune_runs(&ctx.pool, cutoff).await.map_err(|e| e.to_string())?;
    info!(messages = report.messages, deliveries = report.deliveries, history = report.history, %cutoff, "pruned");
    Ok(format!(
        "deleted {} messages, {} deliveries, {} history rows, {runs} schedule runs finished before {cutoff}",
        report.messages, report.deliveries, report.history
    ))
}

/// The daily line: every state's count as a field of its own, so log queries can chart them.
async fn summary(ctx: &Context) -> Result<String, String> {
    let s = crate::outbox::admin::summary(&ctx.pool).await.map_err(|e| e.to_string())?;
    let count = |state: DeliveryState| s.deliveries.iter().find(|(n, _)| n == state.as_str()).map_or(0, |(_, c)| *c);
    let failures: Vec<String> =
        s.failed_last_24h.iter().map(|(code, n)| format!("{}={n}", code.as_deref().unwrap_or("none"))).collect();
    let oldest_pending_s = s.oldest_pending.as_ref().map(|o| o.age_s);
    info!(
        messages = s.messages,
        pending = count(DeliveryState::Pending),
        waiting_files = count(DeliveryState::WaitingFiles),
        sending = count(DeliveryState::Sending),
        awaiting_status = count(DeliveryState::AwaitingStatus),
        delivered = count(DeliveryState::Delivered),
        unconfirmed = count(DeliveryState::Unconfirmed),
        failed = count(DeliveryState::Failed),
        cancelled = count(DeliveryState::Cancelled),
        oldest_pending_s,
        failed_last_24h = failures.join(" "),
        "daily summary"
    );
    let failed: i64 = s.failed_last_24h.iter().map(|(_, n)| n).sum();
    Ok(format!("{} messages, {} pending, {failed} failed in the last 24 h", s.messages, count(DeliveryState::Pending)))
}
