//! The answers ASP.NET gives for Events outside the controllers' own strings: RFC 7807
//! ProblemDetails and the `[ApiController]` ValidationProblemDetails, both as
//! `application/problem+json`, without the Correspondence API's `code` extensions.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::super::problem::{json_response, trace_id};

const PROBLEM_JSON: &str = "application/problem+json; charset=utf-8";

fn problem_response(status: u16, body: &Value) -> Response {
    let mut response = json_response(status, body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// Model binding failed: `errors` maps a key (`$.endPoint`, `id`, `""`) to its messages.
pub(crate) fn validation_problem(errors: &[(String, String)]) -> Response {
    let mut map = Map::new();
    for (key, message) in errors {
        let entry = map.entry(key.clone()).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!(message));
        }
    }
    let body = json!({
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": map,
        "traceId": trace_id(),
    });
    problem_response(400, &body)
}

/// `ControllerBase.Problem(detail, null, 400)`.
pub(crate) fn bad_request(detail: &str) -> Response {
    let body = json!({
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "Bad Request",
        "status": 400,
        "detail": detail,
        "traceId": trace_id(),
    });
    problem_response(400, &body)
}

/// `[Consumes("application/json")]`: a request whose content type is another one gets 415;
/// with `requires_body`, so does one without a content type (no input formatter reads it).
pub(crate) fn unsupported_media_type(headers: &HeaderMap, requires_body: bool) -> Option<Response> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let acceptable = if essence.is_empty() { !requires_body } else { essence.eq_ignore_ascii_case("application/json") };
    if acceptable {
        return None;
    }
    let body = json!({
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.16",
        "title": "Unsupported Media Type",
        "status": 415,
        "traceId": trace_id(),
    });
    Some(problem_response(415, &body))
}

/// An answer that ends a request early, boxed: a `Response` is too large to travel in the
/// error side of every `Result`.
pub(crate) struct Refusal(Box<Response>);

impl From<Response> for Refusal {
    fn from(response: Response) -> Refusal {
        Refusal(Box::new(response))
    }
}

impl axum::response::IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}
