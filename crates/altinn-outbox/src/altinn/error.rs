//! Failure classification, done once, here at the client boundary: the worker matches on
//! [`ErrorClass`] and never sees an HTTP status. Altinn's own error code decides first
//! ([`super::codes`]), the HTTP status only for a code it does not know. Altinn's texts quote recipients (1030 names
//! the reserved person's national identity number, 1029 lists URNs), so every text taken from
//! a body is scrubbed here ([`crate::identifiers::scrub`]): the row, its history, the logs and
//! `show` never get the number.

use std::time::Duration;

use serde::Deserialize;

use super::codes;
use super::faults::Fault;
use crate::codes::{self as catalogue, Code};
use crate::identifiers::scrub;
use crate::maskinporten::TokenError;

/// What the worker should do about a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later with the same idempotency key; counts as an attempt.
    Transient,
    /// The request can never succeed as it is: end the delivery.
    Permanent,
    /// Nothing is wrong with the row (no token can be had): wait without using an attempt.
    Deferred,
    /// Nothing is wrong with the row, our set-up is wrong for its resource: the token lacks a
    /// scope, or Altinn Authorization gives us no access. An operator's fix makes the same
    /// request succeed, so the row waits without using an attempt, up to an age limit.
    Misconfigured(Fault),
}

/// A failed Altinn or Maskinporten call. `code` is stable and machine-readable, one of
/// [`crate::codes`]: Altinn's own errorCode (`altinn:1037`), `altinn:STD-00000` for a
/// validation problem, `http:503`, `network`, `timeout`, or the token client's code.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub class: ErrorClass,
    pub code: String,
    pub message: String,
    /// From a 429's Retry-After (or our own throttle): no request before then.
    pub retry_after: Option<Duration>,
    /// The resource the request concerned, when it names one (initialize, the search, an
    /// attachment's creation): what a configuration fault is about.
    pub resource: Option<String>,
    /// No token, because Maskinporten or the exchange refused us (client, key, scope, clock):
    /// the row waits all the same, but only an operator's fix ends the wait.
    pub token_refused: bool,
}

