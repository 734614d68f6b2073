//! systemd integration: readiness (`Type=notify`), status lines for `systemctl status`, and
//! the watchdog, fed only while the worker's own parts are making progress.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every notification is a no-op and the watchdog is
//! off, so the same binary runs in a terminal, a container or a test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Tells systemd the daemon is ready: the database is reachable, the migrations are current
/// and the key is loaded (start-up checks them before calling this).
pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("sending")]);
}

/// A line for `systemctl status` (waiting for the database, stopping, ...).
pub fn status(line: &str) {
    notify(&[NotifyState::Status(line)]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// The parts of the worker whose progress the watchdog vouches for. Each must finish one
/// database round trip (or one short step) well within the watchdog period; time spent
/// waiting for work or for a free request slot is not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The claim loop: claiming, storing keys, the lease sweep.
    Loop = 0,
    /// The single writer of results.
    Writer = 1,
}

const PARTS: [Part; 2] = [Part::Loop, Part::Writer];

/// When each part became busy (milliseconds since `base`, plus one; 0 = not busy).
#[derive(Debug)]
pub struct Liveness {
    base: Instant,
    busy_since: [AtomicU64; 2],
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness { base: Instant::now(), busy_since: [AtomicU64::new(0), AtomicU64::new(0)] }
    }
}

/// Marks a part busy until dropped.
pub struct Busy<'a> {
    liveness: &'a Liveness,
    part: Part,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.liveness.busy_since[self.part as usize].store(0, Ordering::Relaxed);
    }
}

impl Liveness {
    pub fn busy(&self, part: Part) -> Busy<'_> {
        let since = self.base.elapsed().as_millis() as u64 + 1;
        self.busy_since[part as usize].store(since, Ordering::Relaxed);
        Busy { liveness: self, part }
    }

    /// The part that has been busy longer than `limit`, and for how long.
    pub fn stuck(&self, limit: Duration) -> Option<(Part, Duration)> {
        let now = self.base.elapsed().as_millis() as u64 + 1;
        PARTS.into_iter().find_map(|part| {
            let since = self.busy_since[part as usize].load(Ordering::Relaxed);
            let busy = Duration::from_millis(now.saturating_sub(since));
            (since != 0 && busy > limit).then_some((part, busy))
        })
    }
}

/// Feeds systemd's watchdog every `period / 4` while no part is stuck for more than half the
/// period. A stuck part (a database call that never returns, a blocked runtime) stops the
/// pings, and systemd restarts the service; its lease-holding rows are reclaimed as after a
/// crash. Returns at once when systemd asked for no watchdog.
pub async fn watchdog(liveness: Arc<Liveness>, shutdown: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    info!(period_ms = period.as_millis() as u64, "systemd watchdog enabled");
    feed(&liveness, period, shutdown).await;
}

async fn feed(liveness: &Liveness, period: Duration, shutdown: CancellationToken) {
    let mut reported = false;
    while !shutdown.is_cancelled() {
        match liveness.stuck(period / 2) {
            None => {
                notify(&[NotifyState::Watchdog]);
                reported = false;
            }
            Some((part, busy)) if !reported => {
                error!(part = ?part, busy_ms = busy.as_millis() as u64, "worker stuck; no longer feeding the watchdog");
                status("stuck: systemd will restart it");
                reported = true;
            }
            Some(_) => {}
        }
        let _ = tokio::time::timeout(period / 4, shutdown.cancelled()).await;
    }
}

#[cfg(test)]
#[path = "systemd_tests.rs"]
mod tests;
