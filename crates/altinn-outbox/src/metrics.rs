//! Prometheus metrics, served as `/metrics` by the health listener (text format 0.0.4).
//!
//! Counted as things happen, through the `metrics` facade (no-ops unless [`install`] ran,
//! which the daemon does only when the health listener is on, the only way to read them):
//!
//! - `altinn_outbox_sends_total{outcome, error_code}`: one per send processed. `outcome` is
//!   `sent`, `retry` (failed, tried again later; used an attempt), `deferred` (not the row's
//!   fault: no token, or Altinn throttles or looks down; no attempt used), `failed` or
//!   `cancelled`; `error_code` is the code the row gets (`altinn:1036`, `http:503`,
//!   `timeout`, `validation:title`…), empty for `sent`. Retries have no metric of their own:
//!   they are the `retry` outcome here and in the next one (`rate(…{outcome="retry"}[5m])`).
//! - `altinn_outbox_status_polls_total{outcome, error_code}`: one per status read. `ok`
//!   (Altinn answered; what it said shows in the deliveries gauge), `retry` (the read failed
//!   and is tried again), `failed` (the read can never succeed: the delivery failed).
//! - `altinn_outbox_token_refreshes_total{outcome}`: refreshes of the Altinn token (a
//!   Maskinporten grant and the exchange). `ok`, `unavailable` (an outage: tried again) or
//!   `rejected` (configuration: an operator must act).
//! - `altinn_outbox_leases_reclaimed_total{kind}`: leases of stopped workers taken back by
//!   the sweep. `delivery` (sent again with the same idempotency key) or `upload` (a shared
//!   upload starts over). Anything above zero means a worker died mid-request.
//! - `altinn_outbox_claim_failures_total`: claims of work that failed (the database away, or
//!   refusing the claim). Letters wait while it grows; `/readyz` names the reason once
//!   several fail in a row.
//! - `altinn_outbox_config_faults{resource, fault}`: 1 while Altinn refuses us for a resource
//!   (`fault` is `missing_scope`, `no_access` or `unknown_caller`), 0 once a request for it
//!   succeeded (or no row waited for it for two hours). Alert on `max(...) > 0`. Its
//!   `resource` label takes the resource ids the rows name: as many values as the deployment
//!   has resources (producers add them only within their allow list, when it is on), and
//!   never more than 100 at a time (the client keeps no more); never ids of rows or recipients.
//! - `altinn_outbox_events_received_total{outcome}`: pushes to the Altinn Events receiver.
//!   `stored` (a new event, acted on), `duplicate` (an id seen before), `validation` (the
//!   subscription handshake), and the refusals: `network` (403, a source outside
//!   `events.allow_networks`), `secret` (403, a wrong path), `malformed` (400), `too_large`
//!   (413), `busy` (503, more than `events.max_in_flight` at once), `error` (503, the
//!   database did not take it; Altinn retries). Refusals growing fast mean someone probes the
//!   endpoint; they are not logged one by one.
//! - `altinn_outbox_event_subscriptions_unvalidated`: subscriptions Altinn has not validated
//!   `events.validation_timeout_ms` after their POST (set by the instance that manages them;
//!   `/readyz` names them on every instance). Alert on `max(...) > 0`: no pushes come.
//! - `altinn_outbox_events_pulled_total{outcome}`: events read by the pull API. `stored` (new:
//!   a push missed it) or `duplicate` (already pushed). `stored` growing means pushes are lost.
//! - `altinn_outbox_request_duration_seconds{system, endpoint, status}`: histogram of every
//!   HTTP request, until the answer's headers (an upload includes sending the file). `system`
//!   is `altinn` or `maskinporten`; `endpoint` a name from the clients' fixed list
//!   ([`crate::altinn`], `token`, `token_exchange`); `status` the status class (`2xx`…`5xx`),
//!   `timeout`, or `error` (no answer: connection refused or broken).
//!
//! Read from the database at each scrape (with a short timeout, so a scrape always answers):
//!
//! - `altinn_outbox_database_up`: 1 when the reading below succeeded, else 0 (and the
//!   readings are left out rather than shown stale).
//! - `altinn_outbox_deliveries{state}`: deliveries per state, zeros included.
//! - `altinn_outbox_attachment_uploads{state}`: shared uploads per state.
//! - `altinn_outbox_oldest_pending_age_seconds`: how long the oldest delivery Altinn does not
//!   have yet (`pending`, `waiting_files` or `sending`) has waited since its INSERT.
//!
//! Label values are bounded: states, outcomes, systems and endpoints come from fixed lists
//! in the code, and error codes are Altinn's numeric codes or our own short ones; never ids,
//! recipients or text. Several instances on one database each report the same database
//! gauges: aggregate those with `max`, not `sum`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::outbox::counts::{counts, Counts};

