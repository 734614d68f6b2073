//! Failures of a token refresh, classified once: retry later, or fix the configuration.
//!
//! HTTP statuses and OAuth error codes are matched here and nowhere else; the worker
//! matches only on [`TokenError::is_config_error`] and stores [`TokenError::code`].
//! Messages carry statuses, OAuth error descriptions and transport causes, never a
//! request or response body that could hold a token or a grant. The server's own words (the
//! OAuth error and its description) are scrubbed of personal data like Altinn's texts.

use std::fmt;

use reqwest::StatusCode;
use serde_json::Value;

use crate::codes::{self, TokenReason};
use crate::identifiers::scrub;

/// Maskinporten's `error_description` explains the problem (with an MP-xxx id) and is
/// worth keeping on the row, but a misbehaving proxy could send a page; cap it.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 300;

/// The step of a refresh that failed; the first half of [`TokenError::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Grant,
    Maskinporten,
    Exchange,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Grant => "grant",
            Step::Maskinporten => "maskinporten",
            Step::Exchange => "exchange",
        })
    }
}

/// Why no token could be had, classified once so the worker matches on the class only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Transient as far as we can tell: network error, timeout, 5xx, 429, or the
    /// exchange's empty 401 (Altinn answers every exchange failure that way, including
    /// its own failures to fetch Maskinporten's keys). Retry with backoff.
    #[error("{step} unavailable: {message}")]
    Unavailable { step: Step, status: Option<u16>, message: String },
    /// Refused for a reason retrying will not fix: wrong client id, unknown or expired
    /// key, scope not granted, clock skew. `error` is the OAuth error code
    /// (`invalid_grant`, …) or `http_<status>` when the body had none.
    #[error("{step} rejected the request: {error}: {description}")]
    Rejected { step: Step, error: String, description: String },
}

impl TokenError {
    /// True when an operator must fix configuration (client, key, scopes, clock).
    pub fn is_config_error(&self) -> bool {
        matches!(self, TokenError::Rejected { .. })
    }

    /// A stable machine code for the outbox row (the family [`codes::Family::Token`]):
    /// `maskinporten:invalid_grant`, `maskinporten:unavailable`, `exchange:401`,
    /// `maskinporten:503`, …
    pub fn code(&self) -> String {
        match self {
            TokenError::Unavailable { step, status: Some(status), .. } => codes::token(*step, status),
            TokenError::Unavailable { step, status: None, .. } => {
                codes::token(*step, TokenReason::Unavailable.as_str())
            }
            TokenError::Rejected { step, error, .. } => codes::token(*step, error),
        }
    }
}

pub(crate) fn transport_error(step: Step, error: &reqwest::Error) -> TokenError {
    // The error chain holds the URL and the I/O cause, never headers or bodies.
    let mut message = if error.is_timeout() { "timed out".to_string() } else { error.to_string() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    TokenError::Unavailable { step, status: None, message }
}

fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

/// Classifies a non-2xx answer from Maskinporten.
pub(crate) fn classify_maskinporten_failure(status: StatusCode, body: &[u8]) -> TokenError {
    let step = Step::Maskinporten;
    if is_transient_status(status) || !status.is_client_error() {
        return TokenError::Unavailable { step, status: Some(status.as_u16()), message: format!("HTTP {status}") };
    }
    match oauth_error(body) {
        // RFC 6749 codes that mean "try again later" even when sent with a 4xx.
        Some((error, description)) if error == "temporarily_unavailable" || error == "server_error" => {
            TokenError::Unavailable { step, status: Some(status.as_u16()), message: format!("{error}: {description}") }
        }
        Some((error, description)) => TokenError::Rejected { step, error, description },
        None => TokenError::Rejected {
            step,
            error: format!("http_{}", status.as_u16()),
            description: format!("HTTP {status} without an OAuth error body (is token_url right?)"),
        },
    }
}

/// Classifies a non-2xx answer from the exchange. Its 401 is empty whatever went wrong,
/// transient or not, so it counts as unavailable; the retry limit turns a persistent one
/// into a failed row.
pub(crate) fn classify_exchange_failure(status: StatusCode) -> TokenError {
    let step = Step::Exchange;
    if status == StatusCode::UNAUTHORIZED {
        return TokenError::Unavailable {
            step,
            status: Some(401),
            message: "HTTP 401 (the exchange gives no reason; check the Maskinporten client's scopes \
                      and org if it persists)"
                .to_string(),
        };
    }
    if is_transient_status(status) || !status.is_client_error() {
        return TokenError::Unavailable { step, status: Some(status.as_u16()), message: format!("HTTP {status}") };
    }
    TokenError::Rejected {
        step,
        error: format!("http_{}", status.as_u16()),
        description: format!("HTTP {status} (is exchange_url right?)"),
    }
}

/// The OAuth `error` and `error_description` of an error body, if it has them, scrubbed
/// before the description is cut short (a number cut in two would escape the scrub).
fn oauth_error(body: &[u8]) -> Option<(String, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?.as_str()?.trim();
    if error.is_empty() {
        return None;
    }
    let description = value.get("error_description").and_then(Value::as_str).unwrap_or_default();
    Some((scrub(error).into_owned(), scrub(description).chars().take(MAX_DESCRIPTION_CHARS).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_meaning_later_are_unavailable() {
        let body = br#"{"error":"temporarily_unavailable","error_description":"busy"}"#;
        let error = classify_maskinporten_failure(StatusCode::BAD_REQUEST, body);
        assert!(!error.is_config_error());
        let error = classify_maskinporten_failure(StatusCode::NOT_FOUND, b"<html>");
        assert_eq!(error.code(), "maskinporten:http_404");
        assert!(error.is_config_error());
        let long = format!(r#"{{"error":"invalid_client","error_description":"{}"}}"#, "x".repeat(1000));
        let TokenError::Rejected { description, .. } =
            classify_maskinporten_failure(StatusCode::UNAUTHORIZED, long.as_bytes())
        else {
            panic!("expected a rejection")
        };
        assert_eq!(description.len(), MAX_DESCRIPTION_CHARS);
    }

    #[test]
    fn the_exchanges_empty_401_is_unavailable_other_4xx_rejected() {
        let error = classify_exchange_failure(StatusCode::UNAUTHORIZED);
        assert_eq!((error.code(), error.is_config_error()), ("exchange:401".to_string(), false));
        let error = classify_exchange_failure(StatusCode::GONE);
        assert_eq!((error.code(), error.is_config_error()), ("exchange:http_410".to_string(), true));
    }

    #[test]
    fn the_servers_description_is_scrubbed() {
        let body = br#"{"error":"invalid_request","error_description":"consumer 31129956715 is no organisation"}"#;
        let error = classify_maskinporten_failure(StatusCode::BAD_REQUEST, body);
        assert_eq!(
            error.to_string(),
            "maskinporten rejected the request: invalid_request: consumer *********15 is no organisation"
        );
    }
}
