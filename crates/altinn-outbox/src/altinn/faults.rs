//! Configuration faults, per resource: Altinn refuses who we are for a resource (the token
//! lacks a scope, Altinn Authorization gives us no access), which no retry fixes and an
//! operator's grant does.
//!
//! Each is a real answer from a running Altinn, so the gates stay open and the other
//! resources keep going. For the faulted resource the registry (one per client, shared by its
//! clones) keeps the fault and says so once: one ERROR line per resource and fault, again
//! when the fault changes or comes back after it cleared; `/readyz` lists it and the gauge
//! `altinn_outbox_config_faults` shows it. It also holds the resource's requests back: one
//! request (a probe) goes after a pause that doubles up to `altinn.config_fault_probe_ms`
//! (a minute), the others get the fault at once without a request, so 500 rows of a faulted
//! resource cost Altinn one request a minute instead of 500 doomed ones per round. The first
//! request for the resource that succeeds clears the fault.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backoff::Doubling;
use crate::metrics;

/// The first pause before a faulted resource is tried again: an operator who just fixed it
/// sees it go within seconds. It doubles with every probe the fault outlives, up to the
/// configured longest pause.
const FIRST_PROBE_PAUSE: Duration = Duration::from_secs(1);
/// The default longest pause between probes (`altinn.config_fault_probe_ms`).
pub const DEFAULT_MAX_PROBE_PAUSE: Duration = Duration::from_secs(60);
/// Rows held by a fault come back at least this often (the worker caps their wait at it).
pub const LONGEST_ROW_WAIT: Duration = Duration::from_secs(30 * 60);
/// A fault no request has met for this long has no rows waiting any more (they were sent,
/// cancelled or failed at the age limit): it is forgotten rather than kept in `/readyz`.
const FORGET_AFTER: Duration = Duration::from_secs(2 * 30 * 60);

/// Resources kept at most. A deployment sends on a handful; resource ids come from the rows,
/// and a missing scope is met before Altinn looks the resource up, so without a bound a
/// producer's made-up ids would grow the map, the log and the metric's labels. Beyond it a
/// fault still reaches its row, without a log line, a metric or a hold of its own.
const MAX_RESOURCES: usize = 100;

/// What is wrong with our set-up for a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// An empty 403: the scope policy refused a valid token.
    MissingScope,
    /// 401 with 4001: Altinn Authorization denies the organisation access to the resource.
    NoAccess,
    /// 401 with 4006 or 4007: the token names no caller or organisation number.
    UnknownCaller,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::MissingScope, Fault::NoAccess, Fault::UnknownCaller];

    /// The label of the metric and the name `/readyz` shows.
    pub fn label(self) -> &'static str {
        match self {
            Fault::MissingScope => "missing_scope",
            Fault::NoAccess => "no_access",
            Fault::UnknownCaller => "unknown_caller",
        }
    }

    /// What is missing, for an operator.
    pub fn missing(self) -> &'static str {
        match self {
            Fault::MissingScope => {
                "the Altinn token lacks the scope altinn:correspondence.write or the service-owner org claim \
                 (which the scope altinn:serviceowner brings)"
            }
            Fault::NoAccess => "Altinn Authorization gives this organisation no access to the resource",
            Fault::UnknownCaller => "the Altinn token names no caller or organisation number",
        }
    }

    /// What to do about it.
    pub fn remedy(self) -> &'static str {
        match self {
            Fault::MissingScope => {
                "have Digdir grant the Maskinporten client altinn:serviceowner and altinn:correspondence.write, \
                 list both in maskinporten.scopes, and have the organisation registered as a service owner in \
                 Altinn; the next token carries them"
            }
            Fault::NoAccess => {
                "have the resource's owner give this organisation write access to it in Altinn (its policy or a \
                 delegation), or correct the resource id; `altinn-outbox check --resource ID` tells which"
            }
            Fault::UnknownCaller => {
                "use a Maskinporten client of the sending organisation, with its token exchanged at Altinn \
                 (maskinporten.client_id and the key)"
            }
        }
    }
}

