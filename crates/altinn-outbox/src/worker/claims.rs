//! How the claim loop is doing, for `/readyz` and the metrics. A claim that fails again and
//! again (the database refuses it, or something in it cannot be read) leaves every letter
//! waiting while the process itself looks healthy; readiness says so, with the reason, after
//! a few failures in a row, and the failures are counted.

use std::sync::Mutex;
use std::time::Instant;

use crate::metrics;

/// Failed claims in a row after which the instance is reported not ready: one or two are a
/// passing hiccup (a restarted database, a lost connection) that the loop's own pause
/// covers; three in a row, at least 1.4 s of pauses apart, are not.
const NOT_READY_AFTER: u32 = 3;

/// Claims' outcomes so far: shared by the loop (which records) and the health listener.
#[derive(Debug, Default)]
pub struct ClaimHealth {
    state: Mutex<Failing>,
}

#[derive(Debug, Default)]
struct Failing {
    in_a_row: u32,
    since: Option<Instant>,
    last_error: String,
}

impl ClaimHealth {
    /// Records one claim's outcome.
    pub fn record<T>(&self, outcome: &Result<T, sqlx::Error>) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome {
            Ok(_) => *state = Failing::default(),
            Err(e) => {
                metrics::claim_failed();
                state.in_a_row += 1;
                state.since.get_or_insert_with(Instant::now);
                state.last_error = e.to_string();
            }
        }
    }

    /// Why claims are not working, when the last [`NOT_READY_AFTER`] or more failed.
    pub fn problem(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (state.in_a_row >= NOT_READY_AFTER).then(|| {
            let secs = state.since.map_or(0, |s| s.elapsed().as_secs());
            format!("{} claims in a row failed (for {secs} s); last error: {}", state.in_a_row, state.last_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_falls_after_three_failures_in_a_row_and_comes_back_with_a_success() {
        let health = ClaimHealth::default();
        let failed = || Err::<(), _>(sqlx::Error::Protocol("decoding column property_list".into()));
        health.record(&failed());
        health.record(&failed());
        assert_eq!(health.problem(), None, "two failures are a hiccup");
        health.record(&failed());
        let problem = health.problem().expect("three in a row are a problem");
        assert!(problem.starts_with("3 claims in a row failed"), "{problem}");
        assert!(problem.contains("decoding column property_list"), "the reason is named: {problem}");
        health.record(&Ok(()));
        assert_eq!(health.problem(), None);
    }
}
