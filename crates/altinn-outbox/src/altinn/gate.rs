//! The gate in front of every Altinn request: holds requests back while Altinn throttles
//! us (429 with Retry-After) or looks down (several requests in a row failed with a 5xx,
//! a timeout or no answer at all).
//!
//! Without it an outage costs one request per row per retry, and a backlog of thousands
//! turns into a stream of doomed requests against a service that is already struggling.
//! With it, once Altinn looks down, requests wait with doubling pauses and then go one at
//! a time (a probe) until one gets a real answer. Rows held back by the gate are deferred
//! without using an attempt: they were never sent.
//!
//! There are three gates ([`Gates`]), one per kind of request: sends (what creates or
//! changes something at Altinn), reads (overview, lookups: Altinn's own database) and
//! details (which ask Altinn Notifications, Register and Dialogporten on every call, and fail
//! with them while everything else works). They fail apart: failing details hold back only
//! details, failing reads only reads, failing sends only sends; the client stands still only
//! when sends and reads both look down. A 429 holds back all three: Altinn throttles the
//! client, not one endpoint.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::backoff::Doubling;

/// The longest Retry-After we obey as given; a larger value is capped so that a gateway's
/// mistake cannot park the queue for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Failures in a row that make Altinn look down. One 503 is noise; five in a row, with
/// nothing succeeding in between, is an outage (random failures of 20 % reach it with a
/// chance of 1 in 3,000).
const OUTAGE_AFTER_FAILURES: u32 = 5;
/// The first pause once Altinn looks down; it doubles with every failed probe.
const OUTAGE_FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between probes: also the longest delay between Altinn's recovery and
/// the queue moving again.
const OUTAGE_MAX_PAUSE: Duration = Duration::from_secs(15);
const OUTAGE_PAUSES: Doubling = Doubling::new(OUTAGE_FIRST_PAUSE, OUTAGE_MAX_PAUSE);
/// How often the loop looks again while a probe is out (it ends in at most a request timeout).
const PROBE_POLL: Duration = Duration::from_millis(50);

/// What a request's answer says about Altinn's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// A real answer (2xx, 4xx, or a 5xx naming a failed dependency of Altinn): it is up.
    Up,
    /// A 5xx, a timeout or no answer.
    Down,
    /// 429: wait this long before any request.
    Throttled(Duration),
}

/// Why a request may not go now, and for how long at least.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    Throttled(Duration),
    Outage(Duration),
}

struct State {
    /// Which requests this gate holds (`sends`, `reads`), for its log lines.
    name: &'static str,
    throttled_until: Option<Instant>,
    outage_until: Option<Instant>,
    failures_in_row: u32,
    /// The pauses of the outage: each failed probe doubles the next.
    pauses: Doubling,
    probe_out: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            name: "",
            throttled_until: None,
            outage_until: None,
            failures_in_row: 0,
            pauses: OUTAGE_PAUSES,
            probe_out: false,
        }
    }
}

impl State {
    fn looks_down(&self) -> bool {
        self.failures_in_row >= OUTAGE_AFTER_FAILURES
    }
}

#[derive(Clone, Default)]
pub struct Gate(Arc<Mutex<State>>);

/// Permission for one request; reports its answer with [`Pass::record`]. A probe dropped
/// unanswered (its row's deadline came first) frees the way for the next probe.
pub struct Pass {
    gate: Gate,
    probe: bool,
}

