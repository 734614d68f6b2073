//! The health listener: `/healthz` says the process is alive; `/readyz` says whether it
//! can do its work (the database answers and a token can be had), and if not, why, in
//! words an operator can act on. Off unless `health.listen` is set.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::maskinporten::AuthStatus;
use crate::worker::Context;

/// A probe is answered within this even when the database hangs: a slow answer is a "no".
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// `ok`, or what went wrong.
    pub database: String,
    /// The token client's state; `misconfigured` names what to fix.
    pub token: AuthStatus,
    /// `up`, `throttled` (a 429 wait) or `looks down` (requests held back and probed).
    pub altinn: &'static str,
}

/// Serves the probes until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(ctx);
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ctx): State<Arc<Context>>) -> (StatusCode, Json<Readiness>) {
    let readiness = readiness(&ctx).await;
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(readiness))
}

/// Ready when the database answers and a token can be had (from the cache, or one refresh;
/// during a failure cool-down the last error is reported without a request).
pub async fn readiness(ctx: &Context) -> Readiness {
    let database = match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&ctx.pool)).await
    {
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(e)) => format!("unreachable: {e}"),
        Err(_) => format!("no answer within {} s", DATABASE_CHECK_TIMEOUT.as_secs()),
    };
    let tokens = ctx.altinn.tokens();
    let token_ok = tokens.token().await.is_ok();
    let altinn = if ctx.altinn.looks_down() {
        "looks down"
    } else if ctx.altinn.held_back() {
        "throttled"
    } else {
        "up"
    };
    Readiness { ready: database == "ok" && token_ok, database, token: tokens.status(), altinn }
}
