//! The loop's supply of work: claimed jobs queued for the next free permit, and the claims
//! that top the queue up while requests run.
//!
//! A claim is several round trips and a commit's WAL flush, so it is made ahead, in
//! batches, and two may overlap: a claim per freed permit would cost a round of queries per
//! row and leave requests waiting for it. A claim leaves out a kind of work (shared uploads,
//! status reads) that the previous look found none of, for a moment: each look is a round
//! trip, and during a send backlog they are nearly always empty.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::{debug, error};

use super::run::{held, Leases, DB_RETRY};
use super::{claim_looking, Context, Job, Looks};
use crate::backoff::Doubling;
use crate::systemd::Part;

/// Claims running at once at most: a second claim overlapping the first keeps the queue fed
/// when requests are fast.
const MAX_CLAIMS: usize = 2;
/// Work held (in flight, queued and being claimed), in multiples of the concurrency: enough
/// that the queue does not run dry while claims run, little enough that one instance does
/// not hoard what a second instance could be sending.
const TARGET_ROUNDS: usize = 8;
/// After a look found no due status read, or no shared upload, claims leave that kind out
/// for this long. Reads are scheduled seconds apart and uploads take seconds, so neither
/// notices; a NOTIFY (new messages) makes the next claim look at everything.
const POLLS_LOOK_AGAIN: Duration = Duration::from_millis(200);
const UPLOADS_LOOK_AGAIN: Duration = Duration::from_secs(1);

/// What a claim task returns.
pub struct Claimed {
    jobs: Result<Vec<Job>, sqlx::Error>,
    asked: usize,
    /// When the claim began: queued jobs' budgets count from here.
    at: Instant,
    looks: Looks,
}

/// Claimed work not yet started, and the claims that top it up.
pub struct Feed {
    pub ready: VecDeque<(Job, Instant)>,
    claims: JoinSet<Claimed>,
    /// Rows the running claims asked for.
    asking: usize,
    /// Set when a claim found less than it asked for (the queue is empty for now) or failed
    /// (the database is away): no claim before then unless a NOTIFY comes.
    pub idle_until: Option<Instant>,
    /// The pause after the next database error: doubles per error, resets on success.
    db_retry: Doubling,
    /// Until then claims leave out status reads, or shared uploads (see the constants).
    skip_polls_until: Option<Instant>,
    skip_uploads_until: Option<Instant>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            ready: VecDeque::new(),
            claims: JoinSet::new(),
            asking: 0,
            idle_until: None,
            db_retry: DB_RETRY,
            skip_polls_until: None,
            skip_uploads_until: None,
        }
    }
}

impl Feed {
    pub fn claiming(&self) -> bool {
        !self.claims.is_empty()
    }

    /// A NOTIFY came: new work may be due, of any kind.
    pub fn wake(&mut self) {
        self.idle_until = None;
        self.skip_polls_until = None;
        self.skip_uploads_until = None;
    }

    /// Starts a claim when the queue runs low: up to `TARGET_ROUNDS` times the concurrency
    /// held, claimed in batches of at least the concurrency unless nothing at all is
    /// outstanding. While Altinn looks down only what may start is claimed (one probe at a
    /// time).
    pub fn top_up(&mut self, ctx: &Arc<Context>, in_flight: usize) {
        if self.claims.len() >= MAX_CLAIMS || self.idle_until.is_some() {
            return;
        }
        let c = ctx.settings.concurrency;
        let outstanding = in_flight + self.ready.len() + self.asking;
        let target = match ctx.altinn.room() {
            usize::MAX => TARGET_ROUNDS * c,
            room => room,
        };
        let want = target.saturating_sub(outstanding);
        let batch = if outstanding == 0 { 1 } else { c.clamp(1, target) };
        if want < batch {
            return;
        }
        let now = Instant::now();
        let due = |skip: Option<Instant>| skip.is_none_or(|until| until <= now);
        // A kind of request Altinn's gate holds back is not claimed meanwhile: its rows would
        // only be deferred (sends and uploads go through the send gate, status reads the read gate).
        let sends = ctx.altinn.sends_held_for().is_zero();
        let reads = ctx.altinn.reads_held_for().is_zero();
        let looks =
            Looks { sends, uploads: sends && due(self.skip_uploads_until), polls: reads && due(self.skip_polls_until) };
        if !(looks.sends || looks.uploads || looks.polls) {
            // Every kind is held back or was just found empty: look again shortly.
            self.idle_until = Some(now + POLLS_LOOK_AGAIN);
            return;
        }
        let ctx = ctx.clone();
        self.asking += want;
        self.claims.spawn(async move {
            let _busy = ctx.liveness.busy(Part::Loop);
            let at = Instant::now();
            Claimed { jobs: claim_looking(&ctx, want, looks).await, asked: want, at, looks }
        });
    }

    /// The next result of a running claim (pending until there is one).
    pub async fn claimed(&mut self) -> Claimed {
        let claimed = match self.claims.join_next().await {
            Some(Ok(claimed)) => claimed,
            Some(Err(e)) => Claimed {
                jobs: Err(sqlx::Error::Protocol(format!("the claim task failed: {e}"))),
                asked: 0,
                at: Instant::now(),
                looks: Looks::ALL,
            },
            None => std::future::pending().await,
        };
        self.asking = if self.claims.is_empty() { 0 } else { self.asking.saturating_sub(claimed.asked) };
        claimed
    }

    /// Queues what a claim brought (holding its leases); a short claim means the queue is
    /// empty for now, a failed one that the database is away.
    pub fn receive(&mut self, claimed: Claimed, leases: &Leases, idle_poll: Duration) {
        let Claimed { jobs, asked, at, looks } = claimed;
        let jobs = match jobs {
            Ok(jobs) => jobs,
            Err(e) => {
                let wait = self.db_retry.next_pause();
                error!(error = %e, wait_ms = wait.as_millis() as u64, "claiming failed; the database may be down");
                self.idle_until = Some(Instant::now() + wait);
                return;
            }
        };
        let ms = at.elapsed().as_millis() as u64;
        debug!(claimed = jobs.len(), asked, queued = self.ready.len(), ms, "claimed");
        self.db_retry.reset();
        let now = Instant::now();
        if jobs.len() < asked {
            self.idle_until = Some(now + idle_poll);
        }
        if looks.polls && !jobs.iter().any(|j| matches!(j, Job::Poll(_))) {
            self.skip_polls_until = Some(now + POLLS_LOOK_AGAIN);
        }
        if looks.uploads && !jobs.iter().any(|j| matches!(j, Job::Upload(_))) {
            self.skip_uploads_until = Some(now + UPLOADS_LOOK_AGAIN);
        }
        let mut leases = held(leases);
        for job in jobs {
            if let Some((id, lease_no)) = job.lease() {
                leases.insert(id, lease_no);
            }
            self.ready.push_back((job, at));
        }
    }
}
