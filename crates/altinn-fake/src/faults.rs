//! Fault injection: rules that make an endpoint fail the way real networks and gateways do,
//! so tests can prove the client retries, backs off and recovers without duplicates.
//!
//! Rules are applied by a middleware in front of every handler, so a faulted request never
//! reaches the handler (and is not counted by it, and creates nothing) — except
//! `CommitThenDrop`, which lets the handler commit and then loses the response, the case
//! idempotency keys exist for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::{empty, plain_problem, Problem};
use super::state::bump;
use super::App;

/// How long after a 429 a request may still arrive without breaking the wait: it was sent
/// concurrently, before the client had the answer.
const IN_FLIGHT_ALLOWANCE: Duration = Duration::from_millis(100);

/// Which endpoint a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Exchange,
    Initialize,
    Lookup,
    Details,
    Overview,
    Purge,
    /// `POST /correspondence/upload`, the multipart initialize.
    Upload,
    /// `POST /attachment`.
    AttachmentInit,
    /// `POST /attachment/{id}/upload`.
    AttachmentUpload,
    /// `GET /attachment/{id}` and `GET /attachment/{id}/details`.
    AttachmentStatus,
    /// Every call under `/events/api/v1/subscriptions`.
    Subscriptions,
    /// `GET /events/api/v1/events`, the pull API.
    EventsPull,
    Any,
}

impl Endpoint {
    /// Classifies a request; None for paths no endpoint-specific rule covers.
    fn of(method: &Method, path: &str) -> Option<Endpoint> {
        if path == "/token" && method == Method::POST {
            return Some(Endpoint::Token);
        }
        if path.starts_with("/authentication/api/v1/exchange/") {
            return Some(Endpoint::Exchange);
        }
        if let Some(rest) = path.strip_prefix("/events/api/v1/") {
            return match rest.split('/').next() {
                Some("subscriptions") => Some(Endpoint::Subscriptions),
                Some("events") if method == Method::GET => Some(Endpoint::EventsPull),
                _ => None,
            };
        }
        let rest = path.strip_prefix("/correspondence/api/v1/")?;
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let (kind, segments) = segments.split_first()?;
        if *kind == "attachment" {
            return match (method.as_str(), segments) {
                ("POST", []) => Some(Endpoint::AttachmentInit),
                ("POST", [_, "upload"]) => Some(Endpoint::AttachmentUpload),
                ("GET", [_] | [_, "details"]) => Some(Endpoint::AttachmentStatus),
                _ => None,
            };
        }
        if *kind != "correspondence" {
            return None;
        }
        match (method.as_str(), segments) {
            ("POST", []) => Some(Endpoint::Initialize),
            ("POST", ["upload"]) => Some(Endpoint::Upload),
            ("GET", []) => Some(Endpoint::Lookup),
            ("GET", [_]) => Some(Endpoint::Overview),
            ("GET", [_, "details"]) => Some(Endpoint::Details),
            ("DELETE", [_, "purge"]) => Some(Endpoint::Purge),
            _ => None,
        }
    }

    fn covers(self, endpoint: Option<Endpoint>) -> bool {
        self == Endpoint::Any || Some(self) == endpoint
    }
}

/// What a rule does to a request it applies to.
#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Answer with this status: empty body for 401/403, plain ProblemDetails otherwise.
    Status(u16),
    /// Answer as Altinn does when it refuses a request with one of its own codes:
    /// ProblemDetails with `errorCode`, `code` (`CORR-0xxxx`) and this `detail`, with any
    /// status (4002 comes with 400 when Altinn Register fails, 1032 with 500 when KRR does).
    Problem { status: u16, error_code: u32, detail: String },
    /// 429 with `Retry-After`; requests arriving before that time are counted by
    /// `FakeState::requests_before_retry_after`.
    TooManyRequests { retry_after_s: u64 },
    /// Hold the request this long, then handle it normally (for client timeouts).
    Delay(Duration),
    /// Handle and commit, then break the connection instead of sending the body.
    CommitThenDrop,
}

#[derive(Clone, Debug)]
pub struct FaultRule {
    pub endpoint: Endpoint,
    pub kind: FaultKind,
    /// How many requests the rule applies to; None until `Faults::clear`.
    pub times: Option<u32>,
    /// Chance of applying to a matching request; 1.0 = always.
    pub probability: f64,
}

impl FaultRule {
    /// A rule that applies to every matching request until cleared.
    pub fn always(endpoint: Endpoint, kind: FaultKind) -> FaultRule {
        FaultRule { endpoint, kind, times: None, probability: 1.0 }
    }

    /// A rule that applies to the next `times` matching requests.
    pub fn times(endpoint: Endpoint, kind: FaultKind, times: u32) -> FaultRule {
        FaultRule { endpoint, kind, times: Some(times), probability: 1.0 }
    }
}

/// The active rules and the waits the fake has asked clients for.
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
    /// (endpoint of the rule, when the 429 was given, time before which the client must
    /// not come back).
    retry_after: Mutex<Vec<(Endpoint, Instant, Instant)>>,
    injected: AtomicU64,
}

impl Faults {
    pub fn add(&self, rule: FaultRule) {
        self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(rule);
    }

