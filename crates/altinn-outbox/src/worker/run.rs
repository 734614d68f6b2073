//! The daemon's loop: keeps up to `concurrency` requests in flight from a queue of claimed
//! work ([`Feed`], which claims ahead while requests run), wakes on NOTIFY (or every
//! `idle_poll_interval`), and writes results back in batches from a single writer task.
//! Claimed work waiting in the queue holds its lease, and shutdown releases it like work in
//! flight.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::feed::Feed;
use super::{process_claimed, Context, Job};
use crate::backoff::Doubling;
use crate::outbox::{self, WriteBack};
use crate::systemd::Part;

/// Results written back in one statement at most; larger batches gain little.
const MAX_WRITE_BATCH: usize = 256;
/// Waits after a database error, doubling up to the cap: no hot loop while it is down, and
/// back at work within a few seconds of its return.
const DB_RETRY_FIRST: Duration = Duration::from_millis(200);
const DB_RETRY_CAP: Duration = Duration::from_secs(4);
/// The pauses after database errors of the writer, LISTEN and the claims.
pub(super) const DB_RETRY: Doubling = Doubling::new(DB_RETRY_FIRST, DB_RETRY_CAP);

/// Leases of claimed work not yet handed to the writer, so shutdown can release them at once.
pub(super) type Leases = Arc<Mutex<HashMap<i64, i64>>>;

/// The leases, even after a panic elsewhere poisoned the lock. That is safe: a holder only
/// inserts, removes or drains, each of which leaves the map whole, and the map only says which
/// leases to give back early (one missing from it expires on its own). Panicking here instead
/// would take the loop down with the task that panicked.
pub(super) fn held(leases: &Leases) -> MutexGuard<'_, HashMap<i64, i64>> {
    leases.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs until `shutdown` is cancelled; then stops claiming, lets requests in flight finish
/// within the grace period, writes their results, and releases what remains.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(ctx.pool.clone(), wake.clone(), shutdown.clone()));
    let mut work = InFlight::start(ctx.clone());
    let mut feed = Feed::default();
    let mut next_sweep = Instant::now();
    let idle_poll = ctx.settings.idle_poll_interval;
    info!(instance = ctx.settings.instance, concurrency = ctx.settings.concurrency, "worker started");
    while !shutdown.is_cancelled() {
        if Instant::now() >= next_sweep {
            let _busy = ctx.liveness.busy(Part::Loop);
            super::reclaim(&ctx).await;
            next_sweep = Instant::now() + ctx.settings.sweep_interval;
        }
        let throttled = ctx.altinn.throttled_for();
        if throttled.is_zero() {
            work.start_ready(&mut feed.ready);
            feed.top_up(&ctx, work.in_flight());
        } else if !feed.ready.is_empty() {
            // Held back (429, no token, Altinn down): queued rows go back to the queue for
            // whichever instance is free first, with their attempt given back.
            let _busy = ctx.liveness.busy(Part::Loop);
            work.give_back(&mut feed.ready).await;
        }
        let idle_for = feed.idle_until.map(|t| t.saturating_duration_since(Instant::now()));
        tokio::select! {
            () = shutdown.cancelled() => break,
            claimed = feed.claimed(), if feed.claiming() => feed.receive(claimed, &work.leases, idle_poll),
            () = work.permit_freed(), if !feed.ready.is_empty() && throttled.is_zero() => {}
            () = wake.notified() => feed.wake(),
            () = tokio::time::sleep(idle_for.unwrap_or_default()), if idle_for.is_some() => feed.idle_until = None,
            () = tokio::time::sleep(throttled), if !throttled.is_zero() => {}
            () = tokio::time::sleep(next_sweep.saturating_duration_since(Instant::now())) => {}
        }
    }
    // Claims under way are waited for, so that their rows are released with the rest.
    while feed.claiming() {
        let claimed = feed.claimed().await;
        feed.receive(claimed, &work.leases, idle_poll);
    }
    work.finish().await;
    listener.abort();
}

/// Requests in flight: bounded by permits, each result handed to the single writer.
struct InFlight {
    ctx: Arc<Context>,
    tx: mpsc::Sender<WriteBack>,
    permits: Arc<Semaphore>,
    leases: Leases,
    tasks: JoinSet<()>,
    writer: tokio::task::JoinHandle<()>,
    writer_stop: CancellationToken,
}

impl InFlight {
    fn start(ctx: Arc<Context>) -> InFlight {
        let (tx, rx) = mpsc::channel::<WriteBack>(ctx.settings.concurrency * 2);
        let writer_stop = CancellationToken::new();
        let writer = tokio::spawn(write_results(ctx.clone(), rx, writer_stop.clone()));
        let permits = Arc::new(Semaphore::new(ctx.settings.concurrency));
        InFlight { ctx, tx, permits, leases: Arc::default(), tasks: JoinSet::new(), writer, writer_stop }
    }

    /// Requests running now.
    fn in_flight(&mut self) -> usize {
        while self.tasks.try_join_next().is_some() {}
        self.tasks.len()
    }

    /// Starts queued jobs while permits are free; only one (a probe) while Altinn looks down.
    fn start_ready(&mut self, ready: &mut VecDeque<(Job, Instant)>) {
        let room = self.permits.available_permits().min(self.ctx.altinn.room());
        for _ in 0..room {
            let Some((job, claimed_at)) = ready.pop_front() else { break };
            self.spawn(job, claimed_at);
        }
    }