impl Gate {
    fn named(name: &'static str) -> Gate {
        Gate(Arc::new(Mutex::new(State { name, ..State::default() })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every write leaves the state consistent, so a panic elsewhere cannot corrupt it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pass for one request now, or why not.
    pub fn enter(&self, now: Instant) -> Result<Pass, Closed> {
        let mut s = self.lock();
        if let Some(until) = s.throttled_until.filter(|t| *t > now) {
            return Err(Closed::Throttled(until - now));
        }
        if let Some(until) = s.outage_until.filter(|t| *t > now) {
            return Err(Closed::Outage(until - now));
        }
        if !s.looks_down() {
            return Ok(Pass { gate: self.clone(), probe: false });
        }
        if s.probe_out {
            return Err(Closed::Outage(PROBE_POLL));
        }
        s.probe_out = true;
        Ok(Pass { gate: self.clone(), probe: true })
    }

    /// How long before any request may go (zero when one may go now).
    pub fn wait(&self, now: Instant) -> Duration {
        let s = self.lock();
        let remaining = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now)).unwrap_or_default();
        let probe_wait = if s.looks_down() && s.probe_out { PROBE_POLL } else { Duration::ZERO };
        remaining(s.throttled_until).max(remaining(s.outage_until)).max(probe_wait)
    }

    /// How many requests may start now: one (the probe) while Altinn looks down.
    pub fn room(&self) -> usize {
        if self.outage() {
            1
        } else {
            usize::MAX
        }
    }

    /// True while Altinn looks down (for readiness and logs).
    pub fn outage(&self) -> bool {
        self.lock().looks_down()
    }

    pub(super) fn record(&self, health: Health, probe: bool, now: Instant) {
        let mut s = self.lock();
        if probe {
            s.probe_out = false;
        }
        match health {
            Health::Up => {
                if s.looks_down() {
                    tracing::info!(requests = s.name, "Altinn answers again; requests resume");
                }
                s.failures_in_row = 0;
                s.pauses.reset();
                s.outage_until = None;
            }
            Health::Throttled(wait) => {
                let until = now + wait.min(MAX_RETRY_AFTER);
                if s.throttled_until.is_none_or(|t| t < until) {
                    s.throttled_until = Some(until);
                }
            }
            Health::Down => {
                s.failures_in_row = s.failures_in_row.saturating_add(1);
                let opens = s.failures_in_row == OUTAGE_AFTER_FAILURES;
                if opens {
                    tracing::warn!(
                        requests = s.name,
                        failures = s.failures_in_row,
                        "Altinn looks down; holding requests back and probing one at a time"
                    );
                }
                // Stragglers sent before the outage began do not lengthen the pause; the
                // opening failure and failed probes do.
                if opens || (probe && s.looks_down()) {
                    s.outage_until = Some(now + s.pauses.next_pause());
                }
            }
        }
    }
}

/// Which gate a request goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Creates or changes something: initialize, attachment creation and upload, purge.
    Send,
    /// Reads what Altinn's own database has: the overview, lookups by key, attachments.
    Read,
    /// Reads the details, which depend on Altinn's own dependencies.
    Details,
}

/// The gates of one client.
#[derive(Clone)]
pub struct Gates {
    sends: Gate,
    reads: Gate,
    details: Gate,
}

impl Default for Gates {
    fn default() -> Self {
        Gates { sends: Gate::named("sends"), reads: Gate::named("reads"), details: Gate::named("details") }
    }
}

impl Gates {
    pub fn of(&self, kind: Kind) -> &Gate {
        match kind {
            Kind::Send => &self.sends,
            Kind::Read => &self.reads,
            Kind::Details => &self.details,
        }
    }

    /// A 429's wait, for every request of the client.
    pub fn throttle(&self, wait: Duration, now: Instant) {
        for gate in [&self.sends, &self.reads, &self.details] {
            gate.record(Health::Throttled(wait), false, now);
        }
    }

    /// How long before a send or a read may go (zero when one may go now). Details alone
    /// never hold the worker back: they are read only after a read of the overview.
    pub fn wait(&self, now: Instant) -> Duration {
        self.sends.wait(now).min(self.reads.wait(now))
    }

    /// How many requests may start now: one (a probe) only while sends and reads both look
    /// down; a request of a kind that looks down while another does not is held back by its
    /// own gate.
    pub fn room(&self) -> usize {
        self.sends.room().max(self.reads.room())
    }
}

