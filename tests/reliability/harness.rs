//! The suite's harness: a fresh database, the fake Maskinporten and Altinn in this process,
//! and the real binary as worker processes that scenarios kill, restart and stop; then the
//! tally that every scenario reports: delivered, duplicates, lost, the longest stuck lease.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use altinn_fake::FakeConfig;
use altinn_outbox::config::Config;
use sqlx::Row;

use crate::common::{fake_config, TestApp, ORG, RESOURCE};

const BIN: &str = env!("CARGO_BIN_EXE_altinn-outbox");
/// A second organisation, for messages with two recipients.
pub const OTHER_ORG: &str = "974760223";

/// Scenarios measure time and load the machine: one at a time, even when the test runner
/// starts them in parallel.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// True for the long variants (`scripts/reliability --long`).
pub fn long() -> bool {
    std::env::var("OUTBOX_RELIABILITY_LONG").is_ok_and(|v| v == "1")
}

/// Settings for whole-process runs: short leases and delays so that a scenario takes
/// seconds, with the same proportions as production (lease > 2 × request timeout).
pub fn reliability_config(c: &mut Config) {
    c.altinn.request_timeout_ms = 1_500;
    c.worker.lease_ms = 4_000;
    c.worker.concurrency = 32;
    c.worker.sweep_interval_ms = 250;
    c.worker.idle_poll_interval_ms = 100;
    c.worker.shutdown_grace_ms = 3_000;
    c.retry.initial_delay_ms = 200;
    c.retry.max_delay_ms = 2_000;
    c.retry.max_attempts = 60;
    c.status.first_poll_delay_ms = 300;
    c.status.max_poll_interval_ms = 2_000;
    // Token trouble: wait half a second after the first failure, at most four.
    c.maskinporten.failure_backoff_first_ms = 500;
    c.maskinporten.failure_backoff_max_ms = 4_000;
}

/// A free port on localhost for a worker's health listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET http://127.0.0.1:{port}{path}`: the status and the body, or None while nobody listens.
pub async fn probe(port: u16, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

pub fn fake() -> FakeConfig {
    FakeConfig { publish_after_ms: 200, ..fake_config() }
}

pub struct Cluster {
    pub app: TestApp,
    pub dir: tempfile::TempDir,
    config_path: PathBuf,
    workers: Vec<Worker>,
    /// Environment for workers started from now on (settings as `ALTINN_OUTBOX_*`).
    pub env: Vec<(String, String)>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

struct Worker {
    name: String,
    child: Option<Child>,
    starts: u32,
}

impl Cluster {
    pub async fn start(fake: FakeConfig, tweak: impl FnOnce(&mut Config)) -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        let app = TestApp::with(fake, |c| {
            reliability_config(c);
            tweak(c);
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let config_path = app.config_file(dir.path());
        Cluster { app, dir, config_path, workers: Vec::new(), env: Vec::new(), _turn: turn }
    }

    /// Starts `n` more worker processes.
    pub fn spawn(&mut self, n: usize) {
        for _ in 0..n {
            let name = format!("w{}", self.workers.len() + 1);
            self.workers.push(Worker { name, child: None, starts: 0 });
            self.restart(self.workers.len() - 1);
        }
    }

    /// Starts worker `i` again (its log continues in the same file).
    pub fn restart(&mut self, i: usize) {
        let w = &mut self.workers[i];
        w.starts += 1;
        let log = OpenOptions::new().create(true).append(true).open(self.dir.path().join(format!("{}.log", w.name)));
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config_path)
            .arg("run")
            .env_remove("RUST_LOG")
            .env("ALTINN_OUTBOX_LOG__FORMAT", "json")
            .env("ALTINN_OUTBOX_WORKER__INSTANCE_NAME", format!("{}.{}", w.name, w.starts))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log.expect("log file"))
            .spawn()
            .expect("the binary starts");
        w.child = Some(child);
    }

    /// SIGKILL: no shutdown, no release, results in memory lost.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.workers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns the status and how long it took.
    pub async fn terminate(&mut self, i: usize) -> (ExitStatus, Duration) {
        let mut child = self.workers[i].child.take().expect("worker running");
        let started = Instant::now();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
        let status = tokio::task::spawn_blocking(move || child.wait().expect("wait")).await.unwrap();
        (status, started.elapsed())
    }

    /// Which workers have exited on their own (a crash, or exit after an error).
    pub fn exited(&mut self) -> Vec<(String, ExitStatus)> {
        let mut out = Vec::new();
        for w in &mut self.workers {
            if let Some(status) = w.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                out.push((w.name.clone(), status));
            }
        }
        out
    }

    /// The process id of worker `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.workers[i].child.as_ref().map(std::process::Child::id)
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Every worker's log, in start order.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for w in &self.workers {
            all.push_str(&std::fs::read_to_string(self.dir.path().join(format!("{}.log", w.name))).unwrap_or_default());
        }
        all
    }

    /// Stops every worker still running (SIGTERM) and checks that each exits 0.
    pub async fn stop_all(&mut self) {
        for i in 0..self.workers.len() {
            if self.workers[i].child.is_some() {
                let (status, _) = self.terminate(i).await;
                assert!(
                    status.success(),
                    "{} exits 0 after SIGTERM: {status:?}\n{}",
                    self.workers[i].name,
                    self.log_of(i).lines().rev().take(10).collect::<Vec<_>>().join("\n")
                );
            }
        }
    }

    /// Waits until `done` holds, checking every 100 ms; fails the test after `limit`.
    pub async fn wait_until<F, Fut>(&self, what: &str, limit: Duration, mut done: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !done().await {
            assert!(started.elapsed() < limit, "{what}: not within {limit:?}\n{}", self.tail_of_logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }

    /// Waits until no delivery is left unfinished.
    pub async fn wait_until_finished(&self, limit: Duration) -> Duration {
        let pool = self.app.pool.clone();
        self.wait_until("every delivery delivered or failed", limit, || {
            let pool = pool.clone();
            async move { unfinished(&pool).await == 0 }
        })
        .await
    }

    fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.workers[i].name))).unwrap_or_default()
    }

    fn tail_of_logs(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Bulk insert: `n` messages; every tenth has a second recipient.
    pub async fn insert(&self, n: usize, prefix: &str) {
        sqlx::query(
            "INSERT INTO altinn_outbox.message (resource_id, senders_reference, recipients, title, body)
             SELECT $1, $4 || '-' || i,
                    CASE WHEN i % 10 = 0 THEN ARRAY[$2, $3] ELSE ARRAY[$2] END,
                    'Title ' || i, 'Body ' || i
             FROM generate_series(1, $5) AS i",
        )
        .bind(RESOURCE)
        .bind(ORG)
        .bind(OTHER_ORG)
        .bind(prefix)
        .bind(n as i32)
        .execute(&self.app.pool)
        .await
        .unwrap();
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.app.pool).await.unwrap()
    }

    /// What happened, from the database and from the fake's side.
    pub async fn tally(&self) -> Tally {
        let rows = self.count("SELECT count(*) FROM altinn_outbox.message").await;
        let deliveries = self.count("SELECT count(*) FROM altinn_outbox.delivery").await;
        let delivered = self.count("SELECT count(*) FROM altinn_outbox.delivery WHERE state = 'delivered'").await;
        let failed = self.count("SELECT count(*) FROM altinn_outbox.delivery WHERE state = 'failed'").await;
        let created = self.app.fake.state().correspondences();
        let mut per_recipient: HashMap<(String, String), i64> = HashMap::new();
        for c in &created {
            *per_recipient.entry((c.senders_reference.clone(), c.recipient.clone())).or_default() += 1;
        }
        let duplicates = per_recipient.values().map(|n| n - 1).sum();
        let ids: std::collections::HashSet<uuid::Uuid> = created.iter().map(|c| c.id).collect();
        let linked: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT correspondence_id FROM altinn_outbox.delivery
             WHERE state = 'delivered' AND correspondence_id IS NOT NULL",
        )
        .fetch_all(&self.app.pool)
        .await
        .unwrap();
        let confirmed = linked.iter().filter(|id| ids.contains(id)).count() as i64;
        Tally {
            rows,
            deliveries,
            delivered,
            failed,
            created: created.len() as i64,
            duplicates,
            // Neither delivered (with a correspondence Altinn really has) nor failed.
            lost: deliveries - confirmed - failed,
            max_sending: self.max_sending().await,
        }
    }

    /// The longest time any delivery spent in `sending` in one go (from the history): a
    /// lease left behind by a killed worker shows up here.
    pub async fn max_sending(&self) -> Duration {
        let ms: Option<f64> = sqlx::query_scalar(
            "SELECT max(extract(epoch FROM next_at - at) * 1000)::float8 FROM (
                SELECT new_value, at, lead(at) OVER (PARTITION BY delivery_id ORDER BY id) AS next_at
                FROM altinn_outbox.history WHERE kind = 'state') s
             WHERE new_value = 'sending' AND next_at IS NOT NULL",
        )
        .fetch_one(&self.app.pool)
        .await
        .unwrap();
        Duration::from_millis(ms.unwrap_or(0.0) as u64)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.workers.len() {
            self.kill(i);
        }
    }
}

