//! `GET /events/api/v1/events` (as Altinn's EventsController and `getevents_v2` do): the
//! registered events of one resource after the event `after`, in registration order, at
//! most `size` (default 50, at most 1000), each visible only `events_visibility_delay_ms`
//! after registration, `type` matched with SQL `LIKE`, then each filtered by the PDP's
//! `subscribe`. The body is `application/cloudevents+json`; the `next` header (the same
//! query with `after` = the last event's id) is set whenever the page has an event, as the
//! controller does (an empty page has none, whatever older documentation says).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Duration;

use super::super::problem::empty;
use super::super::App;
use super::answers::{bad_request, unsupported_media_type, validation_problem};
use super::caller::{caller, permits};
use super::FakeEvent;

/// The controller's page size when `size` is missing or below 1, and its clamp.
const DEFAULT_SIZE: i64 = 50;
const MAX_SIZE: i64 = 1000;
/// `[FromHeader(Name = "Altinn-AlternativeSubject")]`: the alternative subject is a header.
const ALTERNATIVE_SUBJECT_HEADER: &str = "altinn-alternativesubject";

/// The query as ASP.NET's `Request.Query` holds it: keys case-insensitive, kept with the
/// casing first seen, in order of first appearance, each with its values.
struct Query(Vec<(String, Vec<String>)>);

impl Query {
    fn parse(raw: &str) -> Query {
        let mut keys: Vec<(String, Vec<String>)> = Vec::new();
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()).into_owned() {
            match keys.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                Some((_, values)) => values.push(value),
                None => keys.push((key, vec![value])),
            }
        }
        Query(keys)
    }

    /// A string parameter: the first value; empty counts as absent (ConvertEmptyStringToNull).
    fn first(&self, name: &str) -> Option<String> {
        let (_, values) = self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?;
        values.first().filter(|v| !v.is_empty()).cloned()
    }

    fn all(&self, name: &str) -> Vec<String> {
        let values = self.0.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).flat_map(|(_, v)| v.iter());
        values.filter(|v| !v.is_empty()).cloned().collect()
    }
}

/// PostgreSQL's `LIKE`: `%` any run, `_` one character, `\` escapes; case-sensitive.
pub(crate) fn like(pattern: &str, text: &str) -> bool {
    fn matches(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|skip| matches(rest, &t[skip..])),
            Some(('_', rest)) => !t.is_empty() && matches(rest, &t[1..]),
            Some(('\\', rest)) if !rest.is_empty() => t.first() == rest.first() && matches(&rest[1..], &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && matches(rest, &t[1..]),
        }
    }
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    matches(&p, &t)
}

/// `size` as bound: None when it is not an integer.
fn size(query: &Query) -> Option<i64> {
    let Some(raw) = query.first("size") else {
        return Some(DEFAULT_SIZE);
    };
    let n: i32 = raw.trim().parse().ok()?;
    Some(if n < 1 { DEFAULT_SIZE } else { i64::from(n).min(MAX_SIZE) })
}

pub(crate) async fn events(State(app): State<Arc<App>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let caller = match caller(&app, &headers) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    if !caller.may_subscribe() {
        return empty(403);
    }
    if let Some(refusal) = unsupported_media_type(&headers, false) {
        return refusal;
    }
    let query = Query::parse(raw.as_deref().unwrap_or_default());
    let mut errors = Vec::new();
    let resource = query.first("resource");
    if resource.is_none() {
        errors.push(("resource".to_string(), "The resource field is required.".to_string()));
    }
    let size = size(&query);
    if size.is_none() {
        let raw = query.first("size").unwrap_or_default();
        errors.push(("size".to_string(), format!("The value '{raw}' is not valid.")));
    }
    let (Some(resource), Some(size)) = (resource, size) else {
        return validation_problem(&errors);
    };
    let alternative = headers.get(ALTERNATIVE_SUBJECT_HEADER).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let (after, subject) = (query.first("after"), query.first("subject"));
    if !resource.starts_with("urn:altinn:resource:") {
        return bad_request("The 'resource' parameter must begin with `urn:altinn:resource:`");
    }
    let Some(after) = after else {
        return bad_request("The 'after' parameter must be defined.");
    };
    if subject.is_some() && alternative.is_some() {
        return bad_request("Only one of 'subject' or 'alternativeSubject' can be defined.");
    }
    let filter = Filter { resource, subject, alternative: alternative.map(String::from), types: query.all("type") };
    let page = page(&app, &filter, &after, size, caller.identity.as_deref().unwrap_or_default());
    respond(&app, &query, &page, filter.alternative.is_some() && filter.subject.is_none())
}

