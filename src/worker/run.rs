//! The daemon's loop: keeps up to `concurrency` requests in flight from a queue of claimed
//! work, claims the next batch while requests run, wakes on NOTIFY (or every
//! `idle_poll_interval`), and writes results back in batches from a single writer task.
//!
//! Claiming ahead keeps claims large (half the concurrency at least, while there is a
//! backlog) and keeps the requests flowing while the next claim runs: a claim per freed
//! request would cost a round of queries per row. Claimed work waiting in the queue holds
//! its lease, and shutdown releases it like work in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{claim, process_claimed, Context, Job};
use crate::outbox::{self, WriteBack};
use crate::systemd::Part;

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
            _ = shutdown.cancelled() => break,
            claimed = feed.claimed(), if feed.claiming() => feed.receive(claimed, &work.leases, idle_poll),
            _ = work.permit_freed(), if !feed.ready.is_empty() && throttled.is_zero() => {}
            _ = wake.notified() => feed.idle_until = None,
            _ = tokio::time::sleep(idle_for.unwrap_or_default()), if idle_for.is_some() => feed.idle_until = None,
            _ = tokio::time::sleep(throttled), if !throttled.is_zero() => {}
            _ = tokio::time::sleep(next_sweep.saturating_duration_since(Instant::now())) => {}
        }
    }
    // A claim under way is waited for, so that its rows are released with the rest.
    if feed.claiming() {
        let claimed = feed.claimed().await;
        feed.receive(claimed, &work.leases, idle_poll);
    }
    work.finish().await;
    listener.abort();
}

/// What a claim task returns: the jobs, how many it asked for, and when it began.
type Claimed = (Result<Vec<Job>, sqlx::Error>, usize, Instant);

/// Claimed work not yet started, and the claim that tops it up.
#[derive(Default)]
struct Feed {
    ready: VecDeque<(Job, Instant)>,
    claim: Option<JoinHandle<Claimed>>,
    /// Set when a claim found less than it asked for (the queue is empty for now) or failed
    /// (the database is away): no claim before then unless a NOTIFY comes.
    idle_until: Option<Instant>,
    /// The pause after the next database error: doubles per error, resets on success.
    db_wait: Option<Duration>,
}

impl Feed {
    fn claiming(&self) -> bool {
        self.claim.is_some()
    }

    /// Starts a claim when the queue runs low. The target is twice the concurrency (one round
    /// in flight, one waiting), claimed in batches of at least half the concurrency unless
    /// nothing at all is outstanding. While Altinn looks down only what may start is claimed
    /// (one probe at a time).
    fn top_up(&mut self, ctx: &Arc<Context>, in_flight: usize) {
        if self.claim.is_some() || self.idle_until.is_some() {
            return;
        }
        let c = ctx.settings.concurrency;
        let outstanding = in_flight + self.ready.len();
        let target = match ctx.altinn.room() {
            usize::MAX => 2 * c,
            room => room,
        };
        let want = target.saturating_sub(outstanding);
        let batch = if outstanding == 0 { 1 } else { (c / 2).clamp(1, target) };
        if want < batch {
            return;
        }
        let ctx = ctx.clone();
        self.claim = Some(tokio::spawn(async move {
            let _busy = ctx.liveness.busy(Part::Loop);
            let at = Instant::now();
            (claim(&ctx, want).await, want, at)
        }));
    }

    /// The running claim's result (pending until there is one).
    async fn claimed(&mut self) -> Claimed {
        let task = self.claim.as_mut().expect("only polled while a claim runs");
        let claimed = match task.await {
            Ok(claimed) => claimed,
            Err(e) => (Err(sqlx::Error::Protocol(format!("the claim task failed: {e}"))), 0, Instant::now()),
        };
        self.claim = None;
        claimed
    }

    /// Queues what a claim brought (holding its leases); a short claim means the queue is
    /// empty for now, a failed one that the database is away.
    fn receive(&mut self, (jobs, asked, at): Claimed, leases: &Leases, idle_poll: Duration) {
        match jobs {
            Ok(jobs) => {
                let ms = at.elapsed().as_millis() as u64;
                debug!(claimed = jobs.len(), asked, queued = self.ready.len(), ms, "claimed");
                self.db_wait = None;
                if jobs.len() < asked {
                    self.idle_until = Some(Instant::now() + idle_poll);
                }
                let mut held = leases.lock().expect("leases lock");
                for job in jobs {
                    if let Some((id, lease_no)) = job.lease() {
                        held.insert(id, lease_no);
                    }
                    self.ready.push_back((job, at));
                }
            }
            Err(e) => {
                let wait = self.db_wait.unwrap_or(DB_RETRY_FIRST);
                error!(error = %e, wait_ms = wait.as_millis() as u64, "claiming failed; the database may be down");
                self.idle_until = Some(Instant::now() + wait);
                self.db_wait = Some((wait * 2).min(DB_RETRY_CAP));
            }
        }
    }
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
        let held: Vec<(i64, i64)> = ready.iter().filter_map(|(job, _)| job.lease()).collect();
        let (ids, lease_nos): (Vec<i64>, Vec<i64>) = held.iter().copied().unzip();
        match outbox::release(&self.ctx.pool, &ids, &lease_nos).await {
            Ok(n) => {
                debug!(released = n, "queued work given back while requests are held back");
                let mut leases = self.leases.lock().expect("leases lock");
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
                leases.lock().expect("leases lock").remove(&id);
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
        let written = {
            let _busy = ctx.liveness.busy(Part::Writer);
            let began = Instant::now();
            let written = outbox::write_back(&ctx.pool, &batch).await;
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

async fn pause(shutdown: &CancellationToken, wait: Duration) {
    let _ = tokio::time::timeout(wait, shutdown.cancelled()).await;
}