pub async fn unfinished(pool: &sqlx::PgPool) -> i64 {
    sqlx::query("SELECT count(*) FROM altinn_outbox.delivery WHERE state NOT IN ('delivered', 'failed')")
        .fetch_one(pool)
        .await
        .map_or(i64::MAX, |r| r.get(0))
}

#[derive(Debug, Clone, Copy)]
pub struct Tally {
    pub rows: i64,
    pub deliveries: i64,
    pub delivered: i64,
    pub failed: i64,
    /// Correspondences the fake created.
    pub created: i64,
    /// Correspondences beyond the first for one (message, recipient).
    pub duplicates: i64,
    pub lost: i64,
    pub max_sending: Duration,
}

impl Tally {
    /// The promises every scenario keeps: one correspondence per delivery, nothing lost.
    pub fn assert_exactly_once(&self) {
        assert_eq!(self.duplicates, 0, "no (message, recipient) was created twice: {self:?}");
        assert_eq!(self.lost, 0, "every delivery ended delivered (and Altinn has it) or failed: {self:?}");
        assert_eq!(self.created, self.delivered, "one correspondence per delivered delivery: {self:?}");
    }
}

/// One line of the suite's table, printed and appended to `OUTBOX_RELIABILITY_RESULTS`
/// (set by `scripts/reliability`, which prints the table at the end).
pub fn report(scenario: &str, t: &Tally, faults: &str, figures: &str) {
    let line = format!(
        "| {scenario:<24} | {:>6} | {faults:<36} | {:>9} | {:>10} | {:>4} | {:>7.1} s | {figures}",
        t.rows,
        t.delivered,
        t.duplicates,
        t.lost,
        t.max_sending.as_secs_f64()
    );
    println!("{line}");
    if let Ok(path) = std::env::var("OUTBOX_RELIABILITY_RESULTS") {
        let mut file = OpenOptions::new().create(true).append(true).open(path).expect("results file");
        writeln!(file, "{line}").expect("results file written");
    }
}
