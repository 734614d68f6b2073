//! `POST`, `GET` and `DELETE /events/api/v1/subscriptions` as SubscriptionController and
//! GenericSubscriptionService answer them: the token (401) and the content
//! type (415) first, then model binding (400 ValidationProblemDetails), then checks 1–9 in
//! the server's order with their JSON-string bodies. Create is idempotent per tuple and
//! starts a handshake every time; GET and DELETE by id answer 404, then 403 to anyone but the
//! creator. The scope is checked on create only, as the controller does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use url::Url;

use super::super::problem::{empty, json_response};
use super::super::App;
use super::answers::{unsupported_media_type, validation_problem, Refusal};
use super::caller::{caller, permits, Caller};
use super::cloud::dotnet_time;
use super::{FakeSubscription, Knobs};

/// The URN rule of `UriExtensions.IsValidUrn`, part by part (lower case only).
const URN_NID_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789-";
const URN_NSS_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789()+,.-;$_!/";

/// A `System.Uri` as System.Text.Json binds it: absolute, or relative (which is accepted
/// by binding and refused by the checks).
enum BoundUri {
    Absolute(Url),
    Relative,
}

/// `SubscriptionRequestModel` after binding.
#[derive(Default)]
struct Request {
    end_point: Option<BoundUri>,
    source_filter: Option<BoundUri>,
    subject_filter: Option<String>,
    resource_filter: Option<String>,
    alternative_subject_filter: Option<String>,
    type_filter: Option<String>,
    include_subunits: bool,
}

/// The stored form of an endpoint: the URL as `Uri.AbsoluteUri` writes it (the url crate's
/// serialisation: lower-case scheme and host, default port dropped, `/` for an empty path).
pub(crate) fn normalize_endpoint(endpoint: &str) -> String {
    Url::parse(endpoint).map_or_else(|_| endpoint.to_string(), |u| u.as_str().to_string())
}

fn bind_uri(text: &str) -> Option<BoundUri> {
    match Url::parse(text) {
        Ok(url) => Some(BoundUri::Absolute(url)),
        // `Uri.TryCreate(…, RelativeOrAbsolute)` fails for what claims a scheme and
        // authority but is broken (`https://`), and accepts any other text as relative.
        Err(_) if text.contains("://") => None,
        Err(_) => Some(BoundUri::Relative),
    }
}

fn conversion_error(path: &str, type_name: &str) -> Vec<(String, String)> {
    vec![(path.to_string(), format!("The JSON value could not be converted to {type_name}. Path: {path}."))]
}

/// Binds the body as System.Text.Json with ASP.NET's web defaults does: member names
/// case-insensitive, unknown members ignored, the first conversion error fails it all.
fn bind(body: &[u8]) -> Result<Request, Vec<(String, String)>> {
    let empty_body = || vec![(String::new(), "A non-empty request body is required.".to_string())];
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(empty_body());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let message = format!("{e}. Path: $ | LineNumber: {} | BytePositionInLine: {}.", e.line() - 1, e.column());
        vec![("$".to_string(), message)]
    })?;
    let object = match value {
        Value::Null => return Err(empty_body()),
        Value::Object(object) => object,
        _ => return Err(conversion_error("$", "Altinn.Platform.Events.Models.SubscriptionRequestModel")),
    };
    let mut request = Request::default();
    for (name, value) in &object {
        bind_member(&mut request, name, value)?;
    }
    Ok(request)
}

fn bind_member(request: &mut Request, name: &str, value: &Value) -> Result<(), Vec<(String, String)>> {
    let path = format!("$.{name}");
    let text = |value: &Value| match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(conversion_error(&path, "System.String")),
    };
    let uri = |value: &Value| match value {
        Value::Null => Ok(None),
        Value::String(s) => bind_uri(s).map(Some).ok_or_else(|| conversion_error(&path, "System.Uri")),
        _ => Err(conversion_error(&path, "System.Uri")),
    };
    match name.to_ascii_lowercase().as_str() {
        "endpoint" => request.end_point = uri(value)?,
        "sourcefilter" => request.source_filter = uri(value)?,
        "subjectfilter" => request.subject_filter = text(value)?,
        "resourcefilter" => request.resource_filter = text(value)?,
        "alternativesubjectfilter" => request.alternative_subject_filter = text(value)?,
        "typefilter" => request.type_filter = text(value)?,
        "includesubunits" => {
            request.include_subunits = value.as_bool().ok_or_else(|| conversion_error(&path, "System.Boolean"))?;
        }
        _ => {}
    }
    Ok(())
}

