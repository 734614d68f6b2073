//! The real binary under a stand-in for systemd's notify socket: READY=1 only once the
//! database is reachable and migrated, watchdog pings while the worker makes progress, none
//! while it is stuck, and STOPPING=1 on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestApp;
use tokio::net::UnixDatagram;

const BIN: &str = env!("CARGO_BIN_EXE_altinn-outbox");

/// What systemd would receive from the service.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        NotifySocket { socket: UnixDatagram::bind(&path).unwrap(), path, _dir: dir }
    }

    /// The next message, or None if nothing arrives within `wait`.
    async fn next(&self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(wait, self.socket.recv(&mut buf)).await.ok()?.unwrap();
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Every message that arrives within `window`.
    async fn collect(&self, window: Duration) -> Vec<String> {
        let end = Instant::now() + window;
        let mut seen = Vec::new();
        while let Some(m) = self.next(end.saturating_duration_since(Instant::now())).await {
            seen.push(m);
        }
        seen
    }

    /// Reads messages until one contains `line`; returns everything read before it.
    async fn until(&self, line: &str, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < limit {
            match self.next(limit - start.elapsed()).await {
                Some(m) if m.lines().any(|l| l == line) => return seen,
                Some(m) => seen.push(m),
                None => break,
            }
        }
        panic!("no {line} within {limit:?}; received {seen:?}");
    }
}

fn spawn(app: &TestApp, dir: &std::path::Path, socket: &NotifySocket, watchdog: Duration) -> Child {
    let config = app.config_file(dir);
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env("ALTINN_OUTBOX_LOG__FORMAT", "json")
        .env("NOTIFY_SOCKET", &socket.path)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn terminate(child: Child) -> std::process::Output {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap()
}

#[tokio::test]
async fn ready_only_once_the_database_is_migrated_then_watchdog_then_stopping() {
    let mut app = TestApp::start().await;
    // Point the daemon at an empty database of its own: reachable, but not migrated.
    let empty = format!("{}_empty", app.db_name);
    sqlx::query(&format!("CREATE DATABASE {empty}")).execute(&app.pool).await.unwrap();
    let empty_url = format!("{}/{empty}", crate::common::server_url());
    app.config.database.url = altinn_outbox::config::Secret::new(&empty_url);
    let socket = NotifySocket::bind();
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&app, dir.path(), &socket, Duration::from_secs(2));

    let first = socket.next(Duration::from_secs(20)).await.expect("a status while waiting");
    assert!(first.contains("STATUS=waiting for `altinn-outbox migrate`"), "{first}");
    // Not ready while the schema is missing, however long it waits.
    let waiting = socket.collect(Duration::from_millis(1500)).await;
    assert!(waiting.iter().all(|m| !m.contains("READY=1")), "{waiting:?}");

    let pool = sqlx::PgPool::connect(&empty_url).await.unwrap();
    altinn_outbox::outbox::migrate(&pool).await.unwrap();
    socket.until("READY=1", Duration::from_secs(20)).await;
    for _ in 0..3 {
        socket.until("WATCHDOG=1", Duration::from_secs(2)).await;
    }
    let out = terminate(child).await;
    assert!(out.status.success());
    socket.until("STOPPING=1", Duration::from_secs(5)).await;
    pool.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE {empty} WITH (FORCE)")).execute(&app.pool).await;
}

#[tokio::test]
async fn a_stuck_worker_stops_feeding_the_watchdog() {
    let app = TestApp::start().await;
    let socket = NotifySocket::bind();
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&app, dir.path(), &socket, Duration::from_secs(2));
    socket.until("READY=1", Duration::from_secs(20)).await;
    socket.until("WATCHDOG=1", Duration::from_secs(2)).await;

    // A lock that every claim waits behind: the claim loop's database call never returns.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE altinn_outbox.delivery IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    // Pings may still arrive until the claim has been busy for half the period (1 s)...
    let start = Instant::now();
    while socket.next(Duration::from_millis(1200)).await.is_some() {
        assert!(start.elapsed() < Duration::from_secs(10), "pings never stopped");
    }
    // ...then none for longer than the watchdog period: systemd would restart it.
    let silent = socket.collect(Duration::from_millis(2500)).await;
    assert!(silent.iter().all(|m| !m.contains("WATCHDOG=1")), "{silent:?}");

    // Once the database answers again, the worker is alive and the pings resume.
    lock.rollback().await.unwrap();
    socket.until("WATCHDOG=1", Duration::from_secs(5)).await;
    let out = terminate(child).await;
    let log = String::from_utf8_lossy(&out.stderr);
    let stuck = log.lines().find(|l| l.contains("worker stuck")).expect("the stuck part is logged");
    let v: serde_json::Value = serde_json::from_str(stuck).unwrap();
    assert_eq!(v["part"], "Loop", "{stuck}");
}