struct Filter {
    resource: String,
    subject: Option<String>,
    alternative: Option<String>,
    types: Vec<String>,
}

/// `getevents_v2`, then the PDP on each event.
fn page(app: &App, f: &Filter, after: &str, size: i64, identity: &str) -> Vec<FakeEvent> {
    let knobs = app.events.knobs();
    let visible_until = app.now() - Duration::milliseconds(knobs.visibility_delay_ms as i64);
    let store = app.events.store();
    // An unknown `after` lists from the start.
    let start = store.events.iter().position(|e| e.id == after).map_or(0, |i| i + 1);
    let found: Vec<FakeEvent> = store.events[start..]
        .iter()
        .filter(|e| {
            e.resource == f.resource
                && f.subject.as_ref().is_none_or(|s| Some(s) == e.subject.as_ref())
                && f.alternative.as_ref().is_none_or(|a| Some(a) == e.alternative_subject.as_ref())
                && (f.types.is_empty() || f.types.iter().any(|t| like(t, &e.event_type)))
                && e.registered <= visible_until
        })
        .take(size as usize)
        .cloned()
        .collect();
    drop(store);
    found.into_iter().filter(|e| permits(app, &knobs, identity, &e.resource, e.subject.as_deref())).collect()
}

/// The page as `application/cloudevents+json` (CloudEventJsonOutputFormatter: `[`, events
/// joined by `, `, `]`) with `next` (SetNextLink: values appended as decoded, unescaped).
fn respond(app: &App, query: &Query, page: &[FakeEvent], include_subject: bool) -> Response {
    let body = format!("[{}]", page.iter().map(FakeEvent::to_json).collect::<Vec<_>>().join(", "));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/cloudevents+json; charset=utf-8"));
    if let (Some(last), Some(first)) = (page.last(), page.first()) {
        let mut next = format!("{}/events/api/v1/events?after={}", app.base_url, last.id);
        for (key, values) in query.0.iter().filter(|(k, _)| k != "after") {
            values.iter().for_each(|v| next.push_str(&format!("&{key}={v}")));
        }
        if include_subject {
            next.push_str(&format!("&subject={}", first.subject.clone().unwrap_or_default()));
        }
        if let Ok(value) = HeaderValue::from_str(&next) {
            headers.insert("next", value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_as_postgresql_does() {
        assert!(like("no.altinn.correspondence.%", "no.altinn.correspondence.correspondencepublished"));
        assert!(like("%published", "no.altinn.correspondence.correspondencepublished"));
        assert!(like(
            "no.altinn.correspondence.correspondencepublished",
            "no.altinn.correspondence.correspondencepublished"
        ));
        assert!(!like("no.altinn.correspondence.correspondence", "no.altinn.correspondence.correspondencepublished"));
        assert!(like("a_c", "abc") && !like("a_c", "ac"));
        assert!(like("a\\%", "a%") && !like("a\\%", "ab"));
        assert!(!like("%PUBLISHED", "published"), "case-sensitive");
    }

    #[test]
    fn query_keys_are_case_insensitive_and_empty_values_absent() {
        let q = Query::parse("Resource=urn%3Aaltinn%3Aresource%3Ax&after=&type=a&TYPE=b&size=2000");
        assert_eq!(q.first("resource").as_deref(), Some("urn:altinn:resource:x"));
        assert_eq!(q.first("after"), None);
        assert_eq!(q.all("type"), vec!["a", "b"]);
        assert_eq!(size(&q), Some(MAX_SIZE));
        assert_eq!(size(&Query::parse("size=0")), Some(DEFAULT_SIZE));
        assert_eq!(size(&Query::parse("size=x")), None);
    }
}
