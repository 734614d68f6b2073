//! Retry, status-read and malware-scan schedules as data, with pure functions of the attempt
//! number or of the time waited.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::altinn::faults::LONGEST_ROW_WAIT;
use crate::config::{EventsConfig, FollowUntil, RetryConfig, StatusConfig};

/// `now + wait`, saturating: a configured wait never overflows into a panic (a wait past the
/// calendar's end means the end, which PostgreSQL's timestamptz still holds).
pub fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait).ok().and_then(|w| now.checked_add_signed(w)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Exponential backoff with jitter.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Fraction of the delay that is random: the delay is drawn from `[d * (1 - jitter), d]`.
    pub jitter: f64,
}

impl Backoff {
    /// The delay after failure number `n` (1-based). `random` is uniform in `[0, 1)`; passing
    /// it in keeps this pure and testable.
    pub fn delay(&self, n: u32, random: f64) -> Duration {
        let exponent = n.saturating_sub(1).min(64) as i32;
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let capped = base.min(self.max.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter * random.clamp(0.0, 1.0));
        Duration::from_secs_f64(jittered.max(0.0))
    }
}

/// When to give up sending, and how long to wait in between.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: i32,
    pub backoff: Backoff,
    /// How long after its INSERT a row held by a configuration fault may still wait.
    pub config_fault_max_age: Duration,
}

impl RetryPolicy {
    pub fn from_config(c: &RetryConfig) -> Self {
        RetryPolicy {
            max_attempts: c.max_attempts,
            backoff: Backoff {
                initial: Duration::from_millis(c.initial_delay_ms),
                max: Duration::from_millis(c.max_delay_ms),
                multiplier: c.multiplier,
                jitter: c.jitter,
            },
            config_fault_max_age: Duration::from_secs(c.config_fault_max_age_s),
        }
    }

    /// True when a transient failure of attempt `attempt` (1-based) ends the delivery.
    pub fn exhausted(&self, attempt: i32) -> bool {
        attempt >= self.max_attempts
    }

    /// The wait of a row held by a configuration fault at `age` (since its INSERT): about as
    /// long as it has waited already, so that tries thin out as the fault lasts, from the
    /// backoff's first delay to its cap. It is the backoff's delay after as many failures
    /// as doublings fit into the age; no attempt is counted for it. Never longer than
    /// [`LONGEST_ROW_WAIT`], which the client counts on to forget faults no row waits for.
    pub fn fault_delay(&self, age: Duration, random: f64) -> Duration {
        let b = &self.backoff;
        let grown = age.as_secs_f64() / b.initial.as_secs_f64().max(f64::EPSILON);
        let n = if grown < 1.0 || b.multiplier <= 1.0 { 1 } else { grown.log(b.multiplier).floor() as u32 + 1 };
        b.delay(n, random).min(LONGEST_ROW_WAIT)
    }

    /// How much longer a row inserted `age` ago may wait for a configuration fault to be
    /// fixed; None once it is too old.
    pub fn fault_wait_left(&self, age: Duration) -> Option<Duration> {
        self.config_fault_max_age.checked_sub(age).filter(|left| !left.is_zero())
    }
}

/// How status reads are spaced and when they stop.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusPolicy {
    /// Read intervals: first, then growing; no jitter needed (reads are spread by send times).
    pub schedule: Backoff,
    pub follow_until: FollowUntil,
    pub follow_notifications: bool,
    pub max_age: Duration,
    /// With Altinn Events on: the spacing of routine reads after the first, since an event
    /// brings the read forward when something happens. The poll stays as the safety net for
    /// events that never come (lost, dead-lettered, or changes that have none).
    pub safety_interval: Option<Duration>,
}

impl StatusPolicy {
    /// The policy of `c`, slowed to the safety poll of `events` when events are on.
    pub fn with_events(c: &StatusConfig, events: &EventsConfig) -> Self {
        StatusPolicy {
            safety_interval: events.enabled.then(|| Duration::from_millis(events.safety_poll_interval_ms)),
            ..StatusPolicy::from_config(c)
        }
    }

