//! The separate attachment flow: initialize (not idempotent), a one-shot streamed upload,
//! status and details, and purge.
//!
//! The upload body is hashed and counted as it arrives, never buffered, and the attempt is
//! recorded before the first byte is read, so a concurrent second upload already gets 2005.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::attachment::{self, metadata_rules, read_metadata, AttachmentRecord, AttachmentStatus};
use super::blob::Sink;
use super::correspondence::json_body;
use super::model::{normalize_keys, Checker};
use super::problem::{json_response, Problem};
use super::state::bump;
use super::App;

/// The streaming endpoint's limit: decimal 50 GB (trap 23).
const MAX_UPLOAD_BYTES: u64 = 50_000_000_000;
const MAX_RESOURCE_ID_CHARS: usize = 255;

fn answer(result: Result<Value, Problem>) -> Response {
    match result {
        Ok(body) => json_response(200, &body),
        Err(problem) => {
            tracing::info!(?problem, "attachment request rejected");
            problem.into_response()
        }
    }
}

fn not_found() -> Problem {
    Problem::domain(2001, "The requested attachment was not found")
}

fn parse_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::validation("attachmentId", format!("The value '{id}' is not valid.")))
}

/// `POST /attachment`: answers the new id as a JSON string.
pub(crate) async fn initialize(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    bump(&app.state.attachment_inits);
    answer(initialize_checked(&app, &headers, &body))
}

fn initialize_checked(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Value, Problem> {
    let body = normalize_keys(json_body(headers, body)?);
    if !body.is_object() {
        return Err(Problem::validation("$", "The JSON value could not be converted to InitializeAttachmentExt."));
    }
    let mut checker = Checker::default();
    let resource = checker.bounded(&body, "ResourceId", true, MAX_RESOURCE_ID_CHARS);
    let metadata = read_metadata(&mut checker, &body, "");
    if !checker.errors.is_empty() {
        return Err(Problem::Validation(checker.errors));
    }
    let resource = resource.trim_start_matches("urn:altinn:resource:").to_string();
    if resource.contains(':') {
        return Err(Problem::validation("ResourceId", "ResourceId may only have the urn:altinn:resource: prefix."));
    }
    if app.config.unknown_resources.iter().any(|r| r.trim_start_matches("urn:altinn:resource:") == resource) {
        return Err(Problem::domain(1036, "ResourceId must match an existing resource in the resource registry"));
    }
    // The sender's access to the resource, as for a correspondence (401/4001).
    if app.access.denies(&resource) {
        return Err(super::access::no_access());
    }
    metadata_rules(&metadata)?;
    let record = AttachmentRecord::new(&resource, metadata, app.now());
    let id = record.id;
    app.state.lock().attachments.push(record);
    tracing::info!(%id, "attachment initialized");
    Ok(json!(id))
}

/// `POST /attachment/{id}/upload` with the raw bytes as the body.
pub(crate) async fn upload(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bump(&app.state.attachment_uploads);
    answer(upload_checked(&app, &id, &headers, body).await)
}

/// Claims the one upload attempt of attachment `id`.
fn start_upload(app: &App, id: Uuid) -> Result<(), Problem> {
    let mut state = app.state.lock_attachments_advanced();
    let record = state.attachments.iter_mut().find(|a| a.id == id).ok_or_else(not_found)?;
    let earlier = record.upload_attempts;
    record.upload_attempts += 1;
    if record.status() == AttachmentStatus::Purged {
        return Err(Problem::domain(2006, "File has already been purged"));
    }
    if !record.correspondence_ids.is_empty() {
        return Err(Problem::domain(2003, "Cannot upload attachment to a correspondence that has been created"));
    }
    if earlier > 0 || record.status() != AttachmentStatus::Initialized {
        return Err(Problem::domain(2005, "File has already been or is being uploaded"));
    }
    Ok(())
}

async fn upload_checked(app: &App, id: &str, headers: &HeaderMap, body: Body) -> Result<Value, Problem> {
    let id = parse_id(id)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let octets =
        content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/octet-stream"));
    if !octets {
        return Err(Problem::Plain { status: 415, detail: String::new() });
    }
    start_upload(app, id)?;
    let mut sink = Sink::default();
    let mut stream = body.into_data_stream();
    let mut broken = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => sink.push(&chunk),
            Err(e) => {
                broken = Some(e.to_string());
                break;
            }
        }
        if sink.size() > MAX_UPLOAD_BYTES {
            break;
        }
    }
    finish_upload(app, id, sink, broken)
}

/// Records the outcome of the upload; the attempt stays used whatever it was.
fn finish_upload(app: &App, id: Uuid, sink: Sink, broken: Option<String>) -> Result<Value, Problem> {
    let received = sink.finish();
    let now = app.now();
    let mut state = app.state.lock_attachments_advanced();
    let index = state.attachments.iter().position(|a| a.id == id).ok_or_else(not_found)?;
    let scan_ms = state.scan_ms(state.attachments[index].metadata.file_name.as_deref(), app.config.malware_scan_ms);
    let record = &mut state.attachments[index];
    if let Some(error) = broken {
        tracing::info!(%error, "attachment upload broken off");
        record.push(AttachmentStatus::Failed, "Upload failed", now);
        return Err(Problem::domain(2002, "Error occurred during upload"));
    }
    if received.size == 0 || received.size > MAX_UPLOAD_BYTES {
        return Err(Problem::domain(2004, "File must have content and has a max file size of 50GB"));
    }
    if record.metadata.checksum.as_ref().is_some_and(|c| *c != received.md5) {
        record.received = Some(received);
        record.push(AttachmentStatus::Failed, "Checksum mismatch", now);
        return Err(Problem::domain(2008, "Checksum mismatch"));
    }
    record.uploaded(received, now, scan_ms);
    tracing::info!(%id, "attachment uploaded");
    Ok(attachment::overview(record))
}

fn with_attachment(app: &App, id: &str, view: fn(&AttachmentRecord) -> Value) -> Result<Value, Problem> {
    let id = parse_id(id)?;
    let state = app.state.lock_attachments_advanced();
    state.attachments.iter().find(|a| a.id == id).map(view).ok_or_else(not_found)
}

/// `GET /attachment/{id}`.
pub(crate) async fn overview(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    answer(with_attachment(&app, &id, attachment::overview))
}

/// `GET /attachment/{id}/details`.
pub(crate) async fn details(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    answer(with_attachment(&app, &id, attachment::details))
}

/// `DELETE /attachment/{id}`: answers `null`.
pub(crate) async fn purge(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    answer(purge_checked(&app, &id))
}

fn purge_checked(app: &App, id: &str) -> Result<Value, Problem> {
    let id = parse_id(id)?;
    let now = app.now();
    let mut state = app.state.lock_attachments_advanced();
    let record = state.attachments.iter_mut().find(|a| a.id == id).ok_or_else(not_found)?;
    if record.status() == AttachmentStatus::Purged {
        return Err(Problem::domain(2006, "File has already been purged"));
    }
    if !record.correspondence_ids.is_empty() {
        return Err(Problem::domain(
            2007,
            "Attachment cannot be purged as it is linked to at least one existing correspondence",
        ));
    }
    record.push(AttachmentStatus::Purged, "Purged", now);
    record.scan_done = None;
    tracing::info!(%id, "attachment purged");
    Ok(Value::Null)
}