/// A faulted resource, as `/readyz` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultReport {
    pub resource: String,
    pub fault: Fault,
    /// The code the resource's rows get (`http:403`, `altinn:4001`).
    pub code: String,
    pub missing: &'static str,
    pub remedy: &'static str,
    pub since: DateTime<Utc>,
}

struct Entry {
    fault: Fault,
    code: String,
    since: DateTime<Utc>,
    /// The pauses between probes: each probe the fault outlives doubles the next.
    pauses: Doubling,
    probe_at: Instant,
    /// When a request for the resource last met the fault (held or refused).
    seen: Instant,
}

/// The configuration faults of one client, by resource id (without its URN prefix).
#[derive(Clone)]
pub struct Faults {
    map: Arc<Mutex<HashMap<String, Entry>>>,
    /// The pauses between probes of a new fault, up to the longest; zero holds nothing back.
    pauses: Doubling,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::new(DEFAULT_MAX_PROBE_PAUSE)
    }
}

impl Faults {
    /// A registry whose probes are at most `max_pause` apart (zero: no request is held back).
    pub fn new(max_pause: Duration) -> Faults {
        Faults { map: Arc::default(), pauses: Doubling::new(FIRST_PROBE_PAUSE, max_pause) }
    }

    /// How long a token refused for a missing scope is kept from being dropped again: as
    /// long as the first probe pause, so that a grant is picked up by the next probe.
    pub fn renewal_pause(&self) -> Duration {
        self.pauses.nth(0)
    }

    /// Whether a request for `resource` may go at `now`. While the resource is faulted, one
    /// request goes when its probe is due (and the next probe is pushed one pause further);
    /// the others get the fault and its code.
    pub fn enter(&self, resource: &str, now: Instant) -> Result<(), (Fault, String)> {
        let mut faults = self.lock();
        let Some(entry) = faults.get_mut(bare(resource)) else {
            return Ok(());
        };
        entry.seen = now;
        if now < entry.probe_at {
            return Err((entry.fault, entry.code.clone()));
        }
        entry.probe_at = now + entry.pauses.next_pause();
        Ok(())
    }

    /// A request for `resource` succeeded: its fault, if any, is cleared.
    pub fn succeeded(&self, resource: &str) {
        let resource = bare(resource);
        if let Some(entry) = self.lock().remove(resource) {
            metrics::config_fault(resource, entry.fault.label(), false);
            tracing::info!(
                resource,
                fault = entry.fault.label(),
                "configuration fault cleared: the resource's rows go"
            );
        }
    }

    /// A request for `resource` was refused with `fault` (and `code`) at `now`. Said once per
    /// resource and fault: a fault already known only counts as seen.
    pub fn refused(&self, resource: &str, fault: Fault, code: &str, now: Instant) {
        let resource = bare(resource);
        let mut faults = self.lock();
        if let Some(entry) = faults.get_mut(resource).filter(|e| e.fault == fault) {
            entry.seen = now;
            return;
        }
        if faults.len() >= MAX_RESOURCES && !faults.contains_key(resource) {
            return;
        }
        let mut pauses = self.pauses;
        let entry = Entry {
            fault,
            code: code.to_string(),
            since: Utc::now(),
            probe_at: now + pauses.next_pause(),
            pauses,
            seen: now,
        };
        if let Some(before) = faults.insert(resource.to_string(), entry) {
            metrics::config_fault(resource, before.fault.label(), false);
        }
        drop(faults);
        metrics::config_fault(resource, fault.label(), true);
        tracing::error!(
            resource,
            fault = fault.label(),
            code,
            missing = fault.missing(),
            remedy = fault.remedy(),
            "configuration fault: the resource's rows wait without using attempts until it is fixed"
        );
    }