impl Pass {
    pub fn record(mut self, health: Health) {
        self.gate.record(health, self.probe, Instant::now());
        self.probe = false;
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.probe {
            self.gate.lock().probe_out = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(gate: &Gate, now: Instant) {
        gate.enter(now).expect("open").record(Health::Down);
    }

    #[test]
    fn a_few_failures_do_not_close_the_gate() {
        let gate = Gate::default();
        let now = Instant::now();
        for _ in 0..OUTAGE_AFTER_FAILURES - 1 {
            fail(&gate, now);
        }
        assert!(gate.enter(now).is_ok());
        assert_eq!(gate.room(), usize::MAX);
        gate.enter(now).unwrap().record(Health::Up);
        fail(&gate, now);
        assert!(!gate.outage(), "a success in between resets the count");
    }

    #[test]
    fn an_outage_pauses_then_lets_one_probe_through() {
        let gate = Gate::default();
        let now = Instant::now();
        for _ in 0..OUTAGE_AFTER_FAILURES {
            fail(&gate, now);
        }
        assert!(gate.outage());
        // The pause counts from the failure (a moment after `now`).
        let Err(Closed::Outage(pause)) = gate.enter(now) else { panic!("closed while Altinn looks down") };
        assert!(pause >= OUTAGE_FIRST_PAUSE && pause < OUTAGE_FIRST_PAUSE * 2, "{pause:?}");
        assert_eq!(gate.wait(now), pause);
        assert_eq!(gate.room(), 1);

        // After the pause one probe goes; others wait for it.
        let later = Instant::now() + OUTAGE_FIRST_PAUSE * 2;
        let probe = gate.enter(later).expect("the probe");
        assert!(matches!(gate.enter(later), Err(Closed::Outage(PROBE_POLL))));
        probe.record(Health::Down);
        assert!(gate.wait(Instant::now()) > OUTAGE_FIRST_PAUSE, "the pause doubles after a failed probe");

        let much_later = Instant::now() + OUTAGE_MAX_PAUSE;
        gate.enter(much_later).expect("the next probe").record(Health::Up);
        assert!(!gate.outage());
        assert!(gate.enter(much_later).is_ok() && gate.enter(much_later).is_ok(), "open again");
    }

    #[test]
    fn requests_sent_before_the_outage_do_not_lengthen_the_pause() {
        let gate = Gate::default();
        let now = Instant::now();
        let in_flight: Vec<Pass> = (0..16).map(|_| gate.enter(now).unwrap()).collect();
        in_flight.into_iter().for_each(|p| p.record(Health::Down));
        assert!(gate.outage());
        assert!(gate.wait(Instant::now()) <= OUTAGE_FIRST_PAUSE);
    }

    #[test]
    fn a_dropped_probe_frees_the_way() {
        let gate = Gate::default();
        let now = Instant::now();
        for _ in 0..OUTAGE_AFTER_FAILURES {
            fail(&gate, now);
        }
        let later = now + OUTAGE_MAX_PAUSE;
        drop(gate.enter(later).expect("probe"));
        assert!(gate.enter(later).is_ok(), "a probe abandoned by its row does not block the gate");
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        assert_eq!(OUTAGE_PAUSES.nth(0), OUTAGE_FIRST_PAUSE);
        assert_eq!(OUTAGE_PAUSES.nth(1), OUTAGE_FIRST_PAUSE * 2);
        assert_eq!(OUTAGE_PAUSES.nth(10), OUTAGE_MAX_PAUSE);
    }

    #[test]
    fn throttling_holds_every_request_for_the_time_given() {
        let gate = Gate::default();
        let now = Instant::now();
        gate.enter(now).unwrap().record(Health::Throttled(Duration::from_secs(30)));
        let wait = gate.wait(Instant::now());
        assert!(wait > Duration::from_secs(29) && wait <= Duration::from_secs(30));
        assert!(matches!(gate.enter(Instant::now()), Err(Closed::Throttled(_))));
        gate.enter(Instant::now() + Duration::from_secs(31)).expect("open after the wait");
        assert!(!gate.outage(), "a 429 is not an outage");
    }

    #[test]
    fn a_kind_that_fails_holds_back_only_its_own_requests() {
        let gates = Gates::default();
        let now = Instant::now();
        for _ in 0..OUTAGE_AFTER_FAILURES {
            fail(gates.of(Kind::Details), now);
        }
        assert!(gates.of(Kind::Details).enter(now).is_err(), "details wait");
        let later = now + OUTAGE_MAX_PAUSE;
        let probe = gates.of(Kind::Details).enter(later).expect("the probe");
        assert!(gates.of(Kind::Details).enter(later).is_err(), "one probe at a time");
        drop(probe);
        assert!(gates.of(Kind::Send).enter(now).is_ok() && gates.of(Kind::Read).enter(now).is_ok());
        assert_eq!((gates.wait(now), gates.room()), (Duration::ZERO, usize::MAX), "the worker goes on");
        for _ in 0..OUTAGE_AFTER_FAILURES {
            fail(gates.of(Kind::Send), now);
        }
        assert!(gates.of(Kind::Read).enter(now).is_ok(), "reads of what Altinn has go on");
        assert_eq!((gates.wait(now), gates.room()), (Duration::ZERO, usize::MAX));
        for _ in 0..OUTAGE_AFTER_FAILURES {
            fail(gates.of(Kind::Read), now);
        }
        assert!(gates.wait(now) > Duration::ZERO, "sends and reads down: the worker waits");
        assert_eq!(gates.room(), 1);
    }

    #[test]
    fn a_429_holds_back_every_kind() {
        let gates = Gates::default();
        let now = Instant::now();
        gates.throttle(Duration::from_secs(30), now);
        for kind in [Kind::Send, Kind::Read, Kind::Details] {
            assert!(matches!(gates.of(kind).enter(now), Err(Closed::Throttled(_))), "{kind:?}");
        }
        assert!(gates.wait(now) > Duration::from_secs(29));
    }
}
