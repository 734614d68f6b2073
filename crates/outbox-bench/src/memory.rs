//! Figure 5: the worker's peak resident memory. The in-process fake keeps every
//! correspondence it created in memory, so the bench's own resident set says nothing about the
//! worker's: the real binary runs in a process of its own (`altinn-outbox run`, as systemd
//! starts it) against this run's fake and a fresh database, and its `/proc/<pid>/status` is
//! read until every row is sent. `VmHWM` is the kernel's high-water mark of the resident set,
//! so no peak between two samples is missed.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use sqlx::{Connection as _, PgConnection};
use tokio::process::{Child, Command};

use super::env::{BenchKey, Env, RunSettings};
use super::scenario::{self, Until};
use crate::sql;

/// From SIGTERM to exit at most: the daemon's default shutdown grace (10 s) and some.
const EXIT_LIMIT: Duration = Duration::from_secs(30);
/// Lines of the worker's log shown when its run fails.
const LOG_TAIL_LINES: usize = 20;

/// What the worker process is given to send.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// Rows with one recipient and no file.
    Plain,
    /// Rows with one recipient and one file of this many bytes, sent in multipart requests.
    Files { bytes: u32 },
}

/// One worker process, measured.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryRun {
    /// "backlog" (no files) or "files".
    pub load: &'static str,
    pub rows: u32,
    /// Bytes of each row's file (0: none).
    pub file_bytes: u32,
    /// Rows sent when the worker was stopped.
    pub sent: i64,
    /// The measured process (not the bench's own).
    pub pid: u32,
    /// `VmHWM` just before SIGTERM: the peak resident set of the process's whole life.
    pub peak_rss_kib: u64,
    /// The highest `VmRSS` sampled while the worker ran.
    pub max_sampled_rss_kib: u64,
    pub samples: usize,
    pub exit_code: Option<i32>,
}