    /// The faults in force at `now`, by resource id; forgets those no request met for long.
    pub fn current(&self, now: Instant) -> Vec<FaultReport> {
        let mut faults = self.lock();
        faults.retain(|resource, entry| {
            let kept = now.saturating_duration_since(entry.seen) < FORGET_AFTER;
            if !kept {
                metrics::config_fault(resource, entry.fault.label(), false);
                tracing::info!(
                    resource,
                    fault = entry.fault.label(),
                    "configuration fault forgotten: no row waits for it"
                );
            }
            kept
        });
        let mut reports: Vec<FaultReport> = faults
            .iter()
            .map(|(resource, e)| FaultReport {
                resource: resource.clone(),
                fault: e.fault,
                code: e.code.clone(),
                missing: e.fault.missing(),
                remedy: e.fault.remedy(),
                since: e.since,
            })
            .collect();
        reports.sort_by(|a, b| a.resource.cmp(&b.resource));
        reports
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Every change leaves the map consistent, so a panic elsewhere cannot corrupt it.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The resource id as Altinn compares it: without the optional URN prefix.
pub fn bare(resource: &str) -> &str {
    resource.strip_prefix("urn:altinn:resource:").unwrap_or(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faulted_resource_lets_one_probe_through_per_growing_pause() {
        let faults = Faults::default();
        let t0 = Instant::now();
        assert_eq!(faults.enter("a", t0), Ok(()), "nothing known: requests go");
        faults.refused("urn:altinn:resource:a", Fault::NoAccess, "altinn:4001", t0);
        assert_eq!(faults.enter("a", t0), Err((Fault::NoAccess, "altinn:4001".into())), "held, no request");
        assert_eq!(faults.enter("b", t0), Ok(()), "other resources go");
        let t1 = t0 + FIRST_PROBE_PAUSE;
        assert_eq!(faults.enter("a", t1), Ok(()), "the probe");
        assert!(faults.enter("a", t1).is_err(), "one probe at a time");
        assert!(faults.enter("a", t1 + Duration::from_millis(1_999)).is_err(), "the pause doubled");
        assert_eq!(faults.enter("a", t1 + Duration::from_secs(2)), Ok(()));
        assert_eq!(faults.pauses.nth(10), DEFAULT_MAX_PROBE_PAUSE, "capped");
        faults.succeeded("a");
        assert_eq!(faults.enter("a", t1), Ok(()), "cleared: every request goes");
        assert!(faults.current(t1).is_empty());
    }

    #[test]
    fn without_a_probe_pause_nothing_is_held_but_the_fault_is_still_known() {
        let faults = Faults::new(Duration::ZERO);
        let t0 = Instant::now();
        faults.refused("a", Fault::MissingScope, "http:403", t0);
        assert_eq!(faults.enter("a", t0), Ok(()));
        assert_eq!(faults.enter("a", t0), Ok(()));
        assert_eq!(faults.current(t0).len(), 1);
        assert_eq!(faults.renewal_pause(), Duration::ZERO);
    }

    #[test]
    fn readiness_lists_each_resource_with_its_latest_fault() {
        let faults = Faults::default();
        let t0 = Instant::now();
        faults.refused("b", Fault::MissingScope, "http:403", t0);
        faults.refused("a", Fault::NoAccess, "altinn:4001", t0);
        faults.refused("a", Fault::NoAccess, "altinn:4001", t0);
        faults.refused("b", Fault::NoAccess, "altinn:4001", t0);
        let now = faults.current(t0);
        let listed: Vec<(&str, Fault, &str)> =
            now.iter().map(|r| (r.resource.as_str(), r.fault, r.code.as_str())).collect();
        assert_eq!(listed, [("a", Fault::NoAccess, "altinn:4001"), ("b", Fault::NoAccess, "altinn:4001")]);
        assert!(now[0].remedy.contains("check --resource"));
        // A fault nobody met for long has no rows left: forgotten, not kept in /readyz.
        assert!(faults.current(t0 + FORGET_AFTER).is_empty());
    }

    #[test]
    fn made_up_resources_cannot_grow_the_registry_without_bound() {
        let faults = Faults::default();
        let t0 = Instant::now();
        for i in 0..MAX_RESOURCES + 50 {
            faults.refused(&format!("r{i}"), Fault::MissingScope, "http:403", t0);
        }
        assert_eq!(faults.current(t0).len(), MAX_RESOURCES);
        assert_eq!(faults.enter(&format!("r{}", MAX_RESOURCES + 1), t0), Ok(()), "not held: its rows get the answer");
    }
}
