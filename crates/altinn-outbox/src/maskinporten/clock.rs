//! The difference between this host's clock and Maskinporten's, learned from its `Date`.
//!
//! Maskinporten accepts a grant only if its `iat` is within ±10 s of Maskinporten's own
//! clock, so a host whose clock drifted (NTP down, a VM resumed from suspend) can get no
//! token at all. Every Maskinporten answer carries its clock in the `Date` header (an HTTP
//! date, RFC 9110), so the token client measures the offset from each answer and signs later
//! grants with `iat` = host now + offset. The host clock still needs fixing: the
//! offset is logged once per change, and a rejection that looks like skew says so.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, DATE};

use super::error::{Step, TokenError};

/// `Date` has whole-second resolution and our reading of the host clock happens a little
/// after Maskinporten wrote it, so a measured offset is only good to about a second each
/// way; anything this small is noise, not skew.
pub(crate) const DATE_NOISE_S: i64 = 2;
/// Maskinporten's tolerance for `iat` around its own clock, as it documents it.
pub(crate) const MAX_IAT_SKEW_S: i64 = 10;

/// Maskinporten's clock as its `Date` header states it, if present and well-formed.
pub(crate) fn server_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let value = headers.get(DATE)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok().map(DateTime::<Utc>::from)
}

/// Server clock minus host clock, in whole seconds.
pub(crate) fn measured_offset_s(server_date: DateTime<Utc>, host_now: DateTime<Utc>) -> i64 {
    server_date.timestamp() - host_now.timestamp()
}

/// The offset to use after measuring `measured_s` while using `current_s`, or `None` to
/// keep the current one. A measurement within the noise of the current offset changes
/// nothing (so the offset does not flap between 30 and 31 s), and a small offset counts
/// as none.
pub(crate) fn next_offset_s(current_s: i64, measured_s: i64) -> Option<i64> {
    if (measured_s - current_s).abs() <= DATE_NOISE_S {
        return None;
    }
    let next = if measured_s.abs() <= DATE_NOISE_S { 0 } else { measured_s };
    (next != current_s).then_some(next)
}

/// The learned offset, shared by every caller of one token client.
#[derive(Debug, Default)]
pub(crate) struct ClockOffset {
    offset_s: AtomicI64,
}

impl ClockOffset {
    /// The offset to add to the host clock to get Maskinporten's.
    pub(crate) fn get_s(&self) -> i64 {
        self.offset_s.load(Ordering::Relaxed)
    }

    /// Learns from one answer; logs when the offset changes (not per grant), because the
    /// correction hides a fault an operator should fix.
    pub(crate) fn learn(&self, measured_s: i64) {
        let current = self.get_s();
        let Some(next) = next_offset_s(current, measured_s) else {
            return;
        };
        // Two answers measured at once may race; the later write wins, which is as good.
        self.offset_s.store(next, Ordering::Relaxed);
        if next == 0 {
            tracing::info!(previous_offset_s = current, "host clock agrees with Maskinporten's again");
        } else {
            tracing::warn!(
                offset_s = next,
                "host clock is {} s {} Maskinporten's (from its Date header); grants are signed with \
                 a corrected iat, but NTP on this host should be fixed",
                next.abs(),
                if next < 0 { "ahead of" } else { "behind" },
            );
        }
    }
}

/// Whether a refusal looks like clock skew: `invalid_grant` with a measured offset outside
/// Maskinporten's window, or a description about the grant's times (MP-130, `iat`, `exp`,
/// "issue time"). "MP-121 Expired key" is about the key, so only whole words count.
pub(crate) fn suggests_skew(error: &TokenError, measured_s: Option<i64>) -> bool {
    let TokenError::Rejected { step: Step::Maskinporten, error, description } = error else {
        return false;
    };
    if error != "invalid_grant" {
        return false;
    }
    if measured_s.is_some_and(|m| m.abs() > MAX_IAT_SKEW_S) {
        return true;
    }
    let lower = description.to_ascii_lowercase();
    let mut words = lower.split(|c: char| !c.is_ascii_alphanumeric() && c != '-');
    lower.contains("issue time") || words.any(|w| matches!(w, "iat" | "exp" | "mp-130"))
}

/// Adds the likely cause to a refusal that [`suggests_skew`], with the offset measured from
/// the refusal's `Date` when it had one.
pub(crate) fn blame_skew(error: TokenError, measured_s: Option<i64>) -> TokenError {
    let TokenError::Rejected { step, error, description } = error else {
        return error;
    };
    let cause = match measured_s {
        Some(m) if m.abs() > DATE_NOISE_S => format!(
            "likely cause: clock skew: this host's clock is {} s {} Maskinporten's (measured from its \
             Date header) and Maskinporten accepts iat within ±{MAX_IAT_SKEW_S} s; fix NTP on this host",
            m.abs(),
            if m < 0 { "ahead of" } else { "behind" },
        ),
        Some(m) => format!(
            "clock skew checked: Maskinporten's Date header agrees with this host's clock ({m:+} s), \
             so look at the grant's times or at a proxy rewriting Date"
        ),
        None => "likely cause: clock skew between this host and Maskinporten (its answer had no Date \
                 header to measure the offset); check NTP on this host"
            .to_string(),
    };
    TokenError::Rejected { step, error, description: format!("{description} ({cause})") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn rejected(error: &str, description: &str) -> TokenError {
        TokenError::Rejected {
            step: Step::Maskinporten,
            error: error.to_string(),
            description: description.to_string(),
        }
    }

    #[test]
    fn the_date_header_is_read_as_an_imf_fixdate() {
        let mut headers = HeaderMap::new();
        assert_eq!(server_date(&headers), None);
        headers.insert(DATE, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(server_date(&headers).unwrap().timestamp(), 784_111_777);
        headers.insert(DATE, HeaderValue::from_static("yesterday"));
        assert_eq!(server_date(&headers), None);
    }

    #[test]
    fn small_offsets_and_small_changes_are_noise() {
        assert_eq!(next_offset_s(0, 2), None);
        assert_eq!(next_offset_s(0, -2), None);
        assert_eq!(next_offset_s(0, -30), Some(-30));
        assert_eq!(next_offset_s(-30, -31), None, "no flapping between neighbouring seconds");
        assert_eq!(next_offset_s(-30, 1), Some(0), "a fixed host clock resets the offset");
        assert_eq!(next_offset_s(3, 1), None);
        assert_eq!(next_offset_s(5, 0), Some(0));
    }

    #[test]
    fn skew_is_suspected_from_the_offset_or_the_grants_times() {
        let iat = rejected("invalid_grant", "MP-130 Invalid JWT claim iat: more than 10 s off");
        assert!(suggests_skew(&iat, None));
        let key = rejected("invalid_grant", "MP-121 Expired key");
        assert!(!suggests_skew(&key, None));
        assert!(suggests_skew(&key, Some(-30)));
        assert!(!suggests_skew(&rejected("invalid_client", "MP-100 iat"), Some(-30)));
        assert!(suggests_skew(&rejected("invalid_grant", "Issue time is after now"), Some(0)));
    }

    #[test]
    fn a_skew_rejection_names_the_cause_and_the_offset() {
        let iat = rejected("invalid_grant", "MP-130 iat");
        let text = blame_skew(iat.clone(), Some(-30)).to_string();
        assert!(text.contains("clock skew") && text.contains("30 s ahead of"), "{text}");
        let text = blame_skew(iat.clone(), None).to_string();
        assert!(text.contains("clock skew") && text.contains("no Date header"), "{text}");
        assert_eq!(blame_skew(iat.clone(), Some(-30)).code(), iat.code());
    }
}