impl MemoryRun {
    pub fn peak_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// Loads `rows` into a fresh database and measures a worker process until it has sent them.
pub async fn measure(
    daemon: &Path,
    server: &str,
    key: &BenchKey,
    run: RunSettings,
    rows: u32,
    load: Load,
) -> anyhow::Result<MemoryRun> {
    let env = Env::start(server, key, run).await?;
    let result = measure_in(daemon, &env, key, run, rows, load).await;
    env.finish().await?;
    result
}

async fn measure_in(
    daemon: &Path,
    env: &Env,
    key: &BenchKey,
    run: RunSettings,
    rows: u32,
    load: Load,
) -> anyhow::Result<MemoryRun> {
    let mut own = env.connect().await?;
    let first_id = sql::next_delivery_id(&mut own).await?;
    let file_bytes = match load {
        Load::Plain => sql::load_messages(&mut own, rows).await.map(|()| 0)?,
        Load::Files { bytes } => sql::load_messages_with_files(&mut own, rows, bytes).await.map(|()| bytes)?,
    };
    let scratch = Scratch::create()?;
    let mut child = spawn(daemon, env, key, run, &scratch)?;
    let pid = child.id().context("the worker process has no pid")?;
    let watched = watch(&mut own, &mut child, pid, first_id, rows).await;
    // Before SIGTERM: a process that has exited has no resident set to read.
    let peak = read_resident(pid);
    let stopped = stop(&mut child, pid).await;
    own.close().await?;
    let explain = |e: anyhow::Error| e.context(format!("worker process {pid}; its log ends:\n{}", scratch.log_tail()));
    let (sent, sampled) = watched.map_err(explain)?;
    let peak = peak.map_err(explain)?;
    let status = stopped.map_err(explain)?;
    anyhow::ensure!(status.success(), "worker process {pid} exited with {status} after SIGTERM");
    Ok(MemoryRun {
        load: if file_bytes > 0 { "files" } else { "backlog" },
        rows,
        file_bytes,
        sent,
        pid,
        peak_rss_kib: peak.peak_kib,
        max_sampled_rss_kib: sampled.max_kib,
        samples: sampled.samples,
        exit_code: status.code(),
    })
}

/// The worker process's files (configuration, key, log) in a directory only this user can
/// read, removed when dropped.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn create() -> std::io::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("altinn-outbox-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Scratch { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.path("worker.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the daemon (`altinn-outbox --config <file> run`), its log (warnings only) to a file.
fn spawn(daemon: &Path, env: &Env, key: &BenchKey, run: RunSettings, scratch: &Scratch) -> anyhow::Result<Child> {
    let key_file = scratch.path("bench.jwk.json");
    key.write_private(&key_file)?;
    let config_file = scratch.path("worker.toml");
    std::fs::write(&config_file, toml::to_string(&env.process_config(key, run, &key_file))?)?;
    let log = std::fs::File::create(scratch.path("worker.log"))?;
    let mut command = Command::new(daemon);
    // The worker's settings are the file's and the URL below: nothing from this shell.
    for (name, _) in std::env::vars_os().filter(|(name, _)| name.to_string_lossy().starts_with("ALTINN_OUTBOX_")) {
        command.env_remove(name);
    }
    command
        .arg("--config")
        .arg(&config_file)
        .arg("run")
        .env_remove("RUST_LOG")
        .env("ALTINN_OUTBOX_DATABASE__URL", env.database_url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    Ok(command.spawn()?)
}

/// What the samples saw.
#[derive(Clone, Copy, Debug, Default)]
struct Sampled {
    samples: usize,
    max_kib: u64,
}

/// Samples the worker's resident set with every progress read until all `rows` are sent;
/// the rows sent and the samples.
async fn watch(
    own: &mut PgConnection,
    child: &mut Child,
    pid: u32,
    first_id: i64,
    rows: u32,
) -> anyhow::Result<(i64, Sampled)> {
    let mut sampled = Sampled::default();
    let sample = || {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the worker process exited before every row was sent: {status}");
        }
        if let Ok(resident) = read_resident(pid) {
            sampled = Sampled { samples: sampled.samples + 1, max_kib: sampled.max_kib.max(resident.now_kib) };
        }
        Ok(())
    };
    let (progress, _) = scenario::wait_for_with(own, first_id, i64::from(rows), Until::Sent, sample).await?;
    Ok((progress.sent, sampled))
}

/// SIGTERM, as systemd stops the daemon; then waits for the exit (SIGKILL after the limit).
async fn stop(child: &mut Child, pid: u32) -> anyhow::Result<ExitStatus> {
    // An exited child's pid may belong to another process by now: signal only a live one.
    if child.try_wait()?.is_none() {
        let signalled = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
        anyhow::ensure!(signalled.success(), "kill -TERM {pid}: {signalled}");
    }
    match tokio::time::timeout(EXIT_LIMIT, child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            child.kill().await?;
            anyhow::bail!("the worker process did not exit within {EXIT_LIMIT:?} of SIGTERM")
        }
    }
}

/// A process's resident set, in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resident {
    /// `VmHWM`: the peak so far.
    pub peak_kib: u64,
    /// `VmRSS`: now.
    pub now_kib: u64,
}

fn read_resident(pid: u32) -> anyhow::Result<Resident> {
    let path = Path::new("/proc").join(pid.to_string()).join("status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_status(&text).with_context(|| format!("no VmHWM and VmRSS in {}", path.display()))
}

/// `VmHWM` and `VmRSS` of a `/proc/<pid>/status` text (the kernel's "kB" are KiB).
pub fn parse_status(text: &str) -> Option<Resident> {
    let field = |name: &str| {
        text.lines().find_map(|line| line.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
    };
    Some(Resident { peak_kib: field("VmHWM:")?, now_kib: field("VmRSS:")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_peak_and_current_resident_set() {
        let text =
            "Name:\taltinn-outbox\nVmPeak:\t  812344 kB\nVmHWM:\t   41236 kB\nVmRSS:\t   39120 kB\nThreads:\t5\n";
        assert_eq!(parse_status(text), Some(Resident { peak_kib: 41236, now_kib: 39120 }));
        assert_eq!(parse_status("Name:\tzombie\nState:\tZ (zombie)\n"), None, "an exited process has none");
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let own = read_resident(std::process::id()).expect("Linux /proc");
        assert!(own.peak_kib >= own.now_kib && own.now_kib > 0, "{own:?}");
    }
}