    pub fn from_config(c: &StatusConfig) -> Self {
        StatusPolicy {
            schedule: Backoff {
                initial: Duration::from_millis(c.first_poll_delay_ms),
                max: Duration::from_millis(c.max_poll_interval_ms),
                multiplier: c.poll_multiplier,
                jitter: 0.0,
            },
            follow_until: c.follow_until,
            follow_notifications: c.follow_notifications,
            max_age: Duration::from_secs(c.max_follow_age_h * 3600),
            safety_interval: None,
        }
    }

    /// Whether Altinn Events are on (reads then wait for the safety poll, or an event).
    pub fn with_events_on(&self) -> bool {
        self.safety_interval.is_some()
    }

    /// The interval before read number `polls + 1`.
    pub fn interval(&self, polls: i32) -> Duration {
        self.schedule.delay(polls.max(0) as u32 + 1, 0.0)
    }

    /// The interval before the next routine read (the first after the send, or after a read
    /// that succeeded): the schedule, or with events on the safety poll (never sooner than the
    /// schedule would read), since an event brings the read forward when something happens.
    pub fn routine_interval(&self, polls: i32) -> Duration {
        let scheduled = self.interval(polls);
        self.safety_interval.map_or(scheduled, |safety| safety.max(scheduled))
    }
}

/// How an uploaded file is read while Altinn's malware scan runs, and for how long.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanPolicy {
    /// `initial` spaces the first read after the upload and `max` the furthest apart; in
    /// between each read comes when the wait so far has grown by `multiplier`. No jitter:
    /// uploads are spread by their own times.
    pub reads: Backoff,
    /// How long after the upload a scan still running gives the file up.
    pub max_wait: Duration,
}

/// What follows a read that found the scan still running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanWait {
    /// Read again then (never later than the end of the wait, so it ends on time).
    ReadAt(DateTime<Utc>),
    /// The wait is over: give the file up; the scan ran at least this long.
    GiveUp(Duration),
}

impl ScanPolicy {
    /// Reads are spaced like send retries; the wait is bounded by `status.max_scan_wait_ms`.
    pub fn from_config(retry: &RetryConfig, status: &StatusConfig) -> Self {
        ScanPolicy {
            reads: Backoff { jitter: 0.0, ..RetryPolicy::from_config(retry).backoff },
            max_wait: Duration::from_millis(status.max_scan_wait_ms),
        }
    }

