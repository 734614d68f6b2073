//! `POST /correspondence/upload`: initialize and upload new attachment files in one
//! multipart request.
//!
//! The form is read (files streamed into storage sinks) before anything is decided, because
//! fields may come after the files; then the JSON endpoint's pipeline runs on the bound
//! fields, so the key pre-check comes first and a known key stores nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use super::correspondence::initialize_with_files;
use super::problem::{json_response, Problem};
use super::state::bump;
use super::{form, multipart, App};

pub(crate) async fn upload(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    bump(&app.state.multipart_uploads);
    match upload_checked(&app, &headers, body).await {
        Ok(created) => json_response(200, &created),
        Err(problem) => {
            tracing::info!(?problem, "multipart initialize rejected");
            problem.into_response()
        }
    }
}

async fn upload_checked(app: &App, headers: &HeaderMap, body: Body) -> Result<serde_json::Value, Problem> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(boundary) = multipart::boundary(content_type) else {
        return Err(Problem::Plain { status: 415, detail: String::new() });
    };
    let form = multipart::read(body, &boundary).await.map_err(|message| Problem::validation("", message))?;
    let bound = form::bind(&form.fields)?;
    initialize_with_files(app, bound, form.files)
}
