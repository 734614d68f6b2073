//! Error bodies in the exact shapes the real Correspondence API produces.
//!
//! Clients must tell domain errors (integer `errorCode`) from model-validation errors
//! (`code: "STD-00000"`, no `errorCode`) and from bare-string or empty bodies, so the fake
//! produces each shape exactly where the real server does.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// Why a request failed, rendered in the shape the real server uses for that failure.
#[derive(Debug)]
pub(crate) enum Problem {
    /// Application error: ProblemDetails with `errorCode` and `code` "CORR-0xxxx".
    Domain { code: u32, status: u16, detail: String },
    /// Model-validation error: `STD-00000`, `validationErrors` and legacy `errors`, always 400.
    /// Each entry is (C# property path with dots, message).
    Validation(Vec<(String, String)>),
    /// A ProblemDetails without Altinn extensions (framework answers such as 415).
    Plain { status: u16, detail: String },
    /// A bare JSON string body (the undefined notification template case).
    BareString { status: u16, text: String },
}

impl Problem {
    pub fn domain(code: u32, detail: impl Into<String>) -> Problem {
        Problem::Domain { code, status: status_of(code), detail: detail.into() }
    }

    pub fn validation(path: &str, message: impl Into<String>) -> Problem {
        Problem::Validation(vec![(path.to_string(), message.into())])
    }
}

/// HTTP status of each domain error code the fake raises, as the real API answers it.
fn status_of(code: u32) -> u16 {
    match code {
        1001 | 1029 | 1054 | 2001 => 404,
        2002 => 502,
        2022 => 408,
        1030 => 422,
        1034 => 409,
        1032 | 2000 | 3026 => 500,
        4001 | 4006 | 4007 => 401,
        _ => 400,
    }
}

/// `type` and `title` come from a fixed table keyed by status, as in ProblemDetailsHelper.
fn type_and_title(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("https://tools.ietf.org/html/rfc9110#section-15.5.1", "Bad Request"),
        401 => ("https://tools.ietf.org/html/rfc9110#section-15.5.2", "Unauthorized"),
        403 => ("https://tools.ietf.org/html/rfc9110#section-15.5.4", "Forbidden"),
        404 => ("https://tools.ietf.org/html/rfc9110#section-15.5.5", "Not Found"),
        408 => ("https://tools.ietf.org/html/rfc9110#section-15.5.9", "Request Timeout"),
        409 => ("https://tools.ietf.org/html/rfc9110#section-15.5.10", "Conflict"),
        415 => ("https://tools.ietf.org/html/rfc9110#section-15.5.16", "Unsupported Media Type"),
        422 => ("https://tools.ietf.org/html/rfc9110#section-15.5.21", "Unprocessable Entity"),
        429 => ("https://tools.ietf.org/html/rfc6585#section-4", "Too Many Requests"),
        502 => ("https://tools.ietf.org/html/rfc9110#section-15.6.3", "Bad Gateway"),
        503 => ("https://tools.ietf.org/html/rfc9110#section-15.6.4", "Service Unavailable"),
        504 => ("https://tools.ietf.org/html/rfc9110#section-15.6.5", "Gateway Timeout"),
        _ => ("https://tools.ietf.org/html/rfc9110#section-15.6.1", "Internal Server Error"),
    }
}

/// A W3C trace-context id, as ASP.NET puts in `traceId`.
pub(crate) fn trace_id() -> String {
    let a: u128 = rand::random();
    let b: u64 = rand::random();
    format!("00-{a:032x}-{b:016x}-01")
}

/// A plain ProblemDetails without Altinn extensions, as unhandled errors and gateways give.
pub(crate) fn plain_problem(status: u16, detail: &str) -> Response {
    let (kind, title) = type_and_title(status);
    let body = json!({
        "type": kind, "title": title, "status": status, "detail": detail, "traceId": trace_id(),
    });
    json_response(status, &body)
}

pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

pub(crate) fn empty(status: u16) -> Response {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

fn validation_body(errors: &[(String, String)]) -> Value {
    let (kind, title) = type_and_title(400);
    let validation_errors: Vec<Value> = errors
        .iter()
        .map(|(path, message)| json!({ "code": "CORR.VLD-00000", "title": message, "paths": [path.replace('.', "/")] }))
        .collect();
    let mut legacy = Map::new();
    for (path, message) in errors {
        let entry = legacy.entry(path.clone()).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!(message));
        }
    }
    json!({
        "type": kind, "title": title, "status": 400, "code": "STD-00000", "traceId": trace_id(),
        "validationErrors": validation_errors, "errors": legacy,
    })
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        match self {
            Problem::Domain { code, status, detail } => {
                let (kind, title) = type_and_title(status);
                let body = json!({
                    "type": kind, "title": title, "status": status, "detail": detail,
                    "code": format!("CORR-{code:05}"), "traceId": trace_id(), "errorCode": code,
                });
                json_response(status, &body)
            }
            Problem::Validation(errors) => json_response(400, &validation_body(&errors)),
            Problem::Plain { status, detail } => plain_problem(status, &detail),
            Problem::BareString { status, text } => json_response(status, &json!(text)),
        }
    }
}