    /// Releases the leases of queued sends and status reads (never started) and forgets
    /// them; on a database error they stay queued and are tried again.
    async fn give_back(&self, ready: &mut VecDeque<(Job, Instant)>) {
        let (ids, lease_nos): (Vec<i64>, Vec<i64>) = ready.iter().filter_map(|(job, _)| job.lease()).unzip();
        if ids.is_empty() {
            return; // only upload steps are queued: nothing to release, no query
        }
        match outbox::release(&self.ctx.pool, &ids, &lease_nos).await {
            Ok(n) => {
                debug!(released = n, "queued work given back while requests are held back");
                let mut leases = held(&self.leases);
                ids.iter().for_each(|id| _ = leases.remove(id));
                // Upload steps keep their place: their leases are the attachment's own.
                ready.retain(|(job, _)| job.lease().is_none());
            }
            Err(e) => warn!(error = %e, "could not give back queued work; keeping it"),
        }
    }

    /// Completes when a permit is free: at once if one freed since the last start.
    async fn permit_freed(&self) {
        let _ = self.permits.acquire().await;
    }

    fn spawn(&mut self, job: Job, claimed_at: Instant) {
        let permit = self.permits.clone().try_acquire_owned().expect("started no more than the free permits");
        let (ctx, tx, leases) = (self.ctx.clone(), self.tx.clone(), self.leases.clone());
        self.tasks.spawn(async move {
            if let Some(result) = process_claimed(&ctx, job, claimed_at).await {
                let id = result.delivery_id;
                // Forgotten only once the writer has it: shutdown releases whatever is left.
                let _ = tx.send(result).await;
                held(&leases).remove(&id);
            }
            drop(permit);
        });
    }

    /// Shutdown: requests in flight get the grace period; their results are written; the
    /// leases of anything unfinished or never started are released so the next instance
    /// takes it at once.
    async fn finish(self) {
        let InFlight { ctx, tx, leases, mut tasks, writer, writer_stop, .. } = self;
        drop(tx);
        let grace = ctx.settings.shutdown_grace;
        info!(in_flight = tasks.len(), grace_ms = grace.as_millis() as u64, "stopping: no new claims");
        let all_done = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            warn!(unfinished = tasks.len(), "grace period over; abandoning requests in flight");
            tasks.abort_all();
        }
        // The writer flushes what it was handed; it stops retrying after a short bound so a
        // dead database cannot hold the exit (unwritten results are re-sent safely by key).
        if tokio::time::timeout(grace.max(Duration::from_secs(2)), writer).await.is_err() {
            writer_stop.cancel();
        }
        let left: Vec<(i64, i64)> = held(&leases).drain().collect();
        if !left.is_empty() {
            let (ids, lease_nos): (Vec<i64>, Vec<i64>) = left.into_iter().unzip();
            match outbox::release(&ctx.pool, &ids, &lease_nos).await {
                Ok(n) => info!(released = n, "leases released for the next instance"),
                Err(e) => warn!(error = %e, "could not release leases; they expire on their own"),
            }
        }
        info!("worker stopped");
    }
}

/// Writes results in batches; on a database error keeps them and tries again with backoff.
async fn write_results(ctx: Arc<Context>, mut rx: mpsc::Receiver<WriteBack>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(MAX_WRITE_BATCH);
    let mut wait = DB_RETRY;
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
        }
        while batch.len() < MAX_WRITE_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let written = {
            let _busy = ctx.liveness.busy(Part::Writer);
            let began = Instant::now();
            let written = super::write_back(&ctx, &batch).await;
            debug!(results = batch.len(), ms = began.elapsed().as_millis() as u64, "results written");
            written
        };
        match written {
            Ok(written) => {
                if (written as usize) < batch.len() {
                    warn!(
                        lost = batch.len() - written as usize,
                        "results of leases taken over by another worker were dropped"
                    );
                }
                batch.clear();
                wait.reset();
            }
            Err(e) => {
                error!(error = %e, results = batch.len(), "writing results failed; keeping them and retrying");
                if tokio::time::timeout(wait.next_pause(), stop.cancelled()).await.is_ok() {
                    return;
                }
            }
        }
    }
}

/// Turns NOTIFYs into wake-ups. A lost notification only costs the idle poll interval.
async fn listen(pool: sqlx::PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut wait = DB_RETRY;
    while !shutdown.is_cancelled() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "LISTEN connection failed; polling only until it is back");
                pause(&shutdown, wait.next_pause()).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(outbox::NOTIFY_CHANNEL).await {
            warn!(error = %e, "LISTEN failed");
            pause(&shutdown, wait.next_pause()).await;
            continue;
        }
        wait.reset();
        // recv reconnects by itself after a lost connection; wake the loop then too, in
        // case a notification was missed in between.
        while let Ok(_notification) = listener.recv().await {
            wake.notify_one();
        }
        wake.notify_one();
    }
}

async fn pause(shutdown: &CancellationToken, wait: Duration) {
    let _ = tokio::time::timeout(wait, shutdown.cancelled()).await;
}