    /// After a read at `now` of a file uploaded at `uploaded_at` whose scan still runs. The
    /// interval grows with the wait rather than with a count of reads, so it needs no column
    /// of its own and survives a restart: with the defaults (1 s, doubling, at most 5 min) an
    /// hour's wait costs about twenty reads, and a scan's end is seen at the latest when it
    /// has taken as long again (or `max` later). A read that seems to come before the upload
    /// (clocks apart) counts as no wait at all.
    pub fn after_read(&self, uploaded_at: DateTime<Utc>, now: DateTime<Utc>) -> ScanWait {
        let waited = (now - uploaded_at).to_std().unwrap_or_default();
        if waited >= self.max_wait {
            return ScanWait::GiveUp(waited);
        }
        let grown = waited.mul_f64((self.reads.multiplier - 1.0).max(0.0));
        let interval = grown.clamp(self.reads.initial, self.reads.max.max(self.reads.initial));
        ScanWait::ReadAt(after(now, interval).min(after(uploaded_at, self.max_wait)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(60), multiplier: 2.0, jitter: 0.5 }
    }

    #[test]
    fn with_events_on_routine_reads_slow_to_the_safety_poll() {
        let status = StatusConfig::default();
        let mut events = EventsConfig::default();
        let off = StatusPolicy::with_events(&status, &events);
        assert_eq!(off.routine_interval(1), off.interval(1), "events off: the schedule");
        events.enabled = true;
        let on = StatusPolicy::with_events(&status, &events);
        assert_eq!(on.interval(0), off.interval(0), "a failed read is retried as without events");
        assert_eq!(on.routine_interval(0), Duration::from_secs(3600), "the first read is the safety net's");
        assert_eq!(on.routine_interval(1), Duration::from_secs(3600));
        events.safety_poll_interval_ms = 1;
        let tiny = StatusPolicy::with_events(&status, &events);
        assert_eq!(tiny.routine_interval(3), off.interval(3), "never sooner than the schedule");
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let b = backoff();
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(4, 0.0), Duration::from_secs(8));
        assert_eq!(b.delay(7, 0.0), Duration::from_secs(60));
        assert_eq!(b.delay(1000, 0.0), Duration::from_secs(60));
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let b = backoff();
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(2));
        let d = b.delay(3, 0.5);
        assert!(d > Duration::from_secs(2) && d < Duration::from_secs(4), "{d:?}");
    }

    fn scan() -> ScanPolicy {
        let reads =
            Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(300), multiplier: 2.0, jitter: 0.0 };
        ScanPolicy { reads, max_wait: Duration::from_secs(3600) }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_running_scan_is_read_ever_more_rarely_until_its_wait_is_over() {
        let p = scan();
        let uploaded = at(0);
        assert_eq!(p.after_read(uploaded, at(0)), ScanWait::ReadAt(at(1)), "the first read after the initial delay");
        assert_eq!(p.after_read(uploaded, at(1)), ScanWait::ReadAt(at(2)));
        assert_eq!(p.after_read(uploaded, at(8)), ScanWait::ReadAt(at(16)), "the wait so far doubles");
        assert_eq!(p.after_read(uploaded, at(1000)), ScanWait::ReadAt(at(1300)), "at most max apart");
        assert_eq!(
            p.after_read(uploaded, at(3500)),
            ScanWait::ReadAt(at(3600)),
            "the last read at the end of the wait"
        );
        assert_eq!(p.after_read(uploaded, at(3600)), ScanWait::GiveUp(Duration::from_secs(3600)));
        assert_eq!(p.after_read(uploaded, at(3700)), ScanWait::GiveUp(Duration::from_secs(3700)), "a late read");
    }

    #[test]
    fn reads_before_the_upload_or_without_growth_stay_on_the_initial_interval() {
        let p = ScanPolicy { reads: Backoff { multiplier: 1.0, ..scan().reads }, ..scan() };
        assert_eq!(p.after_read(at(0), at(100)), ScanWait::ReadAt(at(101)), "multiplier 1: a fixed interval");
        assert_eq!(
            scan().after_read(at(10), at(0)),
            ScanWait::ReadAt(at(1)),
            "a read before the upload: the initial interval"
        );
        let tiny = ScanPolicy { max_wait: Duration::from_millis(300), ..scan() };
        let read = tiny.after_read(at(0), at(0));
        assert_eq!(read, ScanWait::ReadAt(at(0) + chrono::Duration::milliseconds(300)), "never past the wait");
    }

    #[test]
    fn a_wait_too_long_for_the_calendar_never_overflows() {
        let p = ScanPolicy { max_wait: Duration::from_millis(u64::MAX), ..scan() };
        assert_eq!(p.after_read(at(0), at(10)), ScanWait::ReadAt(at(20)));
    }

    #[test]
    fn attempts_are_counted_from_one() {
        let p = RetryPolicy { max_attempts: 3, backoff: backoff(), config_fault_max_age: Duration::ZERO };
        assert!(!p.exhausted(2));
        assert!(p.exhausted(3));
    }

    #[test]
    fn a_configuration_fault_waits_about_as_long_as_the_row_has_waited() {
        let p = RetryPolicy { max_attempts: 3, backoff: backoff(), config_fault_max_age: Duration::from_secs(3600) };
        let secs = |s: u64| Duration::from_secs(s);
        assert_eq!(p.fault_delay(secs(0), 0.0), secs(1), "a fresh row: the first delay");
        assert_eq!(p.fault_delay(Duration::from_millis(1_500), 0.0), secs(1));
        assert_eq!(p.fault_delay(secs(5), 0.0), secs(4), "the largest doubling within its age");
        assert_eq!(p.fault_delay(secs(40), 0.0), secs(32));
        assert_eq!(p.fault_delay(secs(100), 0.0), secs(60), "capped by the backoff");
        let slow = Backoff { max: secs(86_400), ..backoff() };
        let p = RetryPolicy { backoff: slow, ..p };
        assert_eq!(p.fault_delay(secs(20_000), 0.0), LONGEST_ROW_WAIT, "never past what the client counts on");
        assert_eq!(p.fault_wait_left(secs(3_000)), Some(secs(600)));
        assert_eq!(p.fault_wait_left(secs(3_600)), None, "too old: it fails");
        let flat = RetryPolicy { backoff: Backoff { multiplier: 1.0, ..backoff() }, ..p };
        assert_eq!(flat.fault_delay(secs(500), 0.0), secs(1));
    }
}
