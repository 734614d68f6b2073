//! How the token refreshes are going: the cool-down after failures, the status a health
//! report shows, and the log lines an operator needs, written once per change rather than
//! once per caller.
//!
//! Without a cool-down every caller that finds no token starts a refresh of its own, so an
//! outage or a wrong client id turns into a stream of grants at Maskinporten. After a failed
//! refresh, callers get the same error without a request until the cool-down has passed;
//! it doubles with each consecutive failure up to a cap, and a success resets it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use super::error::TokenError;
use crate::backoff::Doubling;

/// Whether Altinn tokens can be had, for health reporting. Messages never hold a token,
/// a grant or a key: they are [`TokenError`] messages, which carry none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AuthStatus {
    /// No refresh has finished yet.
    Unknown,
    /// The last refresh succeeded; its token expires at `expires_at` (Altinn's clock).
    Ok { expires_at: DateTime<Utc> },
    /// Transient failures since `since`: rows wait and are retried, no one needs to act
    /// unless it lasts.
    Unavailable { code: String, message: String, since: DateTime<Utc> },
    /// Maskinporten or the exchange refused us since `since`: an operator must fix the
    /// client id, key, scopes or clock; rows wait without using attempts.
    Misconfigured { code: String, message: String, since: DateTime<Utc> },
}

/// Consecutive failed refreshes.
#[derive(Debug)]
struct Streak {
    error: TokenError,
    failures: u32,
    /// When the first failure of the streak happened.
    since: DateTime<Utc>,
    cool_until: Instant,
}

/// The outcome of the refreshes so far; kept in the token client's cache.
#[derive(Debug, Default)]
pub(crate) struct Health {
    last_expires_at: Option<DateTime<Utc>>,
    streak: Option<Streak>,
}

/// Something an operator should read, decided under the cache lock and logged after it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Recovered { failures: u32 },
    Misconfigured(TokenError),
    Unavailable { error: TokenError, cool_down: Duration },
}

impl Health {
    /// The error of the last refresh, if it failed.
    pub(crate) fn last_error(&self) -> Option<&TokenError> {
        self.streak.as_ref().map(|s| &s.error)
    }

    /// How long callers still get the last error without a request.
    pub(crate) fn cooling_down_for(&self, now: Instant) -> Duration {
        self.streak.as_ref().map(|s| s.cool_until.saturating_duration_since(now)).unwrap_or_default()
    }

    /// The last refresh's error while its cool-down lasts.
    pub(crate) fn cooling_error(&self, now: Instant) -> Option<&TokenError> {
        self.streak.as_ref().filter(|s| now < s.cool_until).map(|s| &s.error)
    }

    pub(crate) fn status(&self) -> AuthStatus {
        match (&self.streak, self.last_expires_at) {
            (Some(s), _) => {
                let (code, message, since) = (s.error.code(), s.error.to_string(), s.since);
                if s.error.is_config_error() {
                    AuthStatus::Misconfigured { code, message, since }
                } else {
                    AuthStatus::Unavailable { code, message, since }
                }
            }
            (None, Some(expires_at)) => AuthStatus::Ok { expires_at },
            (None, None) => AuthStatus::Unknown,
        }
    }

    /// Records a token that expires at `expires_at`; ends any streak and its cool-down.
    pub(crate) fn succeeded(&mut self, expires_at: DateTime<Utc>) -> Option<Change> {
        self.last_expires_at = Some(expires_at);
        let streak = self.streak.take()?;
        Some(Change::Recovered { failures: streak.failures })
    }

    /// Records a failed refresh at `now` and starts its cool-down: the first of `cool_downs`
    /// after the first failure of a streak, doubled per further failure (a zero first means
    /// none). Returns what to log: a configuration error when it first appears or changes, a
    /// transient one once per run of transient failures.
    pub(crate) fn failed(
        &mut self,
        error: &TokenError,
        now: (DateTime<Utc>, Instant),
        cool_downs: Doubling,
    ) -> Option<Change> {
        let previous = self.streak.take();
        let failures = previous.as_ref().map_or(0, |s| s.failures).saturating_add(1);
        let since = previous.as_ref().map_or(now.0, |s| s.since);
        let cool_down = cool_downs.nth(failures - 1);
        let previous_error = previous.map(|s| s.error);
        self.streak = Some(Streak { error: error.clone(), failures, since, cool_until: now.1 + cool_down });
        if error.is_config_error() {
            (previous_error.as_ref() != Some(error)).then(|| Change::Misconfigured(error.clone()))
        } else {
            let new_run = previous_error.is_none_or(|e| e.is_config_error());
            new_run.then(|| Change::Unavailable { error: error.clone(), cool_down })
        }
    }
}