const SENDS: &str = "altinn_outbox_sends_total";
const STATUS_POLLS: &str = "altinn_outbox_status_polls_total";
const TOKEN_REFRESHES: &str = "altinn_outbox_token_refreshes_total";
const LEASES_RECLAIMED: &str = "altinn_outbox_leases_reclaimed_total";
const CLAIM_FAILURES: &str = "altinn_outbox_claim_failures_total";
const REQUEST_DURATION: &str = "altinn_outbox_request_duration_seconds";
const CONFIG_FAULTS: &str = "altinn_outbox_config_faults";
const EVENT_SUBSCRIPTIONS_UNVALIDATED: &str = "altinn_outbox_event_subscriptions_unvalidated";
const EVENTS_PULLED: &str = "altinn_outbox_events_pulled_total";
const EVENTS_RECEIVED: &str = "altinn_outbox_events_received_total";

/// Upper bounds in seconds: from a token served in milliseconds to an upload that may take
/// `altinn.upload_timeout_ms` (five minutes by default); ordinary requests time out at 30 s.
const DURATION_BUCKETS_S: [f64; 15] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// The database readings of a scrape give up after this: Prometheus' own scrape timeout is
/// 10 s by default, and the other metrics must still arrive.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);
/// Histogram samples wait in a buffer until folded into their buckets; folding them this
/// often bounds the buffer when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Error codes longer than this, or with characters outside `[A-Za-z0-9:_.-]`, are not ours
/// or Altinn's: reported as `other`, so that no label carries text.
const MAX_CODE_LEN: usize = 64;

/// Which service a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Altinn,
    Maskinporten,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Altinn => "altinn",
            System::Maskinporten => "maskinporten",
        }
    }
}

/// A recorder with this module's histogram buckets, not installed: the daemon installs it
/// with [`install`]; tests set it as a thread's local recorder.
pub fn build() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &DURATION_BUCKETS_S)
        .expect("the bucket list is not empty")
        .build_recorder()
}

/// Installs the process-wide recorder (once per process) and returns the handle that
/// renders it.
pub fn install() -> Result<PrometheusHandle, String> {
    let recorder = build();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

/// HELP texts, and the fixed series at zero, so that `rate()` and alerts see them before
/// the first event. Call it with the recorder in place.
pub fn describe() {
    use ::metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(SENDS, "Sends processed, by outcome and error code");
    describe_counter!(STATUS_POLLS, "Status reads, by outcome and error code");
    describe_counter!(TOKEN_REFRESHES, "Altinn token refreshes (Maskinporten grant and exchange), by outcome");
    describe_counter!(LEASES_RECLAIMED, "Expired leases of stopped workers taken back by the sweep");
    describe_counter!(CLAIM_FAILURES, "Claims of work that failed");
    describe_counter!(EVENTS_RECEIVED, "Pushes to the Altinn Events receiver, by outcome");
    ::metrics::describe_gauge!(CONFIG_FAULTS, "1 while Altinn refuses us for a resource, by resource and fault");
    ::metrics::describe_gauge!(
        EVENT_SUBSCRIPTIONS_UNVALIDATED,
        "Altinn Events subscriptions unvalidated past the timeout"
    );
    describe_counter!(EVENTS_PULLED, "Events read by the pull API, by outcome");
    ::metrics::counter!(CLAIM_FAILURES).increment(0);
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "HTTP requests to Altinn and Maskinporten, to the headers");
    ::metrics::counter!(SENDS, "outcome" => "sent", "error_code" => "").increment(0);
    ::metrics::counter!(STATUS_POLLS, "outcome" => "ok", "error_code" => "").increment(0);
    for outcome in ["ok", "unavailable", "rejected"] {
        ::metrics::counter!(TOKEN_REFRESHES, "outcome" => outcome).increment(0);
    }
    for kind in ["delivery", "upload"] {
        ::metrics::counter!(LEASES_RECLAIMED, "kind" => kind).increment(0);
    }
}

/// One push to the events receiver; `outcome` from the fixed list above.
pub fn event_received(outcome: &'static str) {
    ::metrics::counter!(EVENTS_RECEIVED, "outcome" => outcome).increment(1);
}

/// Subscriptions unvalidated past the timeout, after a check of them all.
pub fn event_subscriptions_unvalidated(count: usize) {
    ::metrics::gauge!(EVENT_SUBSCRIPTIONS_UNVALIDATED).set(count as f64);
}