impl ApiError {
    fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            class,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            resource: None,
            token_refused: false,
        }
    }

    pub fn transient(code: Code, message: impl Into<String>) -> Self {
        ApiError::new(ErrorClass::Transient, code, message)
    }

    /// Not the row's fault and nothing was sent: wait without using an attempt.
    pub fn deferred(code: Code, message: impl Into<String>) -> Self {
        ApiError::new(ErrorClass::Deferred, code, message)
    }

    pub fn permanent(code: Code, message: impl Into<String>) -> Self {
        ApiError::new(ErrorClass::Permanent, code, message)
    }

    /// No token could be had, so nothing was sent: the row waits (Deferred) without using an
    /// attempt, whether the cause is an outage or a configuration error; the latter is
    /// reported loudly by the token client instead. The code is the token client's.
    pub fn no_token(e: &TokenError) -> Self {
        ApiError { token_refused: e.is_config_error(), ..ApiError::new(ErrorClass::Deferred, e.code(), e.to_string()) }
    }

    /// Whether the same call may succeed later without anyone changing anything: an outage,
    /// throttling, no token for now. A refusal, of the request or of our set-up (a missing
    /// scope, no access, a token refused), waits for a fix.
    pub fn worth_retrying(&self) -> bool {
        matches!(self.class, ErrorClass::Transient | ErrorClass::Deferred) && !self.token_refused
    }

    /// Our set-up is wrong for `resource` (see [`Fault`]); `code` is the one the fault was
    /// met with.
    pub fn misconfigured(fault: Fault, code: String, message: impl Into<String>, resource: &str) -> Self {
        ApiError {
            resource: Some(resource.to_string()),
            ..ApiError::new(ErrorClass::Misconfigured(fault), code, message)
        }
    }

    /// A transport failure: the request may or may not have reached Altinn, so it is
    /// retried, and the idempotency key makes that safe.
    pub fn from_transport(e: &reqwest::Error) -> Self {
        let code = if e.is_timeout() { Code::Timeout } else { Code::Network };
        // reqwest's Display names the URL, which carries no secrets or personal data
        // (ids and the idempotency key only).
        ApiError::transient(code, format!("{e}: {}", source_chain(e)))
    }

    /// Classifies a non-success answer from Altinn's error code in its body, or from its
    /// status when the code is unknown or missing.
    pub fn from_response(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Self {
        let problem = Problem::parse(body);
        let class = match problem.error_code.and_then(codes::class_of) {
            Some(class) => class,
            None => match status {
                408 | 429 | 500..=599 => ErrorClass::Transient,
                // The scope policy refuses a valid token with an empty 403: it lacks
                // altinn:correspondence.write (or the service-owner org claim). Granting it
                // makes the next token, and the same request, succeed.
                403 if body.trim_ascii().is_empty() => ErrorClass::Misconfigured(Fault::MissingScope),
                // An empty 401 (even after a fresh token), or a 403 with a body but no code
                // (an issuer Correspondence does not accept), means our token is not right
                // yet, not that the row is: the worker waits (Deferred) rather than fail rows.
                401 | 403 if problem.error_code.is_none() => ErrorClass::Deferred,
                _ => ErrorClass::Permanent,
            },
        };
        let code = match (problem.error_code, &problem.code) {
            (Some(n), _) => catalogue::altinn(n),
            (None, Some(c)) => catalogue::altinn_problem(c),
            (None, None) => catalogue::http(status),
        };
        let message = match (problem.message, class) {
            (Some(message), _) => message,
            (None, ErrorClass::Misconfigured(fault)) => {
                format!("HTTP {status} with no error body: {}", fault.missing())
            }
            (None, _) => format!("HTTP {status} with no error body"),
        };
        ApiError { retry_after, ..ApiError::new(class, code, message) }
    }

    /// The configuration fault this error reports, if it is one.
    pub fn fault(&self) -> Option<Fault> {
        match self.class {
            ErrorClass::Misconfigured(fault) => Some(fault),
            _ => None,
        }
    }

    /// Altinn's numeric error code, when its answer had one.
    pub fn altinn_code(&self) -> Option<i64> {
        catalogue::altinn_number(&self.code)
    }

    /// The HTTP status of a refusal that had no code of Altinn's.
    pub fn bare_status(&self) -> Option<u16> {
        catalogue::http_status(&self.code)
    }

    pub fn is_already_created(&self) -> bool {
        self.altinn_code() == Some(1034)
    }

    /// 404 (`altinn:1001`, or bare): Altinn no longer shows the correspondence to its sender
    /// (the overview hides a purged one, while its details still answer).
    pub fn is_not_found(&self) -> bool {
        self.altinn_code() == Some(1001) || self.bare_status() == Some(404)
    }

    /// True when Altinn itself answered that one of its dependencies failed (a transient
    /// code of [`codes`]): Altinn is up, and the request may succeed later.
    pub fn is_dependency_failure(&self) -> bool {
        self.altinn_code().is_some_and(codes::is_transient)
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// The parts of an Altinn error body that matter, from any of its shapes: ProblemDetails
/// with `errorCode`, a validation problem (`code` STD-00000 with `validationErrors`), a
/// bare JSON string, or plain text. Its texts are scrubbed of personal data.
#[derive(Debug, Default, PartialEq)]
pub struct Problem {
    pub error_code: Option<i64>,
    pub code: Option<String>,
    pub message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProblem {
    error_code: Option<i64>,
    code: Option<String>,
    title: Option<String>,
    detail: Option<String>,
    #[serde(default)]
    validation_errors: Vec<RawValidationError>,
}

#[derive(Deserialize)]
struct RawValidationError {
    title: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
}

/// Error texts are kept short on the row; Altinn's details are one sentence.
const MAX_MESSAGE_CHARS: usize = 1000;

impl Problem {
    pub fn parse(body: &[u8]) -> Problem {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            return Problem::default();
        }
        if let Ok(raw) = serde_json::from_str::<RawProblem>(text) {
            let validation: Vec<String> = raw
                .validation_errors
                .iter()
                .map(|v| format!("{} ({})", v.title.as_deref().unwrap_or("invalid"), v.paths.join(", ")))
                .collect();
            let message = match (raw.detail.filter(|d| !d.is_empty()), validation.is_empty()) {
                (Some(d), _) => Some(d),
                (None, false) => Some(validation.join("; ")),
                (None, true) => raw.title,
            };
            let code = raw.code.map(|c| scrub(&c).into_owned());
            return Problem { error_code: raw.error_code, code, message: message.map(|m| tidy(&m)) };
        }
        let message = serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_string());
        Problem { error_code: None, code: None, message: Some(tidy(&message)) }
    }
}

/// Scrubbed before it is cut short: a number cut in two would no longer be 11 digits long,
/// and its first half is the birth date.
fn tidy(text: &str) -> String {
    truncate(scrub(text).into_owned())
}

fn truncate(s: String) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        s
    } else {
        s.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_details_keep_altinns_code_and_detail() {
        let body = br#"{"type":"x","title":"Bad Request","status":400,"detail":"Message title cannot exceed 255 characters","code":"CORR-01037","errorCode":1037}"#;
        let e = ApiError::from_response(400, None, body);
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(e.code, "altinn:1037");
        assert_eq!(e.message, "Message title cannot exceed 255 characters");
    }

    #[test]
    fn validation_problems_name_the_paths() {
        let body = br#"{"status":400,"code":"STD-00000","validationErrors":[{"code":"CORR.VLD-00000","title":"The MessageBody field is required.","paths":["Correspondence/Content/MessageBody"]}]}"#;
        let e = ApiError::from_response(400, None, body);
        assert_eq!(e.code, "altinn:STD-00000");
        assert!(e.message.contains("Correspondence/Content/MessageBody"), "{}", e.message);
    }

    #[test]
    fn status_classes() {
        assert_eq!(ApiError::from_response(503, None, b"").class, ErrorClass::Transient);
        assert_eq!(ApiError::from_response(408, None, b"").class, ErrorClass::Transient);
        let e = ApiError::from_response(429, Some(Duration::from_secs(7)), b"");
        assert_eq!((e.class, e.retry_after), (ErrorClass::Transient, Some(Duration::from_secs(7))));
        assert_eq!(ApiError::from_response(401, None, b"").class, ErrorClass::Deferred);
        assert_eq!(ApiError::from_response(404, None, b"").code, "http:404");
        let e = ApiError::from_response(400, None, br#""Invalid notification template""#);
        assert_eq!((e.code.as_str(), e.message.as_str()), ("http:400", "Invalid notification template"));
        assert!(ApiError::from_response(409, None, br#"{"errorCode":1034}"#).is_already_created());
    }

    #[test]
    fn refusals_of_who_we_are_are_configuration_faults() {
        // The scope policy's empty 403: the token lacks the write scope or the org claim.
        let scope = ApiError::from_response(403, None, b"");
        assert_eq!((scope.class, scope.code.as_str()), (ErrorClass::Misconfigured(Fault::MissingScope), "http:403"));
        assert!(scope.message.contains("altinn:correspondence.write"), "{}", scope.message);
        assert_eq!(scope.fault(), Some(Fault::MissingScope));
        assert_eq!(ApiError::from_response(403, None, b" \n").class, ErrorClass::Misconfigured(Fault::MissingScope));
        // Altinn Authorization's deny, exactly as the server shapes it.
        let denied = br#"{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.2","title":"Unauthorized","status":401,"detail":"You must use an Altinn token, DialogToken or log in to IDPorten as someone with access to the resource and organization in Altinn Authorization","code":"CORR-04001","errorCode":4001}"#;
        let e = ApiError::from_response(401, None, denied);
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::Misconfigured(Fault::NoAccess), "altinn:4001"));
        assert!(e.message.starts_with("You must use an Altinn token"), "{}", e.message);
        let caller = ApiError::from_response(401, None, br#"{"status":401,"errorCode":4006}"#);
        assert_eq!(caller.class, ErrorClass::Misconfigured(Fault::UnknownCaller));
        // Not ours to judge: the bearer check's empty 401, and a 403 for a token of a foreign
        // issuer (a body, no code), wait as before; a 400 is still the request's fault.
        assert_eq!(ApiError::from_response(401, None, b"").class, ErrorClass::Deferred);
        let issuer = br#"{"status":403,"title":"IDX10205: Issuer validation failed"}"#;
        assert_eq!(ApiError::from_response(403, None, issuer).class, ErrorClass::Deferred);
        assert_eq!(ApiError::from_response(400, None, b"").fault(), None);
        assert_eq!(ApiError::from_response(400, None, br#"{"errorCode":1036}"#).class, ErrorClass::Permanent);
    }

    #[test]
    fn altinns_code_decides_before_the_status() {
        let register = br#"{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.1","title":"Bad Request","status":400,"detail":"Could not retrieve party uuid from lookup in Altinn Register","code":"CORR-04002","traceId":"00-1-2-01","errorCode":4002}"#;
        let e = ApiError::from_response(400, None, register);
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::Transient, "altinn:4002"));
        assert_eq!(e.message, "Could not retrieve party uuid from lookup in Altinn Register");
        assert!(e.is_dependency_failure());
        let status = ApiError::from_response(400, None, br#"{"status":400,"errorCode":1015}"#);
        assert_eq!(status.class, ErrorClass::Transient);
        let krr = ApiError::from_response(500, None, br#"{"status":500,"errorCode":1032}"#);
        assert_eq!(krr.class, ErrorClass::Transient);
        assert!(krr.is_dependency_failure());

        let title = ApiError::from_response(400, None, br#"{"status":400,"errorCode":1002}"#);
        assert_eq!(title.class, ErrorClass::Permanent);
        assert!(!title.is_dependency_failure());

        // A code the table does not know keeps the rule of its status.
        assert_eq!(ApiError::from_response(400, None, br#"{"errorCode":9999}"#).class, ErrorClass::Permanent);
        let unknown = ApiError::from_response(503, None, br#"{"errorCode":9999}"#);
        assert_eq!((unknown.class, unknown.is_dependency_failure()), (ErrorClass::Transient, false));
        assert!(!ApiError::from_response(503, None, b"").is_dependency_failure());
    }

    #[test]
    fn a_reserved_persons_number_never_reaches_the_error() {
        let body = br#"{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.21","title":"Unprocessable Entity","status":422,"detail":"Recipient 31129956715 has reserved themselves from public correspondences. Can be overridden using the 'IgnoreReservation' flag.","code":"CORR-01030","errorCode":1030}"#;
        let e = ApiError::from_response(422, None, body);
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::Permanent, "altinn:1030"));
        assert!(e.message.starts_with("Recipient *********15 has reserved themselves"), "{}", e.message);
        for shown in [e.message.as_str(), &e.to_string(), &format!("{e:?}")] {
            assert!(!shown.contains("311299"), "no birth date in {shown}");
            assert!(!shown.contains("567"), "no individual number in {shown}");
        }
    }

    #[test]
    fn every_shape_of_body_is_scrubbed_before_it_is_cut_short() {
        let list = br#"{"status":404,"detail":"Could not find partyId for the following recipients: URN:ALTINN:PERSON:IDENTIFIER-NO:31129956715","errorCode":1029}"#;
        let e = ApiError::from_response(404, None, list);
        assert_eq!(e.message, "Could not find partyId for the following recipients: *********15");
        let validation = br#"{"status":400,"code":"STD-00000","validationErrors":[{"title":"Recipient 31129956715 is invalid","paths":["Recipients[0]"]}]}"#;
        assert_eq!(
            ApiError::from_response(400, None, validation).message,
            "Recipient *********15 is invalid (Recipients[0])"
        );
        let plain = format!("{}31129956715", "x".repeat(MAX_MESSAGE_CHARS - 6));
        let e = ApiError::from_response(502, None, plain.as_bytes());
        assert!(e.message.ends_with("******…") && !e.message.contains("311299"), "{}", e.message);
        let text = br#""recipient urn:altinn:person:idporten-email:kari@example.no is unknown""#;
        let e = ApiError::from_response(400, None, text);
        assert_eq!(e.message, "recipient urn:altinn:person:idporten-email:*** is unknown");
    }
}
