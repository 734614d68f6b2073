//! The Correspondence API endpoints under `/correspondence/api/v1`: initialize, search,
//! overview, details and purge.
//!
//! Initialize follows the real handler's order: the idempotency pre-check comes first (a
//! known key is a 409 whatever the body says), then validation, then one commit that stores
//! the correspondences and the key together, so a concurrent duplicate also gets 409.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::access;
use super::attachment::AttachmentRecord;
use super::auth::require_altinn_token;
use super::linking::{self, AttachmentPlan};
use super::model::{at, idempotent_key, normalize_keys};
use super::multipart::FilePart;
use super::problem::{json_response, Problem};
use super::state::{bump, EventMarks, FakeCorrespondence, NotificationOrder, Record, Status};
use super::validate::{validate, Initialize};
use super::{attachment_api, upload, views, App};

/// The real search returns at most this many ids.
const MAX_SEARCH_RESULTS: usize = 1000;
const ROLES: [&str; 3] = ["Recipient", "Sender", "RecipientAndSender"];

pub(crate) fn router(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/correspondence", post(initialize).get(lookup))
        .route("/correspondence/upload", post(upload::upload))
        .route("/attachment", post(attachment_api::initialize))
        .route("/attachment/{id}", get(attachment_api::overview).delete(attachment_api::purge))
        .route("/attachment/{id}/details", get(attachment_api::details))
        .route("/attachment/{id}/upload", post(attachment_api::upload))
        .route("/correspondence/{id}", get(overview))
        .route("/correspondence/{id}/details", get(details))
        .route("/correspondence/{id}/purge", delete(purge))
        .route_layer(from_fn_with_state(app, require_altinn_token))
}

fn conflict() -> Problem {
    Problem::domain(1034, "A correspondence with the same idempotent key already exists")
}

async fn initialize(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    bump(&app.state.initialize_calls);
    match initialize_checked(&app, &headers, &body) {
        Ok(created) => json_response(200, &created),
        Err(problem) => {
            tracing::info!(?problem, "initialize rejected");
            problem.into_response()
        }
    }
}

/// Parses a JSON body, answering 415 for any other content type as ASP.NET does.
pub(crate) fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, Problem> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let is_json = content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Problem::Plain { status: 415, detail: String::new() });
    }
    serde_json::from_slice(body)
        .map_err(|e| Problem::validation("$", format!("The request body is not valid JSON: {e}")))
}