/// `SubscriptionController.IsValidUri`: absolute and https (or http when allowed).
fn valid_endpoint(uri: Option<&BoundUri>, allow_http: bool) -> Option<&Url> {
    match uri? {
        BoundUri::Absolute(url) if url.scheme() == "https" || (allow_http && url.scheme() == "http") => Some(url),
        _ => None,
    }
}

/// `UriExtensions.IsValidUrn`: `^urn:[a-z0-9-]{1,30}(:[a-z0-9()+,.\-;$_!/]{1,100}){1,10}$`.
pub(crate) fn is_valid_urn(text: &str) -> bool {
    let mut parts = text.split(':');
    let (Some("urn"), Some(nid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let rest: Vec<&str> = parts.collect();
    let made_of =
        |s: &str, chars: &str, max: usize| (1..=max).contains(&s.len()) && s.chars().all(|c| chars.contains(c));
    made_of(nid, URN_NID_CHARS, 30)
        && (1..=10).contains(&rest.len())
        && rest.iter().all(|s| made_of(s, URN_NSS_CHARS, 100))
}

fn refuse(text: &str) -> Refusal {
    json_response(400, &json!(text)).into()
}

/// The nine checks of a create, in the order the controller and the service run them; returns the
/// subscription to create (or find) on success.
fn check(app: &App, knobs: &Knobs, caller: &Caller, r: &Request) -> Result<FakeSubscription, Refusal> {
    let Some(end_point) = valid_endpoint(r.end_point.as_ref(), knobs.allow_http) else {
        return Err(refuse("Missing or invalid endpoint to push events towards"));
    };
    if r.source_filter.is_some() && valid_endpoint(r.source_filter.as_ref(), false).is_none() {
        return Err(refuse("SourceFilter must be an absolute URL with the https scheme."));
    }
    if !caller.may_subscribe() {
        return Err(empty(403).into());
    }
    if r.resource_filter.as_deref().is_some_and(|f| !is_valid_urn(f)) {
        return Err(refuse("Resource filter must be a valid urn"));
    }
    let Some(resource) = r.resource_filter.clone().filter(|f| !f.is_empty()) else {
        return Err(refuse("Resource filter is required."));
    };
    if r.source_filter.is_some() {
        return Err(refuse("Source filter is not supported for subscriptions on this resource."));
    }
    if r.alternative_subject_filter.as_deref().is_some_and(|f| !f.is_empty()) {
        return Err(refuse("AlternativeSubject filter is not supported for subscriptions on this resource."));
    }
    if r.include_subunits && r.subject_filter.as_deref().is_none_or(str::is_empty) {
        return Err(refuse("IncludeSubunits requires a subject filter."));
    }
    // The PDP is asked with the consumer; a token naming nobody fails it.
    let identity = caller.identity.clone().unwrap_or_default();
    if !permits(app, knobs, &identity, &resource, r.subject_filter.as_deref()) {
        let text = format!("Not authorized to create a subscription for resource {resource}.");
        return Err(json_response(403, &json!(text)).into());
    }
    Ok(FakeSubscription {
        id: 0,
        end_point: end_point.as_str().to_string(),
        resource_filter: resource,
        subject_filter: r.subject_filter.clone(),
        type_filter: r.type_filter.clone(),
        consumer: identity,
        created: app.now(),
        validated: false,
        include_subunits: r.include_subunits,
    })
}

/// The Subscription JSON: the model's member order, camelCase, nulls left out.
pub(crate) fn to_json(s: &FakeSubscription) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(s.id));
    map.insert("endPoint".into(), json!(s.end_point));
    map.insert("resourceFilter".into(), json!(s.resource_filter));
    if let Some(subject) = &s.subject_filter {
        map.insert("subjectFilter".into(), json!(subject));
    }
    if let Some(event_type) = &s.type_filter {
        map.insert("typeFilter".into(), json!(event_type));
    }
    map.insert("consumer".into(), json!(s.consumer));
    map.insert("createdBy".into(), json!(s.consumer));
    map.insert("created".into(), json!(dotnet_time(s.created)));
    map.insert("validated".into(), json!(s.validated));
    map.insert("includeSubunits".into(), json!(s.include_subunits));
    Value::Object(map)
}