    /// Removes every rule. Retry-After times already given stay binding on the client.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// How many faults have been applied so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Picks the first rule that applies, consuming one of its `times`.
    fn take(&self, endpoint: Option<Endpoint>) -> Option<FaultKind> {
        let mut rules = self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = rules.iter().position(|r| {
            r.endpoint.covers(endpoint)
                && r.times != Some(0)
                && (r.probability >= 1.0 || rand::random::<f64>() < r.probability)
        })?;
        let rule = &mut rules[index];
        if let Some(n) = rule.times.as_mut() {
            *n -= 1;
        }
        let kind = rule.kind.clone();
        if rule.times == Some(0) {
            rules.remove(index);
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some(kind)
    }

    /// A request that arrives within `IN_FLIGHT_ALLOWANCE` of a 429 was sent before the
    /// client could have read it (concurrent requests on loopback), so it does not count.
    fn arrived_too_early(&self, endpoint: Option<Endpoint>, now: Instant) -> bool {
        let waits = self.retry_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        waits.iter().any(|(e, given, until)| e.covers(endpoint) && now > *given + IN_FLIGHT_ALLOWANCE && now < *until)
    }

    fn told_to_wait(&self, endpoint: Endpoint, given: Instant, until: Instant) {
        let mut waits = self.retry_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        waits.retain(|(e, _, _)| *e != endpoint);
        waits.push((endpoint, given, until));
    }
}

/// Applies the first matching fault rule to the request.
pub(crate) async fn middleware(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let endpoint = Endpoint::of(request.method(), request.uri().path());
    let now = Instant::now();
    if app.faults.arrived_too_early(endpoint, now) {
        tracing::warn!(?endpoint, "request arrived before the Retry-After time");
        bump(&app.state.early_retries);
    }
    let Some(kind) = app.faults.take(endpoint) else {
        return next.run(request).await;
    };
    tracing::debug!(?endpoint, ?kind, "injecting fault");
    match kind {
        FaultKind::Status(status @ (401 | 403)) => empty(status),
        FaultKind::Status(status) => plain_problem(status, "Injected fault"),
        FaultKind::Problem { status, error_code, detail } => {
            Problem::Domain { code: error_code, status, detail }.into_response()
        }
        FaultKind::TooManyRequests { retry_after_s } => {
            // The wait binds the endpoint that was answered (every endpoint for other paths).
            let rule_endpoint = endpoint.unwrap_or(Endpoint::Any);
            app.faults.told_to_wait(rule_endpoint, now, now + Duration::from_secs(retry_after_s));
            let mut response = plain_problem(429, "Rate limit is exceeded");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            response
        }
        FaultKind::Delay(delay) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        FaultKind::CommitThenDrop => {
            let response = next.run(request).await;
            let (mut parts, _committed_body) = response.into_parts();
            // Without a length the body is chunked; a stream that fails at once makes hyper
            // abort the connection, so the client never sees a usable answer.
            parts.headers.remove(header::CONTENT_LENGTH);
            let broken = futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected: response lost after commit",
                ))
            });
            Response::from_parts(parts, Body::from_stream(broken))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_classified_by_method_and_path() {
        let id = "/correspondence/api/v1/correspondence/0b0c1c7e-0000-4000-8000-000000000000";
        assert_eq!(Endpoint::of(&Method::POST, "/token"), Some(Endpoint::Token));
        assert_eq!(
            Endpoint::of(&Method::GET, "/authentication/api/v1/exchange/maskinporten"),
            Some(Endpoint::Exchange)
        );
        let base = "/correspondence/api/v1/correspondence";
        assert_eq!(Endpoint::of(&Method::POST, base), Some(Endpoint::Initialize));
        assert_eq!(Endpoint::of(&Method::GET, base), Some(Endpoint::Lookup));
        assert_eq!(Endpoint::of(&Method::GET, id), Some(Endpoint::Overview));
        let details = format!("{id}/details");
        assert_eq!(Endpoint::of(&Method::GET, &details), Some(Endpoint::Details));
        let purge = format!("{id}/purge");
        assert_eq!(Endpoint::of(&Method::DELETE, &purge), Some(Endpoint::Purge));
        assert_eq!(Endpoint::of(&Method::GET, "/elsewhere"), None);
        assert_eq!(Endpoint::of(&Method::POST, &format!("{base}/upload")), Some(Endpoint::Upload));
        let attachment = "/correspondence/api/v1/attachment";
        assert_eq!(Endpoint::of(&Method::POST, attachment), Some(Endpoint::AttachmentInit));
        assert_eq!(Endpoint::of(&Method::POST, &format!("{attachment}/x/upload")), Some(Endpoint::AttachmentUpload));
        assert_eq!(Endpoint::of(&Method::GET, &format!("{attachment}/x")), Some(Endpoint::AttachmentStatus));
        assert_eq!(Endpoint::of(&Method::GET, &format!("{attachment}/x/details")), Some(Endpoint::AttachmentStatus));
        assert_eq!(Endpoint::of(&Method::DELETE, &format!("{attachment}/x")), None);
        assert_eq!(Endpoint::of(&Method::DELETE, "/events/api/v1/subscriptions/7"), Some(Endpoint::Subscriptions));
        assert_eq!(Endpoint::of(&Method::GET, "/events/api/v1/events"), Some(Endpoint::EventsPull));
    }

    #[test]
    fn a_counted_rule_is_used_up() {
        let faults = Faults::default();
        faults.add(FaultRule::times(Endpoint::Token, FaultKind::Status(503), 2));
        assert!(faults.take(Some(Endpoint::Initialize)).is_none());
        assert!(faults.take(Some(Endpoint::Token)).is_some());
        assert!(faults.take(Some(Endpoint::Token)).is_some());
        assert!(faults.take(Some(Endpoint::Token)).is_none());
        assert_eq!(faults.injected(), 2);
    }
}