fn initialize_checked(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Value, Problem> {
    let original = json_body(headers, body)?;
    initialize_with_files(app, original, Vec::new())
}

/// The initialize pipeline both endpoints share: idempotency pre-check, validation, the
/// attachment rules, then one commit. `files` are the multipart file parts (none for JSON).
pub(crate) fn initialize_with_files(app: &App, original: Value, files: Vec<FilePart>) -> Result<Value, Problem> {
    let body = normalize_keys(original.clone());
    let key = idempotency_precheck(app, &body)?;
    let mut valid = validate(&body, &app.config, &app.access, app.now())?;
    let metadata = std::mem::take(&mut valid.attachments);
    let plan = linking::plan(&body, metadata, files, &app.state.lock_attachments_advanced().attachments)?;
    commit(app, key, valid, plan, original, body)
}

/// The checks that run before anything else: a known idempotency key is a conflict
/// whatever the body says, and nothing of the request is kept.
fn idempotency_precheck(app: &App, body: &Value) -> Result<Option<Uuid>, Problem> {
    let key = idempotent_key(body)?;
    if let Some(key) = key {
        if app.state.lock().keys.contains_key(&key) {
            return Err(conflict());
        }
        if key.is_nil() {
            let message = "The idempotency key must be a valid non-empty GUID";
            return Err(Problem::validation("IdempotentKey", message));
        }
        if at(body, &["recipients"]).and_then(Value::as_array).is_some_and(|r| r.len() > 1) {
            let message = "Idempotency key is not supported for requests with multiple recipients";
            return Err(Problem::domain(1047, message));
        }
    }
    Ok(key)
}

/// Stores the attachments, the correspondences and the key in one step, as the real
/// handler's upload followed by one database transaction would.
fn commit(
    app: &App,
    key: Option<Uuid>,
    valid: Initialize,
    plan: AttachmentPlan,
    original: Value,
    body: Value,
) -> Result<Value, Problem> {
    let now = app.now();
    let reserve = valid.recipients.len() > 1 && !valid.ignore_reservation;
    let mut state = app.state.lock();
    if key.is_some_and(|k| state.keys.contains_key(&k)) {
        return Err(conflict());
    }
    let waiting = !plan.new.is_empty();
    let mut attachment_ids = plan.existing.clone();
    for (metadata, received) in plan.new {
        let scan_ms = state.scan_ms(metadata.file_name.as_deref(), app.config.malware_scan_ms);
        let mut attachment = AttachmentRecord::new(&valid.resource_id, metadata, now);
        // Only `POST /attachment` publishes attachmentinitialized (InitializeAttachmentHandler).
        attachment.announced = attachment.history.len();
        attachment.upload_attempts = 1;
        attachment.uploaded(received, now, scan_ms);
        attachment_ids.push(attachment.id);
        state.attachments.push(attachment);
    }
    let mut created = Vec::new();
    for (urn, person) in &valid.recipients {
        let reserved = reserve && person.as_ref().is_some_and(|p| app.config.reserved_persons.contains(p));
        let last = match (reserved, waiting) {
            (true, _) => Status::Reserved,
            (false, true) => Status::Initialized,
            (false, false) => Status::ReadyForPublish,
        };
        let mut record = new_record(&valid, key, urn, now, &original, &body, last);
        record.public.attachment_ids = attachment_ids.clone();
        if let Some(order) = record.notification.as_mut() {
            order.creation_failed = app.config.notification_order_fails;
        }
        for attachment in state.attachments.iter_mut().filter(|a| attachment_ids.contains(&a.id)) {
            attachment.correspondence_ids.push(record.public.id);
        }
        created.push(json!({
            "correspondenceId": record.public.id,
            "status": record.highest().status.name(),
            "recipient": urn,
            "notifications": null,
        }));
        if let Some(key) = key {
            state.keys.insert(key, record.public.id);
        }
        let position = state.records.len();
        state.by_id.insert(record.public.id, position);
        state.records.push(record);
        state.touch(position);
    }
    tracing::info!(count = created.len(), attachments = attachment_ids.len(), "correspondences initialized");
    Ok(json!({ "correspondences": created, "attachmentIds": attachment_ids }))
}

/// `last`: the status after Initialized — Reserved, ReadyForPublish, or Initialized itself
/// while new attachments are still being scanned.
fn new_record(
    valid: &Initialize,
    key: Option<Uuid>,
    urn: &str,
    now: DateTime<Utc>,
    original: &Value,
    body: &Value,
    last: Status,
) -> Record {
    let mut record = Record {
        public: FakeCorrespondence {
            id: Uuid::new_v4(),
            idempotent_key: key,
            resource_id: valid.resource_id.clone(),
            senders_reference: valid.senders_reference.clone(),
            recipient: urn.to_string(),
            created: now,
            request: original.clone(),
            status: String::new(),
            published: None,
            attachment_ids: Vec::new(),
        },
        normalized: body.clone(),
        history: Vec::new(),
        requested_publish: valid.requested_publish.unwrap_or(now),
        due: valid.due,
        marks: EventMarks::default(),
        confirmation_needed: valid.confirmation_needed,
        notification: valid.notification.as_ref().map(|plan| NotificationOrder {
            order_id: Uuid::new_v4(),
            channel: plan.channel.to_string(),
            email: plan.email,
            sms: plan.sms,
            reminder: plan.reminder,
            creation_failed: false,
        }),
    };
    match last {
        // No correspondenceinitialized for one created Reserved (InitializeCorrespondencesHandler).
        Status::Reserved => record.push_quiet(Status::Initialized, "Initialized", now),
        _ => record.push(Status::Initialized, "Initialized", now),
    }
    match last {
        Status::Reserved => {
            let text = "Recipient has reserved themselves from public correspondences";
            record.push(Status::Reserved, text, now);
        }
        Status::ReadyForPublish => record.push(Status::ReadyForPublish, "ReadyForPublish", now),
        _ => {}
    }
    record
}

/// The search parameters the fake supports, parsed as ASP.NET binds them.
struct Search {
    resource: String,
    /// Index into [`ROLES`]; the real default is Recipient (0).
    role: usize,
    key: Option<Uuid>,
    senders_reference: Option<String>,
}

fn parse_search(query: HashMap<String, String>) -> Result<Search, Problem> {
    // ASP.NET binds query parameters case-insensitively.
    let query: HashMap<String, String> = query.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let resource = query
        .get("resourceid")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Problem::validation("resourceId", "The resourceId field is required."))?;
    let role = match query.get("role") {
        None => 0,
        Some(r) => ROLES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(r))
            .or(r.parse().ok().filter(|n| *n < ROLES.len()))
            .ok_or_else(|| Problem::validation("role", format!("The value '{r}' is not valid.")))?,
    };
    let key = match query.get("idempotentkey") {
        None => None,
        Some(k) => Some(
            Uuid::parse_str(k)
                .map_err(|_| Problem::validation("idempotentKey", format!("The value '{k}' is not valid.")))?,
        ),
    };
    Ok(Search {
        resource: resource.trim_start_matches("urn:altinn:resource:").to_string(),
        role,
        key,
        senders_reference: query.get("sendersreference").cloned(),
    })
}