/// Events read by the pull: `stored` or `duplicate`.
pub fn events_pulled(outcome: &'static str, count: u64) {
    ::metrics::counter!(EVENTS_PULLED, "outcome" => outcome).increment(count);
}

/// One claim of work failed.
pub fn claim_failed() {
    ::metrics::counter!(CLAIM_FAILURES).increment(1);
}

/// One send processed: `outcome` from the fixed list above.
pub fn send_done(outcome: &'static str, error_code: &str) {
    ::metrics::counter!(SENDS, "outcome" => outcome, "error_code" => bounded(error_code)).increment(1);
}

/// One status read: `ok`, `retry` or `failed`.
pub fn poll_done(outcome: &'static str, error_code: &str) {
    ::metrics::counter!(STATUS_POLLS, "outcome" => outcome, "error_code" => bounded(error_code)).increment(1);
}

/// One token refresh: `ok`, `unavailable` or `rejected`.
pub fn token_refreshed(outcome: &'static str) {
    ::metrics::counter!(TOKEN_REFRESHES, "outcome" => outcome).increment(1);
}

/// Leases taken back by a sweep: `delivery` or `upload`.
pub fn leases_reclaimed(kind: &'static str, count: u64) {
    ::metrics::counter!(LEASES_RECLAIMED, "kind" => kind).increment(count);
}

/// A resource's configuration fault began (`on`) or ended; `fault` from [`crate::altinn::Fault`].
pub fn config_fault(resource: &str, fault: &'static str, on: bool) {
    ::metrics::gauge!(CONFIG_FAULTS, "resource" => resource.to_string(), "fault" => fault).set(f64::from(u8::from(on)));
}

/// One HTTP request, from `started` until its answer's headers (or its failure).
pub fn request_done(
    system: System,
    endpoint: &'static str,
    started: Instant,
    result: &Result<reqwest::Response, reqwest::Error>,
) {
    let status = match result {
        Ok(response) => match response.status().as_u16() / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        Err(e) if e.is_timeout() => "timeout",
        Err(_) => "error",
    };
    ::metrics::histogram!(REQUEST_DURATION, "system" => system.label(), "endpoint" => endpoint, "status" => status)
        .record(started.elapsed());
}

/// The whole scrape: what was counted, then the database's gauges, or `database_up 0`
/// when the database does not answer within [`DATABASE_TIMEOUT`].
pub async fn render(handle: &PrometheusHandle, pool: &PgPool) -> String {
    let reading = match tokio::time::timeout(DATABASE_TIMEOUT, counts(pool)).await {
        Ok(Ok(counts)) => Some(counts),
        // The worker's own loop reports the outage; a scrape every few seconds must not.
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "metrics: the database did not answer");
            None
        }
        Err(_) => None,
    };
    handle.run_upkeep();
    let mut text = handle.render();
    text.push_str(&database_gauges(reading.as_ref()));
    text
}

/// Folds histogram samples into their buckets until `shutdown`.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(UPKEEP_INTERVAL);
    while tokio::select! { _ = every.tick() => true, () = shutdown.cancelled() => false } {
        handle.run_upkeep();
    }
}

/// The gauges read from the database, in the exposition format.
fn database_gauges(reading: Option<&Counts>) -> String {
    let mut out = String::new();
    gauge(&mut out, "altinn_outbox_database_up", "1 when the outbox tables could be read at this scrape");
    let _ = writeln!(out, "altinn_outbox_database_up {}", u8::from(reading.is_some()));
    let Some(counts) = reading else { return out };
    gauge(&mut out, "altinn_outbox_deliveries", "Deliveries (one per recipient) by state");
    for (state, n) in &counts.deliveries {
        let _ = writeln!(out, "altinn_outbox_deliveries{{state=\"{}\"}} {n}", escape(state));
    }
    gauge(&mut out, "altinn_outbox_attachment_uploads", "Files uploaded once for several recipients, by state");
    for (state, n) in &counts.uploads {
        let _ = writeln!(out, "altinn_outbox_attachment_uploads{{state=\"{}\"}} {n}", escape(state));
    }
    let age = "altinn_outbox_oldest_pending_age_seconds";
    gauge(&mut out, age, "Age of the oldest delivery not yet accepted by Altinn; 0 when there is none");
    let _ = writeln!(out, "{age} {}", counts.oldest_unsent_age_s);
    out
}

fn gauge(out: &mut String, name: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
}

/// Label value escaping of the exposition format.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// An error code as a label value: the code itself when it looks like one, else `other`.
fn bounded(code: &str) -> String {
    let looks_like_a_code = code.len() <= MAX_CODE_LEN
        && code.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-'));
    if looks_like_a_code {
        code.to_string()
    } else {
        "other".to_string()
    }
}
