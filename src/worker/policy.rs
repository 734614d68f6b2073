//! Retry and status-read schedules as data, with pure functions of the attempt number.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::altinn::faults::LONGEST_ROW_WAIT;
use crate::config::{FollowUntil, RetryConfig, StatusConfig};

/// `now + wait`, saturating: a configured wait never overflows into a panic.
pub fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX / 2)
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
}

impl StatusPolicy {
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
        }
    }

    /// The interval before read number `polls + 1`.
    pub fn interval(&self, polls: i32) -> Duration {
        self.schedule.delay(polls.max(0) as u32 + 1, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(60), multiplier: 2.0, jitter: 0.5 }
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