/// `GET /correspondence?resourceId=&role=&idempotentKey=` → `{"ids":[...]}`.
async fn lookup(State(app): State<Arc<App>>, Query(query): Query<HashMap<String, String>>) -> Response {
    bump(&app.state.lookups);
    let search = match parse_search(query) {
        Ok(search) => search,
        Err(problem) => return problem.into_response(),
    };
    // The access check comes first, whatever the role asked for.
    if let Some(refusal) = access::search_refusal(&app, &search.resource) {
        return refusal.into_response();
    }
    // The fake's correspondences all belong to its one sender and no recipient ever asks.
    if search.role == 0 {
        return json_response(200, &json!({ "ids": [] }));
    }
    // Ids only: no status is shown, so nothing needs advancing.
    let state = app.state.lock();
    let mut found: Vec<&Record> = match search.key {
        // The real lookup by key ignores the resource and role filters; the key
        // index keeps it one map lookup however many correspondences the fake holds.
        Some(key) => {
            state.keys.get(&key).and_then(|id| state.by_id.get(id)).map(|&i| &state.records[i]).into_iter().collect()
        }
        None => state
            .records
            .iter()
            .filter(|r| {
                r.public.resource_id == search.resource
                    && search.senders_reference.as_ref().is_none_or(|s| *s == r.public.senders_reference)
            })
            .collect(),
    };
    found.sort_by_key(|r| std::cmp::Reverse(r.requested_publish));
    let ids: Vec<Uuid> = found.iter().take(MAX_SEARCH_RESULTS).map(|r| r.public.id).collect();
    json_response(200, &json!({ "ids": ids }))
}

fn parse_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::validation("correspondenceId", format!("The value '{id}' is not valid.")))
}

fn not_found() -> Response {
    Problem::domain(1001, "The requested correspondence was not found").into_response()
}

async fn overview(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let (state, index) = app.state.lock_advanced_one(id);
    match index.map(|i| &state.records[i]) {
        // Overview answers 404 after purge; details still works.
        Some(record) if !record.is_purged() => json_response(200, &views::overview(record)),
        _ => not_found(),
    }
}

async fn details(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    bump(&app.state.details_calls);
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let now = app.now();
    let (state, index) = app.state.lock_advanced_one(id);
    match index.map(|i| &state.records[i]) {
        Some(record) => json_response(200, &views::details(record, now, &app.config)),
        None => not_found(),
    }
}

/// The sender's purge: only before publication, once.
async fn purge(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    bump(&app.state.purge_calls);
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let now = app.now();
    let (mut state, index) = app.state.lock_advanced_one(id);
    let Some(i) = index else {
        return not_found();
    };
    let record = &mut state.records[i];
    if record.is_purged() {
        return Problem::domain(1014, "Correspondence has already been purged").into_response();
    }
    let purgeable = matches!(record.highest().status, Status::Initialized | Status::ReadyForPublish | Status::Failed);
    if !purgeable {
        let message = "Sender cannot delete correspondence that has been published";
        return Problem::domain(1013, message).into_response();
    }
    record.push(Status::PurgedByAltinn, "PurgedByAltinn", now);
    state.touch(i);
    tracing::info!("correspondence purged by its sender");
    json_response(200, &json!(id))
}