/// `POST /subscriptions`.
pub(crate) async fn create(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match caller(&app, &headers) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(refusal) = unsupported_media_type(&headers, true) {
        return refusal;
    }
    let request = match bind(&body) {
        Ok(request) => request,
        Err(errors) => return validation_problem(&errors),
    };
    let wanted = match check(&app, &app.events.knobs(), &caller, &request) {
        Ok(wanted) => wanted,
        Err(refusal) => return refusal.into_response(),
    };
    let subscription = app.events.find_or_create(wanted);
    tracing::info!(id = subscription.id, "subscription created or found; validating its endpoint");
    app.events.start_validation(subscription.id, subscription.end_point.clone());
    let mut response = json_response(201, &to_json(&subscription));
    let location = format!("/events/api/v1/subscription/{}", subscription.id);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `GET /subscriptions`: the caller's, validated or not.
pub(crate) async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let caller = match caller(&app, &headers) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let mine: Vec<Value> = app
        .events
        .subscriptions()
        .iter()
        .filter(|s| caller.identity.as_deref() == Some(s.consumer.as_str()))
        .map(to_json)
        .collect();
    json_response(200, &json!({ "count": mine.len(), "subscriptions": mine }))
}

/// The token, the `int id` binding, 404, then the creator check; the subscription's id.
fn owned(app: &App, headers: &HeaderMap, id: &str) -> Result<FakeSubscription, Refusal> {
    let caller = caller(app, headers)?;
    let Ok(id) = id.parse::<i32>() else {
        return Err(validation_problem(&[("id".into(), format!("The value '{id}' is not valid."))]).into());
    };
    let found = app.events.subscriptions().into_iter().find(|s| s.id == id);
    let found = found.ok_or_else(|| Refusal::from(empty(404)))?;
    if caller.identity.as_deref() != Some(found.consumer.as_str()) {
        return Err(empty(403).into());
    }
    Ok(found)
}

/// `GET /subscriptions/{id}`.
pub(crate) async fn one(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    match owned(&app, &headers, &id) {
        Ok(subscription) => json_response(200, &to_json(&subscription)),
        Err(refusal) => refusal.into_response(),
    }
}

/// `DELETE /subscriptions/{id}`: 200 with an empty body. Pushes already under way go on, as
/// their queue messages do.
pub(crate) async fn delete(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    match owned(&app, &headers, &id) {
        Ok(subscription) => {
            app.events.store().subscriptions.retain(|s| s.id != subscription.id);
            empty(200)
        }
        Err(refusal) => refusal.into_response(),
    }
}

impl super::Events {
    /// `FindSubscription` on the whole tuple, else a new subscription with the next id.
    fn find_or_create(&self, wanted: FakeSubscription) -> FakeSubscription {
        let mut store = self.store();
        let same = |s: &&FakeSubscription| {
            s.resource_filter == wanted.resource_filter
                && s.subject_filter == wanted.subject_filter
                && s.type_filter == wanted.type_filter
                && s.consumer == wanted.consumer
                && s.end_point == wanted.end_point
                && s.include_subunits == wanted.include_subunits
        };
        if let Some(found) = store.subscriptions.iter().find(same) {
            return found.clone();
        }
        store.last_id += 1;
        let created = FakeSubscription { id: store.last_id, ..wanted };
        store.subscriptions.push(created.clone());
        created
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urns_follow_the_events_regex() {
        assert!(is_valid_urn("urn:altinn:resource:my-corr-resource"));
        assert!(is_valid_urn("urn:altinn:resource:a_b.c"));
        assert!(!is_valid_urn("urn:altinn:resource:My-Resource"), "lower case only");
        assert!(!is_valid_urn("urn:altinn:resource:"), "an empty part");
        assert!(!is_valid_urn("urn:altinn"), "at least one part after the namespace");
        assert!(!is_valid_urn(""));
        assert!(!is_valid_urn(&format!("urn:{}:x", "a".repeat(31))));
        assert!(!is_valid_urn("urn:a:1:2:3:4:5:6:7:8:9:10:11"), "at most ten parts");
    }

    #[test]
    fn members_bind_case_insensitively_and_types_are_checked() {
        let bound = bind(br#"{"ENDPOINT":"https://h.example/x","resourcefilter":"r","other":1}"#).expect("binds");
        assert!(matches!(bound.end_point, Some(BoundUri::Absolute(_))));
        assert_eq!(bound.resource_filter.as_deref(), Some("r"));
        assert!(matches!(bind(br#"{"endPoint":"relative/path"}"#).map(|r| r.end_point), Ok(Some(BoundUri::Relative))));
        let errors = bind(br#"{"includeSubunits":"yes"}"#).err().expect("a conversion error");
        assert_eq!(errors[0].0, "$.includeSubunits");
        assert_eq!(bind(b"").err().expect("empty")[0].0, "");
        assert_eq!(bind(b"{").err().expect("broken")[0].0, "$");
        assert_eq!(normalize_endpoint("HTTPS://Hooks.Example:443"), "https://hooks.example/");
    }
}
