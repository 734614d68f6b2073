//! The daemon's loop: keeps up to `concurrency` requests in flight, claims as permits free
//! up, wakes on NOTIFY (or every `idle_poll_interval`), and writes results back in batches
//! from a single writer task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{claim, process, Context, Job};
use crate::metrics;
use crate::outbox::{self, WriteBack};

/// Results written back in one statement at most; larger batches gain little.
const MAX_WRITE_BATCH: usize = 256;
/// Waits after a database error, doubling up to the cap: no hot loop while it is down, and
/// back at work within a few seconds of its return.
const DB_RETRY_FIRST: Duration = Duration::from_millis(200);
const DB_RETRY_CAP: Duration = Duration::from_secs(4);

/// Leases of claimed work not yet handed to the writer, so shutdown can release them at once.
type Leases = Arc<Mutex<HashMap<i64, i64>>>;

/// Runs until `shutdown` is cancelled; then stops claiming, lets requests in flight finish
/// within the grace period, writes their results, and releases what remains.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(ctx.pool.clone(), wake.clone(), shutdown.clone()));
    let mut work = InFlight::start(ctx.clone());
    let mut db_wait = DB_RETRY_FIRST;
    let mut next_sweep = Instant::now();
    info!(instance = ctx.settings.instance, concurrency = ctx.settings.concurrency, "worker started");
    while !shutdown.is_cancelled() {
        if Instant::now() >= next_sweep {
            sweep(&ctx).await;
            next_sweep = Instant::now() + ctx.settings.sweep_interval;
        }
        let Some(free) = work.wait_for_room(&shutdown).await else { break };
        let jobs = match claim(&ctx, free).await {
            Ok(jobs) => jobs,
            Err(e) => {
                error!(error = %e, wait_ms = db_wait.as_millis() as u64, "claiming failed; the database may be down");
                pause(&shutdown, db_wait).await;
                db_wait = (db_wait * 2).min(DB_RETRY_CAP);
                continue;
            }
        };
        db_wait = DB_RETRY_FIRST;
        let claimed = jobs.len();
        jobs.into_iter().for_each(|job| work.spawn(job));
        // Fewer than asked for: the queue is empty for now, so wait for news.
        if claimed < free {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(ctx.settings.idle_poll_interval) => {}
            }
        }
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

    /// Waits until a request may start (a free permit, no 429 wait pending); returns how
    /// many may start, or None on shutdown.
    async fn wait_for_room(&mut self, shutdown: &CancellationToken) -> Option<usize> {
        loop {
            while self.tasks.try_join_next().is_some() {}
            let free = self.permits.available_permits();
            let throttled = self.ctx.altinn.throttled_for();
            if free > 0 && throttled.is_zero() {
                return Some(free.min(self.ctx.altinn.room()));
            }
            let permit_freed = self.permits.clone().acquire_owned();
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = permit_freed, if free == 0 => {}
                _ = tokio::time::sleep(throttled), if !throttled.is_zero() => {}
            }
        }
    }

    fn spawn(&mut self, job: Job) {
        let permit = self.permits.clone().try_acquire_owned().expect("claimed no more than the free permits");
        if let Some((id, lease_no)) = job.lease() {
            self.leases.lock().expect("leases lock").insert(id, lease_no);
        }
        let (ctx, tx, leases) = (self.ctx.clone(), self.tx.clone(), self.leases.clone());
        self.tasks.spawn(async move {
            if let Some(result) = process(&ctx, job).await {
                let id = result.delivery_id;
                // Forgotten only once the writer has it: shutdown releases whatever is left.
                let _ = tx.send(result).await;
                leases.lock().expect("leases lock").remove(&id);
            }
            drop(permit);
        });
    }

    /// Shutdown: requests in flight get the grace period; their results are written; the
    /// leases of anything unfinished are released so the next instance takes it at once.
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
        let left: Vec<(i64, i64)> = leases.lock().expect("leases lock").drain().collect();
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
    let mut wait = DB_RETRY_FIRST;
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
        match outbox::write_back(&ctx.pool, &batch).await {
            Ok(written) => {
                if (written as usize) < batch.len() {
                    warn!(
                        lost = batch.len() - written as usize,
                        "results of leases taken over by another worker were dropped"
                    );
                }
                batch.clear();
                wait = DB_RETRY_FIRST;
            }
            Err(e) => {
                error!(error = %e, results = batch.len(), "writing results failed; keeping them and retrying");
                if tokio::time::timeout(wait, stop.cancelled()).await.is_ok() {
                    return;
                }
                wait = (wait * 2).min(DB_RETRY_CAP);
            }
        }
    }
}

/// Turns NOTIFYs into wake-ups. A lost notification only costs the idle poll interval.
async fn listen(pool: sqlx::PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut wait = DB_RETRY_FIRST;
    while !shutdown.is_cancelled() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "LISTEN connection failed; polling only until it is back");
                pause(&shutdown, wait).await;
                wait = (wait * 2).min(DB_RETRY_CAP);
                continue;
            }
        };
        if let Err(e) = listener.listen(outbox::NOTIFY_CHANNEL).await {
            warn!(error = %e, "LISTEN failed");
            pause(&shutdown, wait).await;
            continue;
        }
        wait = DB_RETRY_FIRST;
        // recv reconnects by itself after a lost connection; wake the loop then too, in
        // case a notification was missed in between.
        while let Ok(_notification) = listener.recv().await {
            wake.notify_one();
        }
        wake.notify_one();
    }
}

/// Takes back the leases of stopped workers (sends and shared uploads), and counts them.
pub async fn sweep(ctx: &Context) {
    match outbox::reclaim_expired_leases(&ctx.pool).await {
        Ok(ids) if !ids.is_empty() => {
            metrics::leases_reclaimed("delivery", ids.len() as u64);
            warn!(count = ids.len(), ids = ?ids, "expired leases reclaimed")
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "lease sweep failed"),
    }
    match outbox::uploads::reclaim_dead_uploads(&ctx.pool).await {
        Ok(0) => {}
        Ok(n) => {
            metrics::leases_reclaimed("upload", n);
            warn!(count = n, "uploads of stopped workers start over with new attachments")
        }
        Err(e) => warn!(error = %e, "upload sweep failed"),
    }
}

async fn pause(shutdown: &CancellationToken, wait: Duration) {
    let _ = tokio::time::timeout(wait, shutdown.cancelled()).await;
}