impl Change {
    /// Logs the change. `kid` names the key without revealing it; no token, grant or key
    /// material is in any of these lines.
    pub(crate) fn log(&self, kid: &str) {
        match self {
            Change::Recovered { failures } => {
                tracing::info!(%kid, failures, "altinn token available again after failed refreshes");
            }
            Change::Misconfigured(error) => tracing::error!(
                %kid,
                code = %error.code(),
                %error,
                "Maskinporten or the Altinn token exchange rejected our grant: check \
                 maskinporten.client_id, the key and its kid (registered on the client and not \
                 expired), the scopes granted to the client, and this host's clock (NTP). \
                 Rows wait without using attempts until a token can be had"
            ),
            Change::Unavailable { error, cool_down } => tracing::warn!(
                %kid,
                code = %error.code(),
                %error,
                cool_down_ms = cool_down.as_millis() as u64,
                "no altinn token for now; rows wait without using attempts, and refreshes back off \
                 until one succeeds"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maskinporten::Step;

    const BACKOFF: Doubling = Doubling::new(Duration::from_secs(1), Duration::from_secs(60));

    fn unavailable() -> TokenError {
        TokenError::Unavailable { step: Step::Maskinporten, status: Some(503), message: "HTTP 503".into() }
    }

    fn rejected(description: &str) -> TokenError {
        TokenError::Rejected {
            step: Step::Maskinporten,
            error: "invalid_client".into(),
            description: description.into(),
        }
    }

    #[test]
    fn the_cool_down_doubles_per_failure_of_a_streak_and_zero_means_none() {
        let mut health = Health::default();
        let now = (Utc::now(), Instant::now());
        let cool_downs: Vec<u64> = (0..8)
            .map(|_| {
                health.failed(&unavailable(), now, BACKOFF);
                health.cooling_down_for(now.1).as_secs()
            })
            .collect();
        assert_eq!(cool_downs, [1, 2, 4, 8, 16, 32, 60, 60]);
        let mut health = Health::default();
        let none = Doubling::new(Duration::ZERO, Duration::ZERO);
        health.failed(&unavailable(), now, none);
        assert_eq!(health.cooling_down_for(now.1), Duration::ZERO);
    }

    #[test]
    fn a_streak_keeps_its_start_and_a_success_ends_it() {
        let mut health = Health::default();
        assert_eq!(health.status(), AuthStatus::Unknown);
        let (t0, i0) = (Utc::now(), Instant::now());
        let later = (t0 + chrono::TimeDelta::seconds(5), i0 + Duration::from_secs(5));
        assert!(matches!(health.failed(&unavailable(), (t0, i0), BACKOFF), Some(Change::Unavailable { .. })));
        assert_eq!(health.failed(&unavailable(), later, BACKOFF), None, "one warning per run");
        assert_eq!(health.cooling_down_for(later.1), Duration::from_secs(2));
        let AuthStatus::Unavailable { since, code, .. } = health.status() else { panic!("{:?}", health.status()) };
        assert_eq!((since, code.as_str()), (t0, "maskinporten:503"));
        assert_eq!(health.succeeded(t0), Some(Change::Recovered { failures: 2 }));
        assert_eq!(health.cooling_down_for(later.1), Duration::ZERO);
        assert_eq!(health.status(), AuthStatus::Ok { expires_at: t0 });
    }

    #[test]
    fn a_config_error_is_reported_when_it_appears_or_changes() {
        let mut health = Health::default();
        let now = (Utc::now(), Instant::now());
        let a = rejected("MP-100 Client not found");
        assert_eq!(health.failed(&a, now, BACKOFF), Some(Change::Misconfigured(a.clone())));
        assert_eq!(health.failed(&a, now, BACKOFF), None);
        let b = rejected("MP-200 Invalid scope");
        assert_eq!(health.failed(&b, now, BACKOFF), Some(Change::Misconfigured(b.clone())));
        assert!(matches!(health.status(), AuthStatus::Misconfigured { since, .. } if since == now.0));
        // A transient failure after a configuration error starts a new run of warnings.
        assert!(matches!(health.failed(&unavailable(), now, BACKOFF), Some(Change::Unavailable { .. })));
        let json = serde_json::to_value(health.status()).unwrap();
        assert_eq!(json["state"], "unavailable");
        assert_eq!(json["code"], "maskinporten:503");
    }
}
