//! The runs. A backlog loaded in bulk and worked off by the daemon's own loop gives the
//! send and end-to-end throughput and the economy figures; rows inserted one at a time into
//! an idle worker give the pickup latency. Every run has its own database and fake.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection};

use super::env::{BenchKey, Env, RunSettings};
use crate::sql::{self, Progress};

/// Progress is read this often while the worker runs: seldom enough to cost the database
/// little, and the figures come from the tables' own timestamps, not from this clock.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// A run whose counts have not moved for this long is stuck (a bug, or a server gone).
const STALL_LIMIT: Duration = Duration::from_secs(120);
/// Time for the idle worker to connect its LISTEN and finish its first empty claim.
const IDLE_SETTLE: Duration = Duration::from_millis(500);
/// Finished rows loaded per statement: a million rows take a minute or more, and a part this
/// size shows progress every few seconds without slowing the load.
const PRELOAD_PART: u32 = 100_000;

/// When a backlog run is over; the report's `backlog_until` (`sent` or `delivered`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    /// Every row accepted by Altinn (send phase only).
    Sent,
    /// Every row delivered (published), status polling included.
    Delivered,
}

/// What one backlog run measured.
#[derive(Clone, Debug)]
pub struct BacklogRun {
    pub rows: u32,
    pub send_rows_per_s: f64,
    pub end_to_end_rows_per_s: Option<f64>,
    /// Rows accepted by Altinn (delivered ones included) when the run ended.
    pub sent: i64,
    pub delivered: i64,
    /// Overview and details reads the fake answered.
    pub status_requests: usize,
    /// Transactions the worker ended in the run's database (the bench's own taken off).
    pub worker_transactions: i64,
}

/// Loads `rows` messages (after `preload` finished ones) and runs the worker until `until`.
pub async fn backlog(
    server: &str,
    key: &BenchKey,
    run: RunSettings,
    rows: u32,
    preload: u32,
    until: Until,
) -> anyhow::Result<BacklogRun> {
    let env = Env::start(server, key, run).await?;
    let result = backlog_in(&env, rows, preload, until).await;
    env.finish().await?;
    result
}

async fn backlog_in(env: &Env, rows: u32, preload: u32, until: Until) -> anyhow::Result<BacklogRun> {
    let mut setup = env.connect().await?;
    if preload > 0 {
        load_finished(&mut setup, preload).await?;
    }
    let first_id = sql::next_delivery_id(&mut setup).await?;
    sql::load_messages(&mut setup, rows).await?;
    sql::checkpoint(&mut setup).await?;
    setup.close().await?;
    let before = env.settled_transactions().await?;
    let mut own = env.connect().await?;
    let (shutdown, worker) = env.start_worker();
    let waited = wait_for(&mut own, first_id, i64::from(rows), until).await;
    shutdown.cancel();
    worker.await?;
    let (progress, own_statements) = waited?;
    let windows = sql::windows(&mut own, first_id).await?;
    let status_requests = status_requests(env);
    own.close().await?;
    env.ctx.pool.close().await;
    let after = env.settled_transactions().await?;
    let rate = |seconds: f64| if seconds > 0.0 { f64::from(rows) / seconds } else { 0.0 };
    Ok(BacklogRun {
        rows,
        send_rows_per_s: rate(windows.send_s),
        end_to_end_rows_per_s: windows.end_to_end_s.filter(|_| until == Until::Delivered).map(rate),
        sent: progress.sent,
        delivered: progress.delivered,
        status_requests,
        // The progress reads and the windows query were the bench's.
        worker_transactions: after - before - own_statements - 1,
    })
}

/// Loads `n` finished rows in parts, with progress on stderr (the bench's table is on stdout).
async fn load_finished(conn: &mut PgConnection, n: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut loaded = 0;
    while loaded < n {
        let part = PRELOAD_PART.min(n - loaded);
        sql::load_finished(conn, loaded + 1, part).await?;
        loaded += part;
        eprintln!("  loaded {loaded} of {n} finished rows ({:.0} s)", started.elapsed().as_secs_f64());
    }
    sql::analyze_finished(conn).await?;
    eprintln!("  vacuumed and analysed ({:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Inserts `rate` rows a second for `seconds`, each in its own transaction, into an idle
/// worker; the milliseconds from each INSERT's commit (as the client saw it) to the fake's
/// receipt of its initialize request. A request the fake saw before the client had its
/// commit answer counts as 0.
pub async fn pickup(
    server: &str,
    key: &BenchKey,
    run: RunSettings,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<Vec<f64>> {
    let env = Env::start(server, key, run).await?;
    let result = pickup_in(&env, rate, seconds).await;
    env.finish().await?;
    result
}

async fn pickup_in(env: &Env, rate: u32, seconds: u32) -> anyhow::Result<Vec<f64>> {
    let mut own = env.connect().await?;
    let (shutdown, worker) = env.start_worker();
    tokio::time::sleep(IDLE_SETTLE).await;
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut committed: HashMap<i64, Instant> = HashMap::new();
    for i in 0..total {
        ticker.tick().await;
        let id = sql::insert_one(&mut own, &format!("pickup-{i}")).await?;
        committed.insert(id, Instant::now());
    }
    let waited = wait_for(&mut own, 1, i64::from(total), Until::Sent).await;
    shutdown.cancel();
    worker.await?;
    waited?;
    let keys = sql::keys_by_message(&mut own).await?;
    own.close().await?;
    let mut arrived: HashMap<uuid::Uuid, Instant> = HashMap::new();
    for (key, at) in env.fake.state().initialize_arrivals() {
        if let Some(key) = key {
            arrived.entry(key).and_modify(|first| *first = (*first).min(at)).or_insert(at);
        }
    }
    let mut latencies = Vec::with_capacity(keys.len());
    for (message_id, key) in keys {
        let (Some(commit), Some(arrival)) = (committed.get(&message_id), arrived.get(&key)) else {
            anyhow::bail!("message {message_id}: no commit time or no request at the fake");
        };
        latencies.push(arrival.saturating_duration_since(*commit).as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

/// Waits until every one of `rows` deliveries from `first_id` on has reached `until`; the
/// final progress and how many statements the waiting took.
async fn wait_for(own: &mut PgConnection, first_id: i64, rows: i64, until: Until) -> anyhow::Result<(Progress, i64)> {
    wait_for_with(own, first_id, rows, until, || Ok(())).await
}

/// As [`wait_for`], calling `each` before every progress read (an error ends the wait).
pub(super) async fn wait_for_with(
    own: &mut PgConnection,
    first_id: i64,
    rows: i64,
    until: Until,
    mut each: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Progress, i64)> {
    let mut statements = 0;
    let mut last = Progress::default();
    let mut last_change = Instant::now();
    loop {
        each()?;
        let progress = sql::progress(own, first_id, rows).await?;
        statements += 1;
        anyhow::ensure!(progress.given_up == 0, "{} rows failed or were cancelled", progress.given_up);
        let done = match until {
            Until::Sent => progress.sent,
            Until::Delivered => progress.delivered,
        };
        if done >= rows {
            return Ok((progress, statements));
        }
        if progress != last {
            (last, last_change) = (progress, Instant::now());
        }
        anyhow::ensure!(last_change.elapsed() < STALL_LIMIT, "no progress for {STALL_LIMIT:?}: {progress:?}");
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

/// Status reads (overview and details) the fake answered.
fn status_requests(env: &Env) -> usize {
    let prefix = "/correspondence/api/v1/correspondence/";
    env.fake.state().requests().iter().filter(|r| r.method == "GET" && r.path.starts_with(prefix)).count()
}
